"""VGG-16 DeepLab-LargeFOV trunk (Chen et al., "Semantic Image Segmentation with Deep Convolutional Nets and
Fully Connected CRFs", ICLR 2015), the "DeepLabV2"/"Attention" model of the LIP paper (Gong et al., CVPR 2017).

conv1_1..conv5_3 (3x3, ReLU); pool1-3 3x3 stride 2 pad 1; pool4, pool5 3x3 stride 1 pad 1; conv5_x dilation 2;
fc6 3x3 dilation 12 (1024 channels), fc7 1x1 (1024), ReLU and dropout 0.5 after each. Output stride 8.

Sizes: every pool uses floor rounding with pad 1, so a stride-2 pool maps H to ceil(H / 2) and output pixel i
sits over input pixel 8 i: 321 -> 41 and 65 -> 9 (identical to Caffe's ceil-mode pooling for the odd sizes
DeepLab uses), 64 -> 8 (Caffe's ceil mode would give 9 there). Max-pool padding is -inf, as in Caffe.

Submodule names conv1_1 ... conv5_3, fc6, fc7 match the Caffe layers; torchvision's vgg16.features maps onto
conv1_1..conv5_3 in order (its classifier is not used: DeepLab's fc6/fc7 are the subsampled ones).
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

# (block, number of 3x3 convs, width multiplier of `width`)
VGG16_BLOCKS = ((1, 2, 1), (2, 2, 2), (3, 3, 4), (4, 3, 8), (5, 3, 8))


def _conv(features, kernel, dilation, name, dtype):
    pad = dilation * (kernel // 2)
    return nn.Conv(
        features,
        (kernel, kernel),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(dilation, dilation),
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


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
