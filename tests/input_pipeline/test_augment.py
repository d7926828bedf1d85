"""Image ops and the LIP flip: against plain numpy, and image/label alignment through the whole protocol."""

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import augment, lip
from jhuman.classes import CAFFE_MEAN_RGB, LIP_FLIP_LUT

PAIRS = {14: 15, 15: 14, 16: 17, 17: 16, 18: 19, 19: 18}


def _numpy_flip_label(label):
    out = label[..., ::-1].copy()
    swapped = out.copy()
    for a, b in PAIRS.items():
        swapped[out == a] = b
    return swapped


def _random_pair(shape=(2, 7, 9), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    label = rng.integers(0, 20, shape, dtype=np.uint8)
    label[..., 0, :3] = 255
    return image, label


@pytest.mark.parametrize("batched", [False, True])
def test_flip_swaps_exactly_the_three_pairs(batched):
    image, label = _random_pair()
    if not batched:
        image, label = image[0], label[0]
    fi, fl = lip.flip(image, label)
    np.testing.assert_array_equal(fi, image[..., ::-1, :])  # columns reversed
    np.testing.assert_array_equal(fl, _numpy_flip_label(label))
    assert fl.dtype == label.dtype
    unflipped = label[..., ::-1]
    np.testing.assert_array_equal(fl[unflipped == 255], 255)  # 255 stays
    keep = ~np.isin(unflipped, list(PAIRS))
    np.testing.assert_array_equal(fl[keep], unflipped[keep])  # nothing else swaps
    twice = lip.flip(fi, fl)
    np.testing.assert_array_equal(twice[0], image)  # involution
    np.testing.assert_array_equal(twice[1], label)


@pytest.mark.parametrize("dtype", [tf.uint8, tf.int32])
def test_flip_tf_matches_numpy(dtype):
    image, label = _random_pair()
    for im, lab in ((image, label), (image[0], label[0])):
        ti, tl = lip.flip(tf.constant(im), tf.cast(tf.constant(lab), dtype))
        assert tl.dtype == dtype
        ni, nl = lip.flip(im, lab)
        np.testing.assert_array_equal(ti.numpy(), ni)
        np.testing.assert_array_equal(tl.numpy(), nl)


def test_hflip_uses_lut():
    image, label = _random_pair()
    fi, fl = augment.hflip(image[0], label[0], LIP_FLIP_LUT)
    np.testing.assert_array_equal(fl, _numpy_flip_label(label[0]))
    np.testing.assert_array_equal(fi, image[0, :, ::-1])


def test_pad_values_are_mean_and_ignore():
    image, label = _random_pair((5, 4))
    mean = np.asarray(CAFFE_MEAN_RGB, np.float32)
    pi, pl = augment.pad_to(image.astype(np.float32), label, 8, 6, mean)
    assert pi.shape == (8, 6, 3) and pl.shape == (8, 6)
    np.testing.assert_array_equal(pi[:5, :4], image)
    np.testing.assert_array_equal(pl[:5, :4], label)
    np.testing.assert_array_equal(pi[5:], np.broadcast_to(mean, (3, 6, 3)))
    np.testing.assert_array_equal(pi[:, 4:], np.broadcast_to(mean, (8, 2, 3)))
    assert (pl[5:] == 255).all() and (pl[:, 4:] == 255).all()
    same = augment.pad_to(image, label, 3, 3, 0)  # already large enough: unchanged
    assert same[0] is image and same[1] is label


def test_crop_then_pad_equals_pad_then_crop():
    image, label = _random_pair((13, 30))
    for seed in range(10):
        a = augment.random_crop(image, label, 20, 20, np.random.default_rng(seed))
        a = augment.pad_to(a[0], a[1], 20, 20, 7)
        b = augment.pad_to(image, label, 20, 20, 7)
        b = augment.random_crop(b[0], b[1], 20, 20, np.random.default_rng(seed))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[0].shape == (20, 20, 3)


def test_random_scale_sizes_and_nearest_labels():
    image, label = _random_pair((50, 30))
    seen = set()
    for seed in range(30):
        si, sl = augment.random_scale(image, label, (0.6, 1.0, 1.4), np.random.default_rng(seed))
        assert si.shape[:2] == sl.shape
        seen.add(sl.shape)
        assert set(np.unique(sl)) <= set(np.unique(label))  # nearest: no invented label values
    assert seen == {(30, 18), (50, 30), (70, 42)}


def _colour_coded(seed, block=16, h=96, w=80):
    """An image of flat colour blocks and the label painted from those colours (class c <-> colours[c])."""
    rng = np.random.default_rng(seed)
    colours = rng.choice(np.arange(0, 256, 8), size=(20, 3))
    while len({tuple(c) for c in colours}) < 20:
        colours = rng.choice(np.arange(0, 256, 8), size=(20, 3))
    blocks = rng.integers(0, 20, (h // block, w // block), dtype=np.uint8)
    blocks[0, 0], blocks[0, 1] = 14, 15  # make sure a left/right pair is present
    label = np.kron(blocks, np.ones((block, block), np.uint8))
    return colours[label].astype(np.uint8), label, colours


def _flat_interior(image):
    """(H-2, W-2) bool: the 3x3 neighbourhood of the pixel has a single colour (not a blended edge)."""
    c = image[1:-1, 1:-1]
    flat = np.ones(c.shape[:2], bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            flat &= (image[1 + dy : image.shape[0] - 1 + dy, 1 + dx : image.shape[1] - 1 + dx] == c).all(-1)
    return flat


def test_label_stays_aligned_through_scale_pad_crop_flip():
    flips = set()
    for seed in range(12):
        image, label, colours = _colour_coded(seed)
        ex = lip.train_example(image, label, np.random.default_rng(seed), crop_size=72)
        out_image, out_label = ex["image"], ex["label"]
        assert out_image.shape == (72, 72, 3) and out_image.dtype == np.float32
        assert out_label.shape == (72, 72) and out_label.dtype == np.int32
        pad = out_label == 255
        np.testing.assert_allclose(out_image[pad], np.broadcast_to(CAFFE_MEAN_RGB, (pad.sum(), 3)), rtol=1e-6)
        # Flat interior pixels: the colour says which class was painted there; after a flip, its mirror class.
        inner = _flat_interior(out_image) & ~pad[1:-1, 1:-1]
        pixels = out_image[1:-1, 1:-1][inner]  # (K, 3)
        painted = np.argmax((pixels[:, None, :] == colours[None]).all(-1), axis=1)
        assert (pixels == colours[painted]).all()
        got = out_label[1:-1, 1:-1][inner]
        flipped = bool((got != painted).any())
        expected = LIP_FLIP_LUT[painted] if flipped else painted
        np.testing.assert_array_equal(got, expected)
        assert inner.sum() > 100
        flips.add(flipped)
    assert flips == {False, True}


def test_color_jitter_is_off_by_default():
    image = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    assert augment.color_jitter(image, np.random.default_rng(0)) is image
    jittered = augment.color_jitter(
        image, np.random.default_rng(0), brightness=0.4, contrast=0.4, saturation=0.4
    )
    assert jittered.shape == image.shape and not np.allclose(jittered, image)
    assert jittered.min() >= 0 and jittered.max() <= 255
