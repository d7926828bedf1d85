"""The reader skeleton every dataset shares: two sources of one example list, a TFDS builder, the streams.

A dataset module (lip.py, coco.py, ...) supplies only what is its own:
* how the examples of a split are listed from its folders (sorted) and decoded into a raw example
  (`Reader.list_examples`, `Reader.read`; a file that cannot be used raises `CorruptExample`: the file checks
  below, `read_image` / `decode_label` / `read_pair`, give every dataset the same reasons);
* its TFDS builder (a `FolderBuilder`: the features, the examples of each split, one example's features) and how
  a stored record decodes into the same raw example (`Reader.read_record`);
* train_example(raw, rng, ...) / eval_example(raw, ...) and the feature spec of each, handed to
  `Reader.train_stream` / `Reader.eval_stream` by its own train_stream / eval_stream.
Everything else is here: the file checks, the choice of source ('folders' reads the folders directly; 'tfds'
reads the builder's ArrayRecord files by random access, built once from the same folders in the same order, so
resuming works the same with either), preparing the builder, counting skipped examples in a `Stats`, and the
resumable, host-sharded streams of `input_pipeline.pipeline` (start_index, eval padding with a mask; a split with
no usable example raises NoUsableExamples naming its folder).
"""

import abc
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import pipeline
from input_pipeline.pipeline import CorruptExample, Spec, Stats

SOURCES = ("folders", "tfds")


# ----------------------------------------------------------------------------------------------- file checks
# Every reader (LIP, COCO, and the matting / synthesis readers to come) reads its files through these, so a file
# that cannot be used is skipped and counted with the same reasons everywhere (raised as CorruptExample):
#   'missing file', 'empty file', 'truncated' (a JPEG without its end-of-image marker after its image data, a
#   PNG without IEND after its image data), 'undecodable', 'wrong mode' (an image whose samples are not 8/16-bit
#   integers; a label map that is not single-channel 8-bit), 'size mismatch' (a label of another size than its
#   image). Images in another usable mode are converted to 8-bit RGB and counted (`Stats.converted`):
#   16-bit -> 8-bit, grayscale -> RGB, palette PNG -> RGB, alpha channel dropped.
JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale + alpha", 6: "RGBA"}


def read_bytes(path, what="file") -> np.ndarray:
    """The file's bytes as uint8 (N,); CorruptExample if it is missing, unreadable or empty. `what` names the
    file's role in the reason ('label map for images/a.jpg')."""
    try:
        data = np.fromfile(path, np.uint8)
    except FileNotFoundError:
        raise CorruptExample(path, f"missing {what}", "missing file") from None
    except OSError as e:
        raise CorruptExample(path, f"unreadable {what}: {e.strerror or e}", "unreadable") from None
    if not data.size:
        raise CorruptExample(path, f"empty {what} (0 bytes)", "empty file")
    return data


def png_mode(data) -> tuple[int, int] | None:
    """(bit depth, colour type) of PNG bytes from their IHDR chunk; None for bytes that are not a PNG."""
    head = bytes(np.asarray(data[:26], np.uint8)) if not isinstance(data, bytes) else data[:26]
    if len(head) < 26 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def check_complete(data, path):
    """CorruptExample ('empty file' / 'truncated') for empty bytes, a JPEG without an end-of-image marker
    (FFD9) after its last scan (FFDA), or a PNG without IEND after its last IDAT chunk. (Markers cannot occur
    inside JPEG scan data, so this holds for baseline and progressive files, with or without thumbnails.)
    Other formats are left to the decoder."""
    raw = data if isinstance(data, bytes) else np.asarray(data, np.uint8).tobytes()
    if not raw:
        raise CorruptExample(path, "empty file (0 bytes)", "empty file")
    if raw.startswith(JPEG_SIGNATURE):
        last_scan, end = raw.rfind(b"\xff\xda"), raw.rfind(b"\xff\xd9")
        if last_scan < 0 or end < last_scan:
            raise CorruptExample(
                path, "truncated JPEG (no end-of-image marker after its image data)", "truncated"
            )
    elif raw.startswith(PNG_SIGNATURE):
        if raw.rfind(b"IEND") < max(raw.rfind(b"IDAT"), 8):
            raise CorruptExample(path, "truncated PNG (no IEND chunk after its image data)", "truncated")


