"""`jhuman animate` (frames, a readable GIF / MP4 with one frame per target pose, the sheet; one-line errors)
and `jhuman posewarp-stats` (a statistics file the perceptual loss's loader reads and pairs with the config)."""

import json
import os

import cv2
import jax
import numpy as np
import pytest
import scipy.io
from PIL import Image
from support import REPO, one_line

from jhuman import animate, checkpoint, cli, train
from jhuman import config as config_lib

POSEWARP = os.path.join(REPO, "configs", "posewarp.py")
# A standing person, 14 joints (jhuman.ops.warp.JOINTS order), (x, y) in a 96x96 picture.
STANDING = np.array(
    [[48, 14], [48, 24], [38, 26], [34, 38], [32, 50], [58, 26], [62, 38], [64, 50],
     [42, 52], [41, 67], [40, 82], [54, 52], [55, 67], [56, 82]], np.float32,
)  # fmt: skip


def poses(count, shift=0.0, scale=1.0):
    """(count, 14, 2): the standing person raising both arms frame by frame (and moved / scaled)."""
    out = np.repeat(STANDING[None], count, 0)
    for k in range(count):
        lift = 14.0 * k / max(count - 1, 1)
        out[k, [3, 6], 1] -= 0.5 * lift
        out[k, [4, 7], 1] -= lift
        out[k, [4], 0] -= 0.3 * lift
        out[k, [7], 0] += 0.3 * lift
    centre = np.array([48.0, 48.0], np.float32)
    return (out - centre) * scale + centre + shift


def write_video(root, name, joints, size=96, seed=0):
    """A video in the published layout: <root>/info/<name>.mat (1-based X (14, 2, n), bbox (n, 4)) and
    <root>/frames/<name>/<k>.png (a figure drawn over noise). Returns the .mat path."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "frames", name), exist_ok=True)
    os.makedirs(os.path.join(root, "info"), exist_ok=True)
    boxes = []
    for k, frame in enumerate(joints):
        image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        for a, b in [(0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (2, 8), (8, 9), (9, 10), (5, 11),
                     (11, 12), (12, 13), (8, 11)]:  # fmt: skip
            pa, pb = (tuple(int(v) for v in np.round(frame[j])) for j in (a, b))
            cv2.line(image, pa, pb, (200, 120 + 10 * a, 60), 3)
        cv2.imwrite(os.path.join(root, "frames", name, f"{k + 1}.png"), image)
        low, high = frame.min(0), frame.max(0)
        boxes.append([low[0], low[1], high[0] - low[0], high[1] - low[1]])
    path = os.path.join(root, "info", f"{name}.mat")
    x = np.transpose(joints + 1.0, (1, 2, 0)).astype(np.float64)  # (14, 2, n), 1-based
    scipy.io.savemat(path, {"data": {"X": x, "bbox": np.array(boxes, np.float64)}})
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("posewarp_videos")
    source = write_video(str(root), "source", poses(3), seed=1)
    # Another person: smaller, elsewhere in the picture; six poses.
    targets = write_video(str(root), "targets", poses(6, shift=np.array([-10.0, 4.0]), scale=0.8), seed=2)
    return {"root": str(root), "source": source, "targets": targets}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A posewarp workdir (the tiny config) with a step-0 checkpoint of random parameters: what `animate`
    restores. The state is drawn in numpy in the shapes of the run's state (compiling the init of three U-Nets
    and a discriminator would cost half a minute here)."""
    workdir = str(tmp_path_factory.mktemp("posewarp_run"))
    config = config_lib.load_config(f"{POSEWARP}:size=tiny")
    config_lib.save_config(config, workdir)
    setup = train.build(config)
    rng = np.random.default_rng(0)

    def draw(leaf):
        if np.issubdtype(leaf.dtype, np.floating):
            return rng.normal(0.0, 0.05, leaf.shape).astype(leaf.dtype)
        return np.zeros(leaf.shape, leaf.dtype)

    # One device, synchronous: orbax writes the 8-device replicated arrays 20x slower; restoring reshards.
    state = jax.device_put(jax.tree.map(draw, setup.abstract_state))
    ckpt = checkpoint.Checkpoints(workdir, async_save=False)
    ckpt.save(0, state, force=True)
    ckpt.close()
    return workdir


def gif_frames(path):
    """(number of frames, total duration in ms, the frames as RGB arrays) of a GIF."""
    with Image.open(path) as gif:
        frames, duration = [], 0
        for k in range(gif.n_frames):
            gif.seek(k)
            duration += gif.info["duration"]
            frames.append(np.asarray(gif.convert("RGB")))
        return len(frames), duration, frames


