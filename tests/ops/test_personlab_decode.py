"""PersonLab decoding (jhuman.ops.personlab and its steps) on PERFECT network outputs built from hand-made people,
and against the plain numpy reference (jhuman.ops.personlab.reference)."""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.classes import COCO_KEYPOINTS, PERSONLAB_DIRECTED_EDGES, PERSONLAB_EDGES
from jhuman.ops import image, personlab
from jhuman.ops.personlab import decoder, fields, grouping, hough, offsets, reference

HEIGHT, WIDTH, RADIUS = 160, 224, 16.0
OPTIONS = {"radius": RADIUS, "max_people": 8, "max_candidates": 160}

# An upright person in units of its half height: (x, y) per COCO keypoint.
TEMPLATE = np.array(
    [
        [0.0, -0.88],
        [-0.07, -0.93],
        [0.07, -0.93],
        [-0.16, -0.9],
        [0.16, -0.9],
        [-0.27, -0.66],
        [0.27, -0.66],
        [-0.36, -0.3],
        [0.36, -0.3],
        [-0.42, 0.05],
        [0.42, 0.05],
        [-0.16, 0.02],
        [0.16, 0.02],
        [-0.18, 0.46],
        [0.18, 0.46],
        [-0.19, 0.9],
        [0.19, 0.9],
    ]
)


def make_people(rng, num, height=HEIGHT, width=WIDTH, half_height=(30.0, 42.0), margin=3.0):
    """`num` people (num, 17, 3) [x, y, v=2] at sub-pixel positions, bounding boxes 6 px apart."""
    people, boxes = [], []
    while len(people) < num:
        s = rng.uniform(*half_height)
        centre = rng.uniform([margin + 0.5 * s, margin + s], [width - margin - 0.5 * s, height - margin - s])
        points = TEMPLATE * s + centre + rng.uniform(-0.05, 0.05, TEMPLATE.shape) * s
        lo, hi = points.min(0) - 3, points.max(0) + 3
        if any((lo < b[1]).all() and (hi > b[0]).all() for b in boxes):
            continue
        boxes.append((lo, hi))
        people.append(np.concatenate([points, np.full((17, 1), 2.0)], axis=-1))
    return np.asarray(people, np.float32)


def person_masks(people, height=HEIGHT, width=WIDTH):
    """One ellipse per person around its labelled keypoints' box (+3 px); pixels of two ellipses go to nobody."""
    ys, xs = np.mgrid[0:height, 0:width]
    masks = []
    for person in people:
        labelled = person[person[:, 2] > 0, :2]
        lo, hi = labelled.min(0), labelled.max(0)
        centre, half = (lo + hi) / 2, (hi - lo) / 2 + 3
        masks.append(((xs - centre[0]) / half[0]) ** 2 + ((ys - centre[1]) / half[1]) ** 2 <= 1)
    masks = np.asarray(masks, bool).reshape(len(people), height, width)
    return masks & (masks.sum(0) <= 1)


def perfect_outputs(people, height=HEIGHT, width=WIDTH, radius=RADIUS, masks=None):
    """Ideal network outputs for people (P, 17, 3) [x, y, v] (v > 0: labelled), as the PersonLab targets:
    heatmap 1 on the disk of radius R around each labelled keypoint (a pixel belongs to the NEAREST person's
    keypoint), short offsets to that keypoint, mid offsets of the 32 directed edges (k, l) on the k-disk to the
    same person's keypoint l where both are labelled, long offsets on each person's mask to its labelled
    keypoints, segmentation = union of the masks. Plain numpy."""
    people = np.asarray(people, np.float64)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    grid = np.stack([xs, ys], axis=-1)
    labelled = people[:, :, 2] > 0  # (P, 17)
    dist = np.hypot(
        xs[None, None] - people[:, :, 0, None, None], ys[None, None] - people[:, :, 1, None, None]
    )
    dist = np.where(labelled[..., None, None], dist, np.inf)  # (P, 17, H, W)
    owner = np.argmin(dist, axis=0)  # (17, H, W)
    disk = np.min(dist, axis=0) <= radius
    heatmaps = np.moveaxis(disk, 0, -1).astype(np.float32)
    target = people[owner, np.arange(17)[:, None, None], :2]  # (17, H, W, 2)
    short = np.where(disk[..., None], target - grid, 0.0)
    short = np.moveaxis(short, 0, 2).astype(np.float32)
    mid = np.zeros((height, width, len(PERSONLAB_DIRECTED_EDGES), 2), np.float32)
    for e, (k, l) in enumerate(PERSONLAB_DIRECTED_EDGES):
        ok = disk[k] & labelled[owner[k], l]
        mid[:, :, e] = np.where(ok[..., None], people[owner[k], l, :2] - grid, 0.0)
    long = np.zeros((height, width, 17, 2), np.float32)
    segmentation = np.zeros((height, width), np.float32)
    if masks is not None:
        for j, mask in enumerate(masks):
            segmentation[mask] = 1.0
            for k in np.flatnonzero(labelled[j]):
                long[mask, k] = people[j, k, :2] - grid[mask]
    return heatmaps, short, mid, long, segmentation


