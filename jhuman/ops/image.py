"""Pure image ops shared by the papers (jax.numpy, static shapes): bilinear resizing, bilinear sampling, and
cropping windows with resizing.

Kernels more than one paper uses live here (parsing's DeepLab and multi-scale testing, PersonLab's heads and
offset refinement, and the synthesis paper's warps); a paper's own kernels live in its file or folder
(`jhuman.ops.ssl`, `jhuman.ops.personlab`).

Geometry convention of DeepLab/Caffe: with output stride s, logit (i, j) sits on input pixel (s*i, s*j), so
the ground truth at logit resolution is `label[::s, ::s]` and upsampling maps input pixel y to logit
coordinate y / s (clamped at the last logit), i.e. bilinear with aligned corners of that grid
(`upsample_aligned`, `subsample_labels`). Resizing an image to another size with aligned corners (Caffe's
Interp layer, PyTorch align_corners=True) is `resize_bilinear`, at the sizes `scaled_size` gives.

Cropping and resizing square windows (`crop_and_resize`, Semantic Human Matting's M-Net window inside the
T-Net crop) uses half-pixel centres, the geometry of cv2.resize(INTER_LINEAR) and jax.image.resize without
anti-aliasing, so that the step resamples a window as a host pipeline resizing that crop would.

Sampling a dense field at sub-pixel points (`bilinear_sample`): points are (x, y) = (column, row) in pixels,
clamped onto the image; the four integer neighbours of the clamped point are read (on the last row/column the
upper neighbour is the point's own row/column, with weight zero). Gradients flow through the sampled values
and the bilinear weights, not through the integer corners.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

INTERPOLATIONS = ("align_corners", "half_pixel")


# --- resizing ----------------------------------------------------------------------------------------------------


def _interpolation_matrix(src: np.ndarray, in_size: int) -> np.ndarray:
    """(len(src), in_size) float32: row y holds the bilinear weights of source coordinate src[y] in
    [0, in_size - 1] (computed in float64, rounded once)."""
    lo = np.minimum(np.floor(src).astype(int), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    matrix = np.zeros((len(src), in_size), np.float64)
    np.add.at(matrix, (np.arange(len(src)), lo), 1.0 - frac)
    np.add.at(matrix, (np.arange(len(src)), hi), frac)
    return matrix.astype(np.float32)


@functools.lru_cache(maxsize=64)
def aligned_interpolation_matrix(out_size: int, in_size: int, stride: float) -> np.ndarray:
    """(out_size, in_size) float32: row y holds the bilinear weights of source coordinate min(y/stride, in-1)."""
    return _interpolation_matrix(np.minimum(np.arange(out_size) / float(stride), in_size - 1), in_size)


@functools.lru_cache(maxsize=256)
def align_corners_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) float32 bilinear weights with aligned corners: out pixel y samples input coordinate
    y * (in_size - 1) / (out_size - 1) (Caffe Interp, PyTorch align_corners=True); a size of 1 samples pixel 0."""
    if out_size == 1 or in_size == 1:
        src = np.zeros(out_size)
    else:
        src = np.arange(out_size) * ((in_size - 1) / (out_size - 1))
    return _interpolation_matrix(src, in_size)


def _resize_separable(x, rows: np.ndarray, cols: np.ndarray) -> jnp.ndarray:
    """(B, h, w, C) -> (B, H, W, C) float32 by the (H, h) and (W, w) interpolation matrices."""
    x = x.astype(jnp.float32)
    x = jnp.einsum("Hh,bhwc->bHwc", jnp.asarray(rows), x, precision="highest")
    return jnp.einsum("Ww,bHwc->bHWc", jnp.asarray(cols), x, precision="highest")


def upsample_aligned(x: jnp.ndarray, out_hw: tuple[int, int], stride) -> jnp.ndarray:
    """(B, h, w, C) at output stride `stride` (one number, or (rows, columns)) -> (B, H, W, C) float32."""
    stride_h, stride_w = (stride, stride) if np.isscalar(stride) else stride
    rows = aligned_interpolation_matrix(out_hw[0], x.shape[1], float(stride_h))
    cols = aligned_interpolation_matrix(out_hw[1], x.shape[2], float(stride_w))
    return _resize_separable(x, rows, cols)


