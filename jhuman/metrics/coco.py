"""COCO keypoint and instance-segmentation evaluation with pycocotools (what PersonLab reports).

Results follow the COCO format: keypoints as 51 numbers [x, y, v] in COCO order at the ORIGINAL image size
with the person score, no 'bbox' key (it would change how loadRes computes areas); masks as RLE (counts
decoded to str) at the original image size. COCOeval keeps the top 20 people per image by score.
"""

from __future__ import annotations

import contextlib
import io
from typing import Iterable, Sequence

import cv2
import numpy as np

KEYPOINT_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "APm": 3, "APl": 4, "AR": 5}
SEGM_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "APm": 4, "APl": 5, "AR": 8}


def keypoint_results(
    image_id: int, keypoints: np.ndarray, scores: np.ndarray, valid: np.ndarray, scale: float = 1.0
) -> list[dict]:
    """One image's people -> COCO keypoint results. keypoints (P, 17, 3) [x, y, score] in network-input
    pixels; `scale` = input pixels per original pixel (coordinates are divided by it)."""
    out = []
    for person in np.flatnonzero(np.asarray(valid)):
        kp = np.asarray(keypoints[person], np.float64).copy()
        kp[:, :2] /= scale
        out.append(
            {
                "image_id": int(image_id),
                "category_id": 1,
                "keypoints": kp.reshape(-1).round(3).tolist(),
                "score": float(scores[person]),
            }
        )
    return out


def mask_to_original(mask: np.ndarray, height: int, width: int, scale: float = 1.0) -> np.ndarray:
    """A mask (S, S) at network-input resolution -> bool (height, width) at the original size.

    The input is the original scaled by `scale` in pixel-index coordinates (x_in = scale * x_orig,
    input_pipeline.coco.eval_example), so original pixel (x, y) reads the mask at (scale x, scale y),
    bilinearly, kept where >= 0.5: the exact inverse of that warp (cv2.resize's half-pixel convention would
    shift every mask by up to half an input pixel, which costs thin limbs several IoU points)."""
    mask = np.asarray(mask, np.float32)
    if scale == 1.0 and mask.shape[:2] == (height, width):
        return mask >= 0.5
    inverse = np.asarray([[scale, 0.0, 0.0], [0.0, scale, 0.0]], np.float64)  # original -> input
    return (
        cv2.warpAffine(
            mask,
            inverse,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        >= 0.5
    )


def mask_results(
    image_id: int,
    masks: np.ndarray,
    scores: np.ndarray,
    valid: np.ndarray,
    height: int,
    width: int,
    scale: float = 1.0,
) -> list[dict]:
    """One image's instance masks (P, S, S) at network-input resolution -> COCO segm results with RLE at the
    original (height, width) (`mask_to_original`); people whose mask is empty there are left out."""
    from pycocotools import mask as mask_utils

    out = []
    for person in np.flatnonzero(np.asarray(valid)):
        full = mask_to_original(masks[person], height, width, scale)
        if not full.any():
            continue
        rle = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append(
            {"image_id": int(image_id), "category_id": 1, "segmentation": rle, "score": float(scores[person])}
        )
    return out


def evaluate(
    gt, results: Sequence[dict], iou_type: str, image_ids: Iterable[int] | None = None, verbose: bool = False
) -> dict[str, float]:
    """COCOeval over `image_ids` (default: every image of `gt`); gt is a COCO object or a JSON path.
    Returns AP, AP50, AP75, APm, APl, AR (NaN where undefined); empty results give zeros (pycocotools cannot
    load an empty result list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("keypoints", "segm"):
        raise ValueError(f"iou_type={iou_type!r} is not one of ['keypoints', 'segm']")
    stats = KEYPOINT_STATS if iou_type == "keypoints" else SEGM_STATS
    if not results:
        return {name: 0.0 for name in stats}
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = gt if isinstance(gt, COCO) else COCO(gt)
        coco_dt = coco_gt.loadRes(list(results))
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = sorted(set(image_ids) if image_ids is not None else coco_gt.getImgIds())
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # pycocotools writes -1 where a statistic is undefined (e.g. no medium-size people): NaN here.
    return {
        name: float(evaluator.stats[i]) if evaluator.stats[i] >= 0 else float("nan")
        for name, i in stats.items()
    }
