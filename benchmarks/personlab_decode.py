"""Time of PersonLab decoding (jhuman.ops.personlab.decode, jitted) against the plain numpy reference
(jhuman.ops.personlab.reference) on the same inputs, in the same run, from device arrays AND from numpy arrays.

  python benchmarks/personlab_decode.py                        # all cases and inputs, medians of several calls
  python benchmarks/personlab_decode.py --cases 401 --inputs realistic --repeats 20 --modes grid --feeds

Cases: '401' one 401x401 image with 5 people; '401x4' a batch of 4 such images; '1080p' one 1080x1920 image
with 40 people. All with the decoder's default options (capacities automatic by image size: 30 people / 256
candidates at 401x401, 57 / 920 at 1080p). Inputs, the first two built from PERFECT network outputs of hand-made people
(heatmap disks of radius R = 32, short / mid / long offsets, segmentation; as in tests/ops/test_personlab_decode.py):
- 'clean': plus a little noise (heatmap +U(0, 0.02), offsets +N(0, 0.3 / 0.5 / 1 px), segmentation +-0.2);
- 'realistic': what a network outputs (`realistic`): heatmap disks blurred, over a positive floor U(0.01, 0.03)
  on every pixel; offsets noisy on their supervised regions and smooth random fields (std R / 2, R, 2 R) outside
  them (nothing supervised them there); segmentation blurred + N(0, 0.1);
- 'model' (401x401 cases, with --workdir): what a trained PersonLab model (a `jhuman train` workdir, e.g. the
  tiny config) outputs for a mosaic of 9 synthetic scenes of one person each, 133 px square (the scale the tiny
  config trains on), its mid- and long-range offsets refined 2 steps when the model leaves that to the decoder
  (`load_model`), decoded with the model's own radius R (the tiny config's 10 px: Hough grid stride 2, masks
  per pixel); the error column then measures the model, not the decoder.
Everything is decoded: Hough voting, smoothing, peaks, greedy grouping, expected-OKS and person scores,
instance masks. Each jax row is timed from device arrays (put once before; `device`) and from the same arrays
as numpy (float32, C-contiguous; `numpy`: what a user holding another framework's outputs passes), the two
calls alternating so that they share the machine's load. Times exclude compilation (one warm-up call) and
include getting the results as numpy arrays (`to_numpy`: np.asarray of each output, which waits for it; on a
CPU device numpy then reads XLA's buffer in place, on an accelerator it copies; jax.device_get of the same
outputs costs 0.13 ms more per 401x401 image on the 2-core CPU, benchmarks/RESULTS.md); the median of
`repeats` calls is reported. The decoder's own
check: people found, the worst keypoint error against the truth, and the capacity counts (dropped people /
candidates, both 0 when nothing was dropped).

`--feeds` (401, one image) adds how a numpy input's time splits: what the landed decoder effectively did (jit
copied every numpy argument with jax.device_put: numpy allocates at 16 bytes, and XLA's CPU client aliases
host memory only at 64; `jnp.asarray` of the heatmaps copied them once more), one device_put of the tuple
(still a copy), and decode on the numpy arrays as they are now (read in place, jhuman.ops.personlab.fields),
plus float64, float16 and channels-first (permuted to H, W, C) numpy inputs.

Modes: 'grid' = the decoder's defaults (Hough votes sampled every hough_stride = R / 4 = 8 px onto an 8 px grid,
masks decided per 4 x 4 block; see jhuman.ops.personlab.hough.hough_grid and
jhuman.ops.personlab.grouping.assign_instance_masks); 'exact' = hough_stride = mask_stride = 1 (Eq. (1) at
every pixel, every pixel's mask decision, as the port computes).
The numpy reference runs with the same options as the jax rows above it. Both decode the outputs of a model
that refines its offsets itself (refine_steps=0: the paper's network, the port's model and jhuman's full
config do the recurrent refinement inside the network, so it is not post-processing).

Memory: XLA on CPU allocates its big buffers fresh on every call, and in a VM first-touch page faults of
4 kB pages cost as much as the arithmetic. By default the script re-executes itself with
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc >= 2.35: malloc asks for transparent huge pages; measured effect:
benchmarks/RESULTS.md); `--malloc default` measures the plain allocator. The column `malloc` says which was
used. Any jax program on CPU can set the same variable.

Goal: at least 50x faster than the widely used numpy port (octiapp/KerasPersonLab
post-processing: about 0.35 s for a 401x401 image with 4-6 people and about 13 s for a 1080p image with 40
people, on two CPU cores), i.e. <= 7 ms and <= 0.26 s per image on two CPU cores. `speedup_vs_port` divides
those published figures by the measured per-image time on THIS machine (a different CPU: indicative only);
`speedup_vs_reference` compares with our numpy reference measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.ndimage  # noqa: E402
from common import report  # noqa: E402  (benchmarks/common.py, beside this script)

from jhuman.classes import PERSONLAB_DIRECTED_EDGES  # noqa: E402
from jhuman.ops import personlab  # noqa: E402
from jhuman.ops.personlab import reference as personlab_reference  # noqa: E402

RADIUS = 32.0
PORT_SECONDS = {"401": 0.35, "401x4": 0.35, "1080p": 13.0}  # per image, the numpy port on two CPU cores
# (height, width, people, batch, half-height range of the people in px, decode options)
CASES = {
    "401": (401, 401, 5, 1, (55.0, 80.0), {}),
    "401x4": (401, 401, 5, 4, (55.0, 80.0), {}),
    "1080p": (1080, 1920, 40, 1, (85.0, 115.0), {}),
}
INPUTS = ("clean", "realistic", "model")  # model: needs --workdir (a trained PersonLab model)
MODEL = {}  # "predict": image -> the five outputs, "name": what was restored (set by --workdir)
MODES = {"grid": {}, "exact": {"hough_stride": 1, "mask_stride": 1}}
TEMPLATE = np.array(
    [
        [0.0, -0.88],
        [-0.07, -0.93],
        [0.07, -0.93],
        [-0.16, -0.9],
        [0.16, -0.9],
        [-0.27, -0.66],
        [0.27, -0.66],
        [-0.36, -0.3],
        [0.36, -0.3],
        [-0.42, 0.05],
        [0.42, 0.05],
        [-0.16, 0.02],
        [0.16, 0.02],
        [-0.18, 0.46],
        [0.18, 0.46],
        [-0.19, 0.9],
        [0.19, 0.9],
    ]
)


def make_people(rng, num, height, width, half_height):
    """People (num, 17, 3) [x, y, 2] with sub-pixel keypoints: a jittered grid of cells, one person per cell."""
    rows = max(1, int(round(np.sqrt(num * height / width))))
    cols = -(-num // rows)
    cells = rng.permutation(rows * cols)[:num]
    people = []
    for cell in cells:
        r, c = divmod(int(cell), cols)
        cell_h, cell_w = height / rows, width / cols
        s = min(rng.uniform(*half_height), 0.45 * cell_h, 0.9 * cell_w)
        cy = rng.uniform(r * cell_h + s + 2, (r + 1) * cell_h - s - 2)
        cx = rng.uniform(c * cell_w + 0.5 * s + 2, (c + 1) * cell_w - 0.5 * s - 2)
        points = TEMPLATE * s + [cx, cy] + rng.uniform(-0.05, 0.05, TEMPLATE.shape) * s
        people.append(np.concatenate([points, np.full((17, 1), 2.0)], axis=-1))
    return np.asarray(people)


def perfect_outputs(people, height, width, radius):
    """Ideal outputs (see tests/ops/test_personlab_decode.py), built per person in local windows."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    grid = np.stack([xs, ys], axis=-1)
    num_kp = people.shape[1]
    owner = np.full((num_kp, height, width), -1, np.int32)
    best = np.full((num_kp, height, width), np.inf, np.float32)
    for j, person in enumerate(people):
        for k, (x, y, v) in enumerate(person):
            if v <= 0:
                continue
            y0, y1 = max(int(y - radius) - 1, 0), min(int(y + radius) + 2, height)
            x0, x1 = max(int(x - radius) - 1, 0), min(int(x + radius) + 2, width)
            d = np.hypot(xs[y0:y1, x0:x1] - x, ys[y0:y1, x0:x1] - y)
            closer = (d <= radius) & (d < best[k, y0:y1, x0:x1])
            best[k, y0:y1, x0:x1][closer] = d[closer]
            owner[k, y0:y1, x0:x1][closer] = j
    disk = owner >= 0
    safe = np.maximum(owner, 0)
    heatmaps = np.moveaxis(disk, 0, -1).astype(np.float32)
    short = np.zeros((height, width, num_kp, 2), np.float32)
    for k in range(num_kp):
        short[:, :, k] = np.where(disk[k, ..., None], people[safe[k], k, :2] - grid, 0)
    mid = np.zeros((height, width, len(PERSONLAB_DIRECTED_EDGES), 2), np.float32)
    for e, (k, l) in enumerate(PERSONLAB_DIRECTED_EDGES):
        ok = disk[k] & (people[safe[k], l, 2] > 0)
        mid[:, :, e] = np.where(ok[..., None], people[safe[k], l, :2] - grid, 0)
    # person masks: an ellipse around each keypoint box (+8 px), overlaps belong to nobody
    count = np.zeros((height, width), np.int32)
    label = np.zeros((height, width), np.int32)
    for j, person in enumerate(people):
        lo, hi = person[:, :2].min(0), person[:, :2].max(0)
        centre, half = (lo + hi) / 2, (hi - lo) / 2 + 8
        y0, y1 = max(int(centre[1] - half[1]), 0), min(int(centre[1] + half[1]) + 2, height)
        x0, x1 = max(int(centre[0] - half[0]), 0), min(int(centre[0] + half[0]) + 2, width)
        inside = (
            ((xs[y0:y1, x0:x1] - centre[0]) / half[0]) ** 2 + ((ys[y0:y1, x0:x1] - centre[1]) / half[1]) ** 2
        ) <= 1
        count[y0:y1, x0:x1] += inside
        label[y0:y1, x0:x1][inside] = j
    mine = count == 1
    long = np.zeros((height, width, num_kp, 2), np.float32)
    long[mine] = people[label[mine], :, :2] - grid[mine][:, None, :]
    segmentation = mine.astype(np.float32)
    return heatmaps, short, mid, long, segmentation


