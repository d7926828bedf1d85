"""Colours and simple procedural textures (solid, stripes, checks, noise), evaluated at pixel coordinates."""

import colorsys
import dataclasses

import numpy as np

TEXTURE_KINDS = ("solid", "stripes", "checks", "noise")
_TEXTURE_PROBS = (0.4, 0.25, 0.15, 0.2)

SKIN_TONES = np.array(
    [
        (255, 224, 196),
        (241, 194, 160),
        (224, 172, 135),
        (198, 134, 99),
        (164, 108, 74),
        (141, 85, 54),
        (105, 64, 40),
        (75, 48, 32),
    ],
    np.float32,
)
HAIR_COLORS = np.array(
    [
        (20, 16, 14),
        (45, 30, 22),
        (85, 55, 35),
        (130, 90, 55),
        (200, 160, 100),
        (150, 60, 30),
        (170, 170, 170),
    ],
    np.float32,
)


@dataclasses.dataclass(frozen=True)
class Garment:
    """A texture: two RGB colours mixed by a pattern with a period (px) and angle (rad), plus pixel noise."""

    kind: str
    color_a: tuple
    color_b: tuple
    period: float = 4.0
    angle: float = 0.0
    noise: float = 4.0


def random_color(rng, sat=(0.0, 1.0), val=(0.1, 1.0)):
    """An RGB tuple (0..255 floats) with uniform hue and the given saturation/value ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return (255.0 * r, 255.0 * g, 255.0 * b)


def random_garment(rng, sat=(0.0, 1.0), val=(0.1, 1.0), kind=None):
    """A garment texture with random colours and pattern."""
    if kind is None:
        kind = TEXTURE_KINDS[rng.choice(len(TEXTURE_KINDS), p=_TEXTURE_PROBS)]
    a = random_color(rng, sat, val)
    b = random_color(rng, sat, val) if rng.random() < 0.6 else tuple(0.5 * np.asarray(a))
    return Garment(
        kind,
        a,
        b,
        period=rng.uniform(2.0, 7.0),
        angle=rng.uniform(0, np.pi),
        noise=rng.uniform(2.0, 25.0 if kind == "noise" else 8.0),
    )


def skin_garment(rng):
    """Skin: a tone from SKIN_TONES, jittered, with faint noise."""
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.uniform(-12, 12, 3)
    return Garment("solid", tuple(np.clip(tone, 0, 255)), tuple(np.clip(tone, 0, 255)), noise=3.0)


def hair_garment(rng):
    """Hair: a natural colour (sometimes dyed) with fine streaks."""
    if rng.random() < 0.1:
        col = random_color(rng, (0.4, 1.0), (0.3, 0.9))
    else:
        col = tuple(np.clip(HAIR_COLORS[rng.integers(len(HAIR_COLORS))] + rng.uniform(-10, 10, 3), 0, 255))
    dark = tuple(0.7 * np.asarray(col))
    return Garment("stripes", col, dark, period=rng.uniform(1.5, 3.0), angle=rng.uniform(1.2, 1.9), noise=6.0)


def texture_colors(garment, ys, xs, rng):
    """Colours (N, 3) float32 of `garment` at pixel rows `ys` and columns `xs` (both (N,))."""
    g = garment
    a = np.asarray(g.color_a, np.float32)
    b = np.asarray(g.color_b, np.float32)
    if g.kind == "stripes":
        phase = (xs * np.cos(g.angle) + ys * np.sin(g.angle)) / g.period
        w = (np.floor(phase) % 2).astype(np.float32)
    elif g.kind == "checks":
        p = max(2, int(round(g.period)))
        w = ((xs // p + ys // p) % 2).astype(np.float32)
    else:
        w = np.zeros(len(xs), np.float32)
    out = a + (b - a) * w[:, None]  # (N, 3)
    if g.noise > 0:
        out += rng.normal(0.0, g.noise, (len(xs), 1)).astype(np.float32)
    return out
