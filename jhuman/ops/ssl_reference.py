"""Plain numpy reference of `jhuman.ops.ssl` (joint centres, heatmaps, joint loss, soft centres).

Straightforward loops over images, joints and classes, float64 inside: slow on purpose and easy to check by
eye. It is what tests/ops/test_ssl.py and the benchmark compare the jax.numpy version against; do not use it
in training. Same conventions: (x, y) = (column, row), any leading batch axes, missing joint -> visible False
and centre (0, 0), heatmap scale 4 / (sigma sqrt(2 pi)) of the released code, loss weight 0.05.
"""

from __future__ import annotations

import math

import numpy as np

from jhuman.ops.ssl import HEATMAP_SCALE, JOINT_GROUPS


def joint_centers(labels):
    """int (..., H, W) -> centers (..., 9, 2) float32 (x, y), visible (..., 9) bool; one image at a time."""
    labels = np.asarray(labels)
    *lead, height, width = labels.shape
    flat = labels.reshape(-1, height, width)
    centers = np.zeros((flat.shape[0], len(JOINT_GROUPS), 2), np.float64)
    visible = np.zeros((flat.shape[0], len(JOINT_GROUPS)), bool)
    for n, image in enumerate(flat):
        for joint, classes in enumerate(JOINT_GROUPS):
            mask = np.zeros((height, width), bool)
            for cls in classes:
                mask |= image == cls
            if mask.any():
                rows, cols = np.nonzero(mask)
                centers[n, joint] = (cols.mean(), rows.mean())
                visible[n, joint] = True
    return (
        centers.reshape(*lead, len(JOINT_GROUPS), 2).astype(np.float32),
        visible.reshape(*lead, len(JOINT_GROUPS)),
    )


def soft_joint_centers(probabilities):
    """(..., H, W, C) class probabilities -> probability-weighted centres per joint group, mass > 0.5."""
    probabilities = np.asarray(probabilities, np.float64)
    *lead, height, width, num_classes = probabilities.shape
    flat = probabilities.reshape(-1, height, width, num_classes)
    centers = np.zeros((flat.shape[0], len(JOINT_GROUPS), 2), np.float64)
    visible = np.zeros((flat.shape[0], len(JOINT_GROUPS)), bool)
    rows, cols = np.mgrid[:height, :width]
    for n, image in enumerate(flat):
        for joint, classes in enumerate(JOINT_GROUPS):
            group = sum(image[..., cls] for cls in classes)
            mass = group.sum()
            if mass > 0.5:
                centers[n, joint] = ((group * cols).sum() / mass, (group * rows).sum() / mass)
                visible[n, joint] = True
    return (
        centers.reshape(*lead, len(JOINT_GROUPS), 2).astype(np.float32),
        visible.reshape(*lead, len(JOINT_GROUPS)),
    )


def joint_heatmaps(centers, visible, height, width, sigma=1.0):
    """centers (..., 9, 2), visible (..., 9) -> (..., H, W, 9) float32, one pixel at a time per joint."""
    centers, visible = np.asarray(centers, np.float64), np.asarray(visible, bool)
    lead = centers.shape[:-2]
    flat_c, flat_v = centers.reshape(-1, len(JOINT_GROUPS), 2), visible.reshape(-1, len(JOINT_GROUPS))
    out = np.zeros((flat_c.shape[0], height, width, len(JOINT_GROUPS)), np.float64)
    scale = HEATMAP_SCALE / (sigma * math.sqrt(2.0 * math.pi))
    for n in range(flat_c.shape[0]):
        for joint in range(len(JOINT_GROUPS)):
            if not flat_v[n, joint]:
                continue
            cx, cy = flat_c[n, joint]
            for y in range(height):
                for x in range(width):
                    out[n, y, x, joint] = scale * math.exp(
                        -((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * sigma**2)
                    )
    return out.reshape(*lead, height, width, len(JOINT_GROUPS)).astype(np.float32)


def joint_loss(labels_gt, labels_pred, sigma=1.0, weight=0.05):
    """int (..., H, W) x 2 -> (...,): weight * 0.5 * sum over joints and pixels of (C_pred - C_gt)^2."""
    height, width = np.shape(labels_gt)[-2:]
    heat_gt = joint_heatmaps(*joint_centers(labels_gt), height, width, sigma).astype(np.float64)
    heat_pred = joint_heatmaps(*joint_centers(labels_pred), height, width, sigma).astype(np.float64)
    return (weight * 0.5 * ((heat_pred - heat_gt) ** 2).sum(axis=(-3, -2, -1))).astype(np.float32)
