"""Shared helpers of the benchmark scripts: machine description, timing, table + JSON output."""

from __future__ import annotations

import json
import os
import platform
import time

import jax


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    devices = jax.devices()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "devices": f"{len(devices)} x {devices[0].device_kind}",
        "jax": jax.__version__,
    }


def time_calls(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of `fn()` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def first_and_median(fn, repeats: int) -> tuple[float, float]:
    """(seconds of the first call of `fn()`: compilation included, median seconds of `repeats` calls after one
    more warm-up call)."""
    import statistics

    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    return first, statistics.median(time_calls(fn, repeats, warmup=1))


def timing_row(what: str, size: str, shape: str, batch: int, dtype, compile_s: float, seconds: float) -> dict:
    """One row of a speed table: compile seconds, milliseconds per call and images per second."""
    return {
        "what": what,
        "size": size,
        "input": shape,
        "batch": batch,
        "dtype": str(dtype),
        "compile_s": round(compile_s, 2),
        "ms": round(seconds * 1e3, 2),
        "img_per_s": round(batch / seconds, 3),
    }


# A standing person's 14 joints (jhuman.ops.warp.JOINTS order), (x, y) in units of the image side.
STANDING_POSE = (
    (0.50, 0.12), (0.50, 0.22), (0.40, 0.24), (0.36, 0.37), (0.34, 0.50), (0.60, 0.24), (0.64, 0.37),
    (0.66, 0.50), (0.44, 0.52), (0.43, 0.68), (0.42, 0.85), (0.56, 0.52), (0.57, 0.68), (0.58, 0.85),
)  # fmt: skip


def posewarp_pairs(side: int, batch: int, seed: int = 0) -> dict:
    """numpy batch as input_pipeline.posewarp's train stream yields it: 'source', 'target' (B, S, S, 3) in
    [-1, 1] (smooth noise), 'source_joints', 'target_joints' (B, 14, 2) (a standing person, jittered; the
    target's arms raised by a random amount), 'source_visible', 'target_visible' (B, 14) all True."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)

    def images():
        noise = rng.uniform(-1, 1, (batch, max(side // 8, 2), max(side // 8, 2), 3)).astype(np.float32)
        return np.stack([cv2.resize(n, (side, side), interpolation=cv2.INTER_LINEAR) for n in noise])

    source_joints = (np.asarray(STANDING_POSE) + rng.normal(0, 0.01, (batch, 14, 2))) * side
    target_joints = source_joints.copy()
    lift = rng.uniform(0.05, 0.2, (batch, 1)) * side
    target_joints[:, [3, 6], 1] -= 0.5 * lift
    target_joints[:, [4, 7], 1] -= lift
    visible = np.ones((batch, 14), bool)
    return {
        "source": images(),
        "target": images(),
        "source_joints": source_joints.astype(np.float32),
        "target_joints": target_joints.astype(np.float32),
        "source_visible": visible,
        "target_visible": visible.copy(),
    }


def report(name: str, rows: list[dict], columns: list[str], path: str | None = None) -> str:
    """Prints a table of `rows` and writes {machine, rows} as JSON (default benchmarks/<name>.json)."""
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns), "-+-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    info = machine()
    print(f"{name} on {info['cpu']} ({info['cpu_count']} cores), jax {info['jax']} {info['devices']}")
    print("\n".join(lines))
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.json")
    with open(path, "w") as f:
        json.dump({"benchmark": name, "machine": info, "rows": rows}, f, indent=2)
    print(f"wrote {path}")
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def step_runner(config, batch_size: int):
    """(one_step, setup): `one_step()` runs the task's jitted train step on one fixed device-resident random
    batch (crop x crop images, random labels) and blocks until it is done."""
    import numpy as np

    from jhuman import sharding, train

    setup = train.build(config)
    step = train.make_train_step(setup)
    holder = {"state": jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))}
    crop = int(config.data.crop_size)
    rng = np.random.default_rng(0)
    host = {
        "image": rng.uniform(0, 255, (batch_size, crop, crop, 3)).astype(np.float32),
        "label": rng.integers(0, 20, (batch_size, crop, crop)).astype(np.int32),
    }
    device_batch = sharding.to_global(host, setup.mesh)

    def one_step():
        holder["state"], metrics = step(holder["state"], device_batch)
        jax.block_until_ready(metrics)

    return one_step, setup
