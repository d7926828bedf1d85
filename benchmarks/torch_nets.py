"""The PyTorch peers of jhuman's networks, written plainly with torch.nn (no torchvision), layer for layer the
same as jhuman.models (benchmarks/peers.py times them against jhuman; tests/test_peers.py proves them equal).

Module and parameter names mirror jhuman's linen paths so that `load_jhuman_variables` maps one to one:
linen 'net/trunk/layer1/block0/conv1/kernel' (HWIO) -> torch 'net.trunk.layer1.block0.conv1.weight' (OIHW),
'scale' -> 'weight', batch_stats 'mean' / 'var' -> buffers 'running_mean' / 'running_var'.

- `ResNet`: ResNet v1 bottlenecks, stride on the 3x3 (torchvision, "v1.5"; `stride_in_1x1` for Caffe's),
  torchvision padding (7x7/2 pad 3, max-pool 3x3/2 pad 1, 3x3 pad = dilation), every block of a dilated stage
  at that stage's dilation (os 8: layer3 dilation 2, layer4 dilation 4; os 16: layer4 dilation 2).
- `Norm2d`: norm='frozen' is batch norm on its running statistics in train and eval mode alike, its affine
  weight and bias still trained (model.norm='frozen', the full configs); norm='batch' is ordinary batch norm.
- `VGG16LargeFOV`: conv1_1..conv5_3 (conv5 dilation 2), max-pools 3x3 pad 1 stride 2/2/2/1/1, fc6 3x3
  dilation 12, fc7 1x1, ReLU + dropout after each.
- `DeepLab`: trunk + ASPP (four 3x3 convs with rates 6/12/18/24, each to the classes, summed) or fc8.
- `AttentionToScale`: the one DeepLab on scales (1, 0.75, 0.5), input sizes floor((H - 1) s) + 1, bilinear
  with align_corners=True (jhuman's 'align_corners' interpolation, Caffe Interp) both for shrinking the input
  and for bringing logits and features to the scale-1 grid; 3x3 conv + ReLU + dropout + 1x1 conv -> softmax
  over scales; fused logits = sum_s w_s logits_s.
- `PersonLab`: ResNet trunk, five 1x1 heads on res5, upsampled to the input with head pixel i on input pixel
  os * i (align_corners onto (h - 1) os + 1 pixels, the rest replicating the last one: jhuman's
  `upsample_aligned`), offsets times `offset_unit`, recurrent refinement of mid- (with the short-range field)
  and long-range offsets (with themselves, then with the short-range field), bilinear sampling at clamped
  landing points.
- `PSPNet` (Semantic Human Matting's T-Net with 3 classes): the ResNet trunk, pyramid pooling over bins 1, 2, 3,
  6 (adaptive average pooling, 1x1 conv, norm, ReLU, align_corners upsampling), 3x3 conv + norm + ReLU +
  Dropout2d, 1x1 classifier, logits upsampled as PersonLab's (`upsample_aligned`).
- `MNet`: VGG-16-named encoder (13 convs, each with norm and ReLU, four 2x2 max-pools with indices) and the
  decoder of five 5x5 convs with norm and ReLU and four max-unpoolings, then a 5x5 prediction and a sigmoid.
- `Normalized`: ImageNet mean/std on raw 0..255 RGB (model.input_norm='torchvision'), then the net.
- Pose-guided synthesis: `PoseUNet` (jhuman.models.unet.UNet: 'SAME' padding as TensorFlow's, LeakyReLU 0.2,
  the pose after the first stride-2 conv, x2 upsampling with output pixel i at input i / 2), `ModularGenerator`
  (mask / foreground / background U-Nets, softmax over logits + log prior, `warp_limbs` with grid_sample in
  pixel coordinates and replicated borders, the composite), `UNetBaseline`, `PoseDiscriminator`; they take
  the pose inputs (heatmaps, limb prior, per-limb transforms) PRECOMPUTED, as the released Keras model takes
  them from its data generator (jhuman's compute them inside the network with jhuman.ops.warp). `VGG19Features`
  (average pooling, conv1_1 .. conv4_4) and `perceptual_loss` for the generator's loss.
Images are NCHW float 0..255; parsing outputs are NCHW, PersonLab's outputs NHWC (B, H, W, K[, 2]) as jhuman's.
The matting nets are NCHW throughout and take prepared inputs (normalised RGB; M-Net: + the trimap).

Losses: `parsing_loss` (per-image softmax cross-entropy over non-ignored pixels of `label[::os, ::os]`, mean
over the batch, summed over the fused and per-scale logits: jhuman.tasks.parsing.parsing_losses without SSL),
`trimap_loss` / `prediction_loss` (SHM's L_t, and L_p with the Charbonnier and composition terms),
and `personlab_loss` (the five terms of jhuman.ops.personlab_losses on DENSE targets given precomputed).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255.0 * s for s in (0.229, 0.224, 0.225))
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.1  # torch convention: 0.1 of the new statistic (linen's momentum 0.9)
IGNORE_LABEL = 255
PERSONLAB_WEIGHTS = {"heatmap": 4.0, "segmentation": 2.0, "short": 1.0, "mid": 0.25, "long": 0.125}


def stage_dilations(output_stride: int):
    """(stride, dilation) of layer1..layer4, as jhuman.models.resnet.stage_dilations."""
    return {
        32: ((1, 1), (2, 1), (2, 1), (2, 1)),
        16: ((1, 1), (2, 1), (2, 1), (1, 2)),
        8: ((1, 1), (2, 1), (1, 2), (1, 4)),
    }[output_stride]


def conv(cin, cout, kernel, stride=1, dilation=1, bias=False):
    """kxk conv with symmetric padding dilation * (k // 2) (torchvision / Caffe)."""
    return nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, bias=bias)


