"""ResNet v1 with bottleneck blocks, dilated for dense prediction (DeepLab-v2, PersonLab).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; dilation ("atrous") replacing the stride
of the last stages as in Chen et al., "DeepLab", TPAMI 2017 (res4 dilation 2 and res5 dilation 4 for output
stride 8, res5 dilation 2 for output stride 16). Every block of a dilated stage uses that stage's dilation
(the DeepLab-v2 layout; torchvision's segmentation nets keep the previous dilation in the stage's first block,
which changes no parameter shape).

Layout and names follow torchvision so that a weight importer maps names one to one:
  conv1, bn1 (stem) / layer1..layer4 / block0, block1, ... / conv1, bn1, conv2, bn2, conv3, bn3,
  downsample_conv, downsample_bn. Kernels are HWIO (linen), torchvision's are OIHW.
The stride sits on the 3x3 conv ("v1.5", torchvision); `stride_in_1x1=True` puts it on the first 1x1 conv
(the Caffe/MSRA ResNets that DeepLab-v2 fine-tuned).

Padding follows torchvision (7x7/2 pad 3, max-pool 3x3/2 pad 1, 3x3 pad = dilation, 1x1 pad 0), so each
stride-2 step maps a size H to ceil(H / 2) and output pixel i sits over input pixel stride * i:
321 -> 41 and 65 -> 9 at output stride 8 (as Caffe's DeepLab: label[::8, ::8] aligns with the logits),
64 -> 8 at output stride 8, 64 -> 4 at output stride 16.

norm='frozen' is BatchNorm that always uses its running averages (DeepLab-v2 fine-tunes with frozen
statistics; freezing the affine scale/bias too is the optimizer's business, by a path mask on 'bn').
norm='batch' is ordinary training-mode BatchNorm (statistics over the global batch under a global-view jit).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jhuman.models.conv import Conv
from jhuman.ops.materialize import materialize

# torchvision BatchNorm2d: eps 1e-5, momentum 0.1 (a running average keeping 0.9 of the old value).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
NORMS = ("batch", "frozen")
OUTPUT_STRIDES = (8, 16, 32)


def stage_dilations(output_stride):
    """(stride, dilation) of layer1..layer4 for an output stride in {8, 16, 32}."""
    if output_stride == 32:
        return ((1, 1), (2, 1), (2, 1), (2, 1))
    if output_stride == 16:
        return ((1, 1), (2, 1), (2, 1), (1, 2))
    if output_stride == 8:
        return ((1, 1), (2, 1), (1, 2), (1, 4))
    raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")


def _conv(features, kernel, stride=1, dilation=1, name=None, dtype=jnp.float32):
    pad = dilation * (kernel // 2)  # torchvision/Caffe symmetric padding
    return Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(dilation, dilation),
        use_bias=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        name=name,
    )


def _norm(norm, train, name, dtype):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return nn.BatchNorm(
        use_running_average=(norm == "frozen") or not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


class Bottleneck(nn.Module):
    """1x1 (planes) -> 3x3 (planes, stride, dilation) -> 1x1 (4 planes), plus identity or projection."""

    planes: int
    stride: int = 1
    dilation: int = 1
    stride_in_1x1: bool = False
    norm: str = "frozen"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
        out = _conv(self.planes, 1, s1, name="conv1", dtype=self.dtype)(x)
        out = nn.relu(_norm(self.norm, train, "bn1", self.dtype)(out))
        out = _conv(self.planes, 3, s3, self.dilation, name="conv2", dtype=self.dtype)(out)
        out = nn.relu(_norm(self.norm, train, "bn2", self.dtype)(out))
        out = _conv(4 * self.planes, 1, name="conv3", dtype=self.dtype)(out)
        out = _norm(self.norm, train, "bn3", self.dtype)(out)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != 4 * self.planes:
            shortcut = _conv(4 * self.planes, 1, self.stride, name="downsample_conv", dtype=self.dtype)(x)
            shortcut = _norm(self.norm, train, "downsample_bn", self.dtype)(shortcut)
        return materialize(nn.relu(out + shortcut))  # no recomputation of earlier blocks (ops/materialize)


class Stage(nn.Module):
    """`num_blocks` bottlenecks named block0, block1, ...; the first one carries the stride."""

    num_blocks: int
    planes: int
    stride: int = 1
    dilation: int = 1
    stride_in_1x1: bool = False
    norm: str = "frozen"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        for j in range(self.num_blocks):
            x = Bottleneck(
                planes=self.planes,
                stride=self.stride if j == 0 else 1,
                dilation=self.dilation,
                stride_in_1x1=self.stride_in_1x1,
                norm=self.norm,
                dtype=self.dtype,
                name=f"block{j}",
            )(x, train)
        return x


class ResNet(nn.Module):
    """Bottleneck ResNet trunk (no pooling/fc head): images (B, H, W, 3) -> feature dict.

    Returns {'res2': (B, H/4, W/4, 4w), 'res3': (B, H/8, W/8, 8w), 'res4': (.., 16w), 'res5': (.., 32w)}
    (w = width; sizes rounded up; res4/res5 stay at H/8 or H/16 when output_stride is 8 or 16). A stage of 0
    blocks passes its input on unchanged (stage_sizes (1, 1, 1, 0): 'res5' is 'res4', as the parsing demo's
    tiny trunk uses it).
    """

    stage_sizes: Sequence[int]
    width: int = 64
    output_stride: int = 32
    norm: str = "batch"
    stride_in_1x1: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        layout = stage_dilations(self.output_stride)
        x = jnp.asarray(images, self.dtype)
        x = _conv(self.width, 7, 2, name="conv1", dtype=self.dtype)(x)  # (B, H/2, W/2, w)
        x = nn.relu(_norm(self.norm, train, "bn1", self.dtype)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # (B, H/4, W/4, w), -inf pad
        features = {}
        for i, (num_blocks, (stride, dilation)) in enumerate(zip(self.stage_sizes, layout)):
            x = Stage(
                num_blocks=num_blocks,
                planes=self.width * 2**i,
                stride=stride,
                dilation=dilation,
                stride_in_1x1=self.stride_in_1x1,
                norm=self.norm,
                dtype=self.dtype,
                name=f"layer{i + 1}",
            )(x, train)
            features[f"res{i + 2}"] = x
        return features


ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3))
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3))
RESNETS = {"resnet50": ResNet50, "resnet101": ResNet101, "resnet152": ResNet152}


def build_resnet(name: str, stage_sizes=None, **options) -> ResNet:
    """The trunk RESNETS[name] with `options` (width, output_stride, norm, ...); stage_sizes (blocks per stage,
    e.g. (1, 1, 1, 1) for tiny runs) overrides the named depth when not None. The one place the task models
    (DeepLab, PersonLab) build their ResNet; inside a linen setup() the trunk becomes that module's child."""
    depth = {} if stage_sizes is None else {"stage_sizes": tuple(stage_sizes)}
    return RESNETS[name](**depth, **options)
