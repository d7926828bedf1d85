import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.ops import warp, warp_reference

# Jitted entry points: eager op-by-op dispatch would compile every primitive separately (slow on CPU).
limb_transforms = jax.jit(warp.limb_transforms)
joint_heatmaps = jax.jit(warp.joint_heatmaps, static_argnums=(2, 3, 4, 5))
limb_prior = jax.jit(warp.limb_prior, static_argnums=(2, 3))
warp_limbs = jax.jit(warp.warp_limbs)

# A standing person in a 64x64 image (x, y), in the 14-joint order.
STANDING = np.array(
    [[32, 8], [32, 16], [24, 17], [21, 27], [20, 36], [40, 17], [43, 27], [44, 36],
     [27, 36], [26, 47], [26, 58], [37, 36], [38, 47], [38, 58]],
    np.float32,
)  # fmt: skip


def random_poses(rng, shape, size=64.0):
    """Joints around STANDING, jittered and randomly rotated/scaled/shifted per pose: (*shape, 14, 2)."""
    angle = rng.uniform(-0.6, 0.6, shape)[..., None]
    scale = rng.uniform(0.7, 1.3, shape)[..., None]
    centred = STANDING - size / 2
    x = scale * (np.cos(angle) * centred[:, 0] - np.sin(angle) * centred[:, 1])
    y = scale * (np.sin(angle) * centred[:, 0] + np.cos(angle) * centred[:, 1])
    joints = np.stack([x, y], -1) + size / 2 + rng.uniform(-6, 6, (*shape, 1, 2))
    return (joints + rng.normal(0, 2.0, joints.shape)).astype(np.float32)


def apply(m, points):
    """(..., 2, 3) similarity applied to (..., n, 2) points."""
    m = np.asarray(m, np.float64)
    return np.einsum("...ij,...nj->...ni", m[..., :2], points) + m[..., None, :, 2]


def test_tables():
    assert len(warp.JOINTS) == 14 and warp.JOINTS[:2] == ("head", "neck")
    assert len(warp.LIMBS) == 10 and warp.LIMBS[-1] == (2, 5, 8, 11) and warp.LIMBS[0] == (0, 1)
    assert len(warp.LIMB_NAMES) == 10 and warp.LIMB_NAMES[-1] == "torso"
    assert warp.NUM_MASKS == 11 and warp.NUM_JOINTS == 14
    assert sorted(warp.FLIP_PERMUTATION) == list(range(14))
    # The reference's constants (shared with warp_reference, so pinned here).
    assert warp.HEATMAP_SIGMA == 1.75 and warp.PRIOR_MIN_VARIANCE == 5.0 and warp.PRIOR_LENGTH_DIVISOR == 1.5
    assert warp.PRIOR_ACROSS_VARIANCE == (121.0,) * 9 + (169.0,) and warp.PRIOR_NORM_EPS == 1e-6


def test_flip_permutation_swaps_left_and_right():
    perm = np.asarray(warp.FLIP_PERMUTATION)
    np.testing.assert_array_equal(perm[perm], np.arange(14))  # an involution
    swap = {"left": "right", "right": "left"}
    for i, name in enumerate(warp.JOINTS):
        side, _, part = name.partition("_")
        expected = f"{swap[side]}_{part}" if side in swap else name
        assert warp.JOINTS[perm[i]] == expected


def test_flip_joints_mirrors_and_twice_is_identity():
    rng = np.random.default_rng(0)
    joints = random_poses(rng, (3,))
    flipped = warp.flip_joints(joints, 64)
    assert isinstance(flipped, np.ndarray) and flipped.shape == (3, 14, 2)
    right_wrist, left_wrist = warp.JOINTS.index("right_wrist"), warp.JOINTS.index("left_wrist")
    np.testing.assert_allclose(flipped[:, right_wrist, 0], 63 - joints[:, left_wrist, 0], atol=1e-5)
    np.testing.assert_allclose(flipped[:, right_wrist, 1], joints[:, left_wrist, 1], atol=1e-5)
    np.testing.assert_allclose(warp.flip_joints(flipped, 64), joints, atol=1e-5)
    np.testing.assert_allclose(
        jax.jit(warp.flip_joints, static_argnums=1)(jnp.asarray(joints), 64), flipped, atol=1e-5
    )
    with pytest.raises(ValueError, match="flip_joints: joints"):
        warp.flip_joints(joints[:, :13], 64)


