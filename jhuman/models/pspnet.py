"""PSPNet: a dilated ResNet trunk with the pyramid pooling module (Zhao et al., "Pyramid Scene Parsing Network",
CVPR 2017), Semantic Human Matting's T-Net as PSPNet-50 with 3 classes (jhuman.models.matting.TNet).

- Trunk: the project's ResNet (jhuman.models.resnet, torchvision layout and names, under 'trunk'), dilated to
  output stride 8 (res4 dilation 2, res5 dilation 4), ResNet-50 blocks (3, 4, 6, 3) by default.
- Pyramid pooling on res5 (B, h, w, D), D = 32 width: for each bin size b in `bins` (1, 2, 3, 6), average
  pooling into b x b bins (PyTorch's adaptive_avg_pool2d bins), 1x1 conv to D / len(bins) channels, batch
  norm, ReLU, bilinear upsampling back to h x w with aligned corners (the published nets' Interp);
  concatenated with res5 (2D channels) -> 3x3 conv to 8 width (512), batch norm, ReLU, channel dropout 0.1
  (Dropout2d), 1x1 conv to num_classes: the logits at output stride.
- Logits upsampled to the input size by the project's grid convention (jhuman.ops.image.upsample_aligned:
  logit i sits on input pixel output_stride * i, as DeepLab's and PersonLab's here), float32
  (B, H, W, num_classes). The published PSPNet resizes with aligned corners onto 8k + 1 inputs (473), where
  the two agree; for other sizes this keeps the trunk's own geometry.

Choices: torchvision's ResNet-50 (7x7 stem) rather than PSPNet's deep-stem ResNet, so torchvision weights
import as they are (jhuman.weights); no auxiliary res4 loss head (Semantic Human Matting trains its T-Net with
the trimap cross-entropy alone). Every batch norm, head included, follows `norm` ('batch' or 'frozen', see
jhuman.models.resnet). train=True needs a 'dropout' rng. Parameters: 'trunk', 'ppm' (conv{i} / bn{i} for
bin i), 'bottleneck', 'bottleneck_bn', 'classifier'. The input is already normalised, as for the other nets.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jhuman.models import resnet
from jhuman.models.conv import Conv
from jhuman.ops import image as image_ops

# New layers: N(0, 0.01) classifier kernels and zero biases (as DeepLab's here).
_classifier_init = nn.initializers.normal(stddev=0.01)


class PyramidPooling(nn.Module):
    """(B, h, w, D) -> (B, h, w, 2D): the input and, per bin size, its b x b average pooling through a 1x1
    conv (D / len(bins) channels) + batch norm + ReLU, upsampled back (aligned corners)."""

    bins: Sequence[int] = (1, 2, 3, 6)
    norm: str = "batch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        height, width, channels = x.shape[1:]
        branches = [x]
        for i, bins in enumerate(self.bins):
            pooled = image_ops.adaptive_average_pool(x, (bins, bins)).astype(self.dtype)  # (B, b, b, D)
            y = resnet._conv(channels // len(self.bins), 1, name=f"conv{i}", dtype=self.dtype)(pooled)
            y = nn.relu(resnet._norm(self.norm, train, f"bn{i}", self.dtype)(y))
            y = image_ops.resize_bilinear(y, (height, width), "align_corners")  # (B, h, w, D / n) float32
            branches.append(y.astype(self.dtype))
        return jnp.concatenate(branches, axis=-1)


class PSPNet(nn.Module):
    """x (B, H, W, 3) normalised -> logits (B, H, W, num_classes) float32. See the module docstring."""

    num_classes: int
    width: int = 64
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    bins: Sequence[int] = (1, 2, 3, 6)
    output_stride: int = 8
    norm: str = "batch"
    dropout_rate: float = 0.1
    dtype: Any = jnp.float32

    def __post_init__(self):
        if self.output_stride not in resnet.OUTPUT_STRIDES:
            raise ValueError(
                f"output_stride must be one of {resnet.OUTPUT_STRIDES}, got {self.output_stride!r}"
            )
        if self.norm not in resnet.NORMS:
            raise ValueError(f"norm must be one of {resnet.NORMS}, got {self.norm!r}")
        if len(tuple(self.stage_sizes)) != 4:
            raise ValueError(f"stage_sizes must give 4 stages, got {self.stage_sizes!r}")
        if not self.bins or min(self.bins) < 1:
            raise ValueError(f"bins must be positive bin counts, got {self.bins!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool = False):
        height, width = x.shape[1:3]
        trunk = resnet.ResNet(
            stage_sizes=tuple(self.stage_sizes),
            width=self.width,
            output_stride=self.output_stride,
            norm=self.norm,
            dtype=self.dtype,
            name="trunk",
        )
        features = trunk(x, train)["res5"]  # (B, h, w, 32 width)
        y = PyramidPooling(tuple(self.bins), self.norm, self.dtype, name="ppm")(features, train)
        y = resnet._conv(8 * self.width, 3, name="bottleneck", dtype=self.dtype)(y)  # (B, h, w, 8 width)
        y = nn.relu(resnet._norm(self.norm, train, "bottleneck_bn", self.dtype)(y))
        y = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(y)
        logits = Conv(
            self.num_classes,
            (1, 1),
            kernel_init=_classifier_init,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="classifier",
        )(y)  # (B, h, w, num_classes)
        return image_ops.upsample_aligned(logits.astype(jnp.float32), (height, width), self.output_stride)
