"""What tasks share: the pictures of a batch and `jhuman predict`'s loop over a folder."""

import json

import cv2
import numpy as np

from jhuman.tasks import common


def test_batch_grid_draws_one_row_per_real_example_with_uint8_images():
    images = np.stack([np.full((8, 6, 3), v, np.float32) for v in (-20.0, 100.4, 300.0)])
    batch = {"image": images, "mask": np.array([True, False, True])}
    seen = []

    def row(i, image):
        seen.append((i, image.dtype, int(image.min()), int(image.max())))
        return [image, 255 - image]

    grid = common.batch_grid(batch, row, ["image", "inverse"])
    assert seen == [(0, np.uint8, 0, 0), (2, np.uint8, 255, 255)]  # padding left out, images clipped
    gap, band = 2, 24
    assert grid.shape == (band + 2 * 8 + 3 * gap, 2 * 6 + 3 * gap, 3)


def test_predict_folder_reads_predicts_writes_and_counts_undecodable_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "b.png"), np.zeros((5, 7, 3), np.uint8))
    cv2.imwrite(str(images / "a.jpg"), np.zeros((9, 4, 3), np.uint8))
    (images / "c.jpg").write_bytes(b"not an image")
    (images / "notes.txt").write_text("not listed")
    calls = []

    def prepare(image):
        return np.zeros((16, 16, 3), np.float32), image.shape[:2]

    def predict(variables, inputs):
        assert inputs.shape == (1, 16, 16, 3) and variables == "vars"
        return {"total": inputs.sum(axis=(1, 2, 3)) + 1, "map": inputs[..., 0]}

    def write(out_dir, name, stem, image, context, outputs):
        assert stem == name[:1]
        calls.append((name, context, float(outputs["total"]), outputs["map"].shape))
        return [{"file": name}, {"file": name, "second": True}]

    out = tmp_path / "out"
    summary = common.predict_folder(
        "vars",
        str(images),
        str(out),
        prepare=prepare,
        predict=predict,
        write=write,
        results_file="r.json",
        entries_key="things",
    )
    assert calls == [("a.jpg", (9, 4), 1.0, (16, 16)), ("b.png", (5, 7), 1.0, (16, 16))]
    written = json.loads((out / "r.json").read_text())
    assert written == summary
    assert list(written) == ["things", "skipped", "num_skipped", "num_images", "outputs", "converted"]
    assert written["num_images"] == 2 and written["num_skipped"] == 1 and len(written["things"]) == 4
    assert written["skipped"] == [{"image": "c.jpg", "reason": "cannot decode image"}]
    assert written["outputs"] == {"a.jpg": ["a.png"], "b.png": ["b.png"]} and written["converted"] == []


def test_output_stems_never_give_two_images_one_file():
    patterns = ("{}.png", "{}_overlay.png")
    names = ["a.jpg", "a.png", "A.bmp", "b.jpg", "b_overlay.jpg", "c.JPG", "predictions.png"]
    stems = common.output_stems(names, patterns, reserved=("predictions.json",))
    assert stems == {
        "a.jpg": "a.jpg",  # a, a and A share a stem (case-insensitive disks): whole names
        "a.png": "a.png",
        "A.bmp": "A.bmp",
        "b.jpg": "b",  # unique stems keep it: b.png, which eval-parsing pairs with the ground truth b.png
        "b_overlay.jpg": "b_overlay.jpg",  # b_overlay.png is b.jpg's overlay
        "c.JPG": "c",
        "predictions.png": "predictions",
    }
    files = [p.format(s).casefold() for s in stems.values() for p in patterns]
    assert len(set(files)) == len(files)
