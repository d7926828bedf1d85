"""Pieces every task shares: input normalisation around a net, applying it, its data plumbing (`ReaderData`,
with the count of skipped evaluation examples: `SkipCountingEvaluator`), pretrained import, the pictures of a
batch (`batch_grid`) and `jhuman predict`'s loop over a folder (`predict_folder`)."""

from __future__ import annotations

import collections
import functools
import importlib
import itertools
import json
import os
from typing import Any, Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jhuman import classes, weights_keras

INPUT_NORMS = {
    # name: (mean, std, reverse channels to BGR), applied to RGB in 0..255
    "torchvision": (np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255, False),
    "caffe": (np.array(classes.CAFFE_MEAN_RGB), np.ones(3), True),
    # Keras' VGG-16/19 weights (jhuman.weights_keras): BGR minus the ImageNet means of the VGG Caffe models
    "keras_caffe": (np.array(weights_keras.KERAS_VGG_MEAN_BGR[::-1]), np.ones(3), True),
}


class Normalized(nn.Module):
    """Normalises raw RGB (0..255) as `input_norm` says ('torchvision': ImageNet mean/std on [0, 1] RGB, the
    layout of imported torchvision weights; 'caffe': BGR minus the DeepLab Caffe mean; 'keras_caffe': BGR minus
    the ImageNet means Keras' VGG weights expect), then runs `net`."""

    net: nn.Module
    input_norm: str = "torchvision"

    @nn.compact
    def __call__(self, images, train: bool = False):
        mean, std, bgr = INPUT_NORMS[self.input_norm]
        x = (images.astype(jnp.float32) - mean) / std
        if bgr:
            x = x[..., ::-1]
        return self.net(x.astype(self.net.dtype), train=train)


def check_input_norm(name: str) -> str:
    if name not in INPUT_NORMS:
        raise ValueError(f"model.input_norm={name!r} is not one of {sorted(INPUT_NORMS)}")
    return name


def apply(net: nn.Module, variables, images, train: bool = False, rng=None):
    """(outputs, new_model_state); the model state only changes when training with batch norm."""
    mutable = [k for k in variables if k != "params"] if train else False
    result = net.apply(
        variables, images, train=train, rngs={"dropout": rng} if train else None, mutable=mutable
    )
    return result if mutable is not False else (result, {})  # flax returns (out, {}) for mutable=[] too


def data_root(config, task: str, real_name: str) -> str:
    """The dataset folder: synthetic people generated into the cache on first use, or `data.root`."""
    data = config.data
    if data.name == "synthetic":
        from input_pipeline import synthetic

        return synthetic.ensure_dataset(
            task,
            os.path.expanduser(data.cache_dir),
            num=int(data.synthetic_num),
            seed=int(data.synthetic_seed),
            size=tuple(data.synthetic_size),
            val_fraction=float(data.synthetic_val_fraction),
        )
    if data.name == real_name:
        if not data.root or not os.path.isdir(os.path.expanduser(data.root)):
            raise FileNotFoundError(
                f"data.root={data.root!r} is not a folder: point it at the {real_name} data "
                f"(e.g. --config.data.root=/data/{real_name})"
            )
        return os.path.expanduser(data.root)
    raise ValueError(f"data.name={data.name!r} is not one of [{real_name!r}, 'synthetic']")


