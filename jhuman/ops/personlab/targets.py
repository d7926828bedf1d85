"""PersonLab dense training targets, built on device from the compact per-example annotation.

Papandreou et al., "PersonLab", ECCV 2018, Sec. 3.1-3.3 (see shared/reference/personlab.md). For ONE example
(vmap for a batch), with x = (column, row) the integer pixel positions of the H x W crop, R the disk radius and
y_{j,k} keypoint k of person j:
- heatmaps p_k(x) = 1 inside the disk ||y_{j,k} - x|| <= R of any person j whose keypoint k is labelled (v > 0);
- short-range offsets S_k(x) = y_{j,k} - x for the NEAREST such person j (the disk's owner; ties go to the lower
  person index); short_mask = heatmaps;
- mid-range offsets M_{k,l}(x) = y_{j,l} - x over the k-disk of its owner j, for every directed edge (k, l) of
  PERSONLAB_DIRECTED_EDGES, supervised only where j has keypoint l labelled too (a pixel whose nearest k-disk
  belongs to a person without l is NOT handed to a farther person that has l: its owner is the person the
  short-range offsets and the decoder's seed refer to);
- long-range offsets L_k(x) = y_{j,k} - x on person j's own pixels (instance_ids == j + 1; overlaps, marked -1,
  and background excluded) for each labelled k of j;
- segmentation: the union of all person masks (persons without keypoints included), as float;
- keypoint_weight = 1 - ignore: crowd regions and persons without keypoints. The masks above are purely
  geometric; `jhuman.ops.personlab.losses` multiplies them (and the heatmap loss) by keypoint_weight.
Offsets are zero wherever their mask is zero. Everything is float32.

Inputs (the COCO pipeline's compact form, crop pixels):
  keypoints (P, 17, 3) [x, y, v], v = 0 unlabelled, padded persons all zero; instance_ids (H, W) int32 with 0
  background, j + 1 for person j = keypoints[j] (persons with >= 1 labelled keypoint), -1 for pixels covered by two
  or more persons (crowd regions excluded: they are in `ignore`); segmentation (H, W) uint8 (nonzero = person);
  ignore (H, W) uint8 (nonzero = ignore).

Why on device: the dense targets of one 401 x 401 example hold 217 float32 channels (17 heatmaps, 34 short,
64 mid, 34 long offsets, 17 + 32 + 17 masks, segmentation, keypoint weight) = 401 * 401 * 217 * 4 B = 139.6 MB
(97.1 MB for the 151 target channels alone), against 0.97 MB for the compact form (instance_ids 643.2 kB int32,
segmentation and ignore 160.8 kB each as uint8, keypoints 30 * 17 * 3 * 4 B = 6.1 kB): about 140x less to
decode, batch, shard and copy host -> device. The encoder is a few elementwise passes, cheap on an accelerator.

Memory and time: the direct nearest-person search materialises (H, W, P, 17) distances (401 * 401 * 30 * 17 *
4 B = 328 MB per example, 2.6 GB for a batch of 8); mapping over the 17 keypoint types would still hold an
(H, W, P) slice per step (19.3 MB) and its argmin over a minor axis of 30 is slow on CPU. Instead
`nearest_disk_owner` scans over the P persons and carries the running minimum and owner per keypoint type,
(17, H, W) float32 + int32 = 2 x 10.9 MB per example, whatever P is. Time and memory of both, measured for a
batch of 8 at 401 x 401: benchmarks/RESULTS.md, "Moved from module docstrings".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.classes import PERSONLAB_DIRECTED_EDGES
from jhuman.ops.image import pixel_grid

RADIUS = 32.0  # the paper's disk radius R in pixels (not scaled with person size)
TARGET_KEYS = (
    "heatmaps",
    "short_offsets",
    "short_mask",
    "mid_offsets",
    "mid_mask",
    "long_offsets",
    "long_mask",
    "segmentation",
    "keypoint_weight",
)


def nearest_disk_owner(points, labelled, height, width, radius=RADIUS):
    """Nearest labelled person per keypoint type and pixel: points (P, K, 2), labelled (P, K) ->
    owner (K, H, W) int32 (the lowest index among the nearest; 0 where no labelled person exists) and
    in_disk (K, H, W) bool (that person's keypoint within distance R, boundary included).

    A scan over the P persons keeps the running minimum (K, H, W): no (H, W, P) array is ever live, and each
    step is a few elementwise passes from separable squared distances (a row term plus a column term)."""
    cols = jnp.arange(width, dtype=jnp.float32)
    rows = jnp.arange(height, dtype=jnp.float32)
    num_keypoints = points.shape[1]

    def step(carry, person):
        best, owner, j = carry
        xy, lab = person  # (K, 2), (K,)
        dist2 = (xy[:, 1, None, None] - rows[:, None]) ** 2 + (xy[:, 0, None, None] - cols) ** 2  # (K, H, W)
        take = lab[:, None, None] & (dist2 < best)  # strictly nearer: ties keep the lower index
        return (jnp.where(take, dist2, best), jnp.where(take, j, owner), j + 1), None

    init = (
        jnp.full((num_keypoints, height, width), jnp.inf, jnp.float32),
        jnp.zeros((num_keypoints, height, width), jnp.int32),
        jnp.int32(0),
    )
    (best, owner, _), _ = jax.lax.scan(step, init, (points, labelled))
    return owner, best <= radius * radius


def encode_targets(
    keypoints, instance_ids, segmentation, ignore, radius=RADIUS, edges=PERSONLAB_DIRECTED_EDGES
):
    """Dense PersonLab targets of one example; see the module docstring. Shapes (K = 17, E = 32 edges):

    returns {'heatmaps' (H, W, K), 'short_offsets' (H, W, K, 2), 'short_mask' (H, W, K),
             'mid_offsets' (H, W, E, 2), 'mid_mask' (H, W, E), 'long_offsets' (H, W, K, 2), 'long_mask' (H, W, K),
             'segmentation' (H, W), 'keypoint_weight' (H, W)}, all float32, offsets (x, y) in pixels.
    """
    keypoints = jnp.asarray(keypoints, jnp.float32)  # (P, K, 3)
    instance_ids = jnp.asarray(instance_ids, jnp.int32)  # (H, W)
    height, width = instance_ids.shape
    num_persons, num_keypoints = keypoints.shape[:2]
    grid = pixel_grid(height, width)  # (H, W, 2)
    points = keypoints[..., :2]  # (P, K, 2)
    labelled = keypoints[..., 2] > 0  # (P, K)

    # Heatmaps and short-range offsets: the nearest person per keypoint type.
    owner, in_disk = nearest_disk_owner(points, labelled, height, width, radius)  # (K, H, W) each
    owner = jnp.moveaxis(owner, 0, -1)  # (H, W, K)
    in_disk = jnp.moveaxis(in_disk, 0, -1)  # (H, W, K)
    kp_index = jnp.arange(num_keypoints)
    short_mask = in_disk.astype(jnp.float32)
    short = points[owner, kp_index] - grid[:, :, None, :]  # (H, W, K, 2)
    short = short * short_mask[..., None]

    # Mid-range offsets: the owner of the source keypoint's disk, pointing at its target keypoint.
    src = np.asarray([k for k, _ in edges], np.int32)
    dst = np.asarray([l for _, l in edges], np.int32)
    mid_owner = owner[:, :, src]  # (H, W, E)
    mid_mask = (in_disk[:, :, src] & labelled[mid_owner, dst]).astype(jnp.float32)
    mid = (points[mid_owner, dst] - grid[:, :, None, :]) * mid_mask[..., None]  # (H, W, E, 2)

    # Long-range offsets: every labelled keypoint of the person owning the pixel alone.
    person = jnp.clip(instance_ids - 1, 0, num_persons - 1)  # (H, W)
    own = (instance_ids > 0) & (instance_ids <= num_persons)
    long_mask = (own[..., None] & labelled[person]).astype(jnp.float32)  # (H, W, K)
    long = (points[person] - grid[:, :, None, :]) * long_mask[..., None]  # (H, W, K, 2)

    return {
        "heatmaps": short_mask,
        "short_offsets": short,
        "short_mask": short_mask,
        "mid_offsets": mid,
        "mid_mask": mid_mask,
        "long_offsets": long,
        "long_mask": long_mask,
        "segmentation": (jnp.asarray(segmentation) > 0).astype(jnp.float32),
        "keypoint_weight": 1.0 - (jnp.asarray(ignore) > 0).astype(jnp.float32),
    }


def encode_batch(
    keypoints, instance_ids, segmentation, ignore, radius=RADIUS, edges=PERSONLAB_DIRECTED_EDGES
):
    """encode_targets over a leading batch axis: (B, P, 17, 3), (B, H, W) x 3 -> dict of (B, ...) arrays."""
    return jax.vmap(lambda k, i, s, g: encode_targets(k, i, s, g, radius, edges))(
        keypoints, instance_ids, segmentation, ignore
    )