def subsample_labels(labels: jnp.ndarray, out_hw: tuple[int, int], stride: int) -> jnp.ndarray:
    """(B, H, W) -> (B, h, w): the labels on the logit grid, `labels[:, ::s, ::s]` (padded with 255 if short)."""
    sub = labels[:, ::stride, ::stride][:, : out_hw[0], : out_hw[1]]
    pad_h, pad_w = out_hw[0] - sub.shape[1], out_hw[1] - sub.shape[2]
    if pad_h or pad_w:
        sub = jnp.pad(sub, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=255)
    return sub


def scaled_size(size: int, scale: float) -> int:
    """Side of an input of side `size` at `scale`: floor((size - 1) * scale) + 1 (at least 1).

    This is the size Caffe's Interp layer gives with align-corners geometry (the published DeepLab attention
    net: 321 -> 241 at 0.75 and 161 at 0.5, logits 41 / 31 / 21 at output stride 8); pixel k of the scaled
    image then sits exactly on input pixel k / scale. round(size * scale) would give 160 at 0.5 (Python rounds
    160.5 to even) and break that alignment; for 64: 64 -> 48 at 0.75 and 32 at 0.5 either way. The 1e-6
    guards against float error ((size - 1) * 0.75 computed as 239.99999...).
    """
    return max(1, int(math.floor((size - 1) * float(scale) + 1e-6)) + 1)


def resize_bilinear(x, size, interpolation: str = "align_corners"):
    """(B, H, W, C) -> (B, h, w, C) float32, bilinear; the same size returns x (as float32) untouched.

    'align_corners': separable matrices of `align_corners_matrix` (the geometry of Caffe's Interp layer, used
    by the published Attention-to-Scale/LIP nets, and of the project's logit grid, see the module docstring).
    'half_pixel': jax.image.resize(method='bilinear', antialias=False) (TF2/PyTorch align_corners=False; no
    anti-aliasing when shrinking, like Caffe).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
    x = x.astype(jnp.float32)
    h, w = int(size[0]), int(size[1])
    if (h, w) == tuple(x.shape[1:3]):
        return x
    if interpolation == "half_pixel":
        return jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), "bilinear", antialias=False)
    return _resize_separable(x, align_corners_matrix(h, x.shape[1]), align_corners_matrix(w, x.shape[2]))


@functools.lru_cache(maxsize=64)
def adaptive_pool_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) float32: row i averages input [floor(i in / out), ceil((i + 1) in / out)), the bins
    of PyTorch's adaptive_avg_pool2d (PSPNet's pyramid pooling)."""
    matrix = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        start, stop = (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix.astype(np.float32)


def adaptive_average_pool(x, out_hw: tuple[int, int]) -> jnp.ndarray:
    """(B, H, W, C) -> (B, h, w, C) float32: the mean over each of h x w bins (adaptive_avg_pool2d's)."""
    rows = adaptive_pool_matrix(int(out_hw[0]), x.shape[1])
    cols = adaptive_pool_matrix(int(out_hw[1]), x.shape[2])
    return _resize_separable(x, rows, cols)


# --- bilinear sampling of a dense field at points ----------------------------------------------------------------


def pixel_grid(height: int, width: int) -> jnp.ndarray:
    """(H, W, 2) float32 pixel positions (x, y) = (column, row)."""
    cols, rows = jnp.meshgrid(jnp.arange(width, dtype=jnp.float32), jnp.arange(height, dtype=jnp.float32))
    return jnp.stack([cols, rows], axis=-1)


def clamp_points(points, height: int, width: int):
    """Clamps (..., 2) (x, y) points into [0, W - 1] x [0, H - 1]."""
    upper = jnp.asarray([width - 1, height - 1], jnp.float32)
    return jnp.clip(points, 0.0, upper)


def bilinear_corners(points, height: int, width: int):
    """Integer corners and weights of the bilinear stencil at points (..., 2) INSIDE the image (clamp first:
    `clamp_points`): x0, x1, y0, y1 (...) int32 and fx, fy (...) float32 (the weights of x1 and y1)."""
    x0f, y0f = jnp.floor(points[..., 0]), jnp.floor(points[..., 1])
    fx, fy = points[..., 0] - x0f, points[..., 1] - y0f
    x0, y0 = x0f.astype(jnp.int32), y0f.astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, width - 1), jnp.minimum(y0 + 1, height - 1)
    return x0, x1, y0, y1, fx, fy


