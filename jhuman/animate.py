"""`jhuman animate`: one person (a source image and its 14 joints) moved through another video's poses by a
trained pose-guided synthesis run (Balakrishnan et al., CVPR 2018) - the inference script the official code
never had.

Inputs:
- the source: an image with its joints (`read_joints_json`: a JSON file, 0-based (x, y) pixels) or frame K of
  a video in the published layout (`video_frame`: `<split>/info/<video>.mat` and `<split>/frames/<video>/
  <K+1>.jpg|png`, input_pipeline.posewarp.open_video);
- the target poses: the joints of frames a..b of another video's .mat (`input_pipeline.posewarp.read_info`).

Placement (`place`, `retarget`): the source is cropped as the training pairs are (`input_pipeline.posewarp.
prepare_pair`: one scale from the person size, centred on the person's box), the source taking both roles so
that the crop depends on the source alone. The released code's own sequence generator (actionExampleGenerator,
left commented out in code/data_generation.py) puts every target pose of the same video into the source's
crop unchanged; its transfer generator brings another person's pose to the source's scale (each person at
1.14 / its person scale) and puts its ankle midpoint on the source's. For a sequence we do the same with ONE
similarity for all frames: scale = the source's person scale / the median person scale of the target frames,
and the offset that puts the first target frame's ankle midpoint on the source's (the hip midpoint when an
ankle is missing), so the target video's motion (a step, a jump) is kept rather than pinned to the feet.
Joints that land outside the crop are flagged invisible (and put at the crop's centre), never at (0, 0).

Outputs under --out: frames/<i>.png (the generated images), animation.gif (Pillow) or animation.mp4
(cv2.VideoWriter, mp4v), sheet.png (a row per frame, at most `max_sheet_rows` evenly spaced: source |
target pose | the warped limb layers | the source masks | output, jhuman.viz.posewarp_row) and
animation.json (what was done).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from jhuman.ops.warp import JOINTS

FORMATS = ("gif", "mp4")
NUM_JOINTS = len(JOINTS)
ANKLES = (JOINTS.index("right_ankle"), JOINTS.index("left_ankle"))
HIPS = (JOINTS.index("right_hip"), JOINTS.index("left_hip"))


class AnimateError(ValueError):
    """A bad `jhuman animate` input; the message is one line naming the argument or file (exit status 2)."""

    exit_status = 2


# --- inputs ------------------------------------------------------------------------------------------------------


def read_joints_json(path: str, arg: str = "--source_joints"):
    """(joints (14, 2) float32 0-based (x, y), visible (14,) bool, box [x, y, w, h] float32 or None) of a JSON
    file: {"joints": [[x, y], ...14], "visible": [bool, ...14] (optional), "box": [x, y, w, h] (optional)} or a
    bare list of 14 [x, y] pairs; a joint given as null is missing. Box default: the visible joints' bounds."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnimateError(f"{arg} {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise AnimateError(f"{arg} {path}: not a JSON file ({str(e).splitlines()[0]})") from None
    if isinstance(data, list):
        data = {"joints": data}
    if not isinstance(data, dict) or "joints" not in data:
        raise AnimateError(f"{arg} {path}: expected {{'joints': 14 [x, y] pairs, ...}} or a list of 14 pairs")
    raw = data["joints"]
    if not isinstance(raw, list) or len(raw) != NUM_JOINTS:
        got = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise AnimateError(
            f"{arg} {path}: 'joints' must hold {NUM_JOINTS} [x, y] pairs (jhuman.ops.warp.JOINTS' order), got {got}"
        )
    joints = np.zeros((NUM_JOINTS, 2), np.float32)
    visible = np.ones(NUM_JOINTS, bool)
    for i, pair in enumerate(raw):
        if pair is None:
            visible[i] = False
            continue
        try:
            x, y = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise AnimateError(
                f"{arg} {path}: joint {i} is {pair!r}, not an [x, y] pair of numbers"
            ) from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise AnimateError(
                f"{arg} {path}: joint {i} is not finite ({pair!r}); give null for a missing joint"
            )
        joints[i] = x, y
    if "visible" in data:
        flags = data["visible"]
        if not isinstance(flags, list) or len(flags) != NUM_JOINTS:
            raise AnimateError(f"{arg} {path}: 'visible' must hold {NUM_JOINTS} booleans")
        visible &= np.array([bool(v) for v in flags])
    if visible.sum() < 2:
        raise AnimateError(f"{arg} {path}: fewer than two visible joints; the limbs cannot be placed")
    box = data.get("box")
    if box is not None:
        try:
            box = np.array([float(v) for v in box], np.float32)
            if box.shape != (4,) or box[2] <= 0 or box[3] <= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise AnimateError(f"{arg} {path}: 'box' must be [x, y, w, h] with w, h > 0") from None
    return joints, visible, box if box is not None else joints_box(joints, visible)


