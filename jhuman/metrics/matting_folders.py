"""`jhuman eval-matting`: the matting metrics (jhuman.metrics.matting) over folders of alpha PNGs.

Predictions `pred_dir/<name>.png` are paired with ground truths `gt_dir/<name>.png` (every PNG of gt_dir) and
trimaps `trimap_dir/<name>.png` (128 = unknown; without a trimap folder the whole image is the region, so the
Deep Image Matting columns then cover every pixel). Alpha PNGs are single-channel (or grey stored as RGB) 8- or
16-bit, read as value / the type's maximum; each image is scored by MattingScores.add, the result being the
mean over images (both protocols) plus 'num_images'.
"""

from __future__ import annotations

import os

import numpy as np

from jhuman.metrics import matting as matting_metrics


class AlphaMapError(ValueError):
    """An alpha or trimap PNG that cannot be scored (missing, unreadable, colour, of another size than its
    ground truth). A bad input: `jhuman` exits with status 2."""

    exit_status = 2


def read_alpha_png(path: str, what: str = "alpha") -> np.ndarray:
    """(H, W) float64 in [0, 1] (8-bit / 255, 16-bit / 65535); AlphaMapError naming the file otherwise."""
    import cv2

    if not os.path.isfile(path):
        raise AlphaMapError(f"{what} PNG not found: {path}")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise AlphaMapError(f"cannot decode {what} PNG {path}")
    if image.ndim == 3:
        if image.shape[2] == 4 or not all(np.array_equal(image[..., 0], image[..., c]) for c in (1, 2)):
            raise AlphaMapError(f"{what} PNG {path} has colour channels; expected a single-channel map")
        image = image[..., 0]
    if image.dtype not in (np.uint8, np.uint16):
        raise AlphaMapError(f"{what} PNG {path} is {image.dtype}; expected 8 or 16 bit")
    return image.astype(np.float64) / np.iinfo(image.dtype).max


def read_trimap_png(path: str) -> np.ndarray:
    """(H, W) uint8 with 0 / 128 / 255 (anything not 0 or 255 reads as unknown, 128)."""
    values = np.round(read_alpha_png(path, "trimap") * 255).astype(np.uint8)
    return np.where((values == 0) | (values == 255), values, 128).astype(np.uint8)


def evaluate_folders(pred_dir: str, gt_dir: str, trimap_dir: str | None = None) -> dict:
    """MattingScores' means over every ground-truth PNG of gt_dir, plus 'num_images' (see module docstring).
    Raises FileNotFoundError for a missing folder and AlphaMapError naming the file for a missing, unreadable
    or mis-sized map."""
    for name, folder in (("--gt_dir", gt_dir), ("--pred_dir", pred_dir), ("--trimap_dir", trimap_dir)):
        if folder is not None and not os.path.isdir(folder):
            raise FileNotFoundError(f"{name} {folder}: not a folder")
    names = sorted(f for f in os.listdir(gt_dir) if f.lower().endswith(".png"))
    if not names:
        raise AlphaMapError(f"no PNG files in --gt_dir {gt_dir}")
    scores = matting_metrics.MattingScores()
    for name in names:
        gt = read_alpha_png(os.path.join(gt_dir, name), "ground-truth alpha")
        pred_path = os.path.join(pred_dir, name)
        pred = read_alpha_png(pred_path, "predicted alpha")
        if pred.shape != gt.shape:
            raise AlphaMapError(
                f"size mismatch for {pred_path}: prediction {pred.shape[1]}x{pred.shape[0]} (WxH) vs ground "
                f"truth {gt.shape[1]}x{gt.shape[0]} ({os.path.join(gt_dir, name)})"
            )
        if trimap_dir is None:
            trimap = np.full(gt.shape, 128, np.uint8)
        else:
            trimap = read_trimap_png(os.path.join(trimap_dir, name))
            if trimap.shape != gt.shape:
                raise AlphaMapError(
                    f"size mismatch for trimap {os.path.join(trimap_dir, name)}: {trimap.shape[1]}x"
                    f"{trimap.shape[0]} (WxH) vs ground truth {gt.shape[1]}x{gt.shape[0]}"
                )
        scores.add(pred, gt, trimap)
    result = {k: float(v) for k, v in scores.result().items() if k != "count"}
    result["num_images"] = len(names)
    return result
