"""Plain numpy/scipy reference of `jhuman.ops.personlab.decode` (same steps, same options, same outputs).

Written the way the popular numpy port (octiapp/KerasPersonLab) is, loops over candidates, people and tree
edges, dense refinement of the whole offset fields, float64 inside, but without the port's known weaknesses:
keypoints stay sub-pixel, a keypoint that is not reached keeps its parent's position with score 0 (never
(0, 0)), people get a score (expected OKS + soft keypoint NMS), and the person scale comes from present
keypoints only. tests/ops/test_personlab_decode.py checks the jax decoder against it and
benchmarks/personlab_decode.py times both; do not use it in training or evaluation loops.

Definitions are those of `jhuman.ops.personlab.grouping` and `jhuman.ops.personlab.hough` (see their
docstrings); in short:
- Hough: h_k(x) = 1/(pi R^2) sum_i p_k(x_i) B(x_i + S_k(x_i) - x), votes outside the image dropped;
- smoothing: scipy.ndimage.gaussian_filter1d over rows and columns, mode='constant', truncate=3;
- peaks: equal to the 3x3 maximum (constant -inf outside), above the threshold; sorted by score, ties by flat
  (row, column, type) index; position = peak + clip(S_k(peak), -1, 1);
- greedy: the literal loop over candidates; BFS over the tree from the seed along the refined mid offsets,
  then (with long offsets) the keypoints not present read from the long-range offsets at the best-fitting
  present keypoint;
- scores: expected OKS (Hough mass in a (2 oks_radius + 1)^2 window weighted by a Gaussian of std lambda kappa),
  soft keypoint NMS against earlier people; masks: nearest person in the long-range embedding.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage

from jhuman.classes import COCO_OKS_SIGMAS, PERSONLAB_DIRECTED_EDGES

# the options, their defaults and the automatic strides: one definition (jax-only options are accepted and
# ignored here: mask_tile, mask_candidates, batch_mode)
from jhuman.ops.personlab.decoder import decode_options

# the breadth-first edge order of the tree from each seed type (plain numpy tables)
from jhuman.ops.personlab.grouping import TRAVERSAL_EDGES, TRAVERSAL_SOURCES, TRAVERSAL_TARGETS

NUM_KEYPOINTS = 17
EDGE_TARGETS = np.array([l for _, l in PERSONLAB_DIRECTED_EDGES])


def bilinear_sample(field, points, channels=None):
    """field (H, W, *T) at points (..., 2) (x, y) -> (..., *T); with channels (...) field (H, W, C, *T) is read at
    channel channels[i] for point i. Points are clamped into the image first."""
    field = np.asarray(field, np.float64)
    height, width = field.shape[:2]
    points = np.asarray(points, np.float64)
    x = np.clip(points[..., 0], 0, width - 1)
    y = np.clip(points[..., 1], 0, height - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    if channels is None:

        def at(yy, xx):
            return field[yy, xx]

        trailing = field.ndim - 2
    else:
        channels = np.broadcast_to(np.asarray(channels), x0.shape)

        def at(yy, xx):
            return field[yy, xx, channels]

        trailing = field.ndim - 3
    expand = (...,) + (None,) * trailing
    fx, fy = fx[expand], fy[expand]
    return (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * (
        (1 - fx) * at(y1, x0) + fx * at(y1, x1)
    )


def _grid(height, width):
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([xs, ys], axis=-1)


def _refine(offsets, field, channels):
    height, width = offsets.shape[:2]
    grid = _grid(height, width)[:, :, None, :]
    landing = grid + offsets
    landing[..., 0] = np.clip(landing[..., 0], 0, width - 1)
    landing[..., 1] = np.clip(landing[..., 1], 0, height - 1)
    return landing + bilinear_sample(field, landing, channels) - grid


def refine_mid_offsets(mid_offsets, short_offsets, steps=2):
    """M_{k,l}(x) <- p + S_l(p) - x, p = clamp(x + M_{k,l}(x)), over the whole (H, W, 32, 2) field."""
    mid = np.asarray(mid_offsets, np.float64)
    channels = np.broadcast_to(EDGE_TARGETS, mid.shape[:3])
    for _ in range(steps):
        mid = _refine(mid, short_offsets, channels)
    return mid


def refine_long_offsets(long_offsets, short_offsets, steps=1):
    """`steps` rounds with the raw long offsets themselves, then `steps` rounds with the short offsets."""
    raw = np.asarray(long_offsets, np.float64)
    channels = np.broadcast_to(np.arange(raw.shape[2]), raw.shape[:3])
    out = raw
    for field in (raw, short_offsets):
        for _ in range(steps):
            out = _refine(out, field, channels)
    return out


def hough_votes(heatmaps, short_offsets, radius):
    """Eq. (1), one keypoint channel at a time with np.bincount over the 4 bilinear neighbours."""
    heatmaps = np.asarray(heatmaps, np.float64)
    short = np.asarray(short_offsets, np.float64)
    height, width, num_keypoints = heatmaps.shape
    grid = _grid(height, width)
    out = np.zeros((height, width, num_keypoints))
    for k in range(num_keypoints):
        landing = grid + short[:, :, k]
        x0, y0 = np.floor(landing[..., 0]), np.floor(landing[..., 1])
        fx, fy = landing[..., 0] - x0, landing[..., 1] - y0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                x, y = x0 + dx, y0 + dy
                inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
                index = (y[inside] * width + x[inside]).astype(np.int64)
                out[:, :, k] += np.bincount(
                    index, (heatmaps[:, :, k] * wx * wy)[inside], minlength=height * width
                ).reshape(height, width)
    return out / (math.pi * radius * radius)


def smooth(h, sigma):
    if sigma <= 0:
        return np.asarray(h, np.float64)
    h = scipy.ndimage.gaussian_filter1d(
        np.asarray(h, np.float64), sigma, axis=0, mode="constant", truncate=3.0
    )
    return scipy.ndimage.gaussian_filter1d(h, sigma, axis=1, mode="constant", truncate=3.0)


def find_peaks(h, threshold, max_candidates, short_offsets):
    """-> positions (N, 2), types (N,), scores (N,) (only the valid ones, best first)."""
    pooled = scipy.ndimage.maximum_filter(h, size=(3, 3, 1), mode="constant", cval=-np.inf)
    ys, xs, ks = np.nonzero((h >= pooled) & (h > threshold))
    scores = h[ys, xs, ks]
    flat = (ys * h.shape[1] + xs) * h.shape[2] + ks
    order = np.lexsort((flat, -scores))[:max_candidates]
    ys, xs, ks, scores = ys[order], xs[order], ks[order], scores[order]
    refine = np.clip(np.asarray(short_offsets, np.float64)[ys, xs, ks], -1.0, 1.0)
    return np.stack([xs, ys], axis=-1) + refine, ks, scores, len(flat) - len(order)


def hough_grid(heatmaps, short_offsets, radius, stride):
    """Eq. (1) sampled every `stride` pixels onto a grid of that spacing (hough.hough_grid): -> (3, Ny, Nx, K)
    mass and first moments, the nodes at pixel o + s (i - 1), o = s // 2, voters at o + s i."""
    heatmaps = np.asarray(heatmaps, np.float64)
    short = np.asarray(short_offsets, np.float64)
    height, width, num_keypoints = heatmaps.shape
    s, o = stride, stride // 2
    ys, xs = np.arange(o, height, s), np.arange(o, width, s)
    ny, nx = len(ys) + 2, len(xs) + 2
    out = np.zeros((3, ny, nx, num_keypoints))
    vy, vx = np.meshgrid(ys, xs, indexing="ij")
    for k in range(num_keypoints):
        zx, zy = vx + short[vy, vx, k, 0], vy + short[vy, vx, k, 1]
        inside = (zx >= 0) & (zx <= width - 1) & (zy >= 0) & (zy <= height - 1)
        zx, zy = zx[inside], zy[inside]
        mass = heatmaps[vy, vx, k][inside] * s * s / (math.pi * radius * radius)
        ux, uy = (zx - o) / s + 1, (zy - o) / s + 1
        bx, by = np.floor(ux).astype(np.int64), np.floor(uy).astype(np.int64)
        fx, fy = ux - bx, uy - by
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                for v, value in enumerate((mass, mass * zx, mass * zy)):
                    np.add.at(out[v, :, :, k], (by + dy, bx + dx), value * wx * wy)
    return out


