"""Write person crops in the official LIP on-disk layout (the layout input_pipeline/lip.py reads):

TrainVal_images/{train_images,val_images}/<ID>.jpg            RGB JPEG, quality 95
TrainVal_images/{train_id.txt,val_id.txt}                     one ID per line
TrainVal_parsing_annotations/{train_segmentations,val_segmentations}/<ID>.png   single-channel uint8, 0..19
"""

import os

import cv2
import numpy as np

from input_pipeline.synthetic import scene

JPEG_QUALITY = 95
IMAGE_DIRS = {"train": "TrainVal_images/train_images", "val": "TrainVal_images/val_images"}
LABEL_DIRS = {
    "train": "TrainVal_parsing_annotations/train_segmentations",
    "val": "TrainVal_parsing_annotations/val_segmentations",
}
ID_FILES = {"train": "TrainVal_images/train_id.txt", "val": "TrainVal_images/val_id.txt"}


def sample_id(seed, index):
    """LIP-style image ID of synthetic sample `index` of `seed`."""
    return f"s{seed}_{index:06d}"


def make_dirs(out_dir):
    for d in (*IMAGE_DIRS.values(), *LABEL_DIRS.values()):
        os.makedirs(os.path.join(out_dir, d), exist_ok=True)


def write_encoded(path, ext, array, params=()):
    """Encode `array` with OpenCV as `ext` ('.jpg', '.png') and write it to `path`."""
    ok, buf = cv2.imencode(ext, array, list(params))
    if not ok:
        raise OSError(f"could not encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def write_sample(out_dir, split, sample, image, labels):
    """Write one (H, W, 3) uint8 RGB image and its (H, W) uint8 LIP label map under ID `sample`."""
    assert labels.dtype == np.uint8 and labels.ndim == 2 and labels.shape == image.shape[:2]
    write_encoded(
        os.path.join(out_dir, IMAGE_DIRS[split], sample + ".jpg"),
        ".jpg",
        cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
        (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY),
    )
    write_encoded(os.path.join(out_dir, LABEL_DIRS[split], sample + ".png"), ".png", labels)


def write_ids(out_dir, split, ids):
    with open(os.path.join(out_dir, ID_FILES[split]), "w") as f:
        f.writelines(i + "\n" for i in ids)


def render_and_write(out_dir, split, seed, index, size):
    """Render person crop (seed, index) and write it; returns its ID."""
    crop = scene.render_person_crop(seed, index, size)
    sample = sample_id(seed, index)
    write_sample(out_dir, split, sample, crop.image, crop.parts)
    return sample


def finish(out_dir, ids_by_split):
    """Write the ID lists once every sample of the split is on disk."""
    for split, ids in ids_by_split.items():
        write_ids(out_dir, split, ids)
