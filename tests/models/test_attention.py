"""Attention-to-Scale: shapes for both trunks, one shared DeepLab, attention = softmax over scales, fused logits
= weighted sum of the per-scale logits, each per-scale map = the shared DeepLab on the resized input (checked
against an independent numpy resize), single scale = plain DeepLab, bfloat16, builders and config errors.

Shape and dtype tests use jax.eval_shape (no compile); the numerical ones share one compiled tiny VGG run."""

import functools
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.models.deeplab import (
    ATTENTION_PATTERN,
    CLASSIFIER_PATTERN,
    AttentionToScale,
    DeepLab,
    build_attention,
    build_deeplab,
    build_model,
)
from jhuman.ops.image import resize_bilinear, scaled_size

TINY_VGG = dict(backbone="vgg16", width=8, fc_width=16, num_classes=20)
TINY_RESNET = dict(backbone="resnet50", width=8, stage_sizes=(1, 1, 1, 1), num_classes=20)
SCALES = (1.0, 0.75, 0.5)
SIZE = 64


def _abstract(model, x, **kwargs):
    variables = jax.eval_shape(
        lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x)
    )
    return variables, jax.eval_shape(lambda v: model.apply(v, x, **kwargs), variables)


def _count(tree):
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


def _np_resize(x, size):
    """Independent reference: bilinear with aligned corners as two passes of np.interp (Caffe Interp)."""
    x = np.asarray(x, np.float64)
    for axis, out in ((1, size[0]), (2, size[1])):
        n = x.shape[axis]
        if out == n:
            continue
        where = np.linspace(0.0, n - 1, out) if out > 1 else np.zeros(1)
        x = np.apply_along_axis(lambda v: np.interp(where, np.arange(n), v), axis, x)
    return x


def _images(batch=2, size=SIZE, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(0.0, 1.0, (batch, size, size, 3)), jnp.float32)


@functools.lru_cache(maxsize=None)
def _vgg_run(numpy_init):
    """One compiled run of a tiny VGG Attention-to-Scale on 64x64 inputs, shared by the numerical tests."""
    model = AttentionToScale(base=TINY_VGG, scales=SCALES, attention_width=8)
    x = _images()
    variables = numpy_init(model, x)
    out = jax.jit(model.apply)(variables, x)
    return model, variables, x, jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("deeplab, channels", [(TINY_VGG, 16), (TINY_RESNET, 256)])
