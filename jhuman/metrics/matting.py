"""Alpha-matting evaluation: the Deep Image Matting metrics (Xu et al., CVPR 2017, the DIM MATLAB evaluation
code by Ning Xu) and Semantic Human Matting's whole-image per-pixel protocol (Chen et al., ACM MM 2018).

Inputs: `pred` and `gt` float alphas in [0, 1] of shape (H, W) (a trailing channel of 1 is accepted);
`trimap` uint8 (H, W) (any integer dtype holding 0..255 is taken) with 128 = unknown (DIM compares with
exactly 128: other grey values are not scored), or None for the whole image. Every metric first builds a
per-pixel error map over the WHOLE image (gradients and connected components never see the trimap) and then
sums it over the region, as the MATLAB code does.

  SAD  = sum_region |p - g| / 1000
  MSE  = sum_region (p - g)^2 / |region|                 (papers print it x1e3; an empty region gives 0.0
                                                          where MATLAB's 0/0 gives NaN, so means stay finite)
  Grad = sum_region (|grad p~| - |grad g~|)^2 / 1000     p~ = min-max normalised p (MATLAB mat2gray; a
         constant alpha has zero gradient), grad = convolution with the first derivative of a Gaussian,
         sigma 1.4: hx(i, j) = gauss(u_i) dgauss(u_j), u = -4..4 (half size ceil(sigma sqrt(-2 ln(sqrt(2 pi)
         sigma 0.01))) = 4), hx / ||hx||_2, hy = hx^T, borders replicated (MATLAB imfilter 'replicate','conv').
  Conn = sum_region |phi(p) - phi(g)| / 1000, with for t = 0.1, 0.2, ..., 1.0 the LARGEST 4-connected
         component of (p >= t) & (g >= t) (a component of foreground pixels, never the background; ties go to
         the component met first in column-major order, as MATLAB's bwconncomp + max): every pixel not yet
         given a level and outside it gets l = t - 0.1; pixels never given one get l = 1;
         phi(x) = 1 - (x - l) [x - l >= 0.15]. The threshold tests run in single precision as in the MATLAB
         code (its alphas are single), so an alpha of 153/255 passes t = 0.6 whether it arrives as float32 or
         float64.

Where we differ from the MATLAB code: the error maps are computed in float64 (MATLAB: single), so the two differ
only by single-precision rounding. The MATLAB inputs are uint8 0..255 divided by 255; ours are already in [0, 1].

SHM's tables (its Table 2, 3, 5) instead average each per-pixel error over the ENTIRE image (no trimap) and
print it in units: SAD x1e-3, MSE x1e-3, Grad x1e-5, Conn x1e-5. `evaluate` returns those numbers exactly as
the table prints them:
  whole_sad  = 1e3 * sum_image |p - g| / (H W)
  whole_mse  = 1e3 * sum_image (p - g)^2 / (H W)
  whole_grad = 1e5 * sum_image (|grad p~| - |grad g~|)^2 / (H W)
  whole_conn = 1e5 * sum_image |phi(p) - phi(g)| / (H W)
(no DIM /1000 in these), so SHM's own row reads 3.833 / 1.534 / 5.179 / 36.513. Pass the image without any
padding: padded pixels would count in H W.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

UNKNOWN_VALUE = 128  # trimap value of the unknown region (DIM: trimap == 128)
SIGMA = 1.4  # gradient filter
STEP = 0.1  # connectivity thresholds 0.1, 0.2, ..., 1.0
THETA = 0.15  # connectivity: phi's tolerance
REGION_KEYS = ("sad", "mse", "grad", "conn")
WHOLE_KEYS = ("whole_sad", "whole_mse", "whole_grad", "whole_conn")
# SHM's table units: the value printed is the per-pixel mean divided by these
WHOLE_UNITS = {"whole_sad": 1e-3, "whole_mse": 1e-3, "whole_grad": 1e-5, "whole_conn": 1e-5}


# --- input checks ----------------------------------------------------------------------------------------
def _alpha(x, name: str) -> np.ndarray:
    """A float alpha in [0, 1], (H, W) or (H, W, 1) -> float64 (H, W); ValueError naming `name` otherwise."""
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"{name} must be an alpha of shape (H, W) or (H, W, 1), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name} must be a float alpha in [0, 1], got dtype {x.dtype} (divide 0..255 mattes by 255)"
        )
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1], got [{lo:g}, {hi:g}]")
    return x.astype(np.float64)


def _inputs(pred, gt, trimap):
    """Checked (pred, gt, region): region a bool (H, W) mask of the unknown pixels or None (whole image)."""
    pred, gt = _alpha(pred, "pred"), _alpha(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    if trimap is None:
        return pred, gt, None
    trimap = np.asarray(trimap)
    if trimap.ndim == 3 and trimap.shape[-1] == 1:
        trimap = trimap[..., 0]
    if trimap.shape != pred.shape:
        raise ValueError(f"trimap shape {trimap.shape} differs from the alphas' {pred.shape}")
    if not np.issubdtype(trimap.dtype, np.integer):
        raise ValueError(f"trimap must be uint8 0..255 (128 = unknown), got dtype {trimap.dtype}")
    if trimap.min() < 0 or trimap.max() > 255:
        raise ValueError(f"trimap must be uint8 0..255 (128 = unknown), got [{trimap.min()}, {trimap.max()}]")
    return pred, gt, trimap == UNKNOWN_VALUE


def _sum(error_map: np.ndarray, region) -> float:
    return float(error_map.sum() if region is None else error_map[region].sum())


# --- per-pixel error maps (whole image) ----------------------------------------------------------------
def gaussian_derivative_kernels(sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The DIM gradient filter in separable form: hx = outer(g, d) (rows: Gaussian, columns: its derivative),
    both 1-D factors unit L2 norm so ||hx||_2 = 1. Returns (g, d), each (2 half + 1,), u = -half..half."""
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * 1e-2)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))
    dgauss = -u * gauss / sigma**2
    return gauss / np.linalg.norm(gauss), dgauss / np.linalg.norm(dgauss)


