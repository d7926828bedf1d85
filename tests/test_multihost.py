"""Multi-host, proven on one machine: two `jhuman train` processes on loopback (four CPU devices each,
jax.distributed with gloo collectives) match one process with eight devices: the same losses step by step
(the global example order and each example's randomness do not depend on the number of processes), one
checkpoint that both processes resume from, and the same padded evaluation."""

import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSING = os.path.join(REPO, "configs", "parsing.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(workdir, cache, steps, *extra):
    return [
        sys.executable, "-m", "jhuman.cli", "train", "--config", f"{PARSING}:size=tiny,data=synthetic",
        "--workdir", str(workdir), f"--config.data.cache_dir={cache}", "--config.data.synthetic_num=1200",
        "--config.data.synthetic_size=(96, 128)", "--config.data.crop_size=48", "--config.train.batch_size=8",
        f"--config.train.steps={steps}", "--config.train.checkpoint_every=2", "--config.train.log_every=1",
        "--config.train.progress_bar=false", "--config.train.num_pictures=2", "--config.train.eval_every=0",
        "--config.eval.limit=20", "--config.eval.batch_size=8", "--config.eval.pad_size=128", *extra,
    ]  # fmt: skip


def run(commands, devices):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JHUMAN_COMPILATION_CACHE="off")  # fmt: skip
    procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in commands]  # fmt: skip
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
    return outputs


def losses(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    by_step = {}
    for row in rows:  # later rows (after a resume) supersede earlier ones
        if "loss" in row:
            by_step[row["step"]] = row["loss"]
    return [by_step[s] for s in sorted(by_step)]


@pytest.mark.slow
def test_two_processes_match_one_resume_from_one_checkpoint_and_evaluate_alike(synthetic_cache, tmp_path):
    from input_pipeline import synthetic

    synthetic.ensure_dataset("parsing", synthetic_cache, num=1200, seed=0, size=(96, 128), val_fraction=0.1)
    run([command(tmp_path / "one", synthetic_cache, 3)], devices=8)

    two = tmp_path / "two"
    port = free_port()

    def both(steps):
        return [
            command(two, synthetic_cache, steps, f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                    "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}")
            for i in range(2)
        ]  # fmt: skip

    run(both(2), devices=4)  # steps 1-2, one checkpoint at step 2 written by both processes
    assert sorted(os.listdir(two / "checkpoints")) == ["2"]
    port = free_port()
    outputs = run(both(3), devices=4)  # both resume from it
    assert all("resumed from the checkpoint at step 2" in out for out in outputs)

    single, double = losses(tmp_path / "one"), losses(two)
    assert len(single) == len(double) == 3
    assert single == pytest.approx(double, rel=2e-5)
    scores = [json.load(open(d / "eval" / "val_3.json")) for d in (tmp_path / "one", two)]
    for key in ("pixel_accuracy", "mean_iou"):
        assert scores[0][key] == pytest.approx(scores[1][key], abs=1e-6)
    assert os.path.isfile(two / "pictures" / "predictions.png")
