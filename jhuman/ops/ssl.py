"""Self-supervised structure-sensitive loss (SSL) of LIP: Gong et al., "Look into Person", CVPR 2017.

Paper, Sec. "Self-supervised Structure-sensitive Learning":
- nine joints, each the centre of mass of a group of parsing classes (`JOINT_GROUPS`), computed from the
  ground-truth map and from the predicted (argmax) map at the logit resolution;
- one Gaussian heatmap C_i per joint;
- Eq. (1): L_Joint = 1/2 * sum_i ||C_i^pred - C_i^gt||_2^2 (over the nine joints and all pixels);
- Eq. (2): L_Structure = L_Joint * L_Parsing, per image, L_Parsing the pixel-wise softmax cross-entropy.

Conventions (DESIGN.md, "Public API"): coordinates are (x, y) = (column, row) at the logit resolution;
arrays are NHWC with any number of leading batch axes (also none). Everything is pure jax.numpy with static
shapes (jit/vmap friendly, no Python loop over classes, joints or images); `jhuman.ops.ssl_reference` is the
plain numpy version the tests and the benchmark compare against.

Differences from the released Caffe code (Engineering-Course/caffe_ssl), on purpose:
- joints are computed per image; the released PoseEvaluate layer keeps accumulating pixels across the images
  of a batch (its per-joint lists are never cleared), so for batch > 1 it mixes joints of different images;
- a missing joint has an explicit `visible=False` flag; the released code writes (0, 0) and then treats any
  joint at (0, 0) as missing, which also drops a real joint at the top-left pixel;
- centres stay float (mean column, mean row); the released code truncates them with int() before drawing.
Kept from the released code: sigma = 1 logit pixel, the heatmap scale 4 / (sigma * sqrt(2 pi)), the loss
weight 0.05 (HeatmapError `scale`).

Gradient variants (`VARIANTS`, chosen by config; see `structure_sensitive_loss`):
- 'stop_gradient' (default): stop_gradient(L_Joint) * CE. L_Joint comes through an argmax, so it has no
  useful gradient; it acts as a per-image weight of the cross-entropy, which is what the paper intends
  (images with a wrong structure count more). Faithful to Eq. (2) and its intent.
- 'product': the literal product L_Joint * CE, with L_Joint made differentiable: the predicted joints come
  from `soft_joint_centers(softmax(logits))` (probability-weighted centres) instead of the argmax. With the
  argmax map the literal product would be *identical* to 'stop_gradient' in JAX (labels_pred is an integer
  array, jax.grad sees no dependence of L_Joint on the logits), so a separate variant only makes sense with a
  relaxation. It adds the term CE * dL_Joint_soft/dlogits, which pulls predicted centres towards the
  ground-truth centres.
- 'report_only': CE alone; L_Joint is only reported. This is what the released Caffe backward does (its SSL
  layers pass no gradient and do not scale the softmax loss gradient), i.e. SSL trains like plain CE.
With 'stop_gradient' and 'product' an image whose joints match exactly (L_Joint = 0) gets zero gradient, and
the multiplier rescales the effective learning rate: with sigma = 1 and weight 0.05 a joint present in only
one of the two maps adds about 0.2 to L_Joint, a joint misplaced by several pixels about 0.4 (so 0 <= L_Joint
<~ 3.6); tune the learning rate with it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.classes import IGNORE_LABEL, LIP_NUM_CLASSES

# The nine joints as groups of LIP class indices (classes.LIP_CLASSES).
JOINT_GROUPS = (
    (1, 2, 4, 13),  # 0 head: Hat, Hair, Sunglasses, Face
    (5, 7, 11),  # 1 upper body: Upper-clothes, Coat, Scarf
    (9, 12),  # 2 lower body: Pants, Skirt
    (14,),  # 3 left arm
    (15,),  # 4 right arm
    (16,),  # 5 left leg
    (17,),  # 6 right leg
    (18,),  # 7 left shoe
    (19,),  # 8 right shoe
)
NUM_JOINTS = len(JOINT_GROUPS)  # 9
JOINT_NAMES = (
    "head",
    "upper_body",
    "lower_body",
    "left_arm",
    "right_arm",
    "left_leg",
    "right_leg",
    "left_shoe",
    "right_shoe",
)


def _class_to_joint() -> np.ndarray:
    lut = np.full(256, -1, np.int32)
    for joint, classes in enumerate(JOINT_GROUPS):
        lut[list(classes)] = joint
    return lut


# Label value (0..255) -> joint index, or -1 (Background, Glove, Dress, Socks, Jumpsuits, 20..254, 255).
CLASS_TO_JOINT = _class_to_joint()
# (LIP_NUM_CLASSES, 9) float32 membership: row c is the one-hot joint of class c (zeros: no joint).
CLASS_TO_JOINT_MATRIX = (CLASS_TO_JOINT[:LIP_NUM_CLASSES, None] == np.arange(NUM_JOINTS)).astype(np.float32)

VARIANTS = ("stop_gradient", "product", "report_only")
HEATMAP_SCALE = 4.0  # released PoseCreate: gaussian = 4 * N(d; sigma)


def joint_centers(labels: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Joint centres of label maps: per joint the (mean column, mean row) of its group's pixels.

    labels: int (..., H, W) label maps (any leading batch axes, also none); values outside 0..255 count as
    background. Returns centers (..., 9, 2) float32 (x, y) and visible (..., 9) bool. A joint with no pixels
    is missing: visible False and centre (0, 0) (never used: `joint_heatmaps` draws it as zeros).

    One class->joint lookup and one `jax.ops.segment_sum` over all pixels of the batch with segment id
    image * 9 + joint (pixels without a joint go to an extra dropped segment), summing (1, x, y) in int32:
    exact for any map up to 2**31 / max(H, W) pixels, then a single float division.
    """
    labels = jnp.asarray(labels)
    *lead, height, width = labels.shape
    num_images = math.prod(lead)
    joint = jnp.asarray(CLASS_TO_JOINT)[jnp.clip(labels.astype(jnp.int32), 0, 255)]  # (..., H, W)
    joint = joint.reshape(num_images, height * width)  # (N, HW)
    image = jnp.arange(num_images, dtype=jnp.int32)[:, None]  # (N, 1)
    dump = num_images * NUM_JOINTS
    segment = jnp.where(joint >= 0, image * NUM_JOINTS + joint, dump).reshape(-1)  # (N*HW,)
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.int32), jnp.arange(width, dtype=jnp.int32), indexing="ij"
    )
    pixel = jnp.stack([jnp.ones_like(rows), cols, rows], axis=-1).reshape(1, height * width, 3)  # (1, HW, 3)
    data = jnp.broadcast_to(pixel, (num_images, height * width, 3)).reshape(-1, 3)  # (N*HW, 3)
    sums = jax.ops.segment_sum(data, segment, num_segments=dump + 1)[:dump]  # (N*9, 3) [count, sum x, sum y]
    sums = sums.reshape(*lead, NUM_JOINTS, 3)
    count = sums[..., 0]  # (..., 9)
    visible = count > 0
    centers = sums[..., 1:].astype(jnp.float32) / jnp.maximum(count, 1).astype(jnp.float32)[..., None]
    return centers, visible  # (..., 9, 2), (..., 9)


