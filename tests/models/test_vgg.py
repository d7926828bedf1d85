"""VGG trunks. Plain VGG-16/19: names, parameter counts, strides, last_layer, pooling, input channels.
VGG-16 LargeFOV: output stride 8, names, parameter count, dropout, dilated receptive field. (Numerics against
torch / numpy / Keras forward passes: tests/test_weights*.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.models import vgg

TINY = dict(width=8, fc_width=16)


def _abstract(model, x):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    return variables, jax.eval_shape(lambda v: model.apply(v, x), variables)


@pytest.mark.parametrize("size, out", [(65, 9), (64, 8), (321, 41)])
def test_output_stride_8(size, out):
    _, features = _abstract(vgg.VGG16LargeFOV(**TINY), jnp.zeros((2, size, size, 3)))
    assert features["fc7"].shape == (2, out, out, 16)
    assert features["fc6"].shape == (2, out, out, 16)
    assert features["conv1_2"].shape == (2, size, size, 8)
    assert features["conv5_3"].shape == (2, out, out, 64)


def test_names_and_parameter_count():
    """conv1_1..conv5_3 hold torchvision vgg16.features' 14,714,688 parameters; fc6 3x3x512x1024 and fc7
    1x1x1024x1024 (with biases) complete the 20.5 M of DeepLab-LargeFOV (with fc8)."""
    variables, _ = _abstract(vgg.VGG16LargeFOV(), jnp.zeros((1, 65, 65, 3)))
    params = variables["params"]
    convs = [f"conv{b}_{k}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for k in range(1, n + 1)]
    assert list(params) == convs + ["fc6", "fc7"]
    count = lambda tree: sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))
    assert count({k: params[k] for k in convs}) == 14_714_688
    assert params["fc6"]["kernel"].shape == (3, 3, 512, 1024)
    assert params["fc7"]["kernel"].shape == (1, 1, 1024, 1024)
    assert count(params) == 14_714_688 + (9 * 512 * 1024 + 1024) + (1024 * 1024 + 1024)


def test_dropout_only_in_training(numpy_init):
    model = vgg.VGG16LargeFOV(**TINY)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 33, 33, 3)), jnp.float32)
    variables = numpy_init(model, x)
    apply = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={"dropout": key})["fc7"])
    a = apply(variables, x, jax.random.key(1))
    b = apply(variables, x, jax.random.key(2))
    assert not np.allclose(a, b)
    evaluate = jax.jit(lambda v, x: model.apply(v, x)["fc7"])
    np.testing.assert_array_equal(evaluate(variables, x), evaluate(variables, x))


def test_dilation_widens_receptive_field(numpy_init):
    """Without dilation (conv5 rate 2, fc6 rate 12) one fc7 pixel would see 195 px; with it 419 px, so the
    centre pixel of a 257 px input sees the whole input."""
    size = 257
    model = vgg.VGG16LargeFOV(width=4, fc_width=8)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, size, size, 3)), jnp.float32)
    variables = numpy_init(model, x)

    def centre(x):
        fc7 = model.apply(variables, x)["fc7"]  # (1, 33, 33, 8)
        return fc7[0, 16, 16].sum()

    grad = np.abs(np.asarray(jax.jit(jax.grad(centre))(x))).sum(axis=(0, 1, 3))
    cols = np.nonzero(grad)[0]
    assert cols.max() - cols.min() + 1 > 240


def test_bfloat16_compute_float32_params():
    variables, features = _abstract(vgg.VGG16LargeFOV(**TINY, dtype=jnp.bfloat16), jnp.zeros((1, 65, 65, 3)))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    assert features["fc7"].dtype == jnp.bfloat16


def test_fc_width_follows_width_by_default():
    _, features = _abstract(vgg.VGG16LargeFOV(width=8), jnp.zeros((1, 33, 33, 3)))
    assert features["fc7"].shape == (1, 5, 5, 128)


# ---------------------------------------------------------------------------------------- plain VGG-16 / VGG-19


def test_vgg19_names_strides_and_parameter_count():
    """conv1_1 .. conv5_4 (16 convs) hold torchvision vgg19.features' 20,024,384 parameters; block b runs at
    stride 2^(b-1) with floor pooling (36 -> 18 -> 9 -> 4 -> 2)."""
    variables, features = _abstract(vgg.VGG19(), jnp.zeros((1, 36, 36, 3)))
    names = [f"conv{b}_{k}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for k in range(1, n + 1)]
    assert list(variables["params"]) == names == list(features) == vgg.conv_names(vgg.VGG19_BLOCKS)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables)) == 20_024_384
    sizes = {1: 36, 2: 18, 3: 9, 4: 4, 5: 2}
    widths = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
    for name in names:
        block = int(name[4])
        assert features[name].shape == (1, sizes[block], sizes[block], widths[block]), name


def test_vgg16_plain_parameter_count():
    variables, features = _abstract(vgg.VGG16(), jnp.zeros((1, 32, 32, 3)))
    assert list(features) == vgg.conv_names(vgg.VGG16_BLOCKS) and len(features) == 13
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables)) == 14_714_688


def test_last_layer_stops_early():
    """last_layer='conv4_4' (the perceptual loss): the 12 layers conv1_1 .. conv4_4, no conv5 parameters."""
    variables, features = _abstract(vgg.VGG19(width=8, last_layer="conv4_4"), jnp.zeros((2, 32, 32, 3)))
    assert list(features) == vgg.conv_names(vgg.VGG19_BLOCKS)[:12]
    assert list(variables["params"]) == list(features)
    assert features["conv4_4"].shape == (2, 4, 4, 64)
    with pytest.raises(ValueError, match=r"last_layer='conv5_4' is not a layer.*conv5_3"):
        _abstract(vgg.VGG16(width=8, last_layer="conv5_4"), jnp.zeros((1, 32, 32, 3)))


def test_pooling_max_or_average(numpy_init):
    """conv2_1 sees conv1_2 max- or average-pooled over 2x2 windows: recomputed here from conv1_2 with the
    conv2_1 parameters (a 3x3 'same' cross-correlation in numpy)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 10, 10, 3)), jnp.float32)
    for pooling, reduce in (("max", np.max), ("avg", np.mean)):
        model = vgg.VGG19(width=4, pooling=pooling, last_layer="conv2_1")
        variables = numpy_init(model, x)
        variables["params"]["conv2_1"]["bias"] = jnp.full((8,), 0.05)
        features = model.apply(variables, x)
        pooled = reduce(np.asarray(features["conv1_2"], np.float64).reshape(1, 5, 2, 5, 2, 4), axis=(2, 4))
        kernel = np.asarray(variables["params"]["conv2_1"]["kernel"], np.float64)
        padded = np.pad(pooled, ((0, 0), (1, 1), (1, 1), (0, 0)))
        conv = sum(padded[:, i : i + 5, j : j + 5] @ kernel[i, j] for i in range(3) for j in range(3))
        np.testing.assert_allclose(
            features["conv2_1"], np.maximum(conv + 0.05, 0), atol=1e-5, err_msg=pooling
        )
    with pytest.raises(ValueError, match=r"pooling='sum' is not one of \['max', 'avg'\]"):
        _abstract(vgg.VGG19(width=4, pooling="sum"), x)


def test_more_input_channels_and_bfloat16():
    """The first conv takes the input's channels (SHM's M-Net: RGB + trimap); compute dtype from `dtype`,
    parameters float32."""
    variables, features = _abstract(vgg.VGG16(width=8, dtype=jnp.bfloat16), jnp.zeros((1, 16, 16, 6)))
    assert variables["params"]["conv1_1"]["kernel"].shape == (3, 3, 6, 8)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    assert features["conv5_3"].dtype == jnp.bfloat16 and features["conv5_3"].shape == (1, 1, 1, 64)
