"""The Deep Image Matting metrics and SHM's whole-image protocol: hand-made cases with known values, the
vectorised code against the loop reference, regions, scores, table and input errors."""

import math

import cv2
import numpy as np
import pytest

from jhuman.metrics import matting
from jhuman.metrics import matting_reference as reference

H, W = 16, 32


def _step(column, height=H, width=W):
    """0 left of `column`, 1 from it on."""
    alpha = np.zeros((height, width))
    alpha[:, column:] = 1.0
    return alpha


def _disc(radius=10, size=32):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= radius**2).astype(np.float64)


def _step_amplitude(offsets, sigma=1.4):
    """|grad| of a unit step at offset o = column - edge column, from the filter's formula: the convolution of
    a step with gauss(row) * dgauss(column) is sum(gauss) * sum_{v <= o} dgauss(v) (factors L2-normalised)."""
    u = np.arange(-4, 5)
    gauss = np.exp(-(u**2) / (2 * sigma**2))
    dgauss = -u * gauss
    gauss, dgauss = gauss / np.linalg.norm(gauss), dgauss / np.linalg.norm(dgauss)
    return np.array([abs(gauss.sum() * dgauss[u <= o].sum()) for o in offsets])


def _soft_alpha(rng, shape, quantise):
    """A blurred random matte spanning [0, 1] and a noisy prediction of it."""
    gt = cv2.GaussianBlur(rng.random(shape), (0, 0), 2.0)
    gt = (gt - gt.min()) / (gt.max() - gt.min())
    pred = np.clip(gt + 0.25 * rng.standard_normal(shape), 0.0, 1.0)
    if quantise:  # as 8-bit PNGs give them: exact threshold hits (153 / 255 = 0.6) happen
        gt, pred = np.round(gt * 255) / 255, np.round(pred * 255) / 255
    trimap = np.where(gt > 0.8, 255, np.where(gt < 0.2, 0, 128)).astype(np.uint8)
    return pred, gt, trimap


# --- hand-made cases -------------------------------------------------------------------------------------
def test_step_edge_known_values():
    gt, pred = _step(12), _step(13)  # column 12 is 1 in gt, 0 in pred
    band = np.zeros((H, W), np.uint8)
    band[:, 10:15] = 128
    assert matting.sad(pred, gt) == pytest.approx(H / 1000)
    assert matting.sad(pred, gt, band) == pytest.approx(H / 1000)
    assert matting.mse(pred, gt) == pytest.approx(1 / W)
    assert matting.mse(pred, gt, band) == pytest.approx(1 / 5)
    # gradient: each row's amplitude profile, shifted by one column
    columns = np.arange(W)
    expected = H * np.sum((_step_amplitude(columns - 13) - _step_amplitude(columns - 12)) ** 2) / 1000
    assert expected > 0
    assert matting.gradient_error(pred, gt) == pytest.approx(expected, rel=1e-12)
    assert matting.gradient_error(pred.T, gt.T) == pytest.approx(expected, rel=1e-12)  # hy = hx^T
    # connectivity: columns >= 13 are one component at every threshold (level 1, phi 1 - 0 = 1 for both);
    # column 12 leaves it at t = 0.1 (level 0): phi(pred = 0) = 1, phi(gt = 1) = 0
    assert matting.connectivity_error(pred, gt) == pytest.approx(H / 1000)
    assert matting.connectivity_error(pred, gt, band) == pytest.approx(H / 1000)
    for metric in (matting.sad, matting.mse, matting.gradient_error, matting.connectivity_error):
        assert metric(gt, gt) == 0.0