def match(found, people):
    """For each true person the decoded person (index) with the smallest worst-keypoint error, and that error
    over the labelled keypoints."""
    errors = np.abs(found[None, :, :, :2] - people[:, None, :, :2]).max(-1)  # (P_true, P_found, 17)
    errors = np.where(people[:, None, :, 2] > 0, errors, 0).max(-1)
    return errors.argmin(1), errors.min(1)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    people = make_people(rng, 4)
    masks = person_masks(people)
    return people, masks, perfect_outputs(people, masks=masks)


@pytest.fixture(scope="module")
def decoded(scene):
    return jax.device_get(personlab.decode(*scene[2], **OPTIONS))


def test_public_constants_and_traversal_orders():
    assert personlab.KEYPOINTS == COCO_KEYPOINTS and len(personlab.KEYPOINTS) == 17
    assert personlab.EDGES == PERSONLAB_EDGES and len(personlab.EDGES) == 16
    assert personlab.DIRECTED_EDGES == PERSONLAB_DIRECTED_EDGES and len(personlab.DIRECTED_EDGES) == 32
    assert grouping.TRAVERSAL_EDGES.shape == (17, 16)
    for seed in range(17):
        depth = {seed: 0}
        for e, s, t in zip(
            grouping.TRAVERSAL_EDGES[seed], grouping.TRAVERSAL_SOURCES[seed], grouping.TRAVERSAL_TARGETS[seed]
        ):
            assert PERSONLAB_DIRECTED_EDGES[e] == (s, t) and s in depth and t not in depth
            depth[t] = depth[s] + 1
        # breadth-first: targets in non-decreasing depth; every keypoint reached once
        depths = [depth[t] for t in grouping.TRAVERSAL_TARGETS[seed]]
        assert depths == sorted(depths) and len(depth) == 17
    with pytest.raises(TypeError, match="valid"):
        personlab.decode(np.zeros((8, 8, 17)), np.zeros((8, 8, 17, 2)), np.zeros((8, 8, 32, 2)), radius_px=3)


def test_sampling_and_refinement_match_numpy():
    rng = np.random.default_rng(0)
    h, w = 23, 31
    mid = rng.normal(0, 6, (h, w, 32, 2)).astype(np.float32)
    short = rng.normal(0, 2, (h, w, 17, 2)).astype(np.float32)
    long = rng.normal(0, 8, (h, w, 17, 2)).astype(np.float32)
    points = rng.uniform([-3, -3], [w + 2, h + 2], (50, 2)).astype(np.float32)  # some outside: clamped
    edges = rng.integers(0, 32, 50)
    refined = jax.jit(offsets.refine_mid_offsets, static_argnums=2)(mid, short, 2)
    np.testing.assert_allclose(refined, reference.refine_mid_offsets(mid, short, 2), atol=1e-3)
    # (random fields amplify float32 rounding at every refinement round: one round each here)
    np.testing.assert_allclose(
        jax.jit(offsets.refine_long_offsets, static_argnums=2)(long, short, 1),
        reference.refine_long_offsets(long, short, 1),
        atol=1e-3,
    )
    sampled = image.bilinear_sample(mid, points, edges)
    np.testing.assert_allclose(sampled, reference.bilinear_sample(mid, points, edges), atol=1e-4)
    lazy = jax.jit(offsets.sample_refined_mid, static_argnums=4)(mid, short, points, edges, 2)
    np.testing.assert_allclose(lazy, image.bilinear_sample(refined, points, edges), atol=1e-3)
    np.testing.assert_allclose(
        image.bilinear_sample(short[..., 3, :], points),
        reference.bilinear_sample(short[..., 3, :], points),
        atol=1e-4,
    )


