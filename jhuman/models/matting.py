"""Semantic Human Matting's networks (Chen et al., ACM MM 2018; shared/reference/matting.md): T-Net, M-Net and
the model that chains them with the fusion.

T-Net (`TNet`): PSPNet-50 with 3 classes (jhuman.models.pspnet), logits (B, H, W, 3) in the trimap order
jhuman.ops.matting.CLASSES = (background, unknown, foreground); Bs, Us, Fs = their softmax.

M-Net (`MNet`): the Deep Image Matting encoder-decoder with batch norm, as SHM describes it:
- encoder 'encoder': VGG-16's 13 3x3 convs conv1_1 .. conv5_3 (jhuman.models.vgg names and widths: 1, 2, 4, 8,
  8 x width), each followed by batch norm bn{b}_{k} and ReLU; a 2x2 stride-2 max-pooling after blocks 1-4 that
  keeps its argmax (jhuman.ops.matting.max_pool_with_argmax). Four poolings, so conv5_x run at 1/16 and DIM's
  pool5 / conv6 / deconv6 / unpool5 are not there (SHM drops conv6 and deconv6; without them the fifth pooling
  would only shrink and regrow the map).
- decoder 'decoder': deconv5 (8 width), unpool with pool4's indices, deconv4 (4 width), unpool (pool3),
  deconv3 (2 width), unpool (pool2), deconv2 (width), unpool (pool1), deconv1 (width), then 'pred' (1 channel):
  six 5x5 convs, batch norm bn5 .. bn1 and ReLU after each but the prediction, which gets a sigmoid so that
  alpha_r lies in [0, 1] (the PyTorch ports leave it out).
- input (B, H, W, 3 + trimap_channels): normalised RGB, then the trimap as 3 probabilities / one-hot channels
  in CLASSES order, or one channel Fs + 0.5 Us (trimap_channels=1, the paper's 4-channel option;
  jhuman.ops.matting.trimap_input); H and W multiples of 16. The encoder's names let jhuman.weights import a
  VGG-16 into it (prefix '.../mnet/encoder'): the 3-channel conv1_1 is widened, its trimap channels zero.

`SemanticHumanMatting`: submodules 'tnet' and 'mnet' (parameter paths start with tnet/ and mnet/), raw RGB
images 0..255 normalised inside by `input_norm` (jhuman.tasks.common.INPUT_NORMS) for both nets. At test
time (`__call__`): T-Net logits -> softmax -> M-Net on image + probabilities -> alpha_p = Fs + Us alpha_r
(SHM eq. 4, jhuman.ops.matting.fuse), or alpha_r itself with fusion=False (the ablation).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jhuman.models import resnet, vgg
from jhuman.models.conv import Conv
from jhuman.models.pspnet import PSPNet
from jhuman.ops import matting as matting_ops
from jhuman.tasks.common import INPUT_NORMS, check_input_norm

TNet = functools.partial(PSPNet, num_classes=3)

MNET_STRIDE = 16  # four 2x2 poolings
TRIMAP_CHANNELS = (1, 3)
# Decoder: (name, width multiplier, index of the encoder pooling whose argmax the map is unpooled with next).
MNET_DECODER = (
    ("deconv5", 8, 3),
    ("deconv4", 4, 2),
    ("deconv3", 2, 1),
    ("deconv2", 1, 0),
    ("deconv1", 1, None),
)


class MNetEncoder(nn.Module):
    """x (B, H, W, C) -> (conv5_3 activation (B, H/16, W/16, 8 width), [argmax indices of pool1 .. pool4])."""

    width: int = 64
    norm: str = "batch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        indices = []
        for i, (block, num_convs, mult) in enumerate(vgg.VGG16_BLOCKS):
            if i > 0:
                x, idx = matting_ops.max_pool_with_argmax(x)  # (B, H/2^i, W/2^i, C)
                indices.append(idx)
            for k in range(1, num_convs + 1):
                x = vgg._conv(self.width * mult, 3, 1, f"conv{block}_{k}", self.dtype)(x)
                x = nn.relu(resnet._norm(self.norm, train, f"bn{block}_{k}", self.dtype)(x))
        return x, indices


class MNetDecoder(nn.Module):
    """(conv5_3 features, pooling indices) -> alpha_r (B, H, W, 1) float32 in [0, 1]."""

    width: int = 64
    norm: str = "batch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, indices: Sequence[jnp.ndarray], train: bool = False):
        for name, mult, pool in MNET_DECODER:
            x = Conv(
                self.width * mult,
                (5, 5),
                padding=((2, 2), (2, 2)),
                use_bias=False,
                kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name=name,
            )(x)
            x = nn.relu(resnet._norm(self.norm, train, "bn" + name[-1], self.dtype)(x))
            if pool is not None:
                idx = indices[pool]
                x = matting_ops.max_unpool(x, idx, (2 * idx.shape[1], 2 * idx.shape[2]))
        logits = Conv(
            1, (5, 5), padding=((2, 2), (2, 2)), dtype=self.dtype, param_dtype=jnp.float32, name="pred"
        )(x)
        return jax.nn.sigmoid(logits.astype(jnp.float32))


class MNet(nn.Module):
    """x (B, H, W, 3 + trimap_channels) -> alpha_r (B, H, W, 1) float32 in [0, 1]; H, W multiples of 16.
    Parameters 'encoder' (VGG-16 names) and 'decoder'. See the module docstring."""

    width: int = 64
    trimap_channels: int = 3
    norm: str = "batch"
    dtype: Any = jnp.float32

    def __post_init__(self):
        if self.trimap_channels not in TRIMAP_CHANNELS:
            raise ValueError(
                f"trimap_channels must be one of {TRIMAP_CHANNELS}, got {self.trimap_channels!r}"
            )
        if self.norm not in resnet.NORMS:
            raise ValueError(f"norm must be one of {resnet.NORMS}, got {self.norm!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool = False):
        channels = 3 + self.trimap_channels
        if x.ndim != 4 or x.shape[-1] != channels:
            raise ValueError(f"MNet input must be (B, H, W, {channels}) (RGB + trimap), got {x.shape}")
        if x.shape[1] % MNET_STRIDE or x.shape[2] % MNET_STRIDE:
            raise ValueError(
                f"MNet input height and width must be multiples of {MNET_STRIDE}, got {x.shape[1:3]}"
            )
        x = jnp.asarray(x, self.dtype)
        features, indices = MNetEncoder(self.width, self.norm, self.dtype, name="encoder")(x, train)
        return MNetDecoder(self.width, self.norm, self.dtype, name="decoder")(features, indices, train)


class SemanticHumanMatting(nn.Module):
    """T-Net + M-Net + fusion on raw RGB images 0..255. See the module docstring.

    Methods (`model.apply(variables, ..., method=...)`; `init` uses `__call__`, so both nets get parameters):
    - trimap_logits(images (B, H, W, 3), train) -> (B, H, W, 3) float32;
    - alpha(images (B, h, w, 3), trimap_probs (B, h, w, 3) in CLASSES order, train) ->
      {'alpha_r': (B, h, w, 1), 'alpha_p': fused (alpha_r when fusion=False)} float32, h, w multiples of 16;
    - __call__(images, train) -> {'trimap_logits', 'alpha_r', 'alpha_p'}: the test-time pipeline, with the
      end-to-end gradient of alpha_p reaching T-Net through the fusion and M-Net's trimap input.
    train=True needs a 'dropout' rng for the T-Net (PSPNet's channel dropout, rate tnet_dropout_rate; 0 takes
    none).
    """

    tnet_width: int = 64
    tnet_stage_sizes: Sequence[int] = (3, 4, 6, 3)
    mnet_width: int = 64
    trimap_channels: int = 3
    fusion: bool = True
    input_norm: str = "torchvision"
    dtype: Any = jnp.float32
    norm: str = "batch"
    tnet_dropout_rate: float = 0.1

    def setup(self):
        check_input_norm(self.input_norm)
        self.tnet = TNet(
            width=self.tnet_width,
            stage_sizes=tuple(self.tnet_stage_sizes),
            norm=self.norm,
            dropout_rate=self.tnet_dropout_rate,
            dtype=self.dtype,
        )
        self.mnet = MNet(self.mnet_width, self.trimap_channels, self.norm, self.dtype)

    def _normalised(self, images):
        mean, std, bgr = INPUT_NORMS[self.input_norm]
        x = (jnp.asarray(images, jnp.float32) - mean.astype("float32")) / std.astype("float32")
        return (x[..., ::-1] if bgr else x).astype(self.dtype)

    def trimap_logits(self, images, train: bool = False):
        return self.tnet(self._normalised(images), train)

    def alpha(self, images, trimap_probs, train: bool = False):
        trimap_probs = jnp.asarray(trimap_probs, jnp.float32)
        trimap = matting_ops.trimap_input(trimap_probs, self.trimap_channels)
        x = jnp.concatenate([self._normalised(images), trimap.astype(self.dtype)], axis=-1)
        alpha_r = self.mnet(x, train)
        alpha_p = matting_ops.fuse(trimap_probs, alpha_r) if self.fusion else alpha_r
        return {"alpha_r": alpha_r, "alpha_p": alpha_p}

    def __call__(self, images, train: bool = False):
        logits = self.trimap_logits(images, train)
        out = self.alpha(images, jax.nn.softmax(logits, axis=-1), train)
        return {"trimap_logits": logits, **out}
