"""Bilinear sampling of dense offset fields and PersonLab's recurrent offset refinement (pure jax.numpy).

Papandreou et al., "PersonLab", ECCV 2018, Sec. 3.3 ("recurrent offset refinement"); see
shared/reference/personlab.md. With p = x + M_{k,l}(x) the landing point of a mid-range offset,

    M_{k,l}(x) <- p + S_l(p) - x            (S_l bilinear; repeated `steps` times, S fixed),

and long-range offsets likewise, first with themselves, then with the short-range offsets:

    L_k(x) <- p + L_k(p) - x  (steps times),   then   L_k(x) <- p + S_k(p) - x  (steps times).

Conventions (the same as `jhuman.models.personlab.refine_offsets`, so the model side and the decoder agree):
points and offsets are (x, y) = (column, row) in pixels; a sampling point outside the image is clamped onto it,
and in the refinement the sampled offset is added to the CLAMPED landing point (the point it was measured from).
Bilinear sampling reads the four integer neighbours of the clamped point (on the last row/column the upper
neighbour is the point's own row/column, with weight zero).

`sample_refined_mid` is the lazy form the decoder uses: the refined field bilinearly sampled at a few points,
computed from the 4 corner pixels only. It equals `bilinear_sample(refine_mid_offsets(mid, short, steps), ...)`
up to float rounding, without refining all H * W * 32 offsets (most of which the greedy decoder never reads).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jhuman.classes import PERSONLAB_DIRECTED_EDGES

# Target keypoint l of each directed edge (k, l): the short-range channel that refines mid-range channel e.
EDGE_TARGETS = np.array([l for _, l in PERSONLAB_DIRECTED_EDGES], np.int32)  # (32,)


def pixel_grid(height: int, width: int) -> jnp.ndarray:
    """(H, W, 2) float32 positions (x, y) of the pixels."""
    cols, rows = jnp.meshgrid(jnp.arange(width, dtype=jnp.float32), jnp.arange(height, dtype=jnp.float32))
    return jnp.stack([cols, rows], axis=-1)


def clamp_points(points, height: int, width: int):
    """Clamps (..., 2) (x, y) points into [0, W - 1] x [0, H - 1]."""
    upper = jnp.asarray([width - 1, height - 1], jnp.float32)
    return jnp.clip(points, 0.0, upper)


def _corners(points, height: int, width: int):
    """Integer corners and weights of the bilinear stencil at clamped points (..., 2):
    x0, x1, y0, y1 (...) int32 and fx, fy (...) float32 (the weights of x1 and y1)."""
    points = clamp_points(points, height, width)
    x0f, y0f = jnp.floor(points[..., 0]), jnp.floor(points[..., 1])
    fx, fy = points[..., 0] - x0f, points[..., 1] - y0f
    x0, y0 = x0f.astype(jnp.int32), y0f.astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, width - 1), jnp.minimum(y0 + 1, height - 1)
    return x0, x1, y0, y1, fx, fy


def bilinear_sample(field, points, channels=None):
    """Bilinear interpolation of a dense field at sub-pixel points.

    field (H, W, *T) and points (..., 2) (x, y) -> (..., *T); or, with `channels` (...) int (broadcast against
    points[..., 0]), field (H, W, C, *T) -> (..., *T): channel channels[i] at points[i] (one gather per point,
    not all C channels). Points outside the image are clamped onto it.
    """
    field = jnp.asarray(field)
    points = jnp.asarray(points, jnp.float32)
    height, width = field.shape[:2]
    x0, x1, y0, y1, fx, fy = _corners(points, height, width)
    if channels is None:
        flat = field.reshape(height * width, *field.shape[2:])
        trailing = field.shape[2:]

        def at(y, x):
            return flat[y * width + x]
    else:
        num_channels = field.shape[2]
        trailing = field.shape[3:]
        flat = field.reshape(height * width * num_channels, *trailing)
        channels = jnp.broadcast_to(jnp.asarray(channels, jnp.int32), x0.shape)

        def at(y, x):
            return flat[(y * width + x) * num_channels + channels]

    expand = (...,) + (None,) * len(trailing)
    fx, fy = fx[expand], fy[expand]
    return (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * (
        (1 - fx) * at(y1, x0) + fx * at(y1, x1)
    )


def _refine_step(offsets, field, base, channels, height, width):
    """offsets (..., 2) measured from base (..., 2): one round offsets <- p + field_c(p) - base."""
    landing = clamp_points(base + offsets, height, width)
    return landing + bilinear_sample(field, landing, channels) - base


def refine_mid_offsets(mid_offsets, short_offsets, steps: int = 2, edge_targets=EDGE_TARGETS):
    """Dense refinement of mid-range offsets: (H, W, E, 2), (H, W, K, 2) -> (H, W, E, 2) float32,
    M_{k,l}(x) <- p + S_l(p) - x with p = clamp(x + M_{k,l}(x)), `steps` times (the paper: twice)."""
    mid = jnp.asarray(mid_offsets, jnp.float32)
    short = jnp.asarray(short_offsets, jnp.float32)
    height, width = mid.shape[:2]
    grid = pixel_grid(height, width)[:, :, None, :]  # (H, W, 1, 2)
    channels = jnp.asarray(edge_targets, jnp.int32)[None, None, :]  # (1, 1, E)
    for _ in range(steps):  # a static handful of refinement rounds
        mid = _refine_step(mid, short, grid, channels, height, width)
    return mid


def refine_long_offsets(long_offsets, short_offsets, steps: int = 1):
    """Dense refinement of long-range offsets: (H, W, K, 2), (H, W, K, 2) -> (H, W, K, 2) float32;
    `steps` rounds L_k(x) <- p + L_k(p) - x (with the unrefined L), then `steps` rounds with S_k."""
    raw = jnp.asarray(long_offsets, jnp.float32)
    short = jnp.asarray(short_offsets, jnp.float32)
    height, width, num_keypoints = raw.shape[:3]
    grid = pixel_grid(height, width)[:, :, None, :]  # (H, W, 1, 2)
    channels = jnp.arange(num_keypoints, dtype=jnp.int32)[None, None, :]  # (1, 1, K)
    out = raw
    for field in (raw, short):
        for _ in range(steps):
            out = _refine_step(out, field, grid, channels, height, width)
    return out


def sample_refined_mid(mid_offsets, short_offsets, points, edges, steps: int = 2, edge_targets=EDGE_TARGETS):
    """The refined mid-range offset of directed edge edges[i] bilinearly sampled at points[i]:
    mid (H, W, E, 2), short (H, W, K, 2), points (..., 2), edges (...) int -> (..., 2) float32.

    Refines only the 4 corner pixels of each point (4 * (1 + 4 * steps) gathers per point) and interpolates:
    the same value as sampling `refine_mid_offsets(mid, short, steps)`.
    """
    mid = jnp.asarray(mid_offsets, jnp.float32)
    short = jnp.asarray(short_offsets, jnp.float32)
    height, width, num_edges = mid.shape[:3]
    x0, x1, y0, y1, fx, fy = _corners(jnp.asarray(points, jnp.float32), height, width)
    xs = jnp.stack([x0, x1, x0, x1], axis=-1)  # (..., 4)
    ys = jnp.stack([y0, y0, y1, y1], axis=-1)
    weights = jnp.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)  # (..., 4)
    edges = jnp.broadcast_to(jnp.asarray(edges, jnp.int32), x0.shape)[..., None]  # (..., 1)
    corner_edges = jnp.broadcast_to(edges, xs.shape)
    base = jnp.stack([xs, ys], axis=-1).astype(jnp.float32)  # (..., 4, 2)
    offsets = mid.reshape(height * width * num_edges, 2)[(ys * width + xs) * num_edges + corner_edges]
    targets = jnp.asarray(edge_targets, jnp.int32)[corner_edges]  # (..., 4)
    for _ in range(steps):
        offsets = _refine_step(offsets, short, base, targets, height, width)
    return jnp.sum(weights[..., None] * offsets, axis=-2)