def test_hough_votes_peak_at_the_keypoints(scene):
    people, _, (heatmaps, short, *_) = scene
    votes = jax.jit(hough.hough_votes, static_argnums=2)(heatmaps, short, RADIUS)
    np.testing.assert_allclose(votes, reference.hough_votes(heatmaps, short, RADIUS), atol=5e-5)  # peaks ~1
    # On the raw votes the 3x3 centroid is exact for a bilinear splat; the mass there is ~1 per keypoint.
    positions, types, scores, valid = jax.device_get(hough.find_peaks(votes, 0.05, 200))
    far = (
        (people[..., 0] > RADIUS)
        & (people[..., 0] < WIDTH - 1 - RADIUS)
        & (people[..., 1] > RADIUS)
        & (people[..., 1] < HEIGHT - 1 - RADIUS)
    )
    votes = np.asarray(votes)
    checked = 0
    for j, k in zip(*np.nonzero(far)):
        same = valid & (types == k)
        d = np.linalg.norm(positions[same] - people[j, k, :2], axis=-1)
        assert d.min() < 0.5, (j, k, d.min())
        x, y = np.round(positions[same][d.argmin()]).astype(int)
        mass = votes[y - 1 : y + 2, x - 1 : x + 2, k].sum()
        assert 0.85 < mass < 1.1, (j, k, mass)  # a disk of radius R has ~pi R^2 pixels
        checked += 1
    assert checked >= 20
    # The decoder's candidates: smoothed map, short-offset refinement.
    smoothed = hough.smooth(votes, 2.0)
    np.testing.assert_allclose(smoothed, reference.smooth(votes, 2.0), rtol=1e-4, atol=1e-6)
    positions, types, scores, valid = jax.device_get(hough.find_peaks(smoothed, 0.01, 200, short))
    ref_positions, ref_types, ref_scores, _ = reference.find_peaks(np.asarray(smoothed), 0.01, 200, short)
    assert valid.sum() == len(ref_types)
    np.testing.assert_array_equal(types[valid], ref_types)
    np.testing.assert_allclose(positions[valid], ref_positions, atol=1e-4)
    for j, k in zip(*np.nonzero(far)):
        assert np.linalg.norm(positions[valid & (types == k)] - people[j, k, :2], axis=-1).min() < 0.5


@pytest.mark.parametrize("stride", [2, 4, 5])
def test_hough_grid_keeps_the_vote_mass_and_places_peaks_at_the_keypoints(scene, stride):
    people, _, (heatmaps, short, *_) = scene
    moments = np.asarray(jax.jit(hough.hough_grid, static_argnums=(2, 3))(heatmaps, short, RADIUS, stride))
    want = reference.hough_grid(heatmaps, short, RADIUS, stride)
    np.testing.assert_allclose(moments, want, rtol=1e-4, atol=1e-3)
    # every vote landing inside the image is kept, with weight stride^2 (each voter stands for its block)
    o = stride // 2
    p, s = heatmaps[o::stride, o::stride], short[o::stride, o::stride]
    ys, xs = np.mgrid[o:HEIGHT:stride, o:WIDTH:stride]
    zx, zy = xs[..., None] + s[..., 0], ys[..., None] + s[..., 1]
    inside = (zx >= 0) & (zx <= WIDTH - 1) & (zy >= 0) & (zy <= HEIGHT - 1)
    total = (p * inside).sum((0, 1)) * stride**2 / (np.pi * RADIUS**2)
    np.testing.assert_allclose(moments[0].sum((0, 1)), total, rtol=1e-4)
    # a perfect keypoint: ~1 of mass, its votes' centroid is the keypoint, the candidate sits on it
    positions, types, scores, valid = jax.device_get(hough.grid_peaks(moments, stride, 0.01, 200, 2.0, short))
    for j, k in zip(*np.nonzero(people[..., 2] > 0)):
        d = np.linalg.norm(positions[valid & (types == k)] - people[j, k, :2], axis=-1)
        assert d.min() < 1e-3, (j, k, d.min())
    ref_positions, ref_types, _, _ = reference.grid_peaks(want, 0.01, 200, 2.0, stride, short)
    assert valid.sum() == len(ref_types)
    # with a leading batch axis (one scatter for all images) each image gets its own moments
    batch = jax.jit(hough.hough_grid, static_argnums=(2, 3))(
        np.stack([heatmaps, 0.5 * heatmaps[::-1]]), np.stack([short, short[::-1]]), RADIUS, stride
    )
    flipped = reference.hough_grid(0.5 * heatmaps[::-1], short[::-1], RADIUS, stride)
    np.testing.assert_allclose(batch, np.stack([want, flipped]), rtol=1e-4, atol=1e-3)


def test_max3_is_the_3x3_maximum():
    x = np.random.default_rng(2).normal(size=(7, 9, 3)).astype(np.float32)
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    want = np.max([padded[i : i + 7, j : j + 9] for i in range(3) for j in range(3)], axis=0)
    np.testing.assert_array_equal(jax.jit(hough.max3)(x), want)