def test_disc_known_values():
    disc = _disc()
    count = disc.sum()
    zeros = np.zeros_like(disc)
    assert matting.sad(zeros, disc) == pytest.approx(count / 1000)
    # nothing survives any threshold: every pixel gets level 0, phi(0) = 1, phi(1) = 0 on the disc
    assert matting.connectivity_error(zeros, disc) == pytest.approx(count / 1000)
    # a half-transparent disc: the disc is the component up to t = 0.5 and leaves at 0.6 (level 0.5):
    # phi(1) = 1 - 0.5, phi(0.5) = 1 - 0 (0 < theta)
    half = 0.5 * disc
    assert matting.connectivity_error(disc, half) == pytest.approx(0.5 * count / 1000)
    assert matting.sad(disc, half) == pytest.approx(0.5 * count / 1000)
    assert matting.mse(disc, half) == pytest.approx(0.25 * count / disc.size)
    # min-max normalisation: any scaled and shifted disc has the disc's gradients
    assert matting.gradient_error(half, disc) == pytest.approx(0.0, abs=1e-15)
    assert matting.gradient_error(0.2 + 0.6 * disc, disc) == pytest.approx(0.0, abs=1e-15)
    # a constant alpha has no gradient: the error is the disc's squared amplitude, symmetric
    grad = matting.gradient_error(zeros, disc)
    assert grad > 0 and grad == pytest.approx(matting.gradient_error(disc, zeros))
    assert grad == pytest.approx(reference.gradient_error(zeros, disc), rel=1e-12)


def _squares(spec, size=32):
    """pred, gt with squares (top, left, side, pred value), gt = 1 on each square, 0 elsewhere."""
    pred, gt = np.zeros((size, size)), np.zeros((size, size))
    for top, left, side, value in spec:
        gt[top : top + side, left : left + side] = 1.0
        pred[top : top + side, left : left + side] = value
    return pred, gt


def test_connectivity_takes_the_largest_foreground_component_not_the_background():
    # A: 6x6, pred 0.65; B: 3x3, pred 1; background 1024 - 45 pixels, far larger than A.
    # t <= 0.6: A and B are components, A the largest: B (and the background) get level 0.
    # t = 0.7: only B is left: A gets level 0.6, so phi(pred) = 1 (0.05 < theta), phi(gt) = 1 - 0.4.
    # Taking the background as "largest" would give A level 0: 36 * (0.35) instead of 36 * 0.4.
    pred, gt = _squares([(4, 4, 6, 0.65), (20, 20, 3, 1.0)])
    assert matting.connectivity_error(pred, gt) == pytest.approx(36 * 0.4 / 1000)
    assert reference.connectivity_error(pred, gt) == pytest.approx(36 * 0.4 / 1000)
    assert matting.sad(pred, gt) == pytest.approx(36 * 0.35 / 1000)


@pytest.mark.parametrize(
    "spec, expected",
    [
        # equal 4x4 squares up to t = 0.6; bwconncomp numbers in column-major order: the LEFT one (rows
        # 20-23, cols 2-5, pred 0.65) wins, not the upper one (rows 2-5, cols 20-23, pred 0.88):
        # left: level 0.6 -> 0.4; upper: level 0 -> 1 - (1 - 0.12) = 0.12
        ([(20, 2, 4, 0.65), (2, 20, 4, 0.88)], 16 * (0.4 + 0.12) / 1000),
        # same leftmost column: the upper one (pred 0.88) wins: lower gets level 0 -> 0.35; upper leaves at
        # t = 0.9 (level 0.8) -> 0.2
        ([(20, 2, 4, 0.65), (2, 2, 4, 0.88)], 16 * (0.35 + 0.2) / 1000),
    ],
)
def test_connectivity_ties_follow_matlab_order(spec, expected):
    pred, gt = _squares(spec)
    assert matting.connectivity_error(pred, gt) == pytest.approx(expected)
    assert reference.connectivity_error(pred, gt) == pytest.approx(expected)


def test_threshold_hits_count_in_single_precision():
    # 153 / 255 is exactly 0.6: it passes t = 0.6 as float64 or float32 (MATLAB compares singles)
    pred, gt = _squares([(4, 4, 6, 153 / 255), (20, 20, 3, 1.0)])
    want = 36 * (1 - 0.6) / 1000  # A leaves at t = 0.7: level 0.6, phi(pred) = 1, phi(gt) = 0.6
    assert matting.connectivity_error(pred, gt) == pytest.approx(want)
    assert matting.connectivity_error(pred.astype(np.float32), gt.astype(np.float32)) == pytest.approx(want)


