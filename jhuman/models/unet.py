"""The U-Net of the pose-guided synthesis paper (Balakrishnan et al., "Synthesizing Images of Humans in Unseen
Poses", CVPR 2018, Sec. 3 and the supplement; shared/reference/posewarp.md), the building block of every
generator in jhuman.models.posewarp.

Encoder (11 convolutions, names enc0 .. enc10, each followed by LeakyReLU 0.2):
  enc0   7x7, stride 1                       (B, H,    W,    e0)   skip
  enc1   3x3, stride 2                       (B, H/2,  W/2,  e1)
  -- the pose (B, H/2, W/2, P) is concatenated here --
  enc2   3x3                                 (B, H/2,  W/2,  e2)   skip
  enc3   3x3, stride 2; enc4 3x3             (B, H/4,  W/4,  e4)   skip
  enc5   3x3, stride 2; enc6 3x3             (B, H/8,  W/8,  e6)   skip
  enc7   3x3, stride 2; enc8 3x3             (B, H/16, W/16, e8)   skip
  enc9   3x3, stride 2; enc10 3x3            (B, H/32, W/32, e10)
Decoder (dec0 .. dec4): x2 bilinear upsampling, concatenation with the skip of that resolution (e8, e6, e4,
e2, e0 in turn), a 3x3 conv + LeakyReLU 0.2 -> (B, H, W, d4). Optional head: a linear 3x3 conv to
`out_channels` (the callers apply tanh / sigmoid / softmax, so one head can carry several outputs: the
foreground net's RGB and mask are one 4-channel conv, the same function as the reference's two 3x3 convs on
the same features). No normalisation anywhere. H and W must be multiples of 32 (five stride-2 convolutions:
256 -> 8, 64 -> 2).

Padding is TensorFlow's 'SAME' as in the Keras reference (a stride-2 3x3 conv pads 0 before and 1 after, so
output pixel k sits on input pixel 2k). The upsampling follows that geometry: output pixel i samples the coarse
map at i / 2 (jhuman.ops.image.upsample_aligned), as the reference's interp_upsampling does; on the last
row/column the reference reads a reflected pixel, we clamp to the edge (the reference's reflection averages the
last pixel with the one before it, an artefact of its padding, not a design choice).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jhuman.models.conv import Conv
from jhuman.ops import image as image_ops

NUM_ENCODER = 11
NUM_DECODER = 5
STRIDE = 32  # five stride-2 convolutions
NEGATIVE_SLOPE = 0.2


def conv_lrelu(x, features: int, name: str, kernel: int = 3, stride: int = 1, dtype: Any = jnp.float32):
    """Conv (kernel x kernel, 'SAME', bias) + LeakyReLU(0.2): the reference's my_conv."""
    y = Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding="SAME",
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )(x)
    return nn.leaky_relu(y, NEGATIVE_SLOPE)


def upsample2(x):
    """(B, h, w, C) -> (B, 2h, 2w, C), output pixel i sampling the input at i / 2 (edge clamped), x's dtype."""
    h, w = x.shape[1:3]
    return image_ops.upsample_aligned(x, (2 * h, 2 * w), 2).astype(x.dtype)


class UNet(nn.Module):
    """x (B, H, W, C), pose (B, H/2, W/2, P) -> (B, H, W, out_channels) logits in float32 (linear head), or the
    last decoder features (B, H, W, dec_widths[-1]) in `dtype` when out_channels is None. See the module
    docstring.

    enc_widths: the 11 encoder widths (reference [64, 64] + [128] * 9); dec_widths: the 5 decoder widths
    (reference [128] * 4 + [32] for the mask net, [128] * 4 + [64] for the foreground and background nets).
    """

    out_channels: Optional[int]
    enc_widths: Sequence[int]
    dec_widths: Sequence[int]
    first_kernel: int = 7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, pose):
        if len(self.enc_widths) != NUM_ENCODER or len(self.dec_widths) != NUM_DECODER:
            raise ValueError(
                f"UNet needs {NUM_ENCODER} encoder and {NUM_DECODER} decoder widths, got "
                f"enc_widths={tuple(self.enc_widths)} and dec_widths={tuple(self.dec_widths)}"
            )
        if x.ndim != 4 or x.shape[1] % STRIDE or x.shape[2] % STRIDE:
            raise ValueError(
                f"UNet input must be (B, H, W, C) with H, W multiples of {STRIDE}, got {x.shape}"
            )
        half = (x.shape[0], x.shape[1] // 2, x.shape[2] // 2)
        if pose.ndim != 4 or tuple(pose.shape[:3]) != half:
            raise ValueError(f"UNet pose must be (B, H/2, W/2, P) = {half + ('P',)}, got {pose.shape}")
        e, dt = self.enc_widths, self.dtype
        x = jnp.asarray(x, dt)
        skips = [conv_lrelu(x, e[0], "enc0", kernel=self.first_kernel, dtype=dt)]  # (B, H, W, e0)
        x = conv_lrelu(skips[0], e[1], "enc1", stride=2, dtype=dt)  # (B, H/2, W/2, e1)
        x = jnp.concatenate([x, jnp.asarray(pose, dt)], axis=-1)
        skips.append(conv_lrelu(x, e[2], "enc2", dtype=dt))  # (B, H/2, W/2, e2)
        x = skips[-1]
        for level in range(1, 5):  # H/4 .. H/32
            x = conv_lrelu(x, e[2 * level + 1], f"enc{2 * level + 1}", stride=2, dtype=dt)
            x = conv_lrelu(x, e[2 * level + 2], f"enc{2 * level + 2}", dtype=dt)
            if level < 4:
                skips.append(x)
        for i, width in enumerate(self.dec_widths):  # H/16 .. H
            x = jnp.concatenate([upsample2(x), skips[-1 - i]], axis=-1)
            x = conv_lrelu(x, width, f"dec{i}", dtype=dt)
        if self.out_channels is None:
            return x
        head = Conv(self.out_channels, (3, 3), padding="SAME", dtype=dt, param_dtype=jnp.float32, name="head")
        return head(x).astype(jnp.float32)