def soft_joint_centers(probabilities: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Differentiable relaxation of `joint_centers` (used by the 'product' variant).

    probabilities: (..., H, W, C) float, C = LIP_NUM_CLASSES (softmax of the logits). Group probability of a
    pixel = sum of its group's class probabilities; centre = probability-weighted mean (x, y) of the group;
    visible = group mass > 0.5 pixel (invisible: centre (0, 0), as in `joint_centers`). With one-hot
    probabilities this equals `joint_centers` of the labels. Returns centers (..., 9, 2) float32 and
    visible (..., 9) bool. The visibility threshold itself carries no gradient.
    """
    probabilities = jnp.asarray(probabilities, jnp.float32)
    *_, height, width, num_classes = probabilities.shape
    if num_classes != LIP_NUM_CLASSES:
        raise ValueError(f"expected {LIP_NUM_CLASSES} class probabilities, got {num_classes}")
    hi = jax.lax.Precision.HIGHEST
    group = jnp.einsum(
        "...hwc,cj->...hwj", probabilities, jnp.asarray(CLASS_TO_JOINT_MATRIX), precision=hi
    )  # (..., H, W, 9)
    by_row = group.sum(axis=-2)  # (..., H, 9)
    by_col = group.sum(axis=-3)  # (..., W, 9)
    mass = by_row.sum(axis=-2)  # (..., 9)
    sum_x = jnp.einsum("...wj,w->...j", by_col, jnp.arange(width, dtype=jnp.float32), precision=hi)
    sum_y = jnp.einsum("...hj,h->...j", by_row, jnp.arange(height, dtype=jnp.float32), precision=hi)
    visible = mass > 0.5
    centers = jnp.stack([sum_x, sum_y], axis=-1) / jnp.maximum(mass, 0.5)[..., None]
    centers = jnp.where(visible[..., None], centers, 0.0)
    return centers, visible  # (..., 9, 2), (..., 9)


def joint_heatmaps(
    centers: jnp.ndarray, visible: jnp.ndarray, height: int, width: int, sigma: float = 1.0
) -> jnp.ndarray:
    """Heatmaps C_i of Eq. (1): one Gaussian per joint over the full (height, width) grid.

    C_i(x, y) = 4 / (sigma * sqrt(2 pi)) * exp(-((x - cx)^2 + (y - cy)^2) / (2 sigma^2)), zero for invisible
    joints. The factor 4 / (sigma sqrt(2 pi)) (1.596 for sigma = 1) is the released PoseCreate layer's (a 1-D
    normal density times 4), kept so that the 0.05 loss weight means the same thing.
    centers (..., 9, 2) float (x, y); visible (..., 9) bool. Returns (..., H, W, 9) float32.
    """
    centers = jnp.asarray(centers, jnp.float32)
    scale = HEATMAP_SCALE / (sigma * math.sqrt(2.0 * math.pi))
    cx = centers[..., None, None, :, 0]  # (..., 1, 1, 9)
    cy = centers[..., None, None, :, 1]  # (..., 1, 1, 9)
    xs = jnp.arange(width, dtype=jnp.float32)[:, None]  # (W, 1)
    ys = jnp.arange(height, dtype=jnp.float32)[:, None, None]  # (H, 1, 1)
    d2 = (xs - cx) ** 2 + (ys - cy) ** 2  # (..., H, W, 9)
    gauss = scale * jnp.exp(-d2 / (2.0 * sigma**2))
    return jnp.where(jnp.asarray(visible)[..., None, None, :], gauss, 0.0)


def _heatmap_loss(heat_gt: jnp.ndarray, heat_pred: jnp.ndarray, weight: float) -> jnp.ndarray:
    """Eq. (1) times the released weight: (..., H, W, 9) x 2 -> (...,)."""
    return weight * 0.5 * jnp.sum((heat_pred - heat_gt) ** 2, axis=(-3, -2, -1))


def joint_loss(
    labels_gt: jnp.ndarray, labels_pred: jnp.ndarray, sigma: float = 1.0, weight: float = 0.05
) -> jnp.ndarray:
    """L_Joint of Eq. (1) per image, times `weight` (0.05, the released HeatmapError scale).

    labels_gt, labels_pred: int (..., H, W) at the logit resolution (ground truth `label[::8, ::8]`, the
    argmax of the logits). Returns (...,) float32: weight * 0.5 * sum over joints and pixels of
    (C_pred - C_gt)^2. Integer inputs: no gradient reaches the logits through this function.
    """
    labels_gt, labels_pred = jnp.asarray(labels_gt), jnp.asarray(labels_pred)
    height, width = labels_gt.shape[-2:]
    heat_gt = joint_heatmaps(*joint_centers(labels_gt), height, width, sigma)  # (..., H, W, 9)
    heat_pred = joint_heatmaps(*joint_centers(labels_pred), height, width, sigma)  # (..., H, W, 9)
    return _heatmap_loss(heat_gt, heat_pred, weight)


def soft_joint_loss(
    labels_gt: jnp.ndarray, logits: jnp.ndarray, sigma: float = 1.0, weight: float = 0.05
) -> jnp.ndarray:
    """L_Joint with predicted joints from `soft_joint_centers(softmax(logits))`: differentiable in logits.

    labels_gt int (..., H, W); logits (..., H, W, C). Returns (...,) float32.
    """
    height, width = logits.shape[-3:-1]
    heat_gt = joint_heatmaps(*joint_centers(labels_gt), height, width, sigma)
    probabilities = jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    heat_pred = joint_heatmaps(*soft_joint_centers(probabilities), height, width, sigma)
    return _heatmap_loss(heat_gt, heat_pred, weight)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown SSL variant {variant!r}; expected one of {VARIANTS}")


def structure_sensitive_loss(
    ce_per_image: jnp.ndarray, joint_loss: jnp.ndarray, variant: str = "stop_gradient"
) -> jnp.ndarray:
    """L_Structure of Eq. (2) per image, (...,) x (...,) -> (...,).

    - 'stop_gradient': stop_gradient(joint_loss) * CE. The gradient is L_Joint times the CE gradient of that
      image.
    - 'product': joint_loss * CE as written. If `joint_loss` came from argmax labels (`joint_loss`), JAX
      gives it no gradient (an integer argmax is a constant to jax.grad), so this is numerically identical
      to 'stop_gradient', value and gradient. It differs only when `joint_loss` is differentiable, i.e. the
      soft one (`soft_joint_loss`, what `ssl_weights` passes): then the gradient gains CE * dL_Joint.
    - 'report_only': CE (joint_loss ignored: the released Caffe backward).
    Unknown variants raise ValueError.
    """
    _check_variant(variant)
    if variant == "report_only":
        return ce_per_image
    if variant == "stop_gradient":
        joint_loss = jax.lax.stop_gradient(joint_loss)
    return joint_loss * ce_per_image


def ssl_weights(
    labels_gt_logit_res: jnp.ndarray,
    logits: jnp.ndarray,
    variant: str = "stop_gradient",
    sigma: float = 1.0,
    weight: float = 0.05,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-image multiplier of the cross-entropy, and L_Joint for reporting.

    labels_gt_logit_res int (..., h, w) (ground truth at the logit grid, 255 = ignore); logits
    (..., h, w, C). Returns (multiplier (...,), joint_loss (...,)), both float32:
    loss_per_image = multiplier * ce_per_image (`per_image_cross_entropy`) gives L_Structure of Eq. (2) with
    the variant's gradient: 'stop_gradient' -> stop_gradient(L_Joint of the argmax); 'product' -> the soft,
    differentiable L_Joint (`soft_joint_loss`); 'report_only' -> 1. The returned joint_loss is always the
    argmax L_Joint of Eq. (1) (the paper's quantity, comparable across variants), without gradient.
    Predicted joints use the whole logit map (also padding where the ground truth is 255).
    """
    _check_variant(variant)
    labels_pred = jnp.argmax(logits, axis=-1)  # (..., h, w)
    hard = jax.lax.stop_gradient(joint_loss(labels_gt_logit_res, labels_pred, sigma, weight))  # (...,)
    if variant == "report_only":
        multiplier = jnp.ones_like(hard)
    elif variant == "stop_gradient":
        multiplier = hard
    else:
        multiplier = soft_joint_loss(labels_gt_logit_res, logits, sigma, weight)
    return multiplier, hard


def per_image_cross_entropy(
    logits: jnp.ndarray, labels: jnp.ndarray, ignore_label: int = IGNORE_LABEL
) -> jnp.ndarray:
    """L_Parsing per image: softmax cross-entropy averaged over that image's non-ignored pixels.

    logits (..., h, w, C); labels int (..., h, w), `ignore_label` (and any value outside 0..C-1) ignored.
    Returns (...,) float32; an image without valid pixels gets 0.
    """
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels).astype(jnp.int32)
    valid = (labels != ignore_label) & (labels >= 0) & (labels < logits.shape[-1])  # (..., h, w)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_p, jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    total = -jnp.sum(jnp.where(valid, picked, 0.0), axis=(-2, -1))
    return total / jnp.maximum(valid.sum(axis=(-2, -1)), 1)
