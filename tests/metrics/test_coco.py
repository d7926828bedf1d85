"""COCO results and pycocotools evaluation on a hand-written ground truth."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from jhuman.metrics import coco


def person(image_id, ann_id, x0, y0, w, h, rng):
    kps = np.zeros((17, 3))
    kps[:, 0] = rng.uniform(x0 + 2, x0 + w - 2, 17)
    kps[:, 1] = rng.uniform(y0 + 2, y0 + h - 2, 17)
    kps[:, 2] = 2
    kps[3, :] = 0  # one unlabelled keypoint
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "area": float(w * h),
        "bbox": [x0, y0, w, h],
        "segmentation": [[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]],
        "keypoints": kps.reshape(-1).tolist(),
        "num_keypoints": 16,
    }


@pytest.fixture
def gt_file(tmp_path):
    rng = np.random.default_rng(0)
    anns = [
        person(1, 1, 10, 10, 60, 120, rng),
        person(1, 2, 100, 20, 50, 110, rng),
        person(2, 3, 30, 40, 70, 140, rng),
    ]
    gt = {
        "images": [
            {"id": 1, "width": 200, "height": 160, "file_name": "1.jpg"},
            {"id": 2, "width": 180, "height": 200, "file_name": "2.jpg"},
        ],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)], "skeleton": []}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return str(path), anns


def test_perfect_keypoints_give_ap_one_and_shifted_ones_less(gt_file):
    path, anns = gt_file
    results = []
    for ann in anns:
        kp = np.asarray(ann["keypoints"], float).reshape(17, 3)
        kp[:, :2] *= 0.5  # network input at half the original size
        kp[:, 2] = 1.0
        results += coco.keypoint_results(
            ann["image_id"], kp[None], np.array([0.9]), np.array([True]), scale=0.5
        )
    assert "bbox" not in results[0] and len(results[0]["keypoints"]) == 51
    perfect = coco.evaluate(path, results, "keypoints")
    assert perfect["AP"] > 0.99 and perfect["AR"] > 0.99
    shifted = [
        dict(r, keypoints=(np.asarray(r["keypoints"]) + np.tile([6.0, 0, 0], 17)).tolist()) for r in results
    ]
    assert coco.evaluate(path, shifted, "keypoints")["AP"] < perfect["AP"]


def test_invalid_people_are_left_out_and_empty_results_give_zeros(gt_file):
    path, _ = gt_file
    kp = np.zeros((2, 17, 3))
    assert coco.keypoint_results(1, kp, np.array([1.0, 1.0]), np.array([False, True]))[0]["score"] == 1.0
    assert len(coco.keypoint_results(1, kp, np.ones(2), np.array([False, False]))) == 0
    assert coco.evaluate(path, [], "segm") == {k: 0.0 for k in coco.SEGM_STATS}
    with pytest.raises(ValueError, match="iou_type"):
        coco.evaluate(path, [], "bbox")


def test_masks_are_encoded_at_the_original_size(gt_file):
    path, anns = gt_file
    results = []
    for ann in anns:
        image = {1: (160, 200), 2: (200, 180)}[ann["image_id"]]
        x0, y0, w, h = ann["bbox"]
        full = np.zeros(image, np.uint8)
        full[y0 : y0 + h + 1, x0 : x0 + w + 1] = 1
        # The network saw the image at scale 0.5, padded to 128 x 128.
        small = np.zeros((128, 128), bool)
        small[: image[0] // 2, : image[1] // 2] = full[::2, ::2]
        results += coco.mask_results(
            ann["image_id"], small[None], np.array([0.8]), np.array([True]), image[0], image[1], scale=0.5
        )
    assert isinstance(results[0]["segmentation"]["counts"], str)
    assert results[0]["segmentation"]["size"] == [160, 200]
    decoded = mask_utils.decode(results[0]["segmentation"])
    assert decoded.shape == (160, 200)
    x0, y0, w, h = anns[0]["bbox"]  # every edge lands within one original pixel of the box
    rows, cols = np.nonzero(decoded)
    assert abs(rows.min() - y0) <= 1 and abs(rows.max() - (y0 + h)) <= 1
    assert abs(cols.min() - x0) <= 1 and abs(cols.max() - (x0 + w)) <= 1
    assert coco.evaluate(path, results, "segm")["AP"] >= 0.9  # IoU 0.95 fails: a 2x coarser input


@pytest.mark.parametrize("scale", [1.25, 1.4117647])
def test_masks_map_back_exactly_from_an_upscaled_input(scale):
    """The eval pipeline's warp (x_in = scale * x_orig, nearest) then mask_results gives thin shapes back
    when the input is finer than the original (cv2.resize's half-pixel convention loses them: IoU ~0.86)."""
    rng = np.random.default_rng(0)
    height, width = 150, 170
    mask = np.zeros((height, width), np.uint8)
    for _ in range(6):
        cv2.line(
            mask,
            tuple(rng.integers(0, width, 2).tolist()),
            tuple(rng.integers(0, height, 2).tolist()),
            1,
            int(rng.integers(2, 6)),
        )
    size = round(max(height, width) * scale) + 3
    warped = cv2.warpAffine(
        mask, np.array([[scale, 0, 0], [0, scale, 0]]), (size, size), flags=cv2.INTER_NEAREST
    )
    result = coco.mask_results(
        3, warped[None].astype(bool), np.ones(1), np.ones(1, bool), height, width, scale
    )
    back = mask_utils.decode(result[0]["segmentation"]).astype(bool)
    iou = (back & (mask > 0)).sum() / (back | (mask > 0)).sum()
    assert iou >= 0.998, iou  # all but a pixel or two (bilinear values exactly at 0.5)
