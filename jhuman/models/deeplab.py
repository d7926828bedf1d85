"""DeepLab-v2 for human parsing: a dilated trunk (ResNet or VGG-16) plus a per-pixel classifier.

Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully
Connected CRFs", TPAMI 2017 (no CRF here), as used by Gong et al., CVPR 2017 (LIP):
- head='aspp' (ResNet default): ASPP-L, four parallel 3x3 convs on res5 with dilation rates 6, 12, 18, 24,
  each straight to num_classes, SUMMED (section 3.3 of the paper, Caffe layers fc1_c0..c3).
- head='largefov' (VGG default): fc8, a 1x1 conv on fc7 to num_classes.
- decoder=w > 0 (ResNet only; not in DeepLab-v2 or the LIP paper, the parsing demo's choice, README): `Refine`
  corrects the logits, upsampled onto the res2 grid, from the res2 features (after DeepLab-v3+'s decoder), so
  the logits come at stride 4 (`DeepLab.logit_stride`); thin limbs and small parts need it at 96-px crops.

The model takes images already normalised (float NHWC; the task subtracts CAFFE_MEAN_RGB or ImageNet
statistics to match the backbone's weights) and returns
  {'logits': (B, ceil(H/os), ceil(W/os), num_classes) float32, 'features': the trunk's last map (res5 / fc7)}.
Parameters: {'trunk': ..., 'classifier': ...} (+ 'refine' with the decoder); the classifier gets the 10x
learning rate by the path regex `CLASSIFIER_PATTERN`. Attention-to-Scale wraps one DeepLab submodule and calls
it once per input scale: linen shares the weights between calls, and 'features' gives it the fc7/res5 maps it
fuses.
"""

import functools
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jhuman.models import resnet, vgg
from jhuman.models.conv import Conv
from jhuman.ops import image as image_ops

BACKBONES = {**resnet.RESNETS, "vgg16": vgg.VGG16LargeFOV}
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
            out = out + Conv(
                self.num_classes,
                (3, 3),
                padding=((rate, rate), (rate, rate)),
                kernel_dilation=(rate, rate),
                kernel_init=_classifier_init,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name=f"branch{i}",
            )(x)
        return out


class Refine(nn.Module):
    """A decoder in the manner of DeepLab-v3+ (Chen et al., ECCV 2018; not in DeepLab-v2 or the LIP paper):
    the classifier's logits at output stride 8 or 16, upsampled onto the res2 grid (stride 4), plus a correction
    computed from them and the res2 features,
        up + conv3x3_C(relu(conv3x3_w(concat(up, relu(conv1x1_w(res2)))))),
    (B, h, w, C), (B, h4, w4, D2) -> (B, h4, w4, C). The correction's last conv starts at zero, so a new
    decoder starts as the plain upsampled logits. Logit i then sits on input pixel 4 * i."""

    num_classes: int
    width: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, logits, res2, stride):
        up = image_ops.upsample_aligned(logits, res2.shape[1:3], stride / 4)
        conv = functools.partial(Conv, dtype=self.dtype, param_dtype=jnp.float32)
        skip = nn.relu(conv(self.width, (1, 1), name="project")(res2))
        x = jnp.concatenate([up.astype(self.dtype), skip], axis=-1)
        x = nn.relu(conv(self.width, (3, 3), padding=((1, 1), (1, 1)), name="fuse")(x))
        correction = conv(
            self.num_classes, (3, 3), padding=((1, 1), (1, 1)), kernel_init=nn.initializers.zeros, name="out"
        )(x)
        return up + correction.astype(jnp.float32)


class LargeFOVHead(nn.Module):
    """fc8: 1x1 conv (B, h, w, D) -> (B, h, w, C)."""

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return Conv(
            self.num_classes,
            (1, 1),
            kernel_init=_classifier_init,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="fc8",
        )(x)


