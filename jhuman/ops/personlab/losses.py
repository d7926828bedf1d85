"""PersonLab training losses (Papandreou et al., ECCV 2018, Sec. 3; shared/reference/personlab.md).

With w(x) = keypoint_weight (0 on crowd regions and persons without keypoints), all sums over the whole batch
(every pixel of every example counts the same; no per-example averaging):
- heatmap: mean logistic loss sum_{b,x,k} w * BCE(p_k(x), t_k(x)) / sum_{b,x,k} w (the K channels of each
  weighted pixel);
- segmentation: mean logistic loss over all pixels;
- short / mid / long: L1 = |dx| + |dy| per supervised (pixel, channel) entry, divided by R, averaged by the
  number of supervised entries sum(mask * w) (at least 1):  sum(mask * w * L1) / R / max(1, sum(mask * w)).
Total = sum_i weights[i] * term_i, the paper's weights by default (heatmap 4, segmentation 2, short 1,
mid 0.25, long 0.125). If `outputs` holds 'intermediate' (unrefined outputs of extra heads, e.g. on res4:
intermediate supervision), the same five terms are computed on it, added to the total with the same weights
and reported as 'intermediate_<term>'.

`outputs`: 'heatmap_logits' (B, H, W, K) and 'segmentation_logits' (B, H, W) are LOGITS; 'short_offsets'
(B, H, W, K, 2), 'mid_offsets' (B, H, W, E, 2), 'long_offsets' (B, H, W, K, 2) are in pixels (refined, as the
model returns them). `targets`: `jhuman.ops.personlab.targets.encode_targets` vmapped over the batch. All
losses are computed in float32.
"""

from __future__ import annotations

import types

import jax.numpy as jnp

from jhuman.ops.personlab.targets import RADIUS, encode_batch

LOSS_WEIGHTS = types.MappingProxyType(
    {"heatmap": 4.0, "segmentation": 2.0, "short": 1.0, "mid": 0.25, "long": 0.125}
)


def logistic_loss(logits, targets):
    """Elementwise sigmoid binary cross-entropy from logits (numerically stable), float32."""
    logits = jnp.asarray(logits, jnp.float32)
    return jnp.maximum(logits, 0.0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def offset_loss(predicted, target, mask, radius=RADIUS):
    """sum(mask * (|dx| + |dy|)) / R / max(1, sum(mask)); predicted/target (..., C, 2), mask (..., C)."""
    l1 = jnp.sum(jnp.abs(jnp.asarray(predicted, jnp.float32) - target), axis=-1)  # (..., C)
    l1 = jnp.where(mask > 0, l1, 0.0)  # no NaN/inf leak from unsupervised entries
    return jnp.sum(mask * l1) / radius / jnp.maximum(jnp.sum(mask), 1.0)


def _terms(outputs, targets, radius):
    weight = targets["keypoint_weight"]  # (B, H, W)
    heat = logistic_loss(outputs["heatmap_logits"], targets["heatmaps"])  # (B, H, W, K)
    heat_weight = jnp.broadcast_to(weight[..., None], heat.shape)
    terms = {
        "heatmap": jnp.sum(heat_weight * heat) / jnp.maximum(jnp.sum(heat_weight), 1.0),
        "segmentation": jnp.mean(logistic_loss(outputs["segmentation_logits"], targets["segmentation"])),
    }
    for name in ("short", "mid", "long"):
        mask = targets[f"{name}_mask"] * weight[..., None]  # (B, H, W, C)
        terms[name] = offset_loss(outputs[f"{name}_offsets"], targets[f"{name}_offsets"], mask, radius)
    return terms


def personlab_losses(outputs, targets, radius=RADIUS, weights=LOSS_WEIGHTS):
    """(total, {'heatmap', 'segmentation', 'short', 'mid', 'long'[, 'intermediate_<term>' ...]}) float32
    scalars; see the module docstring. `weights` may name a subset of the terms (the rest keep the paper's)."""
    unknown = sorted(set(weights) - set(LOSS_WEIGHTS))
    if unknown:
        raise ValueError(f"unknown loss weight(s) {unknown}; valid: {sorted(LOSS_WEIGHTS)}")
    weights = {**LOSS_WEIGHTS, **weights}
    terms = _terms(outputs, targets, radius)
    if "intermediate" in outputs:
        terms.update(
            {f"intermediate_{k}": v for k, v in _terms(outputs["intermediate"], targets, radius).items()}
        )
    total = sum(weights[name.removeprefix("intermediate_")] * value for name, value in terms.items())
    return jnp.asarray(total, jnp.float32), terms


def personlab_losses_from_annotations(
    outputs, keypoints, instance_ids, segmentation, ignore, radius=RADIUS, weights=LOSS_WEIGHTS
):
    """personlab_losses with the targets encoded on the fly from the compact batch (B, P, 17, 3), (B, H, W) x 3
    (what a jitted train step does: the dense targets never leave the device)."""
    targets = encode_batch(keypoints, instance_ids, segmentation, ignore, radius)
    return personlab_losses(outputs, targets, radius, weights)
