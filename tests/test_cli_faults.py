"""Nothing lost, nothing silent: every CLI failure is one line naming the file, key or argument, with a
non-zero exit status, and what a user had is left byte-identical. One tiny trained workdir serves the module."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from support import Preempting, one_line, snapshot, train_args

from jhuman import cli, viz
from jhuman.tasks import parsing as parsing_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSING = os.path.join(REPO, "configs", "parsing.py")


@pytest.fixture(scope="module")
def trained(synthetic_cache, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(train_args(workdir, synthetic_cache)) == 0
    return workdir


def copy_run(trained, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(trained, target)
    return target


def test_a_changed_config_is_refused_and_the_run_stays_usable(trained, synthetic_cache, capsys):
    before = snapshot(trained)
    code = cli.main(train_args(trained, synthetic_cache, "--config.model.width=8"))
    line = one_line(capsys)
    assert code == 2 and "model.width: 16 in config.json, now 8" in line and "another --workdir" in line
    assert snapshot(trained) == before
    # Run length may change: the same config with more steps is a resume, not a refusal.
    assert "train.steps" not in line


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.steps=-3", "train.steps=-3 must be an integer >= 1"),
        ("train.steps=0", "0 only for a run initialised from other runs"),
        ("train.checkpoint_every=0", "train.checkpoint_every=0 must be an integer >= 1"),
        ("train.log_every=0", "train.log_every=0 must be an integer >= 1"),
        ("train.batch_size=0", "train.batch_size=0 must be an integer >= 1"),
        ("optim.name=adamx", "optim.name='adamx' is not one of ['sgd', 'adam', 'adamw']"),
        ("train.compute_dtype=float33", "train.compute_dtype='float33' is not one of ['float32', 'bfloat16'"),
        ("data.name=coco", "data.name='coco' is not one of ['lip', 'synthetic']"),
    ],
)
def test_bad_values_are_refused_at_load_time(override, expected, tmp_path, capsys):
    code = cli.main(["train", "--config", f"{PARSING}:size=tiny", "--workdir", str(tmp_path / "w"),
                     f"--config.{override}"])  # fmt: skip
    assert code == 2 and expected in one_line(capsys)
    assert not (tmp_path / "w").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--task", "parsing", "--num", "0"], "--num 0: write at least one image"),
        (["--task", "lip", "--num", "2"], "--task 'lip' is not one of ['parsing'"),
        (["--task", "parsing", "--size", "big"], "--size 'big': one side length, or min,max"),
    ],
)
def test_data_synth_arguments(args, expected, tmp_path, capsys):
    code = cli.main(["data", "synth", "--out", str(tmp_path / "d"), *args])
    assert code == 2 and expected in one_line(capsys)
    assert not (tmp_path / "d").exists()


def test_workdirs_that_cannot_hold_a_run(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("precious")
    for workdir, expected in ((a_file, "is a file, not a folder"), (a_file / "sub", "cannot be written")):
        code = cli.main(["train", "--config", f"{PARSING}:size=tiny", "--workdir", str(workdir)])
        assert code == 2 and expected in one_line(capsys)
    assert a_file.read_text() == "precious"


def test_eval_of_a_missing_step_lists_the_available_ones(trained, capsys):
    code = cli.main(["eval", "--workdir", str(trained), "--step", "7"])
    line = one_line(capsys)
    assert code == 2 and "--step 7: no such checkpoint" in line and "available steps: [2, 4]" in line


def test_eval_that_cannot_write_still_prints_its_scores(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    shutil.rmtree(run / "eval")
    (run / "eval").write_text("not a folder")
    assert cli.main(["eval", "--workdir", str(run)]) == 0
    captured = capsys.readouterr()
    assert "the scores are printed only" in captured.err
    scores = json.loads(captured.out.strip().splitlines()[-1])
    assert scores["step"] == 4 and 0.0 <= scores["mean_iou"] <= 1.0


def test_metrics_are_strict_json_and_a_resume_marks_the_superseded_rows(trained, synthetic_cache, tmp_path):
    run = copy_run(trained, tmp_path)
    # As if killed by SIGKILL after step 4 was logged but before its checkpoint was written.
    shutil.rmtree(run / "checkpoints" / "4")
    assert cli.main(train_args(run, synthetic_cache)) == 0

    def strict(constant):
        raise ValueError(f"not strict JSON: {constant}")

    rows = [json.loads(line, parse_constant=strict) for line in open(run / "metrics.jsonl")]
    assert rows[0]["img_per_sec"] is None  # no rate yet at the first logged step: null, not NaN
    assert {"step": 2, "resumed_from": 2} in rows
    losses = viz.read_metrics(str(run / "metrics.jsonl"))["loss"]
    assert losses[0] == [1, 2, 3, 4]  # steps 3 and 4 once, from the resumed run


def test_sigterm_saves_says_so_and_exits_75(trained, synthetic_cache, tmp_path, monkeypatch, capsys):
    run = copy_run(trained, tmp_path)
    original = parsing_task.ParsingTask.train_batches
    monkeypatch.setattr(
        parsing_task.ParsingTask, "train_batches", lambda self, *args: Preempting(original(self, *args), at=2)
    )
    code = cli.main(train_args(run, synthetic_cache, "--config.train.steps=40"))
    err = capsys.readouterr().err
    assert code == cli.EXIT_PREEMPTED == 75
    assert "resumed from the checkpoint at step 4" in err and "SIGTERM: saved a checkpoint at step" in err


def test_predict_refuses_a_file_and_an_output_inside_the_inputs(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"\xff\xd8 bytes of a user")
    before = snapshot(images)
    code = cli.main(["predict", "--workdir", str(trained), "--images", str(images / "a.jpg"), "--out", "o"])
    assert code == 2 and "not a folder of images" in one_line(capsys)
    for out in (images, images / "predictions"):
        code = cli.main(["predict", "--workdir", str(trained), "--images", str(images), "--out", str(out)])
        assert code == 2 and "inside) the --images folder" in one_line(capsys)
    assert snapshot(images) == before


def test_start_up_notices_are_quiet(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jhuman.cli", "data", "synth", "--task", "parsing", "--num", "2", "--size", "64",
         "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for notice in ("oneDNN", "absl::InitializeLog", "cpu_feature_guard"):
        assert notice not in result.stderr


def _can_mount_tmpfs():
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _can_mount_tmpfs(), reason="needs `unshare -m` and tmpfs mounts (root in a mount namespace)"
)
def test_disk_full_during_a_save_stops_at_once_and_resumes_from_the_last_good_checkpoint(
    synthetic_cache, tmp_path
):
    from input_pipeline import synthetic

    # The data first (its generation prints progress): the runs below then print only what they must.
    synthetic.ensure_dataset("parsing", synthetic_cache, num=1200, seed=0, size=(96, 128), val_fraction=0.1)
    disk = tmp_path / "disk"
    disk.mkdir()
    # The full tiny trunk (res5 too; the demo's config drops it): one checkpoint is ~10 MB, so a 14 MB disk
    # holds step 2's, not step 4's. Then the disk grows.
    extra = ("--config.train.steps=6", "--config.model.stage_sizes=(1, 1, 1, 1)")
    args = " ".join(f"'{a}'" for a in train_args(disk / "run", synthetic_cache, *extra))
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=14m tmpfs {disk} || exit 99
        {sys.executable} -m jhuman.cli {args} 2> {tmp_path}/err1; echo "first=$?"
        ls {disk}/run/checkpoints; echo listed
        mount -o remount,size=64m {disk}
        {sys.executable} -m jhuman.cli {args} 2> {tmp_path}/err2; echo "second=$?"
        ls {disk}/run/checkpoints
    """)
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600,
                            cwd=REPO)  # fmt: skip
    out = result.stdout
    err1 = (tmp_path / "err1").read_text().strip().splitlines()
    assert "first=1" in out, (out, err1)
    assert err1 == [
        f"error: could not save the checkpoint of step 4 in {disk}/run/checkpoints (No space left on device); "
        "the run stopped. Last good checkpoint: step 2; free space (or fix the folder) and run the same command "
        "again to resume from it."
    ]
    first_listing = out.split("first=1")[1].split("listed")[0].split()
    assert "2" in first_listing and "4" not in first_listing  # step 2 intact, no finished step 4
    assert "second=0" in out, (tmp_path / "err2").read_text()
    assert "resumed from the checkpoint at step 2" in (tmp_path / "err2").read_text()
    final_listing = out.split("second=0")[1].split()
    assert "6" in final_listing and not any("tmp" in name for name in final_listing)  # partial files cleaned
