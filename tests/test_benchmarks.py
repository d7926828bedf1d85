"""Smoke tests of the benchmark scripts on tiny cases: they run, and write the rows their tables promise.

Each script runs as a user runs it (a subprocess from the repository root), on one CPU device (the suite's
8 fake devices are not passed on). The whole suite (benchmarks/accelerator.sh --tiny) compiles about ten
train steps, minutes on 2 cores, so its test is marked slow and runs only with JHUMAN_BENCH_SUITE=1 (CI runs
every other test, slow ones too); its pieces are tested here at the tiny size.
"""

import json
import os
import subprocess
import sys

import pytest
from support import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_input_throughput_measures_the_stream_per_core(tmp_path, synthetic_cache):
    out = tmp_path / "input_throughput.json"
    args = ["--tasks", "parsing_tiny", "--cores", "1,all", "--synthetic_num", "24", "--warmup", "1"]
    args += ["--seconds", "0.5", "--no_flops", "--cache_dir", synthetic_cache, "--json", str(out)]
    run([sys.executable, "benchmarks/input_throughput.py", *args])
    (row,) = json.loads(out.read_text())["rows"]
    cores = len(os.sched_getaffinity(0))
    assert row["task"] == "parsing_tiny" and row["crop"] == 96 and row["batch"] == 8
    assert row["cores"] == cores and row["pipe_1core_img_s"] > 0 and row["pipe_all_img_s"] > 0
    assert row["per_core_img_s"] == pytest.approx(row["pipe_1core_img_s"], rel=0.01)
    assert sorted(row["pipe_img_s_by_cores"]) == sorted({"1", str(cores)})
    assert "AUTOTUNE" in row["tf_data"] and "max_intra_op_parallelism=1" in row["tf_data"]
    assert "gflop_per_img" not in row  # --no_flops: the step is not compiled


