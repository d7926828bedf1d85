"""Smoke test of benchmarks/posewarp.py at a tiny size: it runs as a user runs it and writes the rows its table
promises (the pattern of tests/test_benchmark_matting.py)."""

import json
import sys

from support import run


def test_posewarp_benchmark_writes_every_row(tmp_path):
    out = tmp_path / "posewarp.json"
    # The baseline (one U-Net) compiles in a third of the modular generator's time; both run the same code.
    args = ["--size", "tiny", "--models", "unet", "--stages", "vgg", "--steps", "1", "--gen_batch", "2"]
    args += ["--warp_sizes", "32", "--warp_batch", "2"]
    # XLA's LLVM passes at their cheapest: the same programs, compiled in half the time.
    fast = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    run([sys.executable, "benchmarks/posewarp.py", *args, "--json", str(out)], XLA_FLAGS=fast)
    rows = json.loads(out.read_text())["rows"]
    assert [r["what"] for r in rows] == ["train unet vgg", "generate unet", "warp_limbs"]
    train, generate, warp = rows
    assert train["input"] == "64x64" and train["batch"] == 8 and train["img_per_s"] > 0
    assert generate["input"] == "64x64" and generate["batch"] == 2 and generate["img_per_s"] > 0
    assert warp["input"] == "32x32" and warp["reference_ms"] > 0 and warp["speedup"] > 0
    assert warp["max_abs_diff"] < 1e-4  # the one-gather warp agrees with the numpy loop
