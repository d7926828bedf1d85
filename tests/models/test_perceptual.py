"""The perceptual loss (jhuman.models.perceptual): the paper's statistics file read; our .npz round trip; bad
files named; the preprocessing; tiny VGG-19 weight files in the Keras (.h5) and torchvision (.npz, .pth)
layouts loaded and run against a numpy forward pass with average pooling; the loss and compute_statistics
against numpy; the pairing of statistics with weights and preprocessing; a missing weight file."""

import os

import jax
import numpy as np
import pytest
import scipy.io
from test_weights_keras import numpy_vgg19, random_vgg19, write_keras_h5  # tests/ is on sys.path (conftest)

from jhuman.models import perceptual

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPER_STATS = os.path.join(
    os.path.dirname(REPO), "shared", "data", "posewarp_sample", "vgg_activation_distribution_train.mat"
)
WIDTH = 4
NUMPY_LAYERS = [f"block{n[4]}_conv{n[6]}" for n in perceptual.LAYERS]  # conv1_1 -> block1_conv1
MEAN_BGR = np.array([103.939, 116.779, 123.68])
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def images(batch=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)


def fake_statistics(width=WIDTH, seed=0, weights="w", preprocessing="caffe"):
    rng = np.random.default_rng(seed)
    widths = [width * m for m in perceptual.LAYER_WIDTH_MULTIPLIERS]
    return perceptual.VGGStatistics(
        mean=tuple(rng.uniform(0, 5, c).astype(np.float32) for c in widths),
        std=tuple(rng.uniform(0, 3, c).astype(np.float32) for c in widths),
        weights=weights,
        preprocessing=preprocessing,
    )


# ------------------------------------------------------------------------------------------------ statistics files


@pytest.mark.skipif(
    not os.path.exists(PAPER_STATS), reason="the paper's statistics file is not in shared/data"
)
def test_paper_statistics_file():
    stats = perceptual.load_statistics(PAPER_STATS)
    raw = scipy.io.loadmat(PAPER_STATS)
    assert stats.weights == perceptual.PAPER_WEIGHTS == "keras-vgg19-imagenet"
    assert stats.preprocessing == "caffe" and stats.width == 64 and stats.source == PAPER_STATS
    assert [s.shape[0] for s in stats.std] == [64, 64, 128, 128] + [256] * 4 + [512] * 4
    for i in range(12):
        np.testing.assert_array_equal(stats.mean[i], raw[str(i)][0])
        np.testing.assert_array_equal(stats.std[i], raw[str(i)][1])
    assert all(float(s.min()) >= 0 for s in stats.std) and float(stats.std[0].mean()) > 1  # 0..255 scale
    perceptual.check_pairing(stats, perceptual.PAPER_WEIGHTS, "caffe")


def test_npz_round_trip(tmp_path):
    stats = fake_statistics(weights="random:3@width4", preprocessing="torchvision")
    path = perceptual.save_statistics(stats, tmp_path / "sub" / "stats.npz")
    loaded = perceptual.load_statistics(path)
    assert (loaded.weights, loaded.preprocessing, loaded.source) == ("random:3@width4", "torchvision", path)
    for a, b in zip(stats.mean + stats.std, loaded.mean + loaded.std):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path / "sub") == ["stats.npz"]
    with pytest.raises(ValueError, match="saved as .npz"):
        perceptual.save_statistics(stats, tmp_path / "stats.mat")


