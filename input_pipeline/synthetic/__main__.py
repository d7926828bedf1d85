"""python -m input_pipeline.synthetic bench | write --task TASK --out DIR --num N [--seed S]

TASK: parsing | personlab | matting | posewarp (datasets.TASKS).

`bench` times rendering and writing on ONE core (cv2 single-threaded, one process) and prints img/s.
"""

import argparse
import json
import shutil
import tempfile
import time

import cv2

from input_pipeline.synthetic import datasets, scene


def _rate(fn, n):
    fn(0)  # warm-up
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def bench(n, size):
    cv2.setNumThreads(1)
    print(f"one core, sides in {size} px, {n} samples each")
    print(f"  render_person_crop      {_rate(lambda i: scene.render_person_crop(0, i, size), n):7.1f} img/s")
    print(f"  render_scene (1-4 ppl)  {_rate(lambda i: scene.render_scene(0, i, size), n):7.1f} img/s")
    out = tempfile.mkdtemp()
    try:
        start = time.perf_counter()
        datasets.write_dataset("parsing", out, n, size=size, workers=1, verbose=False)
        print(f"  write_dataset(parsing)  {n / (time.perf_counter() - start):7.1f} img/s (render + JPEG/PNG)")
    finally:
        shutil.rmtree(out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m input_pipeline.synthetic")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--num", type=int, default=300)
    b.add_argument("--size", type=int, nargs=2, default=(128, 192))
    w = sub.add_parser("write")
    w.add_argument("--task", default="parsing", choices=sorted(datasets.TASKS))
    w.add_argument("--out", required=True)
    w.add_argument("--num", type=int, required=True)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--size", type=int, nargs="+", default=(128, 192), help="side, or lo hi")
    w.add_argument("--val_fraction", type=float, default=0.2)
    w.add_argument("--workers", type=int, default=None)
    w.add_argument("--json", action="store_true", help="print the counts as JSON on the last line")
    w.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "bench":
        bench(args.num, tuple(args.size))
    else:
        size = args.size[0] if len(args.size) == 1 else tuple(args.size)
        counts = datasets.write_dataset(
            args.task,
            args.out,
            args.num,
            args.seed,
            size,
            args.val_fraction,
            args.workers,
            verbose=not args.quiet,
        )
        print(json.dumps(counts) if args.json else counts)


if __name__ == "__main__":
    main()
