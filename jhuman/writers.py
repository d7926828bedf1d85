"""Metrics out: `<workdir>/metrics.jsonl`, TensorBoard event files, and a console progress bar.

Only process 0 writes (`enabled=False` elsewhere turns every call into a no-op).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Mapping

import numpy as np


def _plain(value):
    """A JSON value: numbers and lists of them, NaN/Inf written as null (strict JSON has no NaN)."""
    value = np.asarray(value)
    plain = value.item() if value.size == 1 else value.tolist()
    if isinstance(plain, float) and not math.isfinite(plain):
        return None
    if isinstance(plain, list):
        return [
            None if isinstance(v, float) and not math.isfinite(v) else v for v in np.ravel(plain).tolist()
        ]
    return plain


class MetricWriter:
    """Scalars to JSONL + TensorBoard, images to TensorBoard (uint8 HWC RGB)."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        self.tb_dir = os.path.join(workdir, "tensorboard")
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(self.tb_dir, flush_secs=10)
            self._jsonl = open(self.jsonl_path, "a")

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self._tb.add_scalar(key, value, int(step))

    def write_resumed(self, step: int) -> None:
        """Marks a resume at `step`: rows above `step` written before this one were superseded (the run was
        killed after its last checkpoint and redoes those steps); a reader keeps only the rows after it."""
        if self.enabled:
            self._jsonl.write(json.dumps({"step": int(step), "resumed_from": int(step)}) + "\n")
            self._jsonl.flush()

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        for key, image in images.items():
            self._tb.add_image(key, np.asarray(image), int(step), dataformats="HWC")

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


class Progress:
    """A console progress bar: step, loss, img/s and ETA (tqdm when attached to a terminal or not)."""

    def __init__(self, total: int, initial: int, images_per_step: int, enabled: bool = True):
        self.images_per_step = images_per_step
        self.enabled = enabled
        self._last_time = time.perf_counter()
        self._last_step = initial
        self.images_per_second = float("nan")
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=1.0,
                smoothing=0.1,
            )

    def update(self, step: int, **postfix) -> None:
        now = time.perf_counter()
        if step > self._last_step and now > self._last_time:
            self.images_per_second = (step - self._last_step) * self.images_per_step / (now - self._last_time)
        if self.enabled:
            shown = {k: f"{v:.4g}" for k, v in postfix.items()}
            shown["img/s"] = f"{self.images_per_second:.1f}"
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(step - self._bar.n)
        self._last_time, self._last_step = now, step

    def write(self, text: str) -> None:
        if self.enabled:
            self._bar.write(text)

    def note(self, text: str) -> None:
        """A message that must be seen (resume, SIGTERM): through the bar, or on stderr when it is off."""
        if self.enabled:
            self._bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            self._bar.close()