def joints_box(joints, visible) -> np.ndarray:
    """[x, y, w, h] float32: the bounds of the visible joints (at least 1 px wide and high)."""
    seen = np.asarray(joints)[np.asarray(visible, bool)]
    low, high = seen.min(0), seen.max(0)
    size = np.maximum(high - low, 1.0)
    return np.array([low[0], low[1], size[0], size[1]], np.float32)


def open_video(mat_path: str, arg: str):
    """input_pipeline.posewarp.open_video (joints (n, 14, 2) 0-based, boxes (n, 4), frames on disk) of a
    video's <split>/info/<video>.mat; a missing or bad file is one line naming the argument."""
    from input_pipeline import posewarp as posewarp_data
    from input_pipeline.pipeline import CorruptExample

    if not os.path.isfile(mat_path):
        raise AnimateError(f"{arg} {mat_path}: no such file (a video's <split>/info/<video>.mat)")
    try:
        return posewarp_data.open_video(mat_path)
    except CorruptExample as e:
        raise AnimateError(f"{arg} {mat_path}: {e.reason}") from None


def read_image(path: str, arg: str) -> np.ndarray:
    """RGB uint8 (h, w, 3), read as the training readers read (jhuman.tasks.common.read_image)."""
    from input_pipeline.pipeline import CorruptExample
    from jhuman.tasks import common

    if not os.path.isfile(path):
        raise AnimateError(f"{arg} {path}: no such image file")
    try:
        return common.read_image(path)
    except CorruptExample as e:
        raise AnimateError(f"{arg} {path}: {e.reason}") from None


def visible_in(joints, height: int, width: int) -> np.ndarray:
    """(..., 14) bool: finite joints inside the image [0, width - 1] x [0, height - 1]."""
    joints = np.asarray(joints, np.float32)
    x, y = joints[..., 0], joints[..., 1]
    return np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)


def video_frame(mat_path: str, index: int):
    """(image RGB uint8, joints (14, 2), visible (14,), box (4,)) of 0-based frame `index` of a video."""
    from input_pipeline.pipeline import CorruptExample

    video = open_video(mat_path, "--source_video")
    if not 0 <= index < video.num_frames:
        raise AnimateError(f"--source_frame {index}: {mat_path} has frames 0..{video.num_frames - 1}")
    try:
        image = video.read_frame(index)
    except CorruptExample as e:
        raise AnimateError(f"--source_video {mat_path}: frame {index} ({e.path}): {e.reason}") from None
    joints = np.asarray(video.joints[index], np.float32)
    visible = visible_in(joints, *image.shape[:2])
    if visible.sum() < 2:
        raise AnimateError(f"--source_frame {index}: fewer than two of its joints lie inside the image")
    return image, joints, visible, np.asarray(video.boxes[index], np.float32)


def parse_frames(text: str | None, count: int, arg: str = "--frames") -> range:
    """'a:b' (Python slice bounds, either may be empty or negative), 'a' (one frame) or None (all) -> the
    frame indices of a video of `count` frames; AnimateError when empty or out of range."""
    if text is None or text.strip() in ("", ":"):
        return range(count)
    try:
        if ":" in text:
            start, _, stop = text.partition(":")
            if ":" in stop:
                raise ValueError
            selected = range(count)[
                slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
            ]
        else:
            k = int(text)
            if not -count <= k < count:
                raise AnimateError(f"{arg} {text}: the targets have frames 0..{count - 1}")
            selected = range(count)[k : k + 1] if k >= 0 else range(count)[k:][:1]
    except ValueError as e:
        if isinstance(e, AnimateError):
            raise
        raise AnimateError(f"{arg} {text!r}: expected a:b (frame indices, b excluded) or one index") from None
    if len(selected) == 0:
        raise AnimateError(f"{arg} {text}: no frames selected (the targets have frames 0..{count - 1})")
    return selected


# --- placement -----------------------------------------------------------------------------------------------


