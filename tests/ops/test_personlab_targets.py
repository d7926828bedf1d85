"""PersonLab targets (jhuman.ops.personlab.targets) against hand-made people and a plain numpy loop, and the
losses (jhuman.ops.personlab.losses) against hand computations."""

import jax
import numpy as np
import pytest

from jhuman.classes import PERSONLAB_DIRECTED_EDGES
from jhuman.ops.personlab.losses import LOSS_WEIGHTS, logistic_loss, personlab_losses
from jhuman.ops.personlab.targets import TARGET_KEYS, encode_batch, encode_targets

H, W, R = 64, 80, 8.0
encode = jax.jit(encode_targets, static_argnames=("radius",))


def numpy_targets(keypoints, instance_ids, segmentation, ignore, radius):
    """Plain loops: per keypoint type, persons in order, a pixel moves to a person strictly nearer than the
    current owner (so ties keep the lower index)."""
    num_persons = keypoints.shape[0]
    height, width = instance_ids.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    out = {
        "heatmaps": np.zeros((height, width, 17)),
        "short_offsets": np.zeros((height, width, 17, 2)),
        "mid_offsets": np.zeros((height, width, 32, 2)),
        "mid_mask": np.zeros((height, width, 32)),
        "long_offsets": np.zeros((height, width, 17, 2)),
        "long_mask": np.zeros((height, width, 17)),
    }
    owner = np.full((height, width, 17), -1)
    for k in range(17):
        best = np.full((height, width), np.inf)
        for j in range(num_persons):
            x, y, v = keypoints[j, k]
            if v <= 0:
                continue
            d2 = (cols - x) ** 2 + (rows - y) ** 2
            take = (d2 <= radius**2) & (d2 < best)
            best[take] = d2[take]
            owner[take, k] = j
            out["short_offsets"][take, k] = np.stack([x - cols[take], y - rows[take]], axis=-1)
    out["heatmaps"] = (owner >= 0).astype(float)
    out["short_mask"] = out["heatmaps"]
    for e, (k, l) in enumerate(PERSONLAB_DIRECTED_EDGES):
        for r in range(height):
            for c in range(width):
                j = owner[r, c, k]
                if j >= 0 and keypoints[j, l, 2] > 0:
                    out["mid_mask"][r, c, e] = 1
                    out["mid_offsets"][r, c, e] = keypoints[j, l, :2] - (c, r)
    for r in range(height):
        for c in range(width):
            j = instance_ids[r, c] - 1
            if j < 0:
                continue
            for k in range(17):
                if keypoints[j, k, 2] > 0:
                    out["long_mask"][r, c, k] = 1
                    out["long_offsets"][r, c, k] = keypoints[j, k, :2] - (c, r)
    out["segmentation"] = (segmentation > 0).astype(float)
    out["keypoint_weight"] = 1.0 - (ignore > 0)
    return out


def _disk(cx, cy, radius, height=H, width=W):
    rows, cols = np.mgrid[0:height, 0:width]
    return (cols - cx) ** 2 + (rows - cy) ** 2 <= radius**2


def scene(rng=None, num_persons=4):
    """Three overlapping labelled people plus padding; person 1 lacks its right eye and left shoulder."""
    kp = np.zeros((num_persons, 17, 3), np.float32)
    kp[0, :, :2] = np.stack([np.linspace(10, 40, 17), np.linspace(8, 55, 17)], -1)
    kp[1, :, :2] = kp[0, :, :2] + (14, 3)
    kp[2, :, :2] = np.stack([np.linspace(70, 50, 17), np.linspace(5, 60, 17)], -1)
    kp[:3, :, 2] = 2
    kp[1, [2, 5], 2] = 0
    kp[2, 3, 2] = 1  # labelled but occluded still counts
    if rng is not None:
        kp[:3, :, :2] += rng.uniform(-2, 2, (3, 17, 2))
    ids = np.zeros((H, W), np.int32)
    ids[5:40, 8:30] = 1
    ids[20:60, 25:50] = 2
    ids[5:40, 25:30][ids[5:40, 25:30] == 2] = -1
    ids[20:40, 25:30] = -1  # overlap of persons 0 and 1
    ids[0:64, 55:78] = 3
    seg = (ids != 0).astype(np.uint8)
    seg[50:60, 0:10] = 1  # a person without keypoints: in the segmentation, ignored for keypoints
    ignore = np.zeros((H, W), np.uint8)
    ignore[50:60, 0:10] = 1
    return kp, ids, seg, ignore