def test_output_shapes_and_param_tree_for_both_trunks(deeplab, channels):
    model = AttentionToScale(base=deeplab, scales=SCALES, attention_width=8)
    x = jnp.zeros((2, SIZE, SIZE, 3))
    variables, out = _abstract(model, x)
    assert out["logits"].shape == (2, 8, 8, 20) and out["logits"].dtype == jnp.float32
    assert out["scale_logits"].shape == (3, 2, 8, 8, 20) and out["scale_logits"].dtype == jnp.float32
    assert out["attention"].shape == (2, 8, 8, 3) and out["attention"].dtype == jnp.float32
    assert out["features"].shape == (2, 8, 8, channels)
    # exactly one DeepLab ('net', the same tree as a plain DeepLab) + the attention branch
    params = variables["params"]
    assert sorted(params) == ["attention", "net"]
    single, _ = _abstract(DeepLab(**deeplab), x)
    assert jax.tree.structure(params["net"]) == jax.tree.structure(single["params"])
    assert _count(params["net"]) == _count(single["params"])
    assert jax.tree.map(lambda p: p.shape, params["attention"]) == {
        "conv1": {"kernel": (3, 3, 3 * channels, 8), "bias": (8,)},
        "conv2": {"kernel": (1, 1, 8, 3), "bias": (3,)},
    }
    # training mode (dropout in the trunk and in the attention branch) keeps the shapes
    _, train_out = _abstract(model, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert train_out["logits"].shape == (2, 8, 8, 20)


def test_path_regexes_select_the_heads():
    variables, _ = _abstract(AttentionToScale(base=TINY_RESNET, attention_width=8), jnp.zeros((1, 33, 33, 3)))
    paths = list(flax.traverse_util.flatten_dict(variables["params"], sep="/"))
    attention = [p for p in paths if re.search(ATTENTION_PATTERN, p)]
    classifier = [p for p in paths if re.search(CLASSIFIER_PATTERN, p)]
    assert sorted(attention) == [
        "attention/conv1/bias",
        "attention/conv1/kernel",
        "attention/conv2/bias",
        "attention/conv2/kernel",
    ]
    assert sorted(classifier) == sorted(
        f"net/classifier/branch{i}/{n}" for i in range(4) for n in ("kernel", "bias")
    )
    assert all(p.startswith("net/trunk/") for p in paths if p not in attention + classifier)
    assert all(re.search(ATTENTION_PATTERN, "net/" + p) for p in attention)  # under the task's ParsingNet


def test_scaled_sizes_follow_caffe_interp():
    assert [scaled_size(321, s) for s in SCALES] == [321, 241, 161]  # logits 41 / 31 / 21, as published
    assert [scaled_size(SIZE, s) for s in SCALES] == [64, 48, 32]
    assert scaled_size(65, 0.75) == 49 and scaled_size(64, 1.25) == 79 and scaled_size(5, 0.01) == 1


def test_resize_helper_geometry():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9, 7, 3)), jnp.float32)
    np.testing.assert_allclose(resize_bilinear(x, (5, 13)), _np_resize(x, (5, 13)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resize_bilinear(x, (5, 4)), x[:, ::2, ::2], rtol=1e-6, atol=1e-6)
    assert resize_bilinear(x, (9, 7)) is not None and np.array_equal(resize_bilinear(x, (9, 7)), x)
    ramp = jnp.arange(4.0).reshape(1, 4, 1, 1) * jnp.ones((1, 1, 2, 1))
    np.testing.assert_allclose(resize_bilinear(ramp, (2, 2))[0, :, 0, 0], [0.0, 3.0])  # corners aligned
    np.testing.assert_allclose(resize_bilinear(ramp, (2, 2), "half_pixel")[0, :, 0, 0], [0.5, 2.5])
    with pytest.raises(ValueError, match="align_corners"):
        resize_bilinear(x, (3, 3), "nearest")


def test_attention_is_a_softmax_over_scales_and_fuses_the_scale_logits(numpy_init):
    _, _, _, out = _vgg_run(numpy_init)
    attention = out["attention"]
    assert np.all(attention >= 0) and np.all(attention <= 1)
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-6, atol=1e-6)
    assert attention.std(axis=(0, 1, 2)).max() > 1e-3  # the weights do vary over pixels: a real test below
    fused = np.einsum(
        "bhws,sbhwc->bhwc", attention.astype(np.float64), out["scale_logits"].astype(np.float64)
    )
    np.testing.assert_allclose(out["logits"], fused, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out["logits"], out["scale_logits"].mean(0), atol=1e-3)  # not a plain average


def test_scale_logits_are_the_shared_deeplab_on_the_resized_input(numpy_init):
    model, variables, x, out = _vgg_run(numpy_init)
    deeplab = DeepLab(**TINY_VGG)
    net = {"params": variables["params"]["net"]}
    sizes = [scaled_size(SIZE, s) for s in SCALES]
    resized = [jnp.asarray(_np_resize(x, (n, n)), jnp.float32) for n in sizes]
    manual = jax.jit(lambda v, xs: [deeplab.apply(v, xi) for xi in xs])(net, resized)
    assert [m["logits"].shape[1] for m in manual] == [8, 6, 4]
    for i, m in enumerate(manual):
        expected = _np_resize(m["logits"], (8, 8))
        np.testing.assert_allclose(out["scale_logits"][i], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["features"], manual[0]["features"], rtol=1e-5, atol=1e-5)
    # scale 1 runs on the input untouched: the plain DeepLab's logits
    np.testing.assert_allclose(out["scale_logits"][0], manual[0]["logits"], rtol=1e-5, atol=1e-5)