def _imdecode(data, path, what):
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV asserts on some malformed headers
        decoded, detail = None, f" ({str(e).strip().splitlines()[-1]})"
    else:
        detail = ""
    if decoded is None:
        raise CorruptExample(path, f"cannot decode {what}{detail}", "undecodable")
    return decoded


def decode_image(data, path, stats=None) -> np.ndarray:
    """JPEG/PNG/... bytes -> RGB uint8 (H, W, 3) (EXIF orientation ignored, like label maps).

    Raises CorruptExample (see the file checks above) for empty, truncated or undecodable bytes and samples
    that are not 8/16-bit integers. Converts, and counts in `stats.converted` (see Stats.record_conversion):
    16-bit -> 8-bit (rounded v / 257), grayscale -> RGB, palette PNG -> RGB, alpha dropped (the colour channels
    are the picture). `path` names the example in errors and counts.
    """
    data = np.asarray(data, np.uint8) if not isinstance(data, bytes) else np.frombuffer(data, np.uint8)
    check_complete(data, path)
    image = _imdecode(data, path, "image")
    done = []
    mode = png_mode(data)
    if mode is not None and mode[1] == 3:
        done.append("palette PNG -> RGB")
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        done.append("16-bit -> 8-bit")
    elif image.dtype != np.uint8:
        raise CorruptExample(
            path, f"image samples are {image.dtype}; expected 8- or 16-bit integers", "wrong mode"
        )
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        done.append("grayscale -> RGB")
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        done.append("alpha channel dropped")
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise CorruptExample(path, f"image has {image.shape[2]} channels; expected 1, 3 or 4", "wrong mode")
    if done and stats is not None:
        stats.record_conversion(path, ", ".join(done))
    return image


def read_image(path, stats=None) -> np.ndarray:
    """decode_image of the file at path (CorruptExample if it is missing, empty, truncated, undecodable)."""
    return decode_image(read_bytes(path, "image"), path, stats)


def decode_label(data, path, what="label map") -> np.ndarray:
    """PNG (or other lossless) bytes of a single-channel 8-bit map (class indices, a matte) -> uint8 (H, W).

    Anything else is refused with CorruptExample(kind='wrong mode'), the reason naming the mode found: a colour,
    RGBA, grayscale + alpha or palette PNG (a palette PNG decodes to its colours, not its indices) or a 16-bit
    map; convert such files to single-channel 8-bit PNGs. Empty, truncated and undecodable files as
    decode_image."""
    data = np.asarray(data, np.uint8) if not isinstance(data, bytes) else np.frombuffer(data, np.uint8)
    check_complete(data, path)
    mode = png_mode(data)
    fix = f"expected a single-channel 8-bit {what}; convert it (e.g. to a grayscale 8-bit PNG)"
    if mode is not None and mode != (8, 0):
        depth, colour = mode
        found = f"{depth}-bit {PNG_COLOUR_TYPES.get(colour, f'colour type {colour}')} PNG"
        article = "an" if found.startswith("8") else "a"
        raise CorruptExample(path, f"{what} is {article} {found}; {fix}", "wrong mode")
    label = _imdecode(data, path, what)
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[..., 0]
    if label.ndim != 2 or label.dtype != np.uint8:
        found = f"{label.shape[2] if label.ndim == 3 else 1}-channel {label.dtype}"
        raise CorruptExample(path, f"{what} is {found}; {fix}", "wrong mode")
    return label


def check_same_size(image, label, label_path, what="label map"):
    """CorruptExample(label_path, kind='size mismatch') unless label (H, W) matches image (H, W, ...)."""
    if label.shape[:2] != image.shape[:2]:
        raise CorruptExample(
            label_path,
            f"{what} is {label.shape[1]}x{label.shape[0]} (WxH), its image {image.shape[1]}x{image.shape[0]}",
            "size mismatch",
        )


