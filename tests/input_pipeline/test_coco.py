"""COCO person keypoints: the synthetic writer (JSON round trip, COCOeval) and the PersonLab reader (label maps,
warp alignment, flip, crop, eval mapping, resume, zero-area skips, TFDS == folders)."""

import contextlib
import dataclasses
import io
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from input_pipeline import coco
from input_pipeline.synthetic import coco_format, datasets
from jhuman.classes import CAFFE_MEAN_RGB, COCO_FLIP_PERMUTATION, COCO_KEYPOINTS

tfds.disable_progress_bar()
# pycocotools 2.0 under numpy 2 warns on every mask decode (harmless).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
MEAN = np.asarray(CAFFE_MEAN_RGB, np.float32)
SIZE = (96, 160)
NUM, SEED, VAL_FRACTION = 24, 3, 0.25
KP = {name: i for i, name in enumerate(COCO_KEYPOINTS)}


def _quiet_coco(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    """A synthetic COCO keypoints dataset: 18 train, 6 val multi-person scenes."""
    root = tmp_path_factory.mktemp("coco") / "data"
    counts = datasets.write_dataset(
        "personlab", str(root), NUM, seed=SEED, size=SIZE, val_fraction=VAL_FRACTION, workers=1
    )
    assert counts == {"train": 18, "val": 6}
    return root


def _indices(split):
    return datasets.split_indices(NUM, VAL_FRACTION)[split]


# ----------------------------------------------------------------------------------------------- the writer
def test_written_json_round_trips_to_the_scenes(coco_root):
    kinds = {"polygon": 0, "rle": 0, "crowd": 0, "no_keypoints": 0}
    for split in ("train", "val"):
        gt = _quiet_coco(coco_root / coco_format.ANNOTATION_FILES[split])
        assert gt.dataset["categories"][0]["keypoints"] == list(COCO_KEYPOINTS)
        assert gt.dataset["categories"][0]["skeleton"] == coco_format.COCO_SKELETON
        for index in _indices(split):
            s = coco_format.render(SEED, index, SIZE)
            image_id = coco_format.image_id(index)
            info = gt.imgs[image_id]
            assert (
                info["file_name"] == f"{image_id:012d}.jpg"
                and (info["height"], info["width"]) == s.image.shape[:2]
            )
            image = cv2.imread(str(coco_root / coco_format.IMAGE_DIRS[split] / info["file_name"]))
            assert image.shape == s.image.shape and np.abs(image[..., ::-1].astype(int) - s.image).mean() < 8
            anns = gt.imgToAnns[image_id]
            people, crowds = [a for a in anns if not a["iscrowd"]], [a for a in anns if a["iscrowd"]]
            visible = [i for i in range(s.num_people) if (s.instances == i + 1).any()]
            assert len(people) == len(visible)  # zero-area (fully hidden) people are not written
            for ann, i in zip(people, visible):
                mask = s.instances == i + 1
                np.testing.assert_array_equal(gt.annToMask(ann).astype(bool), mask)
                assert ann["area"] == mask.sum() and ann["bbox"] == list(
                    map(float, cv2.boundingRect(mask.astype(np.uint8)))
                )
                kp = np.array(ann["keypoints"], np.float64).reshape(17, 3)
                assert ann["num_keypoints"] == (kp[:, 2] > 0).sum()
                if ann["num_keypoints"]:
                    np.testing.assert_array_equal(kp[:, 2], s.keypoints[i, :, 2])
                    np.testing.assert_allclose(kp[:, :2], s.keypoints[i, :, :2], atol=0.006)
                else:
                    assert (kp == 0).all()
                    kinds["no_keypoints"] += 1
                kinds["polygon" if isinstance(ann["segmentation"], list) else "rle"] += 1
                if not isinstance(ann["segmentation"], list):
                    assert isinstance(ann["segmentation"]["counts"], str)  # compressed
            assert len(crowds) == int(s.crowd.any())
            for ann in crowds:
                kinds["crowd"] += 1
                assert isinstance(ann["segmentation"]["counts"], list) and ann["num_keypoints"] == 0
                np.testing.assert_array_equal(gt.annToMask(ann).astype(bool), s.crowd)
    assert all(kinds.values()), kinds  # every kind occurs in this small dataset


def test_zero_area_people_are_not_written_and_ids_are_deterministic(tmp_path):
    s = coco_format.render(SEED, 5, SIZE)
    hidden = s.instances.copy()
    hidden[hidden == 1] = 0  # person 0 fully hidden
    anns = coco_format.annotate(dataclasses.replace(s, instances=hidden), 6)
    full = coco_format.annotate(s, 6)
    assert len([a for a in anns if not a["iscrowd"]]) == len([a for a in full if not a["iscrowd"]]) - 1
    assert anns[0]["segmentation"] == full[1]["segmentation"]
    # One sample written twice: the same bytes and the same record.
    for d in ("a", "b"):
        coco_format.make_dirs(tmp_path / d)
    ra = coco_format.render_and_write(str(tmp_path / "a"), "val", SEED, 7, SIZE)
    rb = coco_format.render_and_write(str(tmp_path / "b"), "val", SEED, 7, SIZE)
    assert ra == rb and ra[0]["id"] == 8 and all(a["id"] == 8000 + k for k, a in enumerate(ra[1]))
    name = "val2017/000000000008.jpg"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_cocoeval_accepts_the_ground_truth_as_perfect_results(coco_root):
    gt = _quiet_coco(coco.annotation_file(coco_root, "val"))
    keypoints = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt.dataset["annotations"]
        if a["num_keypoints"] > 0
    ]
    masks = [
        {"image_id": a["image_id"], "category_id": 1, "score": 1.0, "segmentation": _rle_str(gt.annToRLE(a))}
        for a in gt.dataset["annotations"]
        if not a["iscrowd"]
    ]
    for kind, results in (("keypoints", keypoints), ("segm", masks)):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, gt.loadRes(results), kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] > 0.99, kind


