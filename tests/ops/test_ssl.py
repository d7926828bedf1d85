import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.classes import IGNORE_LABEL, LIP_NUM_CLASSES
from jhuman.ops import ssl, ssl_reference

SCALE = 4.0 / math.sqrt(2.0 * math.pi)  # released PoseCreate factor for sigma = 1

# Jitted entry points: eager op-by-op dispatch would compile every primitive separately (slow on CPU).
joint_centers = jax.jit(ssl.joint_centers)
joint_heatmaps = jax.jit(ssl.joint_heatmaps, static_argnums=(2, 3))
joint_loss = jax.jit(ssl.joint_loss)
soft_joint_centers = jax.jit(ssl.soft_joint_centers)
soft_joint_loss = jax.jit(ssl.soft_joint_loss)
ssl_weights = jax.jit(ssl.ssl_weights, static_argnums=2)


def random_labels(rng, shape, drop=()):
    """Random LIP maps with 255 pixels; classes in `drop` never appear (their joints go missing)."""
    values = np.array([c for c in range(LIP_NUM_CLASSES) if c not in drop] + [IGNORE_LABEL] * 3)
    return rng.choice(values, size=shape).astype(np.int32)


def test_tables_follow_the_class_list():
    assert len(ssl.JOINT_GROUPS) == 9 and ssl.CLASS_TO_JOINT.shape == (256,)
    assert ssl.JOINT_GROUPS[0] == (1, 2, 4, 13) and ssl.JOINT_GROUPS[1] == (5, 7, 11)
    assert ssl.JOINT_GROUPS[2] == (9, 12) and ssl.JOINT_GROUPS[3:] == tuple((c,) for c in range(14, 20))
    for cls in (0, 3, 6, 8, 10, 20, 254, IGNORE_LABEL):
        assert ssl.CLASS_TO_JOINT[cls] == -1
    for joint, classes in enumerate(ssl.JOINT_GROUPS):
        assert all(ssl.CLASS_TO_JOINT[c] == joint for c in classes)


def test_centers_and_heatmaps_match_numpy_reference():
    rng = np.random.default_rng(0)
    labels = random_labels(rng, (2, 3, 9, 11))  # two leading axes
    labels[0, 1] = rng.choice([0, 3, 6, 8, 10, 255], size=(9, 11))  # an image without any joint
    labels[1, 2] = random_labels(
        rng, (9, 11), drop=(9, 12, 16, 19)
    )  # lower body, left leg, right shoe missing
    centers, visible = joint_centers(labels)
    ref_c, ref_v = ssl_reference.joint_centers(labels)
    assert centers.shape == (2, 3, 9, 2) and centers.dtype == jnp.float32 and visible.dtype == jnp.bool_
    np.testing.assert_array_equal(visible, ref_v)
    np.testing.assert_allclose(centers, ref_c, rtol=1e-6, atol=1e-6)
    assert not np.asarray(visible[0, 1]).any() and not np.asarray(centers[0, 1]).any()
    np.testing.assert_array_equal(visible[1, 2], [1, 1, 0, 1, 1, 0, 1, 1, 0])
    for sigma in (1.0, 2.5):
        heat = joint_heatmaps(centers, visible, 9, 11, sigma)
        assert heat.shape == (2, 3, 9, 11, 9)
        np.testing.assert_allclose(heat, ssl_reference.joint_heatmaps(ref_c, ref_v, 9, 11, sigma), atol=2e-6)
    # No leading axis; uint8 input; per image regardless of the batch it sits in.
    single_c, single_v = joint_centers(labels[1, 2].astype(np.uint8))
    assert single_c.shape == (9, 2)
    np.testing.assert_allclose(single_c, centers[1, 2], atol=1e-6)
    np.testing.assert_array_equal(single_v, visible[1, 2])


