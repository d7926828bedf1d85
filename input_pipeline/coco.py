"""COCO person keypoints (PersonLab, Papandreou et al. ECCV 2018): layout, reader, TFDS builder, streams.

Layout (the official zips unpacked under root):
  root/annotations/person_keypoints_{train,val}2017.json      (annotations_trainval2017.zip)
  root/{train,val}2017/<12-digit id>.jpg                      (train2017.zip, val2017.zip)
Annotations are parsed with pycocotools (category 1, 'person'); masks go through pycocotools.mask, whatever the
form (polygons, uncompressed RLE, compressed RLE). Annotations with zero area (area <= 0, or polygons all with
fewer than 3 points) are skipped and counted (`zero_area`). Training uses the images with at least one
remaining annotation (the others are dropped and counted, `unannotated_images`); evaluation (split 'val') uses
every image, as COCOeval does.

Each example is COMPACT: PersonLab's dense targets (heatmaps, short/mid/long offsets) are computed on device
from it (jhuman.ops.personlab.targets). In crop pixels (x = column, pixel-index coordinates: pixel (c, r) is at
x = c, y = r, as COCO keypoints are):
  'image'        float32 (S, S, 3) RGB 0..255 (S = crop_size, 401), padded with the Caffe mean (CAFFE_MEAN_RGB)
  'keypoints'    float32 (P, 17, 3) [x, y, v], P = max_persons (30), v in {0, 1, 2}; unlabelled and padded = 0
  'instance_ids' int32 (S, S): 0 background, j + 1 person j (= keypoints[j]: the persons with >= 1 labelled
                 keypoint, in annotation order, the first P of them), -1 where two or more person
                 annotations overlap (with or without keypoints, beyond P; crowd regions do not count: they
                 are 'ignore', so a person pixel inside one keeps its id, which only the decoder's oracle sees)
  'segmentation' uint8 (S, S): union of all non-crowd person masks (persons without keypoints included)
  'ignore'       uint8 (S, S): 1 on crowd regions, persons without labelled keypoints and persons beyond P
                 (masks of the keypoint and offset losses; they still count for segmentation)
  'num_persons'  int32 (): persons in `keypoints` (<= P; persons beyond P are dropped, `dropped_persons`)
Training (PersonLab: 401 crops, scale, +-25 degree rotation, flip with swap): ONE affine warp per example
(cv2.warpAffine; image bilinear with a mean border, label maps nearest) of random scale (`scale_range` times
the scale that fits the image in the crop), rotation, translation and horizontal flip (x -> S - 1 - x with the
COCO left/right keypoint swap); keypoints leaving the crop become unlabelled (0, 0, 0).
Evaluation: the image scaled so its longer side is S (the same warp with scale only, so x_orig = x / scale
exactly), padded bottom/right to S x S with the mean; plus 'image_id' int64, 'scale' float32 (crop pixels per
original pixel), 'height' / 'width' int32 of the original image and 'mask' bool (False for padding).
Counters go to the `stats` given (a pipeline.Stats; a `CocoStats` also reports them in as_dict()).

Two sources share one example order (sorted image id): `source='folders'` reads the official layout;
`source='tfds'` reads the `CocoPersonKeypoints` builder's ArrayRecord files by random access
(`as_data_source`), built once from the same folders (manual_dir).
"""

import dataclasses
import functools
import math
import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tensorflow_datasets as tfds
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from input_pipeline import reader
from input_pipeline.pipeline import CorruptExample, Feature, Stats
from jhuman.classes import CAFFE_MEAN_RGB, COCO_FLIP_PERMUTATION

NUM_KEYPOINTS = 17
PERSON = 1  # COCO category id
SPLITS = ("train", "val")
_MEAN = np.asarray(CAFFE_MEAN_RGB, np.float32)  # (3,) RGB border / padding value


# ----------------------------------------------------------------------------------------------- counters
class CocoStats(Stats):
    """pipeline.Stats plus the COCO counters (also set, as plain attributes, on a plain Stats when given one):
    zero_area: annotations skipped for zero area (per stream creation / TFDS generation);
    unannotated_images: training images dropped for having no annotation (idem);
    dropped_persons: persons with keypoints beyond max_persons, per decoded example (like `skipped`, counts
      every decode, and tf.data decodes a few batches ahead)."""

    COUNTERS = ("zero_area", "unannotated_images", "dropped_persons")

    def __init__(self):
        super().__init__()
        for name in self.COUNTERS:
            setattr(self, name, 0)

    def as_dict(self):
        out = super().as_dict()
        out.update({name: getattr(self, name) for name in self.COUNTERS})
        return out


