"""Synthetic people: determinism, class coverage, the LIP layout on disk, keypoints, left/right, matting."""

import dataclasses
import json
import os

import cv2
import numpy as np
import pytest

from input_pipeline import synthetic
from input_pipeline.synthetic import datasets
from jhuman.classes import COCO_KEYPOINTS, LIP_CLASSES, LIP_FLIP_LUT, LIP_NUM_CLASSES

SIZE = (128, 160)
KP = {name: i for i, name in enumerate(COCO_KEYPOINTS)}
CLS = {name: i for i, name in enumerate(LIP_CLASSES)}


def _fields(scene):
    return {f.name: getattr(scene, f.name) for f in dataclasses.fields(scene)}


def _assert_same(a, b):
    for name, value in _fields(a).items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)


def _files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.relpath(os.path.join(d, n), root)] = f.read()
    return out


def _segment_distance(points, polyline):
    """Mean distance of (N, 2) points to a polyline (K, 2)."""
    best = np.full(len(points), np.inf)
    for a, b in zip(polyline[:-1], polyline[1:]):
        ab = b - a
        t = np.clip(((points - a) @ ab) / max(ab @ ab, 1e-9), 0, 1)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best.mean()


# --- determinism -----------------------------------------------------------------------------------------------


def test_render_is_a_pure_function_of_seed_and_index():
    first = synthetic.render_person_crop(3, 17, SIZE)
    synthetic.render_person_crop(3, 5, SIZE)  # other samples in between change nothing
    _assert_same(first, synthetic.render_person_crop(3, 17, SIZE))
    scene = synthetic.render_scene(3, 2, SIZE, crowd=True)
    synthetic.render_scene(9, 1, SIZE)
    _assert_same(scene, synthetic.render_scene(3, 2, SIZE, crowd=True))
    other = synthetic.render_person_crop(4, 17, SIZE)
    assert first.image.shape != other.image.shape or not np.array_equal(first.image, other.image)
    assert not np.array_equal(synthetic.render_person_crop(3, 18, SIZE).parts, first.parts)


def test_written_files_are_byte_identical_for_any_worker_count(tmp_path):
    serial = datasets.write_dataset("parsing", tmp_path / "a", 10, seed=5, size=SIZE, workers=1)
    parallel = datasets.write_dataset("parsing", tmp_path / "b", 10, seed=5, size=SIZE, workers=2)
    assert serial == parallel == {"train": 8, "val": 2}
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 2 * 10 + 2 and a == b
    datasets.write_dataset("parsing", tmp_path / "c", 10, seed=6, size=SIZE, workers=1)
    c = _files(tmp_path / "c")
    jpegs = lambda files: sorted(v for k, v in files.items() if k.endswith(".jpg"))  # noqa: E731
    assert not set(jpegs(a)) & set(jpegs(c))


# --- LIP classes and layout ------------------------------------------------------------------------------------


def test_every_lip_class_occurs_and_people_are_large():
    present = np.zeros(LIP_NUM_CLASSES, int)
    person_fraction = []
    for i in range(200):
        crop = synthetic.render_person_crop(0, i, SIZE)
        assert crop.num_people == 1
        present += np.bincount(crop.parts.ravel(), minlength=LIP_NUM_CLASSES)[:LIP_NUM_CLASSES] > 0
        np.testing.assert_array_equal(crop.parts > 0, crop.masks[0])  # only the main person is labelled
        person_fraction.append(crop.masks[0].mean())
    missing = [LIP_CLASSES[c] for c in range(LIP_NUM_CLASSES) if present[c] < 5]
    assert not missing, f"classes in fewer than 5 of 200 crops: {missing}"
    assert np.mean(person_fraction) > 0.2
    for left, right in ((14, 15), (16, 17), (18, 19)):  # left and right parts about equally frequent
        assert abs(present[left] - present[right]) <= 0.15 * max(present[left], present[right])


