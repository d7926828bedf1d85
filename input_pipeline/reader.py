"""The reader skeleton every dataset shares: two sources of one example list, a TFDS builder, the streams.

A dataset module (lip.py, coco.py, ...) supplies only what is its own:
* how the examples of a split are listed from its folders (sorted) and decoded into a raw example
  (`Reader.list_examples`, `Reader.read`; a file that cannot be decoded raises `CorruptExample`);
* its TFDS builder (a `FolderBuilder`: the features, the examples of each split, one example's features) and how
  a stored record decodes into the same raw example (`Reader.read_record`);
* train_example(raw, rng, ...) / eval_example(raw, ...) and the feature spec of each, handed to
  `Reader.train_stream` / `Reader.eval_stream` by its own train_stream / eval_stream.
Everything else is here: the choice of source ('folders' reads the folders directly; 'tfds' reads the builder's
ArrayRecord files by random access, built once from the same folders in the same order, so resuming works the
same with either), preparing the builder, counting skipped examples in a `Stats`, and the resumable,
host-sharded streams of `input_pipeline.pipeline` (start_index, eval padding with a mask).
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


def read_bytes(path) -> np.ndarray:
    """The file's bytes as uint8 (N,); CorruptExample if it cannot be read."""
    try:
        return np.fromfile(path, np.uint8)
    except OSError as e:
        raise CorruptExample(path, f"unreadable: {e.strerror or e}") from None


def decode_image(data, path) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 (H, W, 3) (EXIF orientation ignored, like label maps); CorruptExample if the
    bytes do not decode. `path` names the example in the error."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise CorruptExample(path, "cannot decode image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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
                self.stats.record_skip(e.path, e.reason)
                continue
            yield key, features


@dataclasses.dataclass(frozen=True)
class Reader:
    """One dataset as the streams see it (see the module docstring).

    name: the dataset in messages ('LIP').
    list_examples(root, split, stats) -> the split's examples from the folders, sorted (counts what it drops
      in stats; raises FileNotFoundError naming what is missing).
    read(example) -> raw example; may raise CorruptExample.
    example_name(example) -> str: the example in skip counts and messages (its file).
    builder: its FolderBuilder class.
    read_record(record, name) -> the same raw example from a stored record (UNDECODED features as bytes).
    """

    name: str
    list_examples: Callable[[Any, str, Stats | None], Sequence]
    read: Callable[[Any], Any]
    example_name: Callable[[Any], str]
    builder: type
    read_record: Callable[[dict, str], Any]

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

        return range(len(data)), lambda i: self.read_record(data[i], name(i)), name

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
        examples, read, name = self.source(root, "train", source, tfds_data_dir, stats)

        def load(item, rng):
            return example(read(item), rng, stats, name(item))

        return pipeline.train_stream(examples, load, spec, stats=stats, **batching)

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
        examples, read, name = self.source(root, split, source, tfds_data_dir, stats)
        examples = examples[:limit] if limit is not None else examples

        def load(item):
            return example(read(item), stats, name(item))

        return pipeline.eval_stream(examples, load, spec, stats=stats, **batching)
