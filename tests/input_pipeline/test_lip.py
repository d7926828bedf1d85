"""LIP: layouts, training/evaluation streams, corrupt files, and the TFDS builder (tiny folders in tmp_path)."""

import shutil

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from input_pipeline import lip
from input_pipeline.pipeline import Stats
from jhuman.classes import CAFFE_MEAN_RGB

tfds.disable_progress_bar()
MEAN = np.asarray(CAFFE_MEAN_RGB, np.float32)
LAYOUTS = ("official", "doubled", "relayout", "relayout_parent")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_find_layout_accepts_every_layout(tmp_path, layout, make_lip):
    ids = make_lip(tmp_path / "d", layout, counts={"train": 3, "val": 2, "test": 2})
    root = tmp_path / "d"
    found = lip.find_layout(root)
    assert sorted(found) == ["test", "train", "val"]
    for split, entries in found.items():
        assert [e[0] for e in entries] == ids[split]  # sorted by id
        for _, image_path, label_path in entries:
            assert cv2.imread(image_path) is not None
            assert (label_path is None) == (split == "test")
            if label_path is not None:
                assert cv2.imread(label_path, cv2.IMREAD_UNCHANGED).ndim == 2
    assert lip.num_examples(root, "train") == 3 and lip.num_examples(root, "validation") == 2
    if layout == "relayout_parent":  # the LIP folder itself works too
        assert lip.find_layout(root / "LIP")["val"] == found["val"]