def _check(backbone, head, output_stride, decoder=0):
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid: {sorted(BACKBONES)}")
    if head is not None and head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {list(HEADS)}")
    if backbone == "vgg16" and output_stride != 8:
        raise ValueError(f"vgg16 (LargeFOV) has output stride 8 only, got output_stride={output_stride}")
    if output_stride not in resnet.OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {resnet.OUTPUT_STRIDES}, got {output_stride!r}")
    if decoder < 0:
        raise ValueError(
            f"decoder must be >= 0 (0 = none, else the width of the stride-4 decoder), got {decoder!r}"
        )
    if decoder and backbone == "vgg16":
        raise ValueError("decoder needs a resnet backbone (it reads the res2 features), got backbone='vgg16'")


def logit_stride(output_stride: int, decoder: int = 0) -> int:
    """Input pixels per logit of a DeepLab: 4 with the decoder (`Refine`), else the output stride."""
    return 4 if decoder else int(output_stride)


class DeepLab(nn.Module):
    """DeepLab-v2: trunk + classifier. See the module docstring for inputs, outputs and parameter names.

    width: channels of the first conv (64 real nets, 8 tiny); fc_width (None = 16 * width, 1024 for the real
    net) and dropout_rate: VGG fc6/fc7 only;
    norm ('frozen' | 'batch'), stride_in_1x1 and stage_sizes (blocks per stage, overriding the depth of the
    named ResNet, e.g. (1, 1, 1, 1) for tiny runs): ResNet only; head None = the backbone's published head;
    decoder: 0 = DeepLab-v2 (logits at output_stride), w > 0 = the logits refined on the res2 grid by `Refine`
    with width w (ResNet only; logits at stride 4, `logit_stride`).
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
    decoder: int = 0
    dtype: Any = jnp.float32

    def __post_init__(self):
        _check(self.backbone, self.head, self.output_stride, self.decoder)
        if self.stage_sizes is not None and (self.backbone == "vgg16" or len(self.stage_sizes) != 4):
            raise ValueError(
                f"stage_sizes needs a resnet backbone and 4 stages, got {self.backbone!r}, "
                f"{self.stage_sizes!r}"
            )
        if self.norm not in resnet.NORMS:
            raise ValueError(f"norm must be one of {resnet.NORMS}, got {self.norm!r}")
        super().__post_init__()

    @property
    def head_name(self):
        return self.head or DEFAULT_HEAD[self.backbone]

    @property
    def logit_stride(self):
        return logit_stride(self.output_stride, self.decoder)

    @property
    def feature_key(self):
        return "fc7" if self.backbone == "vgg16" else "res5"

    def setup(self):
        if self.backbone == "vgg16":
            self.trunk = vgg.VGG16LargeFOV(
                width=self.width, fc_width=self.fc_width, dropout_rate=self.dropout_rate, dtype=self.dtype
            )
        else:
            self.trunk = resnet.build_resnet(
                self.backbone,
                self.stage_sizes,
                width=self.width,
                output_stride=self.output_stride,
                norm=self.norm,
                stride_in_1x1=self.stride_in_1x1,
                dtype=self.dtype,
            )
        if self.head_name == "aspp":
            self.classifier = ASPP(self.num_classes, tuple(self.rates), dtype=self.dtype)
        else:
            self.classifier = LargeFOVHead(self.num_classes, dtype=self.dtype)
        if self.decoder:
            self.refine = Refine(self.num_classes, self.decoder, dtype=self.dtype)

    def __call__(self, images, train: bool = False):
        maps = self.trunk(images, train)
        features = maps[self.feature_key]  # (B, h, w, D) at output stride
        logits = self.classifier(features).astype(jnp.float32)  # (B, h, w, C)
        if self.decoder:
            logits = self.refine(logits, maps["res2"], self.output_stride)  # (B, h4, w4, C) at stride 4
        return {"logits": logits, "features": features}


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


# --- Attention-to-Scale ---------------------------------------------------------------------------------------

ATTENTION_PATTERN = (
    r"(^|/)attention/"  # flattened param paths of the attention branch, 'attention/conv1/kernel'
)
_DEEPLAB_OPTIONS = tuple(f for f in DeepLab.__dataclass_fields__ if f not in ("parent", "name"))


def _deeplab_options(base, dtype) -> dict:
    """The shared DeepLab's options from `base`: a DeepLab module (its options, dtype included) or a mapping of
    DeepLab options (config values accepted as in build_deeplab; dtype defaults to `dtype`); None = DeepLab's
    defaults. Validated by building an unattached DeepLab (parent=None: no stray child in a caller's scope)."""
    if isinstance(base, DeepLab):
        return {f: getattr(base, f) for f in _DEEPLAB_OPTIONS}
    if base is not None and not isinstance(base, Mapping):
        raise ValueError(
            f"base must be a DeepLab module or a mapping of DeepLab options, got {type(base).__name__}"
        )
    options = {"dtype": dtype, **dict(base or {})}
    unknown = sorted(set(options) - set(_DEEPLAB_OPTIONS))
    if unknown:
        raise ValueError(f"unknown DeepLab option(s) {unknown}; valid: {sorted(_DEEPLAB_OPTIONS)}")
    for key in ("rates", "stage_sizes"):
        if options.get(key) is not None:
            options[key] = tuple(options[key])
    if isinstance(options["dtype"], str):
        options["dtype"] = jnp.dtype(options["dtype"])
    DeepLab(**options, parent=None)
    return options


class ScaleAttention(nn.Module):
    """Attention head of Attention-to-Scale: (B, h, w, S*D) concatenated features -> (B, h, w, S) float32
    weights, softmax over scales. conv1 3x3 `width` + ReLU + dropout, conv2 1x1 to S (N(0, 0.01) kernels,
    zero biases, DeepLab's Caffe initialisation of new layers: the weights start near uniform)."""

    num_scales: int
    width: int = 512
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, train: bool = False):
        x = Conv(
            self.width,
            (3, 3),
            padding=((1, 1), (1, 1)),
            kernel_init=_classifier_init,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="conv1",
        )(features)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        scores = Conv(
            self.num_scales,
            (1, 1),
            kernel_init=_classifier_init,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="conv2",
        )(x)
        return jax.nn.softmax(scores.astype(jnp.float32), axis=-1)


