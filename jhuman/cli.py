"""`jhuman train | eval | predict | animate | posewarp-stats | data | eval-parsing | eval-matting | sweep | bench`:
parse arguments, call library code.

Every failure is one line on stderr that names the file, key or argument and what to do, with a non-zero
exit status (2: a bad argument, config or input; 1: a run that failed: NaN loss, checkpoint not written,
...); `--debug` shows the traceback instead. Exit status 75 (EX_TEMPFAIL): the run was stopped by SIGTERM
after saving a checkpoint, and running the same command again resumes it (what schedulers requeue on).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import runpy
import sys
import threading


def _overrides(extra: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--config.a.b=value` (or `--config.a.b value`) pairs left over by argparse."""
    out, i = [], 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--config."):
            parser.error(f"unrecognised argument {item!r}")
        if "=" not in item:
            if i + 1 >= len(extra):
                parser.error(f"{item} needs a value")
            item, i = f"{item}={extra[i + 1]}", i + 1
        out.append(item)
        i += 1
    return out


EXIT_PREEMPTED = 75  # EX_TEMPFAIL: SIGTERM, checkpoint saved; run the same command again to resume
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UsageError(ValueError):
    """A bad command-line argument (one line, exit status 2)."""


def cmd_train(args, overrides):
    from jhuman import config as config_lib
    from jhuman import train

    config = config_lib.validate(config_lib.apply_overrides(config_lib.load_config(args.config), overrides))
    summary = train.run(config, args.workdir)
    if "preempted_at" in summary:
        return EXIT_PREEMPTED
    if "eval" in summary:
        print(_format_eval(summary["eval"], config))
    print(f"workdir: {summary['workdir']}  (metrics.jsonl, tensorboard/, checkpoints/, eval/, pictures/)")
    return 0


def _format_eval(results, config):
    from jhuman import tasks

    return tasks.task_class(config).format_eval(results)


def _restore(workdir, overrides, step=None):
    from jhuman import train

    return train.restore_workdir(workdir, overrides, step)


def cmd_eval(args, overrides):
    from jhuman import train

    eval_dir = os.path.join(os.path.abspath(args.workdir), "eval")
    try:  # before minutes of computing: the scores must have a place to go
        train.prepare_workdir(eval_dir)
        writable = True
    except train.WorkdirError as e:
        print(f"warning: {e}; the scores are printed only", file=sys.stderr)
        writable = False
    config, setup, state, step = _restore(args.workdir, overrides, args.step)
    results = train.evaluate(setup, state, args.split)
    print(_format_eval(results, config))
    print(json.dumps({"step": step, "split": args.split, **results}))
    if writable:
        print(f"wrote {train.write_eval(os.path.abspath(args.workdir), args.split, step, results)}")


def cmd_predict(args, overrides):
    from jhuman import train

    out = os.path.abspath(args.out)
    if args.video is not None:
        return _predict_video(args, overrides, out)
    images = os.path.abspath(args.images)
    if not os.path.isdir(images):
        raise UsageError(f"--images {args.images}: not a folder of images")
    if out == images or out.startswith(images + os.sep):
        raise UsageError(f"--out {args.out} is (inside) the --images folder; predictions would overwrite or mix "
                         "with the inputs: choose another --out")  # fmt: skip
    _, setup, state, step = _restore(args.workdir, overrides)
    summary = setup.task.predict_folder(train.eval_variables(state), args.images, args.out)
    print(
        f"step {step}: wrote predictions for {summary['num_images']} images to {args.out} "
        f"({summary['num_skipped']} skipped, {len(summary.get('converted', ()))} converted to 8-bit RGB: "
        "see the results JSON)"
    )


def _predict_video(args, overrides, out):
    from jhuman import train

    if not os.path.isfile(args.video):
        raise UsageError(f"--video {args.video}: no such file")
    if os.path.isfile(out):
        raise UsageError(f"--out {args.out} is a file; give a folder for the frames and videos")
    if os.path.abspath(args.video).startswith(out + os.sep):
        raise UsageError(f"--video {args.video} lies inside --out {args.out}, where the predicted videos are "
                         "written (alpha.mp4, composite.mp4, ...): choose another --out")  # fmt: skip
    _, setup, state, step = _restore(args.workdir, overrides)
    if not hasattr(setup.task, "predict_video"):
        raise UsageError(f"--video: the {setup.config.task!r} task predicts folders of images, not videos")
    try:
        summary = setup.task.predict_video(train.eval_variables(state), args.video, args.out)
    except ValueError as e:
        raise UsageError(f"--video {args.video}: {e}") from None
    streams = ", ".join(summary["streams"].values())
    print(
        f"step {step}: wrote {summary['num_frames']} frames of {args.video} to {args.out} ({streams}; "
        f"{'TRUNCATED: ' if summary['truncated'] else ''}{summary['reported_frames']} frames in its header)"
    )


