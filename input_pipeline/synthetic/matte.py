"""Soft alpha mattes for drawn people and the 'over' compositing of people onto a background.

A person's alpha is its hard silhouette slightly feathered, a wider soft halo around the hair and a few thin
anti-aliased hair strands sticking out of it. The person's foreground colour is defined wherever its alpha is
positive: its own colours inside the silhouette, the hair colour on strands, and elsewhere the nearby colours
(normalised convolution), so that image == alpha * foreground + (1 - alpha) * background holds by construction.
"""

import cv2
import numpy as np

from input_pipeline.synthetic import outfit as of
from input_pipeline.synthetic import skeleton as sk

_EDGE_KSIZE, _EDGE_SIGMA = 5, 0.7  # feathering of every silhouette edge
_HAIR_KSIZE, _HAIR_SIGMA = 9, 1.6  # soft halo around hair
_FILL_KSIZE = 11  # must cover both kernels: colour extension for halo pixels


def _strands(hair, mask, skeleton, rng):
    """(H, W) float32 alpha of thin hair strands leaving the hair boundary outwards."""
    h, w = hair.shape
    out = np.zeros((h, w), np.uint8)
    border = hair & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(border)
    if len(xs) == 0:
        return out.astype(np.float32)
    n = int(rng.integers(10, 40))
    pick = rng.integers(0, len(xs), n)
    start = np.stack([xs[pick], ys[pick]], 1).astype(np.float64)  # (n, 2) (x, y)
    out_dir = start - skeleton.points[sk.HEAD]
    out_dir /= np.maximum(np.linalg.norm(out_dir, axis=1, keepdims=True), 1e-6)
    turn = rng.uniform(-0.6, 0.6, n)
    c, s = np.cos(turn), np.sin(turn)
    d = np.stack([out_dir[:, 0] * c - out_dir[:, 1] * s, out_dir[:, 0] * s + out_dir[:, 1] * c], 1)
    length = np.clip(rng.uniform(0.01, 0.035, n) * skeleton.scale, 2.0, 9.0)[:, None]
    bend = np.stack([-d[:, 1], d[:, 0]], 1) * rng.uniform(-0.5, 0.5, (n, 1)) * length
    pts = np.stack([start, start + d * length * 0.5 + bend * 0.5, start + d * length + bend], 1)  # (n, 3, 2)
    pts = np.round(pts * 16).astype(np.int32)
    for group, opacity in zip(np.array_split(np.arange(n), 3), (70, 120, 180)):
        if len(group):
            cv2.polylines(out, list(pts[group]), False, int(opacity), 1, cv2.LINE_AA, 4)
    return out.astype(np.float32) / 255.0


def person_matte(raster, colors, rng):
    """Alpha (H, W) float32 in [0, 1] and foreground (H, W, 3) float32 (0..255) of one drawn person.

    raster: body.PersonRaster; colors: (H, W, 3) float32 from body.colorize.
    """
    mask = raster.mask
    hair = raster.parts == of.HAIR  # (H, W) bool
    m = mask.astype(np.float32)
    alpha = cv2.GaussianBlur(m, (_EDGE_KSIZE,) * 2, _EDGE_SIGMA)
    fg = colors.copy()
    if hair.any():
        alpha = np.maximum(alpha, cv2.GaussianBlur(hair.astype(np.float32), (_HAIR_KSIZE,) * 2, _HAIR_SIGMA))
    weight = cv2.boxFilter(m, -1, (_FILL_KSIZE,) * 2, normalize=False)
    spread = cv2.boxFilter(colors * m[..., None], -1, (_FILL_KSIZE,) * 2, normalize=False)
    outside = ~mask & (weight > 0)
    fg[outside] = spread[outside] / weight[outside][:, None]
    if hair.any():
        strands = _strands(hair, mask, raster.skeleton, rng)
        on = (strands > 0) & ~mask
        hair_color = colors[hair].mean(0)
        fg[on] = hair_color
        alpha = np.maximum(alpha, strands)
    alpha[mask] = np.maximum(alpha[mask], 0.5)  # the labelled silhouette is at least half opaque
    return np.clip(alpha, 0, 1), fg


def over(alpha_top, fg_top, alpha, premult):
    """Porter-Duff 'over' of one layer onto accumulated (alpha (H, W), premultiplied colour (H, W, 3))."""
    a = alpha_top[..., None]
    return alpha_top + (1 - alpha_top) * alpha, a * fg_top + (1 - a) * premult