class AttentionToScale(nn.Module):
    """Attention-to-Scale (Chen et al., "Attention to Scale: Scale-aware Semantic Image Segmentation", CVPR
    2016), the "Attention" model of the LIP paper: ONE DeepLab (shared weights) run on the input at each scale.

    For each scale s the input is resized (bilinear, `interpolation`) to scaled_size(H, s) x scaled_size(W, s)
    (`jhuman.ops.image.scaled_size`: floor((H - 1) s) + 1, Caffe Interp's size, 321 -> 241 -> 161) and run
    through the shared DeepLab; its logits and trunk features ('features': fc7 / res5) are resized to the logit
    grid of the FIRST scale (the reference: scale 1 in the published (1.0, 0.75, 0.5); a first scale other than
    1 makes that scale's grid the output grid). The resized features are concatenated over scales ->
    ScaleAttention -> per-pixel weights w_s, and the fused logits are sum_s w_s * logits_s.

    base: a DeepLab module (used with its own options, dtype included) or a mapping of DeepLab options
      (dtype defaults to this module's); None = DeepLab's defaults.
    interpolation: 'align_corners' (default: Caffe Interp, both for shrinking the input and for bringing the
      logits/features to the reference grid; pixel k of scale s sits on input pixel k / s exactly when
      (H - 1) s is an integer, as for the published 321 crops) or 'half_pixel' (jax.image.resize bilinear, no
      anti-aliasing).
    dtype: compute dtype of the attention branch (and of a mapping `base`); params stay float32.

    Returns {'logits': (B, h, w, C) float32 fused, 'scale_logits': (S, B, h, w, C) float32 (each scale's logits
    on the reference grid, for the per-scale losses), 'attention': (B, h, w, S) float32 (sums to 1 over S),
    'features': the first scale's trunk features (B, h, w, D)}.
    Parameters: {'net': the one DeepLab ('net/trunk', 'net/classifier'), 'attention': {'conv1', 'conv2'}};
    CLASSIFIER_PATTERN and ATTENTION_PATTERN select the heads for their learning-rate multipliers.
    `train=True` needs a 'dropout' rng. With norm='batch' each scale's call updates the running statistics in
    turn (the last scale's update is kept); the published nets use frozen statistics.
    """

    base: Any = None
    scales: Sequence[float] = (1.0, 0.75, 0.5)
    attention_width: int = 512
    dropout_rate: float = 0.5
    interpolation: str = "align_corners"
    dtype: Any = jnp.float32

    def __post_init__(self):
        try:
            scales = [float(s) for s in self.scales]
        except (TypeError, ValueError):
            scales = []
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {self.scales!r}")
        if self.interpolation not in image_ops.INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {list(image_ops.INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        _deeplab_options(self.base, self.dtype)  # validates base now rather than at the first call
        super().__post_init__()

    def setup(self):
        self.net = DeepLab(**_deeplab_options(self.base, self.dtype))
        self.attention = ScaleAttention(
            len(tuple(self.scales)), self.attention_width, self.dropout_rate, dtype=self.dtype
        )

    def __call__(self, images, train: bool = False):
        height, width = images.shape[1:3]
        outputs = []
        for scale in self.scales:
            size = (image_ops.scaled_size(height, scale), image_ops.scaled_size(width, scale))
            x = (
                images
                if size == (height, width)
                else image_ops.resize_bilinear(images, size, self.interpolation)
            )
            outputs.append(self.net(x, train=train))
        grid = outputs[0]["logits"].shape[1:3]
        scale_logits = jnp.stack(
            [image_ops.resize_bilinear(o["logits"], grid, self.interpolation) for o in outputs]
        )
        features = [
            image_ops.resize_bilinear(o["features"], grid, self.interpolation).astype(self.dtype)
            for o in outputs
        ]
        attention = self.attention(jnp.concatenate(features, axis=-1), train)  # (B, h, w, S)
        fused = jnp.sum(jnp.moveaxis(attention, -1, 0)[..., None] * scale_logits, axis=0)
        return {
            "logits": fused.astype(jnp.float32),
            "scale_logits": scale_logits,
            "attention": attention,
            "features": outputs[0]["features"],
        }


ATTENTION_OPTIONS = tuple(
    f for f in AttentionToScale.__dataclass_fields__ if f not in ("parent", "name", "base")
)


def build_attention(**kwargs):
    """AttentionToScale from flat config values: its own options (ATTENTION_OPTIONS: scales, attention_width,
    dropout_rate, interpolation, dtype) plus the shared DeepLab's options (backbone, num_classes, width, ...),
    or those in `base` (a mapping, or a DeepLab module with no other DeepLab option). 'dropout_rate' is the
    attention's; VGG's fc6/fc7 dropout goes as base={'dropout_rate': r}. dtype applies to both unless base
    sets its own. Unknown option names raise ValueError listing the valid ones."""
    valid = set(ATTENTION_OPTIONS) | set(_DEEPLAB_OPTIONS) | {"base"}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ValueError(f"unknown attention option(s) {unknown}; valid: {sorted(valid)}")
    options = {k: kwargs.pop(k) for k in ATTENTION_OPTIONS if k in kwargs}
    if isinstance(options.get("dtype"), str):
        options["dtype"] = jnp.dtype(options["dtype"])
    if "scales" in options:
        options["scales"] = tuple(float(s) for s in options["scales"])
    base = kwargs.pop("base", None)
    if isinstance(base, DeepLab):
        if kwargs:
            raise ValueError(f"DeepLab option(s) {sorted(kwargs)} given with a DeepLab module as base")
        net = base
    elif base is None or isinstance(base, Mapping):
        base = dict(base or {})
        both = sorted(set(base) & set(kwargs))
        if both:
            raise ValueError(f"DeepLab option(s) {both} given both in base and at top level")
        base.update(kwargs)
        net = DeepLab(**_deeplab_options(base, options.get("dtype", jnp.float32)))
    else:
        raise ValueError(
            f"base must be a DeepLab module or a mapping of DeepLab options, got {type(base).__name__}"
        )
    return AttentionToScale(base=net, **options)


MODELS = {"deeplab": build_deeplab, "attention": build_attention}


def build_model(name: str, **kwargs):
    """A segmentation net by name ('deeplab' | 'attention') from config values; ValueError lists the names."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    return MODELS[name](**kwargs)
