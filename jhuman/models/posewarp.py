"""The generators of the pose-guided synthesis paper (Balakrishnan et al., "Synthesizing Images of Humans in
Unseen Poses", CVPR 2018; shared/reference/posewarp.md): the modular generator and the single-U-Net baseline.

Both take the source image (B, H, W, 3) in [-1, 1] and the two poses as joints (B, 14, 2) in 0-based pixel
(x, y) of the image with visibility (B, 14) bool (None = all visible), and compute their pose inputs
themselves with jhuman.ops.warp: 14 joint heatmaps at H/2 x W/2 (peak 1, sigma 1.75 px at that resolution,
zero for missing joints), the limb-mask prior and the per-limb similarity transforms at full resolution.

`ModularGenerator` (paper Sec. 3.1-3.4, Fig. 2), submodules `mask_net`, `fg_net`, `bg_net` (jhuman.models.unet):
1. source segmentation (Sec. 3.2): masks = softmax(mask_net(source, source pose) + log(prior + 1e-10)) over
   the 11 channels (0 background, 1..10 the limbs of jhuman.ops.warp.LIMBS);
2. spatial transformation (Sec. 3.3): warped_l = (source * masks_l) sampled at M_l [x, y, 1], l = 1..10
   (jhuman.ops.warp.warp_limbs), M_l mapping a target pixel to its source position;
3. foreground synthesis (Sec. 3.4): fg_net(the 10 warped layers as 30 channels, target pose) -> y_fg = tanh
   (RGB) and M_t = sigmoid (target mask), both from one linear 4-channel head;
4. background synthesis: bg_net(source * masks_0, masks_0; source pose) -> y_bg = tanh (RGB); the background
   layer is not warped (the camera is static). The paper mentions optionally filling the hole with noise; the
   released code does not, nor do we;
5. composite: y = M_t * y_fg + (1 - M_t) * y_bg.
Widths (the reference's, width=64): encoders [w, w] + [2w] * 9, decoders [2w] * 4 + [w/2] (mask net) and
[2w] * 4 + [w] (foreground and background nets); each can be given explicitly instead.

`UNetBaseline` (paper Sec. 4.1, "UNet"): one U-Net from the source image and both poses (28 heatmap channels)
to the target image (tanh), encoder [w] + [2w] * 3 + [4w] * 7, decoder [4w] * 3 + [2w, w] (the released
network_unet, wider than the modular nets' U-Nets).

Outputs are float32 whatever `dtype` the convolutions compute in. H and W: multiples of 32.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jhuman.models.unet import STRIDE, UNet
from jhuman.ops import warp

POSE_SIGMA = 1.75  # heatmap sigma in pixels of the half-resolution pose maps
PRIOR_EPS = 1e-10  # masks logits + log(prior + PRIOR_EPS)
REFERENCE_SIZE = 256  # the paper's image size: the limb prior's constant widths are in its pixels


def modular_widths(width: int = 64) -> dict:
    """The reference's U-Net widths for base width `width` (64): {'enc', 'mask_dec', 'dec'}."""
    return {
        "enc": (width, width) + (2 * width,) * 9,
        "mask_dec": (2 * width,) * 4 + (max(1, width // 2),),
        "dec": (2 * width,) * 4 + (width,),
    }


def baseline_widths(width: int = 64) -> dict:
    """The released baseline U-Net's widths for base width `width` (64): {'enc', 'dec'}."""
    return {
        "enc": (width,) + (2 * width,) * 3 + (4 * width,) * 7,
        "dec": (4 * width,) * 3 + (2 * width, width),
    }


def _check_inputs(name, image_size, source, source_joints, target_joints):
    if source.ndim != 4 or source.shape[-1] != 3:
        raise ValueError(f"{name}: source must be (B, H, W, 3) in [-1, 1], got {source.shape}")
    h, w = source.shape[1:3]
    if h % STRIDE or w % STRIDE:
        raise ValueError(f"{name}: image height and width must be multiples of {STRIDE}, got {(h, w)}")
    if image_size is not None and (h, w) != (image_size, image_size):
        raise ValueError(f"{name}: built for {image_size}x{image_size} images, got {h}x{w}")
    expected = (source.shape[0], len(warp.JOINTS), 2)
    for label, joints in (("source_joints", source_joints), ("target_joints", target_joints)):
        if tuple(joints.shape) != expected:
            raise ValueError(f"{name}: {label} must be (B, 14, 2) = {expected}, got {tuple(joints.shape)}")


def visibility(joints, visible):
    """(B, 14) bool: `visible`, or all True when None."""
    if visible is None:
        return jnp.ones(joints.shape[:-1], bool)
    return jnp.asarray(visible, bool)


def pose_maps(joints, visible, height: int, width: int, sigma: float = POSE_SIGMA):
    """(B, 14, 2) joints of an H x W image -> (B, H/2, W/2, 14) heatmaps (the networks' pose input)."""
    return warp.joint_heatmaps(
        jnp.asarray(joints, jnp.float32), visible, height // 2, width // 2, sigma=sigma, scale=0.5
    )


class ModularGenerator(nn.Module):
    """(source, source_joints, target_joints, source_visible, target_visible) -> dict (all float32):

    image (B, H, W, 3) in [-1, 1]: the composite y;   fg, bg (B, H, W, 3): y_fg and y_bg (tanh, unmasked);
    target_mask (B, H, W, 1): M_t;   masks (B, H, W, 11): the source segmentation (softmax, sums to 1);
    warped (B, H, W, 10, 3): the warped masked limb layers;   prior (B, H, W, 11): the limb-mask prior.

    width: base width (64 = the paper); enc_widths / mask_dec_widths / dec_widths override the derived tuples.
    image_size: when set, inputs of another size are an error (None: any multiple of 32).
    """

    width: int = 64
    image_size: Optional[int] = None
    enc_widths: Optional[Sequence[int]] = None
    mask_dec_widths: Optional[Sequence[int]] = None
    dec_widths: Optional[Sequence[int]] = None
    pose_sigma: float = POSE_SIGMA
    dtype: Any = jnp.float32

    def setup(self):
        derived = modular_widths(self.width)
        enc = tuple(self.enc_widths or derived["enc"])
        mask_dec = tuple(self.mask_dec_widths or derived["mask_dec"])
        dec = tuple(self.dec_widths or derived["dec"])
        self.mask_net = UNet(warp.NUM_MASKS, enc, mask_dec, dtype=self.dtype)
        self.fg_net = UNet(4, enc, dec, dtype=self.dtype)  # RGB (tanh) + target mask (sigmoid)
        self.bg_net = UNet(3, enc, dec, dtype=self.dtype)

    def __call__(self, source, source_joints, target_joints, source_visible=None, target_visible=None):
        _check_inputs("ModularGenerator", self.image_size, source, source_joints, target_joints)
        source = jnp.asarray(source, jnp.float32)
        batch, h, w, _ = source.shape
        source_joints = jnp.asarray(source_joints, jnp.float32)
        target_joints = jnp.asarray(target_joints, jnp.float32)
        source_visible = visibility(source_joints, source_visible)
        target_visible = visibility(target_joints, target_visible)

        source_pose = pose_maps(source_joints, source_visible, h, w, self.pose_sigma)  # (B, H/2, W/2, 14)
        target_pose = pose_maps(target_joints, target_visible, h, w, self.pose_sigma)
        # (B, H, W, 11); the prior's constant widths are in 256-px pixels: scaled to this size
        prior = warp.limb_prior(source_joints, source_visible, h, w, scale=w / REFERENCE_SIZE)
        transforms = warp.limb_transforms(source_joints, target_joints, source_visible, target_visible)

        # 1. source segmentation: logits + log prior, softmax over the 11 channels
        logits = self.mask_net(source, source_pose) + jnp.log(prior + PRIOR_EPS)
        masks = jax.nn.softmax(logits, axis=-1)  # (B, H, W, 11)
        # 2. the 10 masked limb layers moved to the target pose
        warped = warp.warp_limbs(source, masks, transforms)  # (B, H, W, 10, 3)
        # 3. foreground: warped layers + target pose -> RGB and the target mask
        fg_out = self.fg_net(warped.reshape(batch, h, w, -1), target_pose)  # (B, H, W, 4)
        fg = jnp.tanh(fg_out[..., :3])
        target_mask = jax.nn.sigmoid(fg_out[..., 3:])
        # 4. background: the masked source and its mask (not warped) + source pose -> RGB
        background = masks[..., :1]
        bg = jnp.tanh(self.bg_net(jnp.concatenate([source * background, background], -1), source_pose))
        # 5. composite
        image = target_mask * fg + (1.0 - target_mask) * bg
        return {
            "image": image,
            "fg": fg,
            "bg": bg,
            "target_mask": target_mask,
            "masks": masks,
            "warped": warped.astype(jnp.float32),
            "prior": prior.astype(jnp.float32),
        }


class UNetBaseline(nn.Module):
    """(source, source_joints, target_joints, source_visible, target_visible) -> {'image': (B, H, W, 3)} in
    [-1, 1], float32. One U-Net (submodule `net`) on the source with both poses' heatmaps (28 channels)."""

    width: int = 64
    image_size: Optional[int] = None
    enc_widths: Optional[Sequence[int]] = None
    dec_widths: Optional[Sequence[int]] = None
    pose_sigma: float = POSE_SIGMA
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, source, source_joints, target_joints, source_visible=None, target_visible=None):
        _check_inputs("UNetBaseline", self.image_size, source, source_joints, target_joints)
        h, w = source.shape[1:3]
        source_pose = pose_maps(
            source_joints, visibility(source_joints, source_visible), h, w, self.pose_sigma
        )
        target_pose = pose_maps(
            target_joints, visibility(target_joints, target_visible), h, w, self.pose_sigma
        )
        derived = baseline_widths(self.width)
        net = UNet(
            3,
            tuple(self.enc_widths or derived["enc"]),
            tuple(self.dec_widths or derived["dec"]),
            dtype=self.dtype,
            name="net",
        )
        pose = jnp.concatenate([source_pose, target_pose], axis=-1)  # (B, H/2, W/2, 28)
        return {"image": jnp.tanh(net(jnp.asarray(source, jnp.float32), pose))}