class ReaderData:
    """The data half of the task interface, for a task whose examples come from one input_pipeline reader.

    A task sets READER (the module whose train_stream / eval_stream it uses, e.g. 'input_pipeline.lip'),
    DATASET (config.data.name of its real data) and SYNTHETIC (the synthetic writer of that format, the other
    choice of config.data.name: 'synthetic'), and returns its own stream arguments from `train_options()` and
    `eval_options()`. This gives `data_names()` (the data.name values it reads, checked at config load time),
    `data_root()`, `data_stats`, `train_batches` and `eval_batches`; every stream also gets data.source,
    data.tfds_data_dir and its stats (`source_kwargs`), training streams config.seed and the resume position,
    evaluation streams eval.limit. A task wraps its evaluator with `count_skips(evaluator)` so that its results
    say how many evaluation examples were skipped, and which (`SkipCountingEvaluator`).
    """

    READER: str
    DATASET: str
    SYNTHETIC: str

    @classmethod
    def data_names(cls) -> tuple[str, ...]:
        """The values of config.data.name this task reads: its real dataset and 'synthetic' (static)."""
        return (cls.DATASET, "synthetic")

    def train_options(self) -> dict:
        return {}

    def eval_options(self) -> dict:
        return {}

    @functools.cached_property
    def data_stats(self):
        """Counts of skipped (corrupt) training examples, filled by this task's training streams
        (pipeline.Stats). Each evaluation stream counts its own (`eval_stream.stats`)."""
        from input_pipeline import pipeline

        return pipeline.Stats()

    def count_skips(self, evaluator) -> SkipCountingEvaluator:
        """`evaluator` wrapped to report the evaluation examples skipped by this task's latest eval stream."""
        return SkipCountingEvaluator(evaluator, lambda: getattr(self, "eval_stream", None))

    def data_root(self) -> str:
        return data_root(self.config, self.SYNTHETIC, self.DATASET)

    def train_batches(self, start_index, per_host_batch, process_index, process_count):
        return importlib.import_module(self.READER).train_stream(
            self.data_root(),
            batch_size=per_host_batch,
            seed=int(self.config.seed),
            start_index=start_index,
            process_index=process_index,
            process_count=process_count,
            **source_kwargs(self.config, self.data_stats),
            **self.train_options(),
        )

    def eval_batches(self, split, per_host_batch, process_index, process_count):
        """The evaluation stream of `split`, kept as `self.eval_stream` (its own Stats: what it skipped)."""
        module = importlib.import_module(self.READER)
        stats = module.READER.builder.STATS()
        self.eval_stream = module.eval_stream(
            self.data_root(),
            split=split,
            batch_size=per_host_batch,
            process_index=process_index,
            process_count=process_count,
            limit=int(self.config.eval.limit) or None,
            **source_kwargs(self.config, stats),
            **self.eval_options(),
        )
        return self.eval_stream


class SkipCountingEvaluator:
    """A task's evaluator that also counts the examples it evaluated (batch['mask'] summed on device, so over
    every host) and adds to its results what the evaluation stream skipped:
      eval_skipped: the split's examples (all hosts) that were not evaluated (corrupt, skipped and counted);
      eval_skipped_files: their files with the reason, {file: reason} (this host's: all of them on one host).
    A split of which no example could be evaluated raises NoUsableExamples (one line naming its folder and
    what was skipped and why) instead of returning meaningless scores. Examples a TFDS source left out when it
    was built are not in the stored split, so they are not counted here (they were counted when it was built).

    stream() -> the EvalStream the evaluation read (None: nothing is added). Keeps the wrapped evaluator's
    `host_update`.
    """

    def __init__(self, evaluator, stream: Callable[[], Any]):
        self.evaluator, self.stream = evaluator, stream
        self.host_update = getattr(evaluator, "host_update", False)

    def init(self):
        return {"evaluator": self.evaluator.init(), "evaluated": jnp.zeros((), jnp.int32)}

    def update(self, acc, variables, batch):
        evaluated = acc["evaluated"] + jnp.sum(jnp.asarray(batch["mask"]), dtype=jnp.int32)
        return {
            "evaluator": self.evaluator.update(acc["evaluator"], variables, batch),
            "evaluated": evaluated,
        }

    def finalize(self, acc) -> dict:
        stream, evaluated = self.stream(), int(acc["evaluated"])
        if stream is not None and evaluated == 0 and stream.num_examples:
            raise stream.no_usable_examples()
        results = self.evaluator.finalize(acc["evaluator"])
        if stream is not None:
            results["eval_skipped"] = int(stream.num_examples) - evaluated
            results["eval_skipped_files"] = dict(stream.stats.reasons) if stream.stats is not None else {}
        return results


def format_skips(results) -> str:
    """'' or the line saying how many evaluation examples were skipped, naming the first few."""
    n = int(results.get("eval_skipped", 0) or 0)
    if not n:
        return ""
    files = list(results.get("eval_skipped_files") or ())
    named = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    return f"{n} evaluation example{'s' if n != 1 else ''} skipped (corrupt, not scored)" + (
        f": {named}" if named else ""
    )


def source_kwargs(config, stats) -> dict:
    """The reader arguments every task's streams take: data.source, data.tfds_data_dir, and the stats."""
    return {"source": config.data.source, "tfds_data_dir": config.data.tfds_data_dir or None, "stats": stats}