def cmd_animate(args, overrides):
    from jhuman import animate, train
    from jhuman import config as config_lib

    fmt = args.format.lower().lstrip(".")
    if fmt not in animate.FORMATS:
        raise UsageError(f"--format {args.format!r} is not one of {list(animate.FORMATS)}")
    if not args.fps > 0:
        raise UsageError(f"--fps {args.fps}: must be > 0")
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch}: must be at least 1")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is a file, not a folder: choose another --out")
    inputs = animate.load_inputs(args.source, args.source_joints, args.source_video, args.source_frame,
                                 args.targets, args.frames)  # fmt: skip
    task = config_lib.load_saved_config(args.workdir).get("task")
    if task != "posewarp":
        raise UsageError(f"--workdir {args.workdir} holds a {task!r} run; animate needs a posewarp run")
    config, setup, state, step = _restore(args.workdir, overrides)
    generator = animate.task_generator(setup.task, train.eval_variables(state))
    summary = animate.animate(
        generator, inputs, args.out, int(config.data.image_size), fmt, args.fps, args.batch,
        progress=not args.quiet, info={"workdir": os.path.abspath(args.workdir), "step": step},
    )  # fmt: skip
    print(f"step {step}: wrote {summary['num_frames']} frames to {os.path.join(args.out, 'frames')}, "
          f"{os.path.join(args.out, summary['animation'])} and {os.path.join(args.out, summary['sheet'])}")  # fmt: skip


def cmd_posewarp_stats(args, overrides):
    from jhuman import config as config_lib
    from jhuman import tasks
    from jhuman.models import perceptual

    if not args.out.endswith(".npz"):
        raise UsageError(f"--out {args.out}: the statistics are written as .npz (e.g. vgg_statistics.npz)")
    if os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is a folder: name the .npz file to write")
    if args.batches is not None and args.batches < 1:
        raise UsageError(f"--batches {args.batches}: must be at least 1")
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    if config.get("task") != "posewarp":
        raise UsageError(f"--config {args.config} is a {config.get('task')!r} config; posewarp-stats needs "
                         "configs/posewarp.py")  # fmt: skip
    if args.batches is not None:
        with config.unlocked():
            config.loss.statistics_batches = args.batches
    config = config_lib.validate(config)
    loss = config.loss
    vgg, weights_id = perceptual.load_vgg19(loss.vgg_weights, width=int(loss.vgg_width))
    # The task's own computation (its training stream: sources and targets, the config's preprocessing).
    statistics = tasks.build(config).compute_statistics(vgg, weights_id)
    path = perceptual.save_statistics(statistics, args.out)
    print(f"wrote {path} (weights {statistics.weights}, preprocessing {statistics.preprocessing}): train with "
          f"--config.loss.vgg_statistics={path}")  # fmt: skip


def cmd_data(args, overrides):
    del overrides
    from input_pipeline import synthetic

    if args.num < 1:
        raise UsageError(f"--num {args.num}: write at least one image")
    if args.task not in synthetic.TASKS:
        raise UsageError(f"--task {args.task!r} is not one of {list(synthetic.TASKS)}")
    try:
        size = tuple(int(s) for s in args.size.split(","))
        if not 1 <= len(size) <= 2 or min(size) < 16 or (len(size) == 2 and size[0] > size[1]):
            raise ValueError
    except ValueError:
        raise UsageError(f"--size {args.size!r}: one side length, or min,max (integers >= 16)") from None
    if not 0.0 <= args.val_fraction < 1.0:
        raise UsageError(f"--val_fraction {args.val_fraction}: must be in [0, 1)")
    counts = synthetic.write_dataset(
        args.task,
        args.out,
        num=args.num,
        seed=args.seed,
        size=size if len(size) > 1 else size[0],
        val_fraction=args.val_fraction,
    )
    print(f"wrote {counts} to {args.out}")


def cmd_eval_parsing(args, overrides):
    del overrides
    from jhuman.metrics import parsing as parsing_metrics

    ids = None
    if args.ids:
        with open(args.ids) as f:
            ids = [line.strip() for line in f if line.strip()]
    results = parsing_metrics.evaluate_folders(
        args.gt_dir, args.pred_dir, ids=ids, num_classes=args.num_classes
    )
    print(parsing_metrics.format_table(results))
    for line in parsing_metrics.out_of_range_lines(results, args.num_classes):  # also in the table and JSON
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