def test_lip_layout_parses(tmp_path):
    counts = synthetic.write_dataset("parsing", tmp_path, 10, seed=2, size=SIZE, val_fraction=0.3)
    assert counts == {"train": 7, "val": 3}
    ids, errors = {}, []
    for split in ("train", "val"):
        with open(tmp_path / "TrainVal_images" / f"{split}_id.txt") as f:
            ids[split] = f.read().split()
        assert len(ids[split]) == counts[split]
        image_dir = tmp_path / "TrainVal_images" / f"{split}_images"
        label_dir = tmp_path / "TrainVal_parsing_annotations" / f"{split}_segmentations"
        assert sorted(p[:-4] for p in os.listdir(image_dir)) == sorted(ids[split])
        assert sorted(p[:-4] for p in os.listdir(label_dir)) == sorted(ids[split])
        for sample in ids[split]:
            label = cv2.imread(str(label_dir / f"{sample}.png"), cv2.IMREAD_UNCHANGED)
            image = cv2.cvtColor(cv2.imread(str(image_dir / f"{sample}.jpg")), cv2.COLOR_BGR2RGB)
            assert label.ndim == 2 and label.dtype == np.uint8 and label.max() <= 19
            assert image.shape == label.shape + (3,) and all(SIZE[0] <= s <= SIZE[1] for s in label.shape)
            index = int(sample.split("_")[1])
            crop = synthetic.render_person_crop(2, index, SIZE)
            np.testing.assert_array_equal(label, crop.parts)
            err = np.abs(image.astype(float) - crop.image).mean()  # JPEG quality 95 of noisy clutter
            errors.append((err, np.abs(image[..., ::-1].astype(float) - crop.image).mean()))
            assert err < 8
    errors = np.array(errors).sum(0)
    assert errors[0] < 0.7 * errors[1]  # RGB written as RGB: channel-swapped is much worse
    assert ids["train"][0] == "s2_000000" and not set(ids["train"]) & set(ids["val"])
    assert all(int(i.split("_")[1]) >= synthetic.VAL_INDEX_OFFSET for i in ids["val"])


def test_unknown_task_lists_valid_tasks(tmp_path):
    with pytest.raises(ValueError, match="parsing"):
        synthetic.write_dataset("segmentation", tmp_path, 4)
    with pytest.raises(ValueError, match="parsing"):
        synthetic.ensure_dataset("nope", tmp_path, 4, seed=0, size=SIZE, val_fraction=0.2)
    assert not os.listdir(tmp_path)


def test_ensure_dataset_caches_and_regenerates_half_written(tmp_path, monkeypatch):
    path = synthetic.ensure_dataset("parsing", tmp_path, 6, seed=1, size=SIZE, val_fraction=0.5)
    assert os.path.basename(path) == "parsing-6-s1-128x160"
    with open(os.path.join(path, datasets.MARKER)) as f:
        marker = json.load(f)
    assert marker["params"]["num"] == 6 and marker["counts"] == {"train": 3, "val": 3}
    before = _files(path)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a complete dataset")

    with monkeypatch.context() as m:
        m.setattr(datasets, "write_dataset", fail)
        assert synthetic.ensure_dataset("parsing", tmp_path, 6, seed=1, size=SIZE, val_fraction=0.5) == path
    os.remove(os.path.join(path, datasets.MARKER))  # as if killed before the end
    open(os.path.join(path, "junk.tmp"), "w").close()
    assert synthetic.ensure_dataset("parsing", tmp_path, 6, seed=1, size=SIZE, val_fraction=0.5) == path
    assert _files(path) == before
    synthetic.ensure_dataset("parsing", tmp_path, 6, seed=1, size=SIZE, val_fraction=0.0)  # other params
    with open(os.path.join(path, datasets.MARKER)) as f:
        assert json.load(f)["counts"] == {"train": 6, "val": 0}
    assert sorted(os.listdir(tmp_path)) == ["parsing-6-s1-128x160"]  # no temporary folders left


# --- people: keypoints, instances, left/right ------------------------------------------------------------------


def test_scene_annotations_are_consistent():
    seen = np.zeros(3, int)
    for i in range(30):
        scene = synthetic.render_scene(1, i, SIZE, crowd=i % 5 == 0)
        h, w = scene.parts.shape
        p = scene.num_people
        assert scene.masks.shape == (p, h, w) and scene.keypoints.shape == (p, 17, 3) and p >= 1
        people = scene.masks.any(0)
        np.testing.assert_array_equal(scene.instances > 0, people)
        assert np.all(scene.parts[people] > 0)
        assert not np.any((scene.parts > 0) & ~people & ~scene.crowd)  # other labelled pixels: crowd only
        assert scene.crowd.any() == (i % 5 == 0)
        np.testing.assert_array_equal(scene.instances == p, scene.masks[-1])  # the front person is unoccluded
        for k in range(p):
            assert np.all(scene.masks[k][scene.instances == k + 1])
            x, y, bw, bh = scene.boxes[k]
            ys, xs = np.nonzero(scene.masks[k])
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + bw, y + bh)
            kp = scene.keypoints[k]
            v = kp[:, 2].astype(int)
            seen += np.bincount(v, minlength=3)
            xi, yi = np.round(kp[:, 0]).astype(int), np.round(kp[:, 1]).astype(int)
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            assert np.all(inside[v > 0]) and np.all(kp[v == 0, :2] == 0)
            vis = v == 2
            assert np.all(scene.masks[k][yi[vis], xi[vis]]) and np.all(
                scene.instances[yi[vis], xi[vis]] == k + 1
            )
    assert np.all(seen > 20), seen  # truncated, occluded and visible keypoints all occur


