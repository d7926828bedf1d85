"""PersonLab's recurrent offset refinement (pure jax.numpy): the one home of it, for the model and the decoder.

Papandreou et al., "PersonLab", ECCV 2018, Sec. 3.3 ("recurrent offset refinement"); see
shared/reference/personlab.md. With p = x + M_{k,l}(x) the landing point of a mid-range offset,

    M_{k,l}(x) <- p + S_l(p) - x            (S_l bilinear; repeated `steps` times, S fixed),

and long-range offsets likewise, first with themselves, then with the short-range offsets:

    L_k(x) <- p + L_k(p) - x  (steps times),   then   L_k(x) <- p + S_k(p) - x  (steps times).

Conventions: points and offsets are (x, y) = (column, row) in pixels; a landing point outside the image is
clamped onto it, and the sampled offset is added to the CLAMPED landing point (the point it was measured from).
Sampling is `jhuman.ops.image.bilinear_sample` (the four integer neighbours of the clamped point; gradients
through the sampled values and the bilinear weights). `jhuman.models.personlab` refines its outputs with
`refine_offsets` here (vmapped over the batch), the decoder with `refine_long_offsets` / `sample_refined_mid`,
so the model side and the decoder compute the same thing.

`sample_refined_mid` is the lazy form the decoder uses: the refined field bilinearly sampled at a few points,
computed from the 4 corner pixels only. It equals `image.bilinear_sample(refine_mid_offsets(mid, short, steps), ...)`
up to float rounding, without refining all H * W * 32 offsets (most of which the greedy decoder never reads).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.classes import PERSONLAB_DIRECTED_EDGES
from jhuman.ops.image import bilinear_corners, bilinear_sample, clamp_points, pixel_grid
from jhuman.ops.personlab import fields

# Target keypoint l of each directed edge (k, l): the short-range channel that refines mid-range channel e.
EDGE_TARGETS = np.array([l for _, l in PERSONLAB_DIRECTED_EDGES], np.int32)  # (32,)


def _refine_step(offsets, field, base, channels, height, width):
    """offsets (..., 2) measured from base (..., 2): one round offsets <- p + field_c(p) - base."""
    landing = clamp_points(base + offsets, height, width)
    return landing + bilinear_sample(field, landing, channels, clamp=False) - base


def refine_offsets(offsets, field, channels, steps: int):
    """`steps` rounds of offsets(x) <- p + field_c(p) - x with p = clamp(x + offsets(x)), field_c bilinear:
    offsets ([B,] H, W, E, 2), field ([B,] H, W, C, 2) fixed, channels (E,) int: the field channel each offset
    channel reads (for mid-range offsets the target keypoint l of edge (k, l)). Returns ([B,] H, W, E, 2)
    float32; a leading batch axis is vmapped."""
    offsets = jnp.asarray(offsets, jnp.float32)
    field = jnp.asarray(field, jnp.float32)
    if offsets.ndim == 5:
        return jax.vmap(lambda o, f: refine_offsets(o, f, channels, steps))(offsets, field)
    height, width = offsets.shape[:2]
    grid = pixel_grid(height, width)[:, :, None, :]  # (H, W, 1, 2)
    channels = jnp.asarray(channels, jnp.int32)[None, None, :]  # (1, 1, E)
    for _ in range(steps):  # a static handful of refinement rounds
        offsets = _refine_step(offsets, field, grid, channels, height, width)
    return offsets


def refine_mid_offsets(mid_offsets, short_offsets, steps: int = 2, edge_targets=EDGE_TARGETS):
    """Dense refinement of mid-range offsets: ([B,] H, W, E, 2), ([B,] H, W, K, 2) -> ([B,] H, W, E, 2) float32,
    M_{k,l}(x) <- p + S_l(p) - x with p = clamp(x + M_{k,l}(x)), `steps` times (the paper: twice)."""
    return refine_offsets(mid_offsets, short_offsets, edge_targets, steps)


def refine_long_offsets(long_offsets, short_offsets, steps: int = 1):
    """Dense refinement of long-range offsets: ([B,] H, W, K, 2), ([B,] H, W, K, 2) -> ([B,] H, W, K, 2)
    float32; `steps` rounds L_k(x) <- p + L_k(p) - x (with the unrefined L), then `steps` rounds with S_k."""
    raw = jnp.asarray(long_offsets, jnp.float32)
    own = np.arange(raw.shape[-2], dtype=np.int32)  # (K,) each keypoint reads its own channel
    return refine_offsets(refine_offsets(raw, raw, own, steps), short_offsets, own, steps)


def sample_refined_mid(mid_offsets, short_offsets, points, edges, steps: int = 2, edge_targets=EDGE_TARGETS):
    """The refined mid-range offset of directed edge edges[i] bilinearly sampled at points[i]:
    mid (H, W, E, 2), short (H, W, K, 2), points (..., 2), edges (...) int -> (..., 2) float32.

    Refines only the 4 corner pixels of each point (4 * (1 + 4 * steps) gathers per point) and interpolates:
    the same value as sampling `refine_mid_offsets(mid, short, steps)`. mid and short may be arrays or
    `fields.View`s (read by gathers only: the tree walk calls this inside a loop).
    """
    mid, short = mid_offsets, short_offsets
    height, width = fields.shape(mid)[:2]
    points = clamp_points(jnp.asarray(points, jnp.float32), height, width)
    x0, x1, y0, y1, fx, fy = bilinear_corners(points, height, width)
    xs = jnp.stack([x0, x1, x0, x1], axis=-1)  # (..., 4)
    ys = jnp.stack([y0, y0, y1, y1], axis=-1)
    weights = jnp.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)  # (..., 4)
    edges = jnp.broadcast_to(jnp.asarray(edges, jnp.int32), x0.shape)[..., None]  # (..., 1)
    corner_edges = jnp.broadcast_to(edges, xs.shape)
    base = jnp.stack([xs, ys], axis=-1).astype(jnp.float32)  # (..., 4, 2)
    offsets = fields.at(mid, ys, xs, corner_edges)  # (..., 4, 2)
    targets = jnp.asarray(edge_targets, jnp.int32)[corner_edges]  # (..., 4)
    for _ in range(steps):  # _refine_step, reading short with fields.bilinear
        landing = clamp_points(base + offsets, height, width)
        offsets = landing + fields.bilinear(short, landing, targets) - base
    return sum(weights[..., i, None] * offsets[..., i, :] for i in range(4))  # written out, not a reduction
