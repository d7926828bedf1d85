"""Nothing lost, nothing silent, on the data side: every way a file of a LIP or COCO folder can be broken
(empty, truncated, another mode, a label of another size, half of a pair missing) is skipped and counted with
its reason and file, or converted to 8-bit RGB and counted; the good examples come through; a split with no
usable example is one error naming its folder and what was skipped and why."""

import collections
import dataclasses
import io
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from input_pipeline import coco, lip, reader
from input_pipeline.pipeline import CorruptExample, NoUsableExamples, Stats
from input_pipeline.synthetic import coco_format, datasets

# pycocotools 2.0 under numpy 2 warns on every mask decode (harmless).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _png(array, mode=None):
    """PNG bytes of an array (cv2: BGR order; with `mode`, PIL writes it in that mode, e.g. 'P')."""
    if mode is None:
        ok, buf = cv2.imencode(".png", array)
        assert ok
        return buf.tobytes()
    out = io.BytesIO()
    Image.fromarray(array).convert(mode).save(out, "PNG")
    return out.getvalue()


def _jpeg(array):
    ok, buf = cv2.imencode(".jpg", array)
    assert ok
    return buf.tobytes()


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", "empty file"),
        (_jpeg(RGB)[:-2], "truncated"),  # without its end-of-image marker
        (_jpeg(RGB)[: len(_jpeg(RGB)) // 2], "truncated"),
        (_png(RGB)[:-12], "truncated"),  # without IEND
        (b"\xff\xd8\xff not really a jpeg \xff\xda\xff\xd9", "undecodable"),
        (b"plain text", "undecodable"),
    ],
)
def test_unusable_image_bytes_raise_with_their_kind(data, kind):
    with pytest.raises(CorruptExample, match="x.img") as raised:
        reader.decode_image(data, "x.img")
    assert raised.value.kind == kind and raised.value.path == "x.img"


@pytest.mark.parametrize(
    "data, expected, conversion",
    [
        (_png(RGB[..., ::-1].astype(np.uint16) * 257), RGB, "16-bit -> 8-bit"),
        (
            _png(np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 7, np.uint8)])),
            RGB,
            "alpha channel dropped",
        ),
        (_png(RGB[..., 0]), np.repeat(RGB[..., :1], 3, -1), "grayscale -> RGB"),
        (_png(RGB, "P"), np.asarray(Image.fromarray(RGB).convert("P").convert("RGB")), "palette PNG -> RGB"),
        (_png(RGB[..., ::-1]), RGB, None),
    ],
)
def test_images_in_other_modes_become_8_bit_rgb_and_are_counted(data, expected, conversion):
    stats = Stats()
    image = reader.decode_image(data, "x.png", stats)
    assert image.dtype == np.uint8 and image.shape == (12, 10, 3)
    np.testing.assert_array_equal(image, expected)
    assert dict(stats.conversions) == ({conversion: 1} if conversion else {})


@pytest.mark.parametrize(
    "data, found",
    [
        (_png(np.zeros((6, 5), np.uint16)), "a 16-bit grayscale PNG"),
        (_png(RGB), "an 8-bit RGB PNG"),
        (_png(RGB, "P"), "an 8-bit palette PNG"),
        (_png(np.dstack([RGB, RGB[..., :1]])), "an 8-bit RGBA PNG"),
        (_png(np.dstack([RGB[..., 0]] * 3)), "an 8-bit RGB PNG"),  # grey, but three channels
        (b"", "empty"),
        (_png(RGB[..., 0])[:-12], "truncated PNG"),
    ],
)
def test_label_maps_must_be_single_channel_8_bit(data, found):
    with pytest.raises(CorruptExample, match=found):
        reader.decode_label(data, "x.png")
    assert reader.decode_label(_png(RGB[..., 0]), "x.png").shape == (12, 10)


# ----------------------------------------------------------------------------------------------- LIP
def _break(image_path, label_path, fault):
    """Applies one fault to an example (its image and label files); returns the file it broke."""
    if fault in ("missing label", "missing image"):
        path = label_path if fault == "missing label" else image_path
        os.remove(path)
        return path
    image = cv2.imread(image_path)
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED) if fault.endswith("label") else None
    writes = {
        "empty image": lambda: (image_path, b""),
        "truncated image": lambda: (image_path, open(image_path, "rb").read()[:-40]),
        "16-bit image": lambda: (image_path, _png(image.astype(np.uint16) * 257)),
        "rgba image": lambda: (image_path, _png(np.dstack([image, image[..., :1]]))),
        "palette image": lambda: (image_path, _png(image[..., ::-1], "P")),
        "grey image": lambda: (image_path, _jpeg(image[..., 1])),
        "small label": lambda: (label_path, _png(label[:5, :5])),
        "16-bit label": lambda: (label_path, _png(label.astype(np.uint16))),
        "palette label": lambda: (label_path, _png(label, "P")),
        "colour label": lambda: (label_path, _png(np.dstack([label, label, label + 1]))),
        "empty label": lambda: (label_path, b""),
        "truncated label": lambda: (label_path, open(label_path, "rb").read()[:-12]),
    }
    path, data = writes[fault]()
    with open(path, "wb") as f:
        f.write(data)
    return path


