import numpy as np

from jhuman.ops import image


def numpy_upsample(x, out_hw, stride):
    """Plain loop: output pixel (y, x) interpolates logit coordinate (y/s, x/s), clamped."""
    b, h, w, c = x.shape
    out = np.zeros((b, *out_hw, c), np.float64)
    for y in range(out_hw[0]):
        for xx in range(out_hw[1]):
            sy, sx = min(y / stride, h - 1), min(xx / stride, w - 1)
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            out[:, y, xx] = (
                (1 - fy) * (1 - fx) * x[:, y0, x0]
                + (1 - fy) * fx * x[:, y0, x1]
                + fy * (1 - fx) * x[:, y1, x0]
                + fy * fx * x[:, y1, x1]
            )
    return out


def test_upsample_aligned_matches_numpy_and_hits_grid_points():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    got = np.asarray(image.upsample_aligned(x, (37, 30), 8))
    np.testing.assert_allclose(got, numpy_upsample(x, (37, 30), 8), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        got[:, ::8, ::8][:, :5, :4], x, rtol=1e-6
    )  # logit (i, j) sits on pixel (8i, 8j)


def test_subsample_labels_is_strided_and_padded():
    labels = np.arange(2 * 17 * 16).reshape(2, 17, 16) % 20
    sub = np.asarray(image.subsample_labels(labels, (3, 2), 8))
    np.testing.assert_array_equal(sub, labels[:, ::8, ::8])
    padded = np.asarray(image.subsample_labels(labels, (4, 3), 8))
    np.testing.assert_array_equal(padded[:, :3, :2], sub)
    assert (padded[:, 3] == 255).all() and (padded[:, :, 2] == 255).all()


def test_bilinear_sample_clamps_reads_channels_and_matches_a_loop():
    rng = np.random.default_rng(1)
    field = rng.normal(size=(6, 7, 3, 2)).astype(np.float32)  # (H, W, C, 2)
    points = np.array([[0.0, 0.0], [6.0, 5.0], [2.25, 3.5], [-4.0, 9.0], [5.5, 0.75]], np.float32)
    channels = np.array([0, 2, 1, 1, 2])
    got = np.asarray(image.bilinear_sample(field, points, channels))
    for (x, y), c, value in zip(points, channels, got):
        x, y = min(max(x, 0), 6), min(max(y, 0), 5)  # clamped onto the image
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        x1, y1, fx, fy = min(x0 + 1, 6), min(y0 + 1, 5), x - x0, y - y0
        f = field[..., c, :]
        want = (1 - fy) * ((1 - fx) * f[y0, x0] + fx * f[y0, x1]) + fy * (
            (1 - fx) * f[y1, x0] + fx * f[y1, x1]
        )
        np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-6)
    plain = np.asarray(image.bilinear_sample(field[..., 1, :], points))  # no channel axis
    np.testing.assert_allclose(plain, np.asarray(image.bilinear_sample(field, points, 1)), rtol=1e-6)
    grid = np.asarray(image.pixel_grid(6, 7))
    assert grid.shape == (6, 7, 2) and tuple(grid[5, 6]) == (6.0, 5.0)  # (x, y) = (column, row)
    np.testing.assert_array_equal(image.bilinear_sample(field, grid), field)  # integer points read the pixels