def _anchor(joints, visible) -> np.ndarray | None:
    """The ankle midpoint (the released transfer code's anchor), else the hip midpoint, else None."""
    for pair in (ANKLES, HIPS):
        if all(visible[j] for j in pair):
            return np.mean(joints[list(pair)], axis=0)
    return None


def retarget(source_joints, source_visible, source_box, target_joints, target_visible, target_boxes):
    """Target poses (T, 14, 2) of another video -> the source image's pixels: one similarity (no rotation) for
    the whole sequence, scale = person scale of the source / the median person scale of the target frames,
    the first target frame's anchor (ankle midpoint, else hip midpoint, else the joints' mean) on the
    source's. Missing joints (not visible) may hold anything; they stay missing."""
    from input_pipeline import posewarp as posewarp_data

    source_joints = np.asarray(source_joints, np.float32)
    source_visible = np.asarray(source_visible, bool)
    target_joints = np.asarray(target_joints, np.float32)
    target_visible = np.asarray(target_visible, bool)
    masked = lambda j, v: np.where(v[..., None], j, np.nan)  # noqa: E731  (person_scale: NaN for missing)
    s = posewarp_data.frame_scale(masked(source_joints, source_visible), source_box) / float(
        np.median(
            [
                posewarp_data.frame_scale(masked(j, v), b)
                for j, v, b in zip(target_joints, target_visible, target_boxes)
            ]
        )
    )
    anchor_s = _anchor(source_joints, source_visible)
    anchor_t = _anchor(target_joints[0], target_visible[0])
    if anchor_s is None or anchor_t is None:
        anchor_s = np.mean(source_joints[source_visible], axis=0)
        anchor_t = np.mean(target_joints[0][target_visible[0]], axis=0)
    return ((target_joints - anchor_t) * s + anchor_s).astype(np.float32)


@dataclass
class Placed:
    """The network's inputs for a sequence: source (S, S, 3) float32 [-1, 1], source_joints (14, 2),
    source_visible (14,), target_joints (T, 14, 2), target_visible (T, 14), all in crop pixels."""

    source: np.ndarray
    source_joints: np.ndarray
    source_visible: np.ndarray
    target_joints: np.ndarray
    target_visible: np.ndarray


def place(source_image, source_joints, source_visible, source_box, target_joints, target_visible,
          image_size: int, target_boxes=None) -> Placed:  # fmt: skip
    """Crops the source as a training pair's (input_pipeline.posewarp: pair_crop's transform with the source
    in both roles, prepare_pair) and maps the target poses into that crop with the same transform, after
    `retarget` when target_boxes are given (another video; None: the source's own video, poses as they are)."""
    from input_pipeline import posewarp as posewarp_data

    source_visible = np.asarray(source_visible, bool)
    source_joints = np.where(source_visible[:, None], source_joints, np.nan).astype(
        np.float32
    )  # NaN: missing
    targets = np.asarray(target_joints, np.float32)
    if target_boxes is not None:
        targets = retarget(source_joints, source_visible, source_box, targets, target_visible, target_boxes)
    pair = posewarp_data.prepare_pair(
        source_image, source_joints, source_box, None, source_joints, source_box, image_size=image_size
    )
    matrix = posewarp_data.pair_crop(
        source_joints, source_box, source_joints, source_box, image_size
    )  # (2, 3)
    placed = targets @ matrix[:, :2].T + matrix[:, 2]
    visible = np.asarray(target_visible, bool) & visible_in(placed, image_size, image_size)
    return Placed(
        source=np.asarray(pair["source"], np.float32),
        source_joints=np.asarray(pair["source_joints"], np.float32),
        source_visible=np.asarray(pair["source_visible"], bool),
        target_joints=np.where(visible[..., None], placed, (image_size - 1.0) / 2.0).astype(np.float32),
        target_visible=visible,
    )


# --- generation ------------------------------------------------------------------------------------------------


