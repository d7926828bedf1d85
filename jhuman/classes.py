"""Label sets shared by data, models, metrics and pictures (plain numpy: no jax, no tensorflow).

LIP facts from Gong et al., CVPR 2017 (see README, "Data layouts").
"""

import numpy as np

LIP_CLASSES = (
    "Background",
    "Hat",
    "Hair",
    "Glove",
    "Sunglasses",
    "Upper-clothes",
    "Dress",
    "Coat",
    "Socks",
    "Pants",
    "Jumpsuits",
    "Scarf",
    "Skirt",
    "Face",
    "Left-arm",
    "Right-arm",
    "Left-leg",
    "Right-leg",
    "Left-shoe",
    "Right-shoe",
)
LIP_NUM_CLASSES = len(LIP_CLASSES)  # 20
IGNORE_LABEL = 255

# A horizontal flip swaps exactly these pairs (and nothing else).
LIP_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))


def _flip_permutation(pairs, size):
    perm = np.arange(size)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


# Label value -> label value after a horizontal flip, for every uint8 value (255 stays 255).
LIP_FLIP_LUT = _flip_permutation(LIP_FLIP_PAIRS, 256).astype(np.uint8)
# Channel order of flipped logits: logits_of_flipped[..., LIP_FLIP_CHANNELS] realigns them.
LIP_FLIP_CHANNELS = _flip_permutation(LIP_FLIP_PAIRS, LIP_NUM_CLASSES)

# The palette used by the LIP tools (RGB).
LIP_PALETTE = np.array(
    [
        (0, 0, 0),
        (128, 0, 0),
        (255, 0, 0),
        (0, 85, 0),
        (170, 0, 51),
        (255, 85, 0),
        (0, 0, 85),
        (0, 119, 221),
        (85, 85, 0),
        (0, 85, 85),
        (85, 51, 0),
        (52, 86, 128),
        (0, 128, 0),
        (0, 0, 255),
        (51, 170, 221),
        (0, 255, 255),
        (85, 255, 170),
        (170, 255, 85),
        (255, 255, 0),
        (255, 170, 0),
    ],
    dtype=np.uint8,
)

# Caffe's ImageNet mean used by the released LIP/DeepLab code, here in RGB order (it is BGR 104.008,
# 116.669, 122.675 there). Pipelines pad with it; models subtract it.
CAFFE_MEAN_RGB = (122.675, 116.669, 104.008)

# COCO person keypoints (17), in COCO order; later tasks build on these.
COCO_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_FLIP_PERMUTATION = _flip_permutation(COCO_FLIP_PAIRS, len(COCO_KEYPOINTS))

# PersonLab's kinematic tree over the COCO keypoints (the PoseNet tree): 16 undirected edges; mid-range offsets
# use both directions of each (32 directed edges, forward edges first, then the same edges reversed).
PERSONLAB_EDGES = (
    (0, 1),
    (0, 2),
    (0, 5),
    (0, 6),
    (1, 3),
    (2, 4),
    (5, 11),
    (6, 12),
    (11, 13),
    (12, 14),
    (13, 15),
    (14, 16),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
)
PERSONLAB_DIRECTED_EDGES = PERSONLAB_EDGES + tuple((b, a) for a, b in PERSONLAB_EDGES)
# COCO OKS per-keypoint sigmas.
COCO_OKS_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)

# The 14 joints of the pose-guided synthesis data set (Balakrishnan et al., CVPR 2018; the published .mat
# files' order) and the index each joint takes after a horizontal flip (left and right swapped).
POSEWARP_JOINTS = (
    "head", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
)  # fmt: skip
POSEWARP_FLIP_PERMUTATION = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10)