def test_two_stage_top_k_equals_full_top_k():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, (150, 170, 17)).astype(np.float32)
    masked = jnp.where(jnp.asarray(rng.uniform(0, 1, values.shape) < 0.05), values, -1.0)
    for k in (5, 64):
        got = jax.jit(hough.top_k_peaks, static_argnums=(1, 2))(masked, k, 4)
        want = jax.lax.top_k(masked.reshape(-1), k)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_decode_recovers_every_person(scene, decoded):
    people = scene[0]
    out = decoded
    assert out["keypoints"].shape == (8, 17, 3) and out["scores"].shape == (8,) and out["valid"].shape == (8,)
    assert out["masks"].shape == (8, HEIGHT, WIDTH) and out["masks"].dtype == bool
    assert int(out["valid"].sum()) == len(people) == int(out["num_people"])
    assert out["valid"][: len(people)].all()  # valid people first, sorted by score
    assert np.all(np.diff(out["scores"][: len(people)]) <= 0)
    index, error = match(out["keypoints"][out["valid"]], people)
    assert len(set(index)) == len(people) and error.max() < 1.0, error
    assert error.max() < 0.05  # perfect outputs: sub-pixel exact
    assert out["keypoint_valid"][out["valid"]].all()
    assert (out["keypoints"][out["valid"], :, 2] > 0.3).all() and (out["scores"][out["valid"]] > 0.3).all()
    assert not out["keypoints"][~out["valid"]].any() and not out["masks"][~out["valid"]].any()


def test_instance_masks_recover_the_given_masks(scene, decoded):
    people, masks, _ = scene
    index, _ = match(decoded["keypoints"][decoded["valid"]], people)
    for j, i in enumerate(index):
        got = decoded["masks"][i]
        iou = (got & masks[j]).sum() / (got | masks[j]).sum()
        assert iou > 0.9, (j, iou)


def test_people_order_does_not_change_the_output(scene, decoded):
    people, masks, _ = scene
    perm = np.array([2, 0, 3, 1])
    out = jax.device_get(personlab.decode(*perfect_outputs(people[perm], masks=masks[perm]), **OPTIONS))
    n = len(people)
    assert int(out["num_people"]) == n
    index, error = match(out["keypoints"][:n], decoded["keypoints"][:n])
    assert sorted(index) == list(range(n)) and error.max() < 1e-3
    np.testing.assert_allclose(out["scores"][:n][index], decoded["scores"][:n], atol=1e-4)
    np.testing.assert_array_equal(out["masks"][:n][index], decoded["masks"][:n])


def test_batched_decode_equals_single_images(scene, decoded):
    people, masks, outputs = scene
    rng = np.random.default_rng(5)
    other = make_people(rng, 2)
    second = perfect_outputs(other, masks=person_masks(other))
    batch = [np.stack([a, b]) for a, b in zip(outputs, second)]
    single = jax.device_get(personlab.decode(*second, **OPTIONS))
    exact = {"hough_stride": 1, "mask_stride": 1}
    first_exact, second_exact = (
        jax.device_get(personlab.decode(*o, **OPTIONS, **exact)) for o in (outputs, second)
    )
    for mode, strides, want in (
        ("auto", {}, (decoded, single)),
        ("map", {}, (decoded, single)),
        ("auto", exact, (first_exact, second_exact)),
    ):  # auto = vmap
        out = jax.device_get(personlab.decode(*batch, **OPTIONS, **strides, batch_mode=mode))
        assert out["keypoints"].shape == (2, 8, 17, 3) and out["masks"].shape == (2, 8, HEIGHT, WIDTH)
        for key in ("keypoints", "scores", "valid", "keypoint_valid", "num_people", "masks"):
            for i in range(2):
                np.testing.assert_allclose(
                    out[key][i], want[i][key], atol=1e-5, err_msg=f"{mode} {strides} {key}"
                )