def test_animate_writes_gif_frames_and_sheet(videos, run_dir, tmp_path, capsys):
    out = tmp_path / "gif"
    args = ["animate", "--workdir", run_dir, "--source_video", videos["source"], "--source_frame", "1",
            "--targets", videos["targets"], "--frames", "1:6", "--out", str(out), "--fps", "5", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    assert "wrote 5 frames" in capsys.readouterr().out
    names = sorted(os.listdir(out / "frames"))
    assert names == [f"{i:04d}.png" for i in range(5)]
    pngs = [cv2.cvtColor(cv2.imread(str(out / "frames" / n)), cv2.COLOR_BGR2RGB) for n in names]
    assert all(p.shape == (64, 64, 3) for p in pngs)  # the tiny config's image size
    count, duration, frames = gif_frames(out / "animation.gif")
    # One GIF frame per generated frame (Pillow merges a frame equal to the one before into it: count runs).
    runs = 1 + sum(not np.array_equal(a, b) for a, b in zip(pngs, pngs[1:]))
    assert count == runs and runs >= 2
    assert duration == 5 * 200  # 5 frames at 5 fps
    assert np.abs(frames[0].astype(int) - pngs[0]).mean() < 8  # the first frame (GIF palette rounding)
    sheet = cv2.imread(str(out / "sheet.png"))
    assert sheet is not None and sheet.shape[0] > 5 * 64 and sheet.shape[1] > 5 * 64  # 5 rows, 5 columns
    summary = json.loads((out / "animation.json").read_text())
    assert summary["num_frames"] == 5 and summary["target_frames"] == [1, 6] and summary["retargeted"]
    assert summary["step"] == 0 and summary["animation"] == "animation.gif"


def test_animate_mp4_from_an_image_and_its_joints(videos, run_dir, tmp_path, capsys):
    image = os.path.join(videos["root"], "frames", "source", "1.png")
    joints = tmp_path / "joints.json"
    listed = STANDING.tolist()
    listed[4] = None  # a missing joint
    joints.write_text(json.dumps({"joints": listed}))
    out = tmp_path / "mp4"
    args = ["animate", "--workdir", run_dir, "--source", image, "--source_joints", str(joints), "--targets",
            videos["targets"], "--out", str(out), "--format", "mp4", "--batch", "4", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    capture = cv2.VideoCapture(str(out / "animation.mp4"))
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame)
    capture.release()
    assert len(read) == 6 and read[0].shape == (64, 64, 3)  # every target frame (6: two batches, one padded)
    assert len(os.listdir(out / "frames")) == 6


def test_animate_bad_arguments_are_one_line(videos, run_dir, tmp_path, capsys):
    base = ["animate", "--workdir", run_dir, "--out", str(tmp_path / "out"), "--quiet"]
    source = ["--source_video", videos["source"]]
    targets = ["--targets", videos["targets"]]
    text = tmp_path / "notes.mat"
    text.write_text("not a mat file")
    cases = [
        (source + targets + ["--frames", "4:2"], "--frames"),
        (source + targets + ["--frames", "one:two"], "--frames"),
        (source + targets + ["--format", "avi"], "--format"),
        (source + targets + ["--fps", "0"], "--fps"),
        (source + ["--source_frame", "7"] + targets, "--source_frame"),
        (source + ["--targets", str(text)], "--targets"),
        (source + ["--targets", str(tmp_path / "missing.mat")], "--targets"),
        (
            ["--source", str(text), "--source_joints", str(tmp_path / "none.json")] + targets,
            "--source_joints",
        ),
        (["--source_joints", str(tmp_path / "none.json")] + targets, "--source"),
        (source + ["--source", str(text), "--source_joints", str(text)] + targets, "--source_video"),
    ]
    for extra, name in cases:
        assert cli.main(base + extra) == 2, extra
        line = one_line(capsys)
        assert name in line, (extra, line)
    for extra, name in (
        (source, "--targets"),
        (source + targets + ["--source_frame", "x"], "--source_frame"),
    ):
        with pytest.raises(SystemExit) as exit_info:  # argparse's own checks, in one line too
            cli.main(base + extra)
        assert exit_info.value.code == 2 and name in one_line(capsys)
    bad_joints = tmp_path / "bad.json"
    bad_joints.write_text(json.dumps({"joints": [[1, 2]] * 13}))
    image = os.path.join(videos["root"], "frames", "source", "1.png")
    assert cli.main(base + ["--source", image, "--source_joints", str(bad_joints)] + targets) == 2
    assert "--source_joints" in one_line(capsys)
    other = tmp_path / "not_a_run"
    other.mkdir()
    assert (
        cli.main(["animate", "--workdir", str(other), "--out", str(tmp_path / "o"), *source, *targets]) == 2
    )
    assert "config.json" in one_line(capsys)
    assert not os.path.exists(tmp_path / "out")  # nothing written for a bad command


def test_placement_and_retargeting(videos):
    """The retargeted poses take the source's size and ankle position; the crop maps source and targets
    alike (a target equal to the source lands on the source's crop joints)."""
    inputs = animate.load_inputs(source_video=videos["source"], source_frame=0, targets=videos["targets"])
    moved = animate.retarget(inputs.source_joints, inputs.source_visible, inputs.source_box, inputs.target_joints,
                             inputs.target_visible, inputs.target_boxes)  # fmt: skip
    legs = lambda j: np.linalg.norm(j[..., 9, :] - j[..., 10, :], axis=-1)  # noqa: E731  the right calf
    np.testing.assert_allclose(legs(moved), legs(inputs.source_joints), rtol=1e-4)  # 0.8 scale undone
    ankles = lambda j: j[..., [10, 13], :].mean(-2)  # noqa: E731
    np.testing.assert_allclose(ankles(moved[0]), ankles(inputs.source_joints), atol=1e-3)
    same = animate.place(inputs.source_image, inputs.source_joints, inputs.source_visible, inputs.source_box,
                         inputs.source_joints[None], inputs.source_visible[None], 64)  # fmt: skip
    np.testing.assert_allclose(same.target_joints[0], same.source_joints, atol=1e-3)
    assert same.source.shape == (64, 64, 3) and same.source.min() >= -1 and same.source.max() <= 1
    with pytest.raises(animate.AnimateError, match="--frames"):
        animate.parse_frames("7:", 6)
    assert list(animate.parse_frames("-2:", 6)) == [4, 5] and list(animate.parse_frames("3", 6)) == [3]


def test_generate_pads_the_last_batch():
    placed = animate.Placed(
        source=np.zeros((32, 32, 3), np.float32),
        source_joints=STANDING / 3,
        source_visible=np.ones(14, bool),
        target_joints=np.arange(5 * 28, dtype=np.float32).reshape(5, 14, 2),
        target_visible=np.ones((5, 14), bool),
    )
    seen = []

    def generator(batch):
        seen.append(len(batch["target_joints"]))
        first = batch["target_joints"][:, 0, 0]  # (B,): each frame's first coordinate
        return {"image": np.broadcast_to(first[:, None, None, None], (len(first), 32, 32, 3))}

    out = animate.generate(generator, placed, batch_size=3, progress=False)
    assert seen == [3, 3]  # one shape: the last batch padded
    np.testing.assert_array_equal(out["image"][:, 0, 0, 0], placed.target_joints[:, 0, 0])


def test_posewarp_stats_writes_a_file_the_loader_reads(tmp_path, synthetic_cache, capsys):
    from jhuman.models import perceptual

    out = tmp_path / "stats" / "vgg.npz"
    args = ["posewarp-stats", "--config", f"{POSEWARP}:size=tiny", "--out", str(out), "--batches", "1",
            f"--config.data.cache_dir={synthetic_cache}", "--config.data.synthetic_num=24"]  # fmt: skip
    assert cli.main(args) == 0
    assert "wrote" in capsys.readouterr().out
    stats = perceptual.load_statistics(str(out))
    config = config_lib.load_config(f"{POSEWARP}:size=tiny")
    _, weights_id = perceptual.load_vgg19(config.loss.vgg_weights, width=int(config.loss.vgg_width))
    perceptual.check_pairing(stats, weights_id, config.loss.vgg_preprocessing)  # pairs with the config
    assert stats.width == int(config.loss.vgg_width)
    assert all(np.all(s >= 0) for s in stats.std) and any(np.any(s > 0) for s in stats.std)

    assert (
        cli.main(["posewarp-stats", "--config", f"{POSEWARP}:size=tiny", "--out", str(tmp_path / "s.txt")])
        == 2
    )
    assert "--out" in one_line(capsys)
    parsing = os.path.join(REPO, "configs", "parsing.py")
    assert cli.main(["posewarp-stats", "--config", parsing, "--out", str(tmp_path / "s.npz")]) == 2
    assert "posewarp" in one_line(capsys)