def pretrained_variables(config, variables, arch: str | None = None, prefix: tuple | str | None = None):
    """`init.backbone_weights` imported into `variables` (jhuman.weights.import_backbone), or None when unset.

    The setting is either one weight file (a path string: imported as `arch` into the trunk at `prefix`, the
    task's defaults), or a tuple/list of (prefix, arch, file) entries for a task of several networks, each
    imported in turn into the sub-network at its '/'-joined prefix inside the variables, e.g.
      (('net/tnet/trunk', 'resnet50', 'resnet50.safetensors'),
       ('net/mnet/encoder', 'vgg16', 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5')).
    The file's suffix picks the layout (.h5: Keras, otherwise torchvision). Every report is printed. An entry
    that is not such a triple, an unknown arch and a missing file raise errors naming `init.backbone_weights`
    and the entry, before anything is imported.
    """
    setting = config.init.backbone_weights
    if not setting:
        return None
    from jhuman import weights

    if isinstance(setting, (str, os.PathLike)):
        if arch is None or prefix is None:
            raise ValueError(
                f"init.backbone_weights={os.fspath(setting)!r}: this task has no default backbone; give "
                "(prefix, arch, file) entries, e.g. (('net/trunk', 'vgg16', 'vgg16.h5'),)"
            )
        setting = ((prefix, arch, setting),)
    entries = []
    for entry in setting:
        if (
            isinstance(entry, (str, bytes))
            or not isinstance(entry, (tuple, list))
            or len(entry) != 3
            or not isinstance(entry[1], str)
            or not isinstance(entry[2], (str, os.PathLike))
            or not isinstance(entry[0], (str, tuple, list))
        ):
            raise ValueError(
                f"init.backbone_weights entry {entry!r} is not a (prefix, arch, file) triple, e.g. "
                "('net/mnet/encoder', 'vgg16', 'vgg16.h5')"
            )
        entry_prefix, entry_arch, path = entry
        if entry_arch not in weights.ARCHS:
            raise ValueError(
                f"init.backbone_weights entry {tuple(entry)!r}: unknown arch {entry_arch!r}; "
                f"valid: {list(weights.ARCHS)}"
            )
        path = os.path.expanduser(os.fspath(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"init.backbone_weights entry {tuple(entry)!r}: no file {path!r}")
        entries.append((entry_prefix, entry_arch, path))
    for entry_prefix, entry_arch, path in entries:
        variables, report = weights.import_backbone(variables, path, entry_arch, prefix=entry_prefix)
        print(report)
    return variables


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))


class _Conversions:
    """Collects what decoding did to each image (input_pipeline.reader.decode_image's `stats`)."""

    def __init__(self):
        self.done = {}

    def record_conversion(self, path, what):
        self.done[path] = what


def read_image(path: str, conversions=None):
    """RGB uint8 (h, w, 3) of an image file, checked and decoded as the training readers do
    (input_pipeline.reader.read_image: EXIF orientation ignored, 16-bit / grayscale / palette / RGBA converted
    to 8-bit RGB and recorded in `conversions`). Raises CorruptExample (.reason) for a missing, empty,
    truncated or undecodable file."""
    from input_pipeline import reader

    return reader.read_image(path, conversions)


def read_rgb(path: str):
    """RGB uint8 (h, w, 3), or None (with a warning naming the reason) when the file cannot be used."""
    from input_pipeline.pipeline import CorruptExample

    try:
        return read_image(path)
    except CorruptExample as e:
        print(f"warning: {e}; skipped")
        return None


def output_stems(names: Iterable[str], patterns: Iterable[str], reserved: Iterable[str] = ()) -> dict:
    """{image file name: the stem of its output files}, so that no two images' outputs share a name.

    patterns: the files one image writes, '{}' standing for its stem (('{}.png', '{}_overlay.png')); reserved:
    names nothing may take (the results file). An image keeps its stem (`a.jpg` -> `a.png`, which eval-parsing
    pairs with the ground truth `a.png`) unless another image has the same stem (`a.jpg` and `a.png`) or a file
    it would write is already taken; then its whole file name is the stem (`a.jpg.png`, `a.png.png`), with
    `_2`, `_3`, ... appended should even that be taken. Names compare case-insensitively (the outputs may land
    on a case-insensitive disk). Images with a unique stem claim their names first, then in sorted order."""
    names, patterns = sorted(names), tuple(patterns)
    base = {n: os.path.splitext(n)[0] for n in names}
    shared = collections.Counter(b.casefold() for b in base.values())
    taken = {r.casefold() for r in reserved}
    stems = {}
    for name in sorted(names, key=lambda n: (shared[base[n].casefold()] > 1, n)):
        unique = [base[name]] if shared[base[name].casefold()] == 1 else []
        for stem in itertools.chain(unique, [name], (f"{name}_{k}" for k in itertools.count(2))):
            files = {p.format(stem).casefold() for p in patterns}
            if len(files) == len(patterns) and not files & taken:
                break
        taken |= files
        stems[name] = stem
    return stems


