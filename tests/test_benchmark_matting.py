"""Smoke test of benchmarks/matting.py at a tiny size: it runs as a user runs it and writes the rows its table
promises (the pattern of tests/test_benchmarks.py)."""

import json
import sys

from support import run


def test_matting_benchmark_writes_every_row(tmp_path):
    out = tmp_path / "matting.json"
    args = ["--size", "tiny", "--stages", "mnet", "--steps", "1", "--infer", "64", "--metric_sizes", "24x32"]
    # XLA's LLVM passes at their cheapest: the same programs, compiled in half the time.
    fast = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    run([sys.executable, "benchmarks/matting.py", *args, "--json", str(out)], XLA_FLAGS=fast)
    rows = json.loads(out.read_text())["rows"]
    assert [r["what"] for r in rows] == ["train mnet", "inference", "metrics"]
    train, infer, metrics = rows
    assert train["input"] == "64x64" and train["batch"] == 8 and train["img_per_s"] > 0
    assert infer["input"] == "64x64" and infer["img_per_s"] > 0
    assert metrics["input"] == "24x32" and metrics["reference_ms"] > 0 and metrics["speedup"] > 0
    assert metrics["max_rel_diff"] < 1e-4  # the vectorised suite agrees with the loop reference