def _rle_str(rle):
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    return {
        "size": rle["size"],
        "counts": rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"],
    }


# ----------------------------------------------------------------------------------------------- layout
def test_missing_paths_give_errors_naming_them(tmp_path, coco_root):
    root = tmp_path / "c"
    with pytest.raises(FileNotFoundError, match="person_keypoints_train2017.json"):
        coco.load_annotations(root, "train")
    (root / "annotations").mkdir(parents=True)
    shutil.copy(coco_root / "annotations" / "person_keypoints_val2017.json", root / "annotations")
    with pytest.raises(FileNotFoundError, match="val2017"):
        coco.eval_stream(root, batch_size=1)
    with pytest.raises(ValueError, match="'train' or 'val'"):
        coco.num_examples(coco_root, "test")
    assert coco.num_examples(coco_root, "train") == 18 and coco.num_examples(coco_root, "validation") == 6
    assert (
        coco.annotation_file(coco_root, "val") == coco_root / "annotations" / "person_keypoints_val2017.json"
    )


# ----------------------------------------------------------------------------------------------- label maps
def _rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _person(mask, keypoints=None, crowd=False):
    kp = np.zeros((17, 3), np.float32)
    for k, (x, y) in (keypoints or {}).items():
        kp[k] = (x, y, 2)
    return kp, mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))), crowd


