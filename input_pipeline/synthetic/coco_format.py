"""Write multi-person scenes in the official COCO 2017 person-keypoints layout (what input_pipeline/coco.py reads):

  annotations/person_keypoints_{train,val}2017.json     COCO JSON: images, annotations, categories
  {train,val}2017/<12-digit image id>.jpg                RGB JPEG, quality 95

Scenes: `scene.render_scene` with 1..MAX_PEOPLE people (occluding each other, some truncated); about one scene
in CROWD_FRACTION also holds a blob of tiny people, written as ONE iscrowd=1 annotation.

Annotations (one per person that is visible at all; fully hidden people are not written):
* segmentation of the VISIBLE part (Scene.instances == i + 1) as polygons: the outer contours of the mask
  traced on the 2x upsampled mask, so the polygon runs 1/4 pixel inside the pixel edges and pycocotools
  rasterises it back to exactly the mask (checked on write). A mask the polygons cannot reproduce (holes,
  e.g. an arm on the hip) is written as compressed RLE (pycocotools.mask.encode, counts as str) instead.
  Crowd regions use uncompressed RLE ({'counts': [run lengths], 'size': [h, w]}), as COCO does.
* area = visible pixel count, bbox = [x, y, w, h] of the visible mask (pixel edges), iscrowd 0 / 1.
* keypoints: 51 numbers [x, y, v] in COCO order, pixel-index coordinates (pixel (c, r) is at x = c, y = r),
  v 2 visible, 1 occluded but labelled, 0 unlabelled (written as 0, 0, 0); num_keypoints = count of v > 0.
  A heavily occluded person (visible area < UNLABELLED_VISIBLE_FRACTION = 10% of its full silhouette, or fewer than
  UNLABELLED_MIN_VISIBLE visible keypoints) keeps its mask annotation but has no keypoints (num_keypoints 0),
  as small or hidden people in COCO do.
Ids: image_id = index + 1 (so train and val ids never collide), annotation id = image_id * 1000 + k; both
depend only on (seed, index), like the pixels.
"""

import json
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from input_pipeline.synthetic import scene
from jhuman.classes import COCO_KEYPOINTS

JPEG_QUALITY = 95
MAX_PEOPLE = 6
CROWD_FRACTION = 0.3
UNLABELLED_VISIBLE_FRACTION = 0.1
UNLABELLED_MIN_VISIBLE = 1
IMAGE_DIRS = {"train": "train2017", "val": "val2017"}
ANNOTATION_FILES = {s: f"annotations/person_keypoints_{s}2017.json" for s in ("train", "val")}
# The official COCO person skeleton (1-based keypoint indices), as in person_keypoints_*.json.
COCO_SKELETON = [
    [16, 14],
    [14, 12],
    [17, 15],
    [15, 13],
    [12, 13],
    [6, 12],
    [7, 13],
    [6, 7],
    [6, 8],
    [7, 9],
    [8, 10],
    [9, 11],
    [2, 3],
    [1, 2],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 6],
    [5, 7],
]
CATEGORIES = [
    {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(COCO_KEYPOINTS),
        "skeleton": COCO_SKELETON,
    }
]


def image_id(index):
    """COCO image id of synthetic sample `index` (val indices start at VAL_INDEX_OFFSET, so ids are unique)."""
    return int(index) + 1


def file_name(index):
    return f"{image_id(index):012d}.jpg"


def make_dirs(out_dir):
    for d in (*IMAGE_DIRS.values(), "annotations"):
        os.makedirs(os.path.join(out_dir, d), exist_ok=True)


# ----------------------------------------------------------------------------------------------- masks
def uncompressed_rle(mask):
    """COCO uncompressed RLE of a bool (H, W) mask: column-major run lengths, starting with a (maybe empty)
    run of zeros: {'counts': [int, ...], 'size': [H, W]} (the form COCO uses for iscrowd=1 regions)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(v) for v in mask.shape]}


def compressed_rle(mask):
    """pycocotools compressed RLE of a bool (H, W) mask, counts decoded to str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": [int(v) for v in rle["size"]]}


