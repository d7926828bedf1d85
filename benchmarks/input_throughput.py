"""Can the host feed the step? Images/s of each task's real training stream per CPU core, against the train
step's consumption on this machine and against what an accelerator step would consume.

  python benchmarks/input_throughput.py                 # every task, full size: 1 / all cores, FLOPs
  python benchmarks/input_throughput.py --time_steps 2  # also time the train step (slow on CPU at full size)
  python benchmarks/input_throughput.py --no_flops      # the pipeline alone (quick)
  python benchmarks/input_throughput.py --peak_tflops 989 --mfu 0.5   # the accelerator to feed (default H200 bf16)
  python benchmarks/input_throughput.py --dtype float32,bfloat16      # one step (and row) per compute dtype

Tasks: 'parsing' = configs/parsing.py:size=full (DeepLab-v2 ResNet-101 ASPP; LIP layout, scales 0.6..1.4, crop
321, flip with the left/right swap), 'personlab' = configs/personlab.py:size=full (ResNet-101; COCO layout,
scale 0.7..1.3, rotation +-25 degrees, crop 401, up to 30 people), each on the project's synthetic people at the
full config's image size, generated once into --cache_dir by the first measurement, before its timing
(data.synthetic_num lowered to --synthetic_num so that generation is quick; the per-image work does not depend
on it, but so few files stay in the OS page cache: reading a real dataset from disk may cost more).
'matting_tnet', 'matting_mnet', 'matting_end2end' = configs/matting.py:stage=...,size=full (T-Net crops 400, M-Net
windows 320/480/640 resized to 320, end to end 800; the end-to-end stage without its two source runs: the
pipeline and the FLOPs do not depend on the weights), 'posewarp' = configs/posewarp.py:stage=vgg,size=full
(pairs of frames at 256x256 with the shared augmentation; random VGG-19 weights of the real width, statistics
over one batch). 'parsing_tiny', 'personlab_tiny', 'matting_tiny' (end to end) and 'posewarp_tiny' are the
tiny configs (smoke tests).

What is timed:
* pipeline: `jhuman.tasks.build(config).train_batches(0, batch, 0, 1)`, the stream `jhuman train` reads
  (decode, augment, the task's host-side encoding, batch), at the config's batch size, after
  --warmup batches, for at least --seconds. Each measurement runs in its own subprocess that restricts itself
  with os.sched_setaffinity to N cores BEFORE importing TensorFlow, so tf.data's thread pools and AUTOTUNE see
  N cores. `per_core` is the 1-core figure; `scaling` = all-core img/s / (N x 1-core img/s).
* FLOPs: XLA's cost analysis of the compiled train step (`jax.jit(step).lower(state, batch).compile()
  .cost_analysis()['flops']`, forward + backward + optimizer) on one real batch of --step_batch images from the
  stream, divided by the batch. (The optimizer's share is per step, not per image: negligible here.)
* step (--time_steps N): that compiled step run N times after one warm-up on the same batch (median), on the
  default device (this CPU, or the accelerator where there is one). --step_batch / --dtype default to 2 /
  float32 on CPU and to the config's (the paper's batch, bfloat16) elsewhere.
* accelerator: `accel_img_s = peak_tflops * 1e12 * mfu / flops_per_image`; `cores_to_feed` = accel_img_s /
  per_core (cores of THIS CPU, assuming the pipeline scales linearly: see `scaling`); `cores_cpu_step` the same
  for the step timed here (the fraction of one core that keeps it fed).

The stream's tf.data settings (input_pipeline/pipeline.py, the same for every task): the numpy loader mapped with
`tf.numpy_function`, `num_parallel_calls=tf.data.AUTOTUNE`, `deterministic=True`; `batch(drop_remainder=True)`,
`prefetch(AUTOTUNE)`; Options: `deterministic=True`, `threading.max_intra_op_parallelism=1`; OpenCV
single-threaded (`cv2.setNumThreads(1)`: tf.data supplies one loader per core). Each JSON row records them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The pose-guided synthesis step needs VGG-19 weights: random ones of the real width (the FLOPs are the same).
_POSEWARP = ("loss.vgg_weights=random:0", "loss.vgg_width=64", "loss.statistics_batches=1")
TASKS = {  # name -> (config file, config arg, overrides)
    "parsing": ("parsing.py", "size=full,data=synthetic,model=deeplab_resnet", ()),
    "personlab": ("personlab.py", "size=full,data=synthetic", ()),
    "matting_tnet": ("matting.py", "stage=tnet,size=full,data=synthetic", ()),
    "matting_mnet": ("matting.py", "stage=mnet,size=full,data=synthetic", ()),
    "matting_end2end": ("matting.py", "stage=end2end,size=full,data=synthetic", ("init.from_workdir=()",)),
    "posewarp": ("posewarp.py", "stage=vgg,size=full,data=synthetic", _POSEWARP),
    "parsing_tiny": ("parsing.py", "size=tiny,data=synthetic", ()),
    "personlab_tiny": ("personlab.py", "size=tiny,data=synthetic", ()),
    "matting_tiny": ("matting.py", "stage=end2end,size=tiny,data=synthetic", ("init.from_workdir=()",)),
    "posewarp_tiny": ("posewarp.py", "stage=vgg,size=tiny,data=synthetic", ()),
}
FULL_TASKS = [name for name in TASKS if not name.endswith("_tiny")]
TF_DATA_OPTIONS = (
    "map(numpy_function, num_parallel_calls=AUTOTUNE, deterministic=True); batch(drop_remainder=True); "
    "prefetch(AUTOTUNE); Options.deterministic=True, threading.max_intra_op_parallelism=1; cv2.setNumThreads(1)"
)
H200_BF16_DENSE_TFLOPS = 989.0  # vendor datasheet, SXM, dense (no sparsity)
COLUMNS = [
    "task",
    "crop",
    "batch",
    "pipe_1core_img_s",
    "cores",
    "pipe_all_img_s",
    "scaling",
    "gflop_per_img",
    "step_batch",
    "dtype",
    "cpu_step_img_s",
    "cores_cpu_step",
    "accel_img_s",
    "cores_to_feed",
]


def load_config(task, args, batch=0, dtype=""):
    """The task's config with the benchmark's overrides (imports jhuman.config: ml_collections, no jax)."""
    sys.path.insert(0, ROOT)
    from jhuman import config as config_lib

    file, arg, extra = TASKS[task]
    config = config_lib.load_config(f"{os.path.join(ROOT, 'configs', file)}:{arg}")
    overrides = [*extra, f"data.cache_dir={args['cache_dir']}", f"data.synthetic_num={args['synthetic_num']}"]
    if batch:
        overrides.append(f"train.batch_size={batch}")
    if dtype:
        overrides.append(f"train.compute_dtype={dtype}")
    return config_lib.apply_overrides(config, overrides)


# ---------------------------------------------------------------- work done in subprocesses (one per measure)


def worker_pipeline(job):
    """img/s of the task's training stream on job['cores'] cores (affinity already set by main)."""
    from jhuman import tasks

    config = load_config(job["task"], job)
    batch = int(config.train.batch_size)
    task = tasks.build(config)
    t = time.perf_counter()
    root = task.data_root()  # generates the synthetic data on first use: before the timing
    prepare_s = time.perf_counter() - t
    stream = task.train_batches(0, batch, 0, 1)
    try:
        images = [a for a in next(stream).values() if getattr(a, "ndim", 0) == 4]  # (B, H, W, C) arrays
        for _ in range(job["warmup"] - 1):
            next(stream)
        n, t = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t < job["seconds"]:
            next(stream)
            n += 1
        elapsed = time.perf_counter() - t
    finally:
        getattr(stream, "close", lambda: None)()
    crop = max(a.shape[1] for a in images)  # the images' side as trained (M-Net: its window, not crop_size)
    return {
        "batch": batch,
        "crop": crop,
        "batches": n,
        "img_s": n * batch / elapsed,
        "root": root,
        "prepare_s": prepare_s,
    }