def fit_and_pad(image, size: int):
    """(padded float32 (size, size, 3), scale): RGB uint8 (h, w, 3) shrunk by scale = min(1, size / max(h, w))
    (bilinear), then padded bottom/right with the Caffe mean, as the LIP evaluation pipeline does."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, size / max(h, w))
    small = (
        image
        if scale == 1.0
        else cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR
        )
    )
    padded = np.empty((size, size, 3), np.float32)
    padded[:] = classes.CAFFE_MEAN_RGB
    padded[: small.shape[0], : small.shape[1]] = small
    return padded, scale


def predict_folder(
    variables,
    image_dir: str,
    out_dir: str,
    *,
    prepare: Callable[[np.ndarray], tuple[np.ndarray, Any]],
    predict: Callable,
    write: Callable[..., list],
    results_file: str,
    entries_key: str,
    files: tuple[str, ...] = ("{}.png",),
    indent: int | None = None,
) -> dict:
    """`jhuman predict`'s loop: every image file of image_dir (sorted by name) read, predicted and written.

    Images are read as the training readers read them (`read_image`: EXIF orientation ignored, other modes
    converted to 8-bit RGB and listed); a file that is missing, empty, truncated (a JPEG without its end
    marker, a PNG without IEND) or undecodable is skipped and listed with the reason. The task supplies:
      prepare(image RGB uint8 (h, w, 3)) -> (network input (S, S, 3), context): one S for every image, so one
        compiled shape serves the folder;
      predict(variables, inputs (1, S, S, 3)) -> outputs (a jitted function);
      write(out_dir, name, stem, image, context, outputs of this image (numpy, leading axis dropped)) -> this
        image's entries of the results file (after writing its pictures, named from `stem`);
      files: the names write gives an image's files, '{}' standing for the stem (see `output_stems`: an
        image's stem is its file name's unless two images would write the same file, `a.jpg` and `a.png`).
    Writes `<out_dir>/<results_file>` = {entries_key: [entries], 'skipped': [{'image', 'reason'}],
    'num_skipped': n, 'num_images': images predicted, 'outputs': {image: [its files]}, 'converted':
    [{'image', 'conversion'}]} and returns it.
    """
    from input_pipeline.pipeline import CorruptExample

    os.makedirs(out_dir, exist_ok=True)
    names = image_files(image_dir)
    stems = output_stems(names, files, reserved=(results_file,))
    entries, skipped, written, conversions = [], [], {}, _Conversions()
    for name in names:
        path = os.path.join(image_dir, name)
        try:
            image = read_image(path, conversions)
        except CorruptExample as e:
            print(f"warning: {e}; skipped")
            skipped.append({"image": name, "reason": e.reason})
            continue
        inputs, context = prepare(image)
        outputs = jax.device_get(predict(variables, inputs[None]))
        outputs = jax.tree.map(lambda v: np.asarray(v)[0], outputs)
        entries += write(out_dir, name, stems[name], image, context, outputs)
        written[name] = [p.format(stems[name]) for p in files]
    converted = [
        {"image": name, "conversion": conversions.done[os.path.join(image_dir, name)]}
        for name in names
        if os.path.join(image_dir, name) in conversions.done
    ]
    summary = {
        entries_key: entries,
        "skipped": skipped,
        "num_skipped": len(skipped),
        "num_images": len(written),
        "outputs": written,
        "converted": converted,
    }
    with open(os.path.join(out_dir, results_file), "w") as f:
        json.dump(summary, f, indent=indent)
    return summary


def batch_grid(batch, draw_row: Callable[[int, np.ndarray], list], titles: list[str]) -> np.ndarray:
    """One picture of a batch: a row per example, padding (batch['mask'] False) left out.

    draw_row(i, image) -> the row's tiles, image being example i's RGB clipped to uint8 (H, W, 3); the rows go
    into viz.image_grid under the column titles.
    """
    from jhuman import viz

    rows = [
        draw_row(i, np.clip(image, 0, 255).astype(np.uint8))
        for i, image in enumerate(batch["image"])
        if "mask" not in batch or batch["mask"][i]
    ]
    return viz.image_grid(rows, titles=titles)
