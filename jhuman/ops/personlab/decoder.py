"""PersonLab decoding: network outputs -> people (keypoints, scores, instance masks), jit- and vmap-able.

Papandreou et al., "PersonLab: Person Pose Estimation and Instance Segmentation with a Bottom-Up, Part-Based,
Geometric Embedding Model", ECCV 2018 (shared/reference/personlab.md). The steps, each a pure jax.numpy function:

1-3. Keypoint candidates, all types in ONE queue (top `max_candidates`), two ways (option `hough_stride`):
   - stride 1, the paper: `hough.hough_votes` Eq. (1) at every pixel (bilinear scatter-add, all 17 channels),
     `hough.smooth` (Gaussian, sigma `hough_sigma`), `hough.find_peaks` (3x3 local maxima above
     `peak_threshold`; sub-pixel by the short-range offset at the peak, clipped to +-1 px);
   - stride s > 1 (the default, s = R / 4 = 8 for R = 32): `hough.hough_grid` samples the votes every s px
     (weight s^2) and splats them bilinearly onto a grid of spacing s, with their first moments;
     `hough.grid_peaks`: nodes holding the most mass of their 3x3 nodes, scored by that mass on the smoothed
     map's scale (so `peak_threshold` means the same), placed at the centroid of those votes and moved by the
     short-range offset there (clipped to +-s). See "Why a grid" below;
4. `grouping.traverse`  every candidate's skeleton along the mid-range offsets, refined `refine_steps` times by
                        the short-range offsets at the sampled points only (`offsets.sample_refined_mid`);
4b. `grouping.complete_from_long` (with long-range offsets; not in the paper): keypoints the tree walk could
                        not reach because an inner keypoint is missing (an unlabelled nose cuts a person into
                        its two sides and its head) are read from the long-range offsets at the person's own
                        best-fitting keypoint and snapped by the short-range offsets (`complete_from_long`);
5. `grouping.greedy_select`  the paper's greedy pass (a seed within `nms_radius` of the same keypoint of an
                        earlier person is rejected), at most `max_people` people;
6. `grouping.expected_oks` (on the grid: `expected_oks_grid`, each node's mass at its votes' centroid),
   `grouping.soft_nms_scores`  keypoint and person scores;
7. `grouping.block_owners` + `grouping.owners_to_masks`  with long-range offsets and segmentation:
                        G_k(x) = x + L_k(x) (refined with themselves and the short-range offsets if
                        `refine_long`), nearest person below mask_threshold, decided per mask_stride x mask_stride
                        block at its centre pixel (stride 1 = every pixel, the paper); the foreground test is
                        per pixel. Vectorised: the `mask_candidates` people with the lowest lower bound per tile.
See those modules for the exact definitions (presence of keypoints, person scale, window sizes).
`jhuman.ops.personlab.reference` is the same pipeline in plain numpy/scipy, strides included (the tests compare
the two at strides 1/1, 4/2 and 8/4).

Why a grid (where we differ from the paper's decoder, and why): Eq. (1) at every pixel of a 401x401 image is 2.7 M
bilinear votes, and at 1080p 35 M; on 2 CPU cores that scatter alone took longer than the whole time budget of a
decoder 50x faster than the numpy port. The network predicts its maps at output stride 8 and upsamples them
bilinearly, so neighbouring pixels vote almost alike: sampling every s-th pixel (weight s^2) keeps the vote mass,
and the votes' centroid + one short-range snap keeps positions sub-pixel. Decided per 4x4 block, the masks keep
per-pixel foreground. On ground-truth outputs of synthetic COCO scenes (tests/tasks/test_personlab.py's oracle) the
grid keeps the keypoint AP of the exact computation and loses a little segm AP at the blocks' edges between
touching people (measured figures: benchmarks/RESULTS.md, "Moved from module docstrings"). `hough_stride=1,
mask_stride=1` is the paper's computation exactly.

Public API (DESIGN.md): `KEYPOINTS`, `EDGES`, `DIRECTED_EDGES`, and

    decode(heatmaps, short_offsets, mid_offsets, long_offsets=None, segmentation=None, **options)

heatmaps (H, W, 17) probabilities, short (H, W, 17, 2), mid (H, W, 32, 2), long (H, W, 17, 2) offsets (x, y) in
pixels, segmentation (H, W) probability, all at input resolution, optionally with one leading batch axis (then
vmapped, the grid's Hough scatter done once for the whole batch; or lax.map-ped: `batch_mode`). Returns a dict
of jax arrays (with the batch axis if the inputs had one):
  keypoints (P, 17, 3) float32 [x, y, score]: sub-pixel positions; a keypoint that was not reached / not present
      keeps a real position (on its tree parent's, clamped into the image), never (0, 0), with score 0;
  keypoint_valid (P, 17) bool: the keypoint is present (see `grouping`);
  scores (P,) float32 person scores (soft keypoint NMS of expected-OKS scores);
  valid (P,) bool; num_people () int32; people sorted by score, valid ones first; padding rows are all zero;
  scales (P,) float32 the person scale lambda (sqrt of the present keypoints' box area, >= min_scale);
  masks (P, H, W) bool, only when long offsets and segmentation are given.
P = max_people is fixed (padding + `valid`), so decode jits (options are static) and vmaps.

Options (keyword only; static: a new value compiles a new version, new array VALUES never do):
  max_people=30, max_candidates=256, radius=32.0 (disk radius R of the targets), nms_radius=10.0 (r),
  peak_threshold=0.01 (on the smoothed Hough map; a perfect isolated keypoint peaks at ~0.03-0.04 with sigma 2),
  hough_sigma=2.0 (0 = no smoothing), refine_steps=2 (0 when the model already refined its offsets),
  min_keypoint_score=0.05 (heatmap probability for a keypoint to count), oks_radius=8 (half-size of the
  expected-OKS window, pixels), min_scale=16.0 (floor of the person scale lambda, pixels), mask_threshold=0.25,
  seg_threshold=0.5, hough_stride=0 (0 = automatic: R // 4 clipped to [1, 8]; 1 = Eq. (1) at every pixel),
  mask_stride=0 (0 = automatic: hough_stride // 2, at least 1; 1 = every pixel's own decision), mask_tile=8 (grid
  pixels per side of a mask tile), mask_candidates=8 (people evaluated per mask tile: the exact nearest person
  unless more than that many can reach one tile), refine_long=False (also refine the long-range offsets, with
  themselves then the short-range offsets, refine_steps rounds each: what raw network outputs need;
  jhuman.models.personlab does it inside the model when its refine_steps > 0, and the task turns this on otherwise;
  it costs 2 * refine_steps dense bilinear gathers of the (H, W, 17, 2) field), complete_from_long=True (step 4b;
  False = the paper's decoder, which returns such a person in pieces and so scores a lower keypoint AP on
  ground-truth outputs of synthetic COCO scenes), batch_mode='auto' (with a batch axis: 'auto' = 'vmap'; 'map' =
  lax.map, one image after the other inside the same compiled call, which copies each image's inputs and is slower
  on CPU; same results). The measured costs of refine_long and complete_from_long: benchmarks/RESULTS.md, "Moved
  from module docstrings".
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jhuman.classes import COCO_KEYPOINTS, PERSONLAB_DIRECTED_EDGES, PERSONLAB_EDGES
from jhuman.ops.personlab import grouping, hough
from jhuman.ops.personlab import offsets as offsets_lib

KEYPOINTS = COCO_KEYPOINTS
EDGES = PERSONLAB_EDGES
DIRECTED_EDGES = PERSONLAB_DIRECTED_EDGES

DEFAULT_OPTIONS = {
    "max_people": 30,
    "max_candidates": 256,
    "radius": 32.0,
    "nms_radius": 10.0,
    "peak_threshold": 0.01,
    "hough_sigma": 2.0,
    "refine_steps": 2,
    "min_keypoint_score": 0.05,
    "oks_radius": 8,
    "min_scale": 16.0,
    "mask_threshold": 0.25,
    "seg_threshold": 0.5,
    "hough_stride": 0,
    "mask_stride": 0,
    "mask_tile": 8,
    "mask_candidates": 8,
    "refine_long": False,
    "complete_from_long": True,
    "batch_mode": "auto",
}
BATCH_MODES = ("auto", "vmap", "map")
_INT_OPTIONS = (
    "max_people",
    "max_candidates",
    "refine_steps",
    "oks_radius",
    "hough_stride",
    "mask_stride",
    "mask_tile",
    "mask_candidates",
)


def decode_options(**options) -> dict:
    """Defaults updated by `options` (an unknown name is an error naming the valid ones), typed for jit."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(f"unknown decode option(s) {unknown}; valid: {sorted(DEFAULT_OPTIONS)}")
    merged = {**DEFAULT_OPTIONS, **options}
    for name, value in merged.items():
        if name in _INT_OPTIONS:
            merged[name] = int(value)
        elif name in ("refine_long", "complete_from_long"):
            merged[name] = bool(value)
        elif name == "batch_mode":
            if value not in BATCH_MODES:
                raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {value!r}")
        else:
            merged[name] = float(value)
    for name in ("hough_stride", "mask_stride"):
        if merged[name] < 0:
            raise ValueError(f"{name} must be >= 1 (or 0: automatic), got {merged[name]}")
    if merged["hough_stride"] == 0:  # automatic: R / 4 pixels, 8 for the paper's R = 32
        merged["hough_stride"] = int(min(max(merged["radius"] // 4, 1), 8))
    if merged["mask_stride"] == 0:  # automatic: half the Hough stride, 4 for R = 32
        merged["mask_stride"] = max(merged["hough_stride"] // 2, 1)
    return merged


def decode_single(heatmaps, short_offsets, mid_offsets, long_offsets=None, segmentation=None, **options):
    """`decode` for one image (no batch axis), not jitted: (H, W, 17), (H, W, 17, 2), (H, W, 32, 2),
    optional (H, W, 17, 2) and (H, W) -> the dict described in the module docstring."""
    o = decode_options(**options)
    out = _decode_people(heatmaps, short_offsets, mid_offsets, long_offsets, segmentation, **o)
    return _expand_masks(out, segmentation, o) if "mask_owners" in out else out


def _decode_people(
    heatmaps, short_offsets, mid_offsets, long_offsets=None, segmentation=None, moments=None, **options
):
    """`decode_single` up to the masks: with long offsets and segmentation the dict holds 'mask_owners'
    (gh, gw), the person of each mask_stride block (`grouping.block_owners`), instead of 'masks'. `moments`:
    the `hough.hough_grid` of these inputs if already computed (the batch computes it for all images at once)."""
    o = decode_options(**options)
    heatmaps = jnp.asarray(heatmaps, jnp.float32)
    short = jnp.asarray(short_offsets, jnp.float32)
    mid = jnp.asarray(mid_offsets, jnp.float32)
    num = o["max_people"]

    stride = o["hough_stride"]
    if stride == 1:  # Eq. (1) at every pixel, smoothed, peaks on the full-resolution map
        votes = hough.hough_votes(heatmaps, short, o["radius"])  # (H, W, 17)
        smoothed = hough.smooth(votes, o["hough_sigma"])
        positions, types, _, cand_valid = hough.find_peaks(
            smoothed, o["peak_threshold"], o["max_candidates"], short
        )
    else:  # Eq. (1) sampled every `stride` pixels onto a grid of that spacing (see hough.hough_grid)
        if moments is None:
            moments = hough.hough_grid(heatmaps, short, o["radius"], stride)
        positions, types, _, cand_valid = hough.grid_peaks(
            moments, stride, o["peak_threshold"], o["max_candidates"], o["hough_sigma"], short
        )
    skeletons, reached = grouping.traverse(mid, short, positions, types, cand_valid, o["refine_steps"])
    present, heat = grouping.presence(heatmaps, skeletons, reached, o["min_keypoint_score"])  # (N, 17)
    if long_offsets is not None and o["complete_from_long"]:
        skeletons, present, heat = grouping.complete_from_long(
            skeletons,
            present,
            heat,
            long_offsets,
            short,
            heatmaps,
            min_scale=o["min_scale"],
            mask_threshold=o["mask_threshold"],
            min_keypoint_score=o["min_keypoint_score"],
            refine_steps=max(o["refine_steps"], 1),
        )
    seeds, count = grouping.greedy_select(
        positions, types, cand_valid, skeletons, present, o["nms_radius"], num
    )

    valid = jnp.arange(num) < count  # (P,) detection order
    points = skeletons[seeds]  # (P, 17, 2)
    present = present[seeds] & valid[:, None]
    scales = grouping.person_scales(points, present, o["min_scale"])
    if stride == 1:
        keypoint_scores = grouping.expected_oks(votes, heat[seeds], points, present, scales, o["oks_radius"])
    else:
        keypoint_scores = grouping.expected_oks_grid(
            moments, stride, heat[seeds], points, present, scales, o["oks_radius"]
        )
    scores = jnp.where(
        valid, grouping.soft_nms_scores(points, keypoint_scores, present, valid, o["nms_radius"]), 0.0
    )

    order = jnp.argsort(jnp.where(valid, -scores, jnp.inf), stable=True)  # best first, padding last
    points, present, scales = points[order], present[order], scales[order]
    keypoint_scores, scores = keypoint_scores[order], scores[order]
    points = jnp.where(
        valid[:, None, None], points, 0.0
    )  # `valid` is order-invariant: the first `count` rows
    out = {
        "keypoints": jnp.concatenate([points, keypoint_scores[..., None]], axis=-1),
        "keypoint_valid": present,
        "scores": scores,
        "valid": valid,
        "num_people": count,
        "scales": jnp.where(valid, scales, 0.0),
    }
    if long_offsets is not None and segmentation is not None:
        long = jnp.asarray(long_offsets, jnp.float32)
        if o["refine_steps"] > 0 and o["refine_long"]:
            long = offsets_lib.refine_long_offsets(long, short, o["refine_steps"])
        out["mask_owners"] = grouping.block_owners(
            long,
            segmentation,
            points,
            keypoint_scores,
            scales,
            valid,
            o["mask_threshold"],
            o["seg_threshold"],
            o["mask_stride"],
            o["mask_tile"],
            o["mask_candidates"],
        )
    return out


def _expand_masks(out, segmentation, o):
    """Replaces out['mask_owners'] (the per-block owners, [B,] gh, gw) by out['masks'] ([B,] P, H, W). The owners
    are `grouping.stored` first (a cond on the whole batch: under vmap a per-image predicate would become a
    select, and XLA would recompute the owners for every mask pixel)."""
    out = dict(out)
    owners = grouping.stored(out.pop("mask_owners"), jnp.any(out["valid"]))
    expand = functools.partial(
        grouping.owners_to_masks,
        num_people=o["max_people"],
        seg_threshold=o["seg_threshold"],
        stride=o["mask_stride"],
    )
    out["masks"] = (
        expand(owners, segmentation) if owners.ndim == 2 else jax.vmap(expand)(owners, segmentation)
    )
    return out


@functools.partial(jax.jit, static_argnames=("options",))
def _decode_jit(heatmaps, short_offsets, mid_offsets, long_offsets, segmentation, options):
    o = dict(options)
    fn = functools.partial(_decode_people, **o)
    inputs = (heatmaps, short_offsets, mid_offsets, long_offsets, segmentation)
    if heatmaps.ndim == 3:
        out = fn(*inputs)
    elif o["batch_mode"] == "map":
        out = jax.lax.map(lambda example: fn(*example), inputs)
    elif o["hough_stride"] > 1:  # one scatter for the whole batch (a vmapped one indexes (image, slot) pairs)
        moments = hough.hough_grid(heatmaps, short_offsets, o["radius"], o["hough_stride"])
        out = jax.vmap(lambda *example: fn(*example[:-1], moments=example[-1]))(*inputs, moments)
    else:
        out = jax.vmap(fn)(*inputs)
    return _expand_masks(out, segmentation, o) if "mask_owners" in out else out


def decode(heatmaps, short_offsets, mid_offsets, long_offsets=None, segmentation=None, **options):
    """Decodes PersonLab outputs into people; see the module docstring for shapes, outputs and options."""
    heatmaps = jnp.asarray(heatmaps)
    if heatmaps.ndim not in (3, 4):
        raise ValueError(f"heatmaps must be (H, W, 17) or (B, H, W, 17), got {heatmaps.shape}")
    frozen = tuple(sorted(decode_options(**options).items()))
    return _decode_jit(heatmaps, short_offsets, mid_offsets, long_offsets, segmentation, frozen)