def generate(
    generator: Callable[[dict], dict], placed: Placed, batch_size: int = 4, progress: bool = True
) -> dict:
    """Runs `generator` ({source (B, S, S, 3), source_joints (B, 14, 2), target_joints, source_visible,
    target_visible} -> {'image', 'masks', 'warped', ...}) over the target poses in batches of `batch_size` (the
    last one padded, so one compiled shape serves the sequence); -> {key: numpy (T, ...)}."""
    count = len(placed.target_joints)
    chunks = []
    bar = _progress(count, progress)
    for start in range(0, count, batch_size):
        index = np.minimum(np.arange(start, start + batch_size), count - 1)  # pad with the last frame
        n = min(batch_size, count - start)
        batch = {
            "source": np.repeat(placed.source[None], batch_size, 0),
            "source_joints": np.repeat(placed.source_joints[None], batch_size, 0),
            "source_visible": np.repeat(placed.source_visible[None], batch_size, 0),
            "target_joints": placed.target_joints[index],
            "target_visible": placed.target_visible[index],
        }
        outputs = {k: np.asarray(v)[:n] for k, v in generator(batch).items()}
        chunks.append(outputs)
        bar.update(n)
    bar.close()
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, desc="animate", unit="frame", file=sys.stderr, dynamic_ncols=True, disable=not enabled
    )


# --- pictures ----------------------------------------------------------------------------------------------------


def to_rgb(image) -> np.ndarray:
    """float [-1, 1] (H, W, 3) -> uint8 RGB."""
    from jhuman import viz

    return viz.to_uint8(viz.signed_to_unit(image))


def sheet(placed: Placed, outputs: dict, max_rows: int = 8) -> np.ndarray:
    """source | target pose | warped layers | masks | output (viz.posewarp_row), one row per frame (at most
    `max_rows`, evenly spaced over the sequence)."""
    from jhuman import viz

    count = len(outputs["image"])
    rows_at = np.unique(np.round(np.linspace(0, count - 1, min(count, max_rows))).astype(int))
    columns = len(viz.POSEWARP_TITLES) - 1  # no ground-truth target
    rows = [
        viz.posewarp_row(
            placed.source,
            placed.target_joints[i],
            placed.target_visible[i],
            {k: v[i] for k, v in outputs.items()},
        )[:columns]
        for i in rows_at
    ]
    return viz.image_grid(rows, titles=list(viz.POSEWARP_TITLES[:columns]))


def write_gif(path: str, frames, fps: float) -> str:
    """An animated GIF (Pillow, 256-colour palette per frame), looping, 1000 / fps ms per frame. Pillow stores a
    frame equal to the one before it as a longer display of that one: the timing is kept, the GIF's frame count
    can be lower (frames/ holds every one)."""
    from PIL import Image

    pictures = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    duration = max(1, round(1000.0 / fps))
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=duration, loop=0,
                     optimize=False, disposal=1)  # fmt: skip
    return path


def write_mp4(path: str, frames, fps: float) -> str:
    """An MP4 (jhuman.video.Mp4Writer: cv2.VideoWriter, 'mp4v'); OSError when the encoder cannot be opened."""
    from jhuman import video

    writer = video.Mp4Writer(path, float(fps))
    try:
        for frame in frames:
            writer.write(np.asarray(frame, np.uint8))
    finally:
        writer.close()
    return path


