"""What SSL costs: step time of DeepLab-v2 ResNet-101 at 321x321 with and without the structure-sensitive
loss (goal: ratio <= 1.05), and the joint computation alone (jitted segment reductions) against a
straightforward numpy implementation (jhuman.ops.ssl_reference).

  python benchmarks/ssl_loss.py                  # CPU-sized: batch 2, 3 timed steps each, interleaved
  python benchmarks/ssl_loss.py --batch 10 --steps 20   # on an accelerator
  jhuman bench ssl_loss [--batch 10 --steps 20]  # the same from the repository root

The two step variants are timed alternately (A B A B ...) so that load on the machine affects both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from common import report, step_runner, time_calls  # noqa: E402  (benchmarks/common.py, beside this script)

from jhuman import config as config_lib  # noqa: E402
from jhuman.ops import ssl, ssl_reference  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "parsing.py")


def step_ratio(batch, steps, dtype):
    runners = {}
    for name, arg in (("plain", "ssl=off"), ("ssl", "ssl=on")):
        config = config_lib.load_config(f"{CONFIG}:size=full,data=synthetic,model=deeplab_resnet,{arg}")
        overrides = [f"train.batch_size={batch}", "ssl.start_step=0"] + (
            [f"train.compute_dtype={dtype}"] if dtype else []
        )
        runners[name] = step_runner(config_lib.apply_overrides(config, overrides), batch)[0]
        runners[name]()  # compile
        runners[name]()
    times = {name: [] for name in runners}
    for _ in range(steps):
        for name, run in runners.items():
            times[name] += time_calls(run, 1, warmup=0)
    plain, with_ssl = statistics.median(times["plain"]), statistics.median(times["ssl"])
    return [
        {
            "what": "train step, DeepLab-v2 ResNet-101 321x321",
            "batch": batch,
            "dtype": dtype or "config",
            "plain_ms": round(plain * 1e3, 1),
            "ssl_ms": round(with_ssl * 1e3, 1),
            "ratio": round(with_ssl / plain, 4),
        }
    ]


def joints_alone(batch, repeats):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 20, (batch, 41, 41)).astype(np.int32)
    pred = rng.integers(0, 20, (batch, 41, 41)).astype(np.int32)
    jitted = jax.jit(ssl.joint_loss)
    jax_s = statistics.median(time_calls(lambda: jitted(gt, pred).block_until_ready(), repeats, warmup=2))
    numpy_s = statistics.median(time_calls(lambda: ssl_reference.joint_loss(gt, pred), max(3, repeats // 20)))
    return [
        {
            "what": f"joint loss alone (centres + heatmaps), {batch}x41x41",
            "batch": batch,
            "jax_ms": round(jax_s * 1e3, 3),
            "numpy_ms": round(numpy_s * 1e3, 2),
            "speedup": round(numpy_s / jax_s, 1),
        }
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=0, help="default: 2 on CPU, 10 on an accelerator")
    parser.add_argument(
        "--steps", type=int, default=0, help="timed steps per variant (default 3 CPU, 20 GPU)"
    )
    parser.add_argument(
        "--dtype", default="", help="compute dtype (default float32 on CPU, config otherwise)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    on_cpu = jax.default_backend() == "cpu"
    batch = args.batch or (2 if on_cpu else 10)
    rows = step_ratio(batch, args.steps or (3 if on_cpu else 20), args.dtype or ("float32" if on_cpu else ""))
    rows += joints_alone(10, 200)
    report(
        "ssl_loss",
        rows,
        ["what", "batch", "dtype", "plain_ms", "ssl_ms", "ratio", "jax_ms", "numpy_ms", "speedup"],
        args.json,
    )


if __name__ == "__main__":
    main()
