"""Importing Keras-layout VGG weights (.h5): tiny random VGG-19 files written with h5py in the legacy Keras
HDF5 layouts (the keras.applications file, Keras 1 names; a full-model save, Keras 2 names under
`model_weights`; long attributes split in chunks) imported into the linen VGG19 and compared with a plain numpy
forward pass; a file Keras itself writes, compared with Keras' own forward pass; the caffe-style BGR input;
the errors."""

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman import weights, weights_keras
from jhuman.models import vgg
from jhuman.tasks import common

WIDTH = 8
ATOL = 1e-3  # activations of order 10..100 on 0..255 inputs
CONVS = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4}  # VGG-19: block -> number of convs
MEAN_BGR = np.array([103.939, 116.779, 123.68])  # keras.applications.imagenet_utils, mode 'caffe'


def random_vgg19(seed=0, width=WIDTH):
    """{'block{b}_conv{k}': (kernel HWIO, bias)} in network order, He-normal kernels, random biases."""
    rng = np.random.default_rng(seed)
    layers, cin = {}, 3
    for block, n in CONVS.items():
        cout = width * min(2 ** (block - 1), 8)
        for k in range(1, n + 1):
            kernel = rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32)
            layers[f"block{block}_conv{k}"] = (kernel, rng.normal(0, 0.1, cout).astype(np.float32))
            cin = cout
    return layers


def numpy_vgg19(bgr, layers, pooling):
    """Plain numpy forward (float64): 'same' 3x3 cross-correlation + bias + ReLU, a 2x2 stride-2 pool between
    blocks; {'block{b}_conv{k}': activation}."""
    x, out, block = bgr.astype(np.float64), {}, 1
    for name, (kernel, bias) in layers.items():
        if int(name[5]) != block:
            block = int(name[5])
            n, h, w, c = x.shape
            windows = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
            x = windows.max(axis=(2, 4)) if pooling == "max" else windows.mean(axis=(2, 4))
        h, w = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        x = sum(padded[:, dy : dy + h, dx : dx + w] @ kernel[dy, dx] for dy in range(3) for dx in range(3))
        x = out[name] = np.maximum(x + bias, 0)
    return out


def write_keras_h5(path, layers, style, top=False):
    """`layers` as Keras writes them.

    style 'applications': the keras.applications download (Keras 1): layer groups at the root, the root's
      `layer_names` (bytes) including the weightless input and pool layers, datasets named
      'block1_conv1_W_1:0' / 'block1_conv1_b_1:0' directly in each group.
    style 'model': a Keras 2 full-model save: everything under `model_weights`, weight names
      'block1_conv1/kernel:0' (so nested groups), `layer_names` split into chunks layer_names0, layer_names1.
    top: add the include_top Dense layers fc1 (2-D kernel) and predictions.
    """
    names = ["input_1"]
    for block, n in CONVS.items():
        names += [f"block{block}_conv{k}" for k in range(1, n + 1)] + [f"block{block}_pool"]
    dense = {}
    if top:
        rng = np.random.default_rng(1)
        dense = {
            "fc1": (rng.normal(size=(32, 16)).astype(np.float32), np.zeros(16, np.float32)),
            "predictions": (rng.normal(size=(16, 10)).astype(np.float32), np.zeros(10, np.float32)),
        }
        names += ["flatten", "fc1", "predictions"]
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if style == "model" else f
        encoded = np.array([n.encode() for n in names])
        if style == "model":
            half = len(encoded) // 2
            root.attrs["layer_names0"], root.attrs["layer_names1"] = encoded[:half], encoded[half:]
        else:
            root.attrs["layer_names"] = encoded
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for name in names:
            group = root.create_group(name)
            if name not in layers and name not in dense:
                group.attrs["weight_names"] = np.array([], dtype="S")
                continue
            kernel, bias = layers[name] if name in layers else dense[name]
            if style == "model":
                weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            else:
                weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names])
            group.create_dataset(weight_names[0], data=kernel)
            group.create_dataset(weight_names[1], data=bias)


def zeros_like_init(model, x):
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)


def rgb_image(size=36, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(2, size, size, 3)).astype(np.float32)


def test_caffe_bgr_preprocessing():
    """keras_vgg_preprocess and INPUT_NORMS['keras_caffe']: channels reversed, then the BGR means off."""
    rgb = rgb_image(4)
    expected = np.stack([rgb[..., 2] - 103.939, rgb[..., 1] - 116.779, rgb[..., 0] - 123.68], axis=-1)
    np.testing.assert_allclose(weights_keras.keras_vgg_preprocess(rgb), expected, atol=1e-4)
    np.testing.assert_allclose(weights_keras.keras_vgg_preprocess(jnp.asarray(rgb)), expected, atol=1e-4)
    mean, std, bgr = common.INPUT_NORMS["keras_caffe"]
    assert bgr
    np.testing.assert_allclose(((rgb - mean) / std)[..., ::-1], expected, atol=1e-4)