def test_bad_statistics_files_are_named(tmp_path):
    missing = tmp_path / "none.mat"
    with pytest.raises(FileNotFoundError, match="none.mat.*does not exist"):
        perceptual.load_statistics(missing)
    with pytest.raises(ValueError, match=r"stats.txt.*\.mat.*\.npz"):
        perceptual.load_statistics(tmp_path / "stats.txt")
    widths = [WIDTH * m for m in perceptual.LAYER_WIDTH_MULTIPLIERS]
    good = {str(i): np.ones((2, c), np.float32) for i, c in enumerate(widths)}
    scipy.io.savemat(tmp_path / "ok.mat", good)
    assert perceptual.load_statistics(tmp_path / "ok.mat").width == WIDTH
    scipy.io.savemat(tmp_path / "key.mat", {k: v for k, v in good.items() if k != "5"})
    with pytest.raises(ValueError, match=r"key.mat: key '5' \(conv3_2\) missing"):
        perceptual.load_statistics(tmp_path / "key.mat")
    scipy.io.savemat(tmp_path / "shape.mat", {**good, "7": np.ones((3, widths[7]))})
    with pytest.raises(ValueError, match=r"shape.mat: key '7' \(conv3_4\) must be \(2, C\)"):
        perceptual.load_statistics(tmp_path / "shape.mat")
    scipy.io.savemat(tmp_path / "width.mat", {**good, "11": np.ones((2, 7))})
    with pytest.raises(ValueError, match="width.mat: channel counts .* not those of a VGG-19"):
        perceptual.load_statistics(tmp_path / "width.mat")
    scipy.io.savemat(tmp_path / "neg.mat", {**good, "0": -np.ones((2, widths[0]))})
    with pytest.raises(ValueError, match="neg.mat: conv1_1 has non-finite values or a negative std"):
        perceptual.load_statistics(tmp_path / "neg.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="junk.mat: not a readable MATLAB"):
        perceptual.load_statistics(tmp_path / "junk.mat")
    np.savez(tmp_path / "partial.npz", weights="x", preprocessing="caffe")
    with pytest.raises(ValueError, match=r"partial.npz: keys \['mean_conv1_1'"):
        perceptual.load_statistics(tmp_path / "partial.npz")


# ------------------------------------------------------------------------------------------------ preprocessing


def test_preprocessing():
    x = images(1, 4)
    z = (x.astype(np.float64) + 1) * 127.5
    np.testing.assert_allclose(perceptual.preprocess(x, "caffe"), z[..., ::-1] - MEAN_BGR, atol=1e-4)
    np.testing.assert_allclose(
        perceptual.preprocess(x, "torchvision"), (z / 255 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5
    )
    with pytest.raises(
        ValueError, match=r"preprocessing must be one of \['caffe', 'torchvision'\], got 'bgr'"
    ):
        perceptual.preprocess(x, "bgr")


# ------------------------------------------------------------------------------------------------ weights


def _torchvision_state(layers):
    """The Keras-layout layers as torchvision's vgg19.features state dict (OIHW kernels)."""
    index = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
    state = {}
    for i, (kernel, bias) in zip(index, layers.values()):
        state[f"features.{i}.weight"] = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
        state[f"features.{i}.bias"] = bias
    return state


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """One random width-8 VGG-19 as a Keras .h5, a torchvision .npz and (with torch) a torchvision .pth."""
    directory = tmp_path_factory.mktemp("vgg")
    layers = random_vgg19(seed=0, width=8)
    write_keras_h5(directory / "vgg19.h5", layers, "applications")
    state = _torchvision_state(layers)
    np.savez(directory / "vgg19.npz", **state)
    paths = {"keras": str(directory / "vgg19.h5"), "npz": str(directory / "vgg19.npz")}
    try:
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, directory / "vgg19.pth")
        paths["pth"] = str(directory / "vgg19.pth")
    except ImportError:
        pass
    return layers, paths


def test_vgg19_files_in_both_layouts_match_numpy(weight_files):
    """The 12 layers of load_vgg19 + vgg_features equal a numpy VGG-19 with average pooling on the caffe input,
    for the Keras file and the torchvision files; identities name the layout and the file's hash."""
    layers, paths = weight_files
    x = images(2, 32)
    bgr = (x.astype(np.float64) + 1) * 127.5
    expected = numpy_vgg19(bgr[..., ::-1] - MEAN_BGR, layers, "avg")
    features = jax.jit(perceptual.vgg_features, static_argnums=2)
    for kind, path in paths.items():
        variables, identity = perceptual.load_vgg19(path, width=8)
        assert sorted(variables["params"]) == sorted(perceptual.LAYERS)
        layout = "keras" if kind == "keras" else "torchvision"
        assert identity.startswith(f"{layout}-vgg19-") and len(identity.split("-")[-1]) == 16
        out = features(variables, x, "caffe")
        assert list(out) == list(perceptual.LAYERS)
        for name, numpy_name in zip(perceptual.LAYERS, NUMPY_LAYERS):
            scale = np.abs(expected[numpy_name]).max()
            np.testing.assert_allclose(
                out[name], expected[numpy_name], atol=1e-4 * scale, err_msg=f"{kind} {name}"
            )
    assert perceptual.weights_identity(paths["keras"], 64) == perceptual.PAPER_WEIGHTS
    with pytest.raises(ValueError, match="shape mismatch"):
        perceptual.load_vgg19(paths["keras"], width=16)


def test_missing_weights_say_the_loss_needs_them(tmp_path):
    for path in (None, "", str(tmp_path / "vgg19.h5")):
        with pytest.raises(FileNotFoundError, match="the perceptual loss needs VGG-19 weights"):
            perceptual.load_vgg19(path)
    with pytest.raises(ValueError, match="integer seed"):
        perceptual.load_vgg19("random:abc", width=WIDTH)
    short = tmp_path / "short.h5"  # a file without block4
    write_keras_h5(
        short, {k: v for k, v in random_vgg19(width=WIDTH).items() if not k.startswith("block4")}, "model"
    )
    with pytest.raises(ValueError, match="lacks 8 tensors of conv1_1 .. conv4_4"):
        perceptual.load_vgg19(short, width=WIDTH)


def test_random_weights_are_seeded():
    a, id_a = perceptual.load_vgg19("random:1", width=WIDTH)
    b, _ = perceptual.load_vgg19("random:1", width=WIDTH)
    c, id_c = perceptual.load_vgg19("random:2", width=WIDTH)
    assert (id_a, id_c) == ("random:1@width4", "random:2@width4")
    assert perceptual.vgg_width(a) == WIDTH
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a["params"]["conv1_1"]["kernel"], c["params"]["conv1_1"]["kernel"])


