"""Nothing lost, nothing silent, with data through the command line: predict gives every input its own outputs
and says which inputs it skipped and why; eval-parsing reports labels outside the classes and refuses colour
maps; eval records the examples it skipped and refuses a split with none usable; a data.name the task does not
read is refused. Inputs stay byte-identical. One tiny trained workdir serves the module."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest
from support import one_line, snapshot, train_args

from input_pipeline import lip
from jhuman import cli, tasks
from jhuman import config as config_lib
from jhuman.tasks import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSING = os.path.join(REPO, "configs", "parsing.py")


@pytest.fixture(scope="module")
def trained(synthetic_cache, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli_data") / "run"
    assert cli.main(train_args(workdir, synthetic_cache)) == 0
    return workdir


def test_predict_names_each_input_its_own_outputs_and_records_what_it_skipped(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "a.jpg"), rng.integers(0, 255, (40, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "a.png"), rng.integers(0, 255, (20, 50, 3), dtype=np.uint8))  # the same stem
    cv2.imwrite(str(images / "d.png"), rng.integers(0, 65535, (24, 24), dtype=np.uint16))  # 16-bit grey
    full = cv2.imencode(".jpg", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))[1].tobytes()
    (images / "b.jpg").write_bytes(full[:-40])  # truncated: libjpeg alone would predict it, grey-filled
    (images / "c.png").write_bytes(b"")  # zero bytes
    before = snapshot(images)
    out = tmp_path / "out"
    assert cli.main(["predict", "--workdir", str(trained), "--images", str(images), "--out", str(out)]) == 0
    assert "wrote predictions for 3 images" in capsys.readouterr().out
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["outputs"] == {
        "a.jpg": ["a.jpg.png", "a.jpg_overlay.png"],
        "a.png": ["a.png.png", "a.png_overlay.png"],
        "d.png": ["d.png", "d_overlay.png"],  # a unique stem keeps <stem>.png (eval-parsing pairs by id)
    }
    entries = {e["image"]: e for e in summary["images"]}
    for name, (h, w) in (("a.jpg", (40, 30)), ("a.png", (20, 50)), ("d.png", (24, 24))):
        assert entries[name]["labels"] == summary["outputs"][name][0]
        assert entries[name]["overlay"] == summary["outputs"][name][1]
        assert cv2.imread(str(out / entries[name]["labels"]), cv2.IMREAD_UNCHANGED).shape == (h, w)
    assert summary["skipped"] == [
        {"image": "b.jpg", "reason": "truncated JPEG (no end-of-image marker after its image data)"},
        {"image": "c.png", "reason": "empty image (0 bytes)"},
    ]
    assert summary["num_skipped"] == 2 and summary["num_images"] == 3
    assert summary["converted"] == [{"image": "d.png", "conversion": "16-bit -> 8-bit, grayscale -> RGB"}]
    assert snapshot(images) == before


def _label(path, label):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), label)


def test_eval_parsing_reports_labels_outside_the_classes_and_refuses_colour_maps(tmp_path, capsys):
    rng = np.random.default_rng(1)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    x = rng.integers(0, 20, (16, 12)).astype(np.uint8)
    relabelled = np.where(x == 5, 25, x).astype(np.uint8)  # class 5 relabelled 25 in the ground truth
    _label(gt_dir / "x.png", relabelled)
    _label(pred_dir / "x.png", x)
    y = rng.integers(0, 20, (10, 10)).astype(np.uint8)
    y[0, 0] = 255  # the ignore value: not reported
    wrong = y.copy()
    wrong[5:, :] = 30  # predictions outside the classes: errors, reported
    _label(gt_dir / "y.png", y)
    _label(pred_dir / "y.png", wrong)
    before = snapshot(tmp_path)
    report = tmp_path / "scores.json"
    code = cli.main(
        ["eval-parsing", "--gt_dir", str(gt_dir), "--pred_dir", str(pred_dir), "--json", str(report)]
    )
    captured = capsys.readouterr()
    assert code == 0
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 2 and all(line.startswith("warning: ") for line in warnings)
    assert "outside 0..19 other than 255" in warnings[0] and str(gt_dir / "x.png") in warnings[0]
    assert "[25]" in warnings[0] and "not scored" in warnings[0]
    assert (
        "[30]" in warnings[1] and "scored as errors" in warnings[1] and str(pred_dir / "y.png") in warnings[1]
    )
    result = json.loads(report.read_text())
    assert result["gt_out_of_range"] == {
        "pixels": int((x == 5).sum()),
        "values": [25],
        "files": {str(gt_dir / "x.png"): int((x == 5).sum())},
    }
    assert result["pred_out_of_range"]["pixels"] == 50 - int((y[5:] == 255).sum())
    assert result["pixel_accuracy"] < 1.0 and result["mean_iou"] < 1.0  # the wrong half counts
    assert "other than 255" in captured.out  # in the table too
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "scores.json"} == before

    colour = np.dstack([y, y, (y + 1) % 20]).astype(np.uint8)
    _label(pred_dir / "y.png", colour)
    before = snapshot(tmp_path)
    code = cli.main(["eval-parsing", "--gt_dir", str(gt_dir), "--pred_dir", str(pred_dir)])
    line = one_line(capsys)
    assert code == 2 and str(pred_dir / "y.png") in line and "colour PNG" in line
    assert snapshot(tmp_path) == before


def _val_copy(trained, root, n=8):
    """A LIP folder (official layout, val split only) of the first n val examples of the workdir's data."""
    data = common.data_root(config_lib.load_saved_config(str(trained)), "parsing", "lip")
    entries = lip.find_layout(data)["val"][:n]
    images, labels = root / "TrainVal_images" / "val_images", root / "TrainVal_parsing_annotations"
    (labels / "val_segmentations").mkdir(parents=True)
    images.mkdir(parents=True)
    for example_id, image, label in entries:
        shutil.copy(image, images / f"{example_id}.jpg")
        shutil.copy(label, labels / "val_segmentations" / f"{example_id}.png")
    (root / "TrainVal_images" / "val_id.txt").write_text("".join(f"{e[0]}\n" for e in entries))
    return [str(images / f"{e[0]}.jpg") for e in entries]