def mask_polygons(mask):
    """Outer contours of a bool (H, W) mask as COCO polygons [[x0, y0, x1, y1, ...], ...] (corner-based
    coordinates, pixel (c, r) covers [c, c + 1) x [r, r + 1)).

    Traced on the mask upsampled 2x: each vertex is the centre of a boundary sub-pixel, i.e. 1/4 pixel inside
    the pixel edges, so every mask pixel centre lies strictly inside and every other centre strictly outside
    (diagonal contacts become zero-width bridges). Holes are lost (COCO polygons are unioned), which is why
    `segmentation` checks the round trip.
    """
    h, w = mask.shape
    up = np.zeros((2 * h + 2, 2 * w + 2), np.uint8)
    up[1:-1, 1:-1] = np.repeat(np.repeat(np.asarray(mask, np.uint8), 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for c in contours:
        xy = (c[:, 0, :].astype(np.float64) - 0.5) / 2  # upsampled pixel u (padding 1) -> (u - 1 + 0.5) / 2
        if len(xy) >= 3:
            polygons.append([float(v) for v in xy.ravel()])
    return polygons


def segmentation(mask):
    """A non-crowd person's COCO segmentation: polygons if pycocotools rasterises them back to exactly `mask`,
    else compressed RLE (holes, degenerate contours)."""
    h, w = mask.shape
    polygons = mask_polygons(mask)
    if polygons:
        back = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)
        if np.array_equal(back, mask):
            return polygons
    return compressed_rle(mask)


def _bbox(mask):
    x, y, w, h = cv2.boundingRect(np.asarray(mask, np.uint8))
    return [float(x), float(y), float(w), float(h)]


# ----------------------------------------------------------------------------------------------- samples
def _labelled(keypoints, visible_pixels, full_pixels):
    """Whether annotators would have labelled this person's keypoints (enough of it visible)."""
    return (
        visible_pixels >= UNLABELLED_VISIBLE_FRACTION * max(full_pixels, 1)
        and int((keypoints[:, 2] == 2).sum()) >= UNLABELLED_MIN_VISIBLE
    )


def annotate(s, image_id_):
    """COCO annotation dicts (without 'id') of a Scene: visible people in drawing order, then the crowd."""
    annotations = []
    for i in range(s.num_people):
        mask = s.instances == i + 1
        area = int(mask.sum())
        if area == 0:  # fully hidden: nothing to annotate
            continue
        kp = s.keypoints[i].astype(np.float64)
        if not _labelled(kp, area, int(s.masks[i].sum())):
            kp = np.zeros_like(kp)
        kp[kp[:, 2] == 0] = 0
        kp[:, :2] = np.round(kp[:, :2], 2)
        annotations.append(
            {
                "image_id": image_id_,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": segmentation(mask),
                "area": float(area),
                "bbox": _bbox(mask),
                "keypoints": [float(v) if j % 3 < 2 else int(v) for j, v in enumerate(kp.ravel())],
                "num_keypoints": int((kp[:, 2] > 0).sum()),
            }
        )
    if s.crowd.any():
        annotations.append(
            {
                "image_id": image_id_,
                "category_id": 1,
                "iscrowd": 1,
                "segmentation": uncompressed_rle(s.crowd),
                "area": float(s.crowd.sum()),
                "bbox": _bbox(s.crowd),
                "keypoints": [0] * 51,
                "num_keypoints": 0,
            }
        )
    return annotations


def render(seed, index, size):
    """The Scene of sample (seed, index): 1..MAX_PEOPLE people, a crowd blob in about CROWD_FRACTION of them."""
    crowd = bool(np.random.default_rng([seed, index, 1]).random() < CROWD_FRACTION)
    return scene.render_scene(seed, index, size, max_people=MAX_PEOPLE, crowd=crowd)


def render_and_write(out_dir, split, seed, index, size):
    """Render sample (seed, index), write its JPEG; returns (image entry, [annotation dicts]) for `finish`."""
    s = render(seed, index, size)
    iid = image_id(index)
    name = file_name(index)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise OSError(f"could not encode {name}")
    with open(os.path.join(out_dir, IMAGE_DIRS[split], name), "wb") as f:
        f.write(buf.tobytes())
    annotations = annotate(s, iid)
    for k, a in enumerate(annotations):
        a["id"] = iid * 1000 + k
    h, w = s.image.shape[:2]
    return {"id": iid, "file_name": name, "height": int(h), "width": int(w)}, annotations


def finish(out_dir, records_by_split):
    """Write each split's annotation JSON once all its images are on disk (records in index order)."""
    for split, records in records_by_split.items():
        data = {
            "info": {
                "description": "jhuman synthetic people in the COCO 2017 person keypoints format",
                "version": "1.0",
                "year": 2017,
            },
            "licenses": [],
            "images": [image for image, _ in records],
            "annotations": [a for _, annotations in records for a in annotations],
            "categories": CATEGORIES,
        }
        with open(os.path.join(out_dir, ANNOTATION_FILES[split]), "w") as f:
            json.dump(data, f, separators=(",", ":"))
