"""`jhuman train | eval | predict | data | eval-parsing | sweep | bench`: parse arguments, call library code."""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys


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


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_train(args, overrides):
    from jhuman import config as config_lib
    from jhuman import train

    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    summary = train.run(config, args.workdir)
    if "eval" in summary:
        print(_format_eval(summary["eval"], config))
    print(f"workdir: {summary['workdir']}  (metrics.jsonl, tensorboard/, checkpoints/, eval/, pictures/)")


def _format_eval(results, config):
    if config.task == "parsing":
        from jhuman.metrics import parsing as parsing_metrics

        return parsing_metrics.format_table(results)
    return json.dumps(results, indent=2)


def _restore(workdir, overrides, step=None):
    import jax

    from jhuman import checkpoint, train
    from jhuman import config as config_lib

    config = config_lib.apply_overrides(config_lib.load_saved_config(workdir), overrides)
    setup = train.build(config)
    ckpt = checkpoint.Checkpoints(workdir)
    if ckpt.latest_step() is None:
        raise SystemExit(f"error: no checkpoint in {ckpt.directory}; train first")
    state = ckpt.restore(setup.abstract_state, setup.state_shardings, step)
    ckpt.close()
    return config, setup, state, int(jax.device_get(state["step"]))


def cmd_eval(args, overrides):
    from jhuman import train

    config, setup, state, step = _restore(args.workdir, overrides, args.step)
    results = train.evaluate(setup, state, args.split)
    path = train.write_eval(os.path.abspath(args.workdir), args.split, step, results)
    print(_format_eval(results, config))
    print(f"wrote {path}")


def cmd_predict(args, overrides):
    from jhuman import train

    _, setup, state, step = _restore(args.workdir, overrides)
    summary = setup.task.predict_folder(train.eval_variables(state), args.images, args.out)
    print(
        f"step {step}: wrote predictions for {summary['num_images']} images to {args.out} "
        f"({summary['num_skipped']} skipped)"
    )


def cmd_data(args, overrides):
    del overrides
    from input_pipeline import synthetic

    size = tuple(int(s) for s in args.size.split(","))
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
        raise SystemExit(
            f"error: no benchmark {path!r} (run from the repository root); available: {available}"
        )
    sys.argv = [path, *args.bench_args]
    # As `python <path>` does (runpy.run_path does not): the script's folder first on sys.path, for the
    # helpers beside it (benchmarks/common.py).
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    runpy.run_path(path, run_name="__main__")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jhuman", description=__doc__)
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

    p = sub.add_parser("predict", help="predict a folder of images: pictures + machine-readable results")
    p.add_argument("--workdir", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_predict)

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


def main(argv: list[str] | None = None) -> int:
    _quiet_tf()
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = _overrides(extra, parser) if args.command != "bench" else []
    if extra and args.command in ("data", "eval-parsing"):
        parser.error(f"unrecognised arguments {extra}")
    from jhuman.config import ConfigError
    from jhuman.train import NonFiniteLossError

    try:
        args.fn(args, overrides)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
