"""Human-parsing evaluation, the official LIP protocol (Gong et al., CVPR 2017; LIP_SSL's evaluation code).

One confusion matrix accumulated over the whole split (rows = ground truth, columns = prediction); ground truth
outside [0, num_classes) (the ignore label 255) is dropped; background is a class. From it:
  pixel accuracy = trace / total
  mean accuracy  = nanmean_c  diag_c / row_c
  mean IoU       = nanmean_c  diag_c / (row_c + col_c - diag_c)
never averaged per image. A class absent from both ground truth and prediction has IoU NaN and is left out of
the means (a class absent from the ground truth but predicted somewhere has IoU 0).
"""

import os

import numpy as np

from jhuman.classes import IGNORE_LABEL, LIP_CLASSES, LIP_NUM_CLASSES


def confusion_matrix(gt, pred, num_classes=LIP_NUM_CLASSES, ignore_label=IGNORE_LABEL):
    """(C, C) int64 counts, rows = ground truth, columns = prediction; gt outside [0, C) is dropped.

    gt and pred: integer arrays of any equal shape. `ignore_label` is documentation of the usual value: any gt
    outside [0, num_classes) is dropped whatever it is. A prediction outside [0, C) on a counted pixel is an
    error (it cannot be placed in the matrix).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred shapes differ: {gt.shape} vs {pred.shape}")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    keep = (gt >= 0) & (gt < num_classes)
    if ignore_label is not None:
        keep &= gt != ignore_label
    gt, pred = gt[keep], pred[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(
            f"prediction values must lie in [0, {num_classes}), got [{pred.min()}, {pred.max()}]"
        )
    counts = np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def confusion_matrix_jax(gt, pred, num_classes, valid=None):
    """(C, C) int32 confusion matrix as a jittable jnp function (accumulate it on device over a split).

    gt, pred: integer arrays of equal shape, e.g. (B, H, W); gt outside [0, C) is dropped; `valid`: optional
    boolean mask broadcastable to gt (e.g. (B, 1, 1) for padded batch entries), False pixels are dropped.
    Predictions are clipped into [0, C). One scatter-add of static length C*C, no loop over classes.
    int32 holds 2**31 - 1 pixels per cell: accumulate per-batch matrices into an int64 host sum for huge splits.
    """
    import jax.numpy as jnp

    gt = jnp.asarray(gt).astype(jnp.int32)
    pred = jnp.clip(jnp.asarray(pred).astype(jnp.int32), 0, num_classes - 1)
    keep = (gt >= 0) & (gt < num_classes)
    if valid is not None:
        keep = keep & jnp.broadcast_to(jnp.asarray(valid, bool), gt.shape)
    index = jnp.where(keep, gt * num_classes + pred, 0).reshape(-1)
    counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index].add(keep.reshape(-1).astype(jnp.int32))
    return counts.reshape(num_classes, num_classes)


def scores(confusion):
    """dict of plain floats: pixel_accuracy, mean_accuracy, mean_iou, per_class_iou (list, NaN = absent)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    diag = np.diag(confusion)
    rows = confusion.sum(axis=1)  # ground-truth pixels per class
    cols = confusion.sum(axis=0)  # predicted pixels per class
    total = confusion.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(rows > 0, diag / rows, np.nan)
        union = rows + cols - diag
        iou = np.where(union > 0, diag / union, np.nan)
    pixel_accuracy = float(diag.sum() / total) if total > 0 else float("nan")

    def nanmean(x):
        return float(np.mean(x[~np.isnan(x)])) if np.any(~np.isnan(x)) else float("nan")

    return {
        "pixel_accuracy": pixel_accuracy,
        "mean_accuracy": nanmean(accuracy),
        "mean_iou": nanmean(iou),
        "per_class_iou": [float(v) for v in iou],
    }


def format_table(result, class_names=LIP_CLASSES):
    """Per-class IoU and the three summary numbers as a text table (percent, 2 decimals; '-' for NaN)."""
    ious = result["per_class_iou"]
    names = list(class_names) if class_names is not None else []
    names += [f"class {i}" for i in range(len(names), len(ious))]
    width = max([len(n) for n in names[: len(ious)]] + [len("pixel accuracy")])

    def pct(v):
        return "-" if v is None or np.isnan(v) else f"{100.0 * v:.2f}"

    lines = [f"{'class':<{width}}  {'IoU (%)':>8}", "-" * (width + 10)]
    lines += [f"{i:>2} {name:<{width - 3}}  {pct(v):>8}" for i, (name, v) in enumerate(zip(names, ious))]
    lines.append("-" * (width + 10))
    for key, label in (
        ("pixel_accuracy", "pixel accuracy"),
        ("mean_accuracy", "mean accuracy"),
        ("mean_iou", "mean IoU"),
    ):
        lines.append(f"{label:<{width}}  {pct(result[key]):>8}")
    return "\n".join(lines)


def _read_ids(ids):
    if ids is None:
        return None
    if isinstance(ids, (str, os.PathLike)):
        with open(ids) as f:
            return [line.strip() for line in f if line.strip()]
    return [str(i) for i in ids]


def _read_label(path):
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing label map: {path}")
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise ValueError(f"cannot read label map: {path}")
    if label.ndim == 3:  # a colour PNG of a grey map: all channels are equal; take one
        label = label[..., 0]
    return label


def evaluate_folders(gt_dir, pred_dir, ids=None, num_classes=LIP_NUM_CLASSES):
    """Scores of PNG label maps `pred_dir/<id>.png` against `gt_dir/<id>.png` (one matrix over all images).

    ids: None (every *.png in gt_dir), a path to an id list file (one id a line, as LIP's val_id.txt), or a
    list of ids. Raises FileNotFoundError / ValueError naming the file for a missing or unreadable map and
    ValueError naming the file and both sizes when a prediction's size differs from its ground truth's.
    The returned dict also holds 'num_images'.
    """
    ids = _read_ids(ids)
    if ids is None:
        if not os.path.isdir(gt_dir):
            raise FileNotFoundError(f"ground-truth folder not found: {gt_dir}")
        ids = sorted(os.path.splitext(f)[0] for f in os.listdir(gt_dir) if f.lower().endswith(".png"))
    if not ids:
        raise ValueError(f"no images to evaluate (gt_dir={gt_dir})")
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for image_id in ids:
        gt_path = os.path.join(gt_dir, f"{image_id}.png")
        pred_path = os.path.join(pred_dir, f"{image_id}.png")
        gt = _read_label(gt_path)
        pred = _read_label(pred_path)
        if gt.shape != pred.shape:
            raise ValueError(
                f"size mismatch for {pred_path}: prediction {pred.shape[1]}x{pred.shape[0]} "
                f"(WxH) vs ground truth {gt.shape[1]}x{gt.shape[0]} ({gt_path})"
            )
        try:
            confusion += confusion_matrix(gt, pred, num_classes)
        except ValueError as e:
            raise ValueError(f"{pred_path}: {e}") from None
    result = scores(confusion)
    result["num_images"] = len(ids)
    return result
