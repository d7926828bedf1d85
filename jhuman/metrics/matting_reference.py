"""Straightforward implementations of the Deep Image Matting metrics, for tests and the benchmark.

The definitions of jhuman.metrics.matting (see its docstring) written the plain way, sharing no code with it:
the 9x9 filter built entry by entry and applied pixel by pixel (explicit convolution over an edge-padded
image), connected components by a breadth-first flood fill started from pixels visited in column-major order
(MATLAB's bwconncomp order, so the first of equally large components wins as with MATLAB's max). Inputs are
plain float alphas in [0, 1], (H, W), and trimap uint8 (H, W) or None; nothing is validated. Per-pixel Python
loops (81 multiply-adds per pixel and filter through numpy, a flood fill per threshold): meant for small images,
tens of pixels a side.
"""

import math
from collections import deque

import numpy as np


def _region(trimap, shape):
    if trimap is None:
        return np.ones(shape, bool)
    return np.asarray(trimap) == 128


def sad(pred, gt, trimap=None):
    region = _region(trimap, np.shape(pred))
    total = 0.0
    for y in range(region.shape[0]):
        for x in range(region.shape[1]):
            if region[y, x]:
                total += abs(float(pred[y, x]) - float(gt[y, x]))
    return total / 1000.0


def mse(pred, gt, trimap=None):
    region = _region(trimap, np.shape(pred))
    total, count = 0.0, 0
    for y in range(region.shape[0]):
        for x in range(region.shape[1]):
            if region[y, x]:
                total += (float(pred[y, x]) - float(gt[y, x])) ** 2
                count += 1
    return total / count if count else 0.0


def gaussian_derivative_filter(sigma=1.4, epsilon=1e-2):
    """hx (size, size): hx[i, j] = gauss(i - half) * dgauss(j - half), divided by its L2 norm."""
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * epsilon)))
    size = 2 * half + 1

    def gauss(x):
        return math.exp(-(x**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))

    def dgauss(x):
        return -x * gauss(x) / sigma**2

    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            hx[i, j] = gauss(i - half) * dgauss(j - half)
    return hx / math.sqrt(float((hx * hx).sum()))


def _mat2gray(a):
    lo, hi = float(a.min()), float(a.max())
    out = np.zeros(a.shape)
    if hi > lo:
        for y in range(a.shape[0]):
            for x in range(a.shape[1]):
                out[y, x] = (a[y, x] - lo) / (hi - lo)
    return out


def _convolve_replicate(a, h):
    """MATLAB imfilter(a, h, 'replicate', 'conv'): out(y, x) = sum_ij h(i, j) a(y + half - i, x + half - j)."""
    half = h.shape[0] // 2
    padded = np.pad(a, half, mode="edge")
    flipped = h[::-1, ::-1]
    out = np.zeros(a.shape)
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            out[y, x] = float((flipped * padded[y : y + h.shape[0], x : x + h.shape[1]]).sum())
    return out


def _gradient_amplitude(alpha):
    hx = gaussian_derivative_filter()
    a = _mat2gray(np.asarray(alpha, np.float64))
    gx = _convolve_replicate(a, hx)
    gy = _convolve_replicate(a, hx.T)
    return np.sqrt(gx**2 + gy**2)


def gradient_error(pred, gt, trimap=None):
    region = _region(trimap, np.shape(pred))
    amp_p, amp_g = _gradient_amplitude(pred), _gradient_amplitude(gt)
    total = 0.0
    for y in range(region.shape[0]):
        for x in range(region.shape[1]):
            if region[y, x]:
                total += (amp_p[y, x] - amp_g[y, x]) ** 2
    return total / 1000.0


def largest_component(mask):
    """bool mask of the largest 4-connected component of True pixels; the first found (column-major scan)
    among equally large ones; all False when there is no True pixel."""
    height, width = mask.shape
    seen = np.zeros(mask.shape, bool)
    best = []
    for x in range(width):
        for y in range(height):
            if mask[y, x] and not seen[y, x]:
                component, queue = [], deque([(y, x)])
                seen[y, x] = True
                while queue:
                    cy, cx = queue.popleft()
                    component.append((cy, cx))
                    for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                        if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
                if len(component) > len(best):
                    best = component
    out = np.zeros(mask.shape, bool)
    for y, x in best:
        out[y, x] = True
    return out


def connectivity_error(pred, gt, trimap=None, step=0.1, theta=0.15):
    region = _region(trimap, np.shape(pred))
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    height, width = pred.shape
    level = np.full((height, width), -1.0)
    n = round(1.0 / step)
    for k in range(1, n + 1):
        t = np.float32(k / n)  # MATLAB compares single alphas with the threshold
        mask = np.zeros((height, width), bool)
        for y in range(height):
            for x in range(width):
                mask[y, x] = np.float32(pred[y, x]) >= t and np.float32(gt[y, x]) >= t
        omega = largest_component(mask)
        for y in range(height):
            for x in range(width):
                if level[y, x] == -1.0 and not omega[y, x]:
                    level[y, x] = (k - 1) / n
    total = 0.0
    for y in range(height):
        for x in range(width):
            l = 1.0 if level[y, x] == -1.0 else level[y, x]  # noqa: E741
            dp, dg = pred[y, x] - l, gt[y, x] - l
            phi_p = 1.0 - (dp if dp >= theta else 0.0)
            phi_g = 1.0 - (dg if dg >= theta else 0.0)
            if region[y, x]:
                total += abs(phi_p - phi_g)
    return total / 1000.0


def evaluate(pred, gt, trimap):
    """The eight numbers of jhuman.metrics.matting.evaluate, from the loops above (each map built twice)."""
    pixels = np.size(pred)
    out = {
        "sad": sad(pred, gt, trimap),
        "mse": mse(pred, gt, trimap),
        "grad": gradient_error(pred, gt, trimap),
        "conn": connectivity_error(pred, gt, trimap),
    }
    out["whole_sad"] = sad(pred, gt) * 1000.0 / pixels / 1e-3
    out["whole_mse"] = mse(pred, gt) / 1e-3
    out["whole_grad"] = gradient_error(pred, gt) * 1000.0 / pixels / 1e-5
    out["whole_conn"] = connectivity_error(pred, gt) * 1000.0 / pixels / 1e-5
    return out