def test_transforms_match_lstsq_on_random_poses():
    rng = np.random.default_rng(1)
    src, tgt = random_poses(rng, (2, 3)), random_poses(rng, (2, 3))
    m = limb_transforms(src, tgt)
    assert m.shape == (2, 3, 10, 2, 3) and m.dtype == jnp.float32
    np.testing.assert_allclose(m, warp_reference.limb_transforms(src, tgt), rtol=1e-4, atol=1e-3)
    m = np.asarray(m)
    # The similarity form [[a1, -b1, a0], [b1, a1, b0]].
    np.testing.assert_array_equal(m[..., 0, 0], m[..., 1, 1])
    np.testing.assert_array_equal(m[..., 0, 1], -m[..., 1, 0])
    # Two-joint limbs are exact: each maps its target joints onto its source joints.
    for l, limb in enumerate(warp.LIMBS[:-1]):
        np.testing.assert_allclose(apply(m[..., l, :, :], tgt[..., limb, :]), src[..., limb, :], atol=2e-3)
    # The torso by least squares over 4 joints: lstsq of the 8 x 4 system, and the residual is orthogonal to it.
    torso = list(warp.LIMBS[-1])
    a0, a1, b0, b1 = warp_reference.similarity_lstsq(tgt[1, 2, torso], src[1, 2, torso])
    np.testing.assert_allclose(m[1, 2, -1], [[a1, -b1, a0], [b1, a1, b0]], rtol=1e-4, atol=1e-3)
    residual = apply(m[1, 2, -1], tgt[1, 2, torso]) - src[1, 2, torso]
    assert np.abs(residual).max() > 0.1  # the jitter makes the torso not exactly similar


def test_a_global_similarity_is_recovered_for_every_limb():
    angle, scale, shift = 0.3, 1.2, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    tgt = STANDING
    src = (tgt @ rot.T + shift).astype(np.float32)
    m = np.asarray(limb_transforms(src, tgt))
    expected = np.concatenate([rot, shift[:, None]], axis=1)
    np.testing.assert_allclose(m, np.broadcast_to(expected, (10, 2, 3)), atol=1e-4)