_COUNT_LOCK = threading.Lock()


def _count(stats, name, n):
    if stats is not None and n:
        with _COUNT_LOCK:
            setattr(stats, name, getattr(stats, name, 0) + int(n))


# ----------------------------------------------------------------------------------------------- layout
def _split(split):
    split = {"validation": "val"}.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"COCO split must be 'train' or 'val', got {split!r}")
    return split


def annotation_file(root, split):
    """Path of the ground-truth JSON `root/annotations/person_keypoints_{split}2017.json` (what COCOeval loads).
    FileNotFoundError naming the path if it is missing."""
    path = Path(root).expanduser() / "annotations" / f"person_keypoints_{_split(split)}2017.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"COCO {split} annotations not found: missing {path} (from "
            "annotations_trainval2017.zip, unpacked under root)"
        )
    return path


def image_dir(root, split):
    """`root/{split}2017` (FileNotFoundError naming it if missing)."""
    path = Path(root).expanduser() / f"{_split(split)}2017"
    if not path.is_dir():
        raise FileNotFoundError(
            f"COCO {split} images not found: missing folder {path} (from {path.name}.zip)"
        )
    return path


# ----------------------------------------------------------------------------------------------- parsing
@dataclasses.dataclass(frozen=True)
class Person:
    """One person annotation: keypoints (17, 3) float32 [x, y, v] (zeros where v = 0), the COCO segmentation
    (polygons, uncompressed RLE dict or compressed RLE dict), iscrowd, and the JSON's area and id."""

    keypoints: np.ndarray
    segmentation: Any
    iscrowd: bool
    area: float
    id: int


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    image_id: int
    path: str
    height: int
    width: int
    persons: tuple  # of Person, in annotation order


def _valid_polygons(segmentation):
    return [p for p in segmentation if len(p) >= 6]


def _zero_area(ann):
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list) and not _valid_polygons(segmentation):
        return True
    return ann.get("area", 1.0) <= 0


def _keypoints(ann):
    kp = np.asarray(ann.get("keypoints") or np.zeros(3 * NUM_KEYPOINTS), np.float32).reshape(NUM_KEYPOINTS, 3)
    kp[kp[:, 2] <= 0] = 0
    kp.flags.writeable = False  # shared by the cached records
    return kp