def test_instance_ids_overlaps_ignore_and_segmentation():
    h = w = 40
    a = _rect(h, w, 2, 20, 2, 20)  # keypoints -> slot 0
    b = _rect(h, w, 15, 30, 15, 30)  # no keypoints, overlaps a
    c = _rect(h, w, 30, 38, 0, 10)  # crowd, overlaps nothing ...
    d = _rect(h, w, 0, 10, 30, 40)  # keypoints -> slot 1
    e = _rect(h, w, 34, 40, 8, 12)  # keypoints, beyond max_persons = 2; overlaps the crowd
    f = _rect(h, w, 0, 4, 0, 4)  # crowd over a corner of a: a keeps its id there, ignored
    persons = [
        _person(a, {0: (5, 5), 9: (10, 12)}),
        _person(b),
        _person(c, crowd=True),
        _person(d, {5: (35, 4)}),
        _person(e, {16: (9, 36)}),
        _person(f, crowd=True),
    ]
    stats = coco.CocoStats()
    ex = coco.eval_example(
        7, np.zeros((h, w, 3), np.uint8), persons, crop_size=40, max_persons=2, stats=stats
    )
    assert ex["scale"] == 1 and ex["num_persons"] == 2 and stats.dropped_persons == 1
    assert stats.as_dict()["dropped_persons"] == 1
    ids, ign, seg = ex["instance_ids"], ex["ignore"], ex["segmentation"]
    expected = np.zeros((h, w), np.int32)
    expected[a] = 1
    expected[d] = 2
    expected[(a.astype(int) + b + d + e) >= 2] = -1  # crowd regions make no overlaps
    np.testing.assert_array_equal(ids, expected)
    assert (ids[a & b] == -1).all() and (ids[c & e] == 0).all() and (ids[b & ~a] == 0).all()
    assert (ids[a & f] == 1).all() and (a & f).any()
    np.testing.assert_array_equal(ign.astype(bool), b | c | e | f)
    np.testing.assert_array_equal(seg.astype(bool), a | b | d | e)
    assert ign.dtype == seg.dtype == np.uint8 and ids.dtype == np.int32
    np.testing.assert_array_equal(ex["keypoints"][0, [0, 9]], [[5, 5, 2], [10, 12, 2]])
    np.testing.assert_array_equal(ex["keypoints"][1, 5], [35, 4, 2])
    assert (ex["keypoints"][0, 1:9] == 0).all()
    # A plain pipeline.Stats gets the counter as an attribute.
    plain = coco.Stats()
    coco.eval_example(7, np.zeros((h, w, 3), np.uint8), persons, crop_size=40, max_persons=1, stats=plain)
    assert plain.dropped_persons == 2


def test_flip_keypoints_swaps_left_right_and_mirrors_x():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 50, (3, 17, 2)), rng.integers(0, 3, (3, 17, 1))], -1).astype(
        np.float32
    )
    kp[kp[..., 2] == 0] = 0
    flipped = coco.flip_keypoints(kp, 50)
    assert flipped.dtype == np.float32 and flipped.shape == kp.shape
    for k, name in enumerate(COCO_KEYPOINTS):
        other = KP[name.replace("left", "@").replace("right", "left").replace("@", "right")]
        assert COCO_FLIP_PERMUTATION[k] == other
        src = kp[:, other]
        np.testing.assert_array_equal(flipped[:, k, 2], src[:, 2])
        np.testing.assert_allclose(flipped[:, k, 0], np.where(src[:, 2] > 0, 49 - src[:, 0], 0))
        np.testing.assert_array_equal(flipped[:, k, 1], src[:, 1])
    np.testing.assert_allclose(coco.flip_keypoints(flipped, 50), kp, atol=1e-5)