def test_missing_keypoints_are_flagged_never_at_the_origin():
    rng = np.random.default_rng(7)
    people = make_people(rng, 3)
    missing = {0: [3, 4, 9], 1: [15, 16, 10], 2: [1, 3]}  # ears, wrists, ankles, an eye: leaves of the tree
    for j, ks in missing.items():
        people[j, ks, 2] = 0
    # a person near the top-left corner, so that (0, 0) would be a plausible-looking wrong answer
    corner = TEMPLATE * 30.0 + np.array([16.0, 31.5])
    people = np.concatenate([people[:2], np.concatenate([corner, np.full((17, 1), 2.0)], -1)[None]])
    people[2, [9, 15], 2] = 0
    people = people.astype(np.float32)
    masks = person_masks(people)
    out = jax.device_get(personlab.decode(*perfect_outputs(people, masks=masks), **OPTIONS))
    assert int(out["num_people"]) == 3
    index, error = match(out["keypoints"][:3], people)
    assert len(set(index)) == 3 and error.max() < 1.0
    for j, i in enumerate(index):
        kp, flags = out["keypoints"][i], out["keypoint_valid"][i]
        gone = people[j, :, 2] == 0
        np.testing.assert_array_equal(flags, ~gone)
        assert (kp[gone, 2] == 0).all() and (kp[~gone, 2] > 0.3).all()
        assert (np.linalg.norm(kp[:, :2], axis=-1) > 5).all()  # nothing parked at (0, 0)
        assert ((kp[:, 0] >= 0) & (kp[:, 0] <= WIDTH - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= HEIGHT - 1)).all()
        labelled = people[j, ~gone, :2]
        extent = labelled.max(0) - labelled.min(0)  # the scale comes from present keypoints only
        assert out["scales"][i] == pytest.approx(max(np.sqrt(extent[0] * extent[1]), 16.0), rel=1e-3)
        iou = (out["masks"][i] & masks[j]).sum() / (out["masks"][i] | masks[j]).sum()
        assert iou > 0.9


def test_keypoints_cut_off_from_the_tree_are_completed_from_long_offsets():
    """An unlabelled inner keypoint (a nose, a shoulder) has no mid-range offsets, so the tree walk stops there
    and the paper's decoder returns the person in pieces; the long-range completion returns it whole."""
    rng = np.random.default_rng(13)
    # Disks of radius 8 on people this tall keep every head disk off the shoulders: a walk that goes on past a
    # missing nose from the shoulder's position (as the paper's does) then finds no eye or ear disk there
    # (on smaller people it would snap onto the rim of one, a few pixels off).
    people = make_people(rng, 3, half_height=(40.0, 50.0))
    radius, options = 8.0, {**OPTIONS, "radius": 8.0}
    people[0, 0, 2] = 0  # nose: eyes/ears, left side and right side are cut apart
    people[1, 5, 2] = 0  # left shoulder: the left arm and the left leg are cut off
    people[2, [6, 12], 2] = 0  # right shoulder and hip: the right knee and ankle are cut off
    masks = person_masks(people)
    outputs = perfect_outputs(people, radius=radius, masks=masks)
    out = jax.device_get(personlab.decode(*outputs, **options))
    assert int(out["num_people"]) == 3
    index, error = match(out["keypoints"][:3], people)
    assert sorted(index) == [0, 1, 2] and error.max() < 0.05, error
    for j, i in enumerate(index):
        np.testing.assert_array_equal(out["keypoint_valid"][i], people[j, :, 2] > 0)
        iou = (out["masks"][i] & masks[j]).sum() / (out["masks"][i] | masks[j]).sum()
        assert iou > 0.9, (j, iou)
    pieces = jax.device_get(personlab.decode(*outputs, **options, complete_from_long=False))
    assert int(pieces["num_people"]) >= 3 + 3 + 2  # 4 + 3 + 2 pieces, up to the NMS of shared keypoints
    no_long = jax.device_get(personlab.decode(*outputs[:3], **options))  # nothing to complete from
    assert int(no_long["num_people"]) == int(pieces["num_people"])
    want = reference.decode(*outputs, **options)
    np.testing.assert_allclose(np.sort(want["scores"]), np.sort(out["scores"]), atol=1e-4)


@pytest.mark.parametrize(
    "strides",
    [
        {"hough_stride": 1, "mask_stride": 1},
        {"hough_stride": 4, "mask_stride": 2},
        {"hough_stride": 8, "mask_stride": 4},
    ],
    ids=["exact", "grid4", "grid8"],
)
def test_matches_the_numpy_reference_on_noisy_outputs(strides):
    rng = np.random.default_rng(11)
    people = make_people(rng, 4)
    people[1, [3, 10], 2] = 0
    people[2, 5, 2] = 0  # an inner keypoint: the long-range completion runs
    masks = person_masks(people)
    heatmaps, short, mid, long, seg = perfect_outputs(people, masks=masks)
    # p < 1 on the disks: no two keypoints get exactly the same vote mass (on a grid, saturated disks tie, and
    # float32 and float64 would break the ties differently)
    heatmaps = heatmaps * rng.uniform(0.6, 1.0, heatmaps.shape) + rng.uniform(0, 0.03, heatmaps.shape)
    heatmaps = np.clip(heatmaps, 0, 1).astype(np.float32)
    short = short + rng.normal(0, 0.2, short.shape).astype(np.float32)
    mid = mid + rng.normal(0, 0.4, mid.shape).astype(np.float32)
    long = long + rng.normal(0, 0.5, long.shape).astype(np.float32)
    seg = np.clip(seg + rng.uniform(-0.2, 0.2, seg.shape), 0, 1).astype(np.float32)
    got = jax.device_get(personlab.decode(heatmaps, short, mid, long, seg, **OPTIONS, **strides))
    want = reference.decode(heatmaps, short, mid, long, seg, **OPTIONS, **strides)
    n = int(want["num_people"])
    assert int(got["num_people"]) == n == 4
    index, error = match(got["keypoints"][:n], want["keypoints"][:n].copy())
    assert sorted(index) == list(range(n)) and error.max() < 0.5
    assert error.max() < 1e-2  # same arithmetic up to float32 rounding
    np.testing.assert_allclose(got["keypoints"][:n][index, :, 2], want["keypoints"][:n, :, 2], atol=2e-3)
    np.testing.assert_allclose(got["scores"][:n][index], want["scores"][:n], atol=2e-3)
    np.testing.assert_array_equal(got["keypoint_valid"][:n][index], want["keypoint_valid"][:n])
    np.testing.assert_allclose(got["scales"][:n][index], want["scales"][:n], rtol=1e-4)
    differ = (got["masks"][:n][index] != want["masks"][:n]).sum()
    assert differ <= 0.001 * masks.sum(), differ
    true_index, true_error = match(got["keypoints"][:n], people)
    assert true_error.max() < 1.5


