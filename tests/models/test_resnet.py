"""ResNet trunk: shapes per output stride, dilation, BatchNorm modes, dtypes, names, parameter count."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.models import resnet

TINY = dict(stage_sizes=(1, 1, 1, 1), width=8)


def _shapes(model, size):
    x = jnp.zeros((2, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    out = jax.eval_shape(lambda v: model.apply(v, x), variables)
    return {k: v.shape for k, v in out.items()}


@pytest.mark.parametrize(
    "size, os_, expected",
    [
        # ceil(H / stride) at every stride-2 step: 65 -> 33 -> 17 -> 9 (Caffe's 321 -> 41 rule), 64 -> 32 -> 16 -> 8
        (65, 8, {"res2": 17, "res3": 9, "res4": 9, "res5": 9}),
        (65, 16, {"res2": 17, "res3": 9, "res4": 5, "res5": 5}),
        (65, 32, {"res2": 17, "res3": 9, "res4": 5, "res5": 3}),
        (64, 8, {"res2": 16, "res3": 8, "res4": 8, "res5": 8}),
        (64, 16, {"res2": 16, "res3": 8, "res4": 4, "res5": 4}),
    ],
)
def test_feature_shapes(size, os_, expected):
    shapes = _shapes(resnet.ResNet(**TINY, output_stride=os_), size)
    w = TINY["width"]
    channels = {"res2": 4 * w, "res3": 8 * w, "res4": 16 * w, "res5": 32 * w}
    assert shapes == {k: (2, expected[k], expected[k], channels[k]) for k in expected}


def test_a_stage_of_zero_blocks_passes_its_input_on():
    model = resnet.ResNet(**{**TINY, "stage_sizes": (1, 1, 1, 0)}, output_stride=8)
    x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
    variables = model.init(jax.random.key(1), x)
    features = model.apply(variables, x)
    assert "layer4" not in variables["params"]
    np.testing.assert_array_equal(features["res5"], features["res4"])


def test_full_resnet101_321_gives_41():
    shapes = _shapes(resnet.ResNet101(output_stride=8), 321)
    assert shapes["res5"] == (2, 41, 41, 2048)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="output_stride"):
        _shapes(resnet.ResNet(**TINY, output_stride=4), 64)
    with pytest.raises(ValueError, match="norm"):
        _shapes(resnet.ResNet(**TINY, norm="group"), 64)


def test_torchvision_names_and_hwio_kernels():
    model = resnet.ResNet(stage_sizes=(2, 1, 1, 1), width=8)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
    params = flax.traverse_util.flatten_dict(variables["params"], sep=".")
    assert params["conv1.kernel"].shape == (7, 7, 3, 8)
    assert params["bn1.scale"].shape == (8,)
    block = "layer1.block0."
    for name, shape in [
        ("conv1", (1, 1, 8, 8)),
        ("conv2", (3, 3, 8, 8)),
        ("conv3", (1, 1, 8, 32)),
        ("downsample_conv", (1, 1, 8, 32)),
    ]:
        assert params[block + name + ".kernel"].shape == shape
    for name in ["bn1", "bn2", "bn3", "downsample_bn"]:
        assert block + name + ".scale" in params and block + name + ".bias" in params
    assert "layer1.block1.conv1.kernel" in params and "layer1.block1.downsample_conv.kernel" not in params
    assert "layer4.block0.conv2.kernel" in params
    assert not any("conv" in k and k.endswith(".bias") for k in params)  # convs have no bias (BN follows)
    stats = flax.traverse_util.flatten_dict(variables["batch_stats"], sep=".")
    assert "layer2.block0.downsample_bn.mean" in stats and "layer2.block0.downsample_bn.var" in stats


def test_resnet101_parameter_count():
    """torchvision resnet101 has 44,549,160 parameters, of which the fc layer 2048 * 1000 + 1000."""
    variables = jax.eval_shape(lambda: resnet.ResNet101().init(jax.random.key(0), jnp.zeros((1, 65, 65, 3))))
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    assert count == 44_549_160 - 2_049_000


@pytest.mark.parametrize("stride_in_1x1, conv1_size, conv2_size", [(False, 16, 8), (True, 8, 8)])
def test_stride_position(stride_in_1x1, conv1_size, conv2_size, numpy_init):
    model = resnet.ResNet(**TINY, stride_in_1x1=stride_in_1x1)
    x = jnp.zeros((1, 64, 64, 3))
    variables = numpy_init(model, x)
    _, state = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))(
        variables, x
    )
    block = state["intermediates"]["layer2"]["block0"]
    assert block["conv1"]["__call__"][0].shape[1] == conv1_size
    assert block["conv2"]["__call__"][0].shape[1] == conv2_size


def _receptive_field(model, variables, size):
    """Width in input pixels of the region that the centre output pixel of res5 depends on."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, size, size, 3)), jnp.float32)

    def centre(x):
        res5 = model.apply(variables, x)["res5"]
        c = res5.shape[1] // 2
        return res5[0, c, c].sum()

    grad = np.asarray(jax.jit(jax.grad(centre))(x))
    cols = np.nonzero(np.abs(grad).sum(axis=(0, 1, 3)) > 0)[0]
    return cols.max() - cols.min() + 1


def test_dilation_keeps_receptive_field(numpy_init):
    """Removing the strides without dilation would shrink the receptive field (OS 8: 59 px, OS 16: 75 px for
    one block a stage); dilation keeps it at least as wide as the undilated OS-32 net (75 px)."""
    size = 129
    rf = {}
    for os_ in (32, 16, 8):
        model = resnet.ResNet(**TINY, output_stride=os_)
        variables = numpy_init(model, jnp.zeros((1, size, size, 3)))
        rf[os_] = _receptive_field(model, variables, size)
    # Analytic widths: OS 32 75 px; OS 16 107 px (res5 3x3 dilation 2 on the stride-16 grid); OS 8 123 px
    # (res4 dilation 2, res5 dilation 4 on the stride-8 grid). A dead ReLU at the rim may trim a few pixels.
    for os_, analytic in ((32, 75), (16, 107), (8, 123)):
        assert analytic - 4 <= rf[os_] <= analytic


@pytest.mark.parametrize("norm", ["frozen", "batch"])
def test_batchnorm_modes(norm, numpy_init):
    model = resnet.ResNet(**TINY, norm=norm)
    x = jnp.asarray(np.random.default_rng(0).normal(1.0, 3.0, (2, 64, 64, 3)), jnp.float32)
    variables = numpy_init(model, x)
    out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    changed = any(not np.array_equal(a, b) for a, b in zip(before, after))
    eval_out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    same_as_eval = np.allclose(out["res5"], eval_out["res5"])
    if norm == "frozen":
        assert not changed and same_as_eval
    else:
        assert changed and not same_as_eval


def test_bfloat16_compute_float32_params(numpy_init):
    model = resnet.ResNet(**TINY, dtype=jnp.bfloat16)
    x = jnp.zeros((1, 64, 64, 3))
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(abstract))
    out = jax.eval_shape(lambda v: model.apply(v, x), abstract)
    assert all(f.dtype == jnp.bfloat16 for f in out.values())