def test_left_parts_lie_along_the_left_limbs():
    chains = {
        14: ("left_shoulder", "left_elbow", "left_wrist"),
        15: ("right_shoulder", "right_elbow", "right_wrist"),
        16: ("left_hip", "left_knee", "left_ankle"),
        17: ("right_hip", "right_knee", "right_ankle"),
        18: ("left_knee", "left_ankle"),
        19: ("right_knee", "right_ankle"),
    }
    checked = 0
    for i in range(60):
        crop = synthetic.render_person_crop(7, i, SIZE)
        kp = crop.keypoints[0]
        for cls, other in ((14, 15), (16, 17), (18, 19)):
            ys, xs = np.nonzero(crop.parts == cls)
            idx = [KP[n] for n in chains[cls] + chains[other]]
            if len(xs) < 15 or np.any(kp[idx, 2] == 0):
                continue
            apart = np.linalg.norm(kp[idx[len(idx) // 2 - 1], :2] - kp[idx[-1], :2])  # the two chains' ends
            if apart < 15:  # limbs on top of each other (e.g. side views): ambiguous
                continue
            pixels = np.stack([xs, ys], 1).astype(float)
            own = _segment_distance(pixels, kp[[KP[n] for n in chains[cls]], :2])
            mirror = _segment_distance(pixels, kp[[KP[n] for n in chains[other]], :2])
            assert own < mirror, (i, LIP_CLASSES[cls], own, mirror)
            checked += 1
    assert checked > 60


def test_frontal_people_show_their_left_on_the_image_right():
    rng = np.random.default_rng(0)
    for yaw, left_is_right in ((0.0, True), (180.0, False)):
        spec = synthetic.sample_person(rng, 150.0, (80, 95), kind="stand")
        bare = dataclasses.replace(
            spec.outfit,
            top=CLS["Upper-clothes"],
            sleeve=0.0,
            coat=False,
            gloves=False,
            bottom=CLS["Skirt"],
            bottom_length=0.2,
            socks=0.0,
        )  # arms and legs show
        spec = dataclasses.replace(
            spec, outfit=bare, angles=dataclasses.replace(spec.angles, yaw=yaw), roll=0.0
        )
        background = np.zeros((200, 160, 3), np.uint8)
        scene = synthetic.compose(background, [spec], rng)
        kp = scene.keypoints[0]
        assert (kp[KP["left_shoulder"], 0] > kp[KP["right_shoulder"], 0]) == left_is_right
        for c in ("Left-arm", "Right-arm", "Left-leg", "Right-leg"):
            assert (scene.parts == CLS[c]).sum() > 50, c
        mean_x = lambda c: np.nonzero(scene.parts == c)[1].mean()  # noqa: E731
        assert (mean_x(CLS["Left-arm"]) > mean_x(CLS["Right-arm"])) == left_is_right
        assert (mean_x(CLS["Left-leg"]) > mean_x(CLS["Right-leg"])) == left_is_right
        # A horizontal flip with the LIP swap gives a person facing the same way: Left-arm on the same side.
        flipped = LIP_FLIP_LUT[scene.parts[:, ::-1]]
        assert (np.nonzero(flipped == CLS["Left-arm"])[1].mean() > 80) == left_is_right
        if yaw == 0:
            assert kp[KP["nose"], 2] == 2
        else:
            assert kp[KP["nose"], 2] == 1  # the face is turned away


# --- matting -----------------------------------------------------------------------------------------------------


def test_image_is_alpha_composite_of_foreground_and_background():
    for i in range(6):
        for scene in (synthetic.render_scene(2, i, SIZE), synthetic.render_person_crop(2, i, SIZE)):
            a = scene.alpha[..., None]
            assert scene.alpha.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
            composite = a * scene.foreground / 255.0 + (1 - a) * scene.background / 255.0
            assert np.abs(composite - scene.image / 255.0).max() <= 1.5 / 255
            people = scene.masks.any(0)
            erode = lambda m: cv2.erode(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)  # noqa: E731
            for mask in scene.masks:  # opaque inside every person (seams between touching people are soft)
                assert np.all(scene.alpha[erode(mask)] > 0.99)
            interior = erode(people)
            far = ~cv2.dilate(people.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
            assert np.all(scene.alpha[far] == 0)
            soft = (scene.alpha > 0.02) & (scene.alpha < 0.98)
            assert soft.sum() > 0.2 * (people & ~interior).sum()  # feathered edges
            assert (scene.alpha[~people] > 0.05).any()  # halo and hair strands outside the hard silhouette
            np.testing.assert_array_equal(scene.image[scene.alpha == 0], scene.background[scene.alpha == 0])