class Norm2d(nn.Module):
    """BatchNorm2d whose statistics are frozen (norm='frozen': always the running averages) or ordinary
    (norm='batch'). No num_batches_tracked buffer, so the state dict maps one to one onto linen's."""

    def __init__(self, channels: int, norm: str = "frozen"):
        super().__init__()
        if norm not in ("frozen", "batch"):
            raise ValueError(f"norm must be 'frozen' or 'batch', got {norm!r}")
        self.norm = norm
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        use_batch = self.norm == "batch" and self.training
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, use_batch, BN_MOMENTUM, BN_EPSILON
        )


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride=1, dilation=1, stride_in_1x1=False, norm="frozen"):
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1, self.bn1 = conv(cin, planes, 1, s1), Norm2d(planes, norm)
        self.conv2, self.bn2 = conv(planes, planes, 3, s3, dilation), Norm2d(planes, norm)
        self.conv3, self.bn3 = conv(planes, 4 * planes, 1), Norm2d(4 * planes, norm)
        self.project = stride != 1 or cin != 4 * planes
        if self.project:
            self.downsample_conv = conv(cin, 4 * planes, 1, stride)
            self.downsample_bn = Norm2d(4 * planes, norm)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.downsample_bn(self.downsample_conv(x)) if self.project else x
        return F.relu(out + shortcut)


class Stage(nn.Module):
    """Blocks named block0, block1, ... (linen's names); the first carries the stride."""

    def __init__(self, num_blocks, cin, planes, stride, dilation, stride_in_1x1, norm):
        super().__init__()
        self.num_blocks = num_blocks
        for j in range(num_blocks):
            block = Bottleneck(
                cin if j == 0 else 4 * planes, planes, stride if j == 0 else 1, dilation, stride_in_1x1, norm
            )
            self.add_module(f"block{j}", block)

    def forward(self, x):
        for j in range(self.num_blocks):
            x = getattr(self, f"block{j}")(x)
        return x


class ResNet(nn.Module):
    """Bottleneck ResNet trunk: (B, 3, H, W) -> {'res2', 'res3', 'res4', 'res5'}."""

    def __init__(
        self, stage_sizes=(3, 4, 23, 3), width=64, output_stride=8, norm="frozen", stride_in_1x1=False
    ):
        super().__init__()
        self.conv1, self.bn1 = conv(3, width, 7, 2), Norm2d(width, norm)
        cin = width
        for i, (num_blocks, (stride, dilation)) in enumerate(
            zip(stage_sizes, stage_dilations(output_stride))
        ):
            planes = width * 2**i
            self.add_module(
                f"layer{i + 1}", Stage(num_blocks, cin, planes, stride, dilation, stride_in_1x1, norm)
            )
            cin = 4 * planes
        self.out_channels = cin

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        features = {}
        for i in range(4):
            x = features[f"res{i + 2}"] = getattr(self, f"layer{i + 1}")(x)
        return features


VGG16_BLOCKS = ((1, 2, 1), (2, 2, 2), (3, 3, 4), (4, 3, 8), (5, 3, 8))  # (block, convs, width multiplier)


class VGG16LargeFOV(nn.Module):
    """DeepLab-LargeFOV VGG-16: (B, 3, H, W) -> {'fc7': (B, fc_width, ceil(H/8), ceil(W/8))} (post-dropout)."""

    def __init__(self, width=64, fc_width=None, dropout_rate=0.5, fc6_dilation=12):
        super().__init__()
        cin = 3
        self.names = []
        for block, num_convs, mult in VGG16_BLOCKS:
            for k in range(1, num_convs + 1):
                name = f"conv{block}_{k}"
                self.add_module(name, conv(cin, width * mult, 3, dilation=2 if block == 5 else 1, bias=True))
                self.names.append(name)
                cin = width * mult
        fc_width = fc_width or 16 * width
        self.fc6 = conv(cin, fc_width, 3, dilation=fc6_dilation, bias=True)
        self.fc7 = conv(fc_width, fc_width, 1, bias=True)
        self.dropout = nn.Dropout(dropout_rate)
        self.out_channels = fc_width

    def forward(self, x):
        for block, num_convs, _ in VGG16_BLOCKS:
            for k in range(1, num_convs + 1):
                x = F.relu(getattr(self, f"conv{block}_{k}")(x))
            x = F.max_pool2d(x, 3, 2 if block <= 3 else 1, 1)
        x = self.dropout(F.relu(self.fc6(x)))
        x = self.dropout(F.relu(self.fc7(x)))
        return {"fc7": x}


class ASPP(nn.Module):
    """Sum of 3x3 convs with dilations `rates`, each to num_classes (DeepLab-v2's ASPP-L)."""

    def __init__(self, cin, num_classes, rates=(6, 12, 18, 24)):
        super().__init__()
        self.num_branches = len(rates)
        for i, rate in enumerate(rates):
            self.add_module(f"branch{i}", conv(cin, num_classes, 3, dilation=rate, bias=True))

    def forward(self, x):
        return sum(getattr(self, f"branch{i}")(x) for i in range(self.num_branches))