def worker_step(job):
    """FLOPs per image of the compiled train step (XLA cost analysis) and, optionally, its img/s here."""
    import jax

    from jhuman import sharding, train

    on_cpu = jax.default_backend() == "cpu"
    step_batch = job["step_batch"] or (2 if on_cpu else 0)  # 0: the config's (the paper's) batch
    dtype = job["dtype"] or ("float32" if on_cpu else "")  # '': the config's (bfloat16 at full size)
    config = load_config(job["task"], job, batch=step_batch, dtype=dtype)
    batch = int(config.train.batch_size)
    setup = train.build(config)
    stream = setup.task.train_batches(0, batch, 0, 1)
    try:
        device_batch = sharding.to_global(next(stream), setup.mesh)
    finally:
        getattr(stream, "close", lambda: None)()
    state = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))
    t = time.perf_counter()
    compiled = train.make_train_step(setup).lower(state, device_batch).compile()
    compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax: one dict per computation
    out = {
        "step_batch": batch,
        "dtype": str(config.train.compute_dtype),
        "compile_s": round(compile_s, 1),
        "flops_per_img": float(cost["flops"]) / batch,
        "device": f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
    }
    if job["time_steps"]:
        times = []
        for _ in range(job["time_steps"] + 1):  # the first is a warm-up
            t = time.perf_counter()
            state, metrics = compiled(state, device_batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t)
        out["step_s"] = statistics.median(times[1:])
        out["step_img_s"] = batch / out["step_s"]
        out["steps_timed"] = job["time_steps"]
    return out


WORKERS = {"pipeline": worker_pipeline, "step": worker_step}