def test_filter_is_the_dim_gaussian_derivative():
    g, d = matting.gaussian_derivative_kernels()
    assert g.shape == d.shape == (9,)  # half size 4 for sigma 1.4
    hx = reference.gaussian_derivative_filter()
    np.testing.assert_allclose(np.outer(g, d), hx, atol=1e-15)
    assert np.sum(hx**2) == pytest.approx(1.0)
    assert hx[4, 3] > 0 > hx[4, 5]  # dgauss(u) = -u gauss(u) / sigma^2


# --- vectorised == reference -----------------------------------------------------------------------------
@pytest.mark.parametrize("quantise", [False, True])
def test_vectorised_equals_reference_on_random_soft_alphas(quantise):
    rng = np.random.default_rng(7 + quantise)
    pred, gt, trimap = _soft_alpha(rng, (29, 38), quantise)
    assert 0 < (trimap == 128).sum() < trimap.size
    got, want = matting.evaluate(pred, gt, trimap), reference.evaluate(pred, gt, trimap)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-10, abs=1e-15), key
    for name in ("sad", "mse", "gradient_error", "connectivity_error"):
        assert getattr(matting, name)(pred, gt) == pytest.approx(
            getattr(reference, name)(pred, gt), rel=1e-10
        )


def test_random_noise_many_components():
    # unblurred noise: many small components per threshold, so ties for the largest are frequent
    rng = np.random.default_rng(3)
    pred, gt = rng.random((14, 15)), rng.random((14, 15))
    assert matting.connectivity_error(pred, gt) == pytest.approx(reference.connectivity_error(pred, gt))


# --- regions ---------------------------------------------------------------------------------------------
def test_trimap_region_versus_whole_image():
    rng = np.random.default_rng(1)
    pred, gt, trimap = _soft_alpha(rng, (20, 24), quantise=False)
    metrics = (matting.sad, matting.gradient_error, matting.connectivity_error)
    unknown = np.full(trimap.shape, 128, np.uint8)
    for metric in metrics + (matting.mse,):
        assert metric(pred, gt, unknown) == pytest.approx(metric(pred, gt))  # all unknown = whole image
        assert metric(pred, gt, np.zeros_like(trimap)) == 0.0  # no unknown pixel
    # the maps never see the trimap: a region and its complement add up to the whole image
    inside = np.where(trimap == 128, 128, 0).astype(np.uint8)
    outside = np.where(trimap == 128, 0, 128).astype(np.uint8)
    for metric in metrics:
        parts = metric(pred, gt, inside) + metric(pred, gt, outside)
        assert parts == pytest.approx(metric(pred, gt))
        assert 0 < metric(pred, gt, inside) < metric(pred, gt)
    region = trimap == 128
    assert matting.sad(pred, gt, trimap) == pytest.approx(np.abs(pred - gt)[region].sum() / 1000)
    assert matting.mse(pred, gt, trimap) == pytest.approx(np.mean((pred - gt)[region] ** 2))
    # only 128 is unknown (DIM: trimap == 128)
    assert matting.sad(pred, gt, np.full(trimap.shape, 127, np.uint8)) == 0.0