class LargeFOVHead(nn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.fc8 = conv(cin, num_classes, 1, bias=True)

    def forward(self, x):
        return self.fc8(x)


class DeepLab(nn.Module):
    """DeepLab-v2: (B, 3, H, W) normalised -> {'logits': (B, C, h, w) float32, 'features': res5 / fc7}."""

    def __init__(
        self,
        backbone="resnet101",
        num_classes=20,
        head=None,
        rates=(6, 12, 18, 24),
        width=64,
        fc_width=None,
        dropout_rate=0.5,
        output_stride=8,
        norm="frozen",
        stride_in_1x1=False,
        stage_sizes=None,
    ):
        super().__init__()
        if backbone == "vgg16":
            self.trunk = VGG16LargeFOV(width, fc_width, dropout_rate)
            self.feature_key = "fc7"
        else:
            depth = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}[
                backbone
            ]
            self.trunk = ResNet(tuple(stage_sizes or depth), width, output_stride, norm, stride_in_1x1)
            self.feature_key = "res5"
        head = head or ("largefov" if backbone == "vgg16" else "aspp")
        if head == "aspp":
            self.classifier = ASPP(self.trunk.out_channels, num_classes, rates)
        else:
            self.classifier = LargeFOVHead(self.trunk.out_channels, num_classes)
        self.out_channels = self.trunk.out_channels

    def forward(self, x):
        features = self.trunk(x)[self.feature_key]
        return {"logits": self.classifier(features).float(), "features": features}


def scaled_size(size: int, scale: float) -> int:
    """floor((size - 1) * scale) + 1: the Caffe Interp size of jhuman.models.deeplab.scaled_size."""
    return max(1, int(math.floor((size - 1) * float(scale) + 1e-6)) + 1)


def resize_bilinear(x, size):
    """(B, C, H, W) -> (B, C, h, w) float32, bilinear with aligned corners, no anti-aliasing."""
    x = x.float()
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class ScaleAttention(nn.Module):
    def __init__(self, cin, num_scales, width=512, dropout_rate=0.5):
        super().__init__()
        self.conv1 = conv(cin, width, 3, bias=True)
        self.conv2 = conv(width, num_scales, 1, bias=True)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x):
        return torch.softmax(self.conv2(self.dropout(F.relu(self.conv1(x)))).float(), dim=1)  # (B, S, h, w)


class AttentionToScale(nn.Module):
    """The one DeepLab `net` on each input scale, fused by per-pixel attention over scales.
    -> {'logits': (B, C, h, w) fused, 'scale_logits': (S, B, C, h, w), 'attention': (B, S, h, w),
    'features': the first scale's trunk features}."""

    def __init__(self, net: DeepLab, scales=(1.0, 0.75, 0.5), attention_width=512, dropout_rate=0.5):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.net = net
        num_scales = len(self.scales)
        self.attention = ScaleAttention(
            net.out_channels * num_scales, num_scales, attention_width, dropout_rate
        )

    def forward(self, images):
        height, width = images.shape[2:]
        outputs = []
        for scale in self.scales:
            size = (scaled_size(height, scale), scaled_size(width, scale))
            x = images if size == (height, width) else resize_bilinear(images, size).to(images.dtype)
            outputs.append(self.net(x))
        grid = outputs[0]["logits"].shape[2:]
        scale_logits = torch.stack([resize_bilinear(o["logits"], grid) for o in outputs])  # (S, B, C, h, w)
        dtype = outputs[0]["features"].dtype
        features = torch.cat([resize_bilinear(o["features"], grid).to(dtype) for o in outputs], dim=1)
        attention = self.attention(features)  # (B, S, h, w) float32
        fused = (attention.transpose(0, 1)[:, :, None] * scale_logits).sum(0)
        return {
            "logits": fused,
            "scale_logits": scale_logits,
            "attention": attention,
            "features": outputs[0]["features"],
        }


# --- PersonLab --------------------------------------------------------------------------------------------------


def upsample_aligned(x, size, stride: int):
    """(B, C, h, w) -> (B, C, H, W) float32 with input pixel y at head coordinate min(y / stride, h - 1):
    align_corners bilinear onto (h - 1) stride + 1 pixels, the remaining rows/columns repeat the last one."""
    x = x.float()
    h, w = x.shape[2:]
    inner = ((h - 1) * stride + 1, (w - 1) * stride + 1)
    x = F.interpolate(x, size=inner, mode="bilinear", align_corners=True)
    pad_h, pad_w = size[0] - inner[0], size[1] - inner[1]
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


