"""Human-parsing evaluation, the official LIP protocol (Gong et al., CVPR 2017; LIP_SSL's evaluation code).

One confusion matrix accumulated over the whole split (rows = ground truth, columns = prediction); ground truth
outside [0, num_classes) (the ignore label 255) is dropped; background is a class. From it:
  pixel accuracy = trace / total
  mean accuracy  = nanmean_c  diag_c / row_c
  mean IoU       = nanmean_c  diag_c / (row_c + col_c - diag_c)
never averaged per image. A class absent from both ground truth and prediction has IoU NaN and is left out of
the means (a class absent from the ground truth but predicted somewhere has IoU 0).

`evaluate_folders` (`jhuman eval-parsing`) drops nothing silently: 255 is the only ignore value; other ground
truth outside [0, num_classes) is not scored but counted and reported per file (`gt_out_of_range`), and
predictions outside [0, num_classes) on scored pixels count as errors of their ground-truth class (in its
accuracy and IoU, and in the pixel accuracy) and are reported (`pred_out_of_range`). Label maps are
single-channel PNGs; a colour PNG (channels that differ) is refused, naming the file: it is a rendering, not
class indices (a 3-channel PNG whose channels are equal is read as one channel).
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


def scores(confusion, unplaced=None):
    """dict of plain floats: pixel_accuracy, mean_accuracy, mean_iou, per_class_iou (list, NaN = absent).

    unplaced: optional (C,) counts, per ground-truth class, of pixels whose prediction is no class at all
    (outside [0, C)); they are errors: in their class's ground-truth total and the pixel total, in no column.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    extra = np.zeros(confusion.shape[0]) if unplaced is None else np.asarray(unplaced, np.float64)
    diag = np.diag(confusion)
    rows = confusion.sum(axis=1) + extra  # ground-truth pixels per class
    cols = confusion.sum(axis=0)  # predicted pixels per class
    total = confusion.sum() + extra.sum()
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
    """Per-class IoU and the three summary numbers as a text table (percent, 2 decimals; '-' for NaN), then a
    line per kind of out-of-range label when `result` reports any (see evaluate_folders)."""
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
    lines += out_of_range_lines(result, len(ious))
    return "\n".join(lines)


def out_of_range_lines(result, num_classes=LIP_NUM_CLASSES) -> list[str]:
    """One line per kind of out-of-range label that `result` reports (none when there are none)."""
    lines = []
    for key, what, effect in (
        ("gt_out_of_range", f"ground-truth labels outside 0..{num_classes - 1} other than {IGNORE_LABEL}",
         "not scored"),
        ("pred_out_of_range", f"predictions outside 0..{num_classes - 1} on scored pixels",
         "scored as errors"),
    ):  # fmt: skip
        report = result.get(key) or {}
        if report.get("pixels"):
            files = report.get("files", {})
            first = ", ".join(list(files)[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            lines.append(
                f"{what}: {report['pixels']} pixels in {len(files)} maps ({effect}; values "
                f"{report.get('values', [])}): {first}"
            )
    return lines


def _read_ids(ids):
    if ids is None:
        return None
    if isinstance(ids, (str, os.PathLike)):
        with open(ids) as f:
            return [line.strip() for line in f if line.strip()]
    return [str(i) for i in ids]


class LabelMapError(ValueError):
    """A label map that cannot be scored (unreadable, colour, of another size than its ground truth). A bad
    input: `jhuman` exits with status 2."""

    exit_status = 2


def _read_label(path):
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing label map: {path}")
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise LabelMapError(f"cannot read label map: {path}")
    if label.ndim == 3:
        colour = label[..., :3]
        if not (colour == colour[..., :1]).all():
            raise LabelMapError(
                f"{path} is a colour PNG (its channels differ): a rendering, not class indices; write the "
                "single-channel map of class indices (jhuman predict's <stem>.png, not <stem>_overlay.png)"
            )
        label = label[..., 0]  # a 3-channel PNG of a grey map: all channels are equal; take one
    return label


def _out_of_range(report, values, counts, path):
    """Adds a map's out-of-range values (counts of each) to report {'pixels', 'values', 'files'}."""
    if len(values):
        report["pixels"] += int(counts.sum())
        report["values"] = sorted(set(report["values"]) | {int(v) for v in values})
        report["files"][str(path)] = int(counts.sum())


def evaluate_folders(gt_dir, pred_dir, ids=None, num_classes=LIP_NUM_CLASSES):
    """Scores of PNG label maps `pred_dir/<id>.png` against `gt_dir/<id>.png` (one matrix over all images).

    ids: None (every *.png in gt_dir), a path to an id list file (one id a line, as LIP's val_id.txt), or a
    list of ids. Raises FileNotFoundError naming a missing map, and LabelMapError (a ValueError) naming the file
    for an unreadable or colour map and the file and both sizes when a prediction's size differs from its
    ground truth's. The returned dict also holds 'num_images' and, each {'pixels': n, 'values': [distinct
    values], 'files': {file: pixels}}:
      'gt_out_of_range': ground truth outside [0, num_classes) other than 255 (not scored: it is no class and
        not the ignore value; a relabelled class would otherwise vanish from the scores);
      'pred_out_of_range': predictions outside [0, num_classes) on scored pixels (errors of their ground-truth
        class, see `scores(unplaced=...)`).
    """
    ids = _read_ids(ids)
    if ids is None:
        if not os.path.isdir(gt_dir):
            raise FileNotFoundError(f"ground-truth folder not found: {gt_dir}")
        ids = sorted(os.path.splitext(f)[0] for f in os.listdir(gt_dir) if f.lower().endswith(".png"))
    if not ids:
        raise ValueError(f"no images to evaluate (gt_dir={gt_dir})")
    confusion = np.zeros((num_classes, num_classes), np.int64)
    unplaced = np.zeros(num_classes, np.int64)
    gt_report = {"pixels": 0, "values": [], "files": {}}
    pred_report = {"pixels": 0, "values": [], "files": {}}
    for image_id in ids:
        gt_path = os.path.join(gt_dir, f"{image_id}.png")
        pred_path = os.path.join(pred_dir, f"{image_id}.png")
        gt = _read_label(gt_path).astype(np.int64)
        pred = _read_label(pred_path).astype(np.int64)
        if gt.shape != pred.shape:
            raise LabelMapError(
                f"size mismatch for {pred_path}: prediction {pred.shape[1]}x{pred.shape[0]} "
                f"(WxH) vs ground truth {gt.shape[1]}x{gt.shape[0]} ({gt_path})"
            )
        scored = (gt >= 0) & (gt < num_classes)
        _out_of_range(gt_report, *np.unique(gt[~scored & (gt != IGNORE_LABEL)], return_counts=True), gt_path)
        bad = scored & ((pred < 0) | (pred >= num_classes))
        _out_of_range(pred_report, *np.unique(pred[bad], return_counts=True), pred_path)
        unplaced += np.bincount(gt[bad], minlength=num_classes)
        good = scored & ~bad
        confusion += confusion_matrix(gt[good], pred[good], num_classes)
    result = scores(confusion, unplaced)
    result["num_images"] = len(ids)
    result["gt_out_of_range"] = gt_report
    result["pred_out_of_range"] = pred_report
    return result