def read_pair(image_path, label_path, stats=None, what="label map"):
    """(image file bytes, image RGB uint8 (H, W, 3), label uint8 (H, W)) of an image and its label map.

    A missing half of the pair is named as such (the image without its label, or the label without its image);
    both are checked and decoded as above, and must have the same size."""
    image_there, label_there = os.path.isfile(image_path), os.path.isfile(label_path)
    if not label_there and image_there:
        raise CorruptExample(label_path, f"missing {what} of image {image_path}", "missing pair")
    if not image_there and label_there:
        raise CorruptExample(image_path, f"missing image of {what} {label_path}", "missing pair")
    data = read_bytes(image_path, "image")
    image = decode_image(data, image_path, stats)
    label = decode_label(read_bytes(label_path, what), label_path, what)
    check_same_size(image, label, label_path, what)
    return data, image, label


class FolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A TFDS builder made from a dataset's folders (manual_dir), storing every split in the folder reader's order.

    Shuffling is disabled, so `as_data_source(split)[i]` is the i-th stored example; examples that raise
    CorruptExample while being encoded are skipped, logged and counted in `self.stats` (nothing is raised).
    A subclass sets VERSION, RELEASE_NOTES, MANUAL_DOWNLOAD_INSTRUCTIONS, DESCRIPTION, HOMEPAGE, CITATION and,
    where they differ from the defaults, SPLITS, UNDECODED and STATS; and defines `features`,
    `split_examples` and `encode`.
    """

    DESCRIPTION = HOMEPAGE = CITATION = ""
    SPLITS = {"train": "train", "val": "validation"}  # folder split -> TFDS split
    UNDECODED = ("image",)  # features read back as the stored bytes: decoded exactly like the folder reader
    STATS = Stats  # the counters the dataset fills (streams make one of these when given none)

    def __init__(self, *, stats=None, **kwargs):
        self.stats = stats if stats is not None else self.STATS()
        super().__init__(**kwargs)

    @abc.abstractmethod
    def features(self) -> tfds.features.FeaturesDict:
        """The stored features of one example."""

    @abc.abstractmethod
    def split_examples(self, root: Path) -> dict:
        """{folder split: its sorted examples} of the folders at root (splits outside SPLITS are ignored)."""

    @abc.abstractmethod
    def encode(self, example) -> dict:
        """One example's stored features; raises CorruptExample for a file that cannot be used."""

    @classmethod
    def tfds_split(cls, split: str) -> str:
        """The TFDS split of a folder split (a TFDS split name is accepted as itself); ValueError otherwise."""
        if split in cls.SPLITS.values():
            return split
        if split not in cls.SPLITS:
            raise ValueError(
                f"the {cls.__name__} TFDS builder has splits {' / '.join(cls.SPLITS.values())}, not {split!r}"
            )
        return cls.SPLITS[split]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=self.features(),
            disable_shuffling=True,
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
        )

    def _split_generators(self, dl_manager):
        found = self.split_examples(Path(dl_manager.manual_dir))
        return {self.SPLITS[s]: self._generate_examples(found[s]) for s in self.SPLITS if s in found}

    def _generate_examples(self, examples):
        for key, example in enumerate(examples):  # integer keys in the folder order = stored order
            try:
                features = self.encode(example)
            except CorruptExample as e:
                self.stats.record_skip(e.path, e.reason, e.kind)
                continue
            yield key, features