def test_tiled_masks_equal_brute_force_nearest_person():
    rng = np.random.default_rng(2)
    h, w, num = 70, 90, 6
    points = rng.uniform([0, 0], [w, h], (num, 17, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, (num, 17)).astype(np.float32) * (rng.uniform(0, 1, (num, 17)) > 0.2)
    scores[4] = 0  # a person without any scored keypoint owns nothing
    scales = rng.uniform(20, 60, num).astype(np.float32)
    valid = np.arange(num) < 5
    owner = rng.integers(0, num, (h, w))
    long = points[owner] - image.pixel_grid(h, w)[:, :, None, :] + rng.normal(0, 6, (h, w, 17, 2))
    seg = rng.uniform(0, 1, (h, w)).astype(np.float32)
    for stride, tile in ((1, 4), (1, 16), (2, 8), (3, 8), (4, 64)):
        got = grouping.assign_instance_masks(
            long, seg, points, scores, scales, valid, 0.25, 0.5, stride=stride, tile=tile, candidates=5
        )  # every person may reach every tile
        want = reference.instance_masks(
            np.asarray(long), seg, points[:5], scores[:5], scales[:5], 0.25, 0.5, stride
        )
        np.testing.assert_array_equal(np.asarray(got)[:5], want)
        assert not np.asarray(got)[5:].any()
        assert want.any(axis=(1, 2)).sum() >= 3


def test_new_values_do_not_recompile(scene, caplog):
    heatmaps, short, mid, long, seg = scene[2]
    jax.block_until_ready(personlab.decode(*(jnp.asarray(a) for a in scene[2]), **OPTIONS))
    size = decoder._decode_jit._cache_size()
    variants = [
        [jnp.asarray(a) for a in (heatmaps * s, short + s, mid, long * s, seg * s)] for s in (0.5, 0.9)
    ]
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING, logger="jax"):
            for arrays in variants:
                out = personlab.decode(*arrays, **OPTIONS)
            jax.block_until_ready(out)
    finally:
        jax.config.update("jax_log_compiles", False)
    assert [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()] == []
    assert decoder._decode_jit._cache_size() == size


def test_an_empty_image_decodes_to_padding(scene):
    zeros = [np.zeros_like(a) for a in scene[2]]
    out = jax.device_get(personlab.decode(*zeros, **OPTIONS))
    assert int(out["num_people"]) == 0 and not out["valid"].any() and not out["masks"].any()
    assert not out["keypoints"].any() and not out["scores"].any()
    no_masks = jax.device_get(personlab.decode(*zeros[:3], **OPTIONS))
    assert "masks" not in no_masks and int(no_masks["num_people"]) == 0


def misaligned(array, gap):
    """A copy of `array` whose data starts `gap` bytes past a 64-byte boundary (numpy gives 16), not within 64
    bytes of a page's end (where `fields.host_view` would copy it)."""
    page = fields.PAGE
    raw = np.empty(array.nbytes + 3 * page, np.uint8)
    start = -raw.ctypes.data % page + 128 + gap
    if (raw.ctypes.data + start + array.nbytes) % page > page - 128:
        start += 256
    out = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


