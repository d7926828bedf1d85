"""jhuman.ops.matting (trimap codes, argmax pooling / unpooling, fusion, losses) and
jhuman.ops.image.crop_and_resize / adaptive_average_pool against plain numpy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.ops import image, matting

# --- numpy references -------------------------------------------------------------------------------------------


def numpy_pool_with_argmax(x):
    """2x2 stride-2 max-pool, first maximum in row-major window order, flat index h * W + w."""
    b, height, width, c = x.shape
    pooled = np.zeros((b, height // 2, width // 2, c), x.dtype)
    indices = np.zeros((b, height // 2, width // 2, c), np.int64)
    for n in range(b):
        for i in range(height // 2):
            for j in range(width // 2):
                for ch in range(c):
                    best = None
                    for dy in range(2):
                        for dx in range(2):
                            value = x[n, 2 * i + dy, 2 * j + dx, ch]
                            if best is None or value > best:
                                best = value
                                indices[n, i, j, ch] = (2 * i + dy) * width + 2 * j + dx
                    pooled[n, i, j, ch] = best
    return pooled, indices


def numpy_unpool(x, indices, out_hw):
    b, h, w, c = x.shape
    out = np.zeros((b, *out_hw, c), x.dtype)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    k = indices[n, i, j, ch]
                    out[n, k // out_hw[1], k % out_hw[1], ch] = x[n, i, j, ch]
    return out


def numpy_charbonnier(d, eps=1e-6):
    return np.sqrt(np.asarray(d, np.float64) ** 2 + eps**2)


def numpy_prediction_loss(alpha_p, alpha_g, fg, bg, has, weights, gamma=0.5, eps=1e-6):
    """Per pixel gamma rho(da) + (1 - gamma) mean_rgb rho(dc), or rho(da) alone without F/B; weighted mean."""
    total = weight_sum = 0.0
    b, height, width = alpha_p.shape[:3]
    for n in range(b):
        for y in range(height):
            for x in range(width):
                a_p, a_g = float(alpha_p[n, y, x, 0]), float(alpha_g[n, y, x, 0])
                term = numpy_charbonnier(a_p - a_g, eps)
                if has[n]:
                    f, bk = fg[n, y, x].astype(np.float64), bg[n, y, x].astype(np.float64)
                    c_p, c_g = a_p * f + (1 - a_p) * bk, a_g * f + (1 - a_g) * bk
                    term = gamma * term + (1 - gamma) * np.mean(numpy_charbonnier(c_p - c_g, eps))
                total += weights[n, y, x, 0] * term
                weight_sum += weights[n, y, x, 0]
    return total / weight_sum


def numpy_crop_and_resize(images, windows, out_size):
    """Edge-padded crop of each window, then bilinear with half-pixel centres clamped to the crop."""
    b, height, width, c = images.shape
    out = np.zeros((b, out_size, out_size, c), np.float64)
    for n in range(b):
        y0, x0, size = windows[n]
        rows = np.clip(np.arange(y0, y0 + size), 0, height - 1)
        cols = np.clip(np.arange(x0, x0 + size), 0, width - 1)
        crop = images[n][rows][:, cols].astype(np.float64)  # (size, size, C), edges replicated
        for i in range(out_size):
            for j in range(out_size):
                sy = min(max((i + 0.5) * size / out_size - 0.5, 0.0), size - 1.0)
                sx = min(max((j + 0.5) * size / out_size - 0.5, 0.0), size - 1.0)
                ya, xa = int(np.floor(sy)), int(np.floor(sx))
                yb, xb = min(ya + 1, size - 1), min(xa + 1, size - 1)
                fy, fx = sy - ya, sx - xa
                out[n, i, j] = (
                    (1 - fy) * (1 - fx) * crop[ya, xa]
                    + (1 - fy) * fx * crop[ya, xb]
                    + fy * (1 - fx) * crop[yb, xa]
                    + fy * fx * crop[yb, xb]
                )
    return out


# --- trimap codes -----------------------------------------------------------------------------------------------


def test_trimap_codes_round_trip_in_classes_order():
    assert matting.CLASSES == ("background", "unknown", "foreground")
    assert (matting.BACKGROUND, matting.UNKNOWN, matting.FOREGROUND) == (0, 1, 2)
    values = np.array([[0, 128, 255], [1, 127, 254]], np.uint8)
    expected = np.array([[0, 1, 2], [1, 1, 1]], np.int32)
    for x in (values, jnp.asarray(values)):
        classes = matting.trimap_classes(x)
        np.testing.assert_array_equal(classes, expected)
        assert classes.dtype == np.int32
    back = matting.trimap_values(expected[:1])
    np.testing.assert_array_equal(back, [[0, 128, 255]])
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(matting.trimap_values(jnp.asarray([2, 1, 0])), [255, 128, 0])


def test_single_trimap_channel_is_the_trimap_code_over_255():
    probs = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.2, 0.3, 0.5]], np.float32)
    np.testing.assert_allclose(matting.trimap_input(probs, 1)[:, 0], [0, 0.5, 1, 0.65], rtol=1e-6)
    assert matting.trimap_input(probs, 3) is probs
    with pytest.raises(ValueError, match="trimap channels"):
        matting.trimap_input(probs, 2)


# --- pooling and unpooling ------------------------------------------------------------------------------------


def tied_input(shape, seed=0):
    """Small integers: most 2x2 windows hold tied maxima (as after a ReLU's zeros)."""
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.float32)


