"""Generic, resumable host input pipeline (tf.data around numpy loaders; never imports jax).

Used by every dataset through input_pipeline.reader (the reader skeleton: sources, TFDS builder, streams).
A caller supplies the sorted list of its examples, a numpy `load_fn` and a `spec` of the output features; this
module does the rest:

* Training order (`train_stream`): one GLOBAL order of slots 0, 1, 2, ... over all N examples, whatever the
  number of hosts: slot g holds example `perm_e[g % N]` of epoch `e = g // N`, with
  `perm_e = default_rng([seed, e]).permutation(N)`, and its augmentation rng is `default_rng([seed, g])`.
  Global step t takes slots `t*B .. t*B + B - 1` (B = the global batch); host p of P (per-host batch
  b = B / P) takes the p-th run of b of them, so host batches stack (in process order, as
  `make_array_from_process_local_data` does) into exactly the global batch one process would read, with the
  same augmentation: losses do not depend on the number of processes. A host's stream position k (its
  examples consumed, = step * b) maps to slot `(k // b) * B + p * b + k % b`, so the stream started at
  `start_index = k` is exactly the tail of the stream from 0 (resume).
* Corrupt data is skipped AND counted, without moving any other slot: a slot whose example is corrupt takes
  the example of slot g + N (the same offset in the next epoch's order), then g + 2N, ... (keeping g's rng),
  so the global order stays independent of the number of hosts and `k = step * b` stays exact; each batch
  reports how many examples it passed over (`TrainStream.skipped`, the running total of what was consumed).
* Evaluation shards: host p of P owns `examples[p::P]` (`host_shard`).
* tf.data maps the loader in parallel (`tf.numpy_function`, AUTOTUNE, deterministic), then
  batch(drop_remainder=True) and prefetch; the result is an iterator of dicts of numpy arrays.
* A loader raises `CorruptExample(path, reason, kind)` for corrupt data: a warning names the file once, and a
  thread-safe `Stats` counts it (`stats.skipped`, `stats.skipped_files`, `stats.skip_kinds`); evaluation
  masks such an example out. A stream with no usable example at all (an empty split, or every example
  corrupt) raises `NoUsableExamples`, one line naming the split's folder and what was skipped and why: never
  a hang. Any other error of a loader reaches the caller as itself (not wrapped in a TensorFlow error).
* Evaluation (`eval_stream`): finite, every host yields the same number of batches
  `ceil(ceil(N / P) / B)`; the tail is padded with dummy examples whose boolean `mask` is False.
* `configure_once()` (called by both streams) hides GPUs from TF and makes cv2 single-threaded (tf.data
  supplies the parallelism).
* Streams have `close()` (and work as context managers); streams still open at exit are closed by an
  atexit hook, because destroying one during interpreter shutdown would hang (see `_close_live_streams`).
"""

import atexit
import collections
import dataclasses
import functools
import itertools
import logging
import math
import threading
import weakref
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

_POSITION = "_position"  # internal fields, removed before batches reach the caller
_OK = "_ok"
_SKIPS = "_skips"  # corrupt examples a training slot passed over
_configured = False


def configure_once():
    """Process-wide settings for input pipelines, applied once (idempotent):
    * hide GPUs from TensorFlow (JAX owns the accelerators; harmless on tensorflow-cpu);
    * cv2.setNumThreads(1): tf.data already runs one loader per core, and OpenCV's own thread pool on top
      oversubscribes the cores (measured on 2 cores, crop 321: 360 -> 620 img/s). This is global to cv2.
    """
    global _configured
    if not _configured:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TF already initialised its devices: too late to change, nothing to do.
            pass
        cv2.setNumThreads(1)
        _configured = True


class CorruptExample(Exception):
    """Raised by a loader for an example it cannot use (missing, empty, truncated or undecodable file, a mode
    it cannot convert, a label of another size than its image).

    path: the offending file; reason: what is wrong with it and, where it helps, what to do; kind: a short
    category for counts ('empty file', 'truncated', ...; the reason itself by default)."""

    def __init__(self, path, reason, kind=None):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.kind = str(path), reason, kind or reason


class NoUsableExamples(ValueError):
    """A split with no usable example: empty, or every example skipped. The message is one line naming the
    split's folder and the counts of what was skipped and why. A bad input: `jhuman` exits with status 2."""

    exit_status = 2


def describe_skips(kinds: collections.Counter) -> str:
    """'3 empty file, 1 truncated' (most frequent first)."""
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


