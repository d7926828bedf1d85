"""The synthetic pose videos: files in the published layout that the reader parses back to the rendered joints, one
person over one static background in several poses, deterministic, and written by `jhuman data synth --task
posewarp` / ensure_dataset."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from input_pipeline import posewarp as pw
from input_pipeline.synthetic import datasets, posewarp_format, scene
from jhuman import cli

SIZE = 64


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_posewarp") / "data"
    counts = datasets.write_dataset("posewarp", str(root), 4, seed=3, size=SIZE, val_fraction=0.25, workers=1)
    return root, counts


def test_files_round_trip_through_the_reader(written):
    root, counts = written
    assert counts == {"train": 3, "val": 1}
    assert len(pw.list_videos(root, "train")) == 3 and len(pw.list_videos(root, "test")) == 1
    for split, index in (("train", 0), ("train", 2), ("test", datasets.VAL_INDEX_OFFSET)):
        name = f"s3_{index:06d}"
        joints, boxes = pw.read_info(root / split / "info" / f"{name}.mat")
        _, rendered = posewarp_format.render_video(3, index, SIZE)
        assert joints.shape == (posewarp_format.FRAMES, 14, 2)
        np.testing.assert_allclose(joints, rendered, atol=1e-4)  # 1-based on disk, 0-based read back
        np.testing.assert_allclose(boxes[:, :2], joints.min(1), atol=1e-4)  # the joints' box, as published
        np.testing.assert_allclose(boxes[:, 2:], joints.max(1) - joints.min(1), atol=1e-4)
        raw = scipy.io.loadmat(root / split / "info" / f"{name}.mat")["data"]
        assert raw["X"][0][0].shape == (14, 2, posewarp_format.FRAMES) and raw["bbox"][0][0].shape == (8, 4)
        video = pw.read_video((str(root / split), name))
        frames = [video.read_frame(k) for k in range(video.num_frames)]
        assert sorted(os.listdir(root / split / "frames" / name)) == sorted(f"{k}.jpg" for k in range(1, 9))
        assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in frames)
        # one static background: most pixels agree between the first and last frame (up to JPEG noise) ...
        still = (np.abs(frames[0].astype(int) - frames[-1].astype(int)).max(-1) <= 6).mean()
        assert still > 0.4
        # ... while the person moves: the pose changes along the video, more between distant frames
        step = np.abs(joints[1:] - joints[:-1]).mean()
        assert step > 0.3 and np.abs(joints[-1] - joints[0]).mean() > step
        # the camera stays still: the corners (background) do not change
        assert (np.abs(frames[0].astype(int) - frames[-1].astype(int))[:3, :3] <= 6).all()


def test_one_person_keeps_body_outfit_and_background_across_frames(monkeypatch):
    drawn = []
    compose = scene.compose

    def spy(background, people, rng, *args):
        drawn.append((background, people))
        return compose(background, people, rng, *args)

    monkeypatch.setattr(scene, "compose", spy)
    images, joints = posewarp_format.render_video(5, 1, 48)
    assert len(drawn) == len(images) == posewarp_format.FRAMES
    first_bg, (first,) = drawn[0]
    for background, (person,) in drawn[1:]:
        assert background is first_bg  # one static background
        assert person.body == first.body and person.outfit == first.outfit  # one person, one outfit
        assert person.scale == first.scale and person.roll == first.roll
    angles = [p.angles.arm_abduct for _, (p,) in drawn]
    assert not np.allclose(angles[0], angles[-1])  # several poses
    np.testing.assert_allclose(joints, posewarp_format.render_video(5, 1, 48)[1])  # deterministic
    again = posewarp_format.render_video(5, 1, 48)[0]
    assert all(np.array_equal(a, b) for a, b in zip(images, again))


def test_cli_and_ensure_dataset_write_the_same_files(written, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "synth", "--task", "posewarp", "--out", str(out), "--num", "4", "--seed", "3"]
    assert cli.main([*args, "--size", str(SIZE), "--val_fraction", "0.25"]) == 0
    assert "wrote {'train': 3, 'val': 1}" in capsys.readouterr().out
    files = sorted(p for p in Path(written[0]).rglob("*") if p.is_file())
    assert len(files) == 4 * 9
    for path in files:
        assert path.read_bytes() == (out / path.relative_to(written[0])).read_bytes(), path
    cached = datasets.ensure_dataset("posewarp", str(tmp_path / "cache"), 2, seed=0, size=(48, 56))
    assert os.path.basename(cached) == "posewarp-2-s0-48x56"
    with pw.train_stream(cached, batch_size=1, image_size=32) as stream:
        batch = next(stream)
    assert batch["source"].shape == (1, 32, 32, 3) and batch["source_visible"].any()
