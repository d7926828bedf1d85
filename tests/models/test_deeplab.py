"""DeepLab-v2: logits shapes and dtypes, ASPP = sum of branches, frozen BN, config errors, shared weights
across scales, the parameter counts of the published models (by jax.eval_shape: no memory, no FLOPs), and the
stride-4 decoder (Refine) against numpy."""

import re

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.models.deeplab import ASPP, CLASSIFIER_PATTERN, AttentionToScale, DeepLab, build_deeplab
from jhuman.ops import image as image_ops

TINY_RESNET = dict(backbone="resnet50", width=8, num_classes=20)
TINY_VGG = dict(backbone="vgg16", width=8, fc_width=16, num_classes=20)


def _abstract(model, x, **kwargs):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, **kwargs))
    return variables, jax.eval_shape(lambda v: model.apply(v, x, **kwargs), variables)


def _count(tree):
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


@pytest.mark.parametrize(
    "config, size, os_, out, feature_channels",
    [
        (dict(TINY_RESNET, output_stride=8), 65, 8, 9, 256),
        (dict(TINY_RESNET, output_stride=8), 64, 8, 8, 256),
        (dict(TINY_RESNET, output_stride=16), 65, 16, 5, 256),
        (dict(TINY_RESNET, output_stride=16), 64, 16, 4, 256),
        (TINY_VGG, 65, 8, 9, 16),
        (TINY_VGG, 64, 8, 8, 16),
    ],
)
def test_logits_and_features_shapes(config, size, os_, out, feature_channels):
    _, outputs = _abstract(DeepLab(**config), jnp.zeros((2, size, size, 3)))
    assert outputs["logits"].shape == (2, out, out, 20)
    assert outputs["logits"].dtype == jnp.float32
    assert outputs["features"].shape == (2, out, out, feature_channels)


@pytest.mark.parametrize("config", [TINY_RESNET, TINY_VGG])
def test_bfloat16_compute_keeps_float32_params_and_logits(config):
    variables, outputs = _abstract(DeepLab(**config, dtype=jnp.bfloat16), jnp.zeros((1, 64, 64, 3)))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    assert outputs["logits"].dtype == jnp.float32
    assert outputs["features"].dtype == jnp.bfloat16