def grid_peaks(moments, threshold, max_candidates, sigma, stride, short_offsets):
    """Nodes holding the most mass of their 3 x 3 nodes whose 3 x 3 mass / (2 pi sigma^2) > threshold, the
    max_candidates largest; placed at the 3 x 3 vote centroid y and scored by sum m exp(-|c - y|^2 / 2 sigma^2)
    / (2 pi sigma^2) over those nodes (c: each node's own centroid), kept if above the threshold, ordered by it;
    then moved by the short-range offset at y (clipped to +-stride)."""
    summed = np.stack([scipy.ndimage.correlate(m, np.ones((3, 3, 1)), mode="constant") for m in moments])
    norm = 2 * math.pi * sigma * sigma if sigma > 0 else 1.0
    pooled = scipy.ndimage.maximum_filter(moments[0], size=(3, 3, 1), mode="constant", cval=-np.inf)
    ny, nx, num_keypoints = moments[0].shape
    ys, xs, ks = np.nonzero((moments[0] >= pooled) & (summed[0] / norm > threshold))
    bounds = summed[0, ys, xs, ks] / norm
    flat = (ys * nx + xs) * num_keypoints + ks
    order = np.lexsort((flat, -bounds))[:max_candidates]
    dropped = len(flat) - len(order)
    ys, xs, ks, flat, scores = ys[order], xs[order], ks[order], flat[order], bounds[order]
    positions = np.stack(
        [summed[1, ys, xs, ks] / summed[0, ys, xs, ks], summed[2, ys, xs, ks] / summed[0, ys, xs, ks]],
        axis=-1,
    ).reshape(-1, 2)
    if sigma > 0:
        scores = np.zeros(len(ys))
        for n, (y, x, k) in enumerate(zip(ys, xs, ks)):
            for a in range(max(y - 1, 0), min(y + 2, ny)):
                for b in range(max(x - 1, 0), min(x + 2, nx)):
                    m = moments[0, a, b, k]
                    if m > 0:
                        d2 = np.sum((moments[1:, a, b, k] / m - positions[n]) ** 2)
                        scores[n] += m * math.exp(-d2 / (2 * sigma * sigma))
        scores /= norm
        keep = np.lexsort((flat, -scores))
        keep = keep[scores[keep] > threshold]
        positions, ks, scores = positions[keep], ks[keep], scores[keep]
    snap = np.array([bilinear_sample(short_offsets[:, :, k], p) for p, k in zip(positions, ks)]).reshape(
        -1, 2
    )
    return positions + np.clip(snap, -stride, stride), ks, scores, dropped