def test_hand_computed_center_and_released_scale():
    labels = np.zeros((6, 6), np.int32)
    labels[1, 2] = 2  # hair
    labels[1, 3] = 13  # face: same joint (head)
    labels[4, 0] = 18  # left shoe, single pixel
    labels[5, 5] = IGNORE_LABEL
    centers, visible = joint_centers(labels)
    np.testing.assert_array_equal(visible, [1, 0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(centers[0], [2.5, 1.0])  # (mean column, mean row)
    np.testing.assert_allclose(centers[7], [0.0, 4.0])
    np.testing.assert_array_equal(np.asarray(centers)[visible == 0], 0.0)
    heat = np.asarray(joint_heatmaps(centers, visible, 6, 6))
    np.testing.assert_allclose(heat[4, 0, 7], SCALE, rtol=1e-6)  # peak on an integer centre: 4/sqrt(2 pi)
    np.testing.assert_allclose(heat[1, 2, 0], SCALE * math.exp(-0.125), rtol=1e-6)  # 0.5 px off the centre
    np.testing.assert_allclose(heat[3, 2, 7], SCALE * math.exp(-2.5), rtol=1e-6)  # d^2 = 4 + 1
    assert not heat[..., 1:7].any() and not heat[..., 8].any()
    wide = np.asarray(joint_heatmaps(centers, visible, 6, 6, sigma=2.0))
    np.testing.assert_allclose(wide[4, 0, 7], 4.0 / (2.0 * math.sqrt(2.0 * math.pi)), rtol=1e-6)


def test_joint_loss_by_hand():
    theta = sum(math.exp(-k * k) for k in range(-20, 21))  # sum_k exp(-k^2); squared it is about pi
    gt = np.zeros((2, 15, 15), np.int32)
    pred = np.zeros((2, 15, 15), np.int32)
    gt[:, 7, 7] = 14  # left arm at (7, 7) in both images
    # Image 0: predicted left arm missing -> 0.05 * 0.5 * SCALE^2 * sum exp(-d^2), about 0.2.
    # Image 1: predicted at (8, 7) -> 0.05 * 0.5 * SCALE^2 * (2 sum g^2 - 2 sum g_gt g_pred) over the grid.
    pred[1, 7, 8] = 14
    cross = sum(math.exp(-((k - 7) ** 2 + (k - 8) ** 2) / 2.0) for k in range(15)) * theta
    expected = [0.025 * SCALE**2 * theta**2, 0.025 * SCALE**2 * (2 * theta**2 - 2 * cross)]
    got = joint_loss(gt, pred)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(got[0], 0.2, rtol=1e-3)
    np.testing.assert_allclose(joint_loss(gt, pred, weight=1.0), np.array(expected) / 0.05, rtol=1e-5)
    np.testing.assert_allclose(joint_loss(gt, gt), 0.0)
    rng = np.random.default_rng(1)
    a, b = random_labels(rng, (3, 8, 7)), random_labels(rng, (3, 8, 7), drop=(5, 7, 11, 17))
    np.testing.assert_allclose(joint_loss(a, b, 1.5), ssl_reference.joint_loss(a, b, 1.5), rtol=1e-5)


def test_soft_centers_relax_the_hard_ones():
    rng = np.random.default_rng(2)
    labels = random_labels(rng, (2, 7, 8), drop=(14,))
    one_hot = np.eye(256, dtype=np.float32)[labels][..., :LIP_NUM_CLASSES]  # 255 -> all zeros
    soft_c, soft_v = soft_joint_centers(one_hot)
    hard_c, hard_v = joint_centers(labels)
    np.testing.assert_array_equal(soft_v, hard_v)
    np.testing.assert_allclose(soft_c, hard_c, atol=1e-5)
    probs = np.array(jax.nn.softmax(rng.normal(size=(2, 7, 8, LIP_NUM_CLASSES)) * 3, axis=-1))
    probs[0, ..., 18] = 1e-3  # left shoe: mass 0.056 < 0.5 -> invisible
    ref_c, ref_v = ssl_reference.soft_joint_centers(probs)
    got_c, got_v = soft_joint_centers(probs)
    np.testing.assert_array_equal(got_v, ref_v)
    assert not ref_v[0, 7]
    np.testing.assert_allclose(got_c, ref_c, atol=1e-4)


def _batch(rng):
    labels = random_labels(rng, (3, 9, 9))
    logits = rng.normal(size=(3, 9, 9, LIP_NUM_CLASSES)).astype(np.float32)
    logits += 2.0 * np.eye(256, dtype=np.float32)[labels][..., :LIP_NUM_CLASSES]  # half-right prediction
    return jnp.asarray(labels), jnp.asarray(logits)


def _loss_fn(labels, variant):
    def loss(logits):
        multiplier, _ = ssl_weights(labels, logits, variant)
        ce = ssl.per_image_cross_entropy(logits, labels)
        return jnp.sum(ssl.structure_sensitive_loss(ce, multiplier, variant))

    return loss


def test_gradient_variants_differ_as_documented():
    labels, logits = _batch(np.random.default_rng(3))
    ce_fn = lambda lg: ssl.per_image_cross_entropy(lg, labels)  # noqa: E731
    ce, ce_jac = jax.jit(ce_fn)(logits), jax.jit(jax.jacrev(ce_fn))(logits)  # (3,), (3, 3, 9, 9, 20)
    hard = joint_loss(labels, jnp.argmax(logits, -1))
    assert (hard > 0).all()
    grad = {v: jax.jit(jax.grad(_loss_fn(labels, v)))(logits) for v in ssl.VARIANTS}
    # report_only: the plain cross-entropy gradient (the released Caffe backward).
    np.testing.assert_allclose(grad["report_only"], ce_jac.sum(0), rtol=1e-5, atol=1e-8)
    # stop_gradient: image i's CE gradient scaled by its L_joint.
    scaled_ce = np.einsum("i,i...->...", hard, ce_jac)
    np.testing.assert_allclose(grad["stop_gradient"], scaled_ce, rtol=1e-5, atol=1e-8)
    for i in range(3):
        np.testing.assert_allclose(grad["stop_gradient"][i], hard[i] * ce_jac[i, i], rtol=1e-5, atol=1e-8)
    # The literal product with the argmax L_joint is the same function of the logits for jax.grad.
    literal = jax.jit(jax.grad(lambda lg: jnp.sum(joint_loss(labels, jnp.argmax(lg, -1)) * ce_fn(lg))))(
        logits
    )
    np.testing.assert_array_equal(literal, grad["stop_gradient"])
    # product: soft L_joint * CE, i.e. L_soft * dCE plus the extra term CE * dL_soft.
    soft_fn = lambda lg: soft_joint_loss(labels, lg)  # noqa: E731
    soft, soft_jac = soft_fn(logits), jax.jit(jax.jacrev(soft_fn))(logits)
    scaled = np.einsum("i,i...->...", soft, ce_jac)
    extra = np.einsum("i,i...->...", ce, soft_jac)
    np.testing.assert_allclose(grad["product"], scaled + extra, rtol=1e-4, atol=1e-7)
    assert np.abs(extra).max() > 0.1 * np.abs(scaled).max()
    multiplier, reported = ssl_weights(labels, logits, "product")
    np.testing.assert_allclose(multiplier, soft, rtol=1e-6)
    np.testing.assert_allclose(reported, hard, rtol=1e-6)
    np.testing.assert_array_equal(ssl_weights(labels, logits, "report_only")[0], 1.0)


def test_matching_joints_give_zero_gradient():
    # Image 0 is point-symmetric about (3, 3): a head block inside an upper-body ring, logits symmetric too, so
    # argmax and soft centres both equal the ground truth -> L_joint = 0 -> no gradient for that image.
    labels = np.zeros((2, 7, 7), np.int32)
    labels[0, 1:6, 1:6] = 5
    labels[0, 2:5, 2:5] = 13
    labels[1] = random_labels(np.random.default_rng(4), (7, 7))
    logits = np.random.default_rng(5).normal(size=(2, 7, 7, LIP_NUM_CLASSES)).astype(np.float32)
    logits[0] = 2.0 * np.eye(LIP_NUM_CLASSES, dtype=np.float32)[labels[0]]
    absent = [c for c in range(LIP_NUM_CLASSES) if ssl.CLASS_TO_JOINT[c] not in (-1, 0, 1)]
    logits[0, ..., absent] = -20.0  # no probability mass for joints the ground truth lacks
    labels, logits = jnp.asarray(labels), jnp.asarray(logits)
    _, hard = ssl_weights(labels, logits, "stop_gradient")
    assert hard[0] == 0.0 and hard[1] > 0
    assert soft_joint_loss(labels, logits)[0] < 1e-9
    grad = {v: np.asarray(jax.jit(jax.grad(_loss_fn(labels, v)))(logits)) for v in ssl.VARIANTS}
    np.testing.assert_array_equal(grad["stop_gradient"][0], 0.0)  # exactly 0 * dCE
    np.testing.assert_allclose(grad["product"][0], 0.0, atol=1e-7)  # float rounding of the symmetric centres
    assert np.abs(grad["report_only"][0]).max() > 1e-3  # plain CE still pushes image 0
    assert np.abs(grad["stop_gradient"][1]).max() > 1e-4 and np.abs(grad["product"][1]).max() > 1e-4


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="stop_gradient.*product.*report_only"):
        ssl.structure_sensitive_loss(jnp.ones(2), jnp.ones(2), "literal")
    with pytest.raises(ValueError, match="report_only"):
        ssl_weights(jnp.zeros((1, 4, 4), jnp.int32), jnp.zeros((1, 4, 4, LIP_NUM_CLASSES)), "nope")


def test_jit_static_shapes_and_no_recompilation():
    traces = []

    def step(labels, logits):
        traces.append(1)
        centers, visible = joint_centers(labels)
        heat = joint_heatmaps(centers, visible, 9, 9)
        multiplier, reported = ssl_weights(labels, logits, "product")
        return heat, multiplier, reported

    jitted = jax.jit(step)
    rng = np.random.default_rng(6)
    for _ in range(2):
        labels, logits = _batch(rng)
        heat, multiplier, reported = jitted(labels, logits)
        c, v = ssl_reference.joint_centers(np.asarray(labels))
        np.testing.assert_allclose(heat, ssl_reference.joint_heatmaps(c, v, 9, 9), atol=2e-6)
        np.testing.assert_allclose(
            reported, ssl_reference.joint_loss(labels, np.argmax(logits, -1)), rtol=1e-5
        )
        np.testing.assert_allclose(multiplier, soft_joint_loss(labels, logits), rtol=1e-5)
    assert len(traces) == 1