def test_matches_numpy_loop_reference():
    kp, ids, seg, ignore = scene(np.random.default_rng(0))
    got = {k: np.asarray(v) for k, v in encode(kp, ids, seg, ignore, radius=R).items()}
    want = numpy_targets(kp, ids, seg, ignore, R)
    assert sorted(got) == sorted(TARGET_KEYS)
    for key in TARGET_KEYS:
        assert got[key].dtype == np.float32, key
        np.testing.assert_allclose(got[key], want[key], atol=1e-4, err_msg=key)


def test_disk_membership_is_distance_at_most_radius():
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, 0] = (20, 30, 2)
    t = encode(
        kp, np.zeros((H, W), np.int32), np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8), radius=R
    )
    heat = np.asarray(t["heatmaps"])
    np.testing.assert_array_equal(heat[..., 0], _disk(20, 30, R))
    assert heat[30, 28, 0] == 1 and heat[30, 12, 0] == 1 and heat[38, 20, 0] == 1  # distance exactly 8
    assert heat[31, 28, 0] == 0  # sqrt(65) > 8
    assert heat[..., 1:].sum() == 0
    short = np.asarray(t["short_offsets"])[..., 0, :]
    rows, cols = np.nonzero(heat[..., 0])
    np.testing.assert_allclose(
        short[rows, cols] + np.stack([cols, rows], -1), np.tile([20, 30], (len(rows), 1))
    )
    assert np.abs(short[heat[..., 0] == 0]).sum() == 0


def test_overlapping_disks_go_to_the_nearest_person():
    kp = np.zeros((3, 17, 3), np.float32)
    kp[0, 5] = (20, 30, 2)
    kp[2, 5] = (30, 30, 2)  # disks overlap on columns 22..28 (rows near 30)
    t = encode(
        kp, np.zeros((H, W), np.int32), np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8), radius=R
    )
    short = np.asarray(t["short_offsets"])[30, :, 5]  # row 30
    np.testing.assert_allclose(short[24], (-4, 0))  # nearer to person 0 (4 px) than to person 2 (6 px)
    np.testing.assert_allclose(short[26], (4, 0))  # nearer to person 2
    np.testing.assert_allclose(short[25], (-5, 0))  # a tie goes to the lower index
    assert np.asarray(t["heatmaps"])[30, 12:39, 5].all()


def test_mid_offsets_only_where_both_keypoints_are_labelled():
    kp, ids, seg, ignore = scene()
    t = {k: np.asarray(v) for k, v in encode(kp, ids, seg, ignore, radius=R).items()}
    edges = list(PERSONLAB_DIRECTED_EDGES)
    e_02, e_20 = edges.index((0, 2)), edges.index((2, 0))  # nose -> right eye, and back
    own_nose_1 = _disk(*kp[1, 0, :2], R) & ~_disk(*kp[0, 0, :2], R)  # the nose disk person 1 owns
    assert own_nose_1.any()
    assert t["heatmaps"][own_nose_1, 0].all()
    assert t["mid_mask"][own_nose_1, e_02].sum() == 0  # person 1's right eye is unlabelled
    assert t["mid_offsets"][own_nose_1, e_02].sum() == 0
    assert t["mid_mask"][..., e_20][_disk(*kp[1, 2, :2], R) & ~_disk(*kp[0, 2, :2], R)].sum() == 0
    rows, cols = np.mgrid[0:H, 0:W]
    d0, d1 = [np.hypot(cols - kp[j, 0, 0], rows - kp[j, 0, 1]) for j in (0, 1)]
    own_nose_0 = (d0 <= R) & (d0 <= d1)
    assert own_nose_0.any() and (_disk(*kp[0, 0, :2], R) & ~own_nose_0).any()  # the disks do overlap
    assert t["mid_mask"][own_nose_0, e_02].all()  # where person 0 owns the nose disk: its right eye
    rows, cols = np.nonzero(own_nose_0)
    np.testing.assert_allclose(
        t["mid_offsets"][rows, cols, e_02] + np.stack([cols, rows], -1),
        np.tile(kp[0, 2, :2], (len(rows), 1)),
        atol=1e-5,
    )