def _inside(point, height, width):
    return 0 <= point[0] <= width - 1 and 0 <= point[1] <= height - 1


def complete_from_long(
    points,
    present,
    heat,
    heatmaps,
    long_offsets,
    short_offsets,
    min_scale,
    mask_threshold,
    min_keypoint_score,
    refine_steps,
):
    """One person: fill the keypoints that are not present from the long-range offsets at the present keypoint
    whose pixel fits the person best (see grouping.complete_from_long). Returns new (points, present, heat)."""
    height, width = heatmaps.shape[:2]
    points, present, heat = points.copy(), present.copy(), heat.copy()
    scale = person_scale(points, present, min_scale)
    best, source = np.inf, None
    for k in np.flatnonzero(present):
        others = [l for l in np.flatnonzero(present) if l != k]
        if not others:
            continue
        error = sum(
            np.hypot(*(points[k] + bilinear_sample(long_offsets[:, :, l], points[k]) - points[l]))
            for l in others
        )
        distance = error / (len(others) * scale)
        if distance < best:
            best, source = distance, k
    if source is None or not best < mask_threshold:
        return points, present, heat
    for m in np.flatnonzero(~present):
        proposal = points[source] + bilinear_sample(long_offsets[:, :, m], points[source])
        for _ in range(refine_steps):
            proposal = np.clip(proposal, 0, [width - 1, height - 1])
            proposal = proposal + bilinear_sample(short_offsets[:, :, m], proposal)
        p = bilinear_sample(heatmaps[:, :, m], proposal)
        if _inside(proposal, height, width) and p >= min_keypoint_score:
            points[m], present[m], heat[m] = proposal, True, p
    return points, present, heat