def sample_channels(field, points, channels):
    """field (B, H, W, C, 2), points (B, H, W, E, 2) (x, y) inside the image, channels (E,) long: bilinear
    field[..., channels[e], :] at points[..., e, :] -> (B, H, W, E, 2). Gradients flow through the values and
    the fractional weights, not the integer corners (as jhuman's `_sample_channels`)."""
    b, height, width, num_channels = field.shape[:4]
    px, py = points[..., 0], points[..., 1]
    x0f, y0f = torch.floor(px), torch.floor(py)
    fx, fy = (px - x0f)[..., None], (py - y0f)[..., None]
    x0, y0 = x0f.detach().long(), y0f.detach().long()
    x1, y1 = (x0 + 1).clamp(max=width - 1), (y0 + 1).clamp(max=height - 1)
    flat = field.reshape(b, height * width * num_channels, 2)

    def at(y, x):
        index = ((y * width + x) * num_channels + channels).reshape(b, -1, 1).expand(-1, -1, 2)
        return flat.gather(1, index).reshape(*points.shape)

    return (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * (
        (1 - fx) * at(y1, x0) + fx * at(y1, x1)
    )


def refine_offsets(offsets, field, channels, steps: int):
    """`steps` rounds of offsets(x) <- p + field_c(p) - x, p = clamp(x + offsets(x)) into the image."""
    height, width = offsets.shape[1:3]
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=offsets.device),
        torch.arange(width, dtype=torch.float32, device=offsets.device),
        indexing="ij",
    )
    grid = torch.stack([cols, rows], dim=-1)[:, :, None, :]  # (H, W, 1, 2)
    upper = torch.tensor([width - 1, height - 1], dtype=torch.float32, device=offsets.device)
    zero = torch.zeros_like(upper)
    for _ in range(steps):
        points = torch.maximum(torch.minimum(grid + offsets, upper), zero)
        offsets = points + sample_channels(field, points, channels) - grid
    return offsets


class PersonLabHeads(nn.Module):
    SIZES = ("heatmap", "short", "mid", "long", "segmentation")

    def __init__(self, cin, num_keypoints=17, num_edges=32):
        super().__init__()
        k, e = num_keypoints, num_edges
        for name, size in zip(self.SIZES, (k, 2 * k, 2 * e, 2 * k, 1)):
            self.add_module(name, conv(cin, size, 1, bias=True))

    def forward(self, x):
        return torch.cat([getattr(self, name)(x) for name in self.SIZES], dim=1)


class PersonLab(nn.Module):
    """(B, 3, H, W) normalised -> {'heatmap_logits' (B, H, W, K), 'short_offsets' (B, H, W, K, 2),
    'mid_offsets' (B, H, W, E, 2), 'long_offsets' (B, H, W, K, 2), 'segmentation_logits' (B, H, W)} float32,
    offsets in pixels, mid/long refined."""

    def __init__(
        self,
        edges: Sequence[Sequence[int]],
        backbone="resnet101",
        width=64,
        stage_sizes=None,
        output_stride=16,
        norm="frozen",
        stride_in_1x1=False,
        num_keypoints=17,
        refine_steps=2,
        offset_unit=32.0,
    ):
        super().__init__()
        depth = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}[backbone]
        self.trunk = ResNet(tuple(stage_sizes or depth), width, output_stride, norm, stride_in_1x1)
        self.heads = PersonLabHeads(self.trunk.out_channels, num_keypoints, len(edges))
        self.output_stride, self.num_keypoints, self.num_edges = output_stride, num_keypoints, len(edges)
        self.refine_steps, self.offset_unit = refine_steps, float(offset_unit)
        self.register_buffer(
            "targets", torch.tensor([l for _, l in edges], dtype=torch.long), persistent=False
        )
        self.register_buffer("own", torch.arange(num_keypoints, dtype=torch.long), persistent=False)

    def forward(self, images):
        size = tuple(images.shape[2:])
        maps = self.heads(self.trunk(images)["res5"])  # (B, 150, h, w)
        with torch.autocast(images.device.type, enabled=False):
            x = upsample_aligned(maps, size, self.output_stride).permute(0, 2, 3, 1)  # (B, H, W, 150) float32
            b, h, w = x.shape[:3]
            k, e = self.num_keypoints, self.num_edges
            heat, short, mid, long, seg = torch.split(x, [k, 2 * k, 2 * e, 2 * k, 1], dim=-1)
            short = short.reshape(b, h, w, k, 2) * self.offset_unit
            mid = mid.reshape(b, h, w, e, 2) * self.offset_unit
            long = long.reshape(b, h, w, k, 2) * self.offset_unit
            if self.refine_steps:
                mid = refine_offsets(mid, short, self.targets, self.refine_steps)
                long = refine_offsets(long, long, self.own, self.refine_steps)
                long = refine_offsets(long, short, self.own, self.refine_steps)
        return {
            "heatmap_logits": heat,
            "short_offsets": short,
            "mid_offsets": mid,
            "long_offsets": long,
            "segmentation_logits": seg[..., 0],
        }


