"""DeepLab-v2 for human parsing: a dilated trunk (ResNet or VGG-16) plus a per-pixel classifier.

Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully
Connected CRFs", TPAMI 2017 (no CRF here), as used by Gong et al., CVPR 2017 (LIP):
- head='aspp' (ResNet default): ASPP-L, four parallel 3x3 convs on res5 with dilation rates 6, 12, 18, 24,
  each straight to num_classes, SUMMED (section 3.3 of the paper, Caffe layers fc1_c0..c3).
- head='largefov' (VGG default): fc8, a 1x1 conv on fc7 to num_classes.

The model takes images already normalised (float NHWC; the task subtracts CAFFE_MEAN_RGB or ImageNet
statistics to match the backbone's weights) and returns
  {'logits': (B, ceil(H/os), ceil(W/os), num_classes) float32, 'features': the trunk's last map (res5 / fc7)}.
Parameters: {'trunk': ..., 'classifier': ...}; the classifier gets the 10x learning rate by the path regex
`CLASSIFIER_PATTERN`. Attention-to-Scale wraps one DeepLab submodule and calls it once per input scale:
linen shares the weights between calls, and 'features' gives it the fc7/res5 maps it fuses.
"""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jhuman.models import resnet, vgg

BACKBONES = {
    "resnet50": functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3)),
    "resnet101": functools.partial(resnet.ResNet, stage_sizes=(3, 4, 23, 3)),
    "resnet152": functools.partial(resnet.ResNet, stage_sizes=(3, 8, 36, 3)),
    "vgg16": vgg.VGG16LargeFOV,
}
HEADS = ("aspp", "largefov")
DEFAULT_HEAD = {"resnet50": "aspp", "resnet101": "aspp", "resnet152": "aspp", "vgg16": "largefov"}
CLASSIFIER_PATTERN = r"(^|/)classifier/"  # matches flattened param paths 'classifier/branch0/kernel', ...

# DeepLab's Caffe prototxts initialise the classifier with N(0, 0.01) weights and zero bias.
_classifier_init = nn.initializers.normal(stddev=0.01)


class ASPP(nn.Module):
    """Sum over `rates` of a 3x3 conv with that dilation, each to num_classes: (B, h, w, D) -> (B, h, w, C)."""
    num_classes: int
    rates: Sequence[int] = (6, 12, 18, 24)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = 0
        for i, rate in enumerate(self.rates):
            out = out + nn.Conv(
                self.num_classes, (3, 3), padding=((rate, rate), (rate, rate)), kernel_dilation=(rate, rate),
                kernel_init=_classifier_init, dtype=self.dtype, param_dtype=jnp.float32, name=f"branch{i}")(x)
        return out


class LargeFOVHead(nn.Module):
    """fc8: 1x1 conv (B, h, w, D) -> (B, h, w, C)."""
    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.Conv(self.num_classes, (1, 1), kernel_init=_classifier_init, dtype=self.dtype,
                       param_dtype=jnp.float32, name="fc8")(x)


def _check(backbone, head, output_stride):
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid: {sorted(BACKBONES)}")
    if head is not None and head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {list(HEADS)}")
    if backbone == "vgg16" and output_stride != 8:
        raise ValueError(f"vgg16 (LargeFOV) has output stride 8 only, got output_stride={output_stride}")
    if output_stride not in resnet.OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {resnet.OUTPUT_STRIDES}, got {output_stride!r}")


class DeepLab(nn.Module):
    """DeepLab-v2: trunk + classifier. See the module docstring for inputs, outputs and parameter names.

    width: channels of the first conv (64 real nets, 8 tiny); fc_width (None = 16 * width, 1024 for the real
    net) and dropout_rate: VGG fc6/fc7 only;
    norm ('frozen' | 'batch'), stride_in_1x1 and stage_sizes (blocks per stage, overriding the depth of the
    named ResNet, e.g. (1, 1, 1, 1) for tiny runs): ResNet only; head None = the backbone's published head.
    """
    backbone: str = "resnet101"
    num_classes: int = 20
    head: Optional[str] = None
    rates: Sequence[int] = (6, 12, 18, 24)
    width: int = 64
    fc_width: Optional[int] = None
    dropout_rate: float = 0.5
    output_stride: int = 8
    norm: str = "frozen"
    stride_in_1x1: bool = False
    stage_sizes: Optional[Sequence[int]] = None
    dtype: Any = jnp.float32

    def __post_init__(self):
        _check(self.backbone, self.head, self.output_stride)
        if self.stage_sizes is not None and (self.backbone == "vgg16" or len(self.stage_sizes) != 4):
            raise ValueError(f"stage_sizes needs a resnet backbone and 4 stages, got {self.backbone!r}, "
                             f"{self.stage_sizes!r}")
        if self.norm not in resnet.NORMS:
            raise ValueError(f"norm must be one of {resnet.NORMS}, got {self.norm!r}")
        super().__post_init__()

    @property
    def head_name(self):
        return self.head or DEFAULT_HEAD[self.backbone]

    @property
    def feature_key(self):
        return "fc7" if self.backbone == "vgg16" else "res5"

    def setup(self):
        if self.backbone == "vgg16":
            self.trunk = vgg.VGG16LargeFOV(
                width=self.width, fc_width=self.fc_width, dropout_rate=self.dropout_rate, dtype=self.dtype)
        else:
            depth = {} if self.stage_sizes is None else {"stage_sizes": tuple(self.stage_sizes)}
            self.trunk = BACKBONES[self.backbone](
                **depth, width=self.width, output_stride=self.output_stride, norm=self.norm,
                stride_in_1x1=self.stride_in_1x1, dtype=self.dtype)
        if self.head_name == "aspp":
            self.classifier = ASPP(self.num_classes, tuple(self.rates), dtype=self.dtype)
        else:
            self.classifier = LargeFOVHead(self.num_classes, dtype=self.dtype)

    def __call__(self, images, train: bool = False):
        features = self.trunk(images, train)[self.feature_key]  # (B, h, w, D) at output stride
        logits = self.classifier(features)  # (B, h, w, C)
        return {"logits": logits.astype(jnp.float32), "features": features}


def build_deeplab(**kwargs):
    """DeepLab from config values (lists and dtype names accepted); unknown option names raise ValueError."""
    fields = set(DeepLab.__dataclass_fields__) - {"parent", "name"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"unknown DeepLab option(s) {unknown}; valid: {sorted(fields)}")
    for key in ("rates", "stage_sizes"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    if isinstance(kwargs.get("dtype"), str):  # 'bfloat16' from a config file
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    return DeepLab(**kwargs)
