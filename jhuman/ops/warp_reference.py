"""Plain numpy reference of `jhuman.ops.warp` (limb transforms, heatmaps, limb prior, limb warps).

Straightforward and float64 inside, sharing only the tables and constants with the jax.numpy version: a loop
over people and limbs, the transforms by `numpy.linalg.lstsq` on the 2n x 4 linear system of the similarity,
the heatmaps and prior by the released code's general Gaussian map (the a, b, c form with the angle
theta = atan2(dy, -dx)), the warp one limb at a time vectorised over pixels (as the released TensorFlow layer
did). It is what tests/ops/test_warp.py and the warp benchmark compare against; do not use it in training.
The same conventions and fallbacks as `jhuman.ops.warp` (see its docstring).
"""

from __future__ import annotations

import numpy as np

from jhuman.ops.warp import (
    HEATMAP_SIGMA,
    LIMBS,
    MIN_SPREAD,
    NUM_LIMBS,
    PRIOR_ACROSS_VARIANCE,
    PRIOR_LENGTH_DIVISOR,
    PRIOR_MIN_VARIANCE,
    PRIOR_NORM_EPS,
)


def _visible(visible, joints):
    return np.ones(joints.shape[:-1], bool) if visible is None else np.asarray(visible, bool)


def similarity_lstsq(target_points, source_points):
    """(a0, a1, b0, b1) minimising sum |[a1 x - b1 y + a0, b1 x + a1 y + b0] - source|^2 over (n, 2) points."""
    rows, rhs = [], []
    for (x, y), (sx, sy) in zip(target_points, source_points):
        rows += [[1.0, x, 0.0, -y], [0.0, y, 1.0, x]]
        rhs += [sx, sy]
    solution, *_ = np.linalg.lstsq(np.asarray(rows, np.float64), np.asarray(rhs, np.float64), rcond=None)
    return solution


def limb_transforms(src_joints, tgt_joints, src_visible=None, tgt_visible=None):
    src = np.asarray(src_joints, np.float64)
    tgt = np.asarray(tgt_joints, np.float64)
    used = _visible(src_visible, src) & _visible(tgt_visible, tgt)
    lead = src.shape[:-2]
    src, tgt, used = src.reshape(-1, 14, 2), tgt.reshape(-1, 14, 2), used.reshape(-1, 14)
    out = np.zeros((src.shape[0], NUM_LIMBS, 2, 3))
    for n in range(src.shape[0]):
        for l, limb in enumerate(LIMBS):
            joints = [j for j in limb if used[n, j]]
            a0, a1, b0, b1 = 0.0, 1.0, 0.0, 0.0  # identity when no joint is used
            if joints:
                p, q = src[n, joints], tgt[n, joints]
                spread = np.sum((q - q.mean(axis=0)) ** 2)
                if len(joints) >= 2 and spread >= MIN_SPREAD:
                    a0, a1, b0, b1 = similarity_lstsq(q, p)
                else:  # translation only: target centroid onto source centroid
                    a0, b0 = p.mean(axis=0) - q.mean(axis=0)
            out[n, l] = [[a1, -b1, a0], [b1, a1, b0]]
    return out.reshape(*lead, NUM_LIMBS, 2, 3).astype(np.float32)


def gaussian_map(height, width, center, var_x, var_y, theta):
    """The released make_gaussian_map: exp(-(a dx^2 + 2 b dx dy + c dy^2)), (height, width) float64."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    a = np.cos(theta) ** 2 / (2 * var_x) + np.sin(theta) ** 2 / (2 * var_y)
    b = -np.sin(2 * theta) / (4 * var_x) + np.sin(2 * theta) / (4 * var_y)
    c = np.sin(theta) ** 2 / (2 * var_x) + np.cos(theta) ** 2 / (2 * var_y)
    dx, dy = xs - center[0], ys - center[1]
    return np.exp(-(a * dx * dx + 2 * b * dx * dy + c * dy * dy))


def joint_heatmaps(joints, visible, height, width, sigma=HEATMAP_SIGMA, scale=1.0):
    joints = np.asarray(joints, np.float64)
    visible = _visible(visible, joints)
    lead = joints.shape[:-2]
    flat, flat_visible = joints.reshape(-1, 14, 2), visible.reshape(-1, 14)
    out = np.zeros((flat.shape[0], height, width, 14))
    for n in range(flat.shape[0]):
        for j in range(14):
            if flat_visible[n, j]:
                out[n, :, :, j] = gaussian_map(height, width, flat[n, j] * scale, sigma**2, sigma**2, 0.0)
    return out.reshape(*lead, height, width, 14).astype(np.float32)


def limb_prior(joints, visible, height, width, scale=1.0):
    joints = np.asarray(joints, np.float64)
    visible = _visible(visible, joints)
    lead = joints.shape[:-2]
    flat, flat_visible = joints.reshape(-1, 14, 2), visible.reshape(-1, 14)
    out = np.zeros((flat.shape[0], height, width, NUM_LIMBS + 1))
    for n in range(flat.shape[0]):
        for l, limb in enumerate(LIMBS):
            if not all(flat_visible[n, j] for j in limb):
                continue
            p = flat[n, list(limb)]
            if len(limb) == 4:  # torso: shoulder mean to hip mean
                p = np.stack([p[0:2].mean(axis=0), p[2:4].mean(axis=0)])
            center = p.mean(axis=0)
            var_along = max(PRIOR_MIN_VARIANCE * scale**2, np.sum((p[1] - p[0]) ** 2) / PRIOR_LENGTH_DIVISOR)
            theta = np.arctan2(p[1, 1] - p[0, 1], p[0, 0] - p[1, 0])
            mask = gaussian_map(height, width, center, var_along, PRIOR_ACROSS_VARIANCE[l] * scale**2, theta)
            out[n, :, :, l + 1] = mask / (mask.max() + PRIOR_NORM_EPS)
        out[n, :, :, 0] = 1.0 - out[n, :, :, 1:].max(axis=-1)
    return out.reshape(*lead, height, width, NUM_LIMBS + 1).astype(np.float32)


def bilinear_replicate(image, sx, sy):
    """image (H, W, C) sampled at float (h, w) positions sx, sy, clamped onto the image (replicated border)."""
    height, width = image.shape[:2]
    sx, sy = np.clip(sx, 0, width - 1), np.clip(sy, 0, height - 1)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    top = (1 - fx) * image[y0, x0] + fx * image[y0, x1]
    bottom = (1 - fx) * image[y1, x0] + fx * image[y1, x1]
    return (1 - fy) * top + fy * bottom


def warp_limbs(images, masks, transforms):
    """(B, H, W, C), (B, H, W, 11), (B, 10, 2, 3) -> (B, H, W, 10, C) float32: a loop over images and limbs."""
    images = np.asarray(images, np.float64)
    masks = np.asarray(masks, np.float64)
    transforms = np.asarray(transforms, np.float64)
    batch, height, width, channels = images.shape
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    out = np.zeros((batch, height, width, NUM_LIMBS, channels))
    for b in range(batch):
        for l in range(NUM_LIMBS):
            layer = images[b] * masks[b, :, :, l + 1 : l + 2]
            m = transforms[b, l]
            sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
            sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
            out[b, :, :, l] = bilinear_replicate(layer, sx, sy)
    return out.astype(np.float32)


warp_limbs_reference = warp_limbs  # the name the warp benchmark imports
