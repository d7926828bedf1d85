"""The pose-video reader: the published sample clip, the released scale / centring formula, one warp for pixels and
joints (flip swapping left and right), pair sampling, seeded test pairs, resumable streams, bad files skipped and
counted, and the TFDS source."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from input_pipeline import pipeline
from input_pipeline import posewarp as pw
from input_pipeline.pipeline import CorruptExample
from input_pipeline.synthetic import datasets

SAMPLE = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "posewarp_sample"
)  # ../shared of the project
CLIP = "Flavia Pennetta in 4k"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_dir(), reason="the published sample clip (../shared/data/posewarp_sample) is absent"
)
S = 32  # crop side of the stream tests


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Synthetic pose videos: 5 train, 1 test, 8 frames of 64 x 64 each."""
    root = tmp_path_factory.mktemp("posewarp") / "data"
    datasets.write_dataset("posewarp", str(root), 6, seed=2, size=64, val_fraction=1 / 6, workers=1)
    return root


# ----------------------------------------------------------------------------------------------- the real clip
@needs_sample
def test_reader_on_the_published_sample_clip():
    assert pw.list_videos(SAMPLE, "train") == [CLIP]
    mat = scipy.io.loadmat(SAMPLE / "train" / "info" / f"{CLIP}.mat")["data"]
    x, bbox = mat["X"][0][0], mat["bbox"][0][0]
    joints, boxes = pw.read_info(SAMPLE / "train" / "info" / f"{CLIP}.mat")
    assert joints.shape == (8, 14, 2) and joints.dtype == np.float32 and boxes.shape == (8, 4)
    for k in range(8):  # 1-based (x, y) columns of X -> 0-based rows of (14, 2)
        np.testing.assert_allclose(joints[k], x[:, :, k] - 1, atol=1e-4)
        np.testing.assert_allclose(boxes[k], bbox[k] - [1, 1, 0, 0], atol=1e-4)
    # the published boxes are the joints' extent
    np.testing.assert_allclose(boxes[:, :2], joints.min(1), atol=1e-3)
    np.testing.assert_allclose(boxes[:, :2] + boxes[:, 2:], joints.max(1), atol=1e-3)
    video = pw.open_video(SAMPLE / "train" / "info" / f"{CLIP}.mat")
    listed = pw.read_video(pw.READER.list_examples(SAMPLE, "train", None)[0])
    assert video.frames_dir == listed.frames_dir and np.array_equal(video.joints, listed.joints)
    assert video.num_frames == 8 and video.name == CLIP
    frames = [video.read_frame(k) for k in range(8)]
    assert all(f.shape == (676, 1280, 3) and f.dtype == np.uint8 for f in frames)

    i, j = pw.sample_pair(8, np.random.default_rng(0))
    pair = pw.prepare_pair(frames[i], joints[i], boxes[i], frames[j], joints[j], boxes[j], image_size=64)
    assert pair["source"].shape == pair["target"].shape == (64, 64, 3)
    assert -1 <= pair["source"].min() < pair["source"].max() <= 1
    for side, k in (("source", i), ("target", j)):
        assert pair[f"{side}_visible"].all()  # the whole person is inside the crop
        xy = pair[f"{side}_joints"]
        assert (xy > 2).all() and (xy < 61).all()
        # the released formula, restated: person size 2.5 * (mean hip y - head y) or 5 * mean calf length
        ps = [
            max(
                2.5 * ((q[8, 1] + q[11, 1]) / 2 - q[0, 1]),
                5 * (np.hypot(*(q[9] - q[10])) + np.hypot(*(q[12] - q[13]))) / 2,
            )
            / 200
            for q in (joints[i].astype(np.float64), joints[j].astype(np.float64))
        ]
        scale = 1.14 * (64 / 256) / max(ps)
        centre = (boxes[i, :2] + boxes[i, 2:] / 2 + boxes[j, :2] + boxes[j, 2:] / 2) / 2
        np.testing.assert_allclose(xy, (joints[k] - centre) * scale + 31.5, atol=1e-3)
    # the person fills most of the crop's height, as the 1.14 factor means
    height = pair["source_joints"][:, 1].max() - pair["source_joints"][:, 1].min()
    assert 0.4 * 64 < height < 0.95 * 64