SKIPPED = {  # fault -> kind counted
    "empty image": "empty file",
    "truncated image": "truncated",
    "small label": "size mismatch",
    "missing label": "missing pair",
    "missing image": "missing pair",
    "16-bit label": "wrong mode",
    "palette label": "wrong mode",
    "colour label": "wrong mode",
    "empty label": "empty file",
    "truncated label": "truncated",
}
CONVERTED = {
    "16-bit image": "16-bit -> 8-bit",
    "rgba image": "alpha channel dropped",
    "palette image": "palette PNG -> RGB",
    "grey image": "grayscale -> RGB",
}


def test_lip_streams_skip_and_count_every_broken_file_and_convert_other_modes(tmp_path, make_lip):
    faults = [None, *SKIPPED, *CONVERTED]
    root = tmp_path / "lip"
    ids = make_lip(root, counts={"train": 3, "val": len(faults)})
    val = lip.find_layout(root)["val"]
    originals = {e[0]: cv2.imread(e[1])[..., ::-1] for e in val}
    culprits = {}
    for (_, image_path, label_path), fault in zip(val, faults):
        if fault is not None:
            culprits[fault] = _break(image_path, label_path, fault)

    stats = Stats()
    batches = list(lip.eval_stream(root, batch_size=4, pad_size=64, stats=stats))
    mask = np.concatenate([b["mask"] for b in batches])
    got = list(np.concatenate([b["id"] for b in batches])[mask])
    expected = [i for i, f in zip(ids["val"], faults) if f not in SKIPPED]
    assert got == expected  # the good and the converted ones, in order
    assert stats.skip_kinds == collections.Counter(SKIPPED.values())
    assert sorted(stats.skipped_files) == sorted(culprits[f] for f in SKIPPED)  # each names its file
    assert "missing label map of image" in stats.reasons[culprits["missing label"]]
    assert "missing image of label map" in stats.reasons[culprits["missing image"]]
    assert "16-bit grayscale PNG" in stats.reasons[culprits["16-bit label"]]
    assert stats.conversions == collections.Counter(CONVERTED.values())
    # Converted images keep their pixels (16-bit: v * 257 -> v exactly).
    image_16 = next(
        b["image"][k] for b in batches for k in range(4) if b["id"][k] == ids["val"][len(SKIPPED) + 1]
    )
    h, w = originals[ids["val"][len(SKIPPED) + 1]].shape[:2]
    np.testing.assert_array_equal(image_16[:h, :w], originals[ids["val"][len(SKIPPED) + 1]])

    # Training: a zero-byte image is skipped and counted, not a cv2 error that kills the stream.
    train = lip.find_layout(root)["train"]
    open(train[1][1], "wb").close()
    stats = Stats()
    with lip.train_stream(root, batch_size=3, crop_size=32, scales=(1.0,), stats=stats) as stream:
        assert next(stream)["image"].shape == (3, 32, 32, 3)  # an epoch and a half: the empty one was read
    assert stats.skipped_files == [train[1][1]] and stats.skip_kinds == {"empty file": 1}


def test_a_split_with_no_usable_example_is_one_error_naming_its_folder(tmp_path, make_lip):
    root = tmp_path / "lip"
    make_lip(root, counts={"train": 3, "val": 2})
    for _, image_path, _ in lip.find_layout(root)["train"]:
        open(image_path, "wb").close()
    stream = lip.train_stream(root, batch_size=2, crop_size=32)
    with pytest.raises(NoUsableExamples) as raised:
        next(stream)  # no hang, no TensorFlow error: the reader's own one line
    message = str(raised.value)
    assert f"LIP train split under {root}" in message and "all 3 listed were skipped" in message
    assert "(3 empty file)" in message and "\n" not in message
    stream.close()
    (root / "TrainVal_images" / "val_id.txt").write_text("\n")
    with pytest.raises(NoUsableExamples, match=f"LIP val split under {root}: it lists none"):
        lip.eval_stream(root, batch_size=2, pad_size=64)


# ----------------------------------------------------------------------------------------------- COCO
@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco") / "data"
    datasets.write_dataset("personlab", str(root), 8, seed=5, size=(64, 96), val_fraction=0.5, workers=1)
    return root


def test_coco_streams_skip_and_count_broken_images(coco_root):
    records = coco.load_annotations(coco_root, "val")
    assert len(records) == 4
    _break(records[0].path, records[0].path, "empty image")
    _break(records[1].path, records[1].path, "truncated image")
    _break(records[2].path, records[2].path, "grey image")
    stats = coco.CocoStats()
    batches = list(coco.eval_stream(coco_root, batch_size=4, crop_size=48, stats=stats))
    assert list(batches[0]["mask"]) == [False, False, True, True]
    assert sorted(stats.skipped_files) == [records[0].path, records[1].path]  # decoded in parallel: any order
    assert stats.skip_kinds == {"empty file": 1, "truncated": 1}
    assert stats.conversions == {"grayscale -> RGB": 1}
    with pytest.raises(CorruptExample, match="missing image"):
        coco.read_example(dataclasses.replace(records[3], path=records[3].path + ".gone"))


def test_coco_split_left_empty_by_its_annotations_names_what_was_left_out(coco_root, tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").symlink_to(coco_root / "train2017")
    data = json.loads((coco_root / coco_format.ANNOTATION_FILES["train"]).read_text())
    data["annotations"] = []
    (root / coco_format.ANNOTATION_FILES["train"]).write_text(json.dumps(data))
    with pytest.raises(NoUsableExamples, match=r"COCO train split under .*lists none.*4 unannotated images"):
        coco.train_stream(root, batch_size=2, crop_size=48)