@pytest.mark.parametrize("style, pooling", [("applications", "avg"), ("model", "max")])
def test_keras_h5_matches_numpy_forward(tmp_path, style, pooling):
    """All 16 activations of the linen VGG19 on caffe-preprocessed input equal the numpy forward pass with the
    file's arrays; the report names the Keras layout; the include_top Dense layers are unexpected."""
    layers = random_vgg19(seed=1)
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    write_keras_h5(path, layers, style, top=True)
    rgb = rgb_image(seed=1)
    expected = numpy_vgg19(rgb[..., ::-1] - MEAN_BGR, layers, pooling)
    model = vgg.VGG19(width=WIDTH, pooling=pooling)
    new, report = weights.import_backbone(zeros_like_init(model, rgb), path, "vgg19", prefix=())
    assert report.layout == "keras" and "imported vgg19 (keras layout)" in str(report)
    assert report.missing == [] and len(report.loaded) == 32 and report.widened == []
    assert sorted(report.unexpected) == ["fc1/bias", "fc1/kernel", "predictions/bias", "predictions/kernel"]
    features = jax.jit(model.apply)(new, weights_keras.keras_vgg_preprocess(rgb))
    assert len(features) == 16
    for (b, k), name in zip([(b, k) for b, n in CONVS.items() for k in range(1, n + 1)], features):
        assert name == f"conv{b}_{k}"
        np.testing.assert_allclose(features[name], expected[f"block{b}_conv{k}"], atol=ATOL, rtol=1e-4)
    assert np.abs(expected["block5_conv4"]).mean() > 1.0  # a non-degenerate comparison


def test_keras_h5_into_a_wider_first_conv_and_shorter_net(tmp_path):
    """A 4-channel VGG19 stopped at conv2_2: conv1_1 widened with a zero 4th channel; conv3+ unexpected."""
    layers = random_vgg19(seed=2)
    path = tmp_path / "w.h5"
    write_keras_h5(path, layers, "applications")
    model = vgg.VGG19(width=WIDTH, last_layer="conv2_2")
    new, report = weights.import_backbone(zeros_like_init(model, np.zeros((1, 8, 8, 4))), path, "vgg19", ())
    kernel = np.asarray(new["params"]["conv1_1"]["kernel"])
    np.testing.assert_array_equal(kernel[:, :, :3], layers["block1_conv1"][0])
    np.testing.assert_array_equal(kernel[:, :, 3], 0)
    np.testing.assert_array_equal(new["params"]["conv2_2"]["bias"], layers["block2_conv2"][1])
    assert report.widened == ["params/conv1_1/kernel: 3 -> 4 input channels"]
    assert len(report.loaded) == 8 and len(report.unexpected) == 24


def test_keras_errors(tmp_path):
    path = tmp_path / "w.h5"
    write_keras_h5(path, random_vgg19(), "applications")
    with pytest.raises(ValueError, match=r"w\.h5: Keras-layout \(\.h5\) files are read for VGG only"):
        weights.import_backbone({"params": {"trunk": {}}}, path, "resnet50")
    keras3 = tmp_path / "model.weights.h5"  # Keras 3's own format: groups by class, no weight_names
    with h5py.File(keras3, "w") as f:
        f.create_dataset("layers/conv2d/vars/0", data=np.zeros((3, 3, 3, 8)))
    with pytest.raises(ValueError, match=r"model\.weights\.h5' holds no legacy Keras HDF5 layer weights"):
        weights_keras.load_keras_h5(keras3)
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        weights_keras.load_keras_h5(tmp_path / "nowhere.h5")
    model = vgg.VGG19(width=2 * WIDTH, last_layer="conv1_1")
    with pytest.raises(
        ValueError, match=r"'block1_conv1/kernel' -> params/conv1_1/kernel: file shape \(3, 3, 3, 8\)"
    ):
        weights.import_backbone(zeros_like_init(model, np.zeros((1, 8, 8, 3))), path, "vgg19", ())


def test_file_written_by_keras_matches_keras(tmp_path):
    """Keras writes the file (model.save, the legacy full-model HDF5) of a small VGG-19 named as
    keras.applications names it, and computes the reference activations with its own preprocess_input."""
    keras = pytest.importorskip("keras")
    applications = keras.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    x, outputs = inputs, []
    for block, n in CONVS.items():
        for k in range(1, n + 1):
            conv = keras.layers.Conv2D(
                WIDTH * min(2 ** (block - 1), 8),
                3,
                padding="same",
                activation="relu",
                name=f"block{block}_conv{k}",
                kernel_initializer="he_normal",
                bias_initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=block * 10 + k),
            )
            x = conv(x)
            outputs.append(x)
        x = keras.layers.AveragePooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    small = keras.Model(inputs, outputs + [x])  # the last pool too, so that the layer lists compare
    assert [layer.name for layer in small.layers][1:] == [layer.name for layer in applications.layers][1:]
    path = tmp_path / "small_vgg19.h5"
    small.save(path)

    rgb = rgb_image(32, seed=3)
    expected = [np.asarray(y) for y in small(keras.applications.vgg19.preprocess_input(rgb.copy()))][:-1]
    np.testing.assert_allclose(
        weights_keras.keras_vgg_preprocess(rgb),
        keras.applications.vgg19.preprocess_input(rgb.copy()),
        atol=1e-4,
    )
    model = vgg.VGG19(width=WIDTH, pooling="avg")
    new, report = weights.import_backbone(zeros_like_init(model, rgb), path, "vgg19", prefix=())
    assert report.missing == [] and report.unexpected == [] and len(report.loaded) == 32
    features = jax.jit(model.apply)(new, weights_keras.keras_vgg_preprocess(rgb))
    assert len(features) == len(expected) == 16
    for name, value in zip(features, expected):
        np.testing.assert_allclose(features[name], value, atol=ATOL, rtol=1e-4, err_msg=name)
