"""Image-similarity metrics of the pose-guided synthesis evaluation (Balakrishnan et al., CVPR 2018, Table 1):
L1, SSIM (and PSNR), per image, in jax.numpy (jittable, for the evaluator) plus a numpy SSIM reference.

Images (B, H, W, C) float in [0, 1] (map the library's [-1, 1] with (x + 1) / 2 first).

  L1   = mean over pixels and channels of |x - y|.
  SSIM = Wang et al. 2004 as scikit-image's structural_similarity(channel_axis=-1) computes it by default:
         per channel a 7x7 uniform window, means u, SAMPLE variances and covariance (x N / (N - 1), N = 49),
         S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)), C1 = (0.01 R)^2,
         C2 = (0.03 R)^2, R = data_range; averaged over the windows lying fully inside the image (skimage
         crops (win - 1) / 2 pixels at each border) and then over the channels.
  PSNR = 10 log10(R^2 / MSE).

data_range: 1.0 is the definition for [0, 1] images. The paper's evaluation called the 2018 skimage
compare_ssim on float images without data_range, which then took the float dtype's range (-1, 1), i.e. R = 2:
smaller C1, C2, so the numbers differ. `ssim(..., data_range=2.0)` reproduces that protocol; the evaluator
reports both.

Window sums use lax.reduce_window (additions only: no reduced-precision convolution path on accelerators).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

K1, K2 = 0.01, 0.03  # skimage's (and Wang et al.'s) constants
WIN_SIZE = 7


def _pair(x, y, name: str, win_size: int = 1):
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(
            f"{name}: x and y must be images of one shape (B, H, W, C), got {x.shape} and {y.shape}"
        )
    if min(x.shape[1:3]) < win_size:
        raise ValueError(f"{name}: images of {x.shape[1]}x{x.shape[2]} are smaller than win_size {win_size}")
    return x, y


def l1(x, y) -> jnp.ndarray:
    """(B, H, W, C) x 2 in [0, 1] -> (B,) mean absolute difference per image."""
    x, y = _pair(x, y, "l1")
    return jnp.mean(jnp.abs(x - y), axis=(1, 2, 3))


def psnr(x, y, data_range: float = 1.0) -> jnp.ndarray:
    """(B, H, W, C) x 2 -> (B,) peak signal-to-noise ratio in dB (inf for identical images)."""
    x, y = _pair(x, y, "psnr")
    mse = jnp.mean((x - y) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(float(data_range) ** 2 / mse)


def _window_mean(x, win_size: int):
    """(B, H, W, C) -> (B, H - w + 1, W - w + 1, C): the mean of each w x w window fully inside."""
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, win_size, win_size, 1), (1, 1, 1, 1), "VALID")
    return total / float(win_size * win_size)


def _check_window(win_size: int, data_range: float):
    if int(win_size) != win_size or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"ssim: win_size must be an odd integer >= 3, got {win_size}")
    if not data_range > 0:
        raise ValueError(f"ssim: data_range must be positive, got {data_range}")


def ssim(x, y, data_range: float = 1.0, win_size: int = WIN_SIZE) -> jnp.ndarray:
    """Mean SSIM per image (module docstring): (B, H, W, C) x 2 -> (B,) float32, channels averaged.

    data_range and win_size are Python numbers (static under jit)."""
    _check_window(win_size, data_range)
    x, y = _pair(x, y, "ssim", win_size)
    n = float(win_size * win_size)
    cov_norm = n / (n - 1.0)
    # Shift by a constant (SSIM's variances do not see it; the means get it back): smaller squares, less
    # float32 cancellation in E[x^2] - E[x]^2.
    shift = 0.5 * float(data_range)
    xs, ys = x - shift, y - shift
    mx, my = _window_mean(xs, win_size), _window_mean(ys, win_size)
    vx = cov_norm * (_window_mean(xs * xs, win_size) - mx * mx)
    vy = cov_norm * (_window_mean(ys * ys, win_size) - my * my)
    vxy = cov_norm * (_window_mean(xs * ys, win_size) - mx * my)
    ux, uy = mx + shift, my + shift
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return jnp.mean(s, axis=(1, 2, 3))


def ssim_reference(x, y, data_range: float = 1.0, win_size: int = WIN_SIZE) -> np.ndarray:
    """numpy float64 version of `ssim`, written out window by window: (B, H, W, C) x 2 -> (B,) float64."""
    _check_window(win_size, data_range)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    batch, height, width, channels = x.shape
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    out = np.zeros(batch)
    for b in range(batch):
        values = []
        for c in range(channels):
            for i in range(height - win_size + 1):
                for j in range(width - win_size + 1):
                    wx = x[b, i : i + win_size, j : j + win_size, c].ravel()
                    wy = y[b, i : i + win_size, j : j + win_size, c].ravel()
                    ux, uy = wx.mean(), wy.mean()
                    vx, vy = wx.var(ddof=1), wy.var(ddof=1)
                    vxy = np.sum((wx - ux) * (wy - uy)) / (wx.size - 1)
                    values.append(
                        (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
                    )
        out[b] = np.mean(values)
    return out
