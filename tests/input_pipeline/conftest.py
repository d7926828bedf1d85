"""Tiny LIP folders written with cv2 in tmp_path (random images and labels), in any of the accepted layouts."""

from pathlib import Path

import cv2
import numpy as np
import pytest


def _split_dirs(root: Path, layout: str, split: str):
    """(image dir, label dir or None, id file) of `split` in `layout`."""
    if layout in ("official", "doubled"):
        img, ann, test = (
            root / n for n in ("TrainVal_images", "TrainVal_parsing_annotations", "Testing_images")
        )
        if layout == "doubled":
            img, ann, test = img / img.name, ann / ann.name, test / test.name
        if split == "test":
            return test / "testing_images", None, test / "test_id.txt"
        return img / f"{split}_images", ann / f"{split}_segmentations", img / f"{split}_id.txt"
    base = root / "LIP" if layout == "relayout_parent" else root
    labels = None if split == "test" else base / f"{split}_segmentations"
    return base / f"{split}_images", labels, base / f"{split}_id.txt"


def write_lip(root, layout="official", counts=None, sizes=((40, 30), (64, 50)), seed=0, corrupt=()):
    """Writes a tiny LIP dataset; returns {split: sorted ids}. counts: {split: n}; sizes: (H, W) choices;
    corrupt: (split, index) pairs whose JPEG is replaced by garbage bytes (index in sorted-id order)."""
    root = Path(root)
    counts = counts or {"train": 6, "val": 5}
    rng = np.random.default_rng(seed)
    ids = {}
    for split, n in counts.items():
        image_dir, label_dir, id_file = _split_dirs(root, layout, split)
        image_dir.mkdir(parents=True, exist_ok=True)
        if label_dir is not None:
            label_dir.mkdir(parents=True, exist_ok=True)
        ids[split] = sorted(f"{split[:2]}{i:04d}_{int(rng.integers(1e6))}" for i in range(n))
        for k, i in enumerate(ids[split]):
            h, w = sizes[int(rng.integers(len(sizes)))]
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            cv2.imwrite(str(image_dir / f"{i}.jpg"), image)
            if (split, k) in corrupt:
                (image_dir / f"{i}.jpg").write_bytes(b"this is not a jpeg" * 10)
            if label_dir is not None:
                label = rng.integers(0, 20, (h, w), dtype=np.uint8)
                label[rng.random((h, w)) < 0.05] = 255
                cv2.imwrite(str(label_dir / f"{i}.png"), label)
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text("\n".join(reversed(ids[split])) + "\n")  # unsorted on disk: readers sort
    return ids


@pytest.fixture
def make_lip():
    """The `write_lip` function (tests call it with their own roots, layouts and corrupt files)."""
    return write_lip


@pytest.fixture
def lip_root(tmp_path):
    """A small official-layout LIP folder: 6 train, 5 val images."""
    root = tmp_path / "lip"
    ids = write_lip(root)
    return root, ids
