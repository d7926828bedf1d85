"""`jhuman eval-matting`: alpha PNG folders scored by jhuman.metrics.matting, and its one-line errors."""

import json

import cv2
import numpy as np
import pytest
from support import one_line

from jhuman import cli
from jhuman.metrics import matting as matting_metrics


def write_case(tmp_path, n=3, size=(24, 20)):
    """Ground truths (8-bit), predictions (16-bit for the first, 8-bit others) and trimaps; their arrays."""
    rng = np.random.default_rng(0)
    folders = {name: tmp_path / name for name in ("gt", "pred", "trimap")}
    for folder in folders.values():
        folder.mkdir()
    arrays = []
    for i in range(n):
        yy, xx = np.mgrid[: size[0], : size[1]]
        gt = np.clip((xx - 6 - i) / 6.0, 0, 1)  # a soft vertical edge
        gt8 = np.round(gt * 255).astype(np.uint8)
        pred = np.clip(gt + rng.normal(0, 0.1, size), 0, 1)
        if i == 0:
            pred_png = np.round(pred * 65535).astype(np.uint16)
            pred = pred_png / 65535.0
        else:
            pred_png = np.round(pred * 255).astype(np.uint8)
            pred = pred_png / 255.0
        trimap = np.where(gt8 == 0, 0, np.where(gt8 == 255, 255, 128)).astype(np.uint8)
        trimap[yy < 3] = 128
        cv2.imwrite(str(folders["gt"] / f"{i}.png"), gt8)
        cv2.imwrite(str(folders["pred"] / f"{i}.png"), pred_png)
        cv2.imwrite(str(folders["trimap"] / f"{i}.png"), trimap)
        arrays.append((pred, gt8 / 255.0, trimap))
    return folders, arrays


def test_eval_matting_equals_the_metrics_module(tmp_path, capsys):
    folders, arrays = write_case(tmp_path)
    out = tmp_path / "scores.json"
    args = ["eval-matting", "--pred_dir", str(folders["pred"]), "--gt_dir", str(folders["gt"])]
    assert cli.main([*args, "--trimap_dir", str(folders["trimap"]), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    expected = matting_metrics.MattingScores()
    for pred, gt, trimap in arrays:
        expected.add(pred, gt, trimap)
    want = expected.result()
    assert scores["num_images"] == 3
    for key in ("sad", "mse", "grad", "conn", "whole_sad", "whole_mse", "whole_grad", "whole_conn"):
        assert scores[key] == pytest.approx(float(want[key]), rel=1e-9, abs=1e-12), key
    assert scores["sad"] != pytest.approx(scores["whole_sad"])
    printed = capsys.readouterr().out
    assert "SAD" in printed and "wrote" in printed

    # Without trimaps the whole image is the region: the DIM columns are the whole-image sums.
    assert cli.main([*args, "--json", str(out)]) == 0
    whole = json.loads(out.read_text())
    full = matting_metrics.MattingScores()
    for pred, gt, _ in arrays:
        full.add(pred, gt, np.full(gt.shape, 128, np.uint8))
    assert whole["sad"] == pytest.approx(float(full.result()["sad"]), rel=1e-9)
    assert whole["sad"] == pytest.approx(np.mean([matting_metrics.sad(p, g) for p, g, _ in arrays]), rel=1e-9)


def test_eval_matting_errors_name_the_file(tmp_path, capsys):
    folders, _ = write_case(tmp_path, n=2)
    args = ["eval-matting", "--pred_dir", str(folders["pred"]), "--gt_dir", str(folders["gt"])]
    (folders["pred"] / "1.png").unlink()
    assert cli.main(args) == 2
    line = one_line(capsys)
    assert "predicted alpha PNG not found" in line and line.endswith("1.png")
    cv2.imwrite(str(folders["pred"] / "1.png"), np.zeros((5, 5), np.uint8))
    assert cli.main(args) == 2
    assert "size mismatch for" in one_line(capsys)
    cv2.imwrite(str(folders["pred"] / "1.png"), np.zeros((24, 20, 3), np.uint8) + [0, 0, 9])
    assert cli.main(args) == 2
    assert "colour channels" in one_line(capsys)
    assert (
        cli.main(["eval-matting", "--pred_dir", str(tmp_path / "nope"), "--gt_dir", str(folders["gt"])]) == 2
    )
    assert "--pred_dir" in one_line(capsys)