def test_aspp_is_the_sum_of_its_branches():
    rates = (1, 2, 3, 4)
    head = ASPP(num_classes=5, rates=rates)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 6)), jnp.float32)
    params = head.init(jax.random.key(0), x)["params"]
    assert sorted(params) == ["branch0", "branch1", "branch2", "branch3"]
    total = 0
    for i, rate in enumerate(rates):
        conv = nn.Conv(5, (3, 3), padding=((rate, rate), (rate, rate)), kernel_dilation=(rate, rate))
        branch = conv.apply({"params": params[f"branch{i}"]}, x)
        assert branch.shape == (2, 9, 9, 5)
        total = total + branch
    np.testing.assert_allclose(head.apply({"params": params}, x), total, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm, updates_stats", [("frozen", False), ("batch", True)])
def test_frozen_batchnorm(norm, updates_stats, numpy_init):
    model = DeepLab(**TINY_RESNET, norm=norm)
    x = jnp.asarray(np.random.default_rng(0).normal(1.0, 2.0, (2, 33, 33, 3)), jnp.float32)
    variables = numpy_init(model, x)
    _, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    changed = jax.tree.map(
        lambda a, b: not np.array_equal(a, b), variables["batch_stats"], state["batch_stats"]
    )
    assert any(jax.tree.leaves(changed)) == updates_stats


def test_classifier_path_regex_selects_only_the_head():
    variables, _ = _abstract(DeepLab(**TINY_RESNET), jnp.zeros((1, 33, 33, 3)))
    paths = list(flax.traverse_util.flatten_dict(variables["params"], sep="/"))
    head = [p for p in paths if re.search(CLASSIFIER_PATTERN, p)]
    assert sorted(head) == sorted(f"classifier/branch{i}/{n}" for i in range(4) for n in ("kernel", "bias"))
    assert all(p.startswith("trunk/") for p in paths if p not in head)
    variables, _ = _abstract(DeepLab(**TINY_VGG), jnp.zeros((1, 33, 33, 3)))
    assert sorted(variables["params"]["classifier"]) == ["fc8"]


def test_wrapper_calling_on_several_scales_shares_weights():
    """What Attention-to-Scale will do: one DeepLab submodule called per scale, one set of weights."""

    class MultiScale(nn.Module):
        @nn.compact
        def __call__(self, images):
            deeplab = DeepLab(**TINY_VGG, name="deeplab")
            return [deeplab(jax.image.resize(images, (1, s, s, 3), "bilinear")) for s in (65, 49, 33)]

    x = jnp.zeros((1, 65, 65, 3))
    variables, outputs = _abstract(MultiScale(), x)
    single, _ = _abstract(DeepLab(**TINY_VGG), x)
    assert _count(variables) == _count(single)
    assert [o["logits"].shape[1] for o in outputs] == [9, 7, 5]
    assert [o["features"].shape[-1] for o in outputs] == [16, 16, 16]


def test_published_parameter_counts():
    """ResNet-101 DeepLab-v2 (ASPP, 21 classes): torchvision resnet101 without fc (42,500,160) + four 3x3
    2048->21 convs with bias (1,548,372) = 44,048,532. VGG-16 LargeFOV (21 classes): 20,505,429 (20.5 M)."""
    x = jnp.zeros((1, 65, 65, 3))
    resnet101, _ = _abstract(DeepLab(backbone="resnet101", num_classes=21), x)
    assert _count(resnet101["params"]["trunk"]) == 42_500_160
    assert _count(resnet101["params"]["classifier"]) == 4 * (3 * 3 * 2048 * 21 + 21)
    assert _count(resnet101["params"]) == 44_048_532
    largefov, _ = _abstract(DeepLab(backbone="vgg16", num_classes=21), x)
    assert _count(largefov["params"]) == 20_505_429
    assert abs(_count(largefov["params"]) / 20.5e6 - 1) < 0.01


def test_unknown_names_raise_listing_valid_ones():
    with pytest.raises(ValueError, match=r"resnet101.*vgg16|vgg16.*resnet101"):
        DeepLab(backbone="resnet18")
    with pytest.raises(ValueError, match="aspp"):
        DeepLab(head="psp")
    with pytest.raises(ValueError, match="output_stride"):
        DeepLab(backbone="vgg16", output_stride=16)
    with pytest.raises(ValueError, match="norm"):
        DeepLab(norm="group")
    with pytest.raises(ValueError, match="backbone"):
        build_deeplab(backbon="vgg16")


def test_build_from_config_values():
    model = build_deeplab(backbone="resnet50", width=8, rates=[6, 12], dtype="bfloat16", head="largefov")
    assert model.rates == (6, 12) and model.dtype == jnp.bfloat16 and model.head_name == "largefov"
    _, outputs = _abstract(model, jnp.zeros((1, 64, 64, 3)))
    assert outputs["logits"].shape == (1, 8, 8, 20) and outputs["logits"].dtype == jnp.float32
    assert DeepLab(backbone="vgg16").head_name == "largefov" and DeepLab().head_name == "aspp"


def test_stage_sizes_override_for_tiny_resnets():
    model = build_deeplab(backbone="resnet101", width=8, stage_sizes=[1, 1, 2, 1])
    variables, outputs = _abstract(model, jnp.zeros((1, 65, 65, 3)))
    assert sorted(variables["params"]["trunk"]["layer3"]) == ["block0", "block1"]
    assert outputs["logits"].shape == (1, 9, 9, 20)
    with pytest.raises(ValueError, match="stage_sizes"):
        DeepLab(backbone="vgg16", stage_sizes=(1, 1, 1, 1))


def _numpy_conv(x, kernel, bias):
    """'SAME' stride-1 convolution in plain numpy: (B, H, W, I) x (k, k, I, O) -> (B, H, W, O)."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    out = sum(
        np.einsum("bhwi,io->bhwo", padded[:, i : i + height, j : j + width], kernel[i, j])
        for i in range(k)
        for j in range(k)
    )
    return out + bias


def _numpy_bilinear_half_steps(x, out_size):
    """Upsample (B, h, w, C) to out_size by 2 with output pixel j reading input coordinate min(j / 2, h - 1)."""

    def axis(n_in):
        src = np.minimum(np.arange(out_size) / 2.0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    lo, hi, f = axis(x.shape[1])
    x = x[:, lo] * (1 - f)[None, :, None, None] + x[:, hi] * f[None, :, None, None]
    lo, hi, f = axis(x.shape[2])
    return x[:, :, lo] * (1 - f)[None, None, :, None] + x[:, :, hi] * f[None, None, :, None]


def test_decoder_refines_the_logits_on_the_res2_grid(numpy_init):
    model = DeepLab(**TINY_RESNET, decoder=8)
    assert model.logit_stride == 4 and DeepLab(**TINY_RESNET).logit_stride == 8
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 64, 3)), jnp.float32)
    variables = numpy_init(model, x)
    refine = variables["params"]["refine"]
    assert sorted(refine) == ["fuse", "out", "project"]
    out = jax.jit(model.apply)(variables, x)
    assert out["logits"].shape == (2, 16, 16, 20) and out["features"].shape == (2, 8, 8, 256)

    def parts(m, x):
        maps = m.trunk(x)
        return maps["res2"], m.classifier(maps["res5"])

    res2, coarse = (np.asarray(a, np.float64) for a in model.apply(variables, x, method=parts))
    assert res2.shape == (2, 16, 16, 32) and coarse.shape == (2, 8, 8, 20)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), refine)
    up = _numpy_bilinear_half_steps(coarse, 16)  # logit i at input pixel 8i, res2 pixel j at 4j
    skip = np.maximum(_numpy_conv(res2, p["project"]["kernel"], p["project"]["bias"]), 0)
    hidden = np.maximum(
        _numpy_conv(np.concatenate([up, skip], -1), p["fuse"]["kernel"], p["fuse"]["bias"]), 0
    )
    expected = up + _numpy_conv(hidden, p["out"]["kernel"], p["out"]["bias"])
    scale = np.abs(expected).max()  # float32 sums of ~1e3-sized terms: an absolute tolerance on that scale
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-6 * scale)
    assert not np.allclose(expected, up, atol=1e-3 * scale)  # the correction is not nothing here

    # A new decoder starts as the plain upsampled logits (its last conv is initialised at zero).
    fresh = model.init(jax.random.key(1), x)
    np.testing.assert_array_equal(fresh["params"]["refine"]["out"]["kernel"], 0.0)
    plain = model.apply(fresh, x, method=parts)[1]
    np.testing.assert_allclose(
        model.apply(fresh, x)["logits"],
        image_ops.upsample_aligned(plain, (16, 16), 2.0),
        rtol=1e-5,
        atol=1e-5,
    )


def test_attention_over_a_decoder_deeplab_fuses_on_the_stride_4_grid():
    model = AttentionToScale(base=dict(TINY_RESNET, decoder=8), attention_width=8)
    _, outputs = _abstract(model, jnp.zeros((1, 64, 64, 3)), train=False)
    assert outputs["logits"].shape == (1, 16, 16, 20) and outputs["attention"].shape == (1, 16, 16, 3)
    assert outputs["scale_logits"].shape == (3, 1, 16, 16, 20)


def test_decoder_needs_a_resnet_trunk():
    with pytest.raises(ValueError, match="decoder"):
        DeepLab(**TINY_VGG, decoder=8)
    with pytest.raises(ValueError, match="decoder"):
        DeepLab(**TINY_RESNET, decoder=-1)
