"""What the persistent compilation cache saves: wall time and compile time of the same `jhuman train` run with
a cold cache, with the cache it filled, and with the cache off.

  python benchmarks/compile_cache.py                     # the tiny parsing config, 20 steps, three runs
  python benchmarks/compile_cache.py --steps 2 --runs cold,warm
  python benchmarks/compile_cache.py --config configs/personlab.py:size=tiny,data=synthetic
  python benchmarks/compile_cache.py --override train.num_pictures=0 --override eval.limit=8

Each run is `jhuman train --config <config> --workdir <a fresh temporary folder>` in its own process
(`jhuman.cli.main`, with jax.monitoring listeners: see below), with `JHUMAN_COMPILATION_CACHE` set
(jhuman/cli.py, `enable_compilation_cache`: the CLI's default is ~/.cache/jhuman/jax; entries are written for
computations that took at least 0.5 s to compile):
* cold: a fresh, empty cache folder (compiles everything and writes the cache);
* warm: the same folder again (a second `jhuman train` of the same config: every cached compilation a hit);
* off:  JHUMAN_COMPILATION_CACHE=off (the no-cache baseline, files already warm in the OS page cache).
They run in that order. `wall_s` covers the whole command: imports, data, train step, the final evaluation,
pictures and checkpoint; the synthetic data are generated beforehand so that no run pays for them. The
listeners give what the run spent compiling, apart from the rest of the wall time (which load on a shared
machine can move by more than the compilations take):
* `xla_s`: the XLA compilations, each also timed on a cache hit, when it is the cache read
  (/jax/core/compile/backend_compile_duration, `compiles` of them);
* `hits`: compilations read from the persistent cache; `written`: new cache entries (jax's
  /jax/compilation_cache/cache_misses, recorded on a write); the rest compiled in under 0.5 s, not worth caching;
* `trace_lower_s`: tracing to jaxprs and lowering to StableHLO, which the cache does not save.
`saved_s` / `xla_saved_s` = a run's time minus the warm run's; `cache_entries` / `cache_mb` = the cache folder
after the run (the warm run adding none shows that it compiled nothing worth caching).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = ("cold", "warm", "off")
CACHE_WORDS = {"cold": "fresh folder", "warm": "the folder run 'cold' filled", "off": "off"}
# `jhuman train` (jhuman.cli.main) with jax.monitoring listeners that sum what each run spent compiling.
RUNNER = """
import collections, json, os, sys
import jax.monitoring
seconds, counts = collections.defaultdict(float), collections.Counter()
def on_duration(event, duration, **kwargs):
    seconds[event] += duration
    counts[event] += 1
jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(lambda event, **kwargs: counts.update([event]))
from jhuman import cli
code = cli.main(sys.argv[1:])
with open(os.environ["JHUMAN_BENCH_EVENTS"], "w") as f:
    json.dump({"seconds": seconds, "counts": counts}, f)
sys.exit(code)
"""
EVENTS = {  # row column -> jax.monitoring event (jax/_src/dispatch.py, compiler.py, compilation_cache.py)
    "xla_s": "/jax/core/compile/backend_compile_duration",  # XLA compile, or the cache read on a hit
    "trace_lower_s": (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
    ),
    "hits": "/jax/compilation_cache/cache_hits",
    "written": "/jax/compilation_cache/cache_misses",  # recorded when a new entry is written
}


def prepare_data(config_arg: str, overrides: list[str]) -> str:
    """Generates the config's synthetic data (no run should time it); returns its folder."""
    sys.path.insert(0, ROOT)
    from jhuman import config as config_lib
    from jhuman import tasks

    config = config_lib.apply_overrides(config_lib.load_config(config_arg), overrides)
    return tasks.build(config).data_root()


def _env(**extra) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH", "")]))
    return env


def folder_size(path: str) -> tuple[int, float]:
    """(files, MB) under `path`."""
    files, size = 0, 0
    for parent, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(parent, name))
    return files, size / 2**20


