"""One table of a benchmark suite run (benchmarks/accelerator.sh): OUT_DIR/results.md and results.json from the
scripts' JSONs in OUT_DIR/json/ and their exit statuses in OUT_DIR/json/_status.tsv (name, exit, seconds,
command; tab-separated).

  python benchmarks/suite_table.py OUT_DIR --command "bash benchmarks/accelerator.sh" --device "NVIDIA H200"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os


def read_status(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "/")


def table(rows: list[dict]) -> list[str]:
    """Markdown table of `rows` over the union of their scalar columns (long strings and nested values, such as
    the tf.data options, stay in the JSON)."""
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            nested = isinstance(value, (dict, list)) or (isinstance(value, str) and len(value) > 60)
            if not nested and key not in columns:
                columns.append(key)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]


def combine(out_dir: str, command: str, device: str = "", jax_devices: str = "", missing: str = "") -> str:
    """Writes out_dir/results.md and results.json; returns the markdown."""
    status = read_status(os.path.join(out_dir, "json", "_status.tsv"))
    runs = {}
    for name, *_ in status:
        path = os.path.join(out_dir, "json", f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                runs[name] = json.load(f)
    machine = next((r["machine"] for r in runs.values() if "machine" in r), {})
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Benchmark suite, {when}",
        "",
        f"- command: `{command}`",
        f"- device: {device or 'no nvidia-smi'}; jax: {jax_devices or machine.get('devices', 'not importable')}",
        f"- host: {machine.get('cpu', '?')} ({machine.get('cpu_count', '?')} cores)",
        f"- missing Python modules: {missing or 'none'}",
        "",
        "| run | exit | seconds | command |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {' | '.join(cell(v) for v in entry[:3])} | `{entry[3] if len(entry) > 3 else ''}` |"
        for entry in status
    ]
    for name, result in runs.items():
        lines += ["", f"## {name}", "", *table(result.get("rows", []))]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    summary = {"written": when, "command": command, "device": device, "jax_devices": jax_devices}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({**summary, "missing": missing.split(), "status": status, "runs": runs}, f, indent=1)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--command", default="bash benchmarks/accelerator.sh")
    parser.add_argument("--device", default="", help="the accelerator, as nvidia-smi names it")
    parser.add_argument("--jax_devices", default="", help="jax.devices(), in words")
    parser.add_argument("--missing", default="", help="Python modules the suite could not import")
    args = parser.parse_args(argv)
    print(combine(args.out_dir, args.command, args.device, args.jax_devices, args.missing), end="")
    print(f"wrote {os.path.join(args.out_dir, 'results.md')} and results.json")


if __name__ == "__main__":
    main()