def test_degenerate_limbs_get_finite_fallbacks():
    rng = np.random.default_rng(2)
    src, tgt = random_poses(rng, (4,)), random_poses(rng, (4,))
    src_visible, tgt_visible = np.ones((4, 14), bool), np.ones((4, 14), bool)
    tgt[0, 3] = tgt[0, 4] = [30.0, 30.0]  # r-forearm: coincident target joints -> translation only
    tgt[0, 9] = tgt[0, 10] + [0.3, 0.2]  # r-calf: target joints 0.36 px apart -> translation only
    src_visible[1, 0] = False  # head: one joint used -> translation of the neck
    tgt_visible[1, 5] = tgt_visible[1, 6] = False  # l-upper-arm: no joint used -> identity
    src_visible[2, 2] = False  # torso with 3 joints -> least squares over the other three
    src[3], tgt[3] = 0.0, 0.0  # every joint at the origin -> translation by zero
    m = np.asarray(limb_transforms(src, tgt, src_visible, tgt_visible))
    ref = warp_reference.limb_transforms(src, tgt, src_visible, tgt_visible)
    assert np.isfinite(m).all()
    np.testing.assert_allclose(m, ref, rtol=1e-4, atol=1e-3)

    def translation(dx, dy):
        return [[1.0, 0.0, dx], [0.0, 1.0, dy]]

    np.testing.assert_allclose(m[0, 2], translation(*(src[0, 3:5].mean(0) - 30.0)), atol=1e-4)
    np.testing.assert_allclose(
        m[0, 6], translation(*(src[0, 9:11].mean(0) - tgt[0, 9:11].mean(0))), atol=1e-4
    )
    np.testing.assert_allclose(m[1, 0], translation(*(src[1, 1] - tgt[1, 1])), atol=1e-4)
    np.testing.assert_allclose(m[1, 3], translation(0.0, 0.0), atol=0)
    np.testing.assert_allclose(m[3], np.broadcast_to(translation(0.0, 0.0), (10, 2, 3)), atol=0)
    a0, a1, b0, b1 = warp_reference.similarity_lstsq(tgt[2, [5, 8, 11]], src[2, [5, 8, 11]])
    np.testing.assert_allclose(m[2, 9], [[a1, -b1, a0], [b1, a1, b0]], rtol=1e-4, atol=1e-3)
    # Gradients through the fallbacks stay finite.
    total = jax.jit(
        jax.grad(lambda s, t: jnp.sum(warp.limb_transforms(s, t, src_visible, tgt_visible)), (0, 1))
    )
    grad = total(src, tgt)
    assert all(np.isfinite(np.asarray(g)).all() for g in grad)


def test_heatmaps_match_numpy():
    rng = np.random.default_rng(3)
    joints = random_poses(rng, (2, 2))
    visible = rng.random((2, 2, 14)) > 0.2
    heat = joint_heatmaps(joints, visible, 32, 28, 1.75, 0.5)
    assert heat.shape == (2, 2, 32, 28, 14) and heat.dtype == jnp.float32
    ref = warp_reference.joint_heatmaps(joints, visible, 32, 28, 1.75, 0.5)
    np.testing.assert_allclose(heat, ref, atol=1e-6)
    assert not np.asarray(heat).transpose(0, 1, 4, 2, 3)[~visible].any()  # invisible joints: zero maps
    # Peak 1 at an integer joint position on the half-resolution map; the default sigma is 1.75.
    on_grid = np.zeros((14, 2), np.float32) + [[20.0, 10.0]]
    heat = np.asarray(warp.joint_heatmaps(on_grid, np.ones(14, bool), 16, 16, scale=0.5))
    assert heat[5, 10, 0] == 1.0 and heat.max() == 1.0
    np.testing.assert_allclose(heat[5, 11, 0], np.exp(-1 / (2 * 1.75**2)), rtol=1e-6)


