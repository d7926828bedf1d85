"""Stage chaining: a new run starts from (parts of) other runs' checkpoints.

`config.init`:
  from_workdir: '' (off); a workdir (all of its parameters and model state, at `from_step`, restricted to
      the paths matching `from_pattern`); or several sources at once, a tuple of (workdir, pattern, step)
      entries (pattern '' = everything, step 0 = latest), e.g. matting's end-to-end stage:
      (('runs/tnet', '^net/tnet/', 0), ('runs/mnet', '^net/mnet/', 0)).
  from_step: 0 = the source's latest checkpoint (single-source form).
  from_pattern: regex over '/'-joined parameter paths ('net/tnet/trunk/conv1/kernel'); for model-state
      leaves the collection is dropped first ('batch_stats/net/tnet/bn1/mean' -> 'net/tnet/bn1/mean').

Only `params` and `model_state` are taken (a new stage has a new optimizer and starts at step 0); leaves go
straight into the new run's shardings (orbax partial restore). A leaf matched by two sources, or one whose
shape differs between the runs, is an error; the report lists what was restored (from which source), what
was left at its initialisation, and which selected source leaves have no place in the new run. A task keeps
the same parameter paths in every stage, so a regex selects one network. Only a fresh run reads its
sources: a run that resumes its own checkpoint never reads them again.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import jax
import orbax.checkpoint as ocp

from jhuman import checkpoint

ITEMS = ("params", "model_state")


@dataclasses.dataclass(frozen=True)
class Source:
    workdir: str
    pattern: str = ""
    step: int = 0  # 0: latest


def sources(init_cfg) -> list[Source]:
    """The `init.from_workdir` entries (see the module docstring); [] when unset."""
    value = init_cfg.get("from_workdir", "")
    if not value:
        return []
    if isinstance(value, str):
        entries = [(value, init_cfg.get("from_pattern", ""), init_cfg.get("from_step", 0))]
    else:
        entries = list(value)
    out = []
    for entry in entries:
        if isinstance(entry, str):
            entry = (entry, "", 0)
        if not isinstance(entry, (tuple, list)) or not 1 <= len(entry) <= 3:
            raise ValueError(
                f"init.from_workdir: {entry!r} is not a workdir or a (workdir, pattern, step) entry"
            )
        workdir, pattern, step = (*entry, "", 0)[:3] if len(entry) < 3 else entry
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(
                f"init.from_workdir: pattern {pattern!r} of {workdir} is not a regex: {e}"
            ) from None
        out.append(Source(os.path.abspath(os.path.expanduser(workdir)), pattern, int(step or 0)))
    return out


@dataclasses.dataclass
class InitReport:
    """What `restore_sources` did; paths are '<item>/<path>' ('params/net/tnet/conv1/kernel')."""

    restored: dict = dataclasses.field(default_factory=dict)  # path -> 'workdir@step'
    left_at_init: list = dataclasses.field(default_factory=list)
    unmatched: list = dataclasses.field(default_factory=list)  # selected source leaves absent in the new run

    def __str__(self):
        def few(items, n=4):
            items = list(items)
            return f" ({', '.join(items[:n])}{', ...' if len(items) > n else ''})" if items else ""

        by_source = {}
        for where in self.restored.values():
            by_source[where] = by_source.get(where, 0) + 1
        parts = ", ".join(f"{n} from {where}" for where, n in by_source.items()) or "nothing"
        return (
            f"initialised from other runs: {len(self.restored)} leaves restored ({parts}); "
            f"{len(self.left_at_init)} left at init{few(self.left_at_init)}; "
            f"{len(self.unmatched)} selected source leaves not in this run{few(self.unmatched)}"
        )


def _path(item: str, path) -> str:
    keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    return "/".join([item, *keys])


def _selects(pattern: str, item: str, path: str) -> bool:
    name = path.split("/", 1)[1]
    if item == "model_state":
        name = name.split("/", 1)[1] if "/" in name else ""  # drop the collection
    return re.search(pattern, name) is not None


def _source_step(source: Source) -> tuple[int, str, dict]:
    """(step, item folder, tree of array metadata) of the source's checkpoint (read only)."""
    directory = os.path.join(source.workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"init.from_workdir: no checkpoints folder {directory}: is {source.workdir!r} a training run?"
        )
    steps = sorted(ocp.utils.checkpoint_steps(directory))
    step = source.step or (steps[-1] if steps else None)
    if step is None or step not in steps:
        raise FileNotFoundError(
            f"init.from_workdir: no checkpoint at step {source.step or 'latest'} in {directory} "
            f"(available steps: {steps or 'none'}); train that stage first"
        )
    item = os.path.join(directory, str(step), checkpoint.ITEM)
    return step, item, ocp.PyTreeCheckpointer().metadata(item).item_metadata.tree


def restore_sources(state: dict, shardings: dict, srcs: list[Source]) -> tuple[dict, InitReport]:
    """`state` with the selected `params` / `model_state` leaves replaced by the sources' values (placed with
    `shardings`), and the report."""
    report = InitReport()
    by_path = {
        _path(item, p): (item, p, leaf)
        for item in ITEMS
        for p, leaf in jax.tree_util.tree_leaves_with_path(state[item])
    }
    shard_of = {
        _path(item, p): s for item in ITEMS for p, s in jax.tree_util.tree_leaves_with_path(shardings[item])
    }
    values = {}
    for source in srcs:
        step, directory, metadata = _source_step(source)
        where = f"{source.workdir}@{step}"
        target, mismatched = {}, []
        for item in ITEMS:
            for p, meta in jax.tree_util.tree_leaves_with_path(metadata.get(item, {})):
                path = _path(item, p)
                if not _selects(source.pattern, item, path):
                    continue
                if path not in by_path:
                    report.unmatched.append(path)
                    continue
                if path in report.restored:
                    raise ValueError(
                        f"init.from_workdir: {path} is selected by {report.restored[path]} and {where}"
                    )
                leaf = by_path[path][2]
                if tuple(meta.shape) != tuple(leaf.shape):
                    mismatched.append(f"{path}: {tuple(meta.shape)} in {where} vs {tuple(leaf.shape)} here")
                    continue
                target[path] = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=shard_of[path])
                report.restored[path] = where
        if mismatched:
            raise ValueError("init.from_workdir: shapes differ: " + "; ".join(mismatched))
        if target:
            values.update(_restore_leaves(directory, metadata, target))
    out = dict(state)
    for item in ITEMS:
        out[item] = jax.tree_util.tree_map_with_path(
            lambda p, x, it=item: values.get(_path(it, p), x), state[item]
        )
    report.left_at_init = [p for p in by_path if p not in report.restored]
    return out, report


def _restore_leaves(directory: str, metadata: dict, target: dict[str, Any]) -> dict[str, jax.Array]:
    """{path: array} for the '<item>/<path>' leaves of `target` (ShapeDtypeStructs with shardings)."""

    # A partial tree (parameters and model state are nested dicts): the source's, pruned to the wanted leaves.
    def prune(tree, prefix):
        if isinstance(tree, dict):
            out = {k: prune(v, f"{prefix}/{k}") for k, v in tree.items()}
            return {k: v for k, v in out.items() if v is not None and v != {}}
        return target.get(prefix)

    item = {k: prune(metadata[k], k) for k in ITEMS if k in metadata}
    item = {k: v for k, v in item.items() if v}
    restored = ocp.PyTreeCheckpointer().restore(
        directory,
        args=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True
        ),
    )
    return {_path(k, p): v for k in restored for p, v in jax.tree_util.tree_leaves_with_path(restored[k])}