@dataclasses.dataclass(frozen=True)
class Reader:
    """One dataset as the streams see it (see the module docstring).

    name: the dataset in messages ('LIP').
    list_examples(root, split, stats) -> the split's examples from the folders, sorted (counts what it drops
      in stats; raises FileNotFoundError naming what is missing).
    read(example, stats=None) -> raw example; may raise CorruptExample; counts conversions in stats.
    example_name(example) -> str: the example in skip counts and messages (its file).
    builder: its FolderBuilder class.
    read_record(record, name, stats=None) -> the same raw example from a stored record (UNDECODED features as
      bytes).
    """

    name: str
    list_examples: Callable[[Any, str, Stats | None], Sequence]
    read: Callable[..., Any]
    example_name: Callable[[Any], str]
    builder: type
    read_record: Callable[..., Any]

    def prepare_tfds(self, root, data_dir=None, stats=None):
        """The TFDS builder in ArrayRecord format under data_dir, generated from the folders at root if needed
        (root may be None when it is already prepared: else FileNotFoundError). Generation-time skips are
        counted in `stats`. Multi-host: prepare once (one process), then let every host pass root=None."""
        builder = self.builder(data_dir=data_dir, file_format="array_record", stats=stats)
        if root is not None:
            manual_dir = os.fspath(Path(root).expanduser())
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
        elif not builder.is_prepared():
            raise FileNotFoundError(
                f"the {type(builder).__name__} TFDS dataset is not prepared under {builder.data_dir}; "
                f"pass root (the {self.name} folders) to generate it"
            )
        return builder

    def source(self, root, split, source="folders", tfds_data_dir=None, stats=None):
        """(examples, read(example) -> raw, name(example) -> str) of one split, from either source."""
        if source == "folders":
            return self.list_examples(root, split, stats), self.read, self.example_name
        if source != "tfds":
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        tfds_split = self.builder.tfds_split(split)
        data = self.prepare_tfds(root, tfds_data_dir, stats).as_data_source(
            tfds_split, decoders={k: tfds.decode.SkipDecoding() for k in self.builder.UNDECODED}
        )

        def name(i):
            return f"tfds {self.builder.name}/{tfds_split}[{i}]"

        return range(len(data)), lambda i, stats=None: self.read_record(data[i], name(i), stats), name

    def where(self, root, split, source="folders") -> str:
        """The split in messages: 'LIP train split under /data/lip' (with ', TFDS source' for tfds)."""
        place = f" under {os.fspath(Path(root).expanduser())}" if root is not None else ""
        return f"{self.name} {split} split{place}" + (", TFDS source" if source == "tfds" else "")

    def _listed(self, root, split, source, tfds_data_dir, stats):
        """source(...) for a stream; an empty listing raises NoUsableExamples naming the split's folder and
        what the listing left out (the counters it added to stats, e.g. COCO's unannotated images)."""
        before = stats.as_dict()
        examples, read, name = self.source(root, split, source, tfds_data_dir, stats)
        if not len(examples):
            after = stats.as_dict()
            dropped = {
                k.replace("_", " "): after[k] - before.get(k, 0) for k in after if k != "skipped_files"
            }
            raise pipeline.empty_split(self.where(root, split, source), dropped)
        return examples, read, name

    def num_examples(self, root, split, *, source="folders", tfds_data_dir=None):
        """Number of examples the streams of `split` use (tfds: the examples actually stored)."""
        return len(self.source(root, split, source, tfds_data_dir)[0])

    def train_stream(
        self,
        root,
        example: Callable,
        spec: Spec,
        *,
        source="folders",
        tfds_data_dir=None,
        stats=None,
        **batching,
    ) -> pipeline.TrainStream:
        """Infinite, resumable training batches of this host from the 'train' split.

        example(raw, rng, stats, name) -> {feature: array per spec}. batching: batch_size (per host), seed,
        start_index (examples this host already consumed: step * batch_size), process_index, process_count (see
        pipeline.train_stream). Corrupt examples are skipped and counted in `stats` (by default a new one of the
        builder's STATS).
        """
        stats = stats if stats is not None else self.builder.STATS()
        examples, read, name = self._listed(root, "train", source, tfds_data_dir, stats)

        def load(item, rng):
            return example(read(item, stats), rng, stats, name(item))

        where = self.where(root, "train", source)
        return pipeline.train_stream(examples, load, spec, stats=stats, where=where, **batching)

    def eval_stream(
        self,
        root,
        example: Callable,
        spec: Spec,
        *,
        split="val",
        limit=None,
        source="folders",
        tfds_data_dir=None,
        stats=None,
        **batching,
    ) -> pipeline.EvalStream:
        """Finite evaluation batches of this host's shard (examples[p::P] of the split, the first `limit`), padded
        with masked dummies so every host yields len(stream) batches.

        example(raw, stats, name) -> {feature: array per spec}. batching: batch_size (per host), process_index,
        process_count (see pipeline.eval_stream). Batches also carry 'mask' (B,) bool, False for padding and
        corrupt examples (those are counted in `stats`).
        """
        stats = stats if stats is not None else self.builder.STATS()
        examples, read, name = self._listed(root, split, source, tfds_data_dir, stats)
        examples = examples[:limit] if limit is not None else examples

        def load(item):
            return example(read(item, stats), stats, name(item))

        where = self.where(root, split, source)
        return pipeline.eval_stream(examples, load, spec, stats=stats, where=where, **batching)
