"""Orbax checkpoints of the train state: async save, keep N, restore into any sharding.

The state is a plain dict of arrays (`step`, `params`, `model_state`, `opt_state`, optionally `ema_params`).
Restoring goes through an abstract tree that carries the target shardings, so a run saved on 8 devices can
resume on 1 (or the reverse).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import jax
import orbax.checkpoint as ocp

from jhuman import quiet

ITEM = "default"  # the manager's folder of a step's one item (what a plain PyTreeCheckpointer reads)


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (disk full, folder gone); the message is one line."""


class _ReportedWriteFailures(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" reports of the failed save's writer tasks (the
    same failure, already reported as one CheckpointSaveError line), logged whenever those tasks are
    garbage-collected; every other asyncio record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Task exception was never retrieved")


def _reason(error: BaseException) -> str:
    """The root OSError's text ('No space left on device'), also when a C++ writer reported it as
    "[os_error_code='28']"; else the error's first line, shortened."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        code = re.search(r"os_error_code='?(\d+)", str(seen))
        if code:
            return os.strerror(int(code.group(1)))
        seen = seen.__cause__ or seen.__context__
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


class Checkpoints:
    """A thin wrapper over `ocp.CheckpointManager` at `<workdir>/checkpoints`.

    Saves are asynchronous; a save that fails surfaces at the next `check()`, `save()` or `wait()` as one
    CheckpointSaveError naming the step, the folder and the last good checkpoint. Partial (temporary) folders
    of an interrupted save are removed when a run opens the folder again.
    """

    def __init__(self, workdir: str, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._saving: int | None = None
        # Installed before any save: a failed save's tasks may be collected before we report the failure.
        asyncio_logger = logging.getLogger("asyncio")
        if not any(isinstance(f, _ReportedWriteFailures) for f in asyncio_logger.filters):
            asyncio_logger.addFilter(_ReportedWriteFailures())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def finished_steps(self) -> list[int]:
        """Steps whose checkpoint is complete on disk (no temporary folder)."""
        return sorted(ocp.utils.checkpoint_steps(self.directory)) if os.path.isdir(self.directory) else []

    def _failed(self, error: BaseException) -> CheckpointSaveError:
        good = [s for s in self.finished_steps() if s != self._saving]
        last = f"step {good[-1]}" if good else "none"
        return CheckpointSaveError(
            f"could not save the checkpoint of step {self._saving} in {self.directory} ({_reason(error)}); "
            f"the run stopped. Last good checkpoint: {last}; free space (or fix the folder) and run the same "
            "command again to resume from it."
        )

    def check(self) -> None:
        """Raises CheckpointSaveError if the last asynchronous save has ended in an error (cheap: it only
        looks when no save is in progress)."""
        if self._saving is not None and not self.manager.is_saving_in_progress():
            self.wait()
            self._saving = None

    def save(self, step: int, state: Any, force: bool = False) -> bool:
        """Starts an async save of `state` at `step` (returns at once; `wait()` blocks). The previous save is
        finished first (orbax would wait for it anyway), so its failure is reported as its own."""
        self.wait()
        self._saving = step
        try:
            return self.manager.save(step, args=ocp.args.StandardSave(state), force=force)
        except Exception as e:
            raise self._failed(e) from None

    def restore(self, abstract_state: Any, shardings: Any, step: int | None = None) -> Any:
        """Restores `step` (default: latest) into arrays with the given shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step not in self.all_steps():
            raise FileNotFoundError(
                f"no checkpoint at step {step} in {self.directory}; available steps: {self.all_steps()}"
            )
        target = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, shardings
        )
        return self.manager.restore(step, args=ocp.args.StandardRestore(target))

    def wait(self) -> None:
        """Blocks until the pending save is written; CheckpointSaveError if it failed."""
        try:
            with quiet.native_notices_filtered(drop_on_error=True):
                self.manager.wait_until_finished()
        except Exception as e:
            raise self._failed(e) from None

    def close(self) -> None:
        """Waits and closes; errors were already raised by check/save/wait on the normal path."""
        try:
            with quiet.native_notices_filtered():
                self.manager.wait_until_finished()
        except Exception:
            pass
        finally:
            with quiet.native_notices_filtered():
                self.manager.close()
