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
                        steps 4-5 run on the smallest of max_candidates / 4, / 2, / 1 leading candidates that
                        holds all valid ones (`group_sizes`, a lax.switch: the queue is sorted, valid first),
                        so their cost follows the keypoints found, not the capacity;
4b. `grouping.complete_from_long` (with long-range offsets; not in the paper): keypoints the tree walk could
                        not reach because an inner keypoint is missing (an unlabelled nose cuts a person into
                        its two sides and its head) are read from the long-range offsets at the person's own
                        best-fitting keypoint and snapped by the short-range offsets (`complete_from_long`);
5. `grouping.greedy_select`  the paper's greedy pass (a seed within `nms_radius` of the same keypoint of an
                        earlier person is rejected), at most `max_people` people (it counts the ones beyond);
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
vmapped, the grid's Hough scatter done once for the whole batch; or lax.map-ped: `batch_mode`). Device arrays
(jax.Array) or host arrays (numpy, or anything np.asarray takes), each float32, float16 or bfloat16 (read as
they are, converted where read; other dtypes are converted to float32 once on the host). Host arrays are READ IN
PLACE, never copied whole (`jhuman.ops.personlab.fields`: a network's outputs at 401x401 are 96 MB, and copying
them cost several times the decoding, benchmarks/RESULTS.md); a channels-first array permuted to (H, W, C) is
read in place too, only other strided layouts are copied. With host inputs decode returns once its outputs are
computed (so the arrays may be reused at once), and a batch is decoded image by image (lax.map) inside the one
compiled call. Returns a dict of jax arrays (with the batch axis if the inputs had one):
  keypoints (P, 17, 3) float32 [x, y, score]: sub-pixel positions; a keypoint that was not reached / not present
      keeps a real position (on its tree parent's, clamped into the image), never (0, 0), with score 0;
  keypoint_valid (P, 17) bool: the keypoint is present (see `grouping`);
  scores (P,) float32 person scores (soft keypoint NMS of expected-OKS scores);
  valid (P,) bool; num_people () int32; people sorted by score, valid ones first; padding rows are all zero;
  scales (P,) float32 the person scale lambda (sqrt of the present keypoints' box area, >= min_scale);
  masks (P, H, W) bool, only when long offsets and segmentation are given;
  dropped_people () int32: people the greedy pass found beyond max_people (it goes on counting; they are not
      returned), 0 unless the capacity was hit;
  dropped_candidates () int32: keypoint candidates above peak_threshold that did not fit into max_candidates
      (on the grid: nodes whose upper bound of the score passed, so a few might have failed the exact test);
      a person all of whose candidates were among them is missing.
  Capacities are never hit silently: the task's evaluator reports both counts.
P = max_people is fixed (padding + `valid`), so decode jits (options are static) and vmaps.

Options (keyword only; static: a new value compiles a new version, new array VALUES never do):
  max_people=0, max_candidates=0: 0 = automatic, a static function of the image size (`capacities`): 30 and 256
  up to 401 x 401, above that candidates grow with the side and people with its square root (1080 x 1920: 57
  and 920; the (P, H, W) masks cost P times the area); radius=32.0 (disk radius R of the targets), nms_radius=10.0 (r),
  peak_threshold=0.01 (>= 0, on the smoothed Hough map; a perfect isolated keypoint peaks at ~0.03-0.04 with
  sigma 2),
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
import math

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.classes import COCO_KEYPOINTS, PERSONLAB_DIRECTED_EDGES, PERSONLAB_EDGES
from jhuman.ops.personlab import fields, grouping, hough
from jhuman.ops.personlab import offsets as offsets_lib

KEYPOINTS = COCO_KEYPOINTS
EDGES = PERSONLAB_EDGES
DIRECTED_EDGES = PERSONLAB_DIRECTED_EDGES

DEFAULT_OPTIONS = {
    "max_people": 0,
    "max_candidates": 0,
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
# the automatic capacities at the paper's 401 x 401 crops; larger images get more (`capacities`)
BASE_SIZE, BASE_PEOPLE, BASE_CANDIDATES = 401, 30, 256


def capacities(height: int, width: int) -> tuple[int, int]:
    """The automatic (max_people, max_candidates) of an H x W image, a static function of the shape (so shapes
    stay static): 30 and 256 up to 401 x 401; above, with s = sqrt(H W) / 401 (the side, relative),
    max_candidates = 256 s and max_people = 30 sqrt(s). 1080 x 1920: 57 and 920 (a crowd's 40 x 17 keypoints
    fit the queue). People grow slower than candidates because the (P, H, W) masks cost P times the area
    (at 1080p 2 MB per person, written on every call) while a candidate costs a tree walk of 16 gathers."""
    scale = max(1.0, math.sqrt(int(height) * int(width)) / BASE_SIZE)
    return int(math.ceil(BASE_PEOPLE * math.sqrt(scale))), int(math.ceil(BASE_CANDIDATES * scale))


def decode_options(image_size=None, **options) -> dict:
    """Defaults updated by `options` (an unknown name is an error naming the valid ones), typed for jit.
    image_size (H, W): resolves max_people / max_candidates = 0 (automatic) by `capacities`; without it they
    stay 0 (`decode` passes the inputs' size)."""
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
    if merged["peak_threshold"] < 0:  # (a score is a smoothed vote mass, >= 0; the peak count relies on it)
        raise ValueError(f"peak_threshold must be >= 0, got {merged['peak_threshold']}")
    for name in ("hough_stride", "mask_stride", "max_people", "max_candidates"):
        if merged[name] < 0:
            raise ValueError(f"{name} must be >= 1 (or 0: automatic), got {merged[name]}")
    if merged["hough_stride"] == 0:  # automatic: R / 4 pixels, 8 for the paper's R = 32
        merged["hough_stride"] = int(min(max(merged["radius"] // 4, 1), 8))
    if merged["mask_stride"] == 0:  # automatic: half the Hough stride, 4 for R = 32
        merged["mask_stride"] = max(merged["hough_stride"] // 2, 1)
    if image_size is not None:
        people, candidates = capacities(*image_size)
        merged["max_people"] = merged["max_people"] or people
        merged["max_candidates"] = merged["max_candidates"] or candidates
    return merged


def decode_single(heatmaps, short_offsets, mid_offsets, long_offsets=None, segmentation=None, **options):
    """`decode` for one image (no batch axis), not jitted: (H, W, 17), (H, W, 17, 2), (H, W, 32, 2),
    optional (H, W, 17, 2) and (H, W) -> the dict described in the module docstring."""
    o = decode_options(np.shape(heatmaps)[:2], **options)
    out = _decode_people(heatmaps, short_offsets, mid_offsets, long_offsets, segmentation, **o)
    return _expand_masks(out, segmentation, o) if "mask_owners" in out else out


def group_sizes(max_candidates: int) -> tuple[int, ...]:
    """The candidate counts the grouping (tree walk, completion, greedy pass) is compiled for: max_candidates and
    its half and quarter (when >= 32). Candidates are sorted, the valid ones first, so a call groups only the
    smallest prefix that holds all valid ones (chosen at run time, `lax.switch`): its cost follows the number
    of keypoints found, not the capacity (at 401 x 401 with 5 people, 85 of the 256 candidates are valid)."""
    capacity = int(max_candidates)
    sizes = {capacity} | {-(-capacity // d) for d in (2, 4) if -(-capacity // d) >= 32}
    return tuple(sorted(sizes))


def _candidates(heatmaps, short_offsets, moments=None, **options):
    """Steps 1-3: keypoint candidates (positions (N, 2), types, valid (N,), sorted, valid first), the number of
    peaks before the queue's capacity, and the Hough evidence the scores read (stride 1: the maps (H, W, 17);
    on the grid: `hough.hough_grid`'s moments, computed here unless given). Fields: arrays or `fields.View`s."""
    o = decode_options(**options)
    heatmap_field, short_field = heatmaps, short_offsets
    short = fields.dense(short_field)
    stride = o["hough_stride"]
    if stride == 1:  # Eq. (1) at every pixel, smoothed, peaks on the full-resolution map
        votes = hough.hough_votes(fields.dense(heatmap_field), short, o["radius"])  # (H, W, 17)
        smoothed = hough.smooth(votes, o["hough_sigma"])
        positions, types, _, cand_valid = hough.find_peaks(
            smoothed, o["peak_threshold"], o["max_candidates"], short
        )
        peaks = hough.count_peaks(smoothed, o["peak_threshold"])
        return positions, types, cand_valid, peaks, votes
    # Eq. (1) sampled every `stride` pixels onto a grid of that spacing (see hough.hough_grid)
    if moments is None:  # the voters only: from host memory, a gather of 1 / stride^2 of the maps
        o_, size = hough.grid_offset(stride), fields.shape(heatmap_field)[:2]
        votes_p, votes_s = fields.every(heatmap_field, o_, stride), fields.every(short_field, o_, stride)
        moments = hough.hough_grid(votes_p, votes_s, o["radius"], stride, image_size=size)
    peak_map = hough.grid_peak_map(moments, o["peak_threshold"], o["hough_sigma"])
    positions, types, _, cand_valid = hough.grid_peaks(
        moments, stride, o["peak_threshold"], o["max_candidates"], o["hough_sigma"], short, peak_map
    )
    peaks = hough.count_grid_peaks(moments, o["peak_threshold"], o["hough_sigma"], peak_map)
    return positions, types, cand_valid, peaks, moments


def _group(heatmaps, short_offsets, mid_offsets, long_offsets, positions, types, cand_valid, needed, o):
    """Steps 4-5 on the smallest `group_sizes` prefix of the candidates that holds `needed` (>= the valid ones;
    () int32, unbatched under vmap so that the switch stays a switch): (seeds (P,), count, found, and the
    seeds' skeletons (P, 17, 2), presence (P, 17) and heatmap values (P, 17)). The same people as grouping all
    candidates: invalid candidates are never accepted, so they never reject anyone."""

    def group(n):
        def run():
            pos, typ, ok = positions[:n], types[:n], cand_valid[:n]
            skeletons, reached = grouping.traverse(
                mid_offsets, short_offsets, pos, typ, ok, o["refine_steps"]
            )
            present, heat = grouping.presence(
                heatmaps, skeletons, reached, o["min_keypoint_score"]
            )  # (n, 17)
            if long_offsets is not None and o["complete_from_long"]:
                skeletons, present, heat = grouping.complete_from_long(
                    skeletons,
                    present,
                    heat,
                    long_offsets,
                    short_offsets,
                    heatmaps,
                    min_scale=o["min_scale"],
                    mask_threshold=o["mask_threshold"],
                    min_keypoint_score=o["min_keypoint_score"],
                    refine_steps=max(o["refine_steps"], 1),
                )
            seeds, count, found = grouping.greedy_select(
                pos, typ, ok, skeletons, present, o["nms_radius"], o["max_people"]
            )
            return seeds, count, found, skeletons[seeds], present[seeds], heat[seeds]

        return run

    sizes = group_sizes(positions.shape[0])
    if len(sizes) == 1:
        return group(sizes[0])()
    index = jnp.sum(jnp.asarray(sizes[:-1]) < needed)  # the first size that holds them
    return jax.lax.switch(index, [group(n) for n in sizes])


def _decode_people(
    heatmaps,
    short_offsets,
    mid_offsets,
    long_offsets=None,
    segmentation=None,
    moments=None,
    candidates=None,
    needed=None,
    **options,
):
    """`decode_single` up to the masks: with long offsets and segmentation the dict holds 'mask_owners'
    (gh, gw), the person of each mask_stride block (`grouping.block_owners`), instead of 'masks'. `moments`:
    the `hough.hough_grid` of these inputs if already computed; `candidates`: `_candidates` of them, and
    `needed` the number of candidates to group (the batch computes both for all images at once: the maximum of
    their valid candidates). Each input may be an array or a `fields.View` (host memory read in place): the
    kernels that read a field inside control flow get it as it is, the others its `fields.dense` form."""
    o = decode_options(**options)
    num = o["max_people"]
    stride = o["hough_stride"]
    if candidates is None:
        candidates = _candidates(heatmaps, short_offsets, moments, **o)
    positions, types, cand_valid, peaks, votes = candidates
    if needed is None:
        needed = jnp.sum(cand_valid, dtype=jnp.int32)
    seeds, count, found, points, present, heat = _group(
        heatmaps, short_offsets, mid_offsets, long_offsets, positions, types, cand_valid, needed, o
    )
    valid = jnp.arange(num) < count  # (P,) detection order
    present = present & valid[:, None]
    scales = grouping.person_scales(points, present, o["min_scale"])
    if stride == 1:
        keypoint_scores = grouping.expected_oks(votes, heat, points, present, scales, o["oks_radius"])
    else:
        keypoint_scores = grouping.expected_oks_grid(
            votes, stride, heat, points, present, scales, o["oks_radius"]
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
        "dropped_candidates": jnp.maximum(peaks - o["max_candidates"], 0).astype(jnp.int32),
        "dropped_people": (found - count).astype(jnp.int32),
    }
    if long_offsets is not None and segmentation is not None:
        long = long_offsets
        if o["refine_steps"] > 0 and o["refine_long"]:
            long = offsets_lib.refine_long_offsets(
                fields.dense(long), fields.dense(short_offsets), o["refine_steps"]
            )
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
    segmentation = fields.dense(segmentation)
    out["masks"] = (
        expand(owners, segmentation) if owners.ndim == 2 else jax.vmap(expand)(owners, segmentation)
    )
    return out


# XLA's fast min / max for the decoder's own compilation: the same values for every finite input, 3% of the
# decoding time less on CPU (benchmarks/RESULTS.md); only NaN inputs differ (min / max may drop a NaN instead of
# propagating it). Compiler options are for top-level calls only: inside a caller's jit / vmap / grad, decode
# is traced without them (`_decode_traced`) and the caller's compilation applies.
COMPILER_OPTIONS = {"xla_cpu_enable_fast_min_max": True}

try:  # whether no transformation is tracing (jax has no public test of it; without one: never the options)
    from jax._src.core import trace_state_clean as _top_level
except ImportError:  # pragma: no cover

    def _top_level():
        return False


def _decode_impl(inputs, starts, layouts, options):
    """inputs: the five fields (None where absent), each a device array or, where layouts[i] is not None, the
    aligned flat view of a host array (`fields.put_host`; where the array starts in it: starts[j], j counting
    the host arrays)."""
    o = dict(options)
    host = [layout is not None for layout in layouts]
    if any(host):  # host arrays: Views that read the buffers where the decoder reads them
        j = iter(range(len(layouts)))
        inputs = [
            fields.view(x, starts[next(j)], layout) if on else x
            for x, layout, on in zip(inputs, layouts, host)
        ]
    heatmaps, short_offsets, mid_offsets, long_offsets, segmentation = inputs
    fn = functools.partial(_decode_people, **o)
    if len(fields.shape(heatmaps)) == 3:
        out = fn(*inputs)
    elif any(host):  # image by image, each read in place (a vmap would copy every field into the tree walk)
        images = jnp.arange(fields.shape(heatmaps)[0])
        out = jax.lax.map(lambda index: fn(*(_image(x, index) for x in inputs)), images)
    elif o["batch_mode"] == "map":
        out = jax.lax.map(lambda example: fn(*example), tuple(inputs))
    else:  # candidates for all images first (on the grid: one scatter for the whole batch, as a vmapped one
        # would index (image, slot) pairs), so that all images group the same number of candidates
        moments = None
        if o["hough_stride"] > 1:
            moments = hough.hough_grid(heatmaps, short_offsets, o["radius"], o["hough_stride"])
        candidates = jax.vmap(functools.partial(_candidates, **o))(heatmaps, short_offsets, moments)
        needed = jnp.max(jnp.sum(candidates[2], axis=-1, dtype=jnp.int32))
        out = jax.vmap(lambda *example: fn(*example[:5], candidates=example[5], needed=needed))(
            *inputs, candidates
        )
    return _expand_masks(out, segmentation, o) if "mask_owners" in out else out


_decode_jit = jax.jit(_decode_impl, static_argnames=("layouts", "options"), compiler_options=COMPILER_OPTIONS)
_decode_traced = jax.jit(_decode_impl, static_argnames=("layouts", "options"))


def _run(inputs, starts, layouts, options):
    """The compiled decoder: with COMPILER_OPTIONS at the top level, without them inside a trace."""
    return (_decode_jit if _top_level() else _decode_traced)(inputs, starts, layouts, options)


def _image(field, index):
    """Image `index` (traced) of a batched field: a View of it, or the array's slice."""
    if field is None:
        return None
    return field.image(index) if isinstance(field, fields.View) else field[index]


def decode(heatmaps, short_offsets, mid_offsets, long_offsets=None, segmentation=None, **options):
    """Decodes PersonLab outputs into people; see the module docstring for shapes, outputs and options.
    Device arrays are used as they are; host arrays (numpy, ...) are read in place (`fields`), and decode then
    returns once its outputs are computed, so that the caller may reuse those arrays."""
    shape = np.shape(heatmaps)
    if len(shape) not in (3, 4):
        raise ValueError(f"heatmaps must be (H, W, 17) or (B, H, W, 17), got {shape}")
    frozen = _static_options(tuple(shape[-3:-1]), options)
    inputs = (heatmaps, short_offsets, mid_offsets, long_offsets, segmentation)
    host = [x is not None and not isinstance(x, jax.Array) for x in inputs]
    if not any(host) or any(isinstance(x, jax.core.Tracer) for x in inputs):  # (inside a trace: constants)
        return _run(inputs, None, (None,) * 5, frozen)
    flats, starts, layouts = fields.put_host([x if on else None for x, on in zip(inputs, host)])
    flats = iter(flats)
    inputs = tuple(next(flats) if on else x for x, on in zip(inputs, host))
    out = _run(inputs, starts, layouts, frozen)
    jax.block_until_ready(out["num_people"])  # one output: the call's outputs are all ready together
    return out


def _static_options(image_size, options):
    """`decode_options` as the jit's static argument (sorted items), computed once per image size and options
    (a call's Python costs count at 3 ms per image); options of an unhashable type are checked uncached."""
    key = tuple(sorted(options.items()))
    try:
        return _cached_options(image_size, key)
    except TypeError:  # unhashable: decode_options says what is wrong with them
        return tuple(sorted(decode_options(image_size, **options).items()))


@functools.lru_cache(maxsize=64)
def _cached_options(image_size, key):
    return tuple(sorted(decode_options(image_size, **dict(key)).items()))
