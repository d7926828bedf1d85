"""Semantic Human Matting kernels (jax.numpy, static shapes): trimap codes, argmax pooling and unpooling for
M-Net, the fusion of T-Net and M-Net, and the losses.

Chen et al., "Semantic Human Matting", ACM MM 2018 (shared/reference/matting.md). ONE trimap channel order
everywhere: `CLASSES` = (background, unknown, foreground), class indices 0 / 1 / 2, encoded in trimap images as
0 / 128 / 255. The T-Net's softmax over its 3 logits is (Bs, Us, Fs) in that order. (Both public PyTorch ports
read "unknown" as the foreground channel in the fusion; `fuse` takes channel 2 as Fs and channel 1 as Us.)

- `max_pool_with_argmax` / `max_unpool`: the 2x2 stride-2 max-pooling of M-Net's encoder keeping where each
  maximum was, and the decoder's unpooling that puts values back there (SegNet / Deep Image Matting). Indices
  are flat h * W + w within the input of their own channel (PyTorch's MaxPool2d(return_indices=True)); ties go
  to the first maximum in row-major window order, as PyTorch's CPU and CUDA kernels do.
- `fuse`: alpha_p = Fs + Us * alpha_r (SHM eq. 4).
- `prediction_loss`: L_p = gamma |alpha_p - alpha_g| + (1 - gamma) |c_p - c_g| (SHM eq. 5), each |.| the
  Charbonnier sqrt(d^2 + eps^2) of Deep Image Matting, c = alpha F + (1 - alpha) B from the ground-truth F, B.
- `trimap_loss`: L_t, the 3-class softmax cross-entropy of the T-Net logits against the trimap classes.
The total of the end-to-end stage, L = L_p + 0.01 L_t (SHM), is the task's sum of these two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

CLASSES = ("background", "unknown", "foreground")
BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2
TRIMAP_VALUES = (0, 128, 255)  # uint8 code of each class in trimap images


# --- trimap codes ------------------------------------------------------------------------------------------------


def _xp(x):
    """numpy for numpy input (the host side of pipelines), jax.numpy otherwise."""
    return np if isinstance(x, (np.ndarray, np.generic, int, float, list, tuple)) else jnp


def trimap_classes(trimap_values):
    """uint8 trimap (...) 0 / 128 / 255 -> int32 classes (...): 0 -> BACKGROUND, 255 -> FOREGROUND, any other
    value -> UNKNOWN (trimaps saved with interpolation carry grey values other than 128)."""
    xp = _xp(trimap_values)
    values = xp.asarray(trimap_values)
    return xp.where(values == 0, BACKGROUND, xp.where(values == 255, FOREGROUND, UNKNOWN)).astype(xp.int32)


def trimap_values(classes):
    """int classes (...) in 0..2 -> uint8 trimap (...) 0 / 128 / 255 (the inverse of `trimap_classes`)."""
    xp = _xp(classes)
    return xp.asarray(TRIMAP_VALUES, xp.uint8)[xp.asarray(classes)]


def trimap_input(trimap_probs, channels: int = 3):
    """M-Net's trimap input from probabilities (or a one-hot trimap) (..., 3) in CLASSES order: the 3 channels
    as they are, or (channels=1, the paper's 4-channel M-Net option) one channel Fs + 0.5 Us (..., 1), the
    trimap image's 0 / 128 / 255 code divided by 255 (Deep Image Matting's trimap input)."""
    if channels == 3:
        return trimap_probs
    if channels == 1:
        return trimap_probs[..., FOREGROUND : FOREGROUND + 1] + 0.5 * trimap_probs[..., UNKNOWN : UNKNOWN + 1]
    raise ValueError(f"trimap channels must be 1 or 3, got {channels!r}")


# --- argmax pooling and unpooling ------------------------------------------------------------------------------


def max_pool_with_argmax(x):
    """2x2 stride-2 max-pooling that keeps where each maximum was.

    x (B, H, W, C), H and W even -> (pooled (B, H/2, W/2, C) in x's dtype, indices (B, H/2, W/2, C) int32),
    indices[b, i, j, c] = h * W + w of the maximum's position in x[b, :, :, c]. Ties: the first maximum in the
    window's row-major order. The gradient of `pooled` flows to that one position (as PyTorch's), not split
    over tied maxima.
    """
    b, height, width, c = x.shape
    if height % 2 or width % 2:
        raise ValueError(f"max_pool_with_argmax needs an even height and width, got {(height, width)}")
    h, w = height // 2, width // 2
    windows = x.reshape(b, h, 2, w, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(b, h, w, c, 4)
    k = jnp.argmax(windows, axis=-1)  # (B, h, w, C) in 0..3 = 2 dy + dx, first maximum on ties
    pooled = jnp.take_along_axis(windows, k[..., None], axis=-1)[..., 0]
    rows = 2 * jnp.arange(h, dtype=jnp.int32)[:, None, None] + (k // 2).astype(jnp.int32)
    cols = 2 * jnp.arange(w, dtype=jnp.int32)[None, :, None] + (k % 2).astype(jnp.int32)
    return pooled, rows * width + cols


def max_unpool(x, indices, out_hw):
    """The inverse placement of `max_pool_with_argmax`: x (B, h, w, C) and its indices (B, h, w, C) ->
    (B, H, W, C) with (H, W) = out_hw = (2h, 2w), x[b, i, j, c] at flat position indices[b, i, j, c] of channel
    c, zeros elsewhere.

    Each index must lie in its own 2x2 window (rows 2i..2i+1, columns 2j..2j+1), as max_pool_with_argmax
    gives; an index outside it places nothing. Compiled as a comparison of each output position with the index
    of its window (a one-hot placement, no scatter): elementwise work, gradients to x where placed.
    """
    b, h, w, c = x.shape
    height, width = int(out_hw[0]), int(out_hw[1])
    if (height, width) != (2 * h, 2 * w):
        raise ValueError(f"max_unpool: out_hw must be twice the input's {(h, w)}, got {(height, width)}")
    if indices.shape != x.shape:
        raise ValueError(f"max_unpool: indices {indices.shape} and x {x.shape} differ in shape")

    def up(a):  # (B, h, w, C) -> (B, 2h, 2w, C), each value repeated over its window
        return jnp.repeat(jnp.repeat(a, 2, axis=1), 2, axis=2)

    position = jnp.arange(height * width, dtype=jnp.int32).reshape(1, height, width, 1)
    return jnp.where(up(indices) == position, up(x), jnp.zeros((), x.dtype))


# --- fusion -------------------------------------------------------------------------------------------------------


def fuse(trimap_probs, alpha_r):
    """SHM eq. 4: alpha_p = Fs + Us * alpha_r; trimap_probs (..., 3) (Bs, Us, Fs) in CLASSES order, alpha_r
    (..., 1) -> (..., 1). (Equal to (1 - Us) Fs / (Fs + Bs) + Us alpha_r, since Fs + Bs + Us = 1.)"""
    fg = trimap_probs[..., FOREGROUND : FOREGROUND + 1]
    unknown = trimap_probs[..., UNKNOWN : UNKNOWN + 1]
    return fg + unknown * alpha_r


# --- losses -------------------------------------------------------------------------------------------------------


def charbonnier(d, eps: float = 1e-6):
    """sqrt(d^2 + eps^2): the differentiable |d| of Deep Image Matting's losses (eps = 1e-6; the PyTorch ports'
    sqrt(d^2 + 1e-6) is eps = 1e-3)."""
    return jnp.sqrt(jnp.square(d) + eps * eps)


def composite(alpha, fg, bg):
    """alpha F + (1 - alpha) B: alpha (..., 1), fg and bg (..., 3) in [0, 1] -> (..., 3)."""
    return alpha * fg + (1.0 - alpha) * bg


def _pixel_weights(weights, shape):
    """weights (B, H, W, 1) or (B, H, W) float, None = ones -> (B, H, W) float32."""
    if weights is None:
        return jnp.ones(shape, jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    if weights.shape == shape + (1,):
        weights = weights[..., 0]
    if weights.shape != shape:
        raise ValueError(f"weights of shape {weights.shape} do not fit pixels of shape {shape} (+ (1,))")
    return weights


def prediction_loss(alpha_p, alpha_g, fg, bg, has_fg_bg, weights=None, gamma: float = 0.5, eps: float = 1e-6):
    """SHM eq. 5, the prediction loss L_p, averaged over the whole image.

    alpha_p, alpha_g (B, H, W, 1) in [0, 1]; fg, bg (B, H, W, 3) the ground-truth foreground and background in
    [0, 1]; has_fg_bg (B,) bool; weights (B, H, W, 1) (1 inside the image, 0 in padding; None = all ones).
    Per pixel L_p = gamma rho(alpha_p - alpha_g) + (1 - gamma) mean_rgb rho(c_p - c_g), rho = charbonnier,
    c_p = composite(alpha_p, fg, bg) and c_g = composite(alpha_g, fg, bg): a true compositional loss (the same
    F and B under both alphas). An example with has_fg_bg False (pre-composited data: no F and B) leaves the
    composition term out and its alpha term takes the full weight (rho(alpha_p - alpha_g) alone), so every
    example's per-pixel loss has the same scale. The loss is the weighted mean over all pixels of the batch:
    sum(weights * L_p) / sum(weights) (1 when the weights sum to 0).

    Returns (loss, {'alpha_loss', 'composition_loss'}): the two terms' shares of the loss (gamma and
    1 - gamma applied, so they sum to it), float32 scalars.
    """
    alpha_p = alpha_p.astype(jnp.float32)
    alpha_g = alpha_g.astype(jnp.float32)
    fg, bg = fg.astype(jnp.float32), bg.astype(jnp.float32)
    shape = alpha_p.shape[:-1]
    w = _pixel_weights(weights, shape)  # (B, H, W)
    has = jnp.asarray(has_fg_bg, bool).reshape((-1,) + (1,) * (len(shape) - 1))  # (B, 1, 1)
    alpha_term = charbonnier(alpha_p - alpha_g, eps)[..., 0]  # (B, H, W)
    comp_term = jnp.mean(charbonnier(composite(alpha_p, fg, bg) - composite(alpha_g, fg, bg), eps), -1)
    alpha_share = jnp.where(has, gamma, 1.0)
    comp_share = jnp.where(has, 1.0 - gamma, 0.0)
    total = jnp.sum(w)
    total = jnp.where(total > 0, total, 1.0)
    alpha_loss = jnp.sum(w * alpha_share * alpha_term) / total
    composition_loss = jnp.sum(w * comp_share * comp_term) / total
    return alpha_loss + composition_loss, {"alpha_loss": alpha_loss, "composition_loss": composition_loss}


def trimap_loss(logits, classes, weights=None):
    """L_t: softmax cross-entropy of logits (B, H, W, 3) (computed in float32) against int classes (B, H, W) in
    0..2 (CLASSES order), the weighted mean over pixels: sum(w * ce) / sum(w) with weights (B, H, W) or
    (B, H, W, 1) (0 in padding; None = all ones; 0 when the weights sum to 0). A float32 scalar."""
    logits = logits.astype(jnp.float32)
    classes = jnp.asarray(classes, jnp.int32)
    if logits.shape[:-1] != classes.shape:
        raise ValueError(f"trimap_loss: logits {logits.shape} and classes {classes.shape} do not match")
    w = _pixel_weights(weights, classes.shape)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    ce = -jnp.take_along_axis(log_probs, classes[..., None], axis=-1)[..., 0]  # (B, H, W)
    total = jnp.sum(w)
    return jnp.sum(w * ce) / jnp.where(total > 0, total, 1.0)
