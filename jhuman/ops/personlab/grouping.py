"""PersonLab greedy grouping, keypoint and person scores, instance masks (pure jax.numpy, static shapes).

Papandreou et al., "PersonLab", ECCV 2018, Sec. 3.3-3.5 (shared/reference/personlab.md).

Greedy decoding (Sec. 3.3). Candidates of all keypoint types sit in ONE queue in descending Hough score. A popped
candidate of type k is rejected if it lies within r (nms_radius) of keypoint k of an already detected person;
otherwise a new person starts there and the kinematic tree is followed outward from it (any type can be the
seed): y_l = y_k + M_{k,l}(y_k), M the refined mid-range offsets sampled bilinearly, in breadth-first order from
the seed (`TRAVERSAL_EDGES[t]`: the 16 directed edges in BFS order for seed type t, precomputed).

How it is computed here (equivalent, and loop-free except for one short loop over accepted people):
1. `traverse` follows the tree from EVERY candidate at once, (N, 17) points per step, 16 static steps. A
   person's skeleton depends only on its seed and the offset fields, never on the other people, so computing it
   before the greedy pass changes nothing (it only also computes skeletons for seeds that will be rejected).
2. `greedy_select`: kill[c, i] = "candidate c lies within r of the type-of-c keypoint of candidate i's
   skeleton" (N x N). Popping in score order and rejecting c when an earlier ACCEPTED i has kill[c, i] is the
   paper's greedy loop. A lax.while_loop runs once per accepted person (at most max_people times): take the
   first live candidate, kill its row of the matrix. `reference.group_people` runs the literal
   candidate-by-candidate loop with per-person BFS; the tests check that both give the same people.

Completion (not in the paper; `complete_from_long`): mid-range offsets exist only between two labelled keypoints,
so an unlabelled inner keypoint (a nose out of the picture, a hidden shoulder) cuts the tree, and the greedy pass
then returns the pieces as separate people (ground-truth outputs of synthetic COCO scenes lose keypoint AP that
way; measured figures: benchmarks/RESULTS.md, "Moved from module docstrings"). Every skeleton's missing keypoints
are therefore read from the long-range offsets (which reach every keypoint of the person from each of its pixels)
at its own best-fitting keypoint, before the greedy pass (like the walk, it depends only on the skeleton and the
fields).

Which keypoints count: a keypoint is REACHED if its tree parent was reached and lies inside the image (the seed
is reached); an unreached keypoint keeps its parent's (clamped) position, never (0, 0). It is PRESENT if reached,
inside the image and p_k(y) >= min_keypoint_score (the heatmap probability, bilinear). Only present keypoints
block seeds, suppress other people's keypoints, define the person's box and carry a score; the others get score
0 and keypoint_valid False.

Scores (Sec. 3.4). Keypoint score = expected OKS,
    s_{j,k} = p_k(y_{j,k}) * min(1, sum_x h_k(x) exp(-||x - y_{j,k}||^2 / (2 lambda_j^2 kappa_k^2))),
h_k the (unsmoothed, already 1/(pi R^2)-normalised) Hough map, the sum over the integer pixels of the
(2 * oks_radius + 1)^2 square around y_{j,k}, kappa_k = 2 * COCO sigma_k (pycocotools' k), lambda_j the person
scale (below). For a perfect prediction the Hough mass at the keypoint is ~1, so s ~ p ~ 1; votes scattered
away from the keypoint lower it. Person score = soft keypoint-level NMS: the sum of s_{j,k} over keypoints not
within r of the same (present) keypoint of an EARLIER (higher-priority: its seed came first) person, / 17.

Person scale lambda_j = sqrt(area of the bounding box of j's present keypoints), at least min_scale pixels
(a person with one present keypoint has area 0). COCO's OKS uses the segment area; the keypoint box is what is
known before the masks, and it is never inflated by missing keypoints (the ports' (0, 0) keypoints).

Instance masks (Sec. 3.5): G_k(x) = x + L_k(x); distance of pixel x to person j
    D_j(x) = sum_k s_{j,k} ||G_k(x) - y_{j,k}|| / (sum_k s_{j,k} * lambda_j),
and a foreground pixel (segmentation > seg_threshold) joins argmin_j D_j if that minimum is < mask_threshold
(0.25). Decided per mask_stride x mask_stride block at its centre (stride 1: per pixel), each tile of blocks
compared only with the few people whose keypoints its embeddings can reach (a lower bound picks them; see
`block_owners`), all tiles at once.
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.classes import COCO_KEYPOINTS, COCO_OKS_SIGMAS, PERSONLAB_DIRECTED_EDGES
from jhuman.ops import image as image_ops
from jhuman.ops.materialize import materialize
from jhuman.ops.personlab import fields, hough
from jhuman.ops.personlab import offsets as offsets_lib

NUM_KEYPOINTS = len(COCO_KEYPOINTS)  # 17
OKS_KAPPAS = (2.0 * COCO_OKS_SIGMAS).astype(np.float32)  # pycocotools: vars = (2 sigma)^2


def traversal_orders(directed_edges=PERSONLAB_DIRECTED_EDGES, num_keypoints: int = NUM_KEYPOINTS):
    """For each seed type t, the tree's directed edges in breadth-first order away from t (neighbours in
    directed-edge index order): int32 arrays (T, K - 1) of edge index, source and target keypoint."""
    adjacency = collections.defaultdict(list)
    for index, (a, b) in enumerate(directed_edges):
        adjacency[a].append((index, b))
    edges, sources, targets = [], [], []
    for seed in range(num_keypoints):
        order, seen, queue = [], {seed}, collections.deque([seed])
        while queue:
            k = queue.popleft()
            for index, l in adjacency[k]:
                if l not in seen:
                    seen.add(l)
                    order.append((index, k, l))
                    queue.append(l)
        if len(order) != num_keypoints - 1:
            raise ValueError("the directed edges must form a spanning tree of the keypoints, both directions")
        edges.append([e for e, _, _ in order])
        sources.append([s for _, s, _ in order])
        targets.append([t for _, _, t in order])
    return tuple(np.asarray(a, np.int32) for a in (edges, sources, targets))


TRAVERSAL_EDGES, TRAVERSAL_SOURCES, TRAVERSAL_TARGETS = traversal_orders()  # (17, 16) each


def squared_norm(d):
    """(..., 2) -> (...) x^2 + y^2, written out: as a reduction over the axis of 2, XLA on CPU hands it to a
    library call that costs far more than the arithmetic (benchmarks/RESULTS.md, PersonLab)."""
    return jnp.square(d[..., 0]) + jnp.square(d[..., 1])


def inside_image(points, height: int, width: int):
    """(..., 2) (x, y) -> (...) bool: inside [0, W - 1] x [0, H - 1]."""
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def traverse(mid_offsets, short_offsets, seeds, seed_types, seed_valid, refine_steps: int = 2):
    """Skeletons grown from seeds along the refined mid-range offsets (all seeds at once).

    mid (H, W, 32, 2), short (H, W, 17, 2), seeds (N, 2) (x, y), seed_types (N,) int, seed_valid (N,) bool ->
    points (N, 17, 2) float32 and reached (N, 17) bool. Step s of the 16 follows edge TRAVERSAL_EDGES[t, s] for
    every seed of type t: y_l = y_k + M_{k,l}(y_k), M refined `refine_steps` times with the short-range
    offsets at the 4 corner pixels only (`offsets.sample_refined_mid`). mid and short may be `fields.View`s
    (host memory read in place; only gathered from, inside the loop).
    """
    mid, short = mid_offsets, short_offsets
    height, width = fields.shape(mid)[:2]
    seeds = jnp.asarray(seeds, jnp.float32)
    seed_types = jnp.asarray(seed_types, jnp.int32)
    rows = jnp.arange(seeds.shape[0])
    keypoint_ids = jnp.arange(NUM_KEYPOINTS, dtype=jnp.int32)
    onehot = seed_types[:, None] == keypoint_ids  # (N, 17)
    points = jnp.where(onehot[..., None], seeds[:, None, :], 0.0)
    reached = onehot & jnp.asarray(seed_valid, bool)[:, None]
    edge_table, source_table, target_table = (
        jnp.asarray(TRAVERSAL_EDGES),
        jnp.asarray(TRAVERSAL_SOURCES),
        jnp.asarray(TRAVERSAL_TARGETS),
    )

    def step_body(step, state):  # the 16 edges of the fixed tree, in order (a loop over steps, not over data)
        points, reached = state
        edge = edge_table[seed_types, step]  # (N,)
        source = source_table[seed_types, step]
        target = target_table[seed_types, step]
        start = points[rows, source]  # (N, 2)
        ok = reached[rows, source] & inside_image(start, height, width)
        step_to = start + offsets_lib.sample_refined_mid(mid, short, start, edge, refine_steps)
        new = jnp.where(ok[:, None], step_to, image_ops.clamp_points(start, height, width))
        is_target = target[:, None] == keypoint_ids  # (N, 17)
        return (
            jnp.where(is_target[..., None], new[:, None, :], points),
            jnp.where(is_target, ok[:, None], reached),
        )

    # a lax loop, not a Python one: its result is stored once (unrolled, XLA fused the whole walk into every
    # consumer's gather and recomputed it per element: 9 ms of the greedy pass at 256 candidates)
    points, reached = jax.lax.fori_loop(0, NUM_KEYPOINTS - 1, step_body, (points, reached))
    return points, reached


def presence(heatmaps, points, reached, min_keypoint_score: float):
    """heatmaps (H, W, 17) (an array or a `fields.View`), points (..., 17, 2), reached (..., 17) -> (present
    (..., 17) bool, p (..., 17)): p_k(y) bilinear (at y clamped into the image); present = reached & inside the
    image & p >= min_keypoint_score."""
    height, width = fields.shape(heatmaps)[:2]
    channels = jnp.broadcast_to(jnp.arange(NUM_KEYPOINTS, dtype=jnp.int32), points.shape[:-1])
    p = fields.bilinear(heatmaps, image_ops.clamp_points(points, height, width), channels)
    present = reached & inside_image(points, height, width) & (p >= min_keypoint_score)
    return present, p


def complete_from_long(
    points,
    present,
    heat,
    long_offsets,
    short_offsets,
    heatmaps,
    *,
    min_scale: float,
    mask_threshold: float,
    min_keypoint_score: float,
    refine_steps: int,
):
    """Keypoints the tree could not reach, read from the long-range offsets at the person's own keypoints.

    points (N, 17, 2), present (N, 17), heat (N, 17) from `traverse` + `presence`; long (H, W, 17, 2), short
    (H, W, 17, 2), heatmaps (H, W, 17) (arrays or `fields.View`s, only gathered from) -> (points, present, heat)
    with missing keypoints filled in.

    The source is the present keypoint y_k whose pixel the long-range embedding assigns most surely to this
    person: D(k) = sum over the other present keypoints l of ||y_k + L_l(y_k) - y_l|| / (their count * lambda),
    the instance-mask distance of Sec. 3.5 evaluated at y_k. If min_k D(k) < mask_threshold, every keypoint m
    that is not present gets the proposal y_k + L_m(y_k), snapped by `refine_steps` short-range steps
    (p <- p + S_m(p)), and becomes present if it lies inside the image with p_m >= min_keypoint_score.
    Needs two present keypoints (the own-channel offset L_k(y_k) says nothing about the person).
    """
    height, width = fields.shape(long_offsets)[:2]
    sampled = fields.bilinear(
        long_offsets, image_ops.clamp_points(points, height, width)
    )  # (N, 17_k, 17_m, 2)
    proposals = points[:, :, None, :] + sampled  # from keypoint k, for keypoint m
    others = present[:, None, :] & ~jnp.eye(NUM_KEYPOINTS, dtype=bool)[None]  # (N, k, l)
    error = jnp.sqrt(squared_norm(proposals - points[:, None, :, :]))  # (N, k, l)
    count = jnp.sum(others, axis=-1)  # (N, k)
    scales = person_scales(points, present, min_scale)
    distance = jnp.sum(jnp.where(others, error, 0.0), axis=-1) / (jnp.maximum(count, 1) * scales[:, None])
    distance = jnp.where(present & (count > 0), distance, jnp.inf)
    source = jnp.argmin(distance, axis=1)  # (N,)
    usable = jnp.min(distance, axis=1) < mask_threshold
    proposal = jnp.take_along_axis(proposals, source[:, None, None, None], axis=1)[:, 0]  # (N, 17, 2)
    channels = jnp.broadcast_to(jnp.arange(NUM_KEYPOINTS, dtype=jnp.int32), proposal.shape[:-1])
    for _ in range(refine_steps):  # a static handful of snapping rounds
        proposal = image_ops.clamp_points(proposal, height, width)
        proposal = proposal + fields.bilinear(short_offsets, proposal, channels)
    new_present, new_heat = presence(heatmaps, proposal, jnp.ones_like(present), min_keypoint_score)
    fill = usable[:, None] & ~present & new_present
    return (jnp.where(fill[..., None], proposal, points), present | fill, jnp.where(fill, new_heat, heat))


def greedy_select(positions, types, valid, skeletons, present, nms_radius: float, max_people: int):
    """The paper's greedy pass over candidates sorted by score (best first).

    positions (N, 2), types (N,), valid (N,), skeletons (N, 17, 2) and present (N, 17) (the person each
    candidate would seed) -> seeds (P,) int32 candidate indices in detection order (padding 0), count () (at
    most P = max_people) and total (): the people the pass finds without a capacity (it goes on past P,
    counting, so that total - count people are known to be dropped, never silently).
    Candidate c is accepted iff it is valid and no previously accepted person i has a present keypoint of c's
    type within nms_radius of c.
    """
    types = jnp.asarray(types, jnp.int32)
    # keypoint type_c of candidate i's skeleton, (N_i, N_c, 2) and (N_i, N_c), as products with a one-hot
    # matrix: a dot makes XLA store the skeletons once (as a gather it fused the whole tree walk and completion
    # into this N x N computation and redid them for every entry); exact (one 1 per row, the rest 0)
    onehot = (types[:, None] == jnp.arange(skeletons.shape[1])).astype(jnp.float32)  # (N_c, 17)
    at = jnp.einsum("ikd,ck->icd", skeletons, onehot, precision=jax.lax.Precision.HIGHEST)
    at_present = jnp.einsum("ik,ck->ic", present.astype(jnp.float32), onehot) > 0.5
    close = squared_norm(at - positions[None, :, :]) < nms_radius * nms_radius
    kills = close & at_present  # kills[i, c]: accepting i rejects c

    def cond(state):
        alive, _, _ = state
        return jnp.any(alive)

    def body(state):
        alive, count, seeds = state
        first = jnp.argmax(alive).astype(jnp.int32)  # the best live candidate
        alive = alive & ~kills[first]
        alive = alive.at[first].set(False)
        return alive, count + 1, seeds.at[count].set(first, mode="drop")  # past P: counted only

    init = (jnp.asarray(valid, bool), jnp.int32(0), jnp.zeros(max_people, jnp.int32))
    _, total, seeds = jax.lax.while_loop(cond, body, init)
    return seeds, jnp.minimum(total, max_people), total


def person_scales(points, present, min_scale: float):
    """(P, 17, 2), (P, 17) -> (P,) lambda = max(sqrt(area of the box of the present keypoints), min_scale)."""
    big = jnp.float32(1e9)
    lo = jnp.min(jnp.where(present[..., None], points, big), axis=1)
    hi = jnp.max(jnp.where(present[..., None], points, -big), axis=1)
    extent = jnp.where(jnp.any(present, axis=1)[:, None], hi - lo, 0.0)
    return jnp.maximum(jnp.sqrt(extent[:, 0] * extent[:, 1]), min_scale)


def expected_oks(hough, heatmap_values, points, present, scales, oks_radius: int):
    """Expected-OKS keypoint scores (Sec. 3.4): hough (H, W, 17) unsmoothed, heatmap_values (P, 17) = p_k(y),
    points (P, 17, 2), present (P, 17), scales (P,) -> (P, 17) float32 (0 where not present)."""
    hough = jnp.asarray(hough, jnp.float32)
    height, width, num_keypoints = hough.shape
    d = jnp.arange(-oks_radius, oks_radius + 1, dtype=jnp.int32)
    dx, dy = jnp.meshgrid(d, d)  # (S, S)
    centre = jnp.round(points).astype(jnp.int32)  # (P, 17, 2)
    px = centre[..., 0, None, None] + dx  # (P, 17, S, S)
    py = centre[..., 1, None, None] + dy
    inside = (px >= 0) & (px < width) & (py >= 0) & (py < height)
    channel = jnp.arange(num_keypoints, dtype=jnp.int32)[None, :, None, None]
    values = hough.reshape(-1)[
        (jnp.clip(py, 0, height - 1) * width + jnp.clip(px, 0, width - 1)) * num_keypoints + channel
    ]
    dist2 = jnp.square(px - points[..., 0, None, None]) + jnp.square(py - points[..., 1, None, None])
    spread = 2.0 * jnp.square(scales[:, None] * jnp.asarray(OKS_KAPPAS))[..., None, None]  # (P, 17, 1, 1)
    mass = jnp.sum(jnp.where(inside, values * jnp.exp(-dist2 / spread), 0.0), axis=(-2, -1))
    return jnp.where(present, heatmap_values * jnp.minimum(mass, 1.0), 0.0)


def soft_nms_scores(points, keypoint_scores, present, valid, nms_radius: float):
    """Person scores by soft keypoint-level NMS: (P, 17, 2), (P, 17), (P, 17), (P,) in detection order ->
    (P,) sum over k of s_{j,k} for keypoints not within r of keypoint k of an earlier valid person, / 17."""
    num = points.shape[0]
    dist2 = squared_norm(points[:, None] - points[None, :])  # (P_j, P_i, 17)
    earlier = jnp.arange(num)[None, :] < jnp.arange(num)[:, None]  # [j, i]: i before j
    blockers = (earlier & valid[None, :])[..., None] & present[None, :, :]
    suppressed = jnp.any(blockers & (dist2 < nms_radius * nms_radius), axis=1)  # (P, 17)
    return jnp.sum(jnp.where(suppressed, 0.0, keypoint_scores), axis=-1) / NUM_KEYPOINTS


def expected_oks_grid(moments, stride: int, heatmap_values, points, present, scales, oks_radius: int):
    """`expected_oks` on a coarse Hough grid (`hough.hough_grid` moments (3, Ny, Nx, K)): each node's vote mass
    counts at the centroid of its votes, and the nodes whose centroid lies in the (2 oks_radius + 1)^2 square
    around the rounded keypoint are summed, as the pixels of that square are at stride 1."""
    s, o = int(stride), hough.grid_offset(stride)
    _, ny, nx, num_keypoints = moments.shape
    reach = -(-int(oks_radius) // s) + 1  # nodes holding votes that may land in the square
    d = jnp.arange(-reach, reach + 1, dtype=jnp.int32)
    dx, dy = jnp.meshgrid(d, d)
    node = jnp.round((points - o) / s).astype(jnp.int32) + 1  # (P, 17, 2) nearest node (with the outer ring)
    ax = jnp.clip(node[..., 0, None, None] + dx, 0, nx - 1)
    ay = jnp.clip(node[..., 1, None, None] + dy, 0, ny - 1)
    channel = jnp.arange(num_keypoints, dtype=jnp.int32)[None, :, None, None]
    at = moments.reshape(3, -1)[:, (ay * nx + ax) * num_keypoints + channel]  # (3, P, 17, S, S)
    mass = at[0]
    safe = jnp.maximum(mass, 1e-30)
    cx, cy = at[1] / safe, at[2] / safe
    centre = jnp.round(points)
    within = (
        (jnp.abs(cx - centre[..., 0, None, None]) <= oks_radius)
        & (jnp.abs(cy - centre[..., 1, None, None]) <= oks_radius)
        & (mass > 0)
    )
    unique = (ax == node[..., 0, None, None] + dx) & (
        ay == node[..., 1, None, None] + dy
    )  # not a clipped copy
    dist2 = jnp.square(cx - points[..., 0, None, None]) + jnp.square(cy - points[..., 1, None, None])
    spread = 2.0 * jnp.square(scales[:, None] * jnp.asarray(OKS_KAPPAS))[..., None, None]
    total = jnp.sum(jnp.where(within & unique, mass * jnp.exp(-dist2 / spread), 0.0), axis=(-2, -1))
    return jnp.where(present, heatmap_values * jnp.minimum(total, 1.0), 0.0)


def mask_grid(size: int, stride: int):
    """The pixels where `assign_instance_masks` evaluates the embedding along a side of `size` pixels: one per
    block of `stride` pixels (block i = [s i, s i + s)), at its centre s i + s // 2 (clipped into the image)."""
    s = int(stride)
    return np.minimum(np.arange(-(-size // s)) * s + s // 2, size - 1).astype(np.int32)


def _box_distance(points, lo, hi):
    """Distance from points (..., 2) to the axis-aligned boxes [lo, hi] (..., 2) (0 inside)."""
    gap = jnp.maximum(jnp.maximum(lo - points, points - hi), 0.0)
    return jnp.sqrt(squared_norm(gap))


def _adopt_from_neighbours(best, owner, mask_threshold: float):
    """A block whose own grid pixel joins nobody takes the decision of the 3 x 3 neighbouring block with the
    smallest distance (first in row-major order on ties), so the foreground pixels of a block on a person's
    border whose centre lies just off the person are not lost; blocks with an owner keep theirs. A running
    minimum over the 9 shifted blocks (one elementwise pass; a stack of 9 and an argmin cost twice as much)."""
    height, width = best.shape
    padded_best = jnp.pad(best, 1, constant_values=jnp.inf)
    padded_owner = jnp.pad(owner, 1)
    adopted_best, adopted_owner = None, None
    for dy in range(3):
        for dx in range(3):
            b, o = (
                padded_best[dy : dy + height, dx : dx + width],
                padded_owner[dy : dy + height, dx : dx + width],
            )
            if adopted_best is None:
                adopted_best, adopted_owner = b, o
            else:  # strictly smaller: the first of equal distances stays
                smaller = b < adopted_best
                adopted_best, adopted_owner = (
                    jnp.where(smaller, b, adopted_best),
                    jnp.where(smaller, o, adopted_owner),
                )
    keep = best < mask_threshold
    return jnp.where(keep, best, adopted_best), jnp.where(keep, owner, adopted_owner)


def _block_max(x, stride: int, axis: int):
    """Maxima of consecutive runs of `stride` entries along `axis` (the last run may be shorter)."""
    size = x.shape[axis]
    full = size // stride * stride
    out = functools.reduce(
        jnp.maximum, [jax.lax.slice_in_dim(x, i, full, stride, axis) for i in range(stride)]
    )
    if full < size:
        out = jnp.concatenate(
            [out, jnp.max(jax.lax.slice_in_dim(x, full, size, 1, axis), axis, keepdims=True)], axis
        )
    return out


def block_owners(
    long_offsets,
    segmentation,
    points,
    keypoint_scores,
    scales,
    valid,
    mask_threshold: float = 0.25,
    seg_threshold: float = 0.5,
    stride: int = 1,
    tile: int = 16,
    candidates: int = 8,
):
    """Instance masks (Sec. 3.5), per block: long-range offsets L (H, W, 17, 2) and segmentation (H, W) (arrays
    or `fields.View`s; L is gathered from inside the lax.cond that skips an image without people), people
    points (P, 17, 2), keypoint scores (P, 17), scales (P,), valid (P,) -> (gh, gw) int8 (int32 for P >= 127):
    the person owning each stride x stride block, -1 for none (`owners_to_masks` makes the (P, H, W) masks).

    Which person owns a pixel (argmin_j D_j, if < mask_threshold) is decided at the pixels of
    `mask_grid(., stride)` (stride 1: every pixel, the paper; stride s: one pixel per s x s block, whose
    decision the block takes); the foreground test (segmentation > seg_threshold) is always per pixel.

    Fully vectorised and pruned: the grid is cut into tile x tile tiles; per tile and keypoint k the box
    [lo_k, hi_k] of the embeddings G_k of the tile's foreground grid pixels bounds their distances from below,
    D_j(x) >= sum_k w_{j,k} dist(y_{j,k}, box_k) (w = s / (sum s * lambda)); the `candidates` people with the
    lowest bounds under mask_threshold are the only ones evaluated for that tile (all tiles at once:
    tiles x candidates x tile^2 distances). Exact (equal to comparing every pixel with every person) whenever no
    tile has more than `candidates` people under the bound, which needs that many people's keypoint-weighted
    boxes within 0.25 lambda of one tile's embeddings. Ties go to the lower person index, as an argmin would.
    """
    points = jnp.asarray(points, jnp.float32)
    keypoint_scores = jnp.asarray(keypoint_scores, jnp.float32)
    scales = jnp.asarray(scales, jnp.float32)
    valid = jnp.asarray(valid, bool)
    height, width = fields.shape(long_offsets)[:2]
    num = points.shape[0]
    rows, cols = mask_grid(height, stride), mask_grid(width, stride)
    gh, gw = len(rows), len(cols)
    t = max(1, min(int(tile), max(gh, gw)))
    ty, tx = -(-gh // t), -(-gw // t)
    num_candidates = max(1, min(int(candidates), num))
    weight_sum = jnp.sum(keypoint_scores, axis=-1)
    usable = valid & (weight_sum > 0)
    weights = jnp.where(
        usable[:, None], keypoint_scores / (jnp.maximum(weight_sum, 1e-12) * scales)[:, None], 0.0
    )
    # a grid pixel counts as foreground if any pixel of its block is: the blocks' maxima of the segmentation,
    # over rows then columns as maxima of strided slices (XLA's CPU reduce_window took 2.5x longer)
    blocks = (
        _block_max(_block_max(fields.dense(segmentation), stride, 0), stride, 1) > seg_threshold
    )  # (gh, gw)
    dtype = jnp.int8 if num < 127 else jnp.int32

    # the embeddings on the grid, per tile, and their boxes: computed before the lax.cond and passed in (its
    # operands are stored once; inside, XLA fused the boxes' reductions into the (T, P, 17) bounds and redid
    # them for every person)
    # grid pixel (r, c) of tile (a, b), pixel (i, j) in it: r = a t + i, c = b t + j; gathered straight into the
    # (T, 17, t*t) layout the distances use (tiles past the grid's edge: clipped, not foreground)
    tile_rows = (np.arange(ty)[:, None, None, None] * t + np.arange(t)[None, None, :, None]).repeat(tx, 1)
    tile_cols = (np.arange(tx)[None, :, None, None] * t + np.arange(t)[None, None, None, :]).repeat(ty, 0)
    tile_rows = np.broadcast_to(tile_rows, (ty, tx, t, t)).reshape(ty * tx, t * t)
    tile_cols = np.broadcast_to(tile_cols, (ty, tx, t, t)).reshape(ty * tx, t * t)
    inside = (tile_rows < gh) & (tile_cols < gw)
    tile_rows, tile_cols = np.minimum(tile_rows, gh - 1), np.minimum(tile_cols, gw - 1)
    fg = blocks[tile_rows, tile_cols] & inside  # (T, t*t)
    ys, xs = rows[tile_rows][:, None, :], cols[tile_cols][:, None, :]  # (T, 1, t*t) pixel positions
    # L on the grid: each pixel's 17 x 2 offsets as one window (T, t*t, 17, 2), then keypoints before pixels
    g = fields.at(long_offsets, ys[:, 0], xs[:, 0])
    g = jnp.transpose(g, (3, 0, 2, 1))  # (2, T, 17, t*t)
    gx = g[0] + xs.astype(np.float32)  # G = x + L(x), (T, 17, t*t): pixels on the minor axis
    gy = g[1] + ys.astype(np.float32)
    gx, gy = materialize((gx, gy))
    # background pixels moved out of the way by a penalty added (a select before the reduction cost twice as
    # much on CPU: XLA stored the selected copy, then reduced it)
    penalty = jnp.where(fg, 0.0, 1e9)[:, None, :]  # (T, 1, t*t)

    def box(a, b):  # (min x, min y, max x, max y) of two partial boxes
        return (
            jnp.minimum(a[0], b[0]),
            jnp.minimum(a[1], b[1]),
            jnp.maximum(a[2], b[2]),
            jnp.maximum(a[3], b[3]),
        )

    inf = jnp.float32(jnp.inf)
    min_x, min_y, max_x, max_y = jax.lax.reduce(
        (gx + penalty, gy + penalty, gx - penalty, gy - penalty), (inf, inf, -inf, -inf), box, (2,)
    )  # one pass over the tiles' pixels for all four
    lo, hi = jnp.stack([min_x, min_y], -1), jnp.stack([max_x, max_y], -1)  # (T, 17, 2)

    def compute(gx, gy, lo, hi):
        gaps = _box_distance(points[None], lo[:, None], hi[:, None])  # (T, P, 17)
        bound = sum(weights[None, :, k] * gaps[:, :, k] for k in range(NUM_KEYPOINTS))  # (T, P), term by term
        bound_limit = mask_threshold * (1.0 + 1e-4) + 1e-6  # float slack: never prune a true owner
        key = jnp.where(usable[None] & (bound < bound_limit), bound, jnp.inf)
        neg, chosen = jax.lax.top_k(-key, num_candidates)  # (T, C) the lowest bounds
        chosen = jnp.sort(jnp.where(jnp.isfinite(neg), chosen, num), axis=-1)  # by person index; num = none
        live = chosen < num
        chosen = jnp.minimum(chosen, num - 1)

        def closer(c, state):  # candidate c of every tile against the best so far; ties: lower person index
            best, owner = state
            person = chosen[:, c]  # (T,)
            y, w = points[person], weights[person]  # (T, 17, 2), (T, 17)
            # the 17 keypoints' distances in one pass (T, 17, t*t), then their weighted terms added one by one
            # (as a reduction over an axis of 17, XLA on CPU made it a library call, slower; written as one
            # expression, it stored each keypoint's square root apart: 17 ops per round)
            d = jnp.sqrt(jnp.square(gx - y[:, :, 0, None]) + jnp.square(gy - y[:, :, 1, None]))
            dist = sum(w[:, k, None] * d[:, k] for k in range(NUM_KEYPOINTS))  # (T, t*t)
            better = live[:, c, None] & (dist < best)
            return jnp.where(better, dist, best), jnp.where(better, person[:, None], owner)

        # the live candidates are each tile's first ones (sorted by person index, the dead last): as many
        # rounds as the busiest tile has, usually far fewer than `candidates`
        rounds = jnp.max(jnp.sum(live, axis=1))
        init = (jnp.full((ty * tx, t * t), jnp.inf, jnp.float32), jnp.zeros((ty * tx, t * t), jnp.int32))
        best, owner = jax.lax.fori_loop(0, rounds, closer, init)
        best = best.reshape(ty, tx, t, t).transpose(0, 2, 1, 3).reshape(ty * t, tx * t)[:gh, :gw]
        owner = owner.reshape(ty, tx, t, t).transpose(0, 2, 1, 3).reshape(ty * t, tx * t)[:gh, :gw]
        if stride > 1:
            best, owner = _adopt_from_neighbours(best, owner, mask_threshold)
        owner = jnp.where(best < mask_threshold, owner, -1).astype(dtype)
        return owner

    # a lax.cond skips the work for an image without people
    return jax.lax.cond(jnp.any(usable), compute, lambda *_: jnp.full((gh, gw), -1, dtype), gx, gy, lo, hi)


def owners_to_masks(owners, segmentation, num_people: int, seg_threshold: float = 0.5, stride: int = 1):
    """`block_owners` (gh, gw) -> masks (P, H, W) bool: each block's person for the block's foreground pixels
    (segmentation > seg_threshold, tested per pixel)."""
    foreground = jnp.asarray(segmentation, jnp.float32) > seg_threshold  # (H, W)
    height, width = foreground.shape
    gh, gw = owners.shape
    if stride > 1:  # each block's decision to its pixels: broadcast + reshape (cheaper than gathers)
        owners = jnp.broadcast_to(owners[:, None, :, None], (gh, stride, gw, stride))
        owners = owners.reshape(gh * stride, gw * stride)[:height, :width]
    owners = jnp.where(foreground, owners, -1)  # (H, W): the person of each pixel, -1 for none
    # stored once: fused into the (P, H, W) comparison, XLA redid the block lookup and the foreground test for
    # every person
    owners = materialize(owners)
    return owners[None] == jnp.arange(num_people, dtype=owners.dtype)[:, None, None]


def stored(tree, flag):
    """`tree` unchanged, behind a lax.cond on the (unbatched) runtime bool `flag`: XLA on CPU drops
    optimization barriers and fuses a small map into every element of a big consumer, recomputing it there
    (the (P, H, W) masks recomputed the block owners per pixel: 1.7 ms of 4.5); a conditional's operands are
    stored once."""
    return jax.lax.cond(flag, lambda t: t, lambda t: jax.tree.map(jnp.copy, t), tree)


def assign_instance_masks(
    long_offsets,
    segmentation,
    points,
    keypoint_scores,
    scales,
    valid,
    mask_threshold: float = 0.25,
    seg_threshold: float = 0.5,
    stride: int = 1,
    tile: int = 16,
    candidates: int = 8,
):
    """Instance masks (P, H, W) bool: `block_owners` then `owners_to_masks` (see there)."""
    owners = block_owners(
        long_offsets,
        segmentation,
        points,
        keypoint_scores,
        scales,
        valid,
        mask_threshold,
        seg_threshold,
        stride,
        tile,
        candidates,
    )
    owners = stored(owners, jnp.any(jnp.asarray(valid)))
    return owners_to_masks(owners, segmentation, points.shape[0], seg_threshold, stride)