def test_long_offsets_on_own_pixels_only_and_unlabelled_keypoints_give_nothing():
    kp, ids, seg, ignore = scene()
    t = {k: np.asarray(v) for k, v in encode(kp, ids, seg, ignore, radius=R).items()}
    long_mask = t["long_mask"]
    assert long_mask[ids <= 0].sum() == 0  # background and overlaps (-1)
    assert long_mask[ids == 1].all() and long_mask[ids == 3].all()
    np.testing.assert_array_equal(long_mask[ids == 2], np.tile(kp[1, :, 2] > 0, ((ids == 2).sum(), 1)))
    rows, cols = np.nonzero(ids == 3)
    np.testing.assert_allclose(
        t["long_offsets"][rows, cols, 7] + np.stack([cols, rows], -1),
        np.tile(kp[2, 7, :2], (len(rows), 1)),
        atol=1e-4,
    )
    # Person 1's unlabelled left shoulder (5): no disk of its own, nothing points at it.
    assert not ((t["heatmaps"][..., 5] > 0) & ~_disk(*kp[0, 5, :2], R) & ~_disk(*kp[2, 5, :2], R)).any()
    for e, (_, l) in enumerate(PERSONLAB_DIRECTED_EDGES):
        if l == 5:
            landing = t["mid_offsets"][..., e, :] + np.stack(np.meshgrid(np.arange(W), np.arange(H)), -1)
            hits = np.linalg.norm(landing - kp[1, 5, :2], axis=-1) < 1e-3
            assert not (hits & (t["mid_mask"][..., e] > 0)).any()
    # Padded persons and all-unlabelled keypoints: nothing.
    empty = encode(
        np.zeros((3, 17, 3), np.float32),
        np.zeros((H, W), np.int32),
        np.zeros((H, W), np.uint8),
        np.zeros((H, W), np.uint8),
        radius=R,
    )
    for key in (
        "heatmaps",
        "short_mask",
        "mid_mask",
        "long_mask",
        "short_offsets",
        "mid_offsets",
        "long_offsets",
    ):
        assert np.asarray(empty[key]).sum() == 0, key


def test_ignore_is_excluded_through_keypoint_weight():
    kp, ids, seg, ignore = scene()
    t = encode(kp, ids, seg, ignore, radius=R)
    np.testing.assert_array_equal(np.asarray(t["keypoint_weight"]), 1 - ignore)
    np.testing.assert_array_equal(np.asarray(t["segmentation"])[50:60, 0:10], 1)
    # An ignored pixel contributes nothing to the heatmap and offset losses, whatever the outputs say.
    base = perfect_outputs(jax.tree.map(lambda a: a[None], t))
    bad = dict(base)
    noise = np.zeros((1, H, W, 17), np.float32)
    noise[0, 50:60, 0:10] = 50.0
    bad["heatmap_logits"] = base["heatmap_logits"] - noise
    bad["short_offsets"] = base["short_offsets"] + noise[..., None]
    ignored = np.zeros((1, H, W), np.float32)
    ignored[0, 50:60, 0:10] = 1
    targets = jax.tree.map(lambda a: a[None], t)
    targets["short_mask"] = targets["short_mask"] + ignored[..., None]  # even where a mask says supervised
    _, good_terms = personlab_losses(base, targets, radius=R)
    _, bad_terms = personlab_losses(bad, targets, radius=R)
    assert float(bad_terms["heatmap"]) == pytest.approx(float(good_terms["heatmap"]), abs=1e-6)
    assert float(bad_terms["short"]) == pytest.approx(float(good_terms["short"]), abs=1e-6)


def test_batched_vmap_equals_per_example():
    rng = np.random.default_rng(1)
    examples = [scene(rng) for _ in range(3)]
    stacked = [np.stack(parts) for parts in zip(*examples)]
    batch = jax.jit(encode_batch, static_argnames=("radius",))(*stacked, radius=R)
    for i, example in enumerate(examples):
        single = encode(*example, radius=R)
        for key in TARGET_KEYS:
            np.testing.assert_array_equal(np.asarray(batch[key][i]), np.asarray(single[key]), err_msg=key)


# --- losses ------------------------------------------------------------------------------------------------------


def perfect_outputs(targets, big=30.0):
    """Outputs equal to the targets: logits +-big, offsets copied."""
    return {
        "heatmap_logits": (2 * targets["heatmaps"] - 1) * big,
        "segmentation_logits": (2 * targets["segmentation"] - 1) * big,
        "short_offsets": targets["short_offsets"],
        "mid_offsets": targets["mid_offsets"],
        "long_offsets": targets["long_offsets"],
    }