def write_outputs(out_dir: str, placed: Placed, outputs: dict, fmt: str = "gif", fps: float = 8.0,
                  max_sheet_rows: int = 8, info: dict | None = None) -> dict:  # fmt: skip
    """frames/<i>.png, animation.<fmt>, sheet.png and animation.json under out_dir; returns the summary."""
    from jhuman import viz

    if fmt not in FORMATS:
        raise AnimateError(f"--format {fmt!r} is not one of {list(FORMATS)}")
    frames = [to_rgb(image) for image in outputs["image"]]
    width = max(4, len(str(len(frames) - 1)))
    frame_files = [
        viz.save_png(os.path.join(out_dir, "frames", f"{i:0{width}d}.png"), f) for i, f in enumerate(frames)
    ]
    movie = os.path.join(out_dir, f"animation.{fmt}")
    (write_gif if fmt == "gif" else write_mp4)(movie, frames, fps)
    sheet_path = viz.save_png(os.path.join(out_dir, "sheet.png"), sheet(placed, outputs, max_sheet_rows))
    summary = {
        **(info or {}),
        "num_frames": len(frames),
        "fps": fps,
        "animation": os.path.basename(movie),
        "sheet": os.path.basename(sheet_path),
        "frames": [os.path.relpath(f, out_dir) for f in frame_files],
        "visible_target_joints": placed.target_visible.sum(-1).tolist(),  # per frame, of 14
    }
    with open(os.path.join(out_dir, "animation.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


# --- the command ---------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """What `load_inputs` read: the source (RGB uint8, joints, visible, box), the selected target poses
    (T, 14, 2) / (T, 14) and where they come from."""

    source_image: np.ndarray
    source_joints: np.ndarray
    source_visible: np.ndarray
    source_box: np.ndarray
    target_joints: np.ndarray
    target_visible: np.ndarray
    target_boxes: np.ndarray
    target_frames: range
    same_video: bool
    info: dict


def load_inputs(source=None, source_joints=None, source_video=None, source_frame=0, targets=None,
                frames=None) -> Inputs:  # fmt: skip
    """Reads and checks every input of `jhuman animate` before anything is built (AnimateError: one line
    naming the argument): the source image + its joints JSON, or frame `source_frame` of `source_video`
    (a .mat of the published layout); the target poses of frames `frames` ('a:b') of `targets` (a .mat)."""
    if source_video is None and (source is None or source_joints is None):
        raise AnimateError(
            "--source IMAGE with --source_joints JSON, or --source_video VIDEO.mat: give one source"
        )
    if source_video is not None and (source is not None or source_joints is not None):
        raise AnimateError(
            "--source_video cannot be combined with --source / --source_joints: give one source"
        )
    if targets is None:
        raise AnimateError("--targets VIDEO.mat is required (the poses to animate)")
    if source_video is not None:
        image, joints, visible, box = video_frame(source_video, int(source_frame))
        origin = {"source_video": os.path.abspath(source_video), "source_frame": int(source_frame)}
    else:
        joints, visible, box = read_joints_json(source_joints)
        image = read_image(source, "--source")
        visible = visible & visible_in(joints, *image.shape[:2])
        if visible.sum() < 2:
            raise AnimateError(f"--source_joints {source_joints}: fewer than two joints lie inside {source}")
        origin = {"source": os.path.abspath(source), "source_joints": os.path.abspath(source_joints)}
    video = open_video(targets, "--targets")
    selected = parse_frames(frames, video.num_frames)
    target_joints = np.asarray(video.joints, np.float32)[list(selected)]
    target_boxes = np.asarray(video.boxes, np.float32)[list(selected)]
    # A target joint is present when finite and inside its frame (input_pipeline.posewarp's rule; a joint the
    # .mat marks missing with 0, 1-based, is negative here); the frame's size comes from the first selected
    # frame's image when it is there (only the poses are needed), else only the lower bounds are checked.
    height, width = _frame_size(video.frame_name(selected[0]))
    target_visible = visible_in(target_joints, height, width)
    if (target_visible.sum(-1) < 2).any():
        bad = int(np.flatnonzero(target_visible.sum(-1) < 2)[0])
        raise AnimateError(f"--targets {targets}: frame {selected[bad]} has fewer than two joints")
    same = source_video is not None and os.path.abspath(source_video) == os.path.abspath(targets)
    info = {**origin, "targets": os.path.abspath(targets), "target_frames": [selected.start, selected.stop],
            "retargeted": not same}  # fmt: skip
    return Inputs(
        image,
        joints,
        visible,
        np.asarray(box, np.float32),
        target_joints,
        target_visible,
        target_boxes,
        selected,
        same,
        info,
    )


def _frame_size(path: str) -> tuple[float, float]:
    """(height, width) of an image file, (inf, inf) when it cannot be read."""
    import cv2

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED) if os.path.isfile(path) else None
    return (float("inf"), float("inf")) if image is None else (float(image.shape[0]), float(image.shape[1]))


def task_generator(task, variables):
    """The run's generator as `generate` wants it: a jitted call of the posewarp task's predict on a batch
    dict (source, source_joints, target_joints, source_visible, target_visible) -> its outputs (numpy)."""
    import jax

    predict = jax.jit(task.predict)

    def run(batch):
        return jax.device_get(predict(variables, batch))

    return run


def animate(
    generator,
    inputs: Inputs,
    out_dir: str,
    image_size: int,
    fmt: str = "gif",
    fps: float = 8.0,
    batch_size: int = 4,
    max_sheet_rows: int = 8,
    progress: bool = True,
    info: dict | None = None,
) -> dict:
    """Places the inputs, generates every frame, writes the outputs (see the module docstring)."""
    boxes = None if inputs.same_video else inputs.target_boxes
    placed = place(inputs.source_image, inputs.source_joints, inputs.source_visible, inputs.source_box,
                   inputs.target_joints, inputs.target_visible, image_size, boxes)  # fmt: skip
    outputs = generate(generator, placed, batch_size, progress)
    return write_outputs(out_dir, placed, outputs, fmt, fps, max_sheet_rows, {**inputs.info, **(info or {})})