class Normalized(nn.Module):
    """ImageNet mean/std normalisation of raw 0..255 RGB (B, 3, H, W), then `net` (jhuman's Normalized)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images):
        return self.net((images.float() - self.mean) / self.std)


# --- Semantic Human Matting ---------------------------------------------------------------------------------------


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: per bin size b, adaptive average pooling to b x b, 1x1 conv (C / len(bins)),
    norm, ReLU, bilinear back with align_corners=True; concatenated after the input."""

    def __init__(self, cin, bins=(1, 2, 3, 6), norm="batch"):
        super().__init__()
        self.bins = tuple(bins)
        for i in range(len(self.bins)):
            self.add_module(f"conv{i}", conv(cin, cin // len(self.bins), 1))
            self.add_module(f"bn{i}", Norm2d(cin // len(self.bins), norm))

    def forward(self, x):
        size = x.shape[2:]
        out = [x]
        for i, bins in enumerate(self.bins):
            y = F.adaptive_avg_pool2d(x.float(), bins).to(x.dtype)
            y = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y)))
            out.append(F.interpolate(y.float(), size=size, mode="bilinear", align_corners=True).to(x.dtype))
        return torch.cat(out, dim=1)


class PSPNet(nn.Module):
    """jhuman.models.pspnet.PSPNet: dilated ResNet trunk, pyramid pooling on res5, 3x3 conv (8 width) + norm +
    ReLU + Dropout2d, 1x1 classifier; (B, 3, H, W) normalised -> logits (B, C, H, W) float32 upsampled with
    logit i on input pixel os * i (upsample_aligned)."""

    def __init__(
        self, num_classes=3, width=64, stage_sizes=(3, 4, 6, 3), bins=(1, 2, 3, 6), output_stride=8,
        norm="batch", dropout_rate=0.1,
    ):  # fmt: skip
        super().__init__()
        self.trunk = ResNet(tuple(stage_sizes), width, output_stride, norm)
        cin = self.trunk.out_channels
        self.ppm = PyramidPooling(cin, bins, norm)
        self.bottleneck, self.bottleneck_bn = conv(2 * cin, 8 * width, 3), Norm2d(8 * width, norm)
        self.dropout = nn.Dropout2d(dropout_rate)
        self.classifier = conv(8 * width, num_classes, 1, bias=True)
        self.output_stride = output_stride

    def forward(self, x):
        y = self.ppm(self.trunk(x)["res5"])
        y = self.dropout(F.relu(self.bottleneck_bn(self.bottleneck(y))))
        logits = self.classifier(y)
        with torch.autocast(x.device.type, enabled=False):
            return upsample_aligned(logits, tuple(x.shape[2:]), self.output_stride)


class MNetEncoder(nn.Module):
    """VGG-16's 13 convs (conv{b}_{k}, bias) each with norm bn{b}_{k} + ReLU, 2x2 max-pools with indices after
    blocks 1-4."""

    def __init__(self, cin=6, width=64, norm="batch"):
        super().__init__()
        for block, num_convs, mult in VGG16_BLOCKS:
            for k in range(1, num_convs + 1):
                self.add_module(f"conv{block}_{k}", conv(cin, width * mult, 3, bias=True))
                self.add_module(f"bn{block}_{k}", Norm2d(width * mult, norm))
                cin = width * mult

    def forward(self, x):
        indices = []
        for i, (block, num_convs, _) in enumerate(VGG16_BLOCKS):
            if i > 0:
                x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
                indices.append(idx)
            for k in range(1, num_convs + 1):
                x = F.relu(getattr(self, f"bn{block}_{k}")(getattr(self, f"conv{block}_{k}")(x)))
        return x, indices


MNET_DECODER = (
    ("deconv5", 8, 3),
    ("deconv4", 4, 2),
    ("deconv3", 2, 1),
    ("deconv2", 1, 0),
    ("deconv1", 1, None),
)


class MNetDecoder(nn.Module):
    """deconv5 .. deconv1 (5x5, no bias) + norm + ReLU, max-unpooling with the encoder's indices after the
    first four, pred (5x5, 1 channel) + sigmoid."""

    def __init__(self, width=64, norm="batch"):
        super().__init__()
        cin = 8 * width
        for name, mult, _ in MNET_DECODER:
            self.add_module(name, conv(cin, width * mult, 5))
            self.add_module("bn" + name[-1], Norm2d(width * mult, norm))
            cin = width * mult
        self.pred = conv(cin, 1, 5, bias=True)

    def forward(self, x, indices):
        for name, _, pool in MNET_DECODER:
            x = F.relu(getattr(self, "bn" + name[-1])(getattr(self, name)(x)))
            if pool is not None:
                idx = indices[pool]
                x = F.max_unpool2d(x, idx, 2, 2, output_size=(2 * idx.shape[2], 2 * idx.shape[3]))
        return torch.sigmoid(self.pred(x).float())


class MNet(nn.Module):
    """jhuman.models.matting.MNet: (B, 3 + trimap_channels, H, W) -> alpha_r (B, 1, H, W) float32 in [0, 1]."""

    def __init__(self, width=64, trimap_channels=3, norm="batch"):
        super().__init__()
        self.encoder = MNetEncoder(3 + trimap_channels, width, norm)
        self.decoder = MNetDecoder(width, norm)

    def forward(self, x):
        return self.decoder(*self.encoder(x))


# --- pose-guided synthesis ----------------------------------------------------------------------------------------


def same_conv(conv_module, x):
    """conv_module (padding 0, its own stride) applied with TensorFlow's / linen's 'SAME' padding: total
    max((ceil(n / s) - 1) s + k - n, 0), the smaller half before (a stride-2 3x3 conv on an even size pads 0
    before, 1 after)."""
    k, stride = conv_module.kernel_size[0], conv_module.stride[0]
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: last dimension first
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads += [total // 2, total - total // 2]
    return conv_module(F.pad(x, pads))


def upsample2(x):
    """(B, C, h, w) -> (B, C, 2h, 2w): output pixel i samples the input at i / 2, the last one clamped (as
    upsample_aligned(x, (2h, 2w), 2), written with slices: inductor miscompiles the backward of the replicate
    padding upsample_aligned ends with, torch 2.13 on CPU)."""

    def along(x, dim):
        shifted = torch.cat([x.narrow(dim, 1, x.shape[dim] - 1), x.narrow(dim, x.shape[dim] - 1, 1)], dim)
        both = torch.stack([x, 0.5 * (x + shifted)], dim + 1)  # (..., n, 2, ...)
        shape = list(x.shape)
        shape[dim] *= 2
        return both.reshape(shape)

    return along(along(x, 2), 3)


class PoseUNet(nn.Module):
    """jhuman.models.unet.UNet: enc0 (7x7) .. enc10, the pose concatenated after enc1 (stride 2), dec0 .. dec4
    (x2 upsampling with output pixel i at input i / 2, edge clamped, + the skip), LeakyReLU 0.2, optional
    linear 3x3 head; (B, C, H, W), pose (B, P, H/2, W/2) -> (B, out, H, W) float32."""

    def __init__(self, cin, pose_channels, out_channels, enc_widths, dec_widths, first_kernel=7):
        super().__init__()
        e, d = tuple(enc_widths), tuple(dec_widths)
        ins = [cin, e[0], e[1] + pose_channels] + list(e[2:10])
        for i, (a, b) in enumerate(zip(ins, e)):
            stride = 2 if i % 2 == 1 else 1  # enc1, enc3, ..., enc9 halve the size
            self.add_module(f"enc{i}", nn.Conv2d(a, b, first_kernel if i == 0 else 3, stride, bias=True))
        skips = [e[8], e[6], e[4], e[2], e[0]]
        cin = e[10]
        for i, width in enumerate(d):
            self.add_module(f"dec{i}", nn.Conv2d(cin + skips[i], width, 3, bias=True))
            cin = width
        self.head = nn.Conv2d(cin, out_channels, 3, bias=True) if out_channels else None

    def forward(self, x, pose):
        act = lambda y: F.leaky_relu(y, 0.2)  # noqa: E731
        skips = [act(same_conv(self.enc0, x))]
        x = act(same_conv(self.enc1, skips[0]))
        skips.append(act(same_conv(self.enc2, torch.cat([x, pose.to(x.dtype)], 1))))
        x = skips[-1]
        for level in range(1, 5):
            x = act(same_conv(getattr(self, f"enc{2 * level + 1}"), x))
            x = act(same_conv(getattr(self, f"enc{2 * level + 2}"), x))
            if level < 4:
                skips.append(x)
        for i in range(5):
            x = act(same_conv(getattr(self, f"dec{i}"), torch.cat([upsample2(x), skips[-1 - i]], 1)))
        return x if self.head is None else same_conv(self.head, x).float()


def warp_limbs(images, masks, transforms):
    """jhuman.ops.warp.warp_limbs in NCHW: images (B, C, H, W), masks (B, 11, H, W), transforms (B, 10, 2, 3)
    mapping a target pixel (x, y, 1) to its source position -> (B, 10, C, H, W): each masked layer sampled
    bilinearly at M_l [x, y, 1] in pixels, borders replicated (grid_sample, 'border', align_corners=True)."""
    b, c, h, w = images.shape
    limbs = transforms.shape[1]
    layers = images[:, None] * masks[:, 1:, None]  # (B, 10, C, H, W)
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=images.device),
        torch.arange(w, dtype=torch.float32, device=images.device),
        indexing="ij",
    )
    pixels = torch.stack([cols, rows, torch.ones_like(cols)], -1)  # (H, W, 3)
    source = torch.einsum("blij,hwj->blhwi", transforms.float(), pixels)  # (B, 10, H, W, 2) (x, y)
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=images.device)
    grid = (source * scale - 1.0).reshape(b * limbs, h, w, 2)
    out = F.grid_sample(
        layers.reshape(b * limbs, c, h, w).float(), grid, "bilinear", "border", align_corners=True
    )
    return out.reshape(b, limbs, c, h, w)