def group_people(
    heatmaps, mid_refined, positions, types, nms_radius, max_people, min_keypoint_score, complete=None
):
    """The paper's greedy loop. -> (list of (points (17, 2), reached (17,), present (17,), heat (17,)), the
    number of people found beyond max_people). complete: None, or a function (points, present, heat) ->
    (points, present, heat) applied to each new person before it joins the list (the long-range completion).
    Past max_people the loop goes on, counting the people it would start (they block later seeds as usual)."""
    height, width = heatmaps.shape[:2]
    people = []
    for position, k in zip(positions, types):
        if any(person[2][k] and np.hypot(*(person[0][k] - position)) < nms_radius for person in people):
            continue
        points = np.zeros((NUM_KEYPOINTS, 2))
        reached = np.zeros(NUM_KEYPOINTS, bool)
        points[k], reached[k] = position, True
        for edge, source, target in zip(TRAVERSAL_EDGES[k], TRAVERSAL_SOURCES[k], TRAVERSAL_TARGETS[k]):
            start = points[source]
            if reached[source] and _inside(start, height, width):
                points[target] = start + bilinear_sample(mid_refined[:, :, edge], start)
                reached[target] = True
            else:
                points[target] = np.clip(start, 0, [width - 1, height - 1])
        heat = np.array([bilinear_sample(heatmaps[:, :, j], points[j]) for j in range(NUM_KEYPOINTS)])
        present = np.array(
            [
                reached[j] and _inside(points[j], height, width) and heat[j] >= min_keypoint_score
                for j in range(NUM_KEYPOINTS)
            ]
        )
        if complete is not None:
            points, present, heat = complete(points, present, heat)
        people.append((points, reached, present, heat))
    return people[:max_people], max(len(people) - max_people, 0)


def person_scale(points, present, min_scale):
    if not present.any():
        return float(min_scale)
    extent = points[present].max(0) - points[present].min(0)
    return max(math.sqrt(extent[0] * extent[1]), min_scale)


def expected_oks(votes, heat, points, present, scale, oks_radius):
    height, width = votes.shape[:2]
    kappas = 2.0 * COCO_OKS_SIGMAS
    scores = np.zeros(NUM_KEYPOINTS)
    for k in range(NUM_KEYPOINTS):
        if not present[k]:
            continue
        cx, cy = (int(v) for v in np.round(points[k]))
        mass = 0.0
        for y in range(max(cy - oks_radius, 0), min(cy + oks_radius, height - 1) + 1):
            for x in range(max(cx - oks_radius, 0), min(cx + oks_radius, width - 1) + 1):
                d2 = (x - points[k, 0]) ** 2 + (y - points[k, 1]) ** 2
                mass += votes[y, x, k] * math.exp(-d2 / (2.0 * (scale * kappas[k]) ** 2))
        scores[k] = heat[k] * min(mass, 1.0)
    return scores


