"""Pose-guided synthesis kernels (Balakrishnan et al., "Synthesizing Images of Humans in Unseen Poses", CVPR
2018): the 14-joint skeleton, per-limb similarity transforms, joint heatmaps, the limb-mask prior and the warp
of the 10 masked limb layers.

Conventions: joints (..., 14, 2) float32 (x, y) = (column, row), 0-based pixels of their image, in `JOINTS`
order; visibility (..., 14) bool. Every function is jax.numpy with static shapes, batched over leading axes
(`warp_limbs`: one batch axis) and jittable; only element-wise products and sums touch coordinates (no matmul:
no reduced-precision TF32 path on accelerators).

The paper (Sec. 3) and the released code (balakg/posewarp-cvpr2018):
- Transforms: for limb l a 4-parameter similarity fitted by least squares from the limb's joints in the TARGET
  pose q_j to the same joints in the SOURCE pose p_j: X = a0 + a1 x - b1 y, Y = b0 + b1 x + a1 y,
  M_l = [[a1, -b1, a0], [b1, a1, b0]] (a target pixel to the source position it is drawn from). Closed form
  with the centred points q~, p~ (weighted means over the used joints):
    a1 = sum q~.p~ / sum |q~|^2,   b1 = sum (q~_x p~_y - q~_y p~_x) / sum |q~|^2,
    (a0, b0) = mean p - [[a1, -b1], [b1, a1]] mean q;
  exact for the two-joint limbs, least squares over the 4 torso joints.
- Heatmaps: an unnormalised Gaussian exp(-|u - s c|^2 / (2 sigma^2)) per joint (peak 1, sigma 1.75 on the
  128x128 map of a 256x256 image, i.e. scale 0.5).
- Prior: per limb an oriented Gaussian centred at the midpoint of its two ends (torso: the mean of the two
  shoulders and the mean of the two hips), variance max(5, length^2 / 1.5) along the limb and 121 across
  (torso 169), divided by (its maximum over the image + 1e-6) as the released make_limb_masks; background
  channel 0 = 1 - max over limbs.
- Warp: the source times mask l + 1, sampled bilinearly at M_l [x, y, 1] (pixel coordinates), for all 10 limbs
  in one gather.

Where we choose differently from the released code (documented choices, not in the paper):
- Degenerate limbs: a limb fitted from joints used in both poses. No joint used -> identity; one joint, or
  target joints less than about a pixel apart (sum |q~|^2 < MIN_SPREAD) -> translation only (a1 = 1, b1 = 0:
  the target centroid onto the source centroid). The released code fits whatever it is given (a target limb of
  zero length gives an infinite scale); ours is finite for every input.
- Visibility in `limb_transforms` and `limb_prior` is optional: None uses every joint, as the released code
  does (the published videos annotate all 14 joints; a joint outside the crop still has its true position, so
  its limb is still placed and fitted correctly). Pass a visibility only where flagged joints have no usable
  coordinates: they are then left out of the fits, and a limb with such a joint gets a zero prior channel.
- Heatmaps are zero for joints whose visibility is False; the released code instead drops joints on or outside
  the map's first/last row or column (its missing joints sit at (0, 0)).
- Warp borders: points outside the image read the nearest border pixel (replicated borders, the contract of
  jhuman.ops.image.bilinear_sample); the released code first reflect-pads by one pixel, so its outside points
  read the pixel next to the border.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.classes import POSEWARP_FLIP_PERMUTATION, POSEWARP_JOINTS
from jhuman.ops.image import bilinear_sample, pixel_grid

JOINTS = POSEWARP_JOINTS  # jhuman.classes: the published data's order
NUM_JOINTS = len(JOINTS)
LIMBS = ((0, 1), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (11, 12), (12, 13), (2, 5, 8, 11))
LIMB_NAMES = (
    "head",
    "right_upper_arm",
    "right_forearm",
    "left_upper_arm",
    "left_forearm",
    "right_thigh",
    "right_calf",
    "left_thigh",
    "left_calf",
    "torso",
)
NUM_LIMBS = len(LIMBS)
NUM_MASKS = NUM_LIMBS + 1  # channel 0 background, 1..10 the limbs
# Horizontal flip: joint i of the flipped person is joint FLIP_PERMUTATION[i] of the original (right <-> left).
FLIP_PERMUTATION = POSEWARP_FLIP_PERMUTATION

HEATMAP_SIGMA = 1.75  # pixels of the 128x128 pose map (the released sigma_joint = 7 / 4)
PRIOR_MIN_VARIANCE = 5.0  # variance along a limb: max(5, length^2 / 1.5)
PRIOR_LENGTH_DIVISOR = 1.5
PRIOR_ACROSS_VARIANCE = (121.0,) * 9 + (169.0,)  # 11^2, torso 13^2
PRIOR_NORM_EPS = 1e-6  # each limb Gaussian / (max + 1e-6)
MIN_SPREAD = 0.5  # px^2: sum |q~|^2 below this (two joints < 1 px apart) -> translation only

# Padded limb tables: joint indices (10, 4) with membership (10, 4); the two ends of each limb (10, 2, 2),
# each end the mean of two joints (the same joint twice for the two-joint limbs).
_LIMB_INDEX = np.array([limb + (limb[0],) * (4 - len(limb)) for limb in LIMBS], np.int32)
_LIMB_MEMBER = np.array([[k < len(limb) for k in range(4)] for limb in LIMBS], bool)
_LIMB_ENDS = np.array(
    [[[j[0], j[0]], [j[1], j[1]]] if len(j) == 2 else [[j[0], j[1]], [j[2], j[3]]] for j in LIMBS], np.int32
)


def flip_joints(joints, width: int):
    """Joints of the horizontally mirrored image: x -> width - 1 - x, then right and left swapped
    (`FLIP_PERMUTATION`). joints (..., 14, 2) (numpy or jax) -> the same type and shape; a visibility
    (..., 14) follows with `visible[..., FLIP_PERMUTATION]`. Flipping twice gives the joints back."""
    if joints.shape[-2:] != (NUM_JOINTS, 2):
        raise ValueError(f"flip_joints: joints must be (..., {NUM_JOINTS}, 2), got shape {joints.shape}")
    swapped = joints[..., np.asarray(FLIP_PERMUTATION), :]
    return swapped * np.array([-1.0, 1.0], np.float32) + np.array([width - 1.0, 0.0], np.float32)


def _check_joints(joints, name: str) -> jnp.ndarray:
    joints = jnp.asarray(joints, jnp.float32)
    if joints.ndim < 2 or joints.shape[-2:] != (NUM_JOINTS, 2):
        raise ValueError(f"{name} must be (..., {NUM_JOINTS}, 2) (x, y) joints, got shape {joints.shape}")
    return joints


def _check_visible(visible, joints: jnp.ndarray, name: str) -> jnp.ndarray:
    """(..., 14) bool; None -> every joint used."""
    if visible is None:
        return jnp.ones(joints.shape[:-1], bool)
    visible = jnp.asarray(visible)
    if visible.shape != joints.shape[:-1]:
        raise ValueError(
            f"{name} must have shape {joints.shape[:-1]} (the joints' leading axes), got {visible.shape}"
        )
    return visible.astype(bool)


def limb_transforms(src_joints, tgt_joints, src_visible=None, tgt_visible=None) -> jnp.ndarray:
    """Per-limb least-squares similarity M_l mapping a TARGET pixel (x, y, 1) to its SOURCE position.

    src_joints, tgt_joints (..., 14, 2); src_visible, tgt_visible (..., 14) bool or None (every joint used,
    the released code). A joint enters limb l's fit when it is used in both poses. Returns (..., 10, 2, 3)
    float32 [[a1, -b1, a0], [b1, a1, b0]] in `LIMBS` order; identity / translation-only fallbacks for
    degenerate limbs (module docstring). Never NaN for finite joints.
    """
    src = _check_joints(src_joints, "src_joints")
    tgt = _check_joints(tgt_joints, "tgt_joints")
    if src.shape != tgt.shape:
        raise ValueError(
            f"src_joints and tgt_joints must have the same shape, got {src.shape} and {tgt.shape}"
        )
    used = _check_visible(src_visible, src, "src_visible") & _check_visible(tgt_visible, tgt, "tgt_visible")

    p = src[..., _LIMB_INDEX, :]  # (..., 10, 4, 2) source points
    q = tgt[..., _LIMB_INDEX, :]  # (..., 10, 4, 2) target points
    w = (used[..., _LIMB_INDEX] & _LIMB_MEMBER).astype(jnp.float32)  # (..., 10, 4)
    count = jnp.sum(w, axis=-1)  # (..., 10)
    safe_count = jnp.maximum(count, 1.0)[..., None]
    p_mean = jnp.sum(w[..., None] * p, axis=-2) / safe_count  # (..., 10, 2)
    q_mean = jnp.sum(w[..., None] * q, axis=-2) / safe_count
    pc = p - p_mean[..., None, :]  # (..., 10, 4, 2) centred
    qc = q - q_mean[..., None, :]
    spread = jnp.sum(w * (qc[..., 0] ** 2 + qc[..., 1] ** 2), axis=-1)  # (..., 10)
    dot = jnp.sum(w * (qc[..., 0] * pc[..., 0] + qc[..., 1] * pc[..., 1]), axis=-1)
    cross = jnp.sum(w * (qc[..., 0] * pc[..., 1] - qc[..., 1] * pc[..., 0]), axis=-1)

    fitted = (count >= 2) & (spread >= MIN_SPREAD)
    safe_spread = jnp.where(fitted, spread, 1.0)
    a1 = jnp.where(fitted, dot / safe_spread, 1.0)
    b1 = jnp.where(fitted, cross / safe_spread, 0.0)
    a0 = p_mean[..., 0] - (a1 * q_mean[..., 0] - b1 * q_mean[..., 1])  # zero means (no joint) -> identity
    b0 = p_mean[..., 1] - (b1 * q_mean[..., 0] + a1 * q_mean[..., 1])
    row0 = jnp.stack([a1, -b1, a0], axis=-1)  # (..., 10, 3)
    row1 = jnp.stack([b1, a1, b0], axis=-1)
    return jnp.stack([row0, row1], axis=-2)  # (..., 10, 2, 3)


def joint_heatmaps(
    joints, visible, height: int, width: int, sigma: float = HEATMAP_SIGMA, scale: float = 1.0
):
    """Pose input of the networks: exp(-|(x, y) - scale * joint|^2 / (2 sigma^2)) per joint, peak 1.

    joints (..., 14, 2) in the pixels of their image; visible (..., 14) bool (False -> a zero map); scale maps
    them onto the (height, width) grid (0.5: 256-pixel joints on a 128x128 map). -> (..., H, W, 14) float32.
    """
    joints = _check_joints(joints, "joints")
    visible = _check_visible(visible, joints, "visible")
    centers = joints * jnp.float32(scale)
    cx = centers[..., None, None, :, 0]  # (..., 1, 1, 14)
    cy = centers[..., None, None, :, 1]
    xs = jnp.arange(width, dtype=jnp.float32)[:, None]  # (W, 1)
    ys = jnp.arange(height, dtype=jnp.float32)[:, None, None]  # (H, 1, 1)
    gauss = jnp.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2.0 * float(sigma) ** 2))  # (..., H, W, 14)
    return jnp.where(visible[..., None, None, :], gauss, 0.0)


def limb_prior(joints, visible, height: int, width: int, scale: float = 1.0) -> jnp.ndarray:
    """The initial limb masks of the released code: (..., H, W, 11) float32, channel 0 the background
    (1 - max over limbs), channels 1..10 one oriented Gaussian per limb normalised to peak 1 over the image.

    joints (..., 14, 2) in the pixels of the (height, width) image; visible (..., 14) bool or None (None: every
    joint used, the released code; otherwise a limb with an unused joint gets a zero channel).
    scale: the image's size over the paper's 256 px. The constant variances (the minimum along a limb, 121 and
    169 across) are in pixels of 256-px images; they are multiplied by scale**2, so that a 64-px image
    (scale 0.25) gets limbs as wide relative to the body as at 256 px (the released code, at 256 only, has
    scale 1). The along-limb variance length**2 / 1.5 is in the image's own pixels already.
    """
    joints = _check_joints(joints, "joints")
    used = _check_visible(visible, joints, "visible")
    ends = jnp.mean(joints[..., _LIMB_ENDS, :], axis=-2)  # (..., 10, 2 ends, 2 xy)
    center = 0.5 * (ends[..., 0, :] + ends[..., 1, :])  # (..., 10, 2)
    d = ends[..., 1, :] - ends[..., 0, :]  # (..., 10, 2) along the limb
    length2 = d[..., 0] ** 2 + d[..., 1] ** 2  # (..., 10)
    area = jnp.square(jnp.asarray(scale, jnp.float32))
    var_along = jnp.maximum(PRIOR_MIN_VARIANCE * area, length2 / PRIOR_LENGTH_DIVISOR)
    var_across = jnp.asarray(PRIOR_ACROSS_VARIANCE, jnp.float32) * area
    has_length = length2 > 0
    inv_length = jnp.where(has_length, jax.lax.rsqrt(jnp.where(has_length, length2, 1.0)), 0.0)
    ex = jnp.where(has_length, d[..., 0] * inv_length, 1.0)  # unit direction; any for a point limb
    ey = d[..., 1] * inv_length

    xs = jnp.arange(width, dtype=jnp.float32)[:, None]  # (W, 1)
    ys = jnp.arange(height, dtype=jnp.float32)[:, None, None]  # (H, 1, 1)
    dx = xs - center[..., None, None, :, 0]  # (..., 1, W, 10)
    dy = ys - center[..., None, None, :, 1]  # (..., H, 1, 10)
    along = dx * ex[..., None, None, :] + dy * ey[..., None, None, :]  # (..., H, W, 10)
    across = dy * ex[..., None, None, :] - dx * ey[..., None, None, :]
    gauss = jnp.exp(-(along**2) / (2.0 * var_along[..., None, None, :]) - across**2 / (2.0 * var_across))
    gauss = gauss / (jnp.max(gauss, axis=(-3, -2), keepdims=True) + PRIOR_NORM_EPS)
    present = jnp.all(used[..., _LIMB_INDEX] | ~_LIMB_MEMBER, axis=-1)  # (..., 10)
    limbs = jnp.where(present[..., None, None, :], gauss, 0.0)
    background = 1.0 - jnp.max(limbs, axis=-1, keepdims=True)
    return jnp.concatenate([background, limbs], axis=-1)  # (..., H, W, 11)


def warp_limbs(images, masks, transforms) -> jnp.ndarray:
    """The warped limb layers fed to the foreground network.

    images (B, H, W, C), masks (B, H, W, 11) (channel 0 the background, unused here), transforms (B, 10, 2, 3)
    from `limb_transforms`. Layer l: images * masks[..., l + 1] sampled bilinearly at M_l [x, y, 1] for every
    target pixel (x, y) (pixel coordinates, borders replicated). -> (B, H, W, 10, C) float32, all 10 limbs in
    one gather; gradients reach images, masks and transforms.
    """
    images = jnp.asarray(images, jnp.float32)
    masks = jnp.asarray(masks, jnp.float32)
    transforms = jnp.asarray(transforms, jnp.float32)
    if images.ndim != 4:
        raise ValueError(f"warp_limbs: images must be (B, H, W, C), got shape {images.shape}")
    batch, height, width, _ = images.shape
    if masks.shape != (batch, height, width, NUM_MASKS):
        raise ValueError(
            f"warp_limbs: masks must be (B, H, W, {NUM_MASKS}) = {(batch, height, width, NUM_MASKS)}, got "
            f"{masks.shape}"
        )
    if transforms.shape != (batch, NUM_LIMBS, 2, 3):
        raise ValueError(
            f"warp_limbs: transforms must be (B, {NUM_LIMBS}, 2, 3) = {(batch, NUM_LIMBS, 2, 3)}, got "
            f"{transforms.shape}"
        )
    layers = images[:, :, :, None, :] * masks[:, :, :, 1:, None]  # (B, H, W, 10, C)
    grid = pixel_grid(height, width)[:, :, None, :]  # (H, W, 1, 2)
    x, y = grid[..., 0], grid[..., 1]  # (H, W, 1)
    m = transforms[:, None, None]  # (B, 1, 1, 10, 2, 3)
    sx = m[..., 0, 0] * x + m[..., 0, 1] * y + m[..., 0, 2]  # (B, H, W, 10)
    sy = m[..., 1, 0] * x + m[..., 1, 1] * y + m[..., 1, 2]
    points = jnp.stack([sx, sy], axis=-1)  # (B, H, W, 10, 2)
    channels = jnp.arange(NUM_LIMBS, dtype=jnp.int32)  # limb l reads layer l
    return jax.vmap(lambda field, pts: bilinear_sample(field, pts, channels))(layers, points)
