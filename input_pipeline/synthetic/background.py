"""Cluttered random backgrounds: gradients or wall/floor splits, random shapes (some textured, some skin-coloured
limb-like capsules so that colour alone does not give people away), sensor noise and defocus blur."""

import cv2
import numpy as np

from input_pipeline.synthetic import texture


def _base(rng, h, w):
    """(H, W, 3) float32: a linear gradient, or a wall above a floor."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = (np.asarray(texture.random_color(rng), np.float32) for _ in range(2))
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * np.pi)
        t = (xx * np.cos(angle) + yy * np.sin(angle)) / (h + w) + 0.5
        return a + (b - a) * np.clip(t, 0, 1)[..., None]
    horizon = rng.uniform(0.3, 0.8) * h
    wall = a * (0.8 + 0.2 * yy / h)[..., None]
    floor = b * (0.7 + 0.3 * (yy - horizon) / max(1.0, h - horizon))[..., None]
    return np.where((yy > horizon)[..., None], floor, wall)


def _shape_points(rng, h, w):
    """A random polygon (n, 2): rotated rectangle, triangle or blob."""
    c = rng.uniform((0, 0), (w, h))
    kind = rng.integers(3)
    if kind == 0:
        sx, sy = rng.uniform(0.05, 0.5, 2) * (w, h)
        a = rng.uniform(0, np.pi) if rng.random() < 0.4 else 0.0
        corners = np.array([[-sx, -sy], [sx, -sy], [sx, sy], [-sx, sy]]) / 2
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return c + corners @ rot.T
    n = 3 if kind == 1 else rng.integers(5, 9)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.05, 0.3) * min(h, w) * rng.uniform(0.6, 1.0, n)
    return c + np.stack([np.cos(ang), np.sin(ang)], 1) * r[:, None]


def render_background(rng, h, w):
    """A cluttered (H, W, 3) uint8 RGB background."""
    img = _base(rng, h, w)
    for _ in range(rng.integers(4, 20)):
        color = texture.random_color(rng)
        kind = rng.random()
        if kind < 0.45:
            pts = np.round(_shape_points(rng, h, w)).astype(np.int32)
            if rng.random() < 0.3:  # textured patch
                mask = np.zeros((h, w), np.uint8)
                cv2.fillPoly(mask, [pts], 1)
                yy, xx = np.nonzero(mask)
                img[yy, xx] = texture.texture_colors(texture.random_garment(rng), yy, xx, rng)
            else:
                cv2.fillPoly(img, [pts], color)
        elif kind < 0.7:
            c = tuple(int(v) for v in rng.uniform((0, 0), (w, h)))
            axes = tuple(int(v) for v in rng.uniform(2, 0.3 * min(h, w), 2))
            cv2.ellipse(img, c, axes, rng.uniform(0, 180), 0, 360, color, -1)
        elif kind < 0.85:
            p0, p1 = (tuple(int(v) for v in rng.uniform((0, 0), (w, h))) for _ in range(2))
            cv2.line(img, p0, p1, color, int(rng.integers(1, max(2, min(h, w) // 20))))
        else:  # a skin-coloured limb-like capsule
            skin = texture.SKIN_TONES[rng.integers(len(texture.SKIN_TONES))]
            p0 = rng.uniform((0, 0), (w, h))
            p1 = p0 + rng.normal(0, 0.15 * min(h, w), 2)
            cv2.line(
                img,
                tuple(int(v) for v in p0),
                tuple(int(v) for v in p1),
                tuple(float(v) for v in skin),
                int(rng.integers(2, max(3, min(h, w) // 12))),
            )
    if rng.random() < 0.4:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    img += rng.normal(0, rng.uniform(0, 8), (h, w, 1)).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
