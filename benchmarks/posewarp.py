"""Pose-guided synthesis speed: train-step images/s of each stage (modular generator and U-Net baseline),
generation images/s, and the limb warp against its straightforward numpy implementation, in one run.

  python benchmarks/posewarp.py                              # CPU-sized: tiny stages and generation, warps
  python benchmarks/posewarp.py --size tiny,full --steps 10  # + the paper's 256x256 sizes (an accelerator)
  python benchmarks/posewarp.py --size tiny --models modular --stages vgg --steps 1 --warp_sizes 32 --json o.json

Train steps (the library's own jitted step from configs/posewarp.py:model=M,stage=S,size=Z, its optim groups
and, for stage gan, the task's update hook: a discriminator step then a generator step; one fixed
device-resident random batch shaped as input_pipeline.posewarp's train stream yields it: two images in
[-1, 1] and two poses of a standing person; compile excluded, median of --steps):
  full: 256x256, the paper's widths (64) and its VGG-19 (width 64) for the perceptual loss, batch --batch
  (default 4, the paper's; 1 on CPU); tiny: the tiny config (64x64, generator width 16 since 2026-12-01, width
  8 before; discriminator and VGG width 8), batch 8.
  The VGG-19 weights and statistics are the task's placeholders (zeros and ones: no weight file is read); the
  loss costs what it costs with real weights. Stage gan starts from scratch here (no stage-1 workdir).
Generation (`PoseWarpTask.predict`, jitted: pose maps, limb prior and transforms, the generator) at each
--size, batch --gen_batch (default 1 on CPU, 8 elsewhere), for each --models.
Warp: jhuman.ops.warp.warp_limbs (jitted, the 10 masked layers in one gather) against
jhuman.ops.warp_reference.warp_limbs (numpy, a loop over limbs) at each --warp_sizes (batch --warp_batch),
on a softmax of random logits and the transforms of two poses, with the largest absolute difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(_HERE) not in sys.path:  # run as a script: `benchmarks.common` from the repository root
    sys.path.insert(0, os.path.dirname(_HERE))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import first_and_median, posewarp_pairs, report, time_calls, timing_row  # noqa: E402
from jhuman import config as config_lib  # noqa: E402

CONFIG = os.path.join(os.path.dirname(_HERE), "configs", "posewarp.py")
MODELS = ("modular", "unet")
STAGES = ("vgg", "gan")


def load(model: str, stage: str, size: str, overrides=()):
    config = config_lib.load_config(f"{CONFIG}:model={model},stage={stage},size={size}")
    config_lib.apply_overrides(config, ["train.num_pictures=0", *overrides])
    with config.unlocked():
        config.init = config_lib.section(config_lib.INIT)  # timing only: nothing is restored
    return config


def bench_step(model, stage, size, batch, steps, dtype):
    from jhuman import sharding, train

    overrides = [f"train.batch_size={batch}"] + ([f"train.compute_dtype={dtype}"] if dtype else [])
    config = load(model, stage, size, overrides)
    setup = train.build(config)
    step = train.make_train_step(setup)
    holder = {"state": jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))}
    side = int(config.data.image_size)
    device_batch = sharding.to_global(posewarp_pairs(side, batch), setup.mesh)

    def one():
        holder["state"], metrics = step(holder["state"], device_batch)
        jax.block_until_ready(metrics)

    compile_s, step_s = first_and_median(one, steps)
    return timing_row(
        f"train {model} {stage}", size, f"{side}x{side}", batch, config.train.compute_dtype, compile_s, step_s
    )


def bench_generate(model, size, batch, steps, dtype):
    from jhuman import tasks

    config = load(model, "vgg", size, [f"train.compute_dtype={dtype}"] if dtype else [])
    task = tasks.build(config)
    variables = jax.jit(task.init)(jax.random.key(0))
    side = int(config.data.image_size)
    pairs = posewarp_pairs(side, batch, seed=1)
    inputs = jax.device_put({k: v for k, v in pairs.items() if k != "target"})
    predict = jax.jit(lambda v, x: task.predict(v, x)["image"])

    def one():
        jax.block_until_ready(predict(variables, inputs))

    compile_s, s = first_and_median(one, steps)
    return timing_row(
        f"generate {model}", size, f"{side}x{side}", batch, config.train.compute_dtype, compile_s, s
    )


def warp_inputs(side: int, batch: int, seed: int = 0):
    """(images (B, S, S, 3), masks (B, S, S, 11): a softmax of random logits plus the log limb prior,
    transforms (B, 10, 2, 3) of the batch's two poses)."""
    from jhuman.ops import warp

    pairs = posewarp_pairs(side, batch, seed)
    rng = np.random.default_rng(seed + 1)
    prior = np.asarray(
        warp.limb_prior(pairs["source_joints"], pairs["source_visible"], side, side, scale=side / 256)
    )
    logits = rng.normal(0, 1, prior.shape) + np.log(prior + 1e-10)
    masks = np.exp(logits - logits.max(-1, keepdims=True))
    masks = (masks / masks.sum(-1, keepdims=True)).astype(np.float32)
    transforms = np.asarray(
        warp.limb_transforms(
            pairs["source_joints"], pairs["target_joints"], pairs["source_visible"], pairs["target_visible"]
        )
    )
    return pairs["source"], masks, transforms


def bench_warp(side, batch, repeats):
    from jhuman.ops import warp, warp_reference

    images, masks, transforms = warp_inputs(side, batch)
    device = jax.device_put((images, masks, transforms))
    fn = jax.jit(warp.warp_limbs)
    fast = statistics.median(time_calls(lambda: jax.block_until_ready(fn(*device)), repeats, warmup=1))
    t = time.perf_counter()
    reference = warp_reference.warp_limbs(images, masks, transforms)
    slow = time.perf_counter() - t
    ours = np.asarray(fn(*device))
    return {
        "what": "warp_limbs",
        "input": f"{side}x{side}",
        "batch": batch,
        "ms": round(fast * 1e3, 3),
        "reference_ms": round(slow * 1e3, 1),
        "speedup": round(slow / fast, 1),
        "max_abs_diff": float(np.max(np.abs(ours - reference))),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", default="", help="tiny | full | tiny,full (default: tiny on CPU, both elsewhere)"
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--batch", type=int, default=0, help="full-size train batch (default 4; 1 on CPU)")
    parser.add_argument(
        "--gen_batch", type=int, default=0, help="generation batch (default 1 on CPU, 8 else)"
    )
    parser.add_argument("--steps", type=int, default=0, help="timed calls (default 10 tiny, 3 full on CPU)")
    parser.add_argument("--dtype", default="", help="compute dtype override (float32 / bfloat16)")
    parser.add_argument("--warp_sizes", default="64,256", help="comma list of image sides")
    parser.add_argument("--warp_batch", type=int, default=4)
    parser.add_argument("--no_train", action="store_true", help="skip the train steps")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    on_cpu = jax.default_backend() == "cpu"
    sizes = (args.size or ("tiny" if on_cpu else "tiny,full")).split(",")
    models, stages = args.models.split(","), args.stages.split(",")
    for name, values, valid in (("--models", models, MODELS), ("--stages", stages, STAGES)):
        if set(values) - set(valid):
            parser.error(f"{name} {values}: each must be one of {list(valid)}")
    rows = []
    for size in sizes:
        full = size == "full"
        steps = args.steps or (3 if full and on_cpu else 10)
        dtype = args.dtype or ("float32" if on_cpu else "")
        for model in models:
            if not args.no_train:
                for stage in stages:
                    batch = (args.batch or (1 if on_cpu else 4)) if full else 8
                    rows.append(bench_step(model, stage, size, batch, steps, dtype))
                    print(rows[-1], flush=True)
            gen_batch = args.gen_batch or (1 if on_cpu else 8)
            rows.append(bench_generate(model, size, gen_batch, steps, dtype))
            print(rows[-1], flush=True)
    for side in args.warp_sizes.split(","):
        rows.append(bench_warp(int(side), args.warp_batch, 3))
        print(rows[-1], flush=True)
    columns = ["what", "size", "input", "batch", "dtype", "compile_s", "ms", "img_per_s", "reference_ms"]
    report("posewarp", rows, columns + ["speedup", "max_abs_diff"], args.json)


if __name__ == "__main__":
    main()
