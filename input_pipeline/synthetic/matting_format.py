"""Write synthetic people in the foreground / alpha / background matting layout (input_pipeline/matting.py reads it):

<split>/fg/<ID>.png                foreground colours, RGB PNG (lossless: the composite is exact)
<split>/alpha/<ID>.png             alpha matte, single-channel 8-bit PNG (0 transparent .. 255 opaque)
<split>/bg/<ID>_<k>.jpg            BACKGROUNDS backgrounds per person, JPEG quality 95, sizes unlike the person's
<split>/fg_names.txt               one foreground file name a line
<split>/bg_names.txt               BACKGROUNDS lines per foreground, in the same order (the Deep Image Matting
                                   convention: foreground i is composited over backgrounds i*K .. i*K + K - 1)
with <split> train / val. Each person is `render_person_crop(seed, index)` alone (its background dropped) with the
softer matte of `matte.soften` (blurred limb edges, translucent garments) on top of the feathered edges, hair halo
and strands every synthetic person has. Backgrounds are drawn from default_rng([seed, index, 1]).
"""

import os

import cv2
import numpy as np

from input_pipeline.synthetic import background, matte, scene
from input_pipeline.synthetic.lip_format import sample_id, write_encoded

BACKGROUNDS = 3  # backgrounds per foreground
JPEG_QUALITY = 95
FOLDERS = ("fg", "alpha", "bg")
FG_LIST, BG_LIST = "fg_names.txt", "bg_names.txt"
_BG_SCALE = (0.7, 1.6)  # background side / foreground side: the reader resizes/crops them to cover


def make_dirs(out_dir):
    for split in ("train", "val"):
        for d in FOLDERS:
            os.makedirs(os.path.join(out_dir, split, d), exist_ok=True)


def render_person(seed, index, size):
    """(alpha uint8 (H, W), foreground uint8 (H, W, 3) RGB) of synthetic person (seed, index)."""
    crop = scene.render_person_crop(seed, index, size)
    rng = np.random.default_rng([seed, index, 2])
    alpha, fg = matte.soften(crop.alpha, crop.foreground, crop.parts, rng)
    return np.clip(np.round(alpha * 255), 0, 255).astype(np.uint8), fg


def render_and_write(out_dir, split, seed, index, size):
    """Render person (seed, index) and its backgrounds and write them; returns (fg name, [bg names])."""
    alpha, fg = render_person(seed, index, size)
    sample = sample_id(seed, index)
    base = os.path.join(out_dir, split)
    name = sample + ".png"
    write_encoded(os.path.join(base, "fg", name), ".png", cv2.cvtColor(fg, cv2.COLOR_RGB2BGR))
    write_encoded(os.path.join(base, "alpha", name), ".png", alpha)
    rng = np.random.default_rng([seed, index, 1])
    h, w = alpha.shape
    bgs = []
    for k in range(BACKGROUNDS):
        bh, bw = (max(8, round(s * rng.uniform(*_BG_SCALE))) for s in (h, w))
        bg_name = f"{sample}_{k}.jpg"
        image = background.render_background(rng, bh, bw)
        write_encoded(
            os.path.join(base, "bg", bg_name),
            ".jpg",
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY),
        )
        bgs.append(bg_name)
    return name, bgs


def finish(out_dir, records_by_split):
    """Write each split's list files once its samples are on disk."""
    for split, records in records_by_split.items():
        with open(os.path.join(out_dir, split, FG_LIST), "w") as f:
            f.writelines(fg + "\n" for fg, _ in records)
        with open(os.path.join(out_dir, split, BG_LIST), "w") as f:
            f.writelines(bg + "\n" for _, bgs in records for bg in bgs)