# --- evaluate, scores, table -----------------------------------------------------------------------------
def test_evaluate_keys_and_whole_image_scaling():
    rng = np.random.default_rng(2)
    pred, gt, trimap = _soft_alpha(rng, (18, 22), quantise=True)
    scores = matting.evaluate(
        pred.astype(np.float32)[..., None], gt, trimap
    )  # (H, W, 1) and float32 accepted
    assert set(scores) == {"sad", "mse", "grad", "conn", "whole_sad", "whole_mse", "whole_grad", "whole_conn"}
    assert all(type(v) is float for v in scores.values())
    pixels = pred.size
    assert scores["sad"] == pytest.approx(matting.sad(pred, gt, trimap), rel=1e-6)
    assert scores["conn"] == pytest.approx(matting.connectivity_error(pred, gt, trimap))
    assert scores["whole_sad"] == pytest.approx(np.abs(pred - gt).mean() / 1e-3, rel=1e-6)
    assert scores["whole_mse"] == pytest.approx(np.mean((pred - gt) ** 2) / 1e-3, rel=1e-6)
    assert scores["whole_grad"] == pytest.approx(
        matting.gradient_error(pred, gt) * 1000 / pixels / 1e-5, rel=1e-6
    )
    assert scores["whole_conn"] == pytest.approx(matting.connectivity_error(pred, gt) * 1000 / pixels / 1e-5)
    whole = matting.evaluate(pred, gt, None)  # no trimap: DIM's sums over the whole image
    assert whole["sad"] == pytest.approx(matting.sad(pred, gt))


def test_matting_scores_means_over_images():
    rng = np.random.default_rng(4)
    acc = matting.MattingScores()
    empty = acc.result()
    assert empty["count"] == 0 and math.isnan(empty["sad"])
    images = [_soft_alpha(rng, shape, quantise=False) for shape in ((12, 16), (20, 14), (16, 16))]
    per_image = [acc.add(*image) for image in images]
    result = acc.result()
    assert result["count"] == 3
    for key in matting.MattingScores.KEYS:
        assert result[key] == pytest.approx(np.mean([s[key] for s in per_image]))
    assert per_image[1] == matting.evaluate(*images[1])


def test_format_table_shows_both_protocols():
    result = {"sad": 12.3456, "mse": 0.0061, "grad": 9.5, "conn": 11.25, "count": 7}
    result.update({"whole_sad": 3.833, "whole_mse": 1.534, "whole_grad": 5.179, "whole_conn": 36.513})
    table = matting.format_table(result)
    lines = table.splitlines()
    dim = next(line for line in lines if line.startswith("DIM"))
    shm = next(line for line in lines if line.startswith("SHM"))
    assert "12.346" in dim and "6.100" in dim and "9.500" in dim and "11.250" in dim  # MSE printed x1e3
    assert all(v in shm for v in ("3.833", "1.534", "5.179", "36.513"))
    assert "whole image" in shm and "unknown region" in dim
    assert lines[-1] == "images: 7"
    nan_table = matting.format_table(matting.MattingScores().result())
    assert "-" in nan_table.splitlines()[2] and "images: 0" in nan_table


# --- bad input -------------------------------------------------------------------------------------------
def test_errors_name_the_argument():
    alpha = np.zeros((8, 8))
    trimap = np.full((8, 8), 128, np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        matting.sad(alpha, np.zeros((8, 9)))
    with pytest.raises(ValueError, match=r"pred values must lie in \[0, 1\]"):
        matting.evaluate(alpha + 1.5, alpha, trimap)
    with pytest.raises(ValueError, match=r"gt values must lie in \[0, 1\]"):
        matting.connectivity_error(alpha, alpha - 0.1)
    with pytest.raises(ValueError, match="gt holds NaN"):
        matting.mse(alpha, np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="pred must be a float alpha.*uint8"):
        matting.sad(np.zeros((8, 8), np.uint8), alpha)
    with pytest.raises(ValueError, match=r"pred must be an alpha of shape \(H, W\)"):
        matting.sad(np.zeros((8, 8, 3)), alpha)
    with pytest.raises(ValueError, match="trimap must be uint8 0..255.*float"):
        matting.gradient_error(alpha, alpha, trimap / 255.0)
    with pytest.raises(ValueError, match=r"trimap must be uint8 0..255.*\[0, 300\]"):
        bad = np.full((8, 8), 300, np.int32)
        bad[0, 0] = 0
        matting.sad(alpha, alpha, bad)
    with pytest.raises(ValueError, match="trimap shape"):
        matting.evaluate(alpha, alpha, trimap[:4])
    with pytest.raises(ValueError, match="trimap must be uint8"):
        matting.MattingScores().add(alpha, alpha, trimap.astype(bool))