def _normalise(alpha: np.ndarray) -> np.ndarray:
    """MATLAB mat2gray: min-max to [0, 1]; a constant alpha -> zeros (its gradient is zero either way)."""
    lo, hi = alpha.min(), alpha.max()
    return (alpha - lo) / (hi - lo) if hi > lo else np.zeros_like(alpha)


def _gradient_magnitude(alpha: np.ndarray) -> np.ndarray:
    """|(conv(a, hx), conv(a, hy))| with replicated borders, a = mat2gray(alpha); (H, W) float64."""
    g, d = gaussian_derivative_kernels()
    a = _normalise(alpha)
    # cv2 filters correlate; a convolution flips the kernel: g is even, d odd, hence -d
    gx = cv2.sepFilter2D(a, cv2.CV_64F, kernelX=-d, kernelY=g, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(a, cv2.CV_64F, kernelX=g, kernelY=-d, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx**2 + gy**2)


def gradient_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(|grad pred~| - |grad gt~|)^2 per pixel, (H, W) float64 (checked float64 alphas)."""
    return (_gradient_magnitude(pred) - _gradient_magnitude(gt)) ** 2


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """bool (H, W): the largest 4-connected component of the True pixels (none when there are none). Label 0
    (the False pixels) is never a candidate. Equal sizes: the component whose first pixel in column-major
    order comes first (MATLAB's bwconncomp numbers components in that order; max picks the first)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S
    )
    if count <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = np.flatnonzero(areas == areas.max()) + 1
    if len(best) > 1:  # a tie: first in column-major order = leftmost column, then topmost pixel in it
        left = stats[best, cv2.CC_STAT_LEFT]
        best = best[left == left.min()]
        column = labels[:, left.min()]
        best = best[np.argmin([np.argmax(column == k) for k in best])]
    else:
        best = best[0]
    return labels == best


def connectivity_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """|phi(pred) - phi(gt)| per pixel, (H, W) float64 (checked float64 alphas); see the module docstring.

    A pixel's level is t - 0.1 at the first threshold t where it is outside the largest component, 1 if there
    is none: with steps = how many thresholds in a row (from 0.1) kept it inside, level = steps * 0.1 in both
    cases. Everything outside the bounding box of the first threshold's mask (which holds every later mask)
    has level 0, so the components are searched inside that box only. One connected-components call per
    threshold (at most 10, fewer when no pixel is left inside), no loop over pixels."""
    p32, g32 = pred.astype(np.float32), gt.astype(np.float32)
    n = round(1.0 / STEP)
    level = np.zeros(pred.shape)
    first = (p32 >= np.float32(1 / n)) & (g32 >= np.float32(1 / n))
    rows, cols = np.flatnonzero(first.any(axis=1)), np.flatnonzero(first.any(axis=0))
    if rows.size:
        box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        p32, g32 = p32[box], g32[box]
        inside = np.ones(p32.shape, bool)  # in the largest component at every threshold so far
        steps = np.zeros(p32.shape, np.uint8)
        for k in range(1, n + 1):
            t = np.float32(k / n)
            inside &= _largest_component((p32 >= t) & (g32 >= t))
            if not inside.any():
                break
            steps += inside
        level[box] = steps / n
    dp, dg = pred - level, gt - level
    phi_p = 1.0 - dp * (dp >= THETA)
    phi_g = 1.0 - dg * (dg >= THETA)
    return np.abs(phi_p - phi_g)


# --- the four metrics ------------------------------------------------------------------------------------
def sad(pred, gt, trimap=None) -> float:
    """Sum of absolute differences over the unknown region (or the whole image) / 1000 (DIM)."""
    pred, gt, region = _inputs(pred, gt, trimap)
    return _sum(np.abs(pred - gt), region) / 1000.0


def mse(pred, gt, trimap=None) -> float:
    """Mean squared difference over the unknown region (or the whole image); 0.0 for an empty region."""
    pred, gt, region = _inputs(pred, gt, trimap)
    pixels = pred.size if region is None else int(region.sum())
    return _sum((pred - gt) ** 2, region) / pixels if pixels else 0.0


def gradient_error(pred, gt, trimap=None) -> float:
    """DIM gradient error (module docstring) over the unknown region (or the whole image) / 1000."""
    pred, gt, region = _inputs(pred, gt, trimap)
    return _sum(gradient_map(pred, gt), region) / 1000.0


def connectivity_error(pred, gt, trimap=None) -> float:
    """DIM connectivity error (step 0.1, theta 0.15; module docstring) over the unknown region (or the whole
    image) / 1000."""
    pred, gt, region = _inputs(pred, gt, trimap)
    return _sum(connectivity_map(pred, gt), region) / 1000.0


def evaluate(pred, gt, trimap) -> dict:
    """All metrics of one image, each error map computed once. Returns plain floats:
    "sad", "mse", "grad", "conn": DIM over the trimap's unknown region (trimap None: the whole image);
    "whole_sad", "whole_mse", "whole_grad", "whole_conn": SHM's whole-image per-pixel means in its table's
    units (module docstring). pred, gt float (H, W) in [0, 1] without padding; trimap uint8 (H, W)."""
    pred, gt, region = _inputs(pred, gt, trimap)
    maps = {
        "sad": np.abs(pred - gt),
        "mse": (pred - gt) ** 2,
        "grad": gradient_map(pred, gt),
        "conn": connectivity_map(pred, gt),
    }
    pixels = pred.size if region is None else int(region.sum())
    out = {}
    for key, error_map in maps.items():
        total = _sum(error_map, region)
        if key == "mse":
            out[key] = total / pixels if pixels else 0.0
        else:
            out[key] = total / 1000.0
    for key, error_map in maps.items():
        out[f"whole_{key}"] = float(error_map.mean()) / WHOLE_UNITS[f"whole_{key}"]
    return out


class MattingScores:
    """Means over images of `evaluate`'s eight numbers (each image weighs the same, as DIM and SHM average).

    scores = MattingScores(); scores.add(pred, gt, trimap) per image; scores.result() -> dict of the eight
    means plus "count" (means are NaN while count is 0)."""

    KEYS = REGION_KEYS + WHOLE_KEYS

    def __init__(self):
        self.sums = dict.fromkeys(self.KEYS, 0.0)
        self.count = 0

    def add(self, pred, gt, trimap) -> dict:
        """Scores one image (see `evaluate`) and returns its dict."""
        scores = evaluate(pred, gt, trimap)
        for key in self.KEYS:
            self.sums[key] += scores[key]
        self.count += 1
        return scores

    def result(self) -> dict:
        out = {key: (total / self.count if self.count else float("nan")) for key, total in self.sums.items()}
        out["count"] = self.count
        return out


def format_table(result: dict) -> str:
    """Both protocols as rows of SAD / MSE / Grad / Conn, in the units the papers print: DIM's trimap-region
    row (SAD, Grad, Conn / 1000 as stored; MSE x1e3) and SHM's whole-image per-pixel row (as stored: SAD x1e-3,
    MSE x1e-3, Grad x1e-5, Conn x1e-5), then the number of images when `result` has a count."""

    def cell(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    rows = (
        (
            "DIM, trimap unknown region",
            [result.get(k) for k in REGION_KEYS],
            "SAD, Grad, Conn / 1e3; MSE x1e3",
        ),
        (
            "SHM, whole image per pixel",
            [result.get(k) for k in WHOLE_KEYS],
            "SAD, MSE in 1e-3; Grad, Conn in 1e-5",
        ),
    )
    mse_index = REGION_KEYS.index("mse")
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'protocol':<{width}}  {'SAD':>9} {'MSE':>9} {'Grad':>9} {'Conn':>9}  units"]
    lines.append("-" * len(lines[0]))
    for i, (name, values, units) in enumerate(rows):
        if i == 0 and values[mse_index] is not None:
            values[mse_index] = values[mse_index] * 1e3
        lines.append(f"{name:<{width}}  " + " ".join(f"{cell(v):>9}" for v in values) + f"  {units}")
    if "count" in result:
        lines.append(f"images: {result['count']}")
    return "\n".join(lines)