# ------------------------------------------------------------------------------------------------ loss, statistics


def test_perceptual_loss_vs_numpy():
    rng = np.random.default_rng(0)
    stats = fake_statistics()
    shapes = [
        (3, 8 >> min(int(n[4]) - 1, 3), 8 >> min(int(n[4]) - 1, 3), s.shape[0])
        for n, s in zip(perceptual.LAYERS, stats.std)
    ]
    fa = {n: rng.normal(size=s).astype(np.float32) for n, s in zip(perceptual.LAYERS, shapes)}
    fb = {n: rng.normal(size=s).astype(np.float32) for n, s in zip(perceptual.LAYERS, shapes)}
    per_layer = [
        np.mean(np.abs(fa[n].astype(np.float64) - fb[n]) / (stats.std[i] + 0.1), axis=(1, 2, 3))
        for i, n in enumerate(perceptual.LAYERS)
    ]
    expected = np.mean(per_layer, axis=0)  # (B,)
    loss = jax.jit(perceptual.perceptual_loss, static_argnums=3)
    np.testing.assert_allclose(loss(fa, fb, stats, True), expected, rtol=1e-5)
    np.testing.assert_allclose(loss(fa, fb, stats, False), expected.mean(), rtol=1e-5)
    as_lists = [fa[n] for n in perceptual.LAYERS], [fb[n] for n in perceptual.LAYERS]
    np.testing.assert_allclose(perceptual.perceptual_loss(*as_lists, stats), expected.mean(), rtol=1e-5)
    assert float(perceptual.perceptual_loss(fa, fa, stats)) == 0.0
    with pytest.raises(ValueError, match="conv1_1 features .* vs statistics of 8 channels"):
        perceptual.perceptual_loss(fa, fb, fake_statistics(width=8))


def test_compute_statistics_vs_numpy():
    """Batches of different sizes; per-channel mean and std (n - 1) over every pixel of every image, as numpy
    over the concatenated activations; the loss of a pair through the whole pipeline."""
    variables, identity = perceptual.load_vgg19("random:0", width=WIDTH)
    batches = [images(2, 32, 1), images(1, 32, 2), images(3, 32, 3)]
    stats = perceptual.compute_statistics(variables, iter(batches), "torchvision", identity)
    assert (stats.weights, stats.preprocessing, stats.width) == ("random:0@width4", "torchvision", WIDTH)
    features = jax.jit(perceptual.vgg_features, static_argnums=2)
    every = features(variables, np.concatenate(batches), "torchvision")
    for i, name in enumerate(perceptual.LAYERS):
        f = np.asarray(every[name], np.float64).reshape(-1, stats.std[i].shape[0])
        np.testing.assert_allclose(stats.mean[i], f.mean(0), rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(stats.std[i], f.std(0, ddof=1), rtol=1e-4, atol=1e-5, err_msg=name)
    assert any(float(s.max()) > 0 for s in stats.std)
    with pytest.raises(ValueError, match="no batches"):
        perceptual.compute_statistics(variables, [], "caffe", identity)


def test_pairing_errors():
    paper = fake_statistics(width=64, weights=perceptual.PAPER_WEIGHTS, preprocessing="caffe")
    perceptual.check_pairing(paper, perceptual.PAPER_WEIGHTS, "caffe")
    with pytest.raises(
        ValueError, match="computed with weights 'keras-vgg19-imagenet'.*uses weights 'torchvision"
    ):
        perceptual.check_pairing(paper, "torchvision-vgg19-0123456789abcdef", "torchvision")
    with pytest.raises(
        ValueError, match="'keras-vgg19-imagenet' expect 'caffe' preprocessing, not 'torchvision'"
    ):
        perceptual.check_pairing(paper, perceptual.PAPER_WEIGHTS, "torchvision")
    ours = fake_statistics(weights="random:0@width4", preprocessing="caffe")
    perceptual.check_pairing(ours, "random:0@width4", "caffe")
    with pytest.raises(
        ValueError, match="preprocessing 'caffe', but the loss uses .* preprocessing 'torchvision'"
    ):
        perceptual.check_pairing(ours, "random:0@width4", "torchvision")
    with pytest.raises(ValueError, match="uses weights 'random:1@width4'"):
        perceptual.check_pairing(ours, "random:1@width4", "caffe")
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        perceptual.check_pairing(ours, "random:0@width4", "rgb")