class Stats:
    """Thread-safe counters the pipeline fills and the trainer logs.

    skipped: number of skip events (a corrupt training example is skipped again each epoch it comes up;
      tf.data decodes a few batches ahead, so counts may run ahead of what the caller has consumed).
    skipped_files: the distinct offending files, in the order first seen (each also logged once).
    reasons: {file: reason} of those files; skip_kinds: Counter of their kinds ('empty file': 2, ...).
    converted: images converted to 8-bit RGB (16-bit, grayscale, palette, alpha), per decode; conversions:
      Counter of what was done ('16-bit -> 8-bit': 3, ...), each kind logged once.
    downscaled: examples shrunk to fit a fixed evaluation size (see lip.eval_stream).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.skipped = 0
        self.skipped_files = []
        self.reasons = {}
        self.skip_kinds = collections.Counter()
        self.converted = 0
        self.conversions = collections.Counter()
        self.downscaled = 0

    def record_skip(self, path, reason="", kind=None):
        with self._lock:
            self.skipped += 1
            if path in self.reasons:
                return
            self.skipped_files.append(path)
            self.reasons[path] = reason
            self.skip_kinds[kind or reason] += 1
        log.warning("skipping corrupt example %s (%s); counted in Stats.skipped", path, reason)

    def record_conversion(self, path, what):
        with self._lock:
            self.converted += 1
            self.conversions[what] += 1
            first = self.conversions[what] == 1
        if first:
            log.warning(
                "converted %s to 8-bit RGB (%s); others alike are counted in Stats.converted", path, what
            )

    def record_downscale(self, path=""):
        with self._lock:
            self.downscaled += 1

    def as_dict(self):
        with self._lock:
            return {
                "skipped": self.skipped,
                "skipped_files": len(self.skipped_files),
                "downscaled": self.downscaled,
            }


@dataclasses.dataclass(frozen=True)
class Feature:
    """One output feature of a loader: per-example shape and numpy dtype (`str` = host-only text, returned
    as a numpy unicode array), and the value that fills dummy (padding) examples."""

    shape: tuple
    dtype: Any
    pad_value: Any = 0


Spec = Mapping[str, Feature]


def host_shard(examples: Sequence, process_index: int, process_count: int) -> list:
    """The examples host `process_index` of `process_count` owns: `examples[p::P]` (sort them first)."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return list(examples)[process_index::process_count]


