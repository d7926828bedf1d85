"""Write synthetic pose videos in the published posewarp layout (input_pipeline/posewarp.py reads it):

<split>/frames/<ID>/<k>.jpg      frame k - 1 of video ID (k = frame index + 1), RGB JPEG quality 95
<split>/info/<ID>.mat            MATLAB struct `data`: X (14, 2, FRAMES) float64 1-based (x, y) joints in the
                                 reference order (input_pipeline.posewarp.JOINTS), bbox (FRAMES, 4) float64
                                 [x, y, w, h], the joints' bounding box (as in the published files)
with <split> train / test (the writer's 'val' samples go to test/, the data set's held-out split). Each video
is one person (one body, one outfit, one lighting) over one static cluttered background, in FRAMES poses: the
joint angles move piecewise linearly through three random key poses, the pelvis drifts a little and the camera
stays still, so distant frames differ more than near ones, as in the real videos. Joints that leave the frame
are written where they are (the reader flags them). Everything is a function of (seed, index):
default_rng([seed, index]) for the video, default_rng([seed, index, 3]) afresh for every frame's colouring, so
the outfit's texture and shading are the same in every frame.
"""

import dataclasses
import io
import os

import cv2
import numpy as np
import scipy.io

from input_pipeline.synthetic import background, scene
from input_pipeline.synthetic import skeleton as sk
from input_pipeline.synthetic.lip_format import sample_id, write_encoded

FRAMES = 8  # frames per video (the published sample clip has 8)
JPEG_QUALITY = 95
FOLDERS = {"train": "train", "val": "test"}  # writer split -> the layout's split folder
# skeleton point of each of the 14 joints (input_pipeline.posewarp.JOINTS order; head = the head centre)
JOINT_POINTS = (
    sk.HEAD,
    sk.NECK,
    sk.R_SHOULDER,
    sk.R_ELBOW,
    sk.R_WRIST,
    sk.L_SHOULDER,
    sk.L_ELBOW,
    sk.L_WRIST,
    sk.R_HIP,
    sk.R_KNEE,
    sk.R_ANKLE,
    sk.L_HIP,
    sk.L_KNEE,
    sk.L_ANKLE,
)
_KEY_POSES = 3
_ANGLE_FIELDS = [f.name for f in dataclasses.fields(sk.Angles) if f.name != "kind"]


def make_dirs(out_dir):
    for folder in FOLDERS.values():
        for d in ("frames", "info"):
            os.makedirs(os.path.join(out_dir, folder, d), exist_ok=True)


def _blend(a: sk.Angles, b: sk.Angles, t: float) -> sk.Angles:
    """Angles (1 - t) a + t b, field by field (the kind of a)."""
    mixed = {f: (1 - t) * np.asarray(getattr(a, f)) + t * np.asarray(getattr(b, f)) for f in _ANGLE_FIELDS}
    return dataclasses.replace(a, **{f: (float(v) if v.ndim == 0 else v) for f, v in mixed.items()})


def _poses(rng, frames):
    """`frames` Angles moving piecewise linearly through _KEY_POSES random key poses of a similar yaw."""
    keys = [sk.sample_angles(rng)]
    for _ in range(_KEY_POSES - 1):
        nxt = sk.sample_angles(rng)
        keys.append(dataclasses.replace(nxt, yaw=keys[-1].yaw + float(rng.uniform(-40, 40))))
    out = []
    for k in range(frames):
        u = k / max(frames - 1, 1) * (_KEY_POSES - 1)
        i = min(int(u), _KEY_POSES - 2)
        out.append(_blend(keys[i], keys[i + 1], u - i))
    return out


def render_video(seed, index, size, frames=FRAMES):
    """(frames [uint8 (H, W, 3) RGB] * `frames`, joints float64 (frames, 14, 2) 0-based (x, y)) of video (seed,
    index): one person over one background, one size per video (scene.sample_shape of `size`)."""
    rng = np.random.default_rng([seed, index])
    h, w = scene.sample_shape(rng, size)
    backdrop = background.render_background(rng, h, w)
    person = scene.sample_person(rng, 1.0, (0.0, 0.0))
    scale = h * rng.uniform(0.55, 0.8)  # px per body height
    start = np.array([w * rng.uniform(0.4, 0.6), h * rng.uniform(0.5, 0.58)])
    drift = np.array([w * rng.uniform(-0.1, 0.1), h * rng.uniform(-0.03, 0.03)])
    images, joints = [], []
    for k, angles in enumerate(_poses(rng, frames)):
        centre = start + drift * k / max(frames - 1, 1)
        spec = dataclasses.replace(
            person, angles=angles, scale=float(scale), center=tuple(float(v) for v in centre)
        )
        shot = scene.compose(backdrop, [spec], np.random.default_rng([seed, index, 3]))
        images.append(shot.image)
        joints.append(spec.skeleton().points[list(JOINT_POINTS)])
    return images, np.stack(joints)


def info_struct(joints) -> dict:
    """{'data': {'X': (14, 2, n) 1-based, 'bbox': (n, 4) [x, y, w, h] joint boxes (1-based)}} for savemat, from
    0-based joints (n, 14, 2)."""
    x = np.asarray(joints, np.float64) + 1.0
    lo, hi = x.min(1), x.max(1)  # (n, 2)
    bbox = np.concatenate([lo, hi - lo], 1)
    return {"data": {"X": x.transpose(1, 2, 0), "bbox": bbox}}


def render_and_write(out_dir, split, seed, index, size):
    """Render video (seed, index) and write its frames and .mat; returns its ID."""
    images, joints = render_video(seed, index, size)
    video = sample_id(seed, index)
    base = os.path.join(out_dir, FOLDERS[split])
    os.makedirs(os.path.join(base, "frames", video), exist_ok=True)
    for k, image in enumerate(images):
        write_encoded(
            os.path.join(base, "frames", video, f"{k + 1}.jpg"),
            ".jpg",
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY),
        )
    write_mat(os.path.join(base, "info", video + ".mat"), info_struct(joints))
    return video


_MAT_HEADER = 116  # bytes of descriptive text opening a MATLAB 5 file (scipy writes the time there)


def write_mat(path, variables):
    """scipy.io.savemat of `variables` with a fixed header text, so the file is a function of its contents."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    data = bytearray(buffer.getvalue())
    data[:_MAT_HEADER] = b"MATLAB 5.0 MAT-file, jhuman synthetic pose video".ljust(_MAT_HEADER)
    with open(path, "wb") as f:
        f.write(bytes(data))


def finish(out_dir, records_by_split):
    """Nothing to index: the reader lists the frames/ and info/ folders."""
    del out_dir, records_by_split