def test_input_throughput_reads_every_tasks_stream_and_refuses_an_unknown_task(tmp_path, synthetic_cache):
    out = tmp_path / "input_throughput.json"
    args = ["--tasks", "matting_tiny,posewarp_tiny", "--cores", "all", "--synthetic_num", "24", "--no_flops"]
    args += ["--warmup", "1", "--seconds", "0.2", "--cache_dir", synthetic_cache, "--json", str(out)]
    run([sys.executable, "benchmarks/input_throughput.py", *args])
    matting, posewarp = json.loads(out.read_text())["rows"]
    # The crop is the side of the images the stream yields (the tiny configs' 64 px), the batch the config's.
    assert (matting["task"], matting["crop"], matting["batch"]) == ("matting_tiny", 64, 8)
    assert (posewarp["task"], posewarp["crop"], posewarp["batch"]) == ("posewarp_tiny", 64, 4)
    assert matting["pipe_all_img_s"] > 0 and posewarp["pipe_all_img_s"] > 0
    bad = subprocess.run([sys.executable, "benchmarks/input_throughput.py", "--tasks", "parsing,nope"],
                         cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "unknown task(s) ['nope']" in bad.stderr and "posewarp_tiny" in bad.stderr


def test_compile_cache_second_run_compiles_nothing_new(tmp_path, synthetic_cache):
    out = tmp_path / "compile_cache.json"
    small = ["data.crop_size=48", "train.num_pictures=0", "eval.limit=8", "train.progress_bar=false"]
    args = ["--steps", "1", "--synthetic_num", "24", "--runs", "cold,warm", "--cache_dir", synthetic_cache]
    args += [a for o in small for a in ("--override", o)] + ["--json", str(out)]
    # XLA's LLVM passes at their cheapest: the same compilations, cached alike, in half the time.
    fast = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    run([sys.executable, "benchmarks/compile_cache.py", *args], XLA_FLAGS=fast)
    cold, warm = json.loads(out.read_text())["rows"]
    assert (cold["run"], warm["run"]) == ("cold", "warm")
    assert cold["cache_entries"] > 0 and warm["cache_entries"] == cold["cache_entries"]
    assert cold["written"] > 0 and warm["hits"] == cold["written"] and warm["written"] == 0  # all hits
    assert warm["saved_s"] == 0 and cold["saved_s"] == pytest.approx(
        cold["wall_s"] - warm["wall_s"], abs=0.02
    )


def test_suite_table_combines_the_scripts_json(tmp_path):
    (tmp_path / "json").mkdir()
    status = (
        "train_step_float32\t0\t12\tbenchmarks/train_step.py --dtype float32\npeers\tskipped\t0\tabsent\n"
    )
    (tmp_path / "json" / "_status.tsv").write_text(status)
    rows = [{"case": "tiny", "step_ms": 1.23456, "tf_data": "x" * 80, "by": {"1": 2.0}}]
    machine = {"cpu": "Test CPU", "cpu_count": 2, "devices": "1 x cpu"}
    (tmp_path / "json" / "train_step_float32.json").write_text(json.dumps({"machine": machine, "rows": rows}))
    run([sys.executable, "benchmarks/suite_table.py", str(tmp_path), "--device", "NVIDIA H200"])
    text = (tmp_path / "results.md").read_text()
    assert "device: NVIDIA H200" in text and "Test CPU (2 cores)" in text
    assert "| peers | skipped | 0 | `absent` |" in text
    assert "| case | step_ms |" in text and "| tiny | 1.235 |" in text  # long and nested values stay in JSON
    assert json.loads((tmp_path / "results.json").read_text())["runs"]["train_step_float32"]["rows"] == rows


def test_no_benchmark_script_shadows_a_module_the_scripts_import():
    """`python benchmarks/x.py` puts benchmarks/ first on sys.path: a script named like a package of the
    repository (input_pipeline) or of the standard library (ssl) would be imported in its place."""
    packages = {n for n in os.listdir(REPO) if os.path.exists(os.path.join(REPO, n, "__init__.py"))}
    names = {
        os.path.splitext(n)[0] for n in os.listdir(os.path.join(REPO, "benchmarks")) if n.endswith(".py")
    }
    assert "input_pipeline" in packages and not names & (packages | set(sys.stdlib_module_names))


def test_accelerator_script_parses_and_refuses_unknown_options():
    assert subprocess.run(["bash", "-n", "benchmarks/accelerator.sh"], cwd=REPO).returncode == 0
    done = subprocess.run(
        ["bash", "benchmarks/accelerator.sh", "--nope"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 2 and "usage" in done.stderr
    usage = subprocess.run(
        ["bash", "benchmarks/accelerator.sh", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert usage.returncode == 0 and "--tiny" in usage.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("JHUMAN_BENCH_SUITE") != "1",
    reason="the whole suite takes minutes: JHUMAN_BENCH_SUITE=1 runs it",
)
def test_accelerator_suite_tiny_writes_every_table(tmp_path):
    run(["bash", "benchmarks/accelerator.sh", "--tiny", str(tmp_path)], timeout=3600, PYTHON=sys.executable)
    results = json.loads((tmp_path / "results.json").read_text())
    for name in (
        "train_step_float32",
        "train_step_bfloat16",
        "matting_float32",
        "matting_bfloat16",
        "posewarp_float32",
        "posewarp_bfloat16",
        "input_throughput",
        "personlab_decode",
        "compile_cache",
        "peers_float32",
        "peers_bfloat16",
    ):
        assert results["runs"][name]["rows"], name
    assert all(entry[1] in ("0", "skipped") for entry in results["status"]), results["status"]
    dtypes = {row["dtype"] for row in results["runs"]["input_throughput"]["rows"]}
    assert dtypes == {"float32", "bfloat16"}
    assert "## input_throughput" in (tmp_path / "results.md").read_text()


def test_decode_benchmark_model_inputs_need_a_trained_model(tmp_path):
    """`--inputs model` decodes a trained model's real outputs: without --workdir, or with a workdir that
    holds no PersonLab model, the script stops at once and says which argument is wrong."""
    script = [sys.executable, "benchmarks/personlab_decode.py", "--cases", "401", "--malloc", "default"]
    missing = subprocess.run([*script, "--inputs", "model"], cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and "--workdir" in missing.stderr
    unknown = subprocess.run([*script, "--inputs", "noisy"], cwd=REPO, capture_output=True, text=True)
    assert unknown.returncode == 2 and "'noisy'" in unknown.stderr and "'model'" in unknown.stderr
    empty = subprocess.run(
        [*script, "--inputs", "model", "--workdir", str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert empty.returncode == 1 and f"--workdir {tmp_path}:" in empty.stderr  # one line, no traceback
    assert "Traceback" not in empty.stderr