@functools.lru_cache(maxsize=4)
def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """Order of n examples in `epoch`: default_rng([seed, epoch]).permutation(n). (n,) int64."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    perm.flags.writeable = False
    return perm


def example_index(slot: int, n: int, seed: int) -> int:
    """Index (into the sorted list of n examples) of training slot `slot` (epoch = slot // n)."""
    epoch, offset = divmod(int(slot), n)
    return int(epoch_permutation(n, seed, epoch)[offset])


def global_slot(position: int, process_index: int, process_count: int, per_host_batch: int) -> int:
    """The global training slot of host `process_index`'s stream position `position` (see module docstring)."""
    step, row = divmod(int(position), per_host_batch)
    return step * per_host_batch * process_count + process_index * per_host_batch + row


def example_rng(seed: int, slot: int) -> np.random.Generator:
    """The per-example augmentation generator of a training slot: default_rng([seed, slot])."""
    return np.random.default_rng([seed, int(slot)])


def _tf_dtype(dtype):
    return tf.string if dtype is str else tf.as_dtype(np.dtype(dtype))


def _dummy(spec: Spec):
    return {k: (b"" if f.dtype is str else np.full(f.shape, f.pad_value, f.dtype)) for k, f in spec.items()}


def _as_numpy(value, dtype):
    if dtype is str:
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return np.asarray(value, dtype)


def _map_numpy(ds, fn, spec: Spec):
    """ds of int64 scalars -> ds of dicts: spec features + _ok (bool) + _position (int64) + _skips (int32),
    fn(position) -> (example, ok[, skips]) run in parallel."""
    keys = list(spec) + [_OK, _POSITION, _SKIPS]
    dtypes = [spec[k].dtype for k in spec] + [np.bool_, np.int64, np.int32]

    def flat(position):
        example, ok, *skips = fn(int(position))
        out = [_as_numpy(example[k], spec[k].dtype) for k in spec]
        return out + [np.bool_(ok), np.int64(position), np.int32(skips[0] if skips else 0)]

    def tf_fn(position):
        values = tf.numpy_function(flat, [position], [_tf_dtype(d) for d in dtypes])
        out = dict(zip(keys, values))
        for k, f in spec.items():
            out[k].set_shape(f.shape)
        for k in (_OK, _POSITION, _SKIPS):
            out[k].set_shape(())
        return out

    return ds.map(tf_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _finish(ds, batch_size):
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def _to_host(batch, spec):
    for k, f in spec.items():
        if f.dtype is str:
            batch[k] = np.array([s.decode("utf-8") for s in batch[k]])
    return batch


_LIVE_STREAMS = weakref.WeakSet()


@atexit.register
def _close_live_streams():
    """Stops the tf.data workers of streams still open at exit. Without this, an iterator destroyed during
    interpreter shutdown waits forever for numpy_function calls that can no longer take the GIL (a hang at
    exit, seen with training streams abandoned mid-way)."""
    for stream in list(_LIVE_STREAMS):
        stream.close()


class _Closeable:
    """close() (or `with stream:`) stops the tf.data workers now; live streams are also closed at exit."""

    def __init__(self):
        _LIVE_STREAMS.add(self)

    def close(self):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Errors:
    """The first error of a loader that is neither a skip nor ours to handle, kept so that the stream raises it
    as itself: inside tf.data it would reach the caller wrapped in a TensorFlow error."""

    def __init__(self):
        self.first = None

    def keep(self, error):
        if self.first is None:
            self.first = error
        return error

    def raise_kept(self):
        if self.first is not None:
            raise self.first from None


def _no_usable(where, num_listed, kinds, first):
    what = f"the {where}" if where else "the stream"
    example = f"; e.g. {first[0]}: {first[1]}" if first else ""
    return NoUsableExamples(
        f"no usable examples in {what}: all {num_listed} listed were skipped as corrupt "
        f"({describe_skips(kinds)}){example}; fix or replace those files"
    )


def empty_split(where, dropped=None) -> NoUsableExamples:
    """The error of a split whose listing is empty; dropped: {what: count} the listing left out."""
    left_out = ", ".join(f"{n} {what}" for what, n in (dropped or {}).items() if n)
    what = f"the {where}" if where else "the stream"
    return NoUsableExamples(
        f"no usable examples in {what}: it lists none"
        + (f" (left out while listing: {left_out})" if left_out else "")
        + "; check the folder and its list of examples"
    )


class TrainStream(_Closeable):
    """Infinite iterator of training batches (dicts of numpy arrays, leading axis = per-host batch).

    next_position: the host stream position after the last example of the last batch returned (= examples
    consumed = step * batch_size); restart with `start_index=next_position` to continue exactly.
    skipped: corrupt examples passed over by the batches returned so far (the trainer adds what the run had
    counted before it resumed).
    """

    def __init__(self, ds, spec, start_index, errors=None):
        super().__init__()
        self._it = iter(ds.as_numpy_iterator())
        self._spec = spec
        self._errors = errors or _Errors()
        self.next_position = start_index
        self.skipped = 0

    def close(self):
        self._it = None  # drops the tf.data iterator: its workers stop

    def __iter__(self):
        return self

    def __next__(self):
        if self._it is None:
            raise StopIteration
        try:
            batch = next(self._it)
        except tf.errors.OpError:
            self._errors.raise_kept()
            raise
        self.next_position = int(batch.pop(_POSITION)[-1]) + 1
        self.skipped += int(batch.pop(_SKIPS).sum())
        batch.pop(_OK)
        return _to_host(batch, self._spec)


def train_stream(
    examples: Sequence,
    load_fn: Callable[[Any, np.random.Generator], dict],
    spec: Spec,
    *,
    batch_size: int,
    seed: int = 0,
    start_index: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    stats: Stats | None = None,
    where: str = "",
) -> TrainStream:
    """Infinite, resumable training stream of this host (see the module docstring for the global order).

    examples: the full, sorted example list (any objects); load_fn(example, rng) -> {name: array per spec},
      may raise CorruptExample (the example is replaced by the next epoch's at the same offset, and counted).
    batch_size: per host. start_index: examples this host already consumed (= step * batch_size).
    where: the split in messages ('LIP train split under /data/lip').
    Returns batches {name: (batch_size, *spec[name].shape)}. NoUsableExamples when the list is empty or once
    every example turned out corrupt.
    """
    configure_once()
    if not len(examples):
        raise empty_split(where)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    examples = list(examples)
    n = len(examples)
    stats = stats if stats is not None else Stats()
    bad, bad_lock, kinds, errors = {}, threading.Lock(), collections.Counter(), _Errors()

    def load(position):
        slot = global_slot(position, process_index, process_count, batch_size)
        rng_state = example_rng(seed, slot).bit_generator.state
        # slot, slot + N, slot + 2N, ...: each a uniformly drawn example, so this ends with a good one unless
        # every example is corrupt (then NoUsableExamples).
        for skips in itertools.count():
            index = example_index(slot + skips * n, n, seed)
            with bad_lock:
                known = bad.get(index)
                if known is not None and len(bad) == n:
                    raise errors.keep(_no_usable(where, n, kinds, known[:2])) from None
            if known is not None:
                stats.record_skip(*known)
                continue
            rng = np.random.default_rng()
            rng.bit_generator.state = rng_state  # the slot's own randomness, whichever example fills it
            try:
                return load_fn(examples[index], rng), True, skips
            except CorruptExample as e:
                stats.record_skip(e.path, e.reason, e.kind)
                with bad_lock:
                    if index not in bad:
                        bad[index] = (e.path, e.reason, e.kind)
                        kinds[e.kind] += 1
                    if len(bad) == n:
                        first = next(iter(bad.values()))[:2]
                        raise errors.keep(_no_usable(where, n, kinds, first)) from None
            except Exception as e:
                raise errors.keep(e)

    ds = tf.data.Dataset.counter(start=start_index)  # int64 host positions start_index, start_index + 1, ...
    ds = _map_numpy(ds, load, spec)
    return TrainStream(_finish(ds, batch_size), spec, start_index, errors)


class EvalStream(_Closeable):
    """Finite, re-iterable evaluation batches; `len()` = batches per host (the same on every host).

    Each batch has the spec's features plus `mask` (B,) bool: False for the padding that evens out hosts and
    for corrupt examples (skipped and counted in stats).
    num_examples: the examples of the split (all hosts); stats: the Stats its skips go to; where: the split in
    messages. So `num_examples - (examples evaluated, summed over hosts)` is the number skipped.
    """

    def __init__(self, ds, spec, num_batches, *, num_examples=0, stats=None, where="", errors=None):
        super().__init__()
        self._ds, self._spec, self._num_batches = ds, spec, num_batches
        self._errors = errors or _Errors()
        self._passes = weakref.WeakSet()  # unfinished iterations (generators), closed by close()
        self.num_examples, self.stats, self.where = num_examples, stats, where

    def __len__(self):
        return self._num_batches

    def close(self):
        for iteration in list(self._passes):
            iteration.close()

    def __iter__(self):
        iteration = self._batches()
        self._passes.add(iteration)
        return iteration

    def _batches(self):
        try:
            for batch in self._ds.as_numpy_iterator():
                batch.pop(_POSITION)
                batch.pop(_SKIPS)  # training-only bookkeeping
                batch["mask"] = batch.pop(_OK)
                yield _to_host(batch, self._spec)
        except tf.errors.OpError:
            self._errors.raise_kept()
            raise

    def no_usable_examples(self) -> NoUsableExamples:
        """The error to raise when none of the split's examples could be evaluated (names the split's folder
        and what this host skipped, by kind)."""
        stats = self.stats or Stats()
        first = next(iter(stats.reasons.items()), None)
        return _no_usable(self.where, self.num_examples, stats.skip_kinds, first)


def eval_batches_per_host(num_examples: int, batch_size: int, process_count: int) -> int:
    """ceil(ceil(N / P) / B): enough batches for the largest host shard."""
    return math.ceil(math.ceil(num_examples / process_count) / batch_size)


def eval_stream(
    examples: Sequence,
    load_fn: Callable[[Any], dict],
    spec: Spec,
    *,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    stats: Stats | None = None,
    where: str = "",
) -> EvalStream:
    """Finite evaluation stream over this host's shard `examples[p::P]`, in order, padded with masked dummies.

    load_fn(example) -> {name: array per spec}; may raise CorruptExample (masked out and counted).
    where: the split in messages. Returns batches {name: (batch_size, ...), 'mask': (batch_size,) bool}.
    NoUsableExamples when `examples` is empty (the same on every host). A split whose examples are all
    corrupt yields all-False masks: the caller sees that from the masks (summed over hosts), see EvalStream.
    """
    configure_once()
    if not len(examples):
        raise empty_split(where)
    shard = host_shard(examples, process_index, process_count)
    stats = stats if stats is not None else Stats()
    num_batches = eval_batches_per_host(len(examples), batch_size, process_count)
    errors = _Errors()

    def load(i):
        if i >= len(shard):
            return _dummy(spec), False
        try:
            return load_fn(shard[i]), True
        except CorruptExample as e:
            stats.record_skip(e.path, e.reason, e.kind)
            return _dummy(spec), False
        except Exception as e:
            raise errors.keep(e)

    ds = _map_numpy(tf.data.Dataset.range(num_batches * batch_size), load, spec)
    return EvalStream(
        _finish(ds, batch_size),
        spec,
        num_batches,
        num_examples=len(examples),
        stats=stats,
        where=where,
        errors=errors,
    )