def train_once(config_arg: str, overrides: list[str], cache: str, log_path: str) -> dict:
    """Wall seconds of one `jhuman train` in a fresh workdir (its output goes to log_path) and its compile
    events: {"wall_s", "seconds": {event: total}, "counts": {event: n}}."""
    workdir = tempfile.mkdtemp(prefix="jhuman_cc_run_")
    events = log_path + ".events.json"
    cmd = [sys.executable, "-c", RUNNER, "train", "--config", config_arg, "--workdir", workdir]
    cmd += [f"--config.{o}" for o in overrides]
    env = _env(JHUMAN_COMPILATION_CACHE=cache, JHUMAN_BENCH_EVENTS=events)
    try:
        with open(log_path, "w") as log:
            t = time.perf_counter()
            done = subprocess.run(cmd, env=env, stdout=log, stderr=log, cwd=ROOT)
            wall = time.perf_counter() - t
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode:
        with open(log_path) as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"jhuman train {' '.join(cmd[4:])} failed with exit {done.returncode}:\n{tail}")
    with open(events) as f:
        return {"wall_s": wall, **json.load(f)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/parsing.py:size=tiny,data=synthetic")
    parser.add_argument("--steps", type=int, default=20, help="train steps of each run")
    parser.add_argument("--synthetic_num", type=int, default=200, help="synthetic people (train + val)")
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)"
    )
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"comma list of {list(RUNS)}, run in that order"
    )
    parser.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(), "jhuman_bench"))
    parser.add_argument("--json", default=None, help="JSON path (default benchmarks/compile_cache.json)")
    args = parser.parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",")]
    if not set(runs) <= set(RUNS) or ("warm" in runs and "cold" not in runs):
        parser.error(f"--runs: a comma list of {list(RUNS)} ('warm' needs 'cold' before it)")
    config_arg = args.config if os.path.isabs(args.config.split(":")[0]) else os.path.join(ROOT, args.config)
    overrides = [
        f"train.steps={args.steps}",
        f"data.synthetic_num={args.synthetic_num}",
        f"data.cache_dir={args.cache_dir}",
        *args.override,
    ]
    print(f"data: {prepare_data(config_arg, overrides)}", flush=True)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import report  # benchmarks/common.py, beside this script

    cache = tempfile.mkdtemp(prefix="jhuman_cc_cache_")
    logs = tempfile.mkdtemp(prefix="jhuman_cc_logs_")
    rows = []
    try:
        for run in sorted(runs, key=RUNS.index):
            cache_here = "off" if run == "off" else cache
            result = train_once(config_arg, overrides, cache_here, os.path.join(logs, run))
            seconds, counts = result["seconds"], result["counts"]
            entries, mb = folder_size(cache)
            uses_cache = run != "off"
            rows.append(
                {
                    "run": run,
                    "cache": CACHE_WORDS[run],
                    "wall_s": round(result["wall_s"], 2),
                    "xla_s": round(seconds.get(EVENTS["xla_s"], 0.0), 2),
                    "compiles": counts.get(EVENTS["xla_s"], 0),
                    "trace_lower_s": round(sum(seconds.get(e, 0.0) for e in EVENTS["trace_lower_s"]), 2),
                    "hits": counts.get(EVENTS["hits"], 0) if uses_cache else None,
                    "written": counts.get(EVENTS["written"], 0) if uses_cache else None,
                    "cache_entries": entries if uses_cache else None,
                    "cache_mb": round(mb, 1) if uses_cache else None,
                    "config": args.config,
                    "steps": args.steps,
                }
            )
            print(f"[{run}] {json.dumps(rows[-1])}", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    warm = next((r for r in rows if r["run"] == "warm"), None)
    for row in rows:
        row["saved_s"] = round(row["wall_s"] - warm["wall_s"], 2) if warm else None
        row["xla_saved_s"] = round(row["xla_s"] - warm["xla_s"], 2) if warm else None
    columns = ["run", "cache", "wall_s", "saved_s", "xla_s", "xla_saved_s", "compiles", "hits", "written"]
    report("compile_cache", rows, columns + ["trace_lower_s", "cache_entries", "cache_mb"], args.json)
    print(f"logs of the runs: {logs}")


if __name__ == "__main__":
    main()
