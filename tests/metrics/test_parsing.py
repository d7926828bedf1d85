"""The LIP evaluation protocol: confusion matrix (numpy and jax), scores, table, PNG folders."""

import math

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.classes import LIP_CLASSES
from jhuman.metrics import parsing


def _loop_confusion(gt, pred, c):
    """The definition, one pixel at a time."""
    m = np.zeros((c, c), np.int64)
    for g, p in zip(gt.ravel(), pred.ravel()):
        if 0 <= g < c:
            m[g, p] += 1
    return m


def test_hand_worked_example():
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 2]])
    m = parsing.confusion_matrix(gt, pred, num_classes=3)
    np.testing.assert_array_equal(m, [[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert m.dtype == np.int64
    s = parsing.scores(m)
    assert s["pixel_accuracy"] == pytest.approx(5 / 7)
    assert s["mean_accuracy"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    # IoU: class 0: 2 / (3 + 3 - 2); class 1: 2 / (2 + 3 - 2); class 2: 1 / (2 + 1 - 1)
    assert s["per_class_iou"] == pytest.approx([2 / 4, 2 / 3, 1 / 2])
    assert s["mean_iou"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert all(type(s[k]) is float for k in ("pixel_accuracy", "mean_accuracy", "mean_iou"))
    assert all(type(v) is float for v in s["per_class_iou"])


def test_random_maps_match_a_pixel_loop():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 20, (3, 17, 13)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 20, gt.shape)
    np.testing.assert_array_equal(parsing.confusion_matrix(gt, pred), _loop_confusion(gt, pred, 20))


def test_absent_classes_are_nan_and_left_out_of_means():
    # 3 classes: class 2 absent from both -> NaN; class 1 absent from gt but predicted -> IoU 0, accuracy NaN.
    gt = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 1, 1])
    s = parsing.scores(parsing.confusion_matrix(gt, pred, num_classes=3))
    assert s["per_class_iou"][0] == pytest.approx(0.5)
    assert s["per_class_iou"][1] == 0.0
    assert math.isnan(s["per_class_iou"][2])
    assert s["mean_iou"] == pytest.approx(0.25)
    assert s["mean_accuracy"] == pytest.approx(0.5)
    assert s["pixel_accuracy"] == pytest.approx(0.5)
    empty = parsing.scores(np.zeros((3, 3), np.int64))
    assert all(math.isnan(empty[k]) for k in ("pixel_accuracy", "mean_accuracy", "mean_iou"))


def test_one_matrix_over_images_not_a_mean_over_images():
    big_gt, big_pred = np.zeros((10, 10), int), np.zeros((10, 10), int)  # 100 correct pixels of class 0
    small_gt, small_pred = np.ones((1, 2), int), np.zeros((1, 2), int)  # 2 wrong pixels
    m = parsing.confusion_matrix(big_gt, big_pred, 2) + parsing.confusion_matrix(small_gt, small_pred, 2)
    assert parsing.scores(m)["pixel_accuracy"] == pytest.approx(100 / 102)


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        parsing.confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"\[0, 20\)"):
        parsing.confusion_matrix(np.zeros((2, 2), int), np.full((2, 2), 20))


def test_jax_version_equals_numpy_inside_jit():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 20, (4, 16, 16)).astype(np.int32)
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 20, gt.shape).astype(np.int32)
    valid = np.array([True, True, False, True])
    fn = jax.jit(parsing.confusion_matrix_jax, static_argnums=2)
    m = fn(jnp.asarray(gt), jnp.asarray(pred), 20)
    assert m.dtype == jnp.int32 and m.shape == (20, 20)
    np.testing.assert_array_equal(np.asarray(m), parsing.confusion_matrix(gt, pred))
    masked = fn(jnp.asarray(gt), jnp.asarray(pred), 20, jnp.asarray(valid)[:, None, None])
    np.testing.assert_array_equal(np.asarray(masked), parsing.confusion_matrix(gt[valid], pred[valid]))
    pixel_mask = rng.random(gt.shape) < 0.5
    masked = fn(jnp.asarray(gt), jnp.asarray(pred), 20, jnp.asarray(pixel_mask))
    np.testing.assert_array_equal(
        np.asarray(masked), parsing.confusion_matrix(gt[pixel_mask], pred[pixel_mask])
    )


def test_format_table():
    s = parsing.scores(parsing.confusion_matrix(np.arange(20), np.arange(20)))
    s["per_class_iou"][3] = float("nan")
    table = parsing.format_table(s)
    for name in LIP_CLASSES:
        assert name in table
    assert (
        "100.00" in table and "mean IoU" in table and "pixel accuracy" in table and "mean accuracy" in table
    )
    assert len(table.splitlines()) == 20 + 2 + 1 + 3


def _write(folder, name, label):
    folder.mkdir(exist_ok=True)
    assert cv2.imwrite(str(folder / f"{name}.png"), label.astype(np.uint8))


def test_evaluate_folders(tmp_path):
    rng = np.random.default_rng(2)
    gts, preds = [], []
    for i, (h, w) in enumerate([(20, 30), (31, 17), (8, 8)]):
        gt = rng.integers(0, 20, (h, w)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, gt % 20, rng.integers(0, 20, gt.shape)).astype(np.uint8)
        pred[gt == 255] = 0
        _write(tmp_path / "gt", f"img{i}", gt)
        _write(tmp_path / "pred", f"img{i}", pred)
        gts.append(gt.ravel())
        preds.append(pred.ravel())
    expected = parsing.scores(parsing.confusion_matrix(np.concatenate(gts), np.concatenate(preds)))
    result = parsing.evaluate_folders(tmp_path / "gt", tmp_path / "pred")
    assert result["num_images"] == 3
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou"):
        assert result[key] == pytest.approx(expected[key])
    np.testing.assert_allclose(result["per_class_iou"], expected["per_class_iou"])
    # ids from a list file (LIP's val_id.txt) and from a list
    (tmp_path / "ids.txt").write_text("img0\nimg2\n\n")
    by_file = parsing.evaluate_folders(tmp_path / "gt", tmp_path / "pred", ids=str(tmp_path / "ids.txt"))
    by_list = parsing.evaluate_folders(tmp_path / "gt", tmp_path / "pred", ids=["img0", "img2"])
    assert by_file["num_images"] == 2 and by_file == by_list


def test_evaluate_folders_errors(tmp_path):
    _write(tmp_path / "gt", "a", np.zeros((10, 12)))
    _write(tmp_path / "pred", "b", np.zeros((10, 12)))
    with pytest.raises(FileNotFoundError, match=r"pred.a\.png"):
        parsing.evaluate_folders(tmp_path / "gt", tmp_path / "pred")
    (tmp_path / "pred" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"a\.png"):
        parsing.evaluate_folders(tmp_path / "gt", tmp_path / "pred")
    _write(tmp_path / "pred", "a", np.zeros((11, 12)))
    with pytest.raises(ValueError, match=r"a\.png.*12x11.*12x10"):
        parsing.evaluate_folders(tmp_path / "gt", tmp_path / "pred")
    with pytest.raises(FileNotFoundError, match="missing"):
        parsing.evaluate_folders(tmp_path / "gt", tmp_path / "pred", ids=["missing"])
