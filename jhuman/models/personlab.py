"""PersonLab network: dilated ResNet trunk, 1x1 conv heads, bilinear upsampling, recurrent offset refinement.

Papandreou et al., "PersonLab", ECCV 2018 (shared/reference/personlab.md). The trunk is `jhuman.models.resnet`
(the one ResNet of the package, as DeepLab uses it: params under 'trunk', torchvision names). On res5 a module
'heads' holds five 1x1 convs: 'heatmap' (K = 17), 'short' (2K = 34), 'mid' (2E = 64, E = 32 directed edges in
PERSONLAB_DIRECTED_EDGES order), 'long' (2K = 34), 'segmentation' (1): 150 channels. Offset channels are
(x, y) pairs per keypoint / edge: channel 2c is x (column), 2c + 1 is y (row).

Geometry: the heads are upsampled to the input resolution with `jhuman.ops.image.upsample_aligned`: head pixel
i sits on input pixel output_stride * i (the trunk maps H to ceil(H / os) with torchvision padding, so that is
where its receptive field is centred), input pixels past the last head pixel take its value. jax.image.resize
(half-pixel centres) would shift every map by (os - 1) / 2 pixels against that, a direct bias in the offsets.

Offset units: the heads predict offsets in units of `offset_unit` pixels (R = 32 by default) and the model
multiplies by it, so outputs are in PIXELS. With the losses' L1 / R the heads' outputs are then O(1) and so are
their gradients; predicting raw pixels would need 32x larger head weights from a N(0, 0.01) start.

Refinement (Sec. 3.3, "recurrent offset refinement"): with p = x + M_{k,l}(x) the landing point,
    M_{k,l}(x) <- p + S_l(p) - x,   refine_steps times (S fixed: the raw short-range offsets),
S_l(p) sampled bilinearly. Long-range offsets: L_k(x) <- p + L_k^raw(p) - x (p = x + L_k(x)) refine_steps
times, then likewise with S_k refine_steps times (the order of the public ports: self, then short-range).
A landing point outside the image is first clamped onto it, and the sampled offset is added to the CLAMPED
point (it is the point that offset was measured from); inside the image this is exactly the formula above.
Gradients flow through the sampled values and the bilinear weights (not through the integer corners).
Computed by `jhuman.ops.personlab.offsets` (refine_mid_offsets / refine_long_offsets), as in the decoder.

Outputs: {'heatmap_logits' (B, H, W, K) float32, 'short_offsets' (B, H, W, K, 2), 'mid_offsets' (B, H, W, E, 2),
'long_offsets' (B, H, W, K, 2) float32 pixels (mid/long refined), 'segmentation_logits' (B, H, W) float32}.
With intermediate_supervision=True a second set of 1x1 heads ('intermediate_heads') on res4 gives the same five
outputs, unrefined, under 'intermediate' (`jhuman.ops.personlab.losses` adds the same losses on them).
The model takes images already normalised; params are float32, the trunk and heads compute in `dtype`, the
upsampled maps and the refinement are float32.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jhuman.classes import PERSONLAB_DIRECTED_EDGES
from jhuman.models import resnet
from jhuman.models.conv import Conv
from jhuman.ops.image import upsample_aligned
from jhuman.ops.personlab import offsets as offset_ops

BACKBONES = resnet.RESNETS
OUTPUT_KEYS = ("heatmap_logits", "short_offsets", "mid_offsets", "long_offsets", "segmentation_logits")

# New layers start small, as DeepLab's classifier: N(0, 0.01) kernels, zero biases.
_head_init = nn.initializers.normal(stddev=0.01)


# --- modules ---------------------------------------------------------------------------------------------------


class PersonLabHeads(nn.Module):
    """Five 1x1 convs on one feature map (B, h, w, D) -> (B, h, w, K + 2K + 2E + 2K + 1) in `dtype`, in the
    order heatmap, short, mid, long, segmentation."""

    num_keypoints: int = 17
    num_edges: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        k, e = self.num_keypoints, self.num_edges
        sizes = {"heatmap": k, "short": 2 * k, "mid": 2 * e, "long": 2 * k, "segmentation": 1}
        return jnp.concatenate(
            [
                Conv(
                    size, (1, 1), kernel_init=_head_init, dtype=self.dtype, param_dtype=jnp.float32, name=name
                )(x)
                for name, size in sizes.items()
            ],
            axis=-1,
        )


def _check(backbone, output_stride, norm, stage_sizes, num_keypoints, edges):
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid: {sorted(BACKBONES)}")
    if output_stride not in resnet.OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {resnet.OUTPUT_STRIDES}, got {output_stride!r}")
    if norm not in resnet.NORMS:
        raise ValueError(f"norm must be one of {resnet.NORMS}, got {norm!r}")
    if stage_sizes is not None and len(stage_sizes) != 4:
        raise ValueError(f"stage_sizes needs 4 stages, got {stage_sizes!r}")
    if any(not (0 <= a < num_keypoints and 0 <= b < num_keypoints) for a, b in edges):
        raise ValueError(f"edges must index keypoints 0..{num_keypoints - 1}, got {edges!r}")


class PersonLab(nn.Module):
    """PersonLab: see the module docstring for outputs, geometry, units and refinement.

    backbone: 'resnet50' | 'resnet101' | 'resnet152' (stage_sizes overrides the depth, e.g. (1, 1, 1, 1) for
    tiny runs); width: channels of the stem (64 real, 8 tiny); output_stride 8 | 16 (| 32); norm 'frozen' |
    'batch'; edges: the directed edges of the mid-range offsets (num_keypoints must cover them);
    offset_unit: pixels per unit of the offset heads.
    """

    backbone: str = "resnet101"
    width: int = 64
    stage_sizes: Optional[Sequence[int]] = None
    output_stride: int = 16
    norm: str = "frozen"
    stride_in_1x1: bool = False
    num_keypoints: int = 17
    edges: Sequence[Sequence[int]] = PERSONLAB_DIRECTED_EDGES
    refine_steps: int = 2
    offset_unit: float = 32.0
    intermediate_supervision: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self):
        _check(self.backbone, self.output_stride, self.norm, self.stage_sizes, self.num_keypoints, self.edges)
        super().__post_init__()

    def setup(self):
        self.trunk = resnet.build_resnet(
            self.backbone,
            self.stage_sizes,
            width=self.width,
            output_stride=self.output_stride,
            norm=self.norm,
            stride_in_1x1=self.stride_in_1x1,
            dtype=self.dtype,
        )
        self.heads = PersonLabHeads(self.num_keypoints, len(self.edges), dtype=self.dtype)
        if self.intermediate_supervision:
            self.intermediate_heads = PersonLabHeads(self.num_keypoints, len(self.edges), dtype=self.dtype)

    def _outputs(self, maps, size, stride):
        """Head maps (B, h, w, 150) -> the five outputs at input resolution (B, H, W, ...) float32, unrefined."""
        k, e = self.num_keypoints, len(self.edges)
        x = upsample_aligned(maps, size, stride)  # (B, H, W, 150) float32
        b, h, w = x.shape[:3]
        heat, short, mid, long, seg = jnp.split(x, [k, 3 * k, 3 * k + 2 * e, 5 * k + 2 * e], axis=-1)
        return {
            "heatmap_logits": heat,
            "short_offsets": short.reshape(b, h, w, k, 2) * self.offset_unit,
            "mid_offsets": mid.reshape(b, h, w, e, 2) * self.offset_unit,
            "long_offsets": long.reshape(b, h, w, k, 2) * self.offset_unit,
            "segmentation_logits": seg[..., 0],
        }

    def __call__(self, images, train: bool = False):
        size = images.shape[1:3]
        features = self.trunk(images, train)
        outputs = self._outputs(self.heads(features["res5"]), size, self.output_stride)
        if self.refine_steps:
            short, steps = outputs["short_offsets"], self.refine_steps
            targets = jnp.asarray(
                [l for _, l in self.edges], jnp.int32
            )  # the keypoint l each edge (k, l) reads
            outputs["mid_offsets"] = offset_ops.refine_mid_offsets(
                outputs["mid_offsets"], short, steps, targets
            )
            outputs["long_offsets"] = offset_ops.refine_long_offsets(outputs["long_offsets"], short, steps)
        if self.intermediate_supervision:
            # res4 sits at output stride 16 when the trunk's is 32, else at the trunk's (res4/res5 dilated).
            outputs["intermediate"] = self._outputs(
                self.intermediate_heads(features["res4"]), size, min(self.output_stride, 16)
            )
        return outputs


def build_personlab(**kwargs):
    """PersonLab from config values (lists and dtype names accepted); unknown option names raise ValueError."""
    fields = set(PersonLab.__dataclass_fields__) - {"parent", "name"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"unknown PersonLab option(s) {unknown}; valid: {sorted(fields)}")
    if kwargs.get("stage_sizes") is not None:
        kwargs["stage_sizes"] = tuple(kwargs["stage_sizes"])
    if kwargs.get("edges") is not None:
        kwargs["edges"] = tuple(tuple(edge) for edge in kwargs["edges"])
    if isinstance(kwargs.get("dtype"), str):
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    return PersonLab(**kwargs)