def test_host_views_read_numpy_memory_in_place():
    rng = np.random.default_rng(4)
    field = rng.normal(0, 1, (7, 9, 5, 2)).astype(np.float32)
    channels_first = misaligned(np.moveaxis(field, 2, 0), 0)  # (5, 7, 9, 2), as a torch NCHW output
    cases = {  # array, read in place?
        "aligned": (misaligned(field, 0), True),
        "numpy's 16 bytes": (misaligned(field, 16), True),
        "52 bytes": (misaligned(field, 52), True),
        "channels first, permuted": (np.moveaxis(channels_first, 0, 2), True),
        "float16": (misaligned(field.astype(np.float16), 16), True),
        "strided slice": (field[:, ::2], False),  # copied, once
        "float64": (field.astype(np.float64), False),  # converted, once
    }
    index = (np.array([[0], [6]]), np.array([[1, 4]]), np.array([[3]]))

    @functools.partial(jax.jit, static_argnums=2)
    def read(flat, start, layout):
        view = fields.view(flat, start[0], layout)
        return fields.dense(view), fields.at(view, *index), fields.every(view, 1, 3)

    for name, (case, in_place) in cases.items():
        flat, start, shape, strides = fields.host_view(case)
        assert flat.ctypes.data % fields.ALIGN == 0 and shape == case.shape, name
        assert np.shares_memory(flat, case) == in_place, name
        flats, starts, layouts = fields.put_host([case])
        if jax.default_backend() == "cpu" and in_place:  # XLA aliases the aligned view: no copy
            assert np.shares_memory(flats[0], case), name  # the view itself goes to the jitted call
            assert jax.device_put(flats[0]).unsafe_buffer_pointer() == flat.ctypes.data, name
        dense, at, every = read(flats[0], starts, layouts[0])
        want = np.asarray(case, np.float32)
        np.testing.assert_array_equal(dense, want, err_msg=name)
        np.testing.assert_array_equal(at, want[index], err_msg=name)
        np.testing.assert_array_equal(every, want[1::3, 1::3], err_msg=name)


def test_numpy_inputs_decode_like_device_inputs(scene, decoded):
    """Host arrays (any alignment, a permuted channels-first layout, float64) give the same outputs as device
    arrays, without a new compilation per alignment; a batch of host arrays equals the single images."""
    outputs = scene[2]
    device = jax.device_put(tuple(outputs))
    on_device = jax.device_get(personlab.decode(*device, **OPTIONS))
    for key in decoded:
        np.testing.assert_array_equal(on_device[key], decoded[key], err_msg=key)  # decoded: numpy inputs
    for gap in (0, 16, 48):  # C-contiguous copies (the scene's short offsets are a permuted layout)
        got = jax.device_get(personlab.decode(*(misaligned(a, gap) for a in outputs), **OPTIONS))
        for key in decoded:
            np.testing.assert_array_equal(got[key], decoded[key], err_msg=f"{gap} {key}")
        if gap == 0:
            size = decoder._decode_jit._cache_size()
    assert decoder._decode_jit._cache_size() == size  # the alignment is a traced value
    heatmaps, short, mid, long, seg = outputs
    permuted = [
        np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 2, 0)), 0, 2) for a in (heatmaps, short, mid, long)
    ]
    got = jax.device_get(personlab.decode(*permuted, seg, **OPTIONS))
    doubles = jax.device_get(personlab.decode(*(a.astype(np.float64) for a in outputs), **OPTIONS))
    for key in decoded:
        np.testing.assert_array_equal(got[key], decoded[key], err_msg=key)
        np.testing.assert_array_equal(doubles[key], decoded[key], err_msg=key)
    batch = [np.stack([a, a[:, ::-1]]) for a in outputs]  # the second image: a mirrored (invalid) scene
    got = jax.device_get(personlab.decode(*batch, **OPTIONS))
    on_device = jax.device_get(personlab.decode(*jax.device_put(tuple(batch)), **OPTIONS))
    for key in decoded:
        np.testing.assert_array_equal(got[key][0], decoded[key], err_msg=key)
        np.testing.assert_allclose(got[key][1], on_device[key][1], atol=1e-5, err_msg=key)


def test_capacities_grow_with_the_image_size():
    assert decoder.capacities(401, 401) == (30, 256)
    assert decoder.capacities(128, 192) == (30, 256)  # never below the defaults at the paper's crops
    people, candidates = decoder.capacities(1080, 1920)
    assert (
        people > 40 and candidates > 40 * 17
    )  # the 40 people of a crowded 1080p frame fit, with all keypoints
    assert decoder.capacities(800, 800) < (people, candidates)
    o = personlab.decode_options((1080, 1920))
    assert (o["max_people"], o["max_candidates"]) == (people, candidates)
    assert personlab.decode_options((1080, 1920), max_people=7)["max_people"] == 7  # explicit values win
    small = personlab.decode(*(np.zeros((40, 48, *s), np.float32) for s in ((17,), (17, 2), (32, 2))))
    large = personlab.decode(*(np.zeros((420, 430, *s), np.float32) for s in ((17,), (17, 2), (32, 2))))
    assert small["keypoints"].shape == (30, 17, 3)  # a static function of the shape: fixed output shapes
    assert (
        large["keypoints"].shape == (decoder.capacities(420, 430)[0], 17, 3) and large["valid"].shape[0] > 30
    )


