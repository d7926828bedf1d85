"""LIP (Look into Person, Gong et al. CVPR 2017) human parsing data: layouts, reader, TFDS builder, streams.

Reference protocol (LIP_SSL, as released; see the README's "Data layouts"):
* training: random scale from {0.6, 0.8, 1.0, 1.2, 1.4} (image bilinear, label nearest), pad bottom/right to
  >= crop with the mean pixel (label 255), random crop x crop (321), horizontal flip p=0.5 swapping
  left/right parts (14<->15, 16<->17, 18<->19). Images are RGB float32 in 0..255, NOT mean-subtracted (the
  model normalises; the Caffe mean is only the padding value so padding is zero after normalisation).
* evaluation: single scale, the full image padded bottom/right to pad_size x pad_size (640) with the mean,
  label with 255; logits upsampled to pad_size then score only label != 255, which equals scoring at the
  original size.

Two sources share one example order, so resuming works the same with either: `source='folders'` reads the
official (or re-laid-out) folders directly; `source='tfds'` reads the `Lip` TFDS builder's ArrayRecord
files by random access (`as_data_source`), built once from the same folders (manual_dir) in sorted-id order.
What is LIP's own is here; the sources, the builder's skeleton and the streams are input_pipeline.reader's.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import augment, reader
from input_pipeline.pipeline import Feature
from jhuman.classes import CAFFE_MEAN_RGB, IGNORE_LABEL, LIP_FLIP_LUT

log = logging.getLogger(__name__)

DEFAULT_SCALES = (0.6, 0.8, 1.0, 1.2, 1.4)


# ----------------------------------------------------------------------------------------------- layouts
@dataclasses.dataclass(frozen=True)
class _SplitPaths:
    images: Path  # folder of <ID>.jpg
    labels: Path | None  # folder of <ID>.png (None: no labels, the test split)
    id_files: tuple  # candidate <split>_id.txt paths; the first that exists is used


def _top(root, name):
    """An official top folder, or its doubled copy (`name/name`) that some unzip tools make."""
    doubled = root / name / name
    return doubled if doubled.is_dir() else root / name


def _official(root):
    img, ann, test = (
        _top(root, n) for n in ("TrainVal_images", "TrainVal_parsing_annotations", "Testing_images")
    )
    splits = {
        s: _SplitPaths(
            img / f"{s}_images", ann / f"{s}_segmentations", (img / f"{s}_id.txt", ann / f"{s}_id.txt")
        )
        for s in ("train", "val")
    }
    splits["test"] = _SplitPaths(
        test / "testing_images", None, (test / "test_id.txt", test / "testing_images" / "test_id.txt")
    )
    return splits


def _relayout(base):
    splits = {
        s: _SplitPaths(base / f"{s}_images", base / f"{s}_segmentations", (base / f"{s}_id.txt",))
        for s in ("train", "val")
    }
    splits["test"] = _SplitPaths(base / "test_images", None, (base / "test_id.txt",))
    return splits


def _present(paths):
    return (
        paths.images.is_dir()
        or any(p.is_file() for p in paths.id_files)
        or (paths.labels is not None and paths.labels.is_dir())
    )


_LOOKED_FOR = (
    "TrainVal_images/{train_images,val_images,train_id.txt,val_id.txt} + "
    "TrainVal_parsing_annotations/{train_segmentations,val_segmentations} (official zips, "
    "optionally doubled: TrainVal_images/TrainVal_images/...), Testing_images/testing_images + "
    "test_id.txt, or LIP/{train_images,val_images,train_segmentations,val_segmentations,"
    "train_id.txt,val_id.txt} (root may be the LIP folder itself)"
)


def _layout_paths(root):
    """(name, {split: _SplitPaths}) of the layout under root; FileNotFoundError if none is recognised."""
    if any(
        (root / n).is_dir() for n in ("TrainVal_images", "TrainVal_parsing_annotations", "Testing_images")
    ):
        return "official", _official(root)
    for base in (root / "LIP", root):
        splits = _relayout(base)
        if any(_present(p) for p in splits.values()):
            return f"re-layout at {base}", splits
    raise FileNotFoundError(f"no LIP data found under {root}: looked for {_LOOKED_FOR}")


def _split_entries(root, split, name, paths):
    id_file = next((p for p in paths.id_files if p.is_file()), None)
    where = f"LIP {split} split under {root} ({name} layout)"
    if id_file is None:
        raise FileNotFoundError(
            f"{where}: missing {paths.id_files[0]} (the list of {split} image IDs, one a line)"
        )
    if not paths.images.is_dir():
        raise FileNotFoundError(f"{where}: missing folder {paths.images} (expected <ID>.jpg images)")
    if paths.labels is not None and not paths.labels.is_dir():
        raise FileNotFoundError(
            f"{where}: missing folder {paths.labels} (expected <ID>.png label maps, "
            "from TrainVal_parsing_annotations.zip)"
        )
    ids = sorted({line.strip() for line in id_file.read_text().splitlines() if line.strip()})
    return [
        (i, str(paths.images / f"{i}.jpg"), None if paths.labels is None else str(paths.labels / f"{i}.png"))
        for i in ids
    ]


def find_layout(root):
    """The LIP splits under `root`: {'train'|'val'|'test': [(id, image_path, label_path or None), ...]}.

    Accepts the official zips' layout, its doubled-folder variant and the `LIP/` re-layout (root = the LIP
    folder or its parent). Only splits that are present are returned, each sorted by id; a split that is
    partly present (say images without their labels) raises FileNotFoundError naming the missing path.
    Individual missing/corrupt files are not checked here: loaders skip and count them.
    """
    root = Path(root).expanduser()
    name, splits = _layout_paths(root)
    found = {s: _split_entries(root, s, name, p) for s, p in splits.items() if _present(p)}
    if not found:
        raise FileNotFoundError(f"no LIP split found under {root} ({name} layout): looked for {_LOOKED_FOR}")
    return found


# ----------------------------------------------------------------------------------------------- decoding
def decode_label(data, path):
    """PNG bytes -> uint8 (H, W) class map: a single-channel 8-bit PNG, else CorruptExample naming the mode
    found (see reader.decode_label)."""
    return reader.decode_label(data, path)


def _read_files(entry, stats=None):
    """(id, image_path, label_path or None) -> (id, image file bytes, image uint8 (H, W, 3), label or None)."""
    example_id, image_path, label_path = entry
    if label_path is None:
        data = reader.read_bytes(image_path, "image")
        return example_id, data, reader.decode_image(data, image_path, stats), None
    return (example_id, *reader.read_pair(image_path, label_path, stats))


def read_example(entry, stats=None):
    """(id, image_path, label_path or None) -> (id, image uint8 (H, W, 3), label uint8 (H, W) or None).

    Raises CorruptExample (see input_pipeline.reader's file checks) for a missing half of the pair, an empty,
    truncated or undecodable file, a label map that is not single-channel 8-bit or whose size differs from the
    image's. Images in another mode (16-bit, grayscale, palette, RGBA) are converted to 8-bit RGB and counted
    in stats.converted.
    """
    example_id, _, image, label = _read_files(entry, stats)
    return example_id, image, label


# ----------------------------------------------------------------------------------------------- flip
def flip(image, label):
    """Horizontal flip with the LIP left/right swap (14<->15, 16<->17, 18<->19); numpy arrays or tf tensors.

    image (H, W, C) or (B, H, W, C): columns reversed; label (H, W) or (B, H, W): columns reversed and values
    mapped through LIP_FLIP_LUT (255 stays 255). Either may be None. Returns (image, label), dtypes kept.
    """
    if tf.is_tensor(image) or tf.is_tensor(label):
        if image is not None:
            image = tf.reverse(image, axis=[-2])
        if label is not None:
            flipped = tf.gather(tf.constant(LIP_FLIP_LUT), tf.cast(tf.reverse(label, axis=[-1]), tf.int32))
            label = tf.cast(flipped, label.dtype)
        return image, label
    if image is not None:
        image = np.asarray(image)[..., ::-1, :]
    if label is not None:
        label = np.asarray(label)
        label = LIP_FLIP_LUT[label[..., ::-1]].astype(label.dtype, copy=False)
    return image, label


# ----------------------------------------------------------------------------------------------- examples
_MEAN = np.asarray(CAFFE_MEAN_RGB, np.float32)  # (3,) RGB padding value


def train_example(image, label, rng, *, crop_size=321, scales=DEFAULT_SCALES):
    """One training example, the LIP_SSL protocol: scale -> pad (mean / 255) -> crop -> flip p=0.5.

    image uint8 (H, W, 3), label uint8 (H, W) -> {'image': float32 (crop, crop, 3) in 0..255,
    'label': int32 (crop, crop)}. Cropping before padding gives the same pixels as the reverse and is cheaper.
    """
    image, label = augment.random_scale(image, label, scales, rng)
    image, label = augment.random_crop(image, label, crop_size, crop_size, rng)
    image, label = augment.pad_to(image.astype(np.float32), label, crop_size, crop_size, _MEAN, IGNORE_LABEL)
    image, label, _ = augment.random_hflip(image, label, LIP_FLIP_LUT, rng)
    return {"image": image, "label": label.astype(np.int32)}


def eval_example(example_id, image, label, *, pad_size=640, stats=None, name=""):
    """One evaluation example, full image padded bottom/right to pad_size x pad_size (mean / 255).

    An image larger than pad_size is downscaled to fit (image bilinear, label nearest) and counted in
    `stats.downscaled` (never happens on LIP at 640: its images are at most 640 a side); then height/width
    are the downscaled size and the score is on the downscaled label. label None (test split) -> all 255.
    Returns {'image': float32 (S, S, 3), 'label': int32 (S, S), 'height', 'width': int32 size of the valid
    top-left region, 'id': str}.
    """
    h, w = image.shape[:2]
    if label is None:
        label = np.full((h, w), IGNORE_LABEL, np.uint8)
    if max(h, w) > pad_size:
        factor = pad_size / max(h, w)
        image, label = augment.resize(
            image, label, min(pad_size, max(1, round(h * factor))), min(pad_size, max(1, round(w * factor)))
        )
        if stats is not None:
            stats.record_downscale(name)
        h, w = image.shape[:2]
    image, label = augment.pad_to(image.astype(np.float32), label, pad_size, pad_size, _MEAN, IGNORE_LABEL)
    return {
        "image": image,
        "label": label.astype(np.int32),
        "height": np.int32(h),
        "width": np.int32(w),
        "id": example_id,
    }


def _train_spec(crop):
    return {
        "image": Feature((crop, crop, 3), np.float32),
        "label": Feature((crop, crop), np.int32, IGNORE_LABEL),
    }


def _eval_spec(size):
    return {
        "image": Feature((size, size, 3), np.float32),
        "label": Feature((size, size), np.int32, IGNORE_LABEL),
        "height": Feature((), np.int32),
        "width": Feature((), np.int32),
        "id": Feature((), str),
    }


# ----------------------------------------------------------------------------------------------- TFDS
class Lip(reader.FolderBuilder):
    """LIP human parsing (train 30,462 / validation 10,000) from the official zips (manual download).

    Examples are stored in sorted-id order so that `as_data_source(split)[i]` is the i-th example of the folder
    reader; images keep their original JPEG bytes. Corrupt files are skipped, logged and counted in `self.stats`
    during generation (nothing is raised for them).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download from the LIP site (https://sysu-hcp.net/lip/, "Single Person") the official zips
  TrainVal_images.zip and TrainVal_parsing_annotations.zip (Testing_images.zip is not used: its labels are
  withheld) and unzip them into manual_dir. Accepted layouts under manual_dir:
    TrainVal_images/{train_images,val_images}/<ID>.jpg, TrainVal_images/{train_id.txt,val_id.txt},
    TrainVal_parsing_annotations/{train_segmentations,val_segmentations}/<ID>.png   (official)
    TrainVal_images/TrainVal_images/..., TrainVal_parsing_annotations/TrainVal_parsing_annotations/...
                                                                      (doubled folders of some unzip tools)
    LIP/{train_images,val_images,train_segmentations,val_segmentations,train_id.txt,val_id.txt}
                                                                      (re-layout; manual_dir may be LIP/)
  """
    DESCRIPTION = "Look into Person: single-person human parsing, 20 classes (0 background)."
    HOMEPAGE = "https://sysu-hcp.net/lip/"
    CITATION = (
        "@inproceedings{gong2017look, title={Look into Person: Self-supervised Structure-sensitive "
        "Learning and a New Benchmark for Human Parsing}, author={Gong, Ke and Liang, Xiaodan and "
        "Zhang, Dongyu and Shen, Xiaohui and Lin, Liang}, booktitle={CVPR}, year={2017}}"
    )

    def features(self):
        return tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="jpeg"),
                "label": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png"),
                "id": tfds.features.Text(),
            }
        )

    def split_examples(self, root):
        return find_layout(root)

    def encode(self, entry):
        example_id, data, _, label = _read_files(entry, self.stats)
        return {"image": data.tobytes(), "label": label[..., None], "id": example_id}


# ----------------------------------------------------------------------------------------------- streams
def _entries(root, split, stats=None):
    """The sorted entries of `split` ('val' or 'validation', 'train', 'test'); LIP drops none (stats unused:
    a listed id whose image or label is missing is skipped and counted when it is read)."""
    del stats
    split = "val" if split == "validation" else split
    layout = find_layout(root)
    if split not in layout:
        raise FileNotFoundError(
            f"no LIP {split!r} split under {root} (found {sorted(layout)}): looked for {_LOOKED_FOR}"
        )
    return layout[split]


def _read_record(record, name, stats=None):
    """A stored Lip record (the image as its original file bytes) -> (id, image, label), as read_example."""
    image = reader.decode_image(record["image"], name, stats)
    return record["id"].decode("utf-8"), image, record["label"][..., 0]


READER = reader.Reader(
    name="LIP",
    list_examples=_entries,
    read=read_example,
    example_name=lambda entry: entry[1],  # the image file
    builder=Lip,
    read_record=_read_record,
)
prepare_tfds = READER.prepare_tfds
num_examples = READER.num_examples


def train_stream(root, *, batch_size, crop_size=321, scales=DEFAULT_SCALES, **stream_args):
    """Infinite, resumable training batches of this host (batch_size per host), the LIP_SSL protocol.

    Yields {'image': float32 (B, crop, crop, 3) RGB 0..255, 'label': int32 (B, crop, crop)}. stream_args: seed,
    start_index (examples this host already consumed: step * batch_size), process_index, process_count, source
    ('folders' | 'tfds'), tfds_data_dir, stats (see reader.Reader.train_stream). Corrupt examples are skipped
    and counted in `stats` (a pipeline.Stats).
    """
    scales = tuple(scales)

    def example(raw, rng, stats, name):
        _, image, label = raw
        return train_example(image, label, rng, crop_size=crop_size, scales=scales)

    return READER.train_stream(root, example, _train_spec(crop_size), batch_size=batch_size, **stream_args)


def eval_stream(root, *, batch_size, pad_size=640, **stream_args):
    """Finite evaluation batches of this host's shard (examples[p::P] of the sorted split, first `limit`).

    Yields {'image': float32 (B, S, S, 3), 'label': int32 (B, S, S), 'mask': bool (B,), 'height', 'width':
    int32 (B,), 'id': numpy str (B,)}. `id` is host-only (pop it before sending a batch to devices); padding
    and corrupt examples have mask False (and id ''). Every host yields len(stream) batches. stream_args: split
    ('val'), process_index, process_count, source, tfds_data_dir, stats, limit (see reader.Reader.eval_stream).
    """

    def example(raw, stats, name):
        example_id, image, label = raw
        return eval_example(example_id, image, label, pad_size=pad_size, stats=stats, name=name)

    return READER.eval_stream(root, example, _eval_spec(pad_size), batch_size=batch_size, **stream_args)
