"""Ablation sweeps: the variants of one question, trained one after the other, compared in one table.

A sweep file (configs/ablations/<question>.py) defines `get_sweep(arg) -> {name: (config_spec, overrides)}`,
`config_spec` being `path/to/config.py:arg` and `overrides` a list of `a.b=value` strings.
`run_sweep` trains each variant in `<workdir>/<name>` (resuming what already ran) and writes
`<workdir>/sweep.json` and `<workdir>/sweep.md`, whose columns are the variants' tasks' `sweep_columns`.
"""

from __future__ import annotations

import importlib.util
import json
import os

from jhuman import config as config_lib


def load_sweep(spec: str) -> dict:
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise config_lib.ConfigError(f"sweep file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"jhuman_sweep_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise config_lib.ConfigError(f"sweep file {path!r} defines no get_sweep(arg)")
    return module.get_sweep(arg or None)


def task_columns(configs) -> tuple:
    """The sweep_columns of the configs' tasks, in order, each once: ((metric key, title, scale), ...)."""
    from jhuman import tasks

    columns = []
    for config in configs:
        columns += [c for c in tasks.task_class(config).sweep_columns if c not in columns]
    return tuple(columns)


def format_table(rows: list[dict], columns) -> str:
    """Markdown table: one row per variant, a column per (metric key, title, scale): the metric times scale
    ('-' where a row lacks it)."""
    header = "| variant | " + " | ".join(title for _, title, _ in columns) + " |"
    lines = [header, "|---|" + "---|" * len(columns)]
    for row in rows:
        values = " | ".join(f"{scale * row[key]:.2f}" if key in row else "-" for key, _, scale in columns)
        lines.append(f"| {row['variant']} | {values} |")
    return "\n".join(lines)


def run_sweep(spec: str, workdir: str, overrides=(), only=None) -> list[dict]:
    """Trains every variant (or those named in `only`) and returns one row of final val metrics each."""
    from jhuman import train

    variants = load_sweep(spec)
    if only:
        unknown = sorted(set(only) - set(variants))
        if unknown:
            raise config_lib.ConfigError(f"unknown sweep variants {unknown}; valid: {sorted(variants)}")
        variants = {k: v for k, v in variants.items() if k in only}
    configs = {
        name: config_lib.apply_overrides(
            config_lib.load_config(config_spec), [*variant_overrides, *overrides]
        )
        for name, (config_spec, variant_overrides) in variants.items()
    }
    columns = task_columns(configs.values())
    rows = []
    for name, (config_spec, variant_overrides) in variants.items():
        print(f"=== sweep variant {name}: {config_spec} {' '.join(variant_overrides)}", flush=True)
        summary = train.run(configs[name], os.path.join(workdir, name))
        rows.append(
            {
                "variant": name,
                "config": config_spec,
                "overrides": list(variant_overrides),
                **{k: v for k, v in summary.get("eval", {}).items() if isinstance(v, float)},
            }
        )
        _write(workdir, rows, columns)
    print(format_table(rows, columns))
    return rows


def _write(workdir: str, rows: list[dict], columns) -> None:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "sweep.json"), "w") as f:
        json.dump(rows, f, indent=2)
    with open(os.path.join(workdir, "sweep.md"), "w") as f:
        f.write(format_table(rows, columns) + "\n")
