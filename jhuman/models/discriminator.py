"""The discriminator of the pose-guided synthesis paper's GAN stage (Balakrishnan et al., CVPR 2018, Sec. 3.5;
shared/reference/posewarp.md), conditioned as the released code conditions it: on the image to judge and on
both poses (source and target heatmaps at H/2 x W/2, computed here with jhuman.ops.warp.joint_heatmaps).

Layers (width=64, the reference; every conv 'SAME' + LeakyReLU 0.2, every pooling 2x2 max, stride 2):
  conv1 5x5, 64 on the image (B, H, W, 3)          -> pool -> (B, H/2, W/2, 64)
  concatenate the source and target heatmaps        -> (B, H/2, W/2, 64 + 28)
  conv2 5x5, 128 -> pool; conv3 3x3, 256 -> pool; conv4 3x3, 256 -> pool; conv5 3x3, 256 -> pool
                                                    -> (B, H/32, W/32, 256)
  conv6 3x3, 256; flatten; fc1 256 + ReLU; fc2 256 + ReLU; out 1.
The reference's first two convs are 5x5 and the other four 3x3 (its my_conv default), although the paper's
text says 5x5 throughout; we follow the released network. Widths scale with `width` (fc width 4 * width).

The output is the LOGIT (B, 1) float32, not the probability: the paper's final sigmoid lives in the loss,
computed as a numerically stable binary cross-entropy on logits (optax.sigmoid_binary_cross_entropy), which
equals BCE(sigmoid(logit), label) without its overflow for confident logits.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jhuman.models.conv import Conv
from jhuman.models.posewarp import POSE_SIGMA, pose_maps, visibility
from jhuman.models.unet import NEGATIVE_SLOPE, STRIDE

# (name, kernel, width multiplier); a 2x2 max pooling after each but the last
LAYERS = (
    ("conv1", 5, 1),
    ("conv2", 5, 2),
    ("conv3", 3, 4),
    ("conv4", 3, 4),
    ("conv5", 3, 4),
    ("conv6", 3, 4),
)


class Discriminator(nn.Module):
    """(image (B, H, W, 3) in [-1, 1], source_joints, target_joints (B, 14, 2), source_visible,
    target_visible (B, 14) bool or None) -> logits (B, 1) float32. H, W multiples of 32."""

    width: int = 64
    pose_sigma: float = POSE_SIGMA
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image, source_joints, target_joints, source_visible=None, target_visible=None):
        if image.ndim != 4 or image.shape[-1] != 3 or image.shape[1] % STRIDE or image.shape[2] % STRIDE:
            raise ValueError(
                f"Discriminator: image must be (B, H, W, 3) with H, W multiples of {STRIDE}, got {image.shape}"
            )
        h, w = image.shape[1:3]
        source_pose = pose_maps(
            source_joints, visibility(source_joints, source_visible), h, w, self.pose_sigma
        )
        target_pose = pose_maps(
            target_joints, visibility(target_joints, target_visible), h, w, self.pose_sigma
        )
        x = jnp.asarray(image, self.dtype)
        for i, (name, kernel, mult) in enumerate(LAYERS):
            x = Conv(
                self.width * mult,
                (kernel, kernel),
                padding="SAME",
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name=name,
            )(x)
            x = nn.leaky_relu(x, NEGATIVE_SLOPE)
            if i < len(LAYERS) - 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            if i == 0:  # (B, H/2, W/2, 64 + 28)
                x = jnp.concatenate([x, source_pose.astype(self.dtype), target_pose.astype(self.dtype)], -1)
        x = x.reshape(x.shape[0], -1)  # (B, H/32 * W/32 * 4 width), NHWC order as Keras' Flatten
        for name in ("fc1", "fc2"):
            x = nn.relu(nn.Dense(4 * self.width, dtype=self.dtype, param_dtype=jnp.float32, name=name)(x))
        return nn.Dense(1, dtype=self.dtype, param_dtype=jnp.float32, name="out")(x).astype(jnp.float32)