def test_max_pool_with_argmax_matches_numpy_with_ties():
    x = tied_input((2, 6, 8, 3))
    pooled, indices = jax.jit(matting.max_pool_with_argmax)(x)
    ref_pooled, ref_indices = numpy_pool_with_argmax(x)
    np.testing.assert_array_equal(pooled, ref_pooled)
    np.testing.assert_array_equal(indices, ref_indices)
    assert indices.dtype == jnp.int32
    windows = x.reshape(2, 3, 2, 4, 2, 3)
    tied = (windows == windows.max(axis=(2, 4), keepdims=True)).sum(axis=(2, 4)) > 1
    assert tied.mean() > 0.3  # the case is exercised
    with pytest.raises(ValueError, match="even"):
        matting.max_pool_with_argmax(np.zeros((1, 5, 4, 1), np.float32))


def test_pooling_gradient_goes_to_the_first_maximum_only():
    x = np.zeros((1, 2, 2, 1), np.float32)  # four tied maxima
    grad = jax.grad(lambda v: matting.max_pool_with_argmax(v)[0].sum())(x)
    np.testing.assert_array_equal(grad[0, :, :, 0], [[1, 0], [0, 0]])


def test_max_unpool_matches_numpy_loop_under_jit():
    x = tied_input((2, 8, 6, 4), seed=1)
    _, indices = matting.max_pool_with_argmax(x)
    values = np.random.default_rng(2).normal(size=indices.shape).astype(np.float32)
    unpool = jax.jit(matting.max_unpool, static_argnums=2)
    got = unpool(values, indices, (8, 6))
    np.testing.assert_array_equal(got, numpy_unpool(values, np.asarray(indices), (8, 6)))
    # any position of each window (not only pooled ones), and the gradient: the placed positions' cotangent
    rng = np.random.default_rng(3)
    dy, dx = rng.integers(0, 2, (2, 2, 4, 3, 4)), rng.integers(0, 2, (2, 2, 4, 3, 4))
    rows = 2 * np.arange(4)[None, :, None, None] + dy[0]
    cols = 2 * np.arange(3)[None, None, :, None] + dx[0]
    free = (rows * 6 + cols).astype(np.int32)
    np.testing.assert_array_equal(unpool(values, free, (8, 6)), numpy_unpool(values, free, (8, 6)))
    cotangent = rng.normal(size=(2, 8, 6, 4)).astype(np.float32)
    grad = jax.grad(lambda v: jnp.sum(matting.max_unpool(v, free, (8, 6)) * cotangent))(values)
    flat = cotangent.transpose(0, 3, 1, 2).reshape(2, 4, 48)
    expected = np.take_along_axis(flat, free.transpose(0, 3, 1, 2).reshape(2, 4, 12), axis=2)
    np.testing.assert_allclose(grad, expected.reshape(2, 4, 4, 3).transpose(0, 2, 3, 1), rtol=1e-6)
    with pytest.raises(ValueError, match="twice"):
        matting.max_unpool(values, indices, (8, 7))