def test_limb_prior_matches_numpy():
    rng = np.random.default_rng(4)
    joints = random_poses(rng, (3,)) * 0.75  # a 48x48 image
    joints[2, 3] = joints[2, 2]  # a zero-length upper arm: variance 5 along an arbitrary direction
    visible = np.ones((3, 14), bool)
    visible[1, [4, 11]] = False  # r-forearm and l-thigh and the torso lose a joint -> zero channels
    for vis in (None, visible):
        prior = limb_prior(joints, vis, 48, 44)
        assert prior.shape == (3, 48, 44, 11) and prior.dtype == jnp.float32
        np.testing.assert_allclose(prior, warp_reference.limb_prior(joints, vis, 48, 44), atol=2e-6)
    prior = np.asarray(prior)
    np.testing.assert_allclose(prior[..., 0], 1.0 - prior[..., 1:].max(-1), atol=1e-7)
    present = prior[..., 1:].max(axis=(1, 2))  # (3, 10) peak of each channel
    np.testing.assert_array_equal(present[1] == 0, [0, 0, 1, 0, 0, 0, 0, 1, 0, 1])
    np.testing.assert_allclose(present[0], 1.0, atol=1e-5)
    # A long horizontal forearm (length 40, centre (30, 30)): variance 40^2 / 1.5 along it, 121 across.
    straight = np.tile(STANDING, (1, 1, 1))
    straight[0, 3], straight[0, 4] = [10.0, 30.0], [50.0, 30.0]
    forearm = np.asarray(limb_prior(straight, None, 64, 64))[0, ..., 3]
    peak = 1.0 / (1.0 + 1e-6)
    np.testing.assert_allclose(forearm[30, 30], peak, rtol=1e-6)
    np.testing.assert_allclose(forearm[30, 45], peak * np.exp(-(15.0**2) / (2 * 1600 / 1.5)), rtol=1e-5)
    np.testing.assert_allclose(forearm[42, 30], peak * np.exp(-(12.0**2) / (2 * 121.0)), rtol=1e-5)
    # A vertical torso: shoulder mean (30, 10), hip mean (30, 50); variance 169 across.
    straight[0, [2, 5, 8, 11]] = [[20.0, 10.0], [40.0, 10.0], [20.0, 50.0], [40.0, 50.0]]
    torso = np.asarray(limb_prior(straight, None, 64, 64))[0, ..., 10]
    np.testing.assert_allclose(torso[30, 43], peak * np.exp(-0.5), rtol=1e-5)
    np.testing.assert_allclose(torso[45, 30], peak * np.exp(-(15.0**2) / (2 * 1600 / 1.5)), rtol=1e-5)


def test_limb_prior_scales_its_constant_widths_with_the_image():
    """At a quarter of 256 px the constant variances (121 across a limb, the minimum along it) shrink 16x, so
    limbs keep their width relative to the body."""
    rng = np.random.default_rng(7)
    joints = random_poses(rng, (2,))  # poses of a 64x64 image
    prior = np.asarray(limb_prior(joints, None, 64, 64, scale=0.25))
    np.testing.assert_allclose(prior, warp_reference.limb_prior(joints, None, 64, 64, scale=0.25), atol=2e-6)
    assert np.mean(prior[..., 0] > 0.5) > np.mean(np.asarray(limb_prior(joints, None, 64, 64))[..., 0] > 0.5)
    straight = np.tile(STANDING, (1, 1, 1)) * 0.25
    straight[0, 3], straight[0, 4] = [5.0, 30.0], [25.0, 30.0]  # a horizontal forearm, centre (15, 30)
    forearm = np.asarray(limb_prior(straight, None, 64, 64, scale=0.25))[0, ..., 3]
    np.testing.assert_allclose(forearm[36, 15], np.exp(-(6.0**2) / (2 * 121.0 / 16)) / (1 + 1e-6), rtol=1e-5)


def warp_inputs(rng, batch, height, width, channels=3):
    images = rng.uniform(-1, 1, (batch, height, width, channels)).astype(np.float32)
    logits = rng.normal(0, 2, (batch, height, width, 11))
    masks = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    src, tgt = random_poses(rng, (batch,), size=height), random_poses(rng, (batch,), size=height)
    transforms = warp_reference.limb_transforms(src, tgt)
    transforms[0, 1, :, 2] += [40.0, -30.0]  # reaches past the border: replicated
    return images, masks.astype(np.float32), transforms


def test_warp_matches_numpy_loop():
    rng = np.random.default_rng(5)
    images, masks, transforms = warp_inputs(rng, 2, 24, 20)
    out = warp_limbs(images, masks, transforms)
    assert out.shape == (2, 24, 20, 10, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, warp_reference.warp_limbs(images, masks, transforms), atol=1e-5)


