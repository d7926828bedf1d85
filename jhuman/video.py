"""Videos in and out: frames read one by one (OpenCV), predicted through a task's own single-image path, and
written back as PNG frames and MP4 streams (`jhuman predict --video`).

A video is read with cv2.VideoCapture (whatever codecs the installed OpenCV has: MP4/H.264 and MJPEG AVI with
the opencv-python wheels); MP4 output uses the 'mp4v' fourcc, which those wheels always write. A file OpenCV
cannot open, or one without a single decodable frame, is a ValueError naming it; a video that stops decoding
before the frame count its header reports is written as far as it decodes and marked 'truncated' in the
results file (the frames written are never silently fewer than claimed).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np

MP4_FOURCC = "mp4v"
DEFAULT_FPS = 25.0  # when the header has no usable frame rate


def open_video(path: str):
    """(cv2.VideoCapture, fps, reported frame count) for a readable video; ValueError naming the file."""
    import cv2

    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such video file")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open it as a video (unknown container or codec)")
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return capture, (fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS), max(count, 0)


def read_frames(capture) -> Iterator[np.ndarray]:
    """RGB uint8 (H, W, 3) frames of an opened capture, in order, until it stops decoding."""
    import cv2

    while True:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class Mp4Writer:
    """An MP4 stream opened at its first frame (RGB uint8 (H, W, 3), or a float matte in [0, 1] (H, W) shown
    as gray); every frame must have the first one's size."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps, self.frames, self._writer, self._size = path, fps, 0, None, None

    def write(self, frame: np.ndarray):
        import cv2

        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            frame = np.round(np.clip(frame, 0.0, 1.0) * 255).astype(np.uint8)
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=-1)
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*MP4_FOURCC), self.fps, size)
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write an MP4 ({MP4_FOURCC}) there")
            self._size = size
        elif size != self._size:
            raise ValueError(f"{self.path}: frame {self.frames} is {size}, the stream is {self._size}")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self):
        if self._writer is not None:
            self._writer.release()


def predict_video(
    variables,
    video_path: str,
    out_dir: str,
    *,
    prepare: Callable[[np.ndarray], tuple[np.ndarray, Any]],
    predict: Callable,
    frame_outputs: Callable[[np.ndarray, Any, dict], tuple[dict, dict, dict]],
    results_file: str,
) -> dict:
    """A video predicted frame by frame through the same path as `jhuman predict` on images.

    prepare / predict are the task's (see tasks.common.predict_folder: one padded shape, one compiled program
    for every frame of a video); frame_outputs(frame RGB uint8, context, outputs of the frame (numpy, leading
    axis dropped)) -> (streams: name -> frame for `<name>.mp4`, pngs: name -> image written losslessly as
    `<name>/<k>.png` (k = frame index from 0, 6 digits), entry: this frame's row of the results file).
    Writes `<out_dir>/<results_file>` = {'video', 'fps', 'frame_size' [h, w], 'num_frames' (written),
    'reported_frames' (the header's count), 'truncated', 'streams': {name: file}, 'png_folders', 'frames':
    [entries]} and returns it. Progress (frames, frames/s, ETA) goes to stderr.
    """
    import cv2
    import tqdm

    capture, fps, reported = open_video(video_path)
    os.makedirs(out_dir, exist_ok=True)
    writers: dict[str, Mp4Writer] = {}
    folders: set[str] = set()
    entries, size, start = [], None, time.perf_counter()
    try:
        bar = tqdm.tqdm(total=reported or None, unit="frame", desc=os.path.basename(video_path))
        for index, frame in enumerate(read_frames(capture)):
            inputs, context = prepare(frame)
            outputs = jax.device_get(predict(variables, inputs[None]))
            outputs = jax.tree.map(lambda v: np.asarray(v)[0], outputs)
            streams, pngs, entry = frame_outputs(frame, context, outputs)
            for name, image in streams.items():
                if name not in writers:
                    writers[name] = Mp4Writer(os.path.join(out_dir, f"{name}.mp4"), fps)
                writers[name].write(image)
            for name, image in pngs.items():
                folder = os.path.join(out_dir, name)
                if name not in folders:
                    os.makedirs(folder, exist_ok=True)
                    folders.add(name)
                image = np.asarray(image)
                if image.dtype != np.uint8:
                    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
                if image.ndim == 3:
                    image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
                if not cv2.imwrite(os.path.join(folder, f"{index:06d}.png"), image):
                    raise OSError(f"{folder}: cannot write frame {index}")
            entries.append({"frame": index, **entry})
            size = frame.shape[:2]
            bar.update(1)
        bar.close()
    finally:
        capture.release()
        for writer in writers.values():
            writer.close()
    if not entries:
        raise ValueError(f"{video_path}: no frame could be decoded (empty or corrupt video)")
    truncated = bool(reported) and len(entries) < reported
    if truncated:
        print(
            f"warning: {video_path}: decoding stopped after {len(entries)} of {reported} frames; wrote those"
        )
    summary = {
        "video": os.path.abspath(video_path),
        "fps": fps,
        "frame_size": [int(size[0]), int(size[1])],
        "num_frames": len(entries),
        "reported_frames": reported,
        "truncated": truncated,
        "seconds": round(time.perf_counter() - start, 3),
        "streams": {name: os.path.basename(w.path) for name, w in writers.items()},
        "png_folders": sorted(folders),
        "frames": entries,
    }
    with open(os.path.join(out_dir, results_file), "w") as f:
        json.dump(summary, f, indent=1)
    return summary