def tiny_targets():
    """B=1, H=1, W=2, K=17, E=32 targets with a few supervised entries."""
    t = {
        "heatmaps": np.zeros((1, 1, 2, 17), np.float32),
        "short_offsets": np.zeros((1, 1, 2, 17, 2), np.float32),
        "short_mask": np.zeros((1, 1, 2, 17), np.float32),
        "mid_offsets": np.zeros((1, 1, 2, 32, 2), np.float32),
        "mid_mask": np.zeros((1, 1, 2, 32), np.float32),
        "long_offsets": np.zeros((1, 1, 2, 17, 2), np.float32),
        "long_mask": np.zeros((1, 1, 2, 17), np.float32),
        "segmentation": np.array([[[1, 0]]], np.float32),
        "keypoint_weight": np.array([[[1, 0]]], np.float32),
    }
    t["heatmaps"][0, 0, 0, 3] = 1
    t["short_mask"][0, 0, :, 3] = 1  # pixel 1 is ignored by keypoint_weight
    t["short_offsets"][0, 0, 0, 3] = (4, -2)
    t["short_offsets"][0, 0, 1, 3] = (9, 9)
    t["mid_mask"][0, 0, 0, [0, 7]] = 1
    t["mid_offsets"][0, 0, 0, 7] = (-8, 16)
    return t


def test_losses_by_hand():
    t = tiny_targets()
    out = {
        "heatmap_logits": np.zeros((1, 1, 2, 17), np.float32),
        "segmentation_logits": np.array([[[2.0, -1.0]]]),
        "short_offsets": np.zeros((1, 1, 2, 17, 2), np.float32),
        "mid_offsets": np.zeros((1, 1, 2, 32, 2), np.float32),
        "long_offsets": np.full((1, 1, 2, 17, 2), 5.0, np.float32),
    }
    total, terms = personlab_losses(out, t, radius=32.0)
    np.testing.assert_allclose(terms["heatmap"], np.log(2), rtol=1e-6)  # logit 0: log 2 for either target
    want_seg = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    np.testing.assert_allclose(terms["segmentation"], want_seg, rtol=1e-6)
    np.testing.assert_allclose(terms["short"], (4 + 2) / 32 / 1, rtol=1e-6)  # one entry: pixel 1 is ignored
    np.testing.assert_allclose(terms["mid"], (0 + 8 + 16) / 32 / 2, rtol=1e-6)
    np.testing.assert_allclose(terms["long"], 0.0)  # no supervised entry: 0 / max(0, 1)
    want_total = sum(LOSS_WEIGHTS[k] * float(terms[k]) for k in LOSS_WEIGHTS)
    np.testing.assert_allclose(total, want_total, rtol=1e-6)
    np.testing.assert_allclose(
        personlab_losses(out, t, radius=32.0, weights={"heatmap": 0.0})[0],
        want_total - 4.0 * np.log(2),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="unknown loss weight"):
        personlab_losses(out, t, weights={"heatmaps": 1.0})


def test_logistic_loss_is_stable_and_exact():
    z = np.array([-100.0, -1.0, 0.0, 3.0, 100.0], np.float32)
    for target in (0.0, 1.0):
        z64 = z.astype(np.float64)
        want = target * np.logaddexp(0, -z64) + (1 - target) * np.logaddexp(0, z64)  # -log p or -log(1 - p)
        np.testing.assert_allclose(logistic_loss(z, target), want, rtol=1e-5, atol=1e-6)


def test_perfect_outputs_give_near_zero_loss_and_intermediate_terms_add():
    kp, ids, seg, ignore = scene(np.random.default_rng(2))
    targets = encode_batch(*[np.stack([a, a]) for a in (kp, ids, seg, ignore)], radius=R)
    outputs = perfect_outputs(targets)
    total, terms = jax.jit(lambda o, t: personlab_losses(o, t, radius=R))(outputs, targets)
    assert float(total) < 1e-9 and all(float(v) < 1e-9 for v in terms.values())
    wrong = dict(outputs, intermediate=dict(outputs, mid_offsets=outputs["mid_offsets"] + 1.0))
    total, terms = personlab_losses(wrong, targets, radius=R)
    assert set(terms) == {*LOSS_WEIGHTS, *(f"intermediate_{k}" for k in LOSS_WEIGHTS)}
    np.testing.assert_allclose(terms["intermediate_mid"], 2.0 / R, rtol=1e-5)  # |1| + |1| per entry
    np.testing.assert_allclose(total, LOSS_WEIGHTS["mid"] * 2.0 / R, rtol=1e-4)