def cmd_eval_matting(args, overrides):
    del overrides
    from jhuman.metrics import matting as matting_metrics
    from jhuman.metrics import matting_folders

    results = matting_folders.evaluate_folders(args.pred_dir, args.gt_dir, args.trimap_dir)
    print(matting_metrics.format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


def cmd_sweep(args, overrides):
    from jhuman import sweep

    only = args.only.split(",") if args.only else None
    sweep.run_sweep(args.config, args.workdir, overrides, only)
    print(f"wrote {os.path.join(args.workdir, 'sweep.md')} and sweep.json")


def cmd_bench(args, overrides):
    del overrides
    path = args.name if args.name.endswith(".py") else os.path.join("benchmarks", f"{args.name}.py")
    if not os.path.isfile(path):
        available = (
            sorted(f[:-3] for f in os.listdir("benchmarks") if f.endswith(".py"))
            if os.path.isdir("benchmarks")
            else []
        )
        raise UsageError(f"no benchmark {path!r} (run from the repository root); available: {available}")
    sys.argv = [path, *args.bench_args]
    # As `python <path>` does (runpy.run_path does not): the script's folder first on sys.path, for the
    # helpers beside it (benchmarks/common.py).
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    runpy.run_path(path, run_name="__main__")


def _one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """argparse reports a missing or malformed argument as its usage and then the message; this parser says it
    in one line naming the argument (exit status 2)."""

    def error(message):
        print(f"error: {parser.prog}: {message} (see {parser.prog} --help)", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)

    parser.error = error
    return parser


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jhuman", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (resumes from the workdir's latest checkpoint)")
    p.add_argument(
        "--config", required=True, help="configs/<name>.py[:arg], e.g. configs/parsing.py:size=tiny"
    )
    p.add_argument("--workdir", required=True)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser(
        "eval", help="evaluate a workdir's checkpoint; writes <workdir>/eval/<split>_<step>.json"
    )
    p.add_argument("--workdir", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser(
        "predict",
        help="predict a folder of images (or a video, frame by frame): pictures + machine-readable results",
    )
    p.add_argument("--workdir", required=True)
    inputs = p.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--images", help="a folder of images")
    inputs.add_argument("--video", help="a video file (tasks that predict videos: matting)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser(
        "animate",
        help="move a source person through another video's poses (a posewarp run): frames, GIF/MP4, sheet",
    )
    _one_line_errors(p)
    p.add_argument("--workdir", required=True, help="a trained posewarp run")
    p.add_argument("--source", default=None, help="source image (with --source_joints)")
    p.add_argument(
        "--source_joints", default=None, help='JSON: {"joints": 14 [x, y] (0-based), "box": [x, y, w, h]}'
    )
    p.add_argument("--source_video", default=None, help="or a video's info/<video>.mat (published layout)")
    p.add_argument("--source_frame", type=int, default=0, help="0-based frame of --source_video (default 0)")
    p.add_argument("--targets", required=True, help="the target poses: another video's info/<video>.mat")
    p.add_argument("--frames", default=None, help="a:b, the target frames (0-based, b excluded; default all)")
    p.add_argument("--out", required=True)
    p.add_argument("--format", default="gif", help="gif | mp4")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--batch", type=int, default=4, help="frames generated per call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_animate)

    p = sub.add_parser(
        "posewarp-stats",
        help="per-channel VGG-19 statistics of the perceptual loss over a posewarp config's training set (.npz)",
    )
    _one_line_errors(p)
    p.add_argument("--config", required=True, help="configs/posewarp.py[:arg]; its loss.vgg_weights and "
                   "loss.vgg_preprocessing are used")  # fmt: skip
    p.add_argument("--out", required=True, help="the .npz to write (loss.vgg_statistics can name it)")
    p.add_argument(
        "--batches", type=int, default=None, help="training batches (default loss.statistics_batches)"
    )
    p.set_defaults(fn=cmd_posewarp_stats)

    p = sub.add_parser("data", help="data tools: `jhuman data synth --task parsing --out DIR`")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="write synthetic people in a task's real on-disk format")
    s.add_argument("--task", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--num", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", default="128,192", help="side length, or min,max")
    s.add_argument("--val_fraction", type=float, default=0.2)
    s.set_defaults(fn=cmd_data)

    p = sub.add_parser("eval-parsing", help="the LIP protocol on PNG label maps")
    p.add_argument("--gt_dir", required=True)
    p.add_argument("--pred_dir", required=True)
    p.add_argument("--ids", default=None, help="file with one image id per line (default: every gt PNG)")
    p.add_argument("--json", default=None, help="write the scores here")
    p.add_argument("--num_classes", type=int, default=20)
    p.set_defaults(fn=cmd_eval_parsing)

    p = sub.add_parser(
        "eval-matting", help="the Deep Image Matting metrics (and SHM's whole-image ones) on alpha PNGs"
    )
    p.add_argument("--pred_dir", required=True, help="predicted alpha PNGs, named as the ground truth's")
    p.add_argument("--gt_dir", required=True, help="ground-truth alpha PNGs (8 or 16 bit, single channel)")
    p.add_argument(
        "--trimap_dir", default=None, help="trimap PNGs (128 = unknown); default: the whole image is unknown"
    )
    p.add_argument("--json", default=None, help="write the scores here")
    p.set_defaults(fn=cmd_eval_matting)

    p = sub.add_parser("sweep", help="train the variants of an ablation and print one table")
    p.add_argument("--config", required=True, help="configs/ablations/<question>.py[:arg]")
    p.add_argument("--workdir", required=True)
    p.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("bench", help="run benchmarks/<name>.py (from the repository root)")
    p.add_argument("name")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_bench)
    return parser