def run_worker(job: dict, cores: list[int] | None = None) -> dict:
    """Runs `job` in a fresh interpreter (pinned to `cores`); returns the dict its last stdout line holds."""
    job = dict(job, cores=cores)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(job)]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise RuntimeError(f"{job['mode']} worker for {job['task']} failed with exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_main(job: dict) -> None:
    if job.get("cores"):
        os.sched_setaffinity(0, job["cores"])  # before TensorFlow (and jax) size their thread pools
    sys.path.insert(0, ROOT)
    from jhuman import quiet

    quiet.import_tensorflow()  # without its start-up notices
    result = WORKERS[job["mode"]](job)
    print(json.dumps(result), flush=True)
    os._exit(0)  # tf.data / orbax threads must not delay or hang the exit of a measurement process


# ---------------------------------------------------------------- the benchmark


def bench_task(task, args, all_cores):
    base = {
        "task": task,
        "cache_dir": args.cache_dir,
        "synthetic_num": args.synthetic_num,
        "warmup": args.warmup,
        "seconds": args.seconds,
    }
    pipe = {}
    for n in sorted(args.cores, reverse=True):  # the first (most cores) generates the data, before its timing
        pipe[n] = run_worker(dict(base, mode="pipeline"), all_cores[:n])
        data = f"data {pipe[n]['root']} ({pipe[n]['prepare_s']:.1f} s to prepare)"
        print(f"[{task}] pipeline on {n} core(s): {pipe[n]['img_s']:.1f} img/s; {data}", flush=True)
    one = pipe.get(1, {}).get("img_s")
    most = max(pipe)
    row = {
        "task": task,
        "crop": pipe[most]["crop"],
        "batch": pipe[most]["batch"],
        "pipe_1core_img_s": round(one, 1) if one else None,
        "cores": most,
        "pipe_all_img_s": round(pipe[most]["img_s"], 1),
        "scaling": round(pipe[most]["img_s"] / (most * one), 2) if one and most > 1 else None,
        "pipe_img_s_by_cores": {str(n): round(pipe[n]["img_s"], 2) for n in sorted(pipe)},
        "per_core_img_s": round(one if one else pipe[most]["img_s"] / most, 2),
        "tf_data": TF_DATA_OPTIONS,
        "synthetic_num": args.synthetic_num,
        "peak_tflops": args.peak_tflops,
        "mfu": args.mfu,
    }
    if args.no_flops:
        return [row]
    rows = []
    for dtype in args.dtype.split(","):  # one compiled step (and row) per compute dtype
        step = run_worker(
            dict(
                base, mode="step", step_batch=args.step_batch, dtype=dtype.strip(), time_steps=args.time_steps
            ),
            all_cores,
        )
        print(f"[{task}] step: {json.dumps(step)}", flush=True)
        per_core = row["per_core_img_s"]
        accel = args.peak_tflops * 1e12 * args.mfu / step["flops_per_img"]
        rows.append(
            dict(
                row,
                step_batch=step["step_batch"],
                dtype=step["dtype"],
                compile_s=step["compile_s"],
                step_device=step["device"],
                gflop_per_img=round(step["flops_per_img"] / 1e9, 1),
                accel_img_s=round(accel, 1),
                cores_to_feed=math.ceil(accel / per_core),
            )
        )
        if "step_img_s" in step:
            rows[-1].update(
                cpu_step_s=round(step["step_s"], 3),
                cpu_step_img_s=_sig(step["step_img_s"]),
                cores_cpu_step=_sig(step["step_img_s"] / per_core),
                steps_timed=step["steps_timed"],
            )
    return rows


def _sig(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(FULL_TASKS), help=f"comma list of {sorted(TASKS)}")
    parser.add_argument(
        "--cores", default="1,all", help="comma list of core counts to pin to ('all' = every one)"
    )
    parser.add_argument(
        "--synthetic_num", type=int, default=300, help="synthetic people generated (train + val)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="batches read before timing the stream")
    parser.add_argument("--seconds", type=float, default=10.0, help="at least this long per pipeline measure")
    parser.add_argument("--no_flops", action="store_true", help="skip compiling the step (pipeline only)")
    parser.add_argument("--time_steps", type=int, default=0, help="train steps to time after one warm-up")
    parser.add_argument(
        "--step_batch", type=int, default=0, help="step batch (default 2 on CPU, config's else)"
    )
    parser.add_argument(
        "--dtype", default="", help="compute dtype(s), comma list (default float32 on CPU, the config's else)"
    )
    parser.add_argument("--peak_tflops", type=float, default=H200_BF16_DENSE_TFLOPS, help="accelerator peak")
    parser.add_argument("--mfu", type=float, default=0.5, help="model FLOPs utilisation assumed for it")
    parser.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(), "jhuman_bench"))
    parser.add_argument("--json", default=None, help="JSON path (default benchmarks/input_throughput.json)")
    args = parser.parse_args(argv)
    unknown = sorted({name.strip() for name in args.tasks.split(",")} - set(TASKS))
    if unknown:
        parser.error(f"--tasks: unknown task(s) {unknown}; valid: {sorted(TASKS)}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_worker"]:
        return worker_main(json.loads(argv[1]))
    args = parse_args(argv)
    all_cores = sorted(os.sched_getaffinity(0))
    args.cores = sorted(
        {len(all_cores) if c == "all" else min(int(c), len(all_cores)) for c in args.cores.split(",")}
    )
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import report  # benchmarks/common.py, beside this script (imports jax, starts no backend)

    rows = [row for name in args.tasks.split(",") for row in bench_task(name.strip(), args, all_cores)]
    report("input_throughput", rows, COLUMNS, args.json)


if __name__ == "__main__":
    main()