class ModularGenerator(nn.Module):
    """jhuman.models.posewarp.ModularGenerator on PRECOMPUTED pose inputs (as the released Keras model takes
    them from its data generator): source (B, 3, H, W) in [-1, 1], source_pose / target_pose (B, 14, H/2, W/2)
    heatmaps, prior (B, 11, H, W), transforms (B, 10, 2, 3) -> {'image', 'fg', 'bg', 'target_mask', 'masks'
    (NCHW), 'warped' (B, 10, 3, H, W)} float32. widths: jhuman.models.posewarp.modular_widths(width)."""

    def __init__(self, widths: dict, joints: int = 14, masks: int = 11):
        super().__init__()
        limbs = masks - 1
        self.mask_net = PoseUNet(3, joints, masks, widths["enc"], widths["mask_dec"])
        self.fg_net = PoseUNet(3 * limbs, joints, 4, widths["enc"], widths["dec"])
        self.bg_net = PoseUNet(4, joints, 3, widths["enc"], widths["dec"])

    def forward(self, source, source_pose, target_pose, prior, transforms):
        source = source.float()
        b, _, h, w = source.shape
        masks = torch.softmax(self.mask_net(source, source_pose) + torch.log(prior + 1e-10), dim=1)
        warped = warp_limbs(source, masks, transforms)  # (B, 10, 3, H, W)
        fg_out = self.fg_net(warped.reshape(b, -1, h, w), target_pose)
        fg, target_mask = torch.tanh(fg_out[:, :3]), torch.sigmoid(fg_out[:, 3:])
        background = masks[:, :1]
        bg = torch.tanh(self.bg_net(torch.cat([source * background, background], 1), source_pose))
        image = target_mask * fg + (1.0 - target_mask) * bg
        return {
            "image": image,
            "fg": fg,
            "bg": bg,
            "target_mask": target_mask,
            "masks": masks,
            "warped": warped,
        }