def test_eval_records_skipped_examples_and_refuses_a_split_with_none_usable(trained, tmp_path, capsys):
    run, root = tmp_path / "run", tmp_path / "lip"
    shutil.copytree(trained, run)
    images = _val_copy(trained, root)
    open(images[2], "wb").close()  # zero bytes: this killed the run after all training
    with open(images[5], "r+b") as f:
        f.truncate(os.path.getsize(images[5]) - 40)
    before = snapshot(root)
    args = ["eval", "--workdir", str(run), "--config.data.name=lip", f"--config.data.root={root}"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "2 evaluation examples skipped (corrupt, not scored)" in out
    written = json.loads((run / "eval" / "val_4.json").read_text())
    assert written["eval_skipped"] == 2
    assert written["eval_skipped_files"] == {
        images[2]: "empty image (0 bytes)",
        images[5]: "truncated JPEG (no end-of-image marker after its image data)",
    }
    assert 0.0 <= written["mean_iou"] <= 1.0
    assert snapshot(root) == before

    for image in images:
        open(image, "wb").close()
    assert cli.main(args) == 2
    line = one_line(capsys)
    assert f"no usable examples in the LIP val split under {root}: all 8 listed were skipped" in line
    assert "(8 empty file)" in line


def test_a_data_name_the_task_does_not_read_is_refused_with_the_valid_names():
    config = config_lib.load_config(f"{PARSING}:size=tiny")
    assert tasks.data_names(config) == ("lip", "synthetic")
    assert tasks.check_data_name(config) is config
    config.data.name = "coco"
    with pytest.raises(
        config_lib.ConfigError, match=r"data.name='coco' is not one of \['lip', 'synthetic'\]"
    ):
        tasks.check_data_name(config)
