"""Pure image ops shared by tasks (jax.numpy, static shapes).

Geometry convention of DeepLab/Caffe: with output stride s, logit (i, j) sits on input pixel (s*i, s*j), so
the ground truth at logit resolution is `label[::s, ::s]` and upsampling maps input pixel y to logit
coordinate y / s (clamped at the last logit), i.e. bilinear with aligned corners of that grid.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=64)
def aligned_interpolation_matrix(out_size: int, in_size: int, stride: float) -> np.ndarray:
    """(out_size, in_size) float32: row y holds the bilinear weights of source coordinate min(y/stride, in-1)."""
    src = np.minimum(np.arange(out_size) / float(stride), in_size - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = (src - lo).astype(np.float32)
    matrix = np.zeros((out_size, in_size), np.float32)
    np.add.at(matrix, (np.arange(out_size), lo), 1.0 - frac)
    np.add.at(matrix, (np.arange(out_size), hi), frac)
    return matrix


def upsample_aligned(x: jnp.ndarray, out_hw: tuple[int, int], stride) -> jnp.ndarray:
    """(B, h, w, C) at output stride `stride` (one number, or (rows, columns)) -> (B, H, W, C) float32."""
    stride_h, stride_w = (stride, stride) if np.isscalar(stride) else stride
    rows = jnp.asarray(aligned_interpolation_matrix(out_hw[0], x.shape[1], float(stride_h)))
    cols = jnp.asarray(aligned_interpolation_matrix(out_hw[1], x.shape[2], float(stride_w)))
    x = x.astype(jnp.float32)
    x = jnp.einsum("Hh,bhwc->bHwc", rows, x, precision="highest")
    return jnp.einsum("Ww,bHwc->bHWc", cols, x, precision="highest")


def subsample_labels(labels: jnp.ndarray, out_hw: tuple[int, int], stride: int) -> jnp.ndarray:
    """(B, H, W) -> (B, h, w): the labels on the logit grid, `labels[:, ::s, ::s]` (padded with 255 if short)."""
    sub = labels[:, ::stride, ::stride][:, : out_hw[0], : out_hw[1]]
    pad_h, pad_w = out_hw[0] - sub.shape[1], out_hw[1] - sub.shape[2]
    if pad_h or pad_w:
        sub = jnp.pad(sub, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=255)
    return sub
