"""Pictures: palette colours, PNG colour order on disk, grid geometry, training curves."""

import json

import cv2
import numpy as np
import pytest

from jhuman import viz
from jhuman.classes import LIP_PALETTE


def test_colorize_uses_the_lip_palette_and_white_for_ignore():
    label = np.array([[0, 1, 2, 255], [19, 13, 5, 7]], np.uint8)
    rgb = viz.colorize(label)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    np.testing.assert_array_equal(rgb[0, :3], LIP_PALETTE[[0, 1, 2]])
    np.testing.assert_array_equal(rgb[1], LIP_PALETTE[[19, 13, 5, 7]])
    np.testing.assert_array_equal(rgb[0, 3], [255, 255, 255])
    all_labels = viz.colorize(np.arange(20)[None])
    np.testing.assert_array_equal(all_labels[0], LIP_PALETTE)
    np.testing.assert_array_equal(LIP_PALETTE[2], [255, 0, 0])  # Hair is red in RGB


def test_overlay_blends_and_keeps_ignored_pixels():
    image = np.full((2, 2, 3), 100, np.uint8)
    label = np.array([[0, 2], [13, 255]])
    out = viz.overlay(image, label, alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], [50, 50, 50])
    np.testing.assert_array_equal(out[0, 1], [178, 50, 50])  # round(50 + 127.5)
    np.testing.assert_array_equal(out[1, 0], [50, 50, 178])
    np.testing.assert_array_equal(out[1, 1], [100, 100, 100])
    small = viz.overlay(np.zeros((8, 8, 3), np.uint8), np.full((2, 2), 2), alpha=1.0)
    assert small.shape == (8, 8, 3) and (small == [255, 0, 0]).all()


def test_save_png_writes_rgb_correctly(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 255  # pure red in RGB
    image[0, 0] = [0, 0, 255]  # one blue pixel
    path = viz.save_png(tmp_path / "sub" / "red.png", image)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr.shape == (4, 6, 3)
    np.testing.assert_array_equal(bgr[1, 1], [0, 0, 255])  # red, read back by OpenCV in BGR order
    np.testing.assert_array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), image)
    viz.save_png(tmp_path / "grey.png", np.full((3, 3), 0.5))
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "grey.png"), cv2.IMREAD_UNCHANGED), 128)


def test_image_grid_geometry_and_titles():
    h, w, gap, band = 20, 30, 2, 24
    tile = np.zeros((h, w, 3), np.uint8)
    rows = [
        [tile, viz.colorize(np.full((h, w), 2)), np.ones((h, w))],
        [tile, np.zeros((10, 15), np.uint8)],
    ]  # short row, smaller grey tile resized
    grid = viz.image_grid(rows, titles=["image", "label", "pred"], gap=gap, title_height=band)
    assert grid.dtype == np.uint8
    assert grid.shape == (band + 2 * h + 3 * gap, 3 * w + 4 * gap, 3)
    top = band + gap
    np.testing.assert_array_equal(
        grid[top : top + h, 2 * gap + w : 2 * gap + 2 * w], viz.colorize(np.full((h, w), 2))
    )
    np.testing.assert_array_equal(grid[top : top + h, 3 * gap + 2 * w : 3 * gap + 3 * w], 255)
    assert (grid[:band] < 128).any()  # title text drawn in black on the white band
    untitled = viz.image_grid(rows, gap=gap)
    assert untitled.shape == (2 * h + 3 * gap, 3 * w + 4 * gap, 3)
    with pytest.raises(ValueError):
        viz.image_grid([[None]])


def test_plot_curves_writes_a_png(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 3.0 / (1 + s), "lr": 1e-3}) for s in range(0, 200, 5)]
    lines += [json.dumps({"step": s, "eval/mean_iou": s / 400}) for s in (100, 200)]
    lines.append('{"step": 205, "loss": ')  # a line still being written
    path.write_text("\n".join(lines) + "\n")
    out = viz.plot_curves(path, tmp_path / "plots" / "curves.png")
    image = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert viz.read_metrics(path)["eval/mean_iou"] == ([100, 200], [0.25, 0.5])
    viz.plot_curves(path, tmp_path / "loss.png", keys=["loss"])
    assert cv2.imread(str(tmp_path / "loss.png")) is not None
    with pytest.raises(KeyError, match="nope"):
        viz.plot_curves(path, tmp_path / "x.png", keys=["nope"])


def test_draw_people_tints_masks_and_draws_skeletons_of_valid_people_only():
    image = np.zeros((64, 64, 3), np.uint8)
    keypoints = np.zeros((2, 17, 3), np.float32)
    keypoints[0, :, :2] = np.stack([np.linspace(10, 50, 17), np.linspace(10, 50, 17)], -1)
    keypoints[0, :, 2] = 1.0
    keypoints[1, :, :2], keypoints[1, :, 2] = 5.0, 1.0
    masks = np.zeros((2, 64, 64), bool)
    masks[0, 40:60, 0:20] = True
    masks[1, 0:10, 50:64] = True
    out = viz.draw_people(image, keypoints, np.array([True, False]), masks)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[50, 10].sum() > 0  # person 0's mask is tinted
    assert out[5, 55].sum() == 0  # person 1 is not valid: nothing drawn
    assert out[30, 30].sum() > 0  # a skeleton point / line of person 0
    assert image.sum() == 0  # input untouched
