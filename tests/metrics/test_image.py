import jax
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jhuman.metrics import image

ssim = jax.jit(image.ssim, static_argnames=("data_range", "win_size"))
l1 = jax.jit(image.l1)
psnr = jax.jit(image.psnr, static_argnames="data_range")


def image_pairs(rng, batch, height, width, channels=3):
    """Smooth images in [0, 1] and noisy, shifted, darkened versions of them (SSIM well inside (0, 1))."""
    ys, xs = np.mgrid[:height, :width] / max(height, width)
    phases = rng.uniform(0, 6, (batch, 1, 1, channels))
    x = 0.5 + 0.4 * np.sin(8 * xs[None, ..., None] + phases) * np.cos(5 * ys[None, ..., None] + phases)
    x = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    y = np.clip(0.9 * np.roll(x, 1, axis=2) + rng.normal(0, 0.08, x.shape), 0, 1)
    y[0] = x[0]  # an identical pair: SSIM 1, L1 0
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_matches_skimage(data_range):
    x, y = image_pairs(np.random.default_rng(0), 3, 32, 40)
    got = np.asarray(ssim(x, y, data_range=data_range))
    expected = [
        structural_similarity(a, b, channel_axis=-1, data_range=data_range)
        for a, b in zip(x.astype(np.float64), y.astype(np.float64))
    ]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert got[0] == pytest.approx(1.0, abs=1e-6) and 0.2 < got[1] < 0.95 and 0.2 < got[2] < 0.95


def test_ssim_data_range_two_is_the_papers_protocol_and_differs():
    x, y = image_pairs(np.random.default_rng(1), 2, 24, 24)
    one, two = np.asarray(ssim(x, y, data_range=1.0)), np.asarray(ssim(x, y, data_range=2.0))
    assert two[1] > one[1] + 1e-3  # larger constants C1, C2: higher SSIM for an imperfect pair


def test_ssim_numpy_reference_matches_skimage_and_the_window_size():
    x, y = image_pairs(np.random.default_rng(2), 2, 14, 12, channels=2)
    for data_range, win_size in ((1.0, 7), (2.0, 5)):
        expected = [
            structural_similarity(a, b, channel_axis=-1, data_range=data_range, win_size=win_size)
            for a, b in zip(x.astype(np.float64), y.astype(np.float64))
        ]
        np.testing.assert_allclose(image.ssim_reference(x, y, data_range, win_size), expected, atol=1e-10)
        np.testing.assert_allclose(ssim(x, y, data_range=data_range, win_size=win_size), expected, atol=2e-5)


def test_l1_and_psnr():
    x, y = image_pairs(np.random.default_rng(3), 3, 16, 16)
    np.testing.assert_allclose(l1(x, y), np.abs(x.astype(np.float64) - y).mean(axis=(1, 2, 3)), rtol=1e-5)
    got = np.asarray(psnr(x, y))
    assert got[0] == np.inf
    expected = [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(x[1:], y[1:])]
    np.testing.assert_allclose(got[1:], expected, rtol=1e-5)


def test_bad_inputs_name_the_argument():
    x = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match="ssim: x and y"):
        image.ssim(x, x[:, :8])
    with pytest.raises(ValueError, match="l1: x and y"):
        image.l1(x[0], x[0])
    with pytest.raises(ValueError, match="win_size"):
        image.ssim(x, x, win_size=4)
    with pytest.raises(ValueError, match="smaller than win_size"):
        image.ssim(x[:, :6], x[:, :6])
    with pytest.raises(ValueError, match="data_range"):
        image.ssim(x, x, data_range=0.0)


def test_jit_no_recompilation():
    traces = []

    def metrics(x, y):
        traces.append(1)
        return image.l1(x, y), image.ssim(x, y), image.ssim(x, y, data_range=2.0)

    step = jax.jit(metrics)
    rng = np.random.default_rng(4)
    for _ in range(3):
        x, y = image_pairs(rng, 2, 16, 16)
        _, one, two = step(x, y)
        np.testing.assert_allclose(one, image.ssim_reference(x, y, 1.0), atol=2e-5)
        np.testing.assert_allclose(two, image.ssim_reference(x, y, 2.0), atol=2e-5)
    assert len(traces) == 1 and step._cache_size() == 1