class UNetBaseline(nn.Module):
    """jhuman.models.posewarp.UNetBaseline: one U-Net `net` on the source and both poses' heatmaps (28
    channels) -> {'image': tanh (B, 3, H, W)}. widths: jhuman.models.posewarp.baseline_widths(width)."""

    def __init__(self, widths: dict, joints: int = 14):
        super().__init__()
        self.net = PoseUNet(3, 2 * joints, 3, widths["enc"], widths["dec"])

    def forward(self, source, source_pose, target_pose, prior=None, transforms=None):
        return {"image": torch.tanh(self.net(source.float(), torch.cat([source_pose, target_pose], 1)))}


POSE_DISCRIMINATOR_LAYERS = (("conv1", 5, 1), ("conv2", 5, 2), ("conv3", 3, 4), ("conv4", 3, 4), ("conv5", 3, 4),
                             ("conv6", 3, 4))  # fmt: skip


class PoseDiscriminator(nn.Module):
    """jhuman.models.discriminator.Discriminator on precomputed heatmaps: image (B, 3, H, W) in [-1, 1],
    source_pose / target_pose (B, 14, H/2, W/2) -> logits (B, 1) float32. 'SAME' convs + LeakyReLU 0.2, 2x2
    max pooling after each but conv6, the poses concatenated after the first pooling, flattened in NHWC order
    (Keras' Flatten), fc1, fc2 (ReLU), out."""

    def __init__(self, width: int = 64, image_size: int = 256, joints: int = 14):
        super().__init__()
        cin = 3
        for i, (name, kernel, mult) in enumerate(POSE_DISCRIMINATOR_LAYERS):
            self.add_module(name, nn.Conv2d(cin, width * mult, kernel, bias=True))
            cin = width * mult + (2 * joints if i == 0 else 0)
        flat = (image_size // 32) ** 2 * cin
        self.fc1, self.fc2, self.out = (
            nn.Linear(flat, 4 * width),
            nn.Linear(4 * width, 4 * width),
            nn.Linear(4 * width, 1),
        )

    def forward(self, image, source_pose, target_pose):
        x = image
        for i, (name, _, _) in enumerate(POSE_DISCRIMINATOR_LAYERS):
            x = F.leaky_relu(same_conv(getattr(self, name), x), 0.2)
            if i < len(POSE_DISCRIMINATOR_LAYERS) - 1:
                x = F.max_pool2d(x, 2, 2)
            if i == 0:
                x = torch.cat([x, source_pose.to(x.dtype), target_pose.to(x.dtype)], 1)
        x = x.permute(0, 2, 3, 1).flatten(1)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        return self.out(x).float()


VGG19_BLOCKS = ((1, 2, 1), (2, 2, 2), (3, 4, 4), (4, 4, 8))  # up to conv4_4: the perceptual loss's layers
KERAS_VGG_MEAN_RGB = (123.68, 116.779, 103.939)


class VGG19Features(nn.Module):
    """jhuman.models.perceptual.vgg_features: VGG-19 with 2x2 AVERAGE pooling up to conv4_4, 'caffe' input
    (RGB [-1, 1] -> 0..255 minus the Keras VGG means, channels to BGR); (B, 3, H, W) -> the 12 post-ReLU
    activations conv1_1 .. conv4_4 in order (float32). Frozen (no parameter requires a gradient)."""

    def __init__(self, width: int = 64):
        super().__init__()
        cin, self.names = 3, []
        for block, num_convs, mult in VGG19_BLOCKS:
            for k in range(1, num_convs + 1):
                self.add_module(f"conv{block}_{k}", conv(cin, width * mult, 3, bias=True))
                self.names.append(f"conv{block}_{k}")
                cin = width * mult
        self.register_buffer("mean", torch.tensor(KERAS_VGG_MEAN_RGB).reshape(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, images):
        x = ((images.float() + 1.0) * 127.5 - self.mean).flip(1)  # RGB -> BGR
        features = []
        for i, (block, num_convs, _) in enumerate(VGG19_BLOCKS):
            if i > 0:
                x = F.avg_pool2d(x, 2, 2)
            for k in range(1, num_convs + 1):
                x = F.relu(getattr(self, f"conv{block}_{k}")(x))
                features.append(x.float())
        return features


def perceptual_loss(features_a, features_b, stds, offset: float = 0.1):
    """jhuman.models.perceptual.perceptual_loss: mean over layers of mean |fa - fb| / (std_c + 0.1), NCHW
    features, stds a list of (C,) tensors in the same layer order."""
    total = 0.0
    for fa, fb, std in zip(features_a, features_b, stds):
        total = total + ((fa - fb).abs() / (std.reshape(1, -1, 1, 1) + offset)).mean()
    return total / len(stds)


# --- losses -----------------------------------------------------------------------------------------------------


def subsample_labels(labels, out_hw, stride: int):
    """(B, H, W) -> (B, h, w): labels[:, ::s, ::s], cropped or padded with 255 to the logit grid."""
    sub = labels[:, ::stride, ::stride][:, : out_hw[0], : out_hw[1]]
    pad_h, pad_w = out_hw[0] - sub.shape[1], out_hw[1] - sub.shape[2]
    if pad_h or pad_w:
        sub = F.pad(sub, (0, pad_w, 0, pad_h), value=IGNORE_LABEL)
    return sub


def per_image_cross_entropy(logits, labels):
    """logits (B, C, h, w), labels (B, h, w) -> (B,): mean softmax cross-entropy over each image's pixels with
    a label in [0, C) (255 ignored); 0 for an image without any."""
    logits = logits.float()
    valid = (labels >= 0) & (labels < logits.shape[1])
    nll = F.cross_entropy(logits, torch.where(valid, labels, 0), reduction="none")  # (B, h, w)
    total = torch.where(valid, nll, 0.0).sum((1, 2))
    return total / valid.sum((1, 2)).clamp(min=1)


def parsing_loss(outputs, labels, stride: int = 8):
    """Sum over the fused logits (and each scale's, for Attention-to-Scale) of the batch mean of the per-image
    cross-entropy against labels[::stride, ::stride] (B, H, W) int64."""
    logits = outputs["logits"]
    sub = subsample_labels(labels, logits.shape[2:], stride)
    terms = [logits] + (list(outputs["scale_logits"].unbind(0)) if "scale_logits" in outputs else [])
    return sum(per_image_cross_entropy(t, sub).mean() for t in terms)


def logistic_loss(logits, targets):
    logits = logits.float()
    return logits.clamp(min=0) - logits * targets + torch.log1p(torch.exp(-logits.abs()))


def offset_loss(predicted, target, mask, radius):
    l1 = (predicted.float() - target).abs().sum(-1)
    l1 = torch.where(mask > 0, l1, 0.0)
    return (mask * l1).sum() / radius / mask.sum().clamp(min=1.0)


def personlab_loss(outputs, targets, radius=32.0, weights=None):
    """jhuman.ops.personlab_losses.personlab_losses on dense targets (the dict of encode_batch, as tensors):
    heatmap and segmentation logistic losses, short/mid/long L1 / R, weighted 4 / 2 / 1 / 0.25 / 0.125."""
    weights = {**PERSONLAB_WEIGHTS, **(weights or {})}
    weight = targets["keypoint_weight"]
    heat = logistic_loss(outputs["heatmap_logits"], targets["heatmaps"])
    heat_weight = weight[..., None].expand_as(heat)
    terms = {
        "heatmap": (heat_weight * heat).sum() / heat_weight.sum().clamp(min=1.0),
        "segmentation": logistic_loss(outputs["segmentation_logits"], targets["segmentation"]).mean(),
    }
    for name in ("short", "mid", "long"):
        mask = targets[f"{name}_mask"] * weight[..., None]
        terms[name] = offset_loss(outputs[f"{name}_offsets"], targets[f"{name}_offsets"], mask, radius)
    return sum(weights[k] * v for k, v in terms.items())


def trimap_loss(logits, classes):
    """jhuman.ops.matting.trimap_loss without weights: mean softmax cross-entropy, logits (B, 3, H, W)."""
    return F.cross_entropy(logits.float(), classes)


def prediction_loss(alpha_p, alpha_g, fg, bg, gamma=0.5, eps=1e-6):
    """jhuman.ops.matting.prediction_loss with F and B for every example, no weights (NCHW tensors):
    mean of gamma rho(alpha_p - alpha_g) + (1 - gamma) mean_rgb rho(c_p - c_g), rho(d) = sqrt(d^2 + eps^2)."""
    alpha_p = alpha_p.float()

    def rho(d):
        return torch.sqrt(d * d + eps * eps)

    c_p, c_g = alpha_p * fg + (1 - alpha_p) * bg, alpha_g * fg + (1 - alpha_g) * bg
    return gamma * rho(alpha_p - alpha_g).mean() + (1 - gamma) * rho(c_p - c_g).mean()


# --- jhuman variables -> torch ----------------------------------------------------------------------------------

_LEAF_NAMES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def _flatten(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict) or hasattr(value, "items"):
            yield from _flatten(value, prefix + (str(key),))
        else:
            yield prefix + (str(key),), value


def jhuman_state_dict(variables) -> dict:
    """linen variables {'params': ..., 'batch_stats': ...} -> a torch state dict (conv kernels HWIO -> OIHW)."""
    state = {}
    for collection in ("params", "batch_stats"):
        for path, value in _flatten(variables.get(collection, {})):
            array = np.asarray(value, np.float32)
            if path[-1] == "kernel":  # conv HWIO -> OIHW; dense (in, out) -> (out, in)
                array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
            name = ".".join(path[:-1] + (_LEAF_NAMES[path[-1]],))
            state[name] = torch.from_numpy(np.array(array, order="C", copy=True))  # writable, contiguous
    return state


def load_jhuman_variables(module: nn.Module, variables) -> nn.Module:
    """Copies jhuman's variables into `module` (names must match one to one: strict)."""
    module.load_state_dict(jhuman_state_dict(variables), strict=True)
    return module


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
