"""The pose-guided synthesis networks (jhuman.models.unet / posewarp / discriminator): the U-Net against a plain
numpy forward pass (TF 'SAME' padding, stride-2 convs, the pose after the first downsampling, upsampling and
skips); the modular generator's outputs (shapes, ranges, masks summing to 1, the log prior in the mask logits,
the composite, the warped layers, the target pose used); the baseline; the discriminator; the input errors.
Tiny widths at 32-64 px, variables from numpy (conftest.numpy_init), every forward jitted once."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.models import discriminator, posewarp, unet
from jhuman.ops import warp

from .conftest import _numpy_init

SIZE = 64
WIDTH = 4

# A standing person in a 64x64 image (x, y), the reference joint order; the target moves the arms and shifts.
SOURCE_JOINTS = np.array(
    [[32, 8], [32, 14], [26, 15], [22, 24], [20, 32], [38, 15], [42, 24], [44, 32]]
    + [[28, 34], [27, 45], [27, 56], [36, 34], [37, 45], [37, 56]],
    np.float32,
)
TARGET_JOINTS = SOURCE_JOINTS.copy()
TARGET_JOINTS[3:5] = [[18, 14], [14, 6]]  # right arm raised
TARGET_JOINTS[6:8] = [[46, 20], [52, 24]]  # left arm out
TARGET_JOINTS += np.array([3.0, 1.0], np.float32)


def _inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    source = jnp.asarray(rng.uniform(-1, 1, (batch, SIZE, SIZE, 3)), jnp.float32)
    src = jnp.asarray(np.stack([SOURCE_JOINTS + i for i in range(batch)]))
    tgt = jnp.asarray(np.stack([TARGET_JOINTS - i for i in range(batch)]))
    return source, src, tgt


# ------------------------------------------------------------------------------------------------ numpy U-Net


def _np_conv(x, kernel, bias, stride=1):
    """TF 'SAME' cross-correlation (float64): output ceil(n / s), padding total (out - 1) s + k - n, the
    smaller half before."""
    k, n = kernel.shape[0], x.shape[1]
    out = -(-n // stride)
    total = max((out - 1) * stride + k - n, 0)
    lo = total // 2
    padded = np.pad(x, ((0, 0), (lo, total - lo), (lo, total - lo), (0, 0)))
    span = (out - 1) * stride + 1
    y = sum(
        padded[:, dy : dy + span : stride, dx : dx + span : stride] @ kernel[dy, dx]
        for dy in range(k)
        for dx in range(k)
    )
    return y + bias


def _np_lrelu(x):
    return np.where(x > 0, x, 0.2 * x)


def _np_up(x):
    """x2 along rows and columns: out[2k] = in[k], out[2k+1] = (in[k] + in[k+1]) / 2, the last one in[n-1]."""
    for axis in (1, 2):
        n = x.shape[axis]
        nxt = np.take(x, np.minimum(np.arange(n) + 1, n - 1), axis=axis)
        x = np.stack([x, 0.5 * (x + nxt)], axis=axis + 1).reshape(
            x.shape[:axis] + (2 * n,) + x.shape[axis + 1 :]
        )
    return x


def _np_unet(params, x, pose):
    p = {
        k: (np.asarray(v["kernel"], np.float64), np.asarray(v["bias"], np.float64)) for k, v in params.items()
    }
    conv = lambda x, name, stride=1: _np_lrelu(_np_conv(x, *p[name], stride))
    skips = [conv(x, "enc0")]  # 7x7 (the kernel's shape)
    x = conv(skips[0], "enc1", 2)
    skips.append(conv(np.concatenate([x, pose], -1), "enc2"))
    x = skips[-1]
    for level in range(1, 5):
        x = conv(conv(x, f"enc{2 * level + 1}", 2), f"enc{2 * level + 2}")
        skips.append(x)
    for i in range(5):
        x = conv(np.concatenate([_np_up(x), skips[-2 - i]], -1), f"dec{i}")
    return _np_conv(x, *p["head"])


def test_upsample2_vs_numpy():
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(unet.upsample2(jnp.asarray(x)), _np_up(x.astype(np.float64)), atol=1e-6)


def test_unet_matches_numpy(numpy_init):
    """Every conv, the 7x7 first one, the asymmetric 'SAME' padding of the stride-2 convs, LeakyReLU 0.2, the pose
    concatenated after enc1 (H/2), upsampling with the skips e8, e6, e4, e2, e0 and the linear head."""
    enc, dec = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13), (6, 5, 4, 3, 2)
    model = unet.UNet(5, enc, dec)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    pose = rng.uniform(size=(2, 16, 16, 7)).astype(np.float32)
    variables = numpy_init(model, x, pose, seed=2)
    params = {k: dict(v) for k, v in variables["params"].items()}
    assert sorted(params) == sorted([f"enc{i}" for i in range(11)] + [f"dec{i}" for i in range(5)] + ["head"])
    assert params["enc0"]["kernel"].shape == (7, 7, 3, 3)
    assert params["enc2"]["kernel"].shape == (3, 3, 4 + 7, 5)
    assert params["dec0"]["kernel"].shape == (3, 3, 13 + 11, 6)  # e10 upsampled + the e8 skip
    assert params["dec4"]["kernel"].shape == (3, 3, 3 + 3, 2)  # d3 + the e0 skip
    biased = {
        k: {"kernel": v["kernel"], "bias": jnp.asarray(rng.normal(0, 0.1, v["bias"].shape), jnp.float32)}
        for k, v in params.items()
    }
    out = jax.jit(model.apply)({"params": biased}, x, pose)
    assert out.shape == (2, 32, 32, 5) and out.dtype == jnp.float32
    expected = _np_unet(biased, x.astype(np.float64), pose.astype(np.float64))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_unet_errors():
    model = unet.UNet(3, (4,) * 11, (4,) * 5)
    with pytest.raises(ValueError, match="multiples of 32"):
        jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros((1, 48, 48, 3)), jnp.zeros((1, 24, 24, 14)))
        )
    with pytest.raises(ValueError, match=r"pose must be \(B, H/2, W/2, P\)"):
        jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 64, 64, 14)))
        )
    with pytest.raises(ValueError, match="11 encoder and 5 decoder widths"):
        bad = unet.UNet(3, (4,) * 10, (4,) * 5)
        jax.eval_shape(
            lambda: bad.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 32, 32, 14)))
        )


# ------------------------------------------------------------------------------------------------ the generator


@pytest.fixture(scope="module")
def modular():
    """(model, variables, inputs, outputs) of a width-4 ModularGenerator at 64x64, batch 2."""
    model = posewarp.ModularGenerator(width=WIDTH, image_size=SIZE)
    inputs = _inputs()
    variables = _numpy_init(model, *inputs, seed=3)
    apply = jax.jit(model.apply)
    return model, variables, inputs, apply, apply(variables, *inputs)


def test_modular_shapes_ranges_and_parameters(modular):
    model, variables, _, _, out = modular
    b, s = 2, SIZE
    expected = {
        "image": (b, s, s, 3),
        "fg": (b, s, s, 3),
        "bg": (b, s, s, 3),
        "target_mask": (b, s, s, 1),
        "masks": (b, s, s, 11),
        "warped": (b, s, s, 10, 3),
        "prior": (b, s, s, 11),
    }
    assert {k: v.shape for k, v in out.items()} == expected
    assert all(v.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(v))) for v in out.values())
    for key in ("image", "fg", "bg"):
        assert float(jnp.max(jnp.abs(out[key]))) <= 1.0
    assert 0.0 <= float(out["target_mask"].min()) and float(out["target_mask"].max()) <= 1.0
    assert float(out["masks"].min()) >= 0.0
    np.testing.assert_allclose(jnp.sum(out["masks"], -1), 1.0, atol=1e-5)

    params = variables["params"]
    assert sorted(params) == ["bg_net", "fg_net", "mask_net"]
    w = WIDTH
    assert params["mask_net"]["enc0"]["kernel"].shape == (7, 7, 3, w)
    assert params["mask_net"]["enc2"]["kernel"].shape == (3, 3, w + 14, 2 * w)  # source pose at H/2
    assert params["mask_net"]["dec4"]["kernel"].shape[-1] == w // 2
    assert params["mask_net"]["head"]["kernel"].shape[-1] == 11
    assert params["fg_net"]["enc0"]["kernel"].shape == (7, 7, 30, w)  # 10 warped RGB layers
    assert params["fg_net"]["dec4"]["kernel"].shape[-1] == w
    assert params["fg_net"]["head"]["kernel"].shape[-1] == 4  # RGB + target mask
    assert params["bg_net"]["enc0"]["kernel"].shape == (7, 7, 4, w)  # masked source + background mask
    assert params["bg_net"]["head"]["kernel"].shape[-1] == 3
    assert posewarp.modular_widths(64) == {
        "enc": (64, 64) + (128,) * 9,
        "mask_dec": (128,) * 4 + (32,),
        "dec": (128,) * 4 + (64,),
    }


def test_modular_composite_warp_and_prior(modular):
    """y = M_t y_fg + (1 - M_t) y_bg; the warped layers are warp_limbs of the source with the masks and the
    source -> target transforms; the prior is limb_prior of the source joints."""
    _, _, (source, src, tgt), _, out = modular
    m = out["target_mask"]
    np.testing.assert_allclose(out["image"], m * out["fg"] + (1 - m) * out["bg"], atol=1e-6)
    warped, prior = jax.jit(
        lambda source, masks, src, tgt: (
            warp.warp_limbs(source, masks, warp.limb_transforms(src, tgt)),
            warp.limb_prior(src, None, SIZE, SIZE, scale=SIZE / 256),
        )
    )(source, out["masks"], src, tgt)
    np.testing.assert_allclose(out["warped"], warped, atol=1e-5)
    np.testing.assert_allclose(out["prior"], prior, atol=1e-6)


def test_log_prior_enters_the_mask_logits(modular):
    """masks = softmax(mask_net logits + log(prior + 1e-10)): exactly, against the mask net applied alone; with
    a zero head the masks are the normalised prior; a channel whose prior is ~0 gets ~0 mass (the prior
    dominates logits of order 1)."""
    model, variables, (source, src, tgt), apply, out = modular
    pose = posewarp.pose_maps(src, jnp.ones(src.shape[:2], bool), SIZE, SIZE)
    mask_net = jax.jit(lambda v, x, p: model.apply(v, x, p, method=lambda m, x, p: m.mask_net(x, p)))
    logits = mask_net(variables, source, pose)
    prior = np.asarray(out["prior"], np.float64)
    expected = jax.nn.softmax(np.asarray(logits, np.float64) + np.log(prior + 1e-10), axis=-1)
    np.testing.assert_allclose(out["masks"], expected, atol=1e-5)
    assert float(jnp.max(jnp.abs(logits))) < 20  # logits of order 1..10 ...
    far = prior < 1e-12
    assert far.any() and float(np.max(np.asarray(out["masks"])[far])) < 1e-2  # ... do not beat log(1e-10)

    zero = jax.tree.map(lambda x: x, flax.core.unfreeze(variables))
    zero["params"]["mask_net"]["head"] = jax.tree.map(jnp.zeros_like, zero["params"]["mask_net"]["head"])
    masks = apply(zero, source, src, tgt)["masks"]
    np.testing.assert_allclose(masks, (prior + 1e-10) / np.sum(prior + 1e-10, -1, keepdims=True), atol=1e-6)


def test_modular_uses_the_target_pose_and_visibility(modular):
    _, variables, (source, src, tgt), apply, out = modular
    moved = apply(variables, source, src, tgt + 4.0)
    assert float(jnp.max(jnp.abs(moved["image"] - out["image"]))) > 1e-3
    np.testing.assert_allclose(moved["masks"], out["masks"], atol=1e-6)  # the source side is unchanged
    visible = jnp.ones((2, 14), bool)
    np.testing.assert_allclose(
        apply(variables, source, src, tgt, visible, visible)["image"], out["image"], atol=1e-6
    )
    hidden = visible.at[:, 4].set(False)  # the right wrist missing in the target
    assert (
        float(jnp.max(jnp.abs(apply(variables, source, src, tgt, visible, hidden)["image"] - out["image"])))
        > 0
    )


def test_generator_input_errors():
    source, src, tgt = _inputs(1)
    model = posewarp.ModularGenerator(width=WIDTH, image_size=128)
    with pytest.raises(ValueError, match="built for 128x128 images, got 64x64"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), source, src, tgt))
    with pytest.raises(ValueError, match=r"target_joints must be \(B, 14, 2\)"):
        jax.eval_shape(
            lambda: posewarp.UNetBaseline(width=WIDTH).init(jax.random.key(0), source, src, tgt[:, :13])
        )
    with pytest.raises(ValueError, match="multiples of 32"):
        jax.eval_shape(
            lambda: posewarp.UNetBaseline(width=WIDTH).init(jax.random.key(0), source[:, :48], src, tgt)
        )


def test_baseline(numpy_init):
    """One U-Net 'net' on the source with both poses (28 channels at H/2), the released widths, tanh output."""
    model = posewarp.UNetBaseline(width=WIDTH)
    inputs = _inputs()
    variables = numpy_init(model, *inputs, seed=4)
    params = variables["params"]["net"]
    w = WIDTH
    assert params["enc0"]["kernel"].shape == (7, 7, 3, w)
    assert params["enc2"]["kernel"].shape == (3, 3, 2 * w + 28, 2 * w)
    assert [params[f"enc{i}"]["kernel"].shape[-1] for i in range(11)] == [w] + [2 * w] * 3 + [4 * w] * 7
    assert [params[f"dec{i}"]["kernel"].shape[-1] for i in range(5)] == [4 * w] * 3 + [2 * w, w]
    apply = jax.jit(model.apply)
    out = apply(variables, *inputs)
    assert list(out) == ["image"] and out["image"].shape == (2, SIZE, SIZE, 3)
    assert float(jnp.max(jnp.abs(out["image"]))) <= 1.0
    source, src, tgt = inputs
    assert float(jnp.max(jnp.abs(apply(variables, source, src, tgt + 4.0)["image"] - out["image"]))) > 1e-4


# ------------------------------------------------------------------------------------------------ discriminator


def test_discriminator(numpy_init):
    """5x5, 5x5, then 3x3 convs with 2x2 max pooling, both poses (28 channels) concatenated at H/2, two FC
    layers of 4 width, one logit per image (no sigmoid); both poses change it."""
    model = discriminator.Discriminator(width=WIDTH)
    image, src, tgt = _inputs()
    variables = numpy_init(model, image, src, tgt, seed=5)
    params = variables["params"]
    w = WIDTH
    assert params["conv1"]["kernel"].shape == (5, 5, 3, w)
    assert params["conv2"]["kernel"].shape == (5, 5, w + 28, 2 * w)
    assert [params[f"conv{i}"]["kernel"].shape[:2] for i in range(3, 7)] == [(3, 3)] * 4
    assert params["fc1"]["kernel"].shape == ((SIZE // 32) ** 2 * 4 * w, 4 * w)
    assert params["fc2"]["kernel"].shape == (4 * w, 4 * w) and params["out"]["kernel"].shape == (4 * w, 1)
    apply = jax.jit(model.apply)
    logits = apply(variables, image, src, tgt)
    assert logits.shape == (2, 1) and logits.dtype == jnp.float32
    # large input -> logits outside (0, 1): the output is not a probability
    big = apply(jax.tree.map(lambda x: 10 * x, variables), image, src, tgt)
    assert float(jnp.max(jnp.abs(big))) > 1.0
    assert float(jnp.max(jnp.abs(apply(variables, image, src, tgt + 4.0) - logits))) > 0
    assert float(jnp.max(jnp.abs(apply(variables, image, src + 4.0, tgt) - logits))) > 0
    with pytest.raises(ValueError, match="multiples of 32"):
        model.apply(variables, image[:, :40], src, tgt)
