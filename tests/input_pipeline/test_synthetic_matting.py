"""The synthetic matting writer: its files parse in the foreground / alpha / background layout, each person goes over
several backgrounds of other sizes, its alpha has a wide, non-trivial soft band, it is deterministic, and
`jhuman data synth --task matting` / ensure_dataset write it."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from input_pipeline import matting
from input_pipeline.synthetic import datasets, matte, matting_format, scene
from jhuman import cli

SIZE = 64


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_matting") / "data"
    counts = datasets.write_dataset("matting", str(root), 8, seed=3, size=SIZE, val_fraction=0.25, workers=1)
    return root, counts


def _alphas(root):
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(Path(root).glob("*/alpha/*.png"))]


def test_files_parse_in_the_fg_alpha_bg_layout(written):
    root, counts = written
    assert counts == {"train": 6, "val": 2}
    layout = matting.find_layout(root)
    k = matting_format.BACKGROUNDS
    assert {s: len(e) for s, e in layout.items()} == {"train": 6 * k, "val": 2 * k}
    for entries in layout.values():
        for entry in entries:
            raw = matting.read_example(entry)  # raises on any unusable file
            assert raw["alpha"].dtype == np.uint8 and raw["alpha"].shape == (SIZE, SIZE)
            assert raw["fg"].shape == (SIZE, SIZE, 3) and raw["bg"].ndim == 3
    fgs = [e.fg for e in layout["train"]]
    assert all(fgs.count(f) == k for f in set(fgs))  # each person over K backgrounds
    assert len({e.bg for e in layout["train"]}) == 6 * k
    assert any(matting.read_example(e)["bg"].shape[:2] != (SIZE, SIZE) for e in layout["train"])
    with matting.train_stream(
        root, batch_size=2, stage="mnet", crop_size=32, mnet_size=32, mnet_crops=(32, 48)
    ) as s:
        batch = next(s)
    assert batch["has_fg_bg"].all() and (batch["trimap"] == matting.UNKNOWN).any()


def test_alpha_has_a_non_trivial_soft_band(written):
    soft_far = soft = person = 0
    for alpha in _alphas(written[0]):
        a = alpha.astype(np.float32) / 255
        hard = (a >= 0.5).astype(np.uint8)
        # distance of every pixel to the binarised silhouette's boundary
        distance = np.where(
            hard > 0,
            cv2.distanceTransform(hard, cv2.DIST_L2, 5),
            cv2.distanceTransform(1 - hard, cv2.DIST_L2, 5),
        )
        is_soft = (a > 0.05) & (a < 0.95)
        soft += is_soft.sum()
        person += (a > 0).sum()
        soft_far += (is_soft & (distance > 3)).sum()
        assert (alpha == 255).any() and (alpha == 0).any()
    assert soft > 0.2 * person  # soft edges everywhere, not a feathered pixel
    assert (
        soft_far > 0.02 * person
    )  # and soft alpha well away from the hard silhouette (gradients, blur, hair)


def test_soften_blurs_limbs_adds_transparency_and_extends_colours():
    gained = translucent = 0
    for index in range(6):
        crop = scene.render_person_crop(1, index, 96)
        alpha, fg = matte.soften(crop.alpha, crop.foreground, crop.parts, np.random.default_rng(index))
        assert alpha.dtype == np.float32 and 0 <= alpha.min() and alpha.max() <= 1 and fg.dtype == np.uint8
        person = crop.parts > 0
        translucent += ((alpha < 0.9) & (crop.alpha > 0.99) & person).sum()  # inside, now see-through
        grown = (alpha > 0) & (crop.alpha == 0)
        gained += grown.sum()
        assert (fg[grown].max(-1) > 0).mean() > 0.95  # colours defined where alpha grew
        again = matte.soften(crop.alpha, crop.foreground, crop.parts, np.random.default_rng(index))
        np.testing.assert_array_equal(again[0], alpha)
        np.testing.assert_array_equal(again[1], fg)
    assert gained > 0 and translucent > 0


def test_written_files_are_deterministic_and_ensure_dataset_and_cli_write_them(written, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        cli.main(
            [
                "data",
                "synth",
                "--task",
                "matting",
                "--out",
                str(out),
                "--num",
                "8",
                "--seed",
                "3",
                "--size",
                str(SIZE),
                "--val_fraction",
                "0.25",
            ]
        )
        == 0
    )
    assert "wrote {'train': 6, 'val': 2}" in capsys.readouterr().out
    for path in sorted(Path(written[0]).rglob("*.*")):
        assert path.read_bytes() == (out / path.relative_to(written[0])).read_bytes(), path
    cached = datasets.ensure_dataset("matting", str(tmp_path / "cache"), 2, seed=0, size=32, val_fraction=0.5)
    assert os.path.basename(cached) == "matting-2-s0-32"
    assert {s: len(e) for s, e in matting.find_layout(cached).items()} == {
        "train": matting_format.BACKGROUNDS,
        "val": matting_format.BACKGROUNDS,
    }