def _blob(h, w, x, y, sigma=2.5):
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def test_warp_keeps_image_keypoints_and_masks_aligned_and_flips_with_swap():
    """A bright blob and a disk mask centred on left_wrist: after the warp the blob's and the disk's centroids
    sit on the warped keypoint, which is left_wrist unflipped and right_wrist flipped (sub-pixel precision)."""
    h, w, crop = 90, 120, 101
    x, y = 47.3, 38.6
    image = (np.clip(_blob(h, w, x, y), 0, 1)[..., None] * 255 * np.ones(3)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    disk = np.hypot(xx - x, yy - y) <= 6
    persons = [_person(disk, {KP["left_wrist"]: (x, y), KP["nose"]: (x, y - 20)})]
    seen_flips = set()
    for seed in range(12):
        ex = coco.train_example(
            image, persons, np.random.default_rng(seed), crop_size=crop, scale_range=(0.6, 1.4)
        )
        _, flipped = coco.train_affine(
            h, w, np.random.default_rng(seed), crop_size=crop, scale_range=(0.6, 1.4)
        )
        seen_flips.add(flipped)
        k, gone = (KP["right_wrist"], KP["left_wrist"]) if flipped else (KP["left_wrist"], KP["right_wrist"])
        kx, ky, v = ex["keypoints"][0, k]
        assert v == 2 and (ex["keypoints"][0, gone] == 0).all()
        assert ex["keypoints"][0, KP["nose"], 2] in (0, 2)
        yy, xx = np.mgrid[:crop, :crop]
        weights = np.clip(ex["image"][..., 0] - MEAN[0], 0, None) * (np.hypot(xx - kx, yy - ky) < 12)
        cx, cy = (weights * xx).sum() / weights.sum(), (weights * yy).sum() / weights.sum()
        assert np.hypot(cx - kx, cy - ky) < 0.3, (seed, flipped, cx, cy, kx, ky)
        on = ex["instance_ids"] == 1
        assert np.hypot(xx[on].mean() - kx, yy[on].mean() - ky) < 0.6
        assert ex["instance_ids"][int(round(ky)), int(round(kx))] == 1
    assert seen_flips == {False, True}


def test_warped_keypoints_stay_on_their_person(coco_root):
    """On the synthetic scenes: a visible keypoint inside its person's own region (with a 2-pixel margin) lands on
    that person's warped instance, for every warp."""
    crop = 161
    checked = 0
    for record in coco.load_annotations(coco_root, "train"):
        image_id, image, persons = coco.read_example(record)
        h, w = image.shape[:2]
        keypoints, labels, _, _ = coco.label_maps(persons, h, w, 30)
        code = labels[..., 0]
        for seed in range(3):
            ex = coco.train_example(image, persons, np.random.default_rng([seed, image_id]), crop_size=crop)
            for j in range(int(ex["num_persons"])):
                own = cv2.erode((code == j + 1).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                matrix, flipped = coco.train_affine(
                    h, w, np.random.default_rng([seed, image_id]), crop_size=crop
                )
                for k in range(17):
                    x, y, v = keypoints[j, k]
                    if v != 2 or not own[int(round(y)), int(round(x))]:
                        continue
                    out = COCO_FLIP_PERMUTATION[k] if flipped else k
                    kx, ky, kv = ex["keypoints"][j, out]
                    if kv == 0:  # left the crop
                        continue
                    assert ex["instance_ids"][int(round(ky)), int(round(kx))] == j + 1
                    checked += 1
    assert checked > 100


def test_keypoints_leaving_the_crop_become_unlabelled():
    h, w, crop = 60, 60, 64
    rng = np.random.default_rng(0)
    kp = {k: tuple(rng.uniform(2, 58, 2)) for k in range(17)}
    persons = [_person(_rect(h, w, 0, 60, 0, 60), kp)]
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    some_left = False
    for seed in range(6):
        ex = coco.train_example(
            image, persons, np.random.default_rng(seed), crop_size=crop, scale_range=(2.5, 3.0)
        )
        matrix, flipped = coco.train_affine(
            h, w, np.random.default_rng(seed), crop_size=crop, scale_range=(2.5, 3.0)
        )
        pts = np.array([kp[k] for k in range(17)]) @ matrix[:, :2].T + matrix[:, 2]
        if flipped:
            pts[:, 0] = crop - 1 - pts[:, 0]
            pts = pts[COCO_FLIP_PERMUTATION]
        inside = ((pts >= 0) & (pts <= crop - 1)).all(1)
        out = ex["keypoints"][0]
        np.testing.assert_array_equal(out[:, 2] > 0, inside)
        assert (out[~inside] == 0).all()
        np.testing.assert_allclose(out[inside, :2], pts[inside], atol=1e-3)
        some_left |= not inside.all()
        assert ex["num_persons"] == 1
    assert some_left


# ----------------------------------------------------------------------------------------------- streams
def test_train_stream_shapes_and_exact_resume(coco_root):
    kwargs = dict(batch_size=4, crop_size=64, max_persons=8, seed=1)
    with coco.train_stream(coco_root, **kwargs) as stream:
        full = [next(stream) for _ in range(4)]
    b = full[0]
    assert b["image"].shape == (4, 64, 64, 3) and b["image"].dtype == np.float32
    assert b["keypoints"].shape == (4, 8, 17, 3) and b["keypoints"].dtype == np.float32
    assert b["instance_ids"].dtype == np.int32 and b["segmentation"].dtype == b["ignore"].dtype == np.uint8
    assert b["num_persons"].shape == (4,) and b["num_persons"].dtype == np.int32
    assert set(np.unique(b["keypoints"][..., 2])) <= {0, 1, 2} and b["instance_ids"].min() >= -1
    assert (b["num_persons"] >= 1).all()
    for x in full:  # padded persons are all zero, slots are the instance ids
        for n, kp, ids in zip(x["num_persons"], x["keypoints"], x["instance_ids"]):
            assert (kp[n:] == 0).all() and ids.max() <= n
    with coco.train_stream(coco_root, start_index=2 * 4, **kwargs) as resumed:
        tail = [next(resumed) for _ in range(2)]
    for a, b in zip(tail, full[2:]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_eval_examples_map_back_to_the_original_annotations(coco_root):
    gt = _quiet_coco(coco.annotation_file(coco_root, "val"))
    seen = []
    with coco.eval_stream(coco_root, batch_size=4, crop_size=128, max_persons=8) as stream:
        batches = list(stream)
    assert len(batches) == 2
    for batch in batches:
        for i in range(4):
            if not batch["mask"][i]:
                continue
            image_id = int(batch["image_id"][i])
            seen.append(image_id)
            info = gt.imgs[image_id]
            h, w, scale = info["height"], info["width"], batch["scale"][i]
            assert (batch["height"][i], batch["width"][i]) == (h, w)
            assert scale == np.float32(128 / max(h, w))
            people = [a for a in gt.imgToAnns[image_id] if a["num_keypoints"] > 0]
            assert batch["num_persons"][i] == len(people)
            for j, ann in enumerate(people):
                kp = batch["keypoints"][i, j]
                want = np.array(ann["keypoints"], np.float64).reshape(17, 3)
                np.testing.assert_array_equal(kp[:, 2], want[:, 2])
                np.testing.assert_allclose(kp[:, :2] / scale, want[:, :2], rtol=1e-6, atol=1e-4)
            vh, vw = round(h * scale), round(w * scale)
            assert max(vh, vw) == 128
            image = batch["image"][i]
            np.testing.assert_array_equal(image[vh:], np.broadcast_to(MEAN, image[vh:].shape))
            np.testing.assert_array_equal(image[:, vw:], np.broadcast_to(MEAN, image[:, vw:].shape))
            assert (batch["segmentation"][i][vh:] == 0).all() and (
                batch["instance_ids"][i][:, vw:] == 0
            ).all()
            original = cv2.imread(str(coco_root / "val2017" / info["file_name"]))[..., ::-1].astype(
                np.float32
            )
            small = cv2.warpAffine(
                original,
                np.float64([[scale, 0, 0], [0, scale, 0]]),
                (vw, vh),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            np.testing.assert_allclose(image[:vh, :vw], small, atol=0.01)
    assert seen == sorted(gt.getImgIds())
    assert len(list(coco.eval_stream(coco_root, batch_size=4, crop_size=64, limit=3))) == 1


def _edited_copy(coco_root, tmp_path, edit, copy_images=False):
    """A copy of the dataset (images linked, or copied) whose JSONs are passed through edit(split, dict)."""
    root = tmp_path / "edited"
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        (shutil.copytree if copy_images else os.symlink)(coco_root / f"{split}2017", root / f"{split}2017")
        data = json.loads((coco_root / coco_format.ANNOTATION_FILES[split]).read_text())
        edit(split, data)
        (root / coco_format.ANNOTATION_FILES[split]).write_text(json.dumps(data))
    return root


def test_zero_area_annotations_and_unannotated_images_are_skipped_and_counted(coco_root, tmp_path):
    empty_id = coco_format.image_id(2)
    base = _quiet_coco(coco_root / coco_format.ANNOTATION_FILES["train"])
    victim = base.imgToAnns[empty_id]

    def edit(split, data):
        if split != "train":
            return
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] != empty_id]
        first = data["annotations"][0]
        data["annotations"] += [
            {**first, "id": 1, "area": 0.0},  # area 0
            {**first, "id": 2, "segmentation": [[1, 1, 5, 5]], "area": 3.0},  # degenerate polygon
            {**victim[0], "id": 3, "area": 0.0},
        ]  # the emptied image stays empty

    root = _edited_copy(coco_root, tmp_path, edit)
    stats = coco.CocoStats()
    records = coco.load_annotations(root, "train", stats)
    assert stats.zero_area == 3 and stats.unannotated_images == 1
    assert empty_id not in [r.image_id for r in records] and len(records) == 17
    first_image = [r for r in records if r.image_id == base.dataset["annotations"][0]["image_id"]][0]
    assert len(first_image.persons) == len(base.imgToAnns[first_image.image_id])
    assert stats.as_dict()["zero_area"] == 3
    with coco.train_stream(root, batch_size=2, crop_size=48, stats=stats) as stream:
        next(stream)
    assert stats.zero_area == 6 and stats.unannotated_images == 2  # counted again per stream creation


def test_corrupt_or_mismatched_images_are_skipped_and_counted(coco_root, tmp_path):
    root = _edited_copy(coco_root, tmp_path, lambda split, data: None, copy_images=True)
    records = coco.load_annotations(root, "val")
    bad_jpeg, bad_size = records[1], records[4]
    open(bad_jpeg.path, "wb").write(b"not a jpeg" * 20)
    cv2.imwrite(bad_size.path, np.zeros((10, 12, 3), np.uint8))
    stats = coco.CocoStats()
    batches = list(coco.eval_stream(root, batch_size=3, crop_size=48, stats=stats))
    mask = np.concatenate([b["mask"] for b in batches])
    assert list(mask) == [True, False, True, True, False, True]
    assert stats.skipped == 2 and stats.skipped_files == [bad_jpeg.path, bad_size.path]
    with pytest.raises(coco.CorruptExample, match="annotations say"):
        coco.read_example(bad_size)


def test_tfds_source_equals_folder_source(coco_root, tmp_path):
    val_ids = sorted(coco_format.image_id(i) for i in _indices("val"))

    def edit(split, data):  # a val image without people (kept for eval), a zero-area training annotation
        if split == "val":
            data["annotations"] = [a for a in data["annotations"] if a["image_id"] != val_ids[2]]
        else:
            data["annotations"].append({**data["annotations"][0], "id": 5, "area": 0.0})

    root = _edited_copy(coco_root, tmp_path, edit)
    data_dir = tmp_path / "tfds"
    stats = coco.CocoStats()
    builder = coco.prepare_tfds(root, data_dir, stats=stats)
    assert (
        builder.info.splits["train"].num_examples == 18
        and builder.info.splits["validation"].num_examples == 6
    )
    assert stats.skipped == 0 and stats.zero_area == 1 and stats.unannotated_images == 0
    kwargs = dict(batch_size=4, crop_size=64, max_persons=6, seed=2)
    with (
        coco.train_stream(root, **kwargs) as folders,
        coco.train_stream(None, source="tfds", tfds_data_dir=data_dir, **kwargs) as from_tfds,
    ):
        for _ in range(5):
            a, b = next(folders), next(from_tfds)
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ev_f = list(coco.eval_stream(root, batch_size=4, crop_size=64))
    ev_t = list(coco.eval_stream(None, source="tfds", tfds_data_dir=data_dir, batch_size=4, crop_size=64))
    assert len(ev_f) == len(ev_t) == 2
    for a, b in zip(ev_f, ev_t):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    empty = ev_t[0]  # the image without people: no keypoints, no masks
    assert empty["image_id"][2] == val_ids[2] and empty["mask"][2] and empty["num_persons"][2] == 0
    assert (empty["keypoints"][2] == 0).all() and (empty["instance_ids"][2] == 0).all()
    assert (empty["segmentation"][2] == 0).all() and (empty["ignore"][2] == 0).all()
    record = builder.as_data_source("train")[0]
    assert len(record["persons"]["rle"]) == len(record["persons"]["id"]) >= 1
    assert coco.num_examples(None, "val", source="tfds", tfds_data_dir=data_dir) == 6
    with pytest.raises(FileNotFoundError, match="not prepared"):
        coco.num_examples(None, "train", source="tfds", tfds_data_dir=tmp_path / "elsewhere")
