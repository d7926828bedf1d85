"""Orbax checkpoints of the train state: async save, keep N, restore into any sharding.

The state is a plain dict of arrays (`step`, `params`, `model_state`, `opt_state`, optionally `ema_params`).
Restoring goes through an abstract tree that carries the target shardings, so a run saved on 8 devices can
resume on 1 (or the reverse).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

ITEM = "default"  # the manager's folder of a step's one item (what a plain PyTreeCheckpointer reads)


class Checkpoints:
    """A thin wrapper over `ocp.CheckpointManager` at `<workdir>/checkpoints`."""

    def __init__(self, workdir: str, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, force: bool = False) -> bool:
        """Starts an async save of `state` at `step` (returns at once; `wait()` blocks)."""
        return self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def restore(self, abstract_state: Any, shardings: Any, step: int | None = None) -> Any:
        """Restores `step` (default: latest) into arrays with the given shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        target = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, shardings
        )
        return self.manager.restore(step, args=ocp.args.StandardRestore(target))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