def test_unpool_of_pool_keeps_the_maxima_in_place():
    x = np.random.default_rng(4).normal(size=(1, 4, 4, 2)).astype(np.float32)
    pooled, indices = matting.max_pool_with_argmax(x)
    restored = np.asarray(matting.max_unpool(pooled, indices, (4, 4)))
    kept = restored != 0
    np.testing.assert_array_equal(restored[kept], x[kept])
    assert kept.sum() == 8  # one per window and channel


# --- fusion -----------------------------------------------------------------------------------------------------


def test_fusion_reads_foreground_and_unknown_in_classes_order():
    probs = np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1], [0.0, 0.0, 1.0]], np.float32)  # (Bs, Us, Fs)
    alpha_r = np.array([[0.5], [0.25], [0.9]], np.float32)
    fused = np.asarray(matting.fuse(probs, alpha_r))
    np.testing.assert_allclose(fused[:, 0], [0.3 + 0.6 * 0.5, 0.1 + 0.2 * 0.25, 1.0], rtol=1e-6)
    swapped = probs[:, 1] + probs[:, 2] * alpha_r[:, 0]  # the ports' reading: 0.75 for the first pixel
    assert abs(fused[0, 0] - swapped[0]) > 0.1
    # the paper's second form: (1 - Us) Fs / (Fs + Bs) + Us alpha_r
    bs, us, fs = probs[:2].T
    np.testing.assert_allclose(fused[:2, 0], (1 - us) * fs / (fs + bs) + us * alpha_r[:2, 0], rtol=1e-5)


# --- losses -----------------------------------------------------------------------------------------------------


def test_charbonnier_and_composite():
    d = np.array([0.0, 1e-3, -0.5, 2.0], np.float32)
    np.testing.assert_allclose(matting.charbonnier(d), numpy_charbonnier(d), rtol=1e-6)
    assert float(matting.charbonnier(0.0)) == pytest.approx(1e-6)
    assert float(matting.charbonnier(0.0, eps=1e-3)) == pytest.approx(1e-3)
    rng = np.random.default_rng(0)
    alpha, fg, bg = rng.uniform(size=(2, 3, 1)), rng.uniform(size=(2, 3, 3)), rng.uniform(size=(2, 3, 3))
    np.testing.assert_allclose(matting.composite(alpha, fg, bg), alpha * fg + (1 - alpha) * bg, rtol=1e-6)


def loss_inputs(seed=0, b=3, size=5):
    rng = np.random.default_rng(seed)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    alpha_p = f32(rng.uniform(size=(b, size, size, 1)))
    alpha_g = f32(rng.uniform(size=(b, size, size, 1)))
    fg, bg = f32(rng.uniform(size=(b, size, size, 3))), f32(rng.uniform(size=(b, size, size, 3)))
    weights = np.ones((b, size, size, 1), np.float32)
    weights[0, 3:] = 0  # padding rows
    return alpha_p, alpha_g, fg, bg, weights


def test_prediction_loss_matches_numpy_with_and_without_foreground_background():
    alpha_p, alpha_g, fg, bg, weights = loss_inputs()
    has = np.array([True, False, True])
    loss_fn = jax.jit(matting.prediction_loss)
    loss, parts = loss_fn(alpha_p, alpha_g, fg, bg, has, weights)
    np.testing.assert_allclose(loss, numpy_prediction_loss(alpha_p, alpha_g, fg, bg, has, weights), rtol=1e-5)
    np.testing.assert_allclose(parts["alpha_loss"] + parts["composition_loss"], loss, rtol=1e-6)
    # gamma = 0.3, no weights: every pixel counts
    loss3, _ = matting.prediction_loss(alpha_p, alpha_g, fg, bg, has, gamma=0.3)
    ones = np.ones_like(weights)
    np.testing.assert_allclose(
        loss3, numpy_prediction_loss(alpha_p, alpha_g, fg, bg, has, ones, gamma=0.3), rtol=1e-5
    )
    # without F, B the example's loss ignores fg / bg; with them it does not
    other_fg, other_bg = fg.copy(), bg.copy()
    other_fg[1], other_bg[1] = fg[1] ** 2, 0.3 * bg[1]
    np.testing.assert_allclose(
        loss_fn(alpha_p, alpha_g, other_fg, other_bg, has, weights)[0], loss, rtol=1e-6
    )
    all_have = np.ones(3, bool)
    assert (
        abs(
            float(loss_fn(alpha_p, alpha_g, other_fg, other_bg, all_have, weights)[0])
            - float(loss_fn(alpha_p, alpha_g, fg, bg, all_have, weights)[0])
        )
        > 1e-4
    )
    # padding does not count
    changed = alpha_p.copy()
    changed[0, 3:] = 1 - changed[0, 3:]
    np.testing.assert_allclose(loss_fn(changed, alpha_g, fg, bg, has, weights)[0], loss, rtol=1e-6)