def test_single_scale_is_the_plain_deeplab(numpy_init):
    _, variables, x, out = _vgg_run(numpy_init)
    single = AttentionToScale(base=TINY_VGG, scales=(1.0,), attention_width=8)
    attention_params = numpy_init(single, x, seed=3)["params"]["attention"]
    params = {"net": variables["params"]["net"], "attention": attention_params}
    got = jax.jit(single.apply)({"params": params}, x)
    np.testing.assert_array_equal(got["attention"], 1.0)
    np.testing.assert_allclose(got["logits"], out["scale_logits"][0], rtol=1e-5, atol=1e-5)
    plain = jax.jit(DeepLab(**TINY_VGG).apply)({"params": variables["params"]["net"]}, x)
    np.testing.assert_allclose(got["logits"], plain["logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("deeplab", [TINY_VGG, TINY_RESNET])
def test_bfloat16_compute_keeps_float32_params_and_outputs(deeplab):
    model = build_attention(**deeplab, attention_width=8, dtype="bfloat16")
    assert model.dtype == jnp.bfloat16 and model.base.dtype == jnp.bfloat16
    variables, out = _abstract(model, jnp.zeros((1, SIZE, SIZE, 3)))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    for key in ("logits", "scale_logits", "attention"):
        assert out[key].dtype == jnp.float32, key
    assert out["features"].dtype == jnp.bfloat16


def test_first_scale_defines_the_output_grid_and_any_scales_work():
    x = jnp.zeros((1, SIZE, SIZE, 3))
    _, out = _abstract(AttentionToScale(base=TINY_VGG, scales=(0.5, 1.0), attention_width=8), x)
    assert out["logits"].shape == (1, 4, 4, 20) and out["scale_logits"].shape == (2, 1, 4, 4, 20)
    assert out["features"].shape == (1, 4, 4, 16)
    _, out = _abstract(AttentionToScale(base=TINY_VGG, scales=(1.0, 1.25, 0.75, 0.5), attention_width=8), x)
    assert out["scale_logits"].shape == (4, 1, 8, 8, 20) and out["attention"].shape == (1, 8, 8, 4)
    _, out = _abstract(AttentionToScale(base=TINY_VGG, interpolation="half_pixel", attention_width=8), x)
    assert out["logits"].shape == (1, 8, 8, 20)


def test_base_as_module_or_mapping_gives_the_same_model():
    x = jnp.zeros((1, 33, 33, 3))
    from_dict, _ = _abstract(AttentionToScale(base=TINY_VGG, attention_width=8), x)
    from_module, _ = _abstract(AttentionToScale(base=DeepLab(**TINY_VGG), attention_width=8), x)
    assert jax.tree.map(lambda p: p.shape, from_dict) == jax.tree.map(lambda p: p.shape, from_module)


def test_builders_from_config_values():
    model = build_model(
        "attention",
        backbone="vgg16",
        width=8,
        fc_width=16,
        scales=[1, 0.75],
        attention_width=8,
        dtype="bfloat16",
        base={"dropout_rate": 0.3},
    )
    assert model.scales == (1.0, 0.75) and model.dtype == jnp.bfloat16
    assert model.base.backbone == "vgg16" and model.base.dropout_rate == 0.3 and model.dropout_rate == 0.5
    _, out = _abstract(model, jnp.zeros((1, SIZE, SIZE, 3)))
    assert out["scale_logits"].shape == (2, 1, 8, 8, 20)
    base = DeepLab(**TINY_VGG)
    assert build_attention(base=base, scales=(1.0,)).base is base
    deeplab = build_model("deeplab", backbone="resnet50", rates=[6, 12])
    assert deeplab == build_deeplab(backbone="resnet50", rates=[6, 12]) and deeplab.rates == (6, 12)


def test_config_errors_list_the_valid_options():
    with pytest.raises(ValueError, match=r"attention_width.*backbone|backbone.*attention_width"):
        build_attention(attention_widht=8)
    with pytest.raises(ValueError, match=r"attention.*deeplab|deeplab.*attention"):
        build_model("pspnet")
    with pytest.raises(ValueError, match="backbone"):
        AttentionToScale(base={"backbon": "vgg16"})
    with pytest.raises(ValueError, match="resnet101"):
        AttentionToScale(base={"backbone": "resnet18"})
    with pytest.raises(ValueError, match="base"):
        AttentionToScale(base="vgg16")
    with pytest.raises(ValueError, match="both"):
        build_attention(base={"width": 8}, width=16)
    with pytest.raises(ValueError, match="DeepLab module"):
        build_attention(base=DeepLab(), width=16)
    for scales in ((), (1.0, 0.0), (1.0, -0.5), ("a",)):
        with pytest.raises(ValueError, match="scales"):
            AttentionToScale(scales=scales)
    with pytest.raises(ValueError, match="half_pixel"):
        AttentionToScale(interpolation="bicubic")
