"""PersonLab keypoint candidates: Hough voting, Gaussian smoothing, peak finding (pure jax.numpy).

Papandreou et al., "PersonLab", ECCV 2018, Sec. 3.1 (Eq. 1): each pixel x_i casts a vote for keypoint type k at
x_i + S_k(x_i) with weight p_k(x_i), splatted bilinearly,

    h_k(x) = 1 / (pi R^2) * sum_i p_k(x_i) * B(x_i + S_k(x_i) - x),

so a perfect prediction (p = 1 on the disk of radius R, S pointing at the keypoint) gives a peak of mass ~1 at
the keypoint (a disk holds ~pi R^2 pixels; the mass sits on the <= 4 pixels around the sub-pixel keypoint,
split by the bilinear weights, which sum to 1). Peaks are then found on the
Gaussian-smoothed map (the public ports use sigma = 2) as 3x3 local maxima above a threshold, and ALL keypoint
types go into one candidate queue in descending score.

The coarse grid (`hough_grid`, `grid_peaks`; the decoder's default for R >= 8): the same votes sampled every
`stride` pixels (weight stride^2) and splatted bilinearly onto nodes `stride` pixels apart, each node also
summing its votes' first moments, so a candidate sits at the centroid of the votes around it instead of on an
integer pixel; s^2 fewer votes (the scatter-add dominated the decoder). See jhuman.ops.personlab.decoder for
why; what it costs in accuracy: benchmarks/RESULTS.md, "Moved from module docstrings".

Shapes: heatmaps (H, W, K), short offsets (H, W, K, 2) (x, y) pixels, one image (vmap for a batch;
`hough_grid` also takes leading batch axes).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from jhuman.ops import image as image_ops
from jhuman.ops.materialize import materialize


def hough_votes(heatmaps, short_offsets, radius: float):
    """Eq. (1): (H, W, K) probabilities and (H, W, K, 2) short offsets -> (H, W, K) float32 Hough maps.

    Each pixel-channel splats p into the 4 integer neighbours of its landing point z = x + S_k(x) with the
    bilinear weights (1 - fx)(1 - fy), fx (1 - fy), (1 - fx) fy, fx fy (n = floor(z), f = z - n); the parts
    landing outside the image are dropped. Computed as ONE scatter-add over the flattened (H + 1) x (W + 1) x K
    grid (origin at (-1, -1)) for all channels at once: every vote adds the 4 moments (p, p fx, p fy, p fx fy)
    as a 4-float window at its corner n; a dense shift-and-add then applies the weights,
        h(y, x) = (A - Bx - By + Bxy)(y, x) + (Bx - Bxy)(y, x - 1) + (By - Bxy)(y - 1, x) + Bxy(y - 1, x - 1),
    which expands to exactly the 4 bilinear terms. One index per vote instead of four makes the scatter ~1.7x
    faster on CPU than `.at[4 neighbour indices].add` (the reference, `reference.hough_votes`, splats
    the 4 neighbours literally; the tests check that both agree). Votes whose 4 neighbours are all outside go
    to one spare slot that is sliced off.
    """
    p = jnp.asarray(heatmaps, jnp.float32)
    short = jnp.asarray(short_offsets, jnp.float32)
    height, width, num_keypoints = p.shape
    size = (height + 1) * (width + 1) * num_keypoints
    grid = image_ops.pixel_grid(height, width)[:, :, None, :]  # (H, W, 1, 2)
    landing = grid + short  # (H, W, K, 2)
    x0f, y0f = jnp.floor(landing[..., 0]), jnp.floor(landing[..., 1])
    fx, fy = landing[..., 0] - x0f, landing[..., 1] - y0f
    # corner in the padded grid; clip far-away landings first so the int conversion cannot overflow
    cx = jnp.clip(x0f, -2, width + 1).astype(jnp.int32) + 1
    cy = jnp.clip(y0f, -2, height + 1).astype(jnp.int32) + 1
    inside = (cx >= 0) & (cx <= width) & (cy >= 0) & (cy <= height)  # some neighbour is inside the image
    channel = jnp.arange(num_keypoints, dtype=jnp.int32)
    index = jnp.where(inside, (cy * (width + 1) + cx) * num_keypoints + channel, size)
    pfx = p * fx
    moments = jnp.stack([p, pfx, p * fy, pfx * fy], axis=-1)  # (H, W, K, 4)
    dims = lax.ScatterDimensionNumbers(
        update_window_dims=(1,), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,)
    )
    acc = lax.scatter_add(
        jnp.zeros((size + 1, 4), jnp.float32),
        index.reshape(-1, 1),
        moments.reshape(-1, 4),
        dims,
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )
    acc = acc[:size].reshape(height + 1, width + 1, num_keypoints, 4)
    a, bx, by, bxy = acc[..., 0], acc[..., 1], acc[..., 2], acc[..., 3]
    h = (a - bx - by + bxy)[1:, 1:] + (bx - bxy)[1:, :-1] + (by - bxy)[:-1, 1:] + bxy[:-1, :-1]
    return jnp.maximum(h, 0.0) / (math.pi * radius * radius)  # (float rounding of the differences: >= 0)


def grid_offset(stride: int) -> int:
    """Pixel of the first node of the coarse Hough grid (stride // 2): node i sits at pixel offset + stride * i."""
    return int(stride) // 2


def hough_grid(heatmaps, short_offsets, radius: float, stride: int, image_size=None):
    """Eq. (1) on a coarse grid (stride > 1): ([B,] H, W, K), ([B,] H, W, K, 2) -> moments ([B,] 3, Ny, Nx, K)
    float32: the vote mass and its first moments in x and y at the nodes, Ny = len(range(o, H, s)) + 2.

    Voters: the pixels (o + s i, o + s j), o = grid_offset(s), each standing for the s x s pixels around it
    (weight s^2). Nodes: the same positions plus one ring outside, node (a, b) at pixel (o + s (b - 1),
    o + s (a - 1)). A vote of mass m = s^2 p / (pi R^2) landing at z (inside the image; outside it is dropped,
    as in Eq. (1)) is split bilinearly in units of s onto the 4 nodes around z, and each node also receives
    m w z (the first moments), so moments[1:] / moments[0] is the centroid of the votes a node holds. Mass is
    on the scale of Eq. (1) (a perfect keypoint: ~1 in total); one scatter-add of the 3 values onto each of
    the 4 nodes (a window of 3), from each vote's numbers computed once (at 401x401 on 2 CPU cores 1.0 ms,
    against 1.65 for 12 scalar values per vote, whose 12 index and 12 value computations XLA kept apart and
    recomputed), over s^2 fewer votes than Eq. (1) on every pixel.
    image_size (H, W): heatmaps and short_offsets are the voters already, [..., o::s, o::s, :(, :)] of the maps
    (the decoder gathers just those from host memory, `fields.every`).
    """
    s, o = int(stride), grid_offset(stride)
    if image_size is None:
        *_, height, width, _ = heatmaps.shape
        heatmaps, short_offsets = heatmaps[..., o::s, o::s, :], short_offsets[..., o::s, o::s, :, :]
    else:
        height, width = image_size
    *batch, hv, wv, num_keypoints = heatmaps.shape
    images = math.prod(batch)  # leading batch axes: one scatter for all (vmap would add an index column)
    p = jnp.asarray(heatmaps, jnp.float32).reshape(images, hv, wv, num_keypoints)
    short = jnp.asarray(short_offsets, jnp.float32).reshape(images, hv, wv, num_keypoints, 2)
    ny, nx = hv + 2, wv + 2
    ys = (o + s * jnp.arange(hv, dtype=jnp.float32))[:, None, None]
    xs = (o + s * jnp.arange(wv, dtype=jnp.float32))[None, :, None]
    zx, zy = xs + short[..., 0], ys + short[..., 1]  # (hv, wv, K) landing points
    inside = (zx >= 0) & (zx <= width - 1) & (zy >= 0) & (zy <= height - 1)
    mass = jnp.where(inside, p, 0.0) * (s * s / (math.pi * radius * radius))
    ux = jnp.clip((zx - o) / s + 1.0, 0.0, nx - 1.001)  # node coordinates; inside the image: in [0, n - 1)
    uy = jnp.clip((zy - o) / s + 1.0, 0.0, ny - 1.001)
    bx, by = jnp.floor(ux), jnp.floor(uy)
    fx, fy = ux - bx, uy - by
    corner = (by.astype(jnp.int32) * nx + bx.astype(jnp.int32)) * num_keypoints + jnp.arange(num_keypoints)
    plane = ny * nx * num_keypoints
    corner = corner + plane * jnp.arange(images, dtype=jnp.int32)[:, None, None, None]
    # each vote's numbers once in memory (fused into the 12 values per vote, XLA computed them 12 times)
    corner, mass, mass_x, mass_y, fx, fy = materialize((corner, mass, mass * zx, mass * zy, fx, fy))
    shifts = (0, num_keypoints, nx * num_keypoints, (nx + 1) * num_keypoints)
    index = jnp.stack([corner + shift for shift in shifts], -1)  # (images, hv, wv, K, 4): the 4 nodes around
    weights = jnp.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1)
    values = jnp.stack([mass, mass_x, mass_y], -1)  # (images, hv, wv, K, 3)
    update = weights[..., :, None] * values[..., None, :]  # (images, hv, wv, K, 4, 3)
    acc = jnp.zeros((images * plane, 3), jnp.float32)  # (mass, x moment, y moment) of each node together
    acc = acc.at[index.reshape(-1)].add(update.reshape(-1, 3), mode="promise_in_bounds")
    return jnp.moveaxis(acc.reshape(*batch, ny, nx, num_keypoints, 3), -1, -4)