def mask_rle(segmentation, height, width):
    """A COCO segmentation (polygons, uncompressed or compressed RLE) -> compressed RLE {'size', 'counts': bytes}
    (what pycocotools' annToRLE does, with polygons of fewer than 3 points dropped first: pycocotools would
    read a 4-number polygon as a box)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(_valid_polygons(segmentation), height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {
        "size": list(segmentation["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


@functools.lru_cache(maxsize=4)
def _parse(path, mtime_ns, size, images):
    """(records sorted by image id, number of zero-area annotations skipped); cached per file version."""
    coco = COCO(path)  # prints its progress (not silenced: redirecting stdout is process-wide)
    records, zero = [], 0
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        persons = []
        for ann in coco.imgToAnns.get(image_id, ()):
            if ann.get("category_id", PERSON) != PERSON:
                continue
            if _zero_area(ann):
                zero += 1
                continue
            persons.append(
                Person(
                    _keypoints(ann),
                    ann["segmentation"],
                    bool(ann.get("iscrowd", 0)),
                    float(ann.get("area", 0.0)),
                    int(ann.get("id", -1)),
                )
            )
        records.append(
            ImageRecord(
                int(image_id),
                os.path.join(images, info["file_name"]),
                int(info["height"]),
                int(info["width"]),
                tuple(persons),
            )
        )
    return tuple(records), zero


def load_annotations(root, split, stats=None):
    """The split's images as ImageRecords sorted by image id: 'train' only those with at least one person
    annotation left after skipping zero-area ones (the rest counted in stats.unannotated_images), 'val' all.
    Zero-area annotations are counted in stats.zero_area. Parsing is cached per JSON file version."""
    split = _split(split)
    ann_file, images = annotation_file(root, split), image_dir(root, split)
    st = ann_file.stat()
    records, zero = _parse(str(ann_file), st.st_mtime_ns, st.st_size, str(images))
    _count(stats, "zero_area", zero)
    if split == "train":
        kept = tuple(r for r in records if r.persons)
        _count(stats, "unannotated_images", len(records) - len(kept))
        records = kept
    return records


# ----------------------------------------------------------------------------------------------- label maps
def _slots(persons, max_persons):
    """Indices (into persons) of those that get a keypoint slot: non-crowd with >= 1 labelled keypoint, the first
    max_persons in annotation order; and how many further ones were dropped."""
    labelled = [i for i, (kp, _, crowd) in enumerate(persons) if not crowd and (kp[:, 2] > 0).any()]
    return labelled[:max_persons], max(0, len(labelled) - max_persons)


def _label_dtype(max_persons):
    if not 1 <= max_persons < 65535:
        raise ValueError(f"max_persons must be in [1, 65535), got {max_persons}")
    return np.uint8 if max_persons < 255 else np.uint16


def _label_maps_t(persons, height, width, max_persons, path=""):
    """label_maps with the label maps TRANSPOSED, (W, H, 3) C-contiguous: pycocotools decodes masks column-major,
    so this is the order in which the per-person work is cheap; warp it with `_swap_xy(matrix)`."""
    dtype = _label_dtype(max_persons)
    slots, dropped = _slots(persons, max_persons)
    slot_of = {i: j for j, i in enumerate(slots)}
    keypoints = np.zeros((max_persons, NUM_KEYPOINTS, 3), np.float32)
    code = np.zeros((width, height), dtype)
    seg, ign, covered, multi = (np.zeros((width, height), bool) for _ in range(4))
    for i, (kp, rle, crowd) in enumerate(persons):
        if tuple(rle["size"]) != (height, width):
            raise CorruptExample(
                path,
                f"mask size {tuple(rle['size'])} differs from the image ({height}, {width})",
                "size mismatch",
            )
        if i in slot_of:
            keypoints[slot_of[i]] = kp
        x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))  # the mask's box: all work stays inside it
        box = (slice(x, x + w), slice(y, y + h))
        mask = mask_utils.decode(rle).T[box].view(bool)  # (w, h) of the transposed mask
        if not crowd:  # a crowd region is not a person: its pixels are ignored, they create no overlap
            np.logical_or(multi[box], covered[box] & mask, out=multi[box])
            np.logical_or(covered[box], mask, out=covered[box])
        if i in slot_of:
            np.copyto(code[box], slot_of[i] + 1, where=mask)
        else:
            np.logical_or(ign[box], mask, out=ign[box])
        if not crowd:
            np.logical_or(seg[box], mask, out=seg[box])
    np.copyto(code, np.iinfo(dtype).max, where=multi)
    labels = cv2.merge([code, seg.astype(dtype), ign.astype(dtype)])  # (W, H, 3)
    return keypoints, labels, len(slots), dropped


def label_maps(persons, height, width, max_persons, path=""):
    """Rasterises the annotations at the original resolution.

    persons: [(keypoints (17, 3), compressed RLE, iscrowd), ...] in annotation order.
    Returns (keypoints (P, 17, 3) float32 of the slotted persons, zero-padded; labels (H, W, 3) uint8 (uint16
    for P >= 255) with channels [instance code (0, j + 1, or the dtype's max for overlaps), segmentation,
    ignore]; number of slotted persons; number dropped beyond P). One array so that one warp moves them all.
    Raises CorruptExample if a mask's size differs from (height, width).
    """
    keypoints, labels_t, num, dropped = _label_maps_t(persons, height, width, max_persons, path)
    return keypoints, labels_t.transpose(1, 0, 2), num, dropped


def _swap_xy(matrix):
    """The (2, 3) affine map of the transposed source image: its column is the original row and vice versa."""
    return matrix[:, [1, 0, 2]]


def _outputs(labels):
    """Warped (S, S, 3) label maps -> {'instance_ids' int32 (-1 for overlaps), 'segmentation', 'ignore' uint8}."""
    code, seg, ign = cv2.split(labels)
    ids = code.astype(np.int32)
    np.copyto(ids, -1, where=code == np.iinfo(code.dtype).max)
    return {
        "instance_ids": ids,
        "segmentation": seg.astype(np.uint8, copy=False),
        "ignore": ign.astype(np.uint8, copy=False),
    }


def _transform_keypoints(keypoints, matrix):
    """Applies a (2, 3) affine map to the labelled keypoints (..., 17, 3); unlabelled stay (0, 0, 0)."""
    labelled = keypoints[..., 2] > 0
    xy = keypoints[..., :2].astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    out = np.concatenate([xy, keypoints[..., 2:]], -1).astype(np.float32)
    out[~labelled] = 0
    return out


def flip_keypoints(keypoints, width):
    """Horizontal flip of COCO keypoints (..., 17, 3) [x, y, v] in an image `width` pixels wide: x -> width - 1
    - x (pixel-index coordinates) for labelled points, then left/right swapped (COCO_FLIP_PERMUTATION).
    Unlabelled points stay (0, 0, 0). numpy in, numpy out (dtype kept)."""
    keypoints = np.asarray(keypoints)
    out = keypoints.copy()
    labelled = out[..., 2] > 0
    out[..., 0] = np.where(labelled, width - 1 - out[..., 0], 0)
    return out[..., COCO_FLIP_PERMUTATION, :]


# ----------------------------------------------------------------------------------------------- examples
def train_affine(height, width, rng, *, crop_size=401, scale_range=(0.7, 1.3), max_rotation=25.0):
    """The random training warp of an (height, width) image into the crop: ((2, 3) float64 matrix mapping
    original pixel-index coordinates to crop ones, without the flip; flipped bool).

    scale = U(scale_range) * crop / max(h, w); rotation U(-max_rotation, max_rotation) degrees about the image
    centre; the image centre lands at the crop centre plus a shift uniform in +-|crop - extent| / 2 per axis
    (extent = the rotated, scaled image's bounding box), so a larger image shows any part of itself and a smaller
    one sits anywhere inside the crop. Five rng draws, always."""
    s = rng.uniform(*scale_range) * crop_size / max(height, width)
    angle = math.radians(rng.uniform(-max_rotation, max_rotation))
    shift = rng.uniform(-1.0, 1.0, 2)
    flipped = bool(rng.random() < 0.5)
    cos, sin = math.cos(angle) * s, math.sin(angle) * s
    extent = np.array([abs(cos) * width + abs(sin) * height, abs(sin) * width + abs(cos) * height])
    target = (crop_size - 1) / 2 + shift * np.abs(crop_size - extent) / 2
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    linear = np.array([[cos, -sin], [sin, cos]])
    return np.concatenate([linear, (target - linear @ centre)[:, None]], 1), flipped


def _flip_matrix(matrix, crop_size):
    """Composes x -> crop - 1 - x after `matrix`."""
    out = matrix.copy()
    out[0] = -out[0]
    out[0, 2] += crop_size - 1
    return out


def _mean_border(channels):
    return tuple(float(v) for v in _MEAN[:channels]) + (0.0,) * (4 - channels)


def train_example(
    image,
    persons,
    rng,
    *,
    crop_size=401,
    max_persons=30,
    scale_range=(0.7, 1.3),
    max_rotation=25.0,
    stats=None,
    path="",
):
    """One training example (see the module docstring): image uint8 (H, W, 3) RGB, persons [(keypoints (17, 3),
    compressed RLE, iscrowd), ...] -> {'image', 'keypoints', 'instance_ids', 'segmentation', 'ignore',
    'num_persons'} in crop coordinates."""
    h, w = image.shape[:2]
    keypoints, labels_t, num, dropped = _label_maps_t(persons, h, w, max_persons, path)
    _count(stats, "dropped_persons", dropped)
    matrix, flipped = train_affine(
        h, w, rng, crop_size=crop_size, scale_range=scale_range, max_rotation=max_rotation
    )
    warp = _flip_matrix(matrix, crop_size) if flipped else matrix
    size = (crop_size, crop_size)
    out_image = cv2.warpAffine(
        image.astype(np.float32),
        warp,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=_mean_border(3),
    )
    out_labels = cv2.warpAffine(
        labels_t, _swap_xy(warp), size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    keypoints = _transform_keypoints(keypoints, matrix)
    if flipped:
        keypoints = flip_keypoints(keypoints, crop_size)
    inside = (
        (keypoints[..., 0] >= 0)
        & (keypoints[..., 0] <= crop_size - 1)
        & (keypoints[..., 1] >= 0)
        & (keypoints[..., 1] <= crop_size - 1)
    )
    keypoints[~inside] = 0
    return {"image": out_image, "keypoints": keypoints, **_outputs(out_labels), "num_persons": np.int32(num)}


def eval_example(image_id, image, persons, *, crop_size=401, max_persons=30, stats=None, path=""):
    """One evaluation example: the image scaled so its longer side is crop_size (x_crop = scale * x_orig in
    pixel-index coordinates, exactly: a scale-only warp, not cv2.resize's half-pixel convention), padded
    bottom/right with the mean; label maps likewise (nearest, 0 in the padding); keypoints scaled (none dropped).
    Returns the training features plus 'image_id' int64, 'scale' float32, 'height', 'width' int32 (original)."""
    h, w = image.shape[:2]
    keypoints, labels_t, num, dropped = _label_maps_t(persons, h, w, max_persons, path)
    _count(stats, "dropped_persons", dropped)
    scale = crop_size / max(h, w)
    matrix = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    vh, vw = min(crop_size, round(h * scale)), min(crop_size, round(w * scale))  # valid region
    size = (crop_size, crop_size)
    out_image = cv2.warpAffine(
        image.astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    out_image[vh:] = _MEAN
    out_image[:, vw:] = _MEAN
    out_labels = cv2.warpAffine(
        labels_t, _swap_xy(matrix), size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
    )
    out_labels[vh:] = 0
    out_labels[:, vw:] = 0
    return {
        "image": out_image,
        "keypoints": _transform_keypoints(keypoints, matrix),
        **_outputs(out_labels),
        "num_persons": np.int32(num),
        "image_id": np.int64(image_id),
        "scale": np.float32(scale),
        "height": np.int32(h),
        "width": np.int32(w),
    }


def _train_spec(crop, max_persons):
    return {
        "image": Feature((crop, crop, 3), np.float32),
        "keypoints": Feature((max_persons, NUM_KEYPOINTS, 3), np.float32),
        "instance_ids": Feature((crop, crop), np.int32),
        "segmentation": Feature((crop, crop), np.uint8),
        "ignore": Feature((crop, crop), np.uint8),
        "num_persons": Feature((), np.int32),
    }


def _eval_spec(crop, max_persons):
    return {
        **_train_spec(crop, max_persons),
        "image_id": Feature((), np.int64),
        "scale": Feature((), np.float32, 1.0),
        "height": Feature((), np.int32),
        "width": Feature((), np.int32),
    }


# ----------------------------------------------------------------------------------------------- decoding
def _decode(data, path, height, width, stats=None):
    image = reader.decode_image(data, path, stats)
    if image.shape[:2] != (height, width):
        raise CorruptExample(
            path, f"image is {image.shape[:2]}, annotations say ({height}, {width})", "size mismatch"
        )
    return image


def read_example(record, stats=None):
    """ImageRecord -> (image_id, image uint8 (H, W, 3) RGB, [(keypoints, compressed RLE, iscrowd), ...]).
    Raises CorruptExample (see input_pipeline.reader's file checks) for a missing, empty, truncated or
    undecodable image or one whose size differs from the JSON; an image in another mode (16-bit, grayscale,
    palette, RGBA) is converted to 8-bit RGB and counted in stats.converted."""
    image = _decode(reader.read_bytes(record.path, "image"), record.path, record.height, record.width, stats)
    persons = [
        (p.keypoints, mask_rle(p.segmentation, record.height, record.width), p.iscrowd)
        for p in record.persons
    ]
    return record.image_id, image, persons


def _read_record(record, name, stats=None):
    """A stored CocoPersonKeypoints record (the image as its file bytes) -> (image_id, image, persons), as
    read_example."""
    h, w = int(record["height"]), int(record["width"])
    image = _decode(record["image"], name, h, w, stats)
    p = record["persons"]
    persons = [
        (np.asarray(kp, np.float32), {"size": [h, w], "counts": bytes(counts)}, bool(crowd))
        for kp, counts, crowd in zip(p["keypoints"], p["rle"], p["iscrowd"])
    ]
    return int(record["image_id"]), image, persons


# ----------------------------------------------------------------------------------------------- TFDS
class CocoPersonKeypoints(reader.FolderBuilder):
    """COCO 2017 person keypoints (train / validation) from the official zips (manual download), for PersonLab.

    Examples are stored in image-id order so that `as_data_source(split)[i]` is the i-th example of the folder
    reader: the train split holds the annotated images only, validation all of them. Images keep their original
    JPEG bytes; each person keeps its keypoints, its mask as a compressed RLE string (polygons and uncompressed
    RLE converted by pycocotools), iscrowd, area and annotation id. Zero-area annotations, unannotated training
    images and corrupt images are skipped and counted in `self.stats` during generation.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download from https://cocodataset.org/#download the 2017 zips train2017.zip, val2017.zip and
  annotations_trainval2017.zip, and unzip them into manual_dir:
    annotations/person_keypoints_train2017.json, annotations/person_keypoints_val2017.json,
    train2017/<12-digit id>.jpg, val2017/<12-digit id>.jpg
  """
    DESCRIPTION = "COCO 2017 person keypoints: 17 keypoints and instance masks per person, crowd regions."
    HOMEPAGE = "https://cocodataset.org/"
    CITATION = (
        "@inproceedings{lin2014microsoft, title={Microsoft COCO: Common Objects in Context}, "
        "author={Lin, Tsung-Yi and others}, booktitle={ECCV}, year={2014}}"
    )
    STATS = CocoStats

    def features(self):
        return tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="jpeg"),
                "image_id": tfds.features.Scalar(np.int64),
                "height": tfds.features.Scalar(np.int32),
                "width": tfds.features.Scalar(np.int32),
                "persons": tfds.features.Sequence(
                    {
                        "keypoints": tfds.features.Tensor(shape=(NUM_KEYPOINTS, 3), dtype=np.float32),
                        "rle": tfds.features.Text(),
                        "iscrowd": tfds.features.Scalar(np.bool_),
                        "area": tfds.features.Scalar(np.float32),
                        "id": tfds.features.Scalar(np.int64),
                    }
                ),
            }
        )

    def split_examples(self, root):
        present = [s for s in SPLITS if (root / "annotations" / f"person_keypoints_{s}2017.json").is_file()]
        if not present:
            annotation_file(root, "train")  # raises, naming the missing file
        return {s: load_annotations(root, s, self.stats) for s in present}

    def encode(self, record):
        data = reader.read_bytes(record.path, "image")
        _decode(data, record.path, record.height, record.width, self.stats)
        persons = record.persons
        rles = [mask_rle(p.segmentation, record.height, record.width) for p in persons]
        return {
            "image": data.tobytes(),
            "image_id": record.image_id,
            "height": record.height,
            "width": record.width,
            "persons": {
                "keypoints": np.array([p.keypoints for p in persons], np.float32).reshape(
                    -1, NUM_KEYPOINTS, 3
                ),
                "rle": [rle["counts"].decode("ascii") for rle in rles],
                "iscrowd": np.array([p.iscrowd for p in persons], np.bool_),
                "area": np.array([p.area for p in persons], np.float32),
                "id": np.array([p.id for p in persons], np.int64),
            },
        }


# ----------------------------------------------------------------------------------------------- streams
READER = reader.Reader(
    name="COCO",
    list_examples=load_annotations,
    read=read_example,
    example_name=lambda record: record.path,
    builder=CocoPersonKeypoints,
    read_record=_read_record,
)
prepare_tfds = READER.prepare_tfds
num_examples = READER.num_examples  # 'train': images with a (non-zero-area) person annotation; 'val': all


def train_stream(
    root,
    *,
    batch_size,
    crop_size=401,
    max_persons=30,
    scale_range=(0.7, 1.3),
    max_rotation=25.0,
    **stream_args,
):
    """Infinite, resumable PersonLab training batches of this host (batch_size per host); see the module
    docstring for the features, each with a leading (B,) axis. stream_args: seed, start_index (examples this host
    already consumed), process_index, process_count, source ('folders' | 'tfds'), tfds_data_dir, stats (see
    reader.Reader.train_stream). Corrupt examples are skipped and counted in `stats` (a CocoStats by default)."""
    scale_range = tuple(float(v) for v in scale_range)

    def example(raw, rng, stats, name):
        _, image, persons = raw
        return train_example(
            image,
            persons,
            rng,
            crop_size=crop_size,
            max_persons=max_persons,
            scale_range=scale_range,
            max_rotation=max_rotation,
            stats=stats,
            path=name,
        )

    spec = _train_spec(crop_size, max_persons)
    return READER.train_stream(root, example, spec, batch_size=batch_size, **stream_args)


def eval_stream(root, *, batch_size, crop_size=401, max_persons=30, **stream_args):
    """Finite evaluation batches of this host's shard (examples[p::P] of the split sorted by image id, the first
    `limit`): the training features plus 'image_id' int64, 'scale' float32, 'height', 'width' int32 and 'mask'
    bool (False for padding and corrupt images). Every host yields len(stream) batches. Predictions map back to
    the original image with x_orig = x / scale. stream_args: split ('val'), process_index, process_count, source,
    tfds_data_dir, stats, limit (see reader.Reader.eval_stream)."""

    def example(raw, stats, name):
        image_id, image, persons = raw
        return eval_example(
            image_id, image, persons, crop_size=crop_size, max_persons=max_persons, stats=stats, path=name
        )

    spec = _eval_spec(crop_size, max_persons)
    return READER.eval_stream(root, example, spec, batch_size=batch_size, **stream_args)
