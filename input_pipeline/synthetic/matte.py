"""Soft alpha mattes for drawn people and the 'over' compositing of people onto a background.

A person's alpha is its hard silhouette slightly feathered, a wider soft halo around the hair and a few thin
anti-aliased hair strands sticking out of it. The person's foreground colour is defined wherever its alpha is
positive: its own colours inside the silhouette, the hair colour on strands, and elsewhere the nearby colours
(normalised convolution), so that image == alpha * foreground + (1 - alpha) * background holds by construction.

`soften` adds what matting data needs beyond that (the synthetic matting set, synthetic/matting_format.py): arm
and leg edges blurred as by motion, and a transparency gradient across a garment, so that soft alpha also lies
away from the hard silhouette and the trimap's unknown band is not trivial. Scenes of the other tasks do not use
it (their pictures stay as they were).
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


_LIMBS = (
    of.LEFT_ARM,
    of.RIGHT_ARM,
    of.LEFT_LEG,
    of.RIGHT_LEG,
    of.GLOVE,
    of.SOCKS,
    of.LEFT_SHOE,
    of.RIGHT_SHOE,
)
_SHEER = (of.SKIRT, of.DRESS, of.SCARF, of.HAT, of.COAT)  # garments that may turn translucent
_LIMB_SIGMA = (0.006, 0.015)  # blur of limb edges, fraction of the image's long side (at least 1 px)
_SHEER_OPACITY = (0.25, 0.7)  # opacity at the far end of a garment's transparency gradient


def _disk(radius):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def soften(alpha, foreground, parts, rng):
    """Softer matte of one person for matting data: (alpha (H, W) float32 in [0, 1], foreground (H, W, 3) uint8).

    alpha, foreground: the person's matte and colours (Scene.alpha / Scene.foreground of a single person);
    parts: (H, W) LIP classes of that person. Arm and leg edges (with gloves, socks, shoes) are replaced by the
    person's silhouette blurred with sigma drawn in _LIMB_SIGMA of the long side (as by motion; kept sharp where
    a limb meets the rest of the body); with probability 0.7 one garment of _SHEER (if worn) becomes translucent,
    its opacity falling linearly across it in a random direction to a value drawn in _SHEER_OPACITY. Colours are
    extended (normalised convolution) to every pixel whose alpha became positive.
    """
    h, w = alpha.shape
    known = alpha > 0  # where the foreground colour is defined
    alpha = alpha.astype(np.float32, copy=True)
    fg = foreground.astype(np.float32)
    person = parts > 0
    limbs = np.isin(parts, _LIMBS)
    sigma = max(1.0, rng.uniform(*_LIMB_SIGMA) * max(h, w))
    reach = int(np.ceil(3 * sigma))
    if limbs.any():
        ksize = 2 * reach + 1
        blurred = cv2.GaussianBlur(person.astype(np.float32), (ksize, ksize), sigma)
        near = cv2.dilate(limbs.astype(np.uint8), _disk(reach)).astype(bool)
        body = cv2.dilate((person & ~limbs).astype(np.uint8), _disk(reach)).astype(bool)
        region = near & ~body
        alpha[region] = np.maximum(blurred[region], np.where(person[region], 0.0, alpha[region]))
    if rng.random() < 0.7:
        worn = [c for c in _SHEER if (parts == c).any()]
        if worn:
            garment = parts == worn[int(rng.integers(len(worn)))]
            ys, xs = np.nonzero(garment)
            angle = rng.uniform(0, 2 * np.pi)
            t = xs * np.cos(angle) + ys * np.sin(angle)  # position along the gradient
            t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
            low = rng.uniform(*_SHEER_OPACITY)
            alpha[ys, xs] *= (1 - t * (1 - low)).astype(np.float32)
    grown = (alpha > 0) & ~known
    if grown.any():
        k = (2 * reach + 3,) * 2
        weight = cv2.boxFilter(known.astype(np.float32), -1, k, normalize=False)
        spread = cv2.boxFilter(fg * known[..., None], -1, k, normalize=False)
        fill = grown & (weight > 0)
        fg[fill] = spread[fill] / weight[fill][:, None]
    return np.clip(alpha, 0, 1), np.clip(np.round(fg), 0, 255).astype(np.uint8)