def test_missing_pieces_give_errors_naming_the_path(tmp_path, make_lip):
    root = tmp_path / "d"
    make_lip(root, "official", counts={"train": 2, "val": 2})
    shutil.rmtree(root / "TrainVal_parsing_annotations" / "val_segmentations")
    with pytest.raises(FileNotFoundError, match="val_segmentations"):
        lip.find_layout(root)
    (root / "TrainVal_images" / "train_id.txt").unlink()
    with pytest.raises(FileNotFoundError, match="train_id.txt"):
        lip.find_layout(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no LIP data found.*TrainVal_images.*LIP/"):
        lip.find_layout(tmp_path / "empty")
    other = tmp_path / "only_val"
    make_lip(other, "relayout", counts={"val": 2})
    with pytest.raises(FileNotFoundError, match="no LIP 'train' split.*found \\['val'\\]"):
        lip.train_stream(other, batch_size=1)


def test_train_stream_batches_and_exact_resume(lip_root):
    root, _ = lip_root
    stream = lip.train_stream(root, batch_size=4, crop_size=48, seed=1)
    full = [next(stream) for _ in range(4)]
    batch = full[0]
    assert batch["image"].shape == (4, 48, 48, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4, 48, 48) and batch["label"].dtype == np.int32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 255
    assert set(np.unique(batch["label"])) <= set(range(20)) | {255}
    resumed = lip.train_stream(root, batch_size=4, crop_size=48, seed=1, start_index=2 * 4)
    for a, b in zip([next(resumed) for _ in range(2)], full[2:]):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other = next(lip.train_stream(root, batch_size=4, crop_size=48, seed=2))
    assert not np.array_equal(other["image"], batch["image"])


def _matches(crop, originals):
    """Which original image (or its mirror) the unpadded top-left/top-right part of an unscaled crop is."""
    for example_id, image in originals.items():
        h, w = image.shape[:2]
        if np.array_equal(crop[:h, :w], image) or np.array_equal(crop[:h, -w:], image[:, ::-1]):
            return example_id
    return None


def test_corrupt_jpeg_is_skipped_counted_and_the_rest_comes_through(tmp_path, make_lip):
    root = tmp_path / "d"
    ids = make_lip(root, counts={"train": 6, "val": 5}, corrupt={("train", 2), ("val", 1)})
    layout = lip.find_layout(root)
    bad_train, bad_val = layout["train"][2], layout["val"][1]
    originals = {e[0]: lip.read_example(e)[1] for e in layout["train"] if e != bad_train}
    stats = Stats()
    stream = lip.train_stream(root, batch_size=5, crop_size=80, scales=(1.0,), stats=stats)
    # Epoch 0's order, its corrupt slot filled by the example at that offset of epoch 1 (unscaled, padded,
    # maybe mirrored): only good examples, at least the 4 other ones of epoch 0's first five.
    batch = next(stream)
    matched = [_matches(im, originals) for im in batch["image"]]
    assert all(m in originals for m in matched) and len(set(matched)) >= 4
    assert stats.skipped >= 1 and stats.skipped_files == [bad_train[1]]

    # Finite evaluation: the corrupt file is counted exactly once and masked out; the rest comes through.
    stats = Stats()
    batches = list(lip.eval_stream(root, batch_size=4, pad_size=64, stats=stats))
    mask = np.concatenate([b["mask"] for b in batches])
    got = np.concatenate([b["id"] for b in batches])[mask]
    assert stats.skipped == 1 and stats.skipped_files == [bad_val[1]]
    assert list(got) == [i for i in ids["val"] if i != bad_val[0]]


def test_missing_file_and_mismatched_label_are_skipped_and_counted(tmp_path, make_lip):
    root = tmp_path / "d"
    ids = make_lip(root, counts={"val": 4})
    val = lip.find_layout(root)["val"]
    (tmp_path / "d" / "TrainVal_parsing_annotations" / "val_segmentations" / f"{ids['val'][0]}.png").unlink()
    cv2.imwrite(val[3][2], np.zeros((5, 5), np.uint8))  # label of the wrong size
    stats = Stats()
    batches = list(lip.eval_stream(root, batch_size=4, pad_size=64, stats=stats))
    assert list(batches[0]["mask"]) == [False, True, True, False]
    assert stats.skipped == 2 and stats.skipped_files == [val[0][2], val[3][2]]


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_eval_stream_padding_mask_and_downscale(tmp_path, hosts, make_lip):
    root = tmp_path / "d"
    ids = make_lip(root, counts={"val": 7}, sizes=((40, 30), (70, 50), (30, 90)))
    entries = lip.find_layout(root)["val"]
    stats = Stats()
    seen, lengths = [], set()
    for p in range(hosts):
        stream = lip.eval_stream(
            root, batch_size=2, pad_size=64, process_index=p, process_count=hosts, stats=stats
        )
        batches = list(stream)
        lengths.add(len(batches))
        for b in batches:
            assert b["image"].shape == (2, 64, 64, 3) and b["label"].shape == (2, 64, 64)
            assert b["mask"].dtype == bool and b["height"].dtype == np.int32
            for image, label, m, h, w, i in zip(
                b["image"], b["label"], b["mask"], b["height"], b["width"], b["id"]
            ):
                if not m:
                    assert i == "" and (label == 255).all()
                    continue
                seen.append(i)
                _, original, original_label = lip.read_example(next(e for e in entries if e[0] == i))
                oh, ow = original.shape[:2]
                if max(oh, ow) <= 64:  # full image, unchanged, padded bottom/right
                    assert (h, w) == (oh, ow)
                    np.testing.assert_array_equal(image[:h, :w], original)
                    np.testing.assert_array_equal(label[:h, :w], original_label)
                else:  # downscaled to fit
                    assert max(h, w) == 64 and abs(h / w - oh / ow) < 0.1
                assert (label[h:] == 255).all() and (label[:, w:] == 255).all()
                np.testing.assert_array_equal(image[h:], np.broadcast_to(MEAN, image[h:].shape))
                np.testing.assert_array_equal(image[:, w:], np.broadcast_to(MEAN, image[:, w:].shape))
    assert len(lengths) == 1  # every host the same number of batches
    assert sorted(seen) == ids["val"]
    big = sum(max(lip.read_example(e)[1].shape[:2]) > 64 for e in entries)
    assert big > 0 and stats.downscaled == big
    limited = list(lip.eval_stream(root, batch_size=2, pad_size=64, limit=3))
    assert [i for b in limited for i, m in zip(b["id"], b["mask"]) if m] == ids["val"][:3]


def test_tfds_builder_matches_folders(tmp_path, make_lip):
    root = tmp_path / "d"
    make_lip(root, counts={"train": 6, "val": 3})
    data_dir = tmp_path / "tfds"
    builder = lip.prepare_tfds(root, data_dir)
    assert (
        builder.info.splits["train"].num_examples == 6 and builder.info.splits["validation"].num_examples == 3
    )
    assert builder.stats.skipped == 0
    kwargs = dict(batch_size=4, crop_size=40, seed=3)
    folders = lip.train_stream(root, **kwargs)
    from_tfds = lip.train_stream(None, source="tfds", tfds_data_dir=data_dir, **kwargs)  # already prepared
    for _ in range(3):
        a, b = next(folders), next(from_tfds)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    resumed = lip.train_stream(None, source="tfds", tfds_data_dir=data_dir, start_index=12, **kwargs)
    np.testing.assert_array_equal(next(resumed)["image"], next(folders)["image"])
    ev_f = list(lip.eval_stream(root, batch_size=2, pad_size=64))
    ev_t = list(lip.eval_stream(None, source="tfds", tfds_data_dir=data_dir, batch_size=2, pad_size=64))
    for a, b in zip(ev_f, ev_t):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert lip.num_examples(None, "validation", source="tfds", tfds_data_dir=data_dir) == 3
    with pytest.raises(FileNotFoundError, match="not prepared"):
        lip.num_examples(None, "train", source="tfds", tfds_data_dir=tmp_path / "elsewhere")


def test_tfds_builder_skips_and_counts_corrupt_files(tmp_path, make_lip):
    root = tmp_path / "d"
    ids = make_lip(root, counts={"train": 4, "val": 2}, corrupt={("train", 2)})
    bad = lip.find_layout(root)["train"][2]
    stats = Stats()
    builder = lip.prepare_tfds(root, tmp_path / "tfds", stats=stats)
    assert stats.skipped == 1 and stats.skipped_files == [bad[1]] and builder.stats is stats
    data = builder.as_data_source("train")
    assert [data[i]["id"].decode() for i in range(len(data))] == [i for i in ids["train"] if i != bad[0]]
    record = data[0]
    assert record["image"].dtype == np.uint8 and record["image"].ndim == 3 and record["label"].shape[-1] == 1
