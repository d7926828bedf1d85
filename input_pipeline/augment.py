"""Shared image/label augmentation ops (numpy + cv2; no tensorflow, no jax).

Every function is pure: it returns new arrays and draws randomness only from the `np.random.Generator` it
is given, so one generator seeded per example (see `pipeline.example_rng`) makes a whole example
reproducible. Images are (H, W, C) (uint8 or float32), labels (H, W) uint8 class maps; the pair is always
transformed with the same geometry: image bilinear, label nearest neighbour.

The ops follow the DeepLab / LIP_SSL training protocol (Gong et al., CVPR 2017): random scale from a set,
pad bottom/right (image with the mean pixel, label with the ignore label 255), random crop, horizontal
flip with the left/right label swap.
"""

import cv2
import numpy as np

IGNORE = 255  # == jhuman.classes.IGNORE_LABEL; padding value of label maps


def resize(image, label, height, width):
    """Resizes to (height, width): image bilinear, label nearest (cv2 exact half-pixel nearest).

    INTER_NEAREST_EXACT uses the same pixel centres as INTER_LINEAR, so a label stays aligned with its image.
    label may be None.
    """
    size = (int(width), int(height))  # cv2 wants (W, H)
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST_EXACT)
    return image, label


def scale(image, label, factor):
    """Scales both sides by `factor` (output size round(side * factor), at least 1 pixel)."""
    h, w = image.shape[:2]
    return resize(image, label, max(1, round(h * factor)), max(1, round(w * factor)))


def random_scale(image, label, scales, rng):
    """Scales by a factor drawn uniformly from the finite set `scales` (LIP: {0.6, 0.8, 1.0, 1.2, 1.4})."""
    factor = scales[rng.integers(len(scales))]
    if factor == 1.0:
        return image, label
    return scale(image, label, factor)


def pad_to(image, label, height, width, fill, label_fill=IGNORE):
    """Pads bottom/right so that the result is at least (height, width); image with `fill` (a scalar or one
    value per channel, e.g. the mean pixel), label with `label_fill` (255). Larger images are unchanged.

    image (H, W, C) -> (max(H, height), max(W, width), C); label (H, W) -> (max(H, height), max(W, width)).
    """
    h, w = image.shape[:2]
    ph, pw = max(height, h), max(width, w)
    if (ph, pw) == (h, w):
        return image, label
    out = np.empty((ph, pw) + image.shape[2:], image.dtype)
    out[...] = np.asarray(fill, image.dtype)
    out[:h, :w] = image
    if label is not None:
        lab = np.full((ph, pw), label_fill, label.dtype)
        lab[:h, :w] = label
        label = lab
    return out, label


def crop_window(height, width, crop_h, crop_w, rng):
    """Top-left corner (y0, x0) of a random crop_h x crop_w window of an image padded bottom/right to at least
    the crop size: y0 uniform in [0, max(height - crop_h, 0)], x0 likewise."""
    y0 = int(rng.integers(max(height - crop_h, 0) + 1))
    x0 = int(rng.integers(max(width - crop_w, 0) + 1))
    return y0, x0


def random_crop(image, label, crop_h, crop_w, rng):
    """The same random crop_h x crop_w window of image and label.

    On an axis shorter than the crop the whole axis is kept (the window is clipped), so `pad_to` before or
    after gives the same pixels: for bottom/right padding, crop-then-pad == pad-then-crop with the same rng.
    Cropping first is cheaper (the float conversion and padding then touch crop-sized arrays only).
    """
    y0, x0 = crop_window(image.shape[0], image.shape[1], crop_h, crop_w, rng)
    image = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
    if label is not None:
        label = label[y0 : y0 + crop_h, x0 : x0 + crop_w]
    return image, label


def hflip(image, label, lut):
    """Horizontal flip: image columns reversed; label columns reversed and values mapped through `lut`
    (uint8 (256,) table: label -> label after the flip, e.g. LIP_FLIP_LUT swapping left/right parts)."""
    image = np.ascontiguousarray(image[:, ::-1])
    if label is not None:
        label = lut[label[:, ::-1]]
    return image, label


def random_hflip(image, label, lut, rng, p=0.5):
    """`hflip` with probability p; returns (image, label, flipped). One rng draw, whatever the outcome."""
    flipped = bool(rng.random() < p)
    if flipped:
        image, label = hflip(image, label, lut)
    return image, label, flipped


def color_jitter(image, rng, brightness=0.0, contrast=0.0, saturation=0.0):
    """Simple colour jitter on a float RGB image in 0..255 (off by default: all strengths 0 return it as is).

    Each factor is uniform in [1 - strength, 1 + strength]: brightness multiplies the pixels, contrast scales
    around the image mean, saturation blends with the grey image. Output is clipped to 0..255.
    """
    if not (brightness or contrast or saturation):
        return image
    image = image.astype(np.float32, copy=True)
    if brightness:
        image *= rng.uniform(1 - brightness, 1 + brightness)
    if contrast:
        mean = image.mean()
        image = (image - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    if saturation:
        grey = image @ np.array([0.299, 0.587, 0.114], np.float32)  # (H, W)
        image = (image - grey[..., None]) * rng.uniform(1 - saturation, 1 + saturation) + grey[..., None]
    return np.clip(image, 0, 255, out=image)