NEEDS_TENSORFLOW = ("train", "eval", "predict", "sweep", "data", "animate", "posewarp-stats")
COMPILES = ("train", "eval", "predict", "sweep", "animate", "posewarp-stats")


def compilation_cache_dir() -> str:
    """Where compiled steps persist between commands: $JHUMAN_COMPILATION_CACHE ('off' disables), else
    ~/.cache/jhuman/jax. A second `jhuman train` of the same config skips XLA compilation."""
    value = os.environ.get("JHUMAN_COMPILATION_CACHE", os.path.join("~", ".cache", "jhuman", "jax"))
    return "" if value.lower() in ("", "0", "off", "none") else os.path.expanduser(value)


def enable_compilation_cache() -> None:
    import jax

    path = compilation_cache_dir()
    if path and not jax.config.jax_compilation_cache_dir:  # a caller's own setting wins (tests set one)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    parser = make_parser()
    args, extra = parser.parse_known_args([a for a in argv if a != "--debug"])
    overrides = _overrides(extra, parser) if args.command != "bench" else []
    if extra and args.command in ("data", "eval-parsing", "eval-matting"):
        parser.error(f"unrecognised arguments {extra}")
    if args.command in NEEDS_TENSORFLOW:
        from jhuman import quiet

        quiet.import_tensorflow()
    if args.command in COMPILES:
        enable_compilation_cache()
    from jhuman.checkpoint import CheckpointSaveError
    from jhuman.config import ConfigError
    from jhuman.train import TrainError, WorkdirError

    if not debug:  # orbax logs through absl; its errors reach the user as our one line
        logging.getLogger("absl").setLevel(logging.CRITICAL)

    try:
        return int(args.fn(args, overrides) or 0)
    except Exception as e:
        if debug:
            raise
        if isinstance(e, (ConfigError, UsageError, WorkdirError, FileNotFoundError, NotADirectoryError)):
            code = EXIT_BAD_INPUT
        elif getattr(e, "exit_status", None) == EXIT_BAD_INPUT:  # bad data: NoUsableExamples, LabelMapError
            code = EXIT_BAD_INPUT
        else:
            code = EXIT_FAILED
        known = (ConfigError, UsageError, TrainError, CheckpointSaveError, OSError, ValueError)
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, known):
            message = f"{type(e).__name__}: {message} (run with --debug for the traceback)"
        from jhuman import quiet

        quiet.error_line(f"error: {message}")  # one write: a native thread's traceback cannot split it
        if isinstance(e, CheckpointSaveError):  # orbax's writers fail again while Python shuts down
            threading.excepthook = lambda hook_args: None
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        return code


def console_main() -> None:
    """The `jhuman` command: `main` with the process's stderr filtered (quiet.StderrFilter: native start-up
    notices and the tracebacks native threads print after a failed checkpoint write) unless --debug."""
    if "--debug" not in sys.argv[1:]:
        from jhuman import quiet

        quiet.StderrFilter()
    sys.exit(main())


if __name__ == "__main__":
    console_main()