def test_a_hit_capacity_is_reported(scene, decoded):
    people, _, outputs = scene
    assert int(decoded["dropped_people"]) == 0 and int(decoded["dropped_candidates"]) == 0
    few = jax.device_get(personlab.decode(*outputs, **{**OPTIONS, "max_people": 2}))
    assert int(few["num_people"]) == 2 and int(few["dropped_people"]) == len(people) - 2
    assert few["valid"].shape == (2,) and few["valid"].all()
    for keypoints in few["keypoints"]:  # the ones kept are people of the full result
        assert np.abs(decoded["keypoints"][:, :, :2] - keypoints[:, :2]).max(axis=(1, 2)).min() < 1e-4
    want = reference.decode(*outputs, **{**OPTIONS, "max_people": 2})
    assert int(want["dropped_people"]) == len(people) - 2
    # 4 people x 17 keypoints: 68 candidates do not fit into 20
    short_queue = {**OPTIONS, "max_candidates": 20}
    got = jax.device_get(personlab.decode(*outputs, **short_queue))
    assert int(got["dropped_candidates"]) >= len(people) * 17 - 20
    assert int(got["dropped_candidates"]) == int(
        reference.decode(*outputs, **short_queue)["dropped_candidates"]
    )
    batch = [np.stack([a, a]) for a in outputs]
    got = jax.device_get(personlab.decode(*jax.device_put(tuple(batch)), **{**OPTIONS, "max_people": 2}))
    np.testing.assert_array_equal(got["dropped_people"], [len(people) - 2] * 2)


def test_every_grouping_size_finds_the_same_people(scene):
    """The grouping runs on the smallest compiled prefix of the candidates that holds the valid ones
    (`decoder.group_sizes`). One person's heatmaps are faded so that all its candidates rank after the other
    three people's 51: the prefix a call picks (80) finds all four, as the whole queue does, while the first
    40 alone would lose the faded person (so the prefix is real and the size choice matters); decode finds all
    four. A negative peak threshold (which the candidate count relies on) is refused by name."""
    people, _, outputs = scene
    heatmaps = np.array(outputs[0])
    yy, xx = np.mgrid[0 : heatmaps.shape[0], 0 : heatmaps.shape[1]]
    near = np.zeros(heatmaps.shape[:2], bool)
    for x, y, _ in people[0]:
        near |= (xx - x) ** 2 + (yy - y) ** 2 <= (RADIUS + 2) ** 2
    heatmaps[near] *= 0.6  # the faded person: its candidates score below everyone else's
    outputs = (heatmaps, *outputs[1:])
    options = decoder.decode_options(heatmaps.shape[:2], **{**OPTIONS, "max_candidates": 160})
    assert decoder.group_sizes(160) == (40, 80, 160)
    positions, types, valid, _, _ = decoder._candidates(*outputs[:2], **options)
    assert 51 < int(valid.sum()) <= 80  # 4 people: the middle size is the one a call picks

    @functools.partial(jax.jit, static_argnums=0)
    def group(needed):
        return decoder._group(*outputs[:4], positions, types, valid, jnp.int32(needed), options)

    full = jax.device_get(group(160))  # needed > 80: the whole queue
    assert int(full[1]) == 4
    for want, have in zip(full, jax.device_get(group(int(valid.sum())))):  # the size a call picks
        np.testing.assert_array_equal(have, want)
    assert int(jax.device_get(group(0))[1]) == 3  # the first 40 candidates only: the faded person is lost
    decoded = jax.device_get(personlab.decode(*outputs, **{**OPTIONS, "max_candidates": 160}))
    assert int(decoded["num_people"]) == 4
    with pytest.raises(ValueError, match="peak_threshold"):
        personlab.decode_options(peak_threshold=-0.1)


def test_decode_inside_a_callers_jit_equals_the_top_level_call(scene, decoded):
    """The top-level decoder is compiled with COMPILER_OPTIONS (fast min / max); inside a caller's jit, where
    compiler options are not allowed, decode is traced without them: the same outputs either way."""
    outputs = jax.device_put(tuple(scene[2]))
    inside = jax.device_get(jax.jit(lambda *a: personlab.decode(*a, **OPTIONS))(*outputs))
    for key in decoded:
        np.testing.assert_array_equal(inside[key], decoded[key], err_msg=key)