def test_warp_identity_and_integer_shift():
    rng = np.random.default_rng(6)
    images, masks, _ = warp_inputs(rng, 1, 16, 12, channels=2)
    layers = images[..., None, :] * masks[..., 1:, None]  # (1, H, W, 10, C)
    identity = np.broadcast_to(np.eye(2, 3, dtype=np.float32), (1, 10, 2, 3)).copy()
    np.testing.assert_allclose(warp_limbs(images, masks, identity), layers, atol=1e-6)
    shifted = identity.copy()
    shifted[0, 4, :, 2] = [3.0, -2.0]  # target (x, y) reads source (x + 3, y - 2), clamped
    out = np.asarray(warp_limbs(images, masks, shifted))
    ys, xs = np.mgrid[:16, :12]
    expected = layers[0, np.clip(ys - 2, 0, 15), np.clip(xs + 3, 0, 11), 4]
    np.testing.assert_allclose(out[0, :, :, 4], expected, atol=1e-6)
    np.testing.assert_allclose(out[0, :, :, 5], layers[0, :, :, 5], atol=1e-6)


def test_warp_gradients_reach_images_masks_and_transforms():
    rng = np.random.default_rng(7)
    images, masks, transforms = warp_inputs(rng, 1, 12, 12)
    transforms[..., 2] += 0.37  # off the integer grid: the bilinear weights depend on the transform
    grads = jax.jit(jax.grad(lambda *a: jnp.sum(warp.warp_limbs(*a) ** 2), (0, 1, 2)))(
        images, masks, transforms
    )
    for g in grads:
        assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
    assert not np.asarray(grads[1])[..., 0].any()  # the background channel is not warped


def test_bad_inputs_name_the_argument():
    joints = STANDING[None]
    with pytest.raises(ValueError, match="src_joints"):
        warp.limb_transforms(joints[:, :13], joints)
    with pytest.raises(ValueError, match="same shape"):
        warp.limb_transforms(joints, np.concatenate([joints, joints]))
    with pytest.raises(ValueError, match="tgt_visible"):
        warp.limb_transforms(joints, joints, None, np.ones((1, 13), bool))
    with pytest.raises(ValueError, match="joints"):
        warp.joint_heatmaps(np.zeros((14, 3)), None, 8, 8)
    with pytest.raises(ValueError, match="visible"):
        warp.limb_prior(joints, np.ones(14, bool), 8, 8)
    images = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="masks"):
        warp.warp_limbs(images, np.zeros((1, 8, 8, 10)), np.zeros((1, 10, 2, 3)))
    with pytest.raises(ValueError, match="transforms"):
        warp.warp_limbs(images, np.zeros((1, 8, 8, 11)), np.zeros((1, 11, 2, 3)))
    with pytest.raises(ValueError, match="images"):
        warp.warp_limbs(images[0], np.zeros((1, 8, 8, 11)), np.zeros((1, 10, 2, 3)))


def test_jit_static_shapes_and_no_recompilation():
    traces = []

    def generator_inputs(images, masks, src, tgt, src_visible, tgt_visible):
        traces.append(1)
        transforms = warp.limb_transforms(src, tgt)
        heat = warp.joint_heatmaps(tgt, tgt_visible, 8, 8, scale=0.5)
        prior = warp.limb_prior(src, None, 16, 16)
        return warp.warp_limbs(images, masks, transforms), heat, prior

    step = jax.jit(generator_inputs)
    rng = np.random.default_rng(8)
    for _ in range(3):
        images, masks, _ = warp_inputs(rng, 2, 16, 16)
        src, tgt = random_poses(rng, (2,), size=16), random_poses(rng, (2,), size=16)
        visible = rng.random((2, 14)) > 0.3
        warped, heat, prior = step(images, masks, src, tgt, visible, ~visible)
        expected = warp_reference.warp_limbs(images, masks, warp_reference.limb_transforms(src, tgt))
        np.testing.assert_allclose(warped, expected, atol=2e-5)
        np.testing.assert_allclose(
            heat, warp_reference.joint_heatmaps(tgt, ~visible, 8, 8, scale=0.5), atol=1e-6
        )
    assert len(traces) == 1 and step._cache_size() == 1