def expected_oks_grid(moments, stride, heat, points, present, scale, oks_radius):
    """expected_oks on the grid: every node's mass at its vote centroid, the nodes whose centroid lies in the
    (2 oks_radius + 1)^2 square around the rounded keypoint."""
    kappas = 2.0 * COCO_OKS_SIGMAS
    mass = moments[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        cx, cy = moments[1] / mass, moments[2] / mass
    scores = np.zeros(NUM_KEYPOINTS)
    for k in range(NUM_KEYPOINTS):
        if not present[k]:
            continue
        centre = np.round(points[k])
        near = (
            (mass[..., k] > 0)
            & (np.abs(cx[..., k] - centre[0]) <= oks_radius)
            & (np.abs(cy[..., k] - centre[1]) <= oks_radius)
        )
        d2 = (cx[..., k][near] - points[k, 0]) ** 2 + (cy[..., k][near] - points[k, 1]) ** 2
        total = np.sum(mass[..., k][near] * np.exp(-d2 / (2.0 * (scale * kappas[k]) ** 2)))
        scores[k] = heat[k] * min(total, 1.0)
    return scores


def soft_nms_scores(points, keypoint_scores, present, nms_radius):
    """points (P, 17, 2) in detection order -> (P,)."""
    out = np.zeros(len(points))
    for j in range(len(points)):
        total = 0.0
        for k in range(NUM_KEYPOINTS):
            if any(present[i, k] and np.hypot(*(points[i, k] - points[j, k])) < nms_radius for i in range(j)):
                continue
            total += keypoint_scores[j, k]
        out[j] = total / NUM_KEYPOINTS
    return out


def instance_masks(
    long_offsets, segmentation, points, keypoint_scores, scales, mask_threshold, seg_threshold, stride=1
):
    """Nearest person in the long-range embedding; every pixel against every person. -> (P, H, W) bool. With
    stride s the owner is decided at one pixel per s x s block (min(s i + s // 2, size - 1)) for the block."""
    height, width = segmentation.shape
    rows = np.minimum(np.arange(-(-height // stride)) * stride + stride // 2, height - 1)
    cols = np.minimum(np.arange(-(-width // stride)) * stride + stride // 2, width - 1)
    grid = _grid(height, width)[rows][:, cols]
    embedding = grid[:, :, None, :] + long_offsets[rows][:, cols]  # (gh, gw, 17, 2)
    num = len(points)
    distance = np.full((num, len(rows), len(cols)), np.inf)
    for j in range(num):
        total = keypoint_scores[j].sum()
        if total <= 0:
            continue
        d = np.zeros((len(rows), len(cols)))
        for k in range(NUM_KEYPOINTS):
            if keypoint_scores[j, k] > 0:
                d += keypoint_scores[j, k] * np.linalg.norm(embedding[:, :, k] - points[j, k], axis=-1)
        distance[j] = d / (total * scales[j])
    masks = np.zeros((num, height, width), bool)
    if num:
        owner, best = np.argmin(distance, axis=0), np.min(distance, axis=0)
        if stride > 1:  # a block without an owner takes its best 3 x 3 neighbour's decision
            new_owner, new_best = owner.copy(), best.copy()
            for i in range(len(rows)):
                for j in range(len(cols)):
                    if best[i, j] < mask_threshold:
                        continue
                    new_best[i, j] = np.inf  # the first minimum in row-major order, itself included
                    for di in (-1, 0, 1):
                        for dj in (-1, 0, 1):
                            a, b = i + di, j + dj
                            if 0 <= a < len(rows) and 0 <= b < len(cols) and best[a, b] < new_best[i, j]:
                                new_owner[i, j], new_best[i, j] = owner[a, b], best[a, b]
            owner, best = new_owner, new_best
        block_y, block_x = np.arange(height) // stride, np.arange(width) // stride
        owner = owner[block_y][:, block_x]
        close = (best < mask_threshold)[block_y][:, block_x]
        assigned = (segmentation > seg_threshold) & close
        masks = (owner[None] == np.arange(num)[:, None, None]) & assigned[None]
    return masks


def decode(heatmaps, short_offsets, mid_offsets, long_offsets=None, segmentation=None, **options):
    """One image, numpy in and out; the same outputs (and padding to max_people) as personlab.decode."""
    o = decode_options(np.shape(heatmaps)[:2], **options)
    heatmaps = np.asarray(heatmaps, np.float64)
    short = np.asarray(short_offsets, np.float64)
    height, width = heatmaps.shape[:2]
    stride = int(o["hough_stride"])
    if stride == 1:
        votes = hough_votes(heatmaps, short, o["radius"])
        smoothed = smooth(votes, o["hough_sigma"])
        positions, types, _, dropped = find_peaks(smoothed, o["peak_threshold"], o["max_candidates"], short)
    else:
        moments = hough_grid(heatmaps, short, o["radius"], stride)
        positions, types, _, dropped = grid_peaks(
            moments, o["peak_threshold"], o["max_candidates"], o["hough_sigma"], stride, short
        )
    mid = refine_mid_offsets(mid_offsets, short, o["refine_steps"])
    complete = None
    if long_offsets is not None and o["complete_from_long"]:

        def complete(points, present, heat):
            return complete_from_long(
                points,
                present,
                heat,
                heatmaps,
                np.asarray(long_offsets, np.float64),
                short,
                o["min_scale"],
                o["mask_threshold"],
                o["min_keypoint_score"],
                max(o["refine_steps"], 1),
            )

    people, dropped_people = group_people(
        heatmaps, mid, positions, types, o["nms_radius"], o["max_people"], o["min_keypoint_score"], complete
    )
    num = len(people)
    points = np.array([p[0] for p in people]).reshape(num, NUM_KEYPOINTS, 2)
    present = np.array([p[2] for p in people]).reshape(num, NUM_KEYPOINTS)
    scales = np.array([person_scale(p[0], p[2], o["min_scale"]) for p in people])
    if stride == 1:
        keypoint_scores = [
            expected_oks(votes, p[3], p[0], p[2], s, o["oks_radius"]) for p, s in zip(people, scales)
        ]
    else:
        keypoint_scores = [
            expected_oks_grid(moments, stride, p[3], p[0], p[2], s, o["oks_radius"])
            for p, s in zip(people, scales)
        ]
    keypoint_scores = np.array(keypoint_scores).reshape(num, NUM_KEYPOINTS)
    scores = soft_nms_scores(points, keypoint_scores, present, o["nms_radius"])
    order = np.argsort(-scores, kind="stable")
    points, present, scales = points[order], present[order], scales[order]
    keypoint_scores, scores = keypoint_scores[order], scores[order]
    cap = o["max_people"]
    out = {
        "keypoints": np.zeros((cap, NUM_KEYPOINTS, 3), np.float32),
        "keypoint_valid": np.zeros((cap, NUM_KEYPOINTS), bool),
        "scores": np.zeros(cap, np.float32),
        "valid": np.arange(cap) < num,
        "num_people": np.int32(num),
        "scales": np.zeros(cap, np.float32),
        "dropped_candidates": np.int32(dropped),
        "dropped_people": np.int32(dropped_people),
    }
    out["keypoints"][:num, :, :2] = points
    out["keypoints"][:num, :, 2] = keypoint_scores
    out["keypoint_valid"][:num] = present
    out["scores"][:num] = scores
    out["scales"][:num] = scales
    if long_offsets is not None and segmentation is not None:
        long = np.asarray(long_offsets, np.float64)
        if o["refine_steps"] > 0 and o["refine_long"]:
            long = refine_long_offsets(long, short, o["refine_steps"])
        masks = np.zeros((cap, height, width), bool)
        masks[:num] = instance_masks(
            long,
            np.asarray(segmentation, np.float64),
            points,
            keypoint_scores,
            scales,
            o["mask_threshold"],
            o["seg_threshold"],
            int(o["mask_stride"]),
        )
        out["masks"] = masks
    return out
