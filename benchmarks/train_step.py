"""Images/s of the parsing train step (tiny config; DeepLab-v2 ResNet-101 ASPP at 321x321) and of the input
pipeline that feeds it.

  python benchmarks/train_step.py                       # both cases, CPU-sized step counts
  python benchmarks/train_step.py --cases resnet101 --batch 10 --steps 20   # on an accelerator

The step is timed on one device-resident batch (compile excluded, `block_until_ready` each call); the
pipeline is timed separately on synthetic people in the LIP layout (decode + scale + pad + crop + flip).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
from common import report, step_runner, time_calls  # noqa: E402  (benchmarks/common.py, beside this script)

from jhuman import config as config_lib  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "parsing.py")
CASES = {
    "tiny": ("size=tiny,data=synthetic", []),  # (config arg, extra overrides)
    "resnet101": ("size=full,data=synthetic,model=deeplab_resnet", []),
    "vgg16": ("size=full,data=synthetic,model=deeplab_vgg", []),
}


def bench_case(name, batch, steps, dtype, cache_dir):
    arg, extra = CASES[name]
    config = config_lib.load_config(f"{CONFIG}:{arg}")
    overrides = [f"train.batch_size={batch}", f"data.cache_dir={cache_dir}", "data.synthetic_num=400", *extra]
    if dtype:
        overrides.append(f"train.compute_dtype={dtype}")
    config_lib.apply_overrides(config, overrides)
    one, setup = step_runner(config, batch)
    crop = int(config.data.crop_size)
    t = time.perf_counter()
    one()
    compile_s = time.perf_counter() - t
    times = time_calls(one, steps, warmup=1)
    step_s = statistics.median(times)

    # Input pipeline alone (this host, the task's real stream).
    batches = setup.task.train_batches(0, batch, 0, 1)
    next(batches)
    n = max(4, 64 // batch)
    t = time.perf_counter()
    for _ in range(n):
        next(batches)
    pipe_ips = n * batch / (time.perf_counter() - t)
    return {
        "case": name,
        "model": f"{config.model.backbone}+{config.model.head}",
        "crop": crop,
        "batch": batch,
        "dtype": str(config.train.compute_dtype),
        "compile_s": round(compile_s, 2),
        "step_ms": round(step_s * 1e3, 2),
        "train_img_per_s": round(batch / step_s, 2),
        "pipeline_img_per_s": round(pipe_ips, 1),
        "steps_timed": steps,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="tiny,resnet101", help=f"comma list of {sorted(CASES)}")
    parser.add_argument("--batch", type=int, default=0, help="global batch (default: 8 tiny, 2 full on CPU)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 20 tiny, 3 full on CPU)")
    parser.add_argument("--dtype", default="", help="compute dtype override (float32 / bfloat16)")
    parser.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(), "jhuman_bench"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    on_cpu = jax.default_backend() == "cpu"
    rows = []
    for name in args.cases.split(","):
        batch = args.batch or (8 if name == "tiny" else (2 if on_cpu else 10))
        steps = args.steps or (20 if name == "tiny" else (3 if on_cpu else 20))
        dtype = args.dtype or ("float32" if on_cpu else "")
        rows.append(bench_case(name, batch, steps, dtype, args.cache_dir))
    report(
        "train_step",
        rows,
        [
            "case",
            "model",
            "crop",
            "batch",
            "dtype",
            "compile_s",
            "step_ms",
            "train_img_per_s",
            "pipeline_img_per_s",
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
