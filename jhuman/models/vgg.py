"""VGG trunks: the plain VGG-16 / VGG-19 feature extractors (Simonyan and Zisserman, "Very Deep Convolutional
Networks for Large-Scale Image Recognition", ICLR 2015) and the DeepLab-LargeFOV VGG-16 (Chen et al.,
"Semantic Image Segmentation with Deep Convolutional Nets and Fully Connected CRFs", ICLR 2015), the
"DeepLabV2"/"Attention" model of the LIP paper (Gong et al., CVPR 2017).

Plain VGG (`VGG`, `VGG16`, `VGG19`): 3x3 convs with ReLU in five blocks (VGG-16: 2, 2, 3, 3, 3 convs; VGG-19:
2, 2, 4, 4, 4), widths 64, 128, 256, 512, 512 for width=64, a 2x2 stride-2 pool (floor rounding) between
blocks, max as in the ImageNet net or average (the pose-guided synthesis paper's perceptual loss: VGG-19 with
average pooling, post-ReLU conv1_1 .. conv4_4). It returns every post-ReLU conv activation by layer name up to
`last_layer`; the classifier is not part of it.

DeepLab-LargeFOV (`VGG16LargeFOV`): conv1_1..conv5_3 (3x3, ReLU); pool1-3 3x3 stride 2 pad 1; pool4, pool5 3x3
stride 1 pad 1; conv5_x dilation 2; fc6 3x3 dilation 12 (1024 channels), fc7 1x1 (1024), ReLU and dropout 0.5
after each. Output stride 8. Every pool uses floor rounding with pad 1, so a stride-2 pool maps H to
ceil(H / 2) and output pixel i sits over input pixel 8 i: 321 -> 41 and 65 -> 9 (identical to Caffe's
ceil-mode pooling for the odd sizes DeepLab uses), 64 -> 8 (Caffe's ceil mode would give 9 there). Max-pool
padding is -inf, as in Caffe.

Submodule names conv{block}_{k} (and fc6, fc7) match the Caffe layers; torchvision's vgg16/vgg19.features and
Keras' block{b}_conv{k} layers map onto them in order (jhuman.weights). The first conv takes whatever number
of input channels the images have (e.g. RGB + trimap); jhuman.weights widens a 3-channel file kernel for it.
"""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jhuman.models.conv import Conv

# (block, number of 3x3 convs, width multiplier of `width`)
VGG16_BLOCKS = ((1, 2, 1), (2, 2, 2), (3, 3, 4), (4, 3, 8), (5, 3, 8))
VGG19_BLOCKS = ((1, 2, 1), (2, 2, 2), (3, 4, 4), (4, 4, 8), (5, 4, 8))
POOLINGS = ("max", "avg")


def conv_names(blocks: Sequence[tuple]) -> list[str]:
    """['conv1_1', 'conv1_2', 'conv2_1', ...]: the conv layers of `blocks`, in order."""
    return [f"conv{block}_{k}" for block, num_convs, _ in blocks for k in range(1, num_convs + 1)]


def _conv(features, kernel, dilation, name, dtype):
    pad = dilation * (kernel // 2)
    return Conv(
        features,
        (kernel, kernel),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(dilation, dilation),
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


class VGG(nn.Module):
    """images (B, H, W, C) -> {'conv1_1': (B, H, W, width), ..., last_layer: ...}, every post-ReLU conv.

    Block b's convs run at stride 2^(b-1) (a 2x2 stride-2 pool, floor rounding, after each block but the
    last one computed). blocks: VGG16_BLOCKS or VGG19_BLOCKS (the `VGG16` / `VGG19` partials); pooling: 'max'
    or 'avg'; last_layer: the last conv computed (None = all), e.g. 'conv4_4' for the perceptual loss.
    """

    blocks: Sequence[tuple] = VGG19_BLOCKS
    width: int = 64
    pooling: str = "max"
    last_layer: Optional[str] = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images):
        names = conv_names(self.blocks)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r} is not one of {list(POOLINGS)}")
        if self.last_layer is not None and self.last_layer not in names:
            raise ValueError(f"last_layer={self.last_layer!r} is not a layer of this VGG; valid: {names}")
        last = self.last_layer or names[-1]
        pool = nn.max_pool if self.pooling == "max" else nn.avg_pool
        x = jnp.asarray(images, self.dtype)
        features = {}
        for i, (block, num_convs, mult) in enumerate(self.blocks):
            if i > 0:
                x = pool(x, (2, 2), strides=(2, 2), padding="VALID")
            for k in range(1, num_convs + 1):
                name = f"conv{block}_{k}"
                x = features[name] = nn.relu(_conv(self.width * mult, 3, 1, name, self.dtype)(x))
                if name == last:
                    return features
        return features


VGG16 = functools.partial(VGG, blocks=VGG16_BLOCKS)
VGG19 = functools.partial(VGG, blocks=VGG19_BLOCKS)


class VGG16LargeFOV(nn.Module):
    """images (B, H, W, 3) -> {'conv1_2', 'conv2_2', 'conv3_3', 'conv4_3', 'conv5_3', 'fc6', 'fc7'}.

    conv features are post-ReLU, before pooling (strides 1, 2, 4, 8, 8); fc6/fc7 post-ReLU and dropout,
    (B, ceil(H/8), ceil(W/8), fc_width). fc_width None = 16 * width (1024 for the real net).
    `train=True` needs a 'dropout' rng.
    """

    width: int = 64
    fc_width: Optional[int] = None
    dropout_rate: float = 0.5
    fc6_dilation: int = 12
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = jnp.asarray(images, self.dtype)
        features = {}
        for block, num_convs, mult in VGG16_BLOCKS:
            dilation = 2 if block == 5 else 1
            for k in range(1, num_convs + 1):
                x = nn.relu(_conv(self.width * mult, 3, dilation, f"conv{block}_{k}", self.dtype)(x))
            features[f"conv{block}_{num_convs}"] = x
            stride = 2 if block <= 3 else 1  # pool1-3 halve, pool4-5 keep the size
            x = nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)))
        fc_width = self.fc_width or 16 * self.width
        x = nn.relu(_conv(fc_width, 3, self.fc6_dilation, "fc6", self.dtype)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        features["fc6"] = x
        x = nn.relu(_conv(fc_width, 1, 1, "fc7", self.dtype)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        features["fc7"] = x
        return features