def test_composition_term_is_a_true_composite_difference():
    """c_p - c_g = (alpha_p - alpha_g)(F - B): zero where F == B whatever the alphas (not image * alpha)."""
    alpha_p, alpha_g, fg, _, _ = loss_inputs(seed=1, b=1)
    _, parts = matting.prediction_loss(alpha_p, alpha_g, fg, fg, np.ones(1, bool))
    assert float(parts["composition_loss"]) == pytest.approx(0.5 * 1e-6, rel=1e-3)
    assert float(parts["alpha_loss"]) > 0.05


def test_trimap_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32) * 3
    classes = rng.integers(0, 3, (2, 4, 5))
    weights = (rng.uniform(size=(2, 4, 5, 1)) > 0.3).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, classes[..., None], -1)[..., 0]
    expected = (ce * weights[..., 0]).sum() / weights.sum()
    np.testing.assert_allclose(jax.jit(matting.trimap_loss)(logits, classes, weights), expected, rtol=1e-5)
    np.testing.assert_allclose(matting.trimap_loss(logits, classes, weights[..., 0]), expected, rtol=1e-5)
    np.testing.assert_allclose(matting.trimap_loss(logits, classes), ce.mean(), rtol=1e-5)
    assert float(matting.trimap_loss(logits, classes, np.zeros_like(weights))) == 0.0
    with pytest.raises(ValueError, match="do not match"):
        matting.trimap_loss(logits, classes[:, :3])


# --- image ops --------------------------------------------------------------------------------------------------


def test_crop_and_resize_matches_numpy_including_windows_past_the_border():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (5, 20, 24, 2)).astype(np.float32)
    windows = np.array([[2, 3, 12], [-4, 15, 16], [10, -6, 20], [0, 0, 5], [4, 4, 8]], np.int32)
    crop = jax.jit(image.crop_and_resize, static_argnums=2)
    got = crop(images, windows, 8)  # shrinking 12/16/20 -> 8, growing 5 -> 8, same size 8
    np.testing.assert_allclose(got, numpy_crop_and_resize(images, windows, 8), rtol=1e-5, atol=1e-3)
    assert got.shape == (5, 8, 8, 2) and got.dtype == jnp.float32
    np.testing.assert_allclose(got[4], images[4, 4:12, 4:12], rtol=1e-6)  # same size: the crop itself
    # cv2.resize of the edge-padded crop: the geometry a host pipeline uses
    cv2 = pytest.importorskip("cv2")
    padded = np.pad(images[1], ((8, 8), (8, 8), (0, 0)), mode="edge")
    reference = cv2.resize(padded[4:20, 23:39], (8, 8), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(got[1], reference, rtol=1e-4, atol=1e-2)
    grad = jax.grad(lambda x: crop(x, windows, 8).sum())(images)
    assert grad.shape == images.shape and float(grad.sum()) == pytest.approx(5 * 64 * 2, rel=1e-5)
    with pytest.raises(ValueError, match="windows"):
        image.crop_and_resize(images, windows[:, :2], 8)


def test_adaptive_average_pool_bins():
    x = np.random.default_rng(0).normal(size=(1, 7, 5, 2)).astype(np.float32)
    got = np.asarray(image.adaptive_average_pool(x, (3, 2)))
    for i in range(3):
        for j in range(2):
            rows = slice(i * 7 // 3, -(-(i + 1) * 7 // 3))
            cols = slice(j * 5 // 2, -(-(j + 1) * 5 // 2))
            np.testing.assert_allclose(got[0, i, j], x[0, rows, cols].mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