def bilinear_sample(field, points, channels=None, clamp: bool = True):
    """Bilinear interpolation of a dense field at sub-pixel points.

    field (H, W, *T) and points (..., 2) (x, y) -> (..., *T); or, with `channels` (...) int (broadcast against
    points[..., 0]), field (H, W, C, *T) -> (..., *T): channel channels[i] at points[i] (one gather per point,
    not all C channels). Points outside the image are clamped onto it; clamp=False when the caller has
    clamped them already (clamping twice would halve the gradient of a point that lies exactly on the border).
    """
    field = jnp.asarray(field)
    points = jnp.asarray(points, jnp.float32)
    height, width = field.shape[:2]
    if clamp:
        points = clamp_points(points, height, width)
    x0, x1, y0, y1, fx, fy = bilinear_corners(points, height, width)
    if channels is None:
        flat = field.reshape(height * width, *field.shape[2:])
        trailing = field.shape[2:]

        def at(y, x):
            return flat[y * width + x]
    else:
        num_channels = field.shape[2]
        trailing = field.shape[3:]
        flat = field.reshape(height * width * num_channels, *trailing)
        channels = jnp.broadcast_to(jnp.asarray(channels, jnp.int32), x0.shape)

        def at(y, x):
            return flat[(y * width + x) * num_channels + channels]

    expand = (...,) + (None,) * len(trailing)
    fx, fy = fx[expand], fy[expand]
    return (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * (
        (1 - fx) * at(y1, x0) + fx * at(y1, x1)
    )


# --- square windows resized ----------------------------------------------------------------------------------------


def _window_coordinates(start, size, out_size: int, in_size: int):
    """For each window (B,) start and size: the (B, out_size) low index, high index and weight of the high one
    of each output pixel's source coordinate (half-pixel centres inside the window, clamped to the window and
    then to the image: edge replication past the border)."""
    size = jnp.maximum(size, 1).astype(jnp.float32)[:, None]  # (B, 1)
    i = jnp.arange(out_size, dtype=jnp.float32)[None, :]  # (1, out)
    within = jnp.clip((i + 0.5) * size / out_size - 0.5, 0.0, size - 1.0)  # (B, out) window coordinate
    src = jnp.clip(start.astype(jnp.float32)[:, None] + within, 0.0, in_size - 1.0)
    lo = jnp.floor(src)
    frac = src - lo
    lo = lo.astype(jnp.int32)
    hi = jnp.minimum(lo + 1, in_size - 1)
    return lo, hi, frac


def crop_and_resize(images, windows, out_size: int):
    """Square windows of images resized to out_size x out_size, bilinear.

    images (B, H, W, C); windows (B, 3) int [y0, x0, size]: the window rows y0 .. y0 + size - 1 and columns
    x0 .. x0 + size - 1 of each image (traced values: one compiled function for every window). A window may
    extend past the image: it sees the image's edge values replicated (as cropping an edge-padded image).
    Output pixel i samples window coordinate (i + 0.5) size / out_size - 0.5 (half-pixel centres, clamped to
    the window as when resizing the cropped image with cv2.resize INTER_LINEAR, no anti-aliasing when
    shrinking). -> (B, out_size, out_size, C) float32; gradients flow to the images. Two gathers of rows then
    columns: O(B out_size (W + out_size) C) work.
    """
    images = jnp.asarray(images, jnp.float32)
    windows = jnp.asarray(windows, jnp.int32)
    if images.ndim != 4 or windows.shape != (images.shape[0], 3):
        raise ValueError(
            f"crop_and_resize: images must be (B, H, W, C) and windows (B, 3), got {images.shape} and "
            f"{windows.shape}"
        )
    out_size = int(out_size)
    height, width = images.shape[1:3]
    y0, x0, size = windows[:, 0], windows[:, 1], windows[:, 2]
    r0, r1, fy = _window_coordinates(y0, size, out_size, height)  # (B, out)
    c0, c1, fx = _window_coordinates(x0, size, out_size, width)

    take_rows = jax.vmap(lambda image, rows: image[rows])  # (H, W, C), (out,) -> (out, W, C)
    take_cols = jax.vmap(lambda image, cols: image[:, cols])  # (out, W, C), (out,) -> (out, out, C)
    fy, fx = fy[:, :, None, None], fx[:, None, :, None]
    rows = (1.0 - fy) * take_rows(images, r0) + fy * take_rows(images, r1)  # (B, out, W, C)
    return (1.0 - fx) * take_cols(rows, c0) + fx * take_cols(rows, c1)  # (B, out, out, C)
