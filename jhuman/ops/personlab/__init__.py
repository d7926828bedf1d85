"""PersonLab's kernels (Papandreou et al., "PersonLab: Person Pose Estimation and Instance Segmentation with a
Bottom-Up, Part-Based, Geometric Embedding Model", ECCV 2018; shared/reference/personlab.md). This folder
belongs to that paper; kernels another paper uses too live one level up (`jhuman.ops.image`).

  targets.py    dense training targets (disks, short/mid/long offsets) from the compact annotation, on device
  losses.py     the paper's five loss terms
  offsets.py    recurrent offset refinement (Sec. 3.3), dense and lazy: the one home the model and the
                decoder both call
  hough.py      Hough voting (Eq. 1), smoothing, peaks; and the coarse vote grid
  grouping.py   greedy grouping along the kinematic tree, expected-OKS scores, soft NMS, instance masks
  fields.py     how `decode` reads its inputs: numpy arrays in place (no copy), each field where it is used
  decoder.py    `decode`: network outputs -> people (the steps above, jitted and vmappable)
  reference.py  the same decoder in plain numpy/scipy, for tests and benchmarks only

The decoder module is `decoder.py`, not `decode.py`: `jhuman.ops.personlab.decode` is the public FUNCTION,
and a submodule of the same name would be shadowed by it (`import jhuman.ops.personlab.decode as m` would
give the function).

Public API (DESIGN.md): `KEYPOINTS` (COCO order, 17), `EDGES` (16 tree edges), `DIRECTED_EDGES` (32) and
`decode(heatmaps, short_offsets, mid_offsets, long_offsets=None, segmentation=None, **options)`; see
`jhuman.ops.personlab.decoder` for shapes, outputs and options (`DEFAULT_OPTIONS`, `decode_options`,
`capacities`).
"""

from jhuman.ops.personlab.decoder import (
    BATCH_MODES,
    DEFAULT_OPTIONS,
    DIRECTED_EDGES,
    EDGES,
    KEYPOINTS,
    capacities,
    decode,
    decode_options,
    decode_single,
)

__all__ = [
    "BATCH_MODES",
    "DEFAULT_OPTIONS",
    "DIRECTED_EDGES",
    "EDGES",
    "KEYPOINTS",
    "capacities",
    "decode",
    "decode_options",
    "decode_single",
]