# ----------------------------------------------------------------------------------------------- geometry
def _ramp(h, w):
    """float32 (h, w, 3): R = x, G = y scaled to 0..255 (a linear picture bilinear warps keep exactly)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([xx * 255 / (w - 1), yy * 255 / (h - 1), np.full_like(xx, 128)], -1)


def _sample(image, xy):
    """Bilinear samples of image (S, S, C) at points xy (N, 2)."""
    maps = np.asarray(xy, np.float32).reshape(-1, 1, 2)
    return cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR)[:, 0]


def _person(rng, h, w):
    """(joints (14, 2), box (4,)) of a plausible upright person inside an h x w frame."""
    cx, top, tall = rng.uniform(0.4, 0.6) * w, rng.uniform(0.15, 0.25) * h, rng.uniform(0.5, 0.6) * h
    ys = top + tall * np.array([0, 0.12, 0.17, 0.33, 0.47, 0.17, 0.33, 0.47, 0.52, 0.75, 1, 0.52, 0.75, 1])
    xs = cx + tall * np.array(
        [0, 0, -0.12, -0.16, -0.18, 0.12, 0.16, 0.18, -0.07, -0.08, -0.09, 0.07, 0.08, 0.09]
    )
    joints = np.stack([xs, ys], -1) + rng.normal(0, 1.5, (14, 2))
    lo, hi = joints.min(0), joints.max(0)
    return joints.astype(np.float32), np.concatenate([lo, hi - lo]).astype(np.float32)


@pytest.mark.parametrize("frame", [(120, 90), (700, 500)])  # the second is area-averaged first (shrink > 1.5)
@pytest.mark.parametrize("aug", [None, pw.Augmentation(True, 0.92, (3.0, -2.0), 4.0, 1.0)])
def test_pixels_and_joints_go_through_the_same_warp(frame, aug):
    h, w = frame
    rng = np.random.default_rng(h)
    (sj, sb), (tj, tb) = _person(rng, h, w), _person(rng, h, w)
    image = _ramp(h, w)
    pair = pw.prepare_pair(image, sj, sb, image, tj, tb, image_size=48, augment=aug)
    for side, joints in (("source", sj), ("target", tj)):
        crop = (pair[side] + 1) * 127.5  # back to 0..255
        visible = pair[f"{side}_visible"]
        assert visible.sum() >= 12
        seen = _sample(
            crop, pair[f"{side}_joints"][visible]
        )  # the frame position each joint's crop pixel shows
        frame_xy = np.stack([seen[:, 0] * (w - 1) / 255, seen[:, 1] * (h - 1) / 255], -1)
        order = np.asarray(pw.FLIP_PERMUTATION if aug is not None and aug.flip else range(14))
        np.testing.assert_allclose(frame_xy, joints[order][visible], atol=0.02 * max(h, w) / 48 + 0.05)


def test_flip_swaps_left_and_right_joints_and_mirrors_the_crop():
    names = pw.JOINTS
    for k, f in enumerate(pw.FLIP_PERMUTATION):
        assert names[f] == names[k].replace("right", "LEFT").replace("left", "right").replace("LEFT", "left")
    assert [pw.FLIP_PERMUTATION[f] for f in pw.FLIP_PERMUTATION] == list(range(14))  # an involution
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
    (sj, sb), (tj, tb) = _person(rng, 80, 60), _person(rng, 80, 60)
    plain = pw.prepare_pair(image, sj, sb, image, tj, tb, image_size=40)
    flipped = pw.prepare_pair(image, sj, sb, image, tj, tb, image_size=40, augment=pw.Augmentation(flip=True))
    perm = list(pw.FLIP_PERMUTATION)
    for side in ("source", "target"):
        np.testing.assert_allclose(flipped[side], plain[side][:, ::-1], atol=2 / 255)
        expected = plain[f"{side}_joints"][perm] * [-1, 1] + [39, 0]
        np.testing.assert_allclose(flipped[f"{side}_joints"], expected, atol=1e-4)
        np.testing.assert_array_equal(flipped[f"{side}_visible"], plain[f"{side}_visible"][perm])
    # right shoulder (2) of the flipped crop is the mirrored left shoulder (5)
    np.testing.assert_allclose(flipped["source_joints"][2, 0], 39 - plain["source_joints"][5, 0], atol=1e-4)


def test_joint_order_and_flip_match_the_warp_ops():
    warp = pytest.importorskip("jhuman.ops.warp", reason="jhuman/ops/warp.py (pw-ops) not merged yet")
    assert tuple(warp.FLIP_PERMUTATION) == pw.FLIP_PERMUTATION
    assert tuple(warp.JOINTS) == pw.JOINTS and warp.NUM_JOINTS == pw.NUM_JOINTS


def test_person_scale_crop_and_augmentation_ranges():
    joints = np.zeros((14, 2), np.float32)
    joints[0] = (50, 10)  # head
    joints[[8, 11], 1] = 110  # hips: upper body 100 -> 250
    joints[[9, 12]] = (40, 150)
    joints[[10, 13]] = (40, 180)  # calves 30 -> 150
    assert pw.person_scale(joints) == pytest.approx(250 / 200)
    joints[[10, 13], 1] = 220  # calves 70 -> 350
    assert pw.person_scale(joints) == pytest.approx(350 / 200)
    small = joints.copy()
    small[:, 1] = small[:, 1] * 0.5
    matrix = pw.pair_crop(joints, [20, 10, 60, 210], small, [40, 0, 20, 110], image_size=128)
    scale = 1.14 * 0.5 / (350 / 200)
    centre = np.array([(50 + 50) / 2, (115 + 55) / 2])
    np.testing.assert_allclose(
        matrix, [[scale, 0, 63.5 - centre[0] * scale], [0, scale, 63.5 - centre[1] * scale]]
    )
    nan = np.full((14, 2), np.nan, np.float32)  # no joints: the box's larger side / 200 stands in
    np.testing.assert_allclose(pw.pair_crop(nan, [0, 0, 50, 400], nan, [0, 0, 50, 400])[0, 0], 1.14 / 2)
    with pytest.raises(ValueError, match="cannot place the person"):
        pw.pair_crop(nan, [np.nan] * 4, nan, [np.nan] * 4)

    draws = [pw.Augmentation.draw(np.random.default_rng(i)) for i in range(400)]
    for field, lo, hi in (("scale", 0.90, 1.05), ("rotation", -5, 5), ("brightness", 0.95, 1.05)):
        values = np.array([getattr(d, field) for d in draws])
        assert lo <= values.min() < lo + 0.02 * (hi - lo) and hi - 0.02 * (hi - lo) < values.max() <= hi, (
            field
        )
    shifts = np.array([d.shift for d in draws])
    assert -5 <= shifts.min() < -4.8 and 4.8 < shifts.max() <= 5
    assert 0.4 < np.mean([d.flip for d in draws]) < 0.6
    assert pw.Augmentation.draw(np.random.default_rng(3)) == pw.Augmentation.draw(np.random.default_rng(3))


def test_joints_outside_the_frame_or_crop_are_flagged_not_zeroed():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (100, 80, 3), dtype=np.uint8)
    joints, box = _person(rng, 100, 80)
    joints[4] = (-6, 40)  # right wrist left of the frame (kept where it is)
    joints[7] = np.nan  # left wrist not annotated
    far = joints.copy()
    far[0] = (60, -150)  # head inside no frame and far outside the crop
    pair = pw.prepare_pair(image, joints, box, None, far, box, image_size=32)
    assert not pair["source_visible"][[4, 7]].any() and pair["source_visible"].sum() == 12
    assert not pair["target_visible"][[0, 4, 7]].any()
    assert np.isfinite(pair["source_joints"]).all() and (pair["target"] == 0).all()
    assert (
        pair["source_joints"][4, 0] < pair["source_joints"][2, 0]
    )  # still left of the shoulder, not at (0, 0)
    np.testing.assert_allclose(pair["source_joints"][7], (15.5, 15.5))  # missing: the crop centre, flagged


# ----------------------------------------------------------------------------------------------- pairs
def test_sample_pair_is_uniform_over_the_pairs_far_enough_apart():
    rng = np.random.default_rng(0)
    draws = [pw.sample_pair(10, rng, min_gap=0.3) for _ in range(8400)]
    valid = {(i, j) for i in range(10) for j in range(10) if abs(i - j) > 3}
    counts = {p: 0 for p in valid}
    for p in draws:
        counts[p] += 1  # KeyError for a pair too close together
    assert len(valid) == 42 and min(counts.values()) > 0.7 * 200 and max(counts.values()) < 1.3 * 200
    subset = [pw.sample_pair(10, rng, 0.02, available=[1, 4, 9]) for _ in range(300)]
    assert {p for p in subset} == {(a, b) for a in (1, 4, 9) for b in (1, 4, 9) if a != b}
    with pytest.raises(ValueError, match="no two frames"):
        pw.sample_pair(1, rng)
    with pytest.raises(ValueError, match="no two frames"):
        pw.sample_pair(10, rng, 0.5, available=[2, 6])


def test_test_pairs_are_seeded_and_far_enough_apart(videos):
    pairs = pw.test_pairs(videos, "train", num_pairs=40, seed=5, min_gap=0.3)
    assert pairs == pw.test_pairs(videos, "train", num_pairs=40, seed=5, min_gap=0.3)
    assert pairs != pw.test_pairs(videos, "train", num_pairs=40, seed=6, min_gap=0.3)
    assert {v for v, _, _ in pairs} == set(pw.list_videos(videos, "train"))
    assert all(abs(i - j) > 0.3 * 8 for _, i, j in pairs)
    assert len(pw.test_pairs(videos, "val", num_pairs=7)) == 7  # 'val' reads test/
    with pytest.raises(ValueError, match="min_gap"):
        pw.test_pairs(videos, "train", min_gap=1.0)


# ----------------------------------------------------------------------------------------------- streams
KEYS = ("source", "target", "source_joints", "target_joints", "source_visible", "target_visible")


def test_train_stream_is_a_function_of_seed_and_position_and_resumes_exactly(videos):
    with pw.train_stream(videos, batch_size=2, image_size=S, seed=1) as a:
        batches = [next(a) for _ in range(3)]
        assert a.next_position == 6
    b = batches[0]
    assert b["source"].shape == b["target"].shape == (2, S, S, 3) and b["source"].dtype == np.float32
    assert b["source_joints"].shape == (2, 14, 2) and b["source_visible"].dtype == np.bool_
    assert -1 <= b["source"].min() and b["source"].max() <= 1 and b["source_visible"].mean() > 0.8
    assert not np.array_equal(b["source"], b["target"])
    with pw.train_stream(videos, batch_size=2, image_size=S, seed=1, start_index=4) as resumed:
        again = next(resumed)
    for k in KEYS:
        np.testing.assert_array_equal(again[k], batches[2][k], err_msg=k)
    with pw.train_stream(videos, batch_size=2, image_size=S, seed=2) as other:
        assert not np.array_equal(next(other)["source"], b["source"])


def test_eval_stream_reads_the_test_pairs_without_augmentation(videos):
    stream = pw.eval_stream(videos, split="test", batch_size=4, num_pairs=6, seed=3, image_size=S)
    batches = list(stream)
    assert len(batches) == len(stream) == 2
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.tolist() == [True] * 6 + [False] * 2
    (name, i, j), *_ = pw.test_pairs(videos, "test", 6, seed=3)
    video = pw.read_video((str(videos / "test"), name))
    expected = pw.pair_example(video, i, j, S)
    for k in KEYS:
        np.testing.assert_array_equal(batches[0][k][0], expected[k], err_msg=k)
    assert (
        len(list(pw.eval_stream(videos, split="test", batch_size=2, num_pairs=6, limit=3, image_size=S))) == 2
    )


def test_bad_mat_files_missing_frames_and_wrong_shapes_are_skipped_named_and_counted(videos, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(videos, root)
    names = pw.list_videos(root, "train")
    info = root / "train" / "info"
    (info / f"{names[0]}.mat").write_bytes(b"MATLAB 5.0 MAT-file, but not really" * 4)
    scipy.io.savemat(
        info / f"{names[1]}.mat", {"data": {"X": np.zeros((14, 3, 8)), "bbox": np.zeros((8, 4))}}
    )
    frames = root / "train" / "frames" / names[2]
    for k in range(1, 7):  # only frames 7 and 8 left
        (frames / f"{k}.jpg").unlink()
    (root / "train" / "frames" / "no info").mkdir()  # a frames folder without its .mat

    stats = pipeline.Stats()
    with pw.train_stream(root, batch_size=3, image_size=S, seed=0, stats=stats) as s:
        for _ in range(3):
            batch = next(s)
            assert np.isfinite(batch["source"]).all()
    kinds = stats.skip_kinds
    assert kinds["bad .mat"] == 1 and kinds["wrong shape"] == 1 and kinds["missing file"] == 1
    assert kinds["missing frame"] >= 1
    files = set(stats.skipped_files)
    assert str(info / f"{names[0]}.mat") in files and str(info / f"{names[1]}.mat") in files
    assert any(f.startswith(str(frames)) for f in files)
    assert any("no info.mat" in f for f in files)

    with pytest.raises(CorruptExample, match="bad .mat|cannot read"):
        pw.read_info(info / f"{names[0]}.mat")
    with pytest.raises(CorruptExample, match=r"X has shape \(14, 3, 8\)"):
        pw.read_info(info / f"{names[1]}.mat")
    scipy.io.savemat(tmp_path / "box.mat", {"data": {"X": np.ones((14, 2, 3)), "bbox": np.ones((2, 4))}})
    with pytest.raises(CorruptExample, match=r"box.mat: bbox has shape \(2, 4\)"):
        pw.read_info(tmp_path / "box.mat")
    scipy.io.savemat(tmp_path / "nostruct.mat", {"X": np.ones((14, 2, 3))})
    with pytest.raises(CorruptExample, match="no struct 'data'"):
        pw.read_info(tmp_path / "nostruct.mat")
    scipy.io.savemat(tmp_path / "one.mat", {"data": {"X": np.ones((14, 2, 1)), "bbox": np.ones((1, 4))}})
    assert pw.read_info(tmp_path / "one.mat")[0].shape == (1, 14, 2)  # MATLAB drops the trailing axis

    # evaluation masks out pairs with a missing frame, and counts them
    (root / "test" / "frames").rename(root / "test" / "gone")
    (root / "test" / "frames").mkdir()
    stream = pw.eval_stream(root, batch_size=2, num_pairs=2, image_size=S)
    assert not any(b["mask"].any() for b in stream)
    assert stream.stats.skip_kinds["missing frame"] == 1  # the video's frames folder


def test_no_usable_video_and_missing_split_are_clear_errors(videos, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(videos, root)
    for mat in (root / "train" / "info").glob("*.mat"):
        mat.write_bytes(b"garbage")
    with pytest.raises(pipeline.NoUsableExamples, match="bad .mat"):
        with pw.train_stream(root, batch_size=2, image_size=S) as s:
            next(s)
    for mat in (root / "test" / "info").glob("*.mat"):
        mat.write_bytes(b"garbage")
    with pytest.raises(pipeline.NoUsableExamples, match=r"no video with a readable .mat.*1 bad .mat"):
        pw.eval_stream(root, batch_size=2, image_size=S)
    with pytest.raises(FileNotFoundError, match="frames/<video>"):
        pw.list_videos(tmp_path / "nothing", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        pw.list_videos(root, "dev")


def test_tfds_source_gives_the_folder_batches(videos, tmp_path):
    data_dir = str(tmp_path / "tfds")
    builder = pw.prepare_tfds(videos, data_dir)
    assert builder.info.splits["train"].num_examples == 5 and builder.info.splits["test"].num_examples == 1
    tf_args = dict(source="tfds", tfds_data_dir=data_dir)
    with (
        pw.train_stream(videos, batch_size=2, image_size=S, seed=4) as a,
        pw.train_stream(None, batch_size=2, image_size=S, seed=4, **tf_args) as b,
    ):
        x, y = next(a), next(b)
    for k in KEYS:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    x = next(iter(pw.eval_stream(videos, batch_size=3, num_pairs=3, image_size=S)))
    y = next(iter(pw.eval_stream(None, batch_size=3, num_pairs=3, image_size=S, **tf_args)))
    for k in (*KEYS, "mask"):
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