def box3(x):
    """Sum over the 3 x 3 neighbourhood of the first two axes (zero outside): (Ny, Nx, ...) -> same shape."""
    padded = jnp.pad(x, [(1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 2))
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


def max3(x):
    """Maximum over the 3 x 3 neighbourhood of the first two axes (-inf outside): (Ny, Nx, ...) -> same shape.
    The same values as lax.reduce_window(x, -inf, max, (3, 3, 1...), SAME), which XLA's CPU backend runs
    several times slower than this fused maximum of shifted slices (52 x 52 x 17, one jitted call each: 290 us
    against 80 us)."""
    padded = jnp.pad(x, [(1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 2), constant_values=-jnp.inf)
    rows = jnp.maximum(jnp.maximum(padded[:-2], padded[1:-1]), padded[2:])
    return jnp.maximum(jnp.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def grid_peak_map(moments, threshold: float, sigma: float):
    """`grid_peaks`' test on `hough_grid` moments (3, Ny, Nx, K): (Ny, Nx, K) float32, at the nodes holding the
    most mass of their 3 x 3 nodes whose score may pass the threshold (the upper bound 3 x 3 mass /
    (2 pi sigma^2) > threshold, a threshold >= 0) that bound, elsewhere -1."""
    mass = box3(moments[0])
    norm = 2.0 * math.pi * sigma * sigma if sigma > 0 else 1.0
    pooled = max3(moments[0])
    return jnp.where((moments[0] >= pooled) & (mass / norm > threshold), mass / norm, -1.0)


def grid_peaks(
    moments,
    stride: int,
    threshold: float,
    max_candidates: int,
    sigma: float,
    short_offsets=None,
    peak_map=None,
):
    """Keypoint candidates of all types in one queue from `hough_grid` moments (3, Ny, Nx, K), best first: the
    same outputs as `find_peaks` (positions (N, 2), types, scores, valid).

    Peaks: nodes holding the most mass of their 3 x 3 nodes. Position: the centroid y of the votes held by
    those 3 x 3 nodes (their summed first moments / mass), then moved by the short-range offset there (clipped
    to +-stride): sub-pixel, from all the votes. Score: what the full-resolution map smoothed with a Gaussian of
    std sigma holds at y, each of the 3 x 3 nodes' mass counted at its own votes' centroid c,
    sum m exp(-|c - y|^2 / 2 sigma^2) / (2 pi sigma^2), so `peak_threshold` means the same at every stride
    and diffuse votes score low as they do there (sigma <= 0: the 3 x 3 mass). Computed for the
    max_candidates peaks with the largest upper bound (3 x 3 mass / (2 pi sigma^2) > threshold), which are then
    thresholded and ordered by the score (ties by index). peak_map: `grid_peak_map` of the same moments, if the
    caller has it (the decoder also counts its peaks).
    """
    masked = grid_peak_map(moments, threshold, sigma) if peak_map is None else peak_map
    norm = 2.0 * math.pi * sigma * sigma if sigma > 0 else 1.0
    ny, nx, num_keypoints = masked.shape
    k = min(int(max_candidates), ny * nx * num_keypoints)
    bounds, flat = top_k_peaks(masked, k)
    types = (flat % num_keypoints).astype(jnp.int32)
    # the 3 x 3 nodes around each peak, all 3 moments (zero outside the grid): one gather of k * 9 nodes
    node = flat // num_keypoints
    d = jnp.arange(-1, 2, dtype=jnp.int32)
    ay = (node // nx)[:, None, None] + d[None, :, None]  # (k, 3, 1)
    ax = (node % nx)[:, None, None] + d[None, None, :]  # (k, 1, 3)
    inside = (ay >= 0) & (ay < ny) & (ax >= 0) & (ax < nx)
    index = (jnp.clip(ay, 0, ny - 1) * nx + jnp.clip(ax, 0, nx - 1)) * num_keypoints + types[:, None, None]
    near = jnp.where(inside, moments.reshape(3, -1)[:, index], 0.0)  # (3, k, 3, 3)
    rows = near[:, :, 0] + near[:, :, 1] + near[:, :, 2]  # summed in box3's order: over y, then over x
    summed = rows[..., 0] + rows[..., 1] + rows[..., 2]  # (3, k)
    positions = jnp.stack([summed[1], summed[2]], -1) / jnp.maximum(summed[0], 1e-30)[:, None]  # the centroid
    if sigma > 0:
        own = near[1:] / jnp.maximum(near[0], 1e-30)  # (2, k, 3, 3) each node's centroid
        d2 = jnp.square(own[0] - positions[:, 0, None, None]) + jnp.square(
            own[1] - positions[:, 1, None, None]
        )
        scores = jnp.sum(near[0] * jnp.exp(-d2 / (2.0 * sigma * sigma)), axis=(1, 2)) / norm
        scores = jnp.where(bounds > threshold, scores, -1.0)
        order = jnp.lexsort((flat, -scores))  # by score, ties by flat index
        scores, positions, types = scores[order], positions[order], types[order]
    else:
        scores = bounds
    valid = scores > threshold
    if short_offsets is not None:
        short = jnp.asarray(short_offsets, jnp.float32)
        snap = image_ops.bilinear_sample(short, positions, types)
        positions = positions + jnp.clip(snap, -float(stride), float(stride))
    return _pad_candidates(positions, types, scores, valid, max_candidates)


def count_grid_peaks(moments, threshold: float, sigma: float, peak_map=None):
    """How many nodes of `hough_grid` moments (3, Ny, Nx, K) pass `grid_peaks`' test before its top-k (the
    most mass of their 3 x 3 nodes, and an upper bound of the score above the threshold, >= 0): () int32.
    peak_map: their `grid_peak_map`, if the caller has it."""
    masked = grid_peak_map(moments, threshold, sigma) if peak_map is None else peak_map
    return jnp.sum(masked > -1.0, dtype=jnp.int32)


def gaussian_kernel(sigma: float, truncate: float = 3.0):
    """Normalised 1-D Gaussian taps, radius int(truncate * sigma + 0.5) (scipy.ndimage's choice)."""
    half = int(truncate * sigma + 0.5)
    taps = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-half, half + 1)]
    total = sum(taps)
    return [t / total for t in taps]


def smooth(h, sigma: float):
    """Separable Gaussian smoothing of (H, W, K) maps over H and W, zero padding (scipy mode='constant'),
    taps truncated at 3 sigma; sigma <= 0 returns h. The taps are static: each pass is one fused sum of shifted
    slices (cheaper on CPU than a depthwise convolution)."""
    h = jnp.asarray(h, jnp.float32)
    if sigma <= 0:
        return h
    taps = gaussian_kernel(float(sigma))
    half = len(taps) // 2
    height, width = h.shape[:2]
    pad = [(0, 0)] * h.ndim
    rows = jnp.pad(h, [(half, half)] + pad[1:])
    h = sum(t * rows[i : i + height] for i, t in enumerate(taps))
    cols = jnp.pad(h, [pad[0], (half, half)] + pad[2:])
    return sum(t * cols[:, i : i + width] for i, t in enumerate(taps))


def local_maxima(h, threshold: float):
    """(H, W, K) -> bool (H, W, K): h equals the maximum of its 3x3 neighbourhood (same channel) and h >
    threshold. A plateau gives several maxima; the decoder's NMS radius absorbs them."""
    pooled = max3(h)
    return (h >= pooled) & (h > threshold)


def top_k_peaks(masked, k: int, block: int = 8):
    """The k largest entries of masked (H, W, K) (non-peaks hold -1) and their flat indices, best first, ties by
    flat index: the result of lax.top_k(masked.reshape(-1), k), computed in two stages (cheaper on large maps).

    Stage 1 takes the maximum of each block x block x 1 tile and the k best tiles; a value among the k best
    lies in one of them (every tile with a larger maximum holds a larger value, and there are fewer than k of
    those). Stage 2 sorts the k * block^2 values of those tiles by (-value, flat index). Equal values at the
    k-th place may pick a different one of the tied entries than a full sort would (never a different value).
    """
    height, width, num_keypoints = masked.shape
    tiles_y, tiles_x = -(-height // block), -(-width // block)
    if tiles_y * tiles_x * num_keypoints <= k or height * width * num_keypoints <= 64 * k * block * block:
        return lax.top_k(masked.reshape(-1), k)
    tile_max = lax.reduce_window(
        masked,
        -jnp.inf,
        lax.max,
        (block, block, 1),
        (block, block, 1),
        ((0, tiles_y * block - height), (0, tiles_x * block - width), (0, 0)),
    )
    _, tiles = lax.top_k(tile_max.reshape(-1), k)  # (k,) flat (ty, tx, channel)
    channel = tiles % num_keypoints
    ty, tx = (tiles // num_keypoints) // tiles_x, (tiles // num_keypoints) % tiles_x
    d = jnp.arange(block, dtype=jnp.int32)
    y = ty[:, None, None] * block + d[None, :, None]  # (k, block, 1)
    x = tx[:, None, None] * block + d[None, None, :]  # (k, 1, block)
    inside = (y < height) & (x < width)
    flat = (jnp.minimum(y, height - 1) * width + jnp.minimum(x, width - 1)) * num_keypoints + channel[
        :, None, None
    ]
    values = jnp.where(inside, masked.reshape(-1)[flat], -jnp.inf).reshape(-1)
    flat = jnp.where(inside, flat, height * width * num_keypoints).reshape(-1)
    neg, flat = lax.sort((-values, flat), num_keys=2)
    return -neg[:k], flat[:k]


def count_peaks(h, threshold: float):
    """How many candidates `find_peaks` sees before its top-k: the local maxima above the threshold, () int32."""
    return jnp.sum(local_maxima(jnp.asarray(h, jnp.float32), threshold), dtype=jnp.int32)


def find_peaks(h, threshold: float, max_candidates: int, short_offsets=None):
    """Keypoint candidates of all types in one queue, best first.

    h (H, W, K) (the smoothed Hough maps) -> positions (N, 2) float32 sub-pixel (x, y), types (N,) int32,
    scores (N,) float32 (h at the peak), valid (N,) bool; N = max_candidates, padded with valid False (and zero
    position/score/type). Order: descending score, ties by flat (row, column, type) index (lax.top_k).

    Sub-pixel position: with `short_offsets` (H, W, K, 2), the peak pixel plus its own short-range offset
    (the network's regression of the keypoint from that pixel, as in PoseNet), each component clipped to
    [-1, 1] (the true maximum of the vote density lies within a pixel of the discrete maximum; this keeps a bad
    offset from moving a candidate away from its votes). Without them, the centroid of h over the peak's 3x3
    neighbourhood (exact for an unsmoothed bilinear splat of one landing point; biased towards the pixel
    centre on a smoothed map).
    """
    h = jnp.asarray(h, jnp.float32)
    height, width, num_keypoints = h.shape
    size = height * width * num_keypoints
    masked = jnp.where(local_maxima(h, threshold), h, -1.0)  # (H, W, K)
    k = min(int(max_candidates), size)
    scores, flat = top_k_peaks(masked, k)
    valid = scores > threshold
    types = (flat % num_keypoints).astype(jnp.int32)
    pixel = flat // num_keypoints
    px, py = (pixel % width).astype(jnp.int32), (pixel // width).astype(jnp.int32)
    base = jnp.stack([px, py], axis=-1).astype(jnp.float32)
    if short_offsets is not None:
        short = jnp.asarray(short_offsets, jnp.float32).reshape(size, 2)
        positions = base + jnp.clip(short[flat], -1.0, 1.0)
    else:
        d = jnp.arange(-1, 2, dtype=jnp.int32)
        nx = jnp.clip(px[:, None, None] + d[None, None, :], 0, width - 1)  # (N, 1, 3)
        ny = jnp.clip(py[:, None, None] + d[None, :, None], 0, height - 1)  # (N, 3, 1)
        inside = (px[:, None, None] + d[None, None, :] == nx) & (py[:, None, None] + d[None, :, None] == ny)
        mass = jnp.where(inside, h.reshape(-1)[(ny * width + nx) * num_keypoints + types[:, None, None]], 0.0)
        mass = jnp.maximum(mass, 0.0)  # (N, 3, 3)
        total = jnp.maximum(mass.sum((1, 2)), 1e-12)
        cx = (mass * nx).sum((1, 2)) / total
        cy = (mass * ny).sum((1, 2)) / total
        positions = jnp.stack([cx, cy], axis=-1)
    return _pad_candidates(positions, types, scores, valid, max_candidates)


def _pad_candidates(positions, types, scores, valid, max_candidates: int):
    """Zeroes the invalid rows and pads the k found rows to max_candidates (valid False)."""
    positions = jnp.where(valid[:, None], positions, 0.0)
    scores = jnp.where(valid, scores, 0.0)
    types = jnp.where(valid, types, 0)
    pad = int(max_candidates) - positions.shape[0]
    if pad:
        positions = jnp.pad(positions, ((0, pad), (0, 0)))
        types, scores, valid = jnp.pad(types, (0, pad)), jnp.pad(scores, (0, pad)), jnp.pad(valid, (0, pad))
    return positions, types, scores, valid
