"""Semantic Human Matting speed: train-step images/s of each stage, inference images/s, and the metric suite
against its straightforward reference, in one run.

  python benchmarks/matting.py                              # CPU-sized: tiny stages, tiny inference, metrics
  python benchmarks/matting.py --size full --batch 10 --steps 20    # the paper's sizes, on an accelerator
  python benchmarks/matting.py --size tiny --steps 2 --infer 128 --metric_sizes 24x32 --json out.json  # smoke

Train steps (the library's own jitted step from configs/matting.py, the stage's optim groups, one fixed
device-resident random batch shaped as the stage's stream yields it; compile excluded, median of --steps):
  full: tnet 400x400, mnet 320x320, end2end 800x800 with the M-Net window resampled to 320 (PSPNet-50 and
  the VGG-16 M-Net at full width, batch --batch, default 10 on an accelerator, 1 on CPU);
  tiny: the tiny config (64x64 crops, window 32, width 8, batch 8).
Inference (`MattingTask.predict`, jitted: T-Net, softmax, M-Net, fusion) at 800x800 and 1920x1080 (padded to
1088x1920, as `jhuman predict` pads to multiples of 32), batch 1, with the --size models; `--infer` replaces
the two sizes (comma list of HxW or S).
Metrics: jhuman.metrics.matting.evaluate (the eight numbers of one image: SAD, MSE, Grad, Conn over the
trimap's unknown band and over the whole image) on a realistic alpha pair (a soft disc and a noisy prediction)
against jhuman.metrics.matting_reference.evaluate (plain loops) at each --metric_sizes (the reference takes
minutes at 1920x1080, so it is timed at smaller sizes; `--reference_max_pixels` skips it above), and the
vectorised suite alone at 1920x1080.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from common import first_and_median, report, time_calls, timing_row  # noqa: E402  (benchmarks/common.py, beside this script)

from jhuman import config as config_lib  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "matting.py")
STAGES = ("tnet", "mnet", "end2end")


def load(stage: str, size: str, overrides=()):
    config = config_lib.load_config(f"{CONFIG}:stage={stage},size={size},tnet=/nonexistent,mnet=/nonexistent")
    config_lib.apply_overrides(config, ["train.num_pictures=0", *overrides])
    with config.unlocked():
        config.init = config_lib.section(config_lib.INIT)  # timing only: nothing is restored
    return config


def random_batch(config, batch: int, rng) -> dict:
    """What the stage's train_stream yields (input_pipeline.matting), random but shaped alike."""
    stage = config.matting.stage
    side = int(config.data.mnet_size if stage == "mnet" else config.data.crop_size)
    alpha = rng.uniform(0, 1, (batch, side, side, 1)).astype(np.float32)
    out = {
        "image": rng.uniform(0, 255, (batch, side, side, 3)).astype(np.float32),
        "trimap": rng.integers(0, 3, (batch, side, side)).astype(np.int32),
    }
    if stage != "tnet":
        out.update(
            alpha=alpha,
            fg=rng.uniform(0, 1, (batch, side, side, 3)).astype(np.float32),
            bg=rng.uniform(0, 1, (batch, side, side, 3)).astype(np.float32),
            has_fg_bg=np.ones(batch, bool),
        )
    if stage == "end2end":
        window = max(int(config.data.mnet_size), side // 2)
        out["window"] = np.tile(np.array([[side // 4, side // 4, window]], np.int32), (batch, 1))
    return out


def bench_step(stage, size, batch, steps, dtype):
    from jhuman import sharding, train

    overrides = [f"train.batch_size={batch}"] + ([f"train.compute_dtype={dtype}"] if dtype else [])
    config = load(stage, size, overrides)
    setup = train.build(config)
    step = train.make_train_step(setup)
    holder = {"state": jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))}
    device_batch = sharding.to_global(random_batch(config, batch, np.random.default_rng(0)), setup.mesh)

    def one():
        holder["state"], metrics = step(holder["state"], device_batch)
        jax.block_until_ready(metrics)

    compile_s, step_s = first_and_median(one, steps)
    side = config.data.mnet_size if stage == "mnet" else config.data.crop_size
    return timing_row(
        f"train {stage}",
        size,
        f"{side}x{side}" + (f" (window -> {config.data.mnet_size})" if stage == "end2end" else ""),
        batch,
        config.train.compute_dtype,
        compile_s,
        step_s,
    )


def bench_inference(size, hw, steps, dtype):
    from jhuman.tasks import matting

    config = load("end2end", size, [f"train.compute_dtype={dtype}"] if dtype else [])
    task = matting.MattingTask(config)
    variables = jax.jit(task.init)(jax.random.key(0))
    padded = tuple(32 * -(-s // 32) for s in hw)
    images = jax.device_put(np.random.default_rng(0).uniform(0, 255, (1, *padded, 3)).astype(np.float32))
    predict = jax.jit(lambda v, x: task.predict(v, x)["alpha"])

    def one():
        jax.block_until_ready(predict(variables, images))

    compile_s, s = first_and_median(one, steps)
    return timing_row(
        "inference",
        size,
        f"{hw[0]}x{hw[1]}" + (f" (padded {padded[0]}x{padded[1]})" if padded != tuple(hw) else ""),
        1,
        config.train.compute_dtype,
        compile_s,
        s,
    )


def alpha_pair(h, w, seed=0):
    """A soft disc (ground truth), a noisy, blurred, shifted prediction of it and the disc's trimap."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h / 2) / (0.35 * h), (xx - w / 2) / (0.3 * w))
    gt = np.clip((1.0 - r) * 8.0, 0, 1)
    pred = np.clip(cv2.GaussianBlur(np.roll(gt, 2, axis=1), (5, 5), 1.5) + rng.normal(0, 0.05, (h, w)), 0, 1)
    band = max(2, round(0.02 * max(h, w)))
    fg = cv2.erode((gt >= 1).astype(np.uint8), np.ones((band, band), np.uint8))
    anything = cv2.dilate((gt > 0).astype(np.uint8), np.ones((band, band), np.uint8))
    trimap = np.where(fg > 0, 255, np.where(anything > 0, 128, 0)).astype(np.uint8)
    return pred, gt, trimap


def bench_metrics(hw, repeats, reference_max_pixels):
    from jhuman.metrics import matting, matting_reference

    pred, gt, trimap = alpha_pair(*hw)
    fast = statistics.median(time_calls(lambda: matting.evaluate(pred, gt, trimap), repeats, warmup=1))
    row = {"what": "metrics", "input": f"{hw[0]}x{hw[1]}", "ms": round(fast * 1e3, 3)}
    if hw[0] * hw[1] <= reference_max_pixels:
        t = time.perf_counter()
        reference = matting_reference.evaluate(pred, gt, trimap)
        slow = time.perf_counter() - t
        ours = matting.evaluate(pred, gt, trimap)
        worst = max(abs(ours[k] - reference[k]) / max(abs(reference[k]), 1e-12) for k in reference)
        row.update(
            reference_ms=round(slow * 1e3, 1), speedup=round(slow / fast, 1), max_rel_diff=float(worst)
        )
    return row


def parse_hw(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w or h)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", default="", help="tiny | full | tiny,full (default: tiny on CPU, both elsewhere)"
    )
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--batch", type=int, default=0, help="full-size batch (default 10; 1 on CPU)")
    parser.add_argument("--steps", type=int, default=0, help="timed calls (default 10 tiny, 3 full on CPU)")
    parser.add_argument("--dtype", default="", help="compute dtype override (float32 / bfloat16)")
    parser.add_argument("--infer", default="800,1080x1920", help="inference sizes: comma list of S or HxW")
    parser.add_argument("--metric_sizes", default="135x240,1080x1920", help="comma list of HxW")
    parser.add_argument("--reference_max_pixels", type=int, default=200_000)
    parser.add_argument("--no_train", action="store_true", help="skip the train steps")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    on_cpu = jax.default_backend() == "cpu"
    sizes = (args.size or ("tiny" if on_cpu else "tiny,full")).split(",")
    rows = []
    for size in sizes:
        full = size == "full"
        steps = args.steps or (3 if full and on_cpu else 10)
        dtype = args.dtype or ("float32" if on_cpu else "")
        if not args.no_train:
            for stage in args.stages.split(","):
                batch = (args.batch or (1 if on_cpu else 10)) if full else 8
                rows.append(bench_step(stage, size, batch, steps, dtype))
                print(rows[-1], flush=True)
        for hw in args.infer.split(","):
            rows.append(bench_inference(size, parse_hw(hw), steps, dtype))
            print(rows[-1], flush=True)
    for hw in args.metric_sizes.split(","):
        rows.append(bench_metrics(parse_hw(hw), 3, args.reference_max_pixels))
        print(rows[-1], flush=True)
    columns = ["what", "size", "input", "batch", "dtype", "compile_s", "ms", "img_per_s", "reference_ms"]
    report("matting", rows, columns + ["speedup", "max_rel_diff"], args.json)


if __name__ == "__main__":
    main()