def noisy(outputs, rng):
    heatmaps, short, mid, long, seg = outputs
    return (
        np.clip(heatmaps + rng.uniform(0, 0.02, heatmaps.shape), 0, 1).astype(np.float32),
        (short + rng.normal(0, 0.3, short.shape)).astype(np.float32),
        (mid + rng.normal(0, 0.5, mid.shape)).astype(np.float32),
        (long + rng.normal(0, 1.0, long.shape)).astype(np.float32),
        np.clip(seg + rng.uniform(-0.2, 0.2, seg.shape), 0, 1).astype(np.float32),
    )


def smooth_random(rng, shape, scale, stride=8):
    """A smooth random field (H, W, *C) float32: N(0, scale) values on a grid every `stride` px, bilinearly
    upsampled (what a network's stride-8 head outputs where nothing supervised it)."""
    height, width = shape[:2]
    coarse = scale * rng.standard_normal(
        (-(-height // stride) + 1, -(-width // stride) + 1, *shape[2:]), np.float32
    )
    size = (coarse.shape[0] * stride, coarse.shape[1] * stride, *shape[2:])
    return np.asarray(jax.image.resize(coarse, size, "linear"))[:height, :width]


def normal(rng, shape, std):
    return std * rng.standard_normal(shape, np.float32)


def realistic(outputs, rng, radius):
    """Perfect outputs made to look like a network's: heatmap disks blurred (Gaussian, sigma R / 8) and scaled by
    U(0.7, 1), over a positive floor U(0.01, 0.03) on EVERY pixel (every pixel votes); short / mid / long offsets
    off by N(0, 0.5 / 1 / 2 px) on their supervised regions (the disks, the person masks) and smooth random
    fields elsewhere (std R / 2, R, 2 R: nothing supervised them there); segmentation blurred, + N(0, 0.1)."""
    heatmaps, short, mid, long, seg = outputs
    disk = heatmaps > 0.5  # (H, W, 17) the supervised disks
    sigma = radius / 8
    heat = scipy.ndimage.gaussian_filter(heatmaps, (sigma, sigma, 0))
    heat *= rng.uniform(0.7, 1.0, heat.shape).astype(np.float32)
    heat += rng.uniform(0.01, 0.03, heat.shape).astype(np.float32)
    np.clip(heat, 0, 1, out=heat)
    short = np.where(
        disk[..., None], short + normal(rng, short.shape, 0.5), smooth_random(rng, short.shape, radius / 2)
    )
    mid_disk = disk[:, :, [k for k, _ in PERSONLAB_DIRECTED_EDGES]]  # every keypoint is labelled here
    mid = np.where(
        mid_disk[..., None], mid + normal(rng, mid.shape, 1.0), smooth_random(rng, mid.shape, radius)
    )
    mine = seg > 0.5
    long = np.where(
        mine[..., None, None], long + normal(rng, long.shape, 2.0), smooth_random(rng, long.shape, 2 * radius)
    )
    seg = scipy.ndimage.gaussian_filter(seg, sigma) + normal(rng, seg.shape, 0.1)
    return heat, short, mid, long, np.clip(seg, 0, 1)


def worst_error(keypoints, valid, people):
    """Worst keypoint error (px) over the true people, each matched to its closest decoded person."""
    found = keypoints[valid][:, :, :2]
    if not len(found):
        return float("inf")
    errors = np.abs(found[None] - people[:, None, :, :2]).max(-1)  # (true, found, 17)
    errors = np.where(people[:, None, :, 2] > 0, errors, 0.0).max(-1)  # over the labelled keypoints
    return float(errors.min(1).max())


def alternating(fns: dict, repeats: int) -> dict:
    """Seconds per call of each fn (which must block), the fns called in turn `repeats` times after a warm-up."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def to_numpy(outputs):
    """decode's outputs as numpy arrays (np.asarray of each: on a CPU device a view of XLA's buffer, no copy)."""
    return jax.tree.map(np.asarray, outputs)


def load_model(workdir):
    """A trained PersonLab model (a `jhuman train` workdir, its latest checkpoint) as image (H, W, 3) uint8 ->
    the five decoder inputs as float32 numpy (heatmap and segmentation probabilities, offsets in pixels). A model
    that leaves the recurrent refinement to the decoder (the tiny config, model.refine_steps = 0) gets its mid-
    and long-range offsets refined here, 2 steps, as the paper's network does inside: every row then decodes
    the outputs of a model that refines its offsets itself (refine_steps = 0, like the other inputs)."""
    from jhuman import config as config_lib
    from jhuman import train
    from jhuman.ops.personlab import offsets

    try:
        task_name = config_lib.load_saved_config(workdir).task
        if task_name != "personlab":
            raise SystemExit(f"--workdir {workdir}: a {task_name!r} model, not a PersonLab one")
        config, setup, state, step = train.restore_workdir(workdir)
    except (FileNotFoundError, config_lib.ConfigError) as e:  # no saved config, no checkpoint
        logging.getLogger("absl").setLevel(logging.CRITICAL)  # orbax's exit-time thread errors (as the CLI)
        raise SystemExit(f"--workdir {workdir}: {e}") from None
    variables, task = train.eval_variables(state), setup.task
    refine = 2 if int(config.model.refine_steps) == 0 else 0

    @jax.jit
    def outputs(image):
        out, _ = task.apply(variables, image[None].astype(jnp.float32))
        mid, short, long = out["mid_offsets"][0], out["short_offsets"][0], out["long_offsets"][0]
        if refine:
            mid = offsets.refine_mid_offsets(mid, short, refine)
            long = offsets.refine_long_offsets(long, short, refine)
        heat, seg = jax.nn.sigmoid(out["heatmap_logits"][0]), jax.nn.sigmoid(out["segmentation_logits"][0])
        return heat, short, mid, long, seg[..., 0] if seg.ndim == 3 else seg

    radius = float(config.personlab.radius)  # its disks' radius: the decoder's R (and so its strides)
    MODEL.update(
        radius=radius,
        predict=lambda image: tuple(np.asarray(a, np.float32) for a in outputs(image)),
        name=f"{workdir} (step {step}, trained at {config.data.crop_size} px, R = {radius:g})",
    )


def model_scene(seed, index, height, width):
    """An RGB image (height, width, 3) of synthetic people at the scale the tiny model trains on: a mosaic of
    133 x 133 single-person scenes (`input_pipeline.synthetic.scene`), and their keypoints (P, 17, 3)."""
    from input_pipeline.synthetic import scene as scenes

    tile = 133
    image = np.zeros((height, width, 3), np.uint8)
    people = []
    rows, cols = height // tile, width // tile
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        s = scenes.render_scene(seed, index * rows * cols + k, size=tile, max_people=1)
        image[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = s.image
        kp = np.array(s.keypoints, np.float32)
        kp[..., :2] += np.float32([c * tile, r * tile])
        kp[..., 2] = np.where(kp[..., 2] > 0, 2.0, 0.0)  # labelled (visible or hidden) counts for the error
        people.extend(kp)
    return image, np.asarray(people)


def build_inputs(name, kind, seed=0):
    """The case's images ([B] tuples of the five numpy outputs) and their true people."""
    height, width, num, batch, half_height, _ = CASES[name]
    rng = np.random.default_rng(seed)
    images, truth = [], []
    t = time.perf_counter()
    for index in range(batch):
        if kind == "model":
            image, people = model_scene(seed, index, height, width)
            truth.append(people)
            images.append(MODEL["predict"](image))
            continue
        people = make_people(rng, num, height, width, half_height)
        truth.append(people)
        outputs = perfect_outputs(people, height, width, RADIUS)
        images.append(noisy(outputs, rng) if kind == "clean" else realistic(outputs, rng, RADIUS))
    print(f"[{name} {kind}] inputs built in {time.perf_counter() - t:.1f} s", flush=True)
    return images, truth


def bench_case(name, kind, repeats, reference_repeats, modes, seed=0):
    height, width, num, batch, _, options = CASES[name]
    images, truth = build_inputs(name, kind, seed)
    num = len(truth[0]) if kind == "model" else num
    host = tuple(np.ascontiguousarray(np.stack(a) if batch > 1 else a[0], np.float32) for a in zip(*images))
    device = jax.device_put(host)
    rows = []
    for mode in modes:
        radius = MODEL["radius"] if kind == "model" else RADIUS
        opts = {**options, "radius": radius, "refine_steps": 0, **MODES[mode]}
        resolved = personlab.decode_options((height, width), **opts)
        common = {
            "case": name,
            "inputs": kind,
            "image": f"{height}x{width}",
            "people": num,
            "batch": batch,
            "mode": mode,
            "strides": f"{resolved['hough_stride']}/{resolved['mask_stride']}",
            "capacity": f"{resolved['max_people']}/{resolved['max_candidates']}",
        }
        t = time.perf_counter()
        out = to_numpy(personlab.decode(*device, **opts))
        compile_s = time.perf_counter() - t
        fns = {
            "device": lambda: to_numpy(personlab.decode(*device, **opts)),
            "numpy": lambda: to_numpy(personlab.decode(*host, **opts)),
        }
        times = alternating(fns, repeats)
        jax_rows = []
        for feed in fns:
            out = fns[feed]()
            outs = [out] if batch == 1 else [{k: v[i] for k, v in out.items()} for i in range(batch)]
            median = statistics.median(times[feed])
            row = {
                **common,
                "impl": f"jax, {feed} arrays",
                "median_s": median,
                "per_image_s": median / batch,
                "min_s": min(times[feed]),
                "compile_s": compile_s if feed == "device" else None,
                "found": "/".join(str(int(o["num_people"])) for o in outs),
                "dropped": "/".join(
                    f"{int(o['dropped_people'])}+{int(o['dropped_candidates'])}" for o in outs
                ),
                "max_err_px": max(worst_error(o["keypoints"], o["valid"], p) for o, p in zip(outs, truth)),
                "repeats": repeats,
                "speedup_vs_port": PORT_SECONDS[name] / (median / batch),
            }
            jax_rows.append(row)
            rows.append(row)
            print(f"[{name} {kind}] jax {mode} {feed}: {median:.4f} s (median of {repeats})", flush=True)
        if reference_repeats > 0:
            ref_times = []
            for _ in range(reference_repeats):
                t = time.perf_counter()
                ref_outs = [personlab_reference.decode(*image, **opts) for image in images]
                ref_times.append(time.perf_counter() - t)
            ref_s = statistics.median(ref_times)
            rows.append(
                {
                    **common,
                    "impl": "numpy reference",
                    "median_s": ref_s,
                    "per_image_s": ref_s / batch,
                    "min_s": min(ref_times),
                    "found": "/".join(str(int(o["num_people"])) for o in ref_outs),
                    "dropped": "/".join(
                        f"{int(o['dropped_people'])}+{int(o['dropped_candidates'])}" for o in ref_outs
                    ),
                    "max_err_px": max(
                        worst_error(o["keypoints"], o["valid"], p) for o, p in zip(ref_outs, truth)
                    ),
                    "repeats": reference_repeats,
                    "speedup_vs_port": PORT_SECONDS[name] / (ref_s / batch),
                }
            )
            for row in jax_rows:
                row["speedup_vs_reference"] = ref_s / row["median_s"]
            print(
                f"[{name} {kind}] numpy reference {mode}: {ref_s:.4f} s (median of {reference_repeats})",
                flush=True,
            )
    return rows


def bench_feeds(kind, repeats, seed=0):
    """How the time of one 401x401 decode from numpy inputs splits (see the module docstring, `--feeds`)."""
    images, _ = build_inputs("401", kind, seed)
    host = tuple(np.ascontiguousarray(a, np.float32) for a in images[0])
    device = jax.device_put(host)
    opts = {"radius": RADIUS, "refine_steps": 0}
    doubles = tuple(a.astype(np.float64) for a in host)
    halves = tuple(a.astype(np.float16) for a in host)
    channels_first = [np.ascontiguousarray(np.moveaxis(a, 2, 0)) for a in host[:4]]  # (C, H, W[, 2]) buffers
    permuted = (*[np.moveaxis(a, 0, 2) for a in channels_first], host[4])  # (H, W, C[, 2]) views of them

    def decode(*inputs):
        return to_numpy(personlab.decode(*inputs, **opts))

    fns = {
        "device arrays (put before)": lambda: decode(*device),
        "numpy: device_put of each (copies), then decode": lambda: decode(*(jax.device_put(a) for a in host)),
        "numpy: one device_put of the tuple (copies), then decode": lambda: decode(*jax.device_put(host)),
        "numpy: jnp.asarray(heatmaps) + device_put of each (the landed decode)": lambda: decode(
            jnp.asarray(host[0]), *(jax.device_put(a) for a in host[1:])
        ),
        "numpy: decode(numpy), read in place (now)": lambda: decode(*host),
        "numpy float16: decode, read in place": lambda: decode(*halves),
        "numpy channels-first permuted to HWC: decode, read in place": lambda: decode(*permuted),
        "numpy float64: decode, converted once": lambda: decode(*doubles),
        "transfer only: one device_put of the tuple (copies)": lambda: jax.block_until_ready(
            jax.device_put(host)
        ),
    }
    times = alternating(fns, repeats)
    base = statistics.median(times["device arrays (put before)"])
    rows = []
    for feed, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "inputs": kind,
                "feed": feed,
                "median_s": median,
                "min_s": min(values),
                "vs_device": median / base,
                "repeats": repeats,
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="401,401x4,1080p", help=f"comma-separated, of {sorted(CASES)}")
    parser.add_argument("--inputs", default="clean,realistic", help=f"comma-separated, of {list(INPUTS)}")
    parser.add_argument("--repeats", type=int, default=10, help="timed jax calls per case (median reported)")
    parser.add_argument("--reference_repeats", type=int, default=1, help="numpy reference calls (0: skip)")
    parser.add_argument("--modes", default="grid,exact", help=f"comma-separated, of {sorted(MODES)}")
    parser.add_argument("--feeds", action="store_true", help="also the numpy-input breakdown at 401x401")
    parser.add_argument(
        "--workdir",
        default=None,
        help="a trained PersonLab model (jhuman train --workdir) whose real outputs the 'model' inputs decode",
    )
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/personlab_decode.json)")
    parser.add_argument(
        "--malloc",
        choices=("hugetlb", "default"),
        default="hugetlb",
        help="hugetlb: re-run with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (see the docstring)",
    )
    args = parser.parse_args(argv)
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if args.malloc == "hugetlb" and "glibc.malloc.hugetlb" not in tunables and argv is None:
        env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, [tunables, "glibc.malloc.hugetlb=1"])))
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
    malloc = "hugetlb" if "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", "") else "default"
    kinds = [k.strip() for k in args.inputs.split(",")]
    unknown = sorted(set(kinds) - set(INPUTS))
    if unknown:
        parser.error(f"--inputs: unknown {unknown}; valid: {list(INPUTS)}")
    if "model" in kinds:
        if not args.workdir:
            parser.error("--inputs model needs --workdir: a trained PersonLab model (jhuman train --workdir)")
        load_model(args.workdir)
        print(f"model: {MODEL['name']}", flush=True)
    rows = []
    for name in args.cases.split(","):
        for kind in kinds:
            if kind == "model" and CASES[name.strip()][0] != 401:
                print(f"[{name} model] skipped: the model inputs are 401 x 401 mosaics", flush=True)
                continue
            rows += bench_case(
                name.strip(),
                kind,
                args.repeats,
                args.reference_repeats,
                [m.strip() for m in args.modes.split(",")],
            )
    for row in rows:
        row["malloc"] = malloc
    columns = [
        "case",
        "inputs",
        "people",
        "batch",
        "mode",
        "strides",
        "capacity",
        "impl",
        "malloc",
        "median_s",
        "per_image_s",
        "min_s",
        "compile_s",
        "found",
        "dropped",
        "max_err_px",
        "speedup_vs_reference",
        "speedup_vs_port",
    ]
    path = args.output
    if args.feeds:
        feeds = []
        for kind in kinds:
            feeds += bench_feeds(kind, args.repeats)
        report(
            "personlab_decode_feeds",
            feeds,
            ["inputs", "feed", "median_s", "min_s", "vs_device", "repeats"],
            path and path.replace(".json", "_feeds.json"),
        )
    report("personlab_decode", rows, columns, path)


if __name__ == "__main__":
    main()
