"""Synthetic datasets on disk: a registry of task writers, `write_dataset` and the cached `ensure_dataset`.

Every sample is a pure function of (seed, index), so the files are byte-identical whatever the number of worker
processes or the order of generation. Train uses indices [0, n_train), val uses [VAL_INDEX_OFFSET,
VAL_INDEX_OFFSET + n_val): growing `num` keeps the earlier samples of each split.
"""

import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from typing import Callable

import cv2
import tqdm

from input_pipeline.synthetic import coco_format, lip_format, matting_format, posewarp_format

VAL_INDEX_OFFSET = 1_000_000
FORMAT_VERSION = 2  # bump when the renderer changes: cached datasets are then regenerated
MARKER = "synthetic_dataset.json"
_VERBOSE_ABOVE = 300


@dataclasses.dataclass(frozen=True)
class TaskWriter:
    """How one task's dataset is written in its real on-disk format.

    prepare(out_dir): create folders; write(out_dir, split, seed, index, size) -> record (picklable, runs in a
    worker process); finish(out_dir, {split: [records in index order]}): index files / annotation JSON.
    """

    prepare: Callable
    write: Callable
    finish: Callable


# Task name -> writer ('personlab': COCO person keypoints JSON; 'matting': foreground / alpha / background
# folders with list files; 'posewarp': pose videos, frames + .mat joints).
TASKS = {
    "parsing": TaskWriter(lip_format.make_dirs, lip_format.render_and_write, lip_format.finish),
    "personlab": TaskWriter(coco_format.make_dirs, coco_format.render_and_write, coco_format.finish),
    "matting": TaskWriter(matting_format.make_dirs, matting_format.render_and_write, matting_format.finish),
    "posewarp": TaskWriter(
        posewarp_format.make_dirs, posewarp_format.render_and_write, posewarp_format.finish
    ),
}


def get_task(task):
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[task]


def split_indices(num, val_fraction):
    """{'train': range, 'val': range} of sample indices."""
    if not 0 <= val_fraction <= 1:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    n_val = int(round(num * val_fraction))
    n_train = num - n_val
    if n_train > VAL_INDEX_OFFSET:
        raise ValueError(f"at most {VAL_INDEX_OFFSET} training samples")
    return {"train": range(n_train), "val": range(VAL_INDEX_OFFSET, VAL_INDEX_OFFSET + n_val)}


def _normalize_size(size):
    return int(size) if isinstance(size, (int, float)) else [int(v) for v in size]


def _work(job):
    task, out_dir, split, seed, index, size = job
    return split, TASKS[task].write(out_dir, split, seed, index, size)


def _init_worker():
    cv2.setNumThreads(1)


def _default_workers(num_jobs):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8) if num_jobs >= 200 else 1


def write_dataset(task, out_dir, num, seed=0, size=(128, 192), val_fraction=0.2, workers=None, verbose=None):
    """Render and write `num` samples of `task` under `out_dir`; returns {'train': n, 'val': n}.

    size: int (square images) or (lo, hi) range of sides. workers: processes (None = all cores for big jobs).
    verbose: progress bar and a final img/s line (None = when num > 300).
    """
    writer = get_task(task)
    size = _normalize_size(size)
    splits = split_indices(num, val_fraction)
    jobs = [(task, out_dir, split, seed, i, size) for split, indices in splits.items() for i in indices]
    workers = _default_workers(len(jobs)) if workers is None else max(1, int(workers))
    verbose = num > _VERBOSE_ABOVE if verbose is None else verbose
    if workers > 1 and ("jax" in sys.modules or "tensorflow" in sys.modules):
        # Forking a process that runs jax / tensorflow threads is unsafe, and spawn needs the caller's main
        # module to be import-safe: render in a fresh interpreter (which forks freely) instead.
        return _write_in_subprocess(task, out_dir, num, seed, size, val_fraction, workers, verbose)
    writer.prepare(out_dir)
    records = {split: [] for split in splits}
    start = time.perf_counter()
    with tqdm.tqdm(total=len(jobs), disable=not verbose, desc=f"synthetic {task}", unit="img") as bar:
        if workers == 1:
            results = map(_work, jobs)
            pool = None
        else:
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker)
            results = pool.imap(_work, jobs, chunksize=max(1, min(32, len(jobs) // (4 * workers))))
        try:
            for split, record in results:  # in job order: deterministic records
                records[split].append(record)
                bar.update()
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    writer.finish(out_dir, records)
    if verbose:
        seconds = time.perf_counter() - start
        print(
            f"synthetic {task}: wrote {len(jobs)} samples to {out_dir} in {seconds:.1f} s "
            f"({len(jobs) / max(seconds, 1e-9):.0f} img/s, {workers} worker(s))",
            file=sys.stderr,
        )
    return {split: len(indices) for split, indices in splits.items()}


def _write_in_subprocess(task, out_dir, num, seed, size, val_fraction, workers, verbose):
    sizes = [size] if isinstance(size, int) else list(size)
    cmd = [
        sys.executable,
        "-m",
        "input_pipeline.synthetic",
        "write",
        "--task",
        task,
        "--out",
        out_dir,
        "--num",
        str(num),
        "--seed",
        str(seed),
        "--size",
        *map(str, sizes),
        "--val_fraction",
        str(val_fraction),
        "--workers",
        str(workers),
        "--json",
    ]
    if not verbose:
        cmd.append("--quiet")
    done = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    if done.returncode:
        raise RuntimeError(f"synthetic data generation failed ({' '.join(cmd)}): exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _package_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dataset_name(task, num, seed, size):
    """Cache folder name: <task>-<num>-s<seed>-<size> with size '128' or '128x192'."""
    size = _normalize_size(size)
    size_str = str(size) if isinstance(size, int) else "x".join(str(v) for v in size)
    return f"{task}-{num}-s{seed}-{size_str}"


def _read_marker(path):
    try:
        with open(os.path.join(path, MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_dataset(task, cache_dir, num, seed=0, size=(128, 192), val_fraction=0.2, workers=None):
    """Path of the cached dataset `cache_dir/<task>-<num>-s<seed>-<size>`, generating it on first use.

    The folder counts as complete only when its marker (JSON of the parameters, written last) matches; otherwise
    it is regenerated. Generation goes to a temporary sibling that is renamed into place at the end.
    """
    get_task(task)
    params = {
        "task": task,
        "num": int(num),
        "seed": int(seed),
        "size": _normalize_size(size),
        "val_fraction": float(val_fraction),
        "version": FORMAT_VERSION,
    }
    path = os.path.join(cache_dir, dataset_name(task, num, seed, size))
    marker = _read_marker(path)
    if marker is not None and marker.get("params") == params:
        return path
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts = write_dataset(task, tmp, num, seed, size, val_fraction, workers)
        with open(os.path.join(tmp, MARKER), "w") as f:  # last: marks the folder complete
            json.dump({"params": params, "counts": counts}, f, indent=1)
        if os.path.exists(path):  # stale: half-written, other parameters or an older renderer
            shutil.rmtree(path)
        os.rename(tmp, path)
    except OSError:
        marker = _read_marker(path)
        if marker is None or marker.get("params") != params:
            raise
        # another process finished the same dataset first: use it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
