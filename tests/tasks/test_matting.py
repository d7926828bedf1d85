"""The matting task: the three stages on the one trainer (tiny models on synthetic mattes), the end-to-end
loss's wiring, prediction on odd images, the configs and the ablation sweep."""

import json
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman import checkpoint, sweep, train
from jhuman import config as config_lib
from jhuman.ops import matting as matting_ops
from jhuman.tasks import matting

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MATTING = os.path.join(REPO, "configs", "matting.py")
SWEEP = os.path.join(REPO, "configs", "ablations", "matting.py")
STEPS = {"tnet": 150, "mnet": 150, "end2end": 100}
# One xdist worker trains the module's stages once (make test runs `-n 2 --dist loadgroup`).
pytestmark = pytest.mark.xdist_group("matting_stages")


def tiny_config(stage, runs=None, cache=None, steps=None, **overrides):
    arg = f"stage={stage},size=tiny"
    if runs is not None:
        arg += f",tnet={runs}/tnet,mnet={runs}/mnet"
    config = config_lib.load_config(f"{MATTING}:{arg}")
    base = {
        "model.tnet_width": 4,
        "model.mnet_width": 4,
        "data.synthetic_num": 120,
        "data.synthetic_size": (64, 96),
        "data.crop_size": 64,
        "data.mnet_size": 64,
        "data.mnet_crops": (48, 64),
        "train.steps": STEPS[stage] if steps is None else steps,
        "train.batch_size": 8,
        "train.log_every": 5,
        "train.checkpoint_every": 1000,
        "train.num_pictures": 0,
        "train.progress_bar": False,
        "eval.batch_size": 8,
        "eval.limit": 16,
        "eval.pad_size": 96,
        "mesh.data": 1,  # one device: on 2 CPU cores 8 fake devices only add overhead
    }
    if cache is not None:
        base["data.cache_dir"] = cache
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    return config_lib.apply_overrides(config, [f"{k}={v}" for k, v in base.items()])


def host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, host(a), host(b))


def evaluate_at_init(config):
    setup = train.build(config)
    state = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(int(config.seed)))
    return train.evaluate(setup, state), host(state)


@pytest.fixture(scope="session")  # session: xdist may interleave other modules, which ends a module fixture
def stages(tmp_path_factory, synthetic_cache):
    """The three stages and the assembled one ('no end-to-end': train.steps=0) trained once for the module."""
    runs = tmp_path_factory.mktemp("matting_runs")
    out = {"runs": runs}
    for stage in ("tnet", "mnet"):
        config = tiny_config(stage, runs, synthetic_cache)
        out[f"{stage}_init"], out[f"{stage}_init_state"] = evaluate_at_init(config)
        out[stage] = train.run(config, str(runs / stage))
    out["assembled"] = train.run(
        tiny_config("end2end", runs, synthetic_cache, steps=0), str(runs / "assembled")
    )
    out["end2end"] = train.run(
        tiny_config("end2end", runs, synthetic_cache, train__num_pictures=2), str(runs / "end2end")
    )
    return out


def test_tnet_stage_raises_trimap_accuracy_and_leaves_mnet_untouched(stages):
    before, after = stages["tnet_init"]["trimap_accuracy"], stages["tnet"]["eval"]["trimap_accuracy"]
    assert after > before + 0.1 and after > 0.6, (before, after)
    assert "sad" not in stages["tnet"]["eval"]  # the T-Net stage's M-Net is untrained: not scored
    state, init = host(stages["tnet"]["state"]), stages["tnet_init_state"]
    assert_trees_equal(state["params"]["net"]["mnet"], init["params"]["net"]["mnet"])
    assert_trees_equal(
        state["model_state"]["batch_stats"]["net"]["mnet"], init["model_state"]["batch_stats"]["net"]["mnet"]
    )
    assert not np.array_equal(
        state["params"]["net"]["tnet"]["classifier"]["kernel"],
        init["params"]["net"]["tnet"]["classifier"]["kernel"],
    )


def test_mnet_stage_lowers_sad_and_leaves_tnet_untouched(stages):
    before, after = stages["mnet_init"], stages["mnet"]["eval"]
    assert after["whole_sad"] < 0.8 * before["whole_sad"], (before["whole_sad"], after["whole_sad"])
    assert after["sad"] < before["sad"]
    assert "trimap_accuracy" not in after  # judged on the ground-truth trimap
    state, init = host(stages["mnet"]["state"]), stages["mnet_init_state"]
    assert_trees_equal(state["params"]["net"]["tnet"], init["params"]["net"]["tnet"])
    assert_trees_equal(
        state["model_state"]["batch_stats"]["net"]["tnet"], init["model_state"]["batch_stats"]["net"]["tnet"]
    )


def test_end2end_starts_from_both_stages_and_beats_their_assembly(stages):
    assembled = host(stages["assembled"]["state"])
    tnet, mnet = host(stages["tnet"]["state"]), host(stages["mnet"]["state"])
    for item in ("params", "model_state"):
        a, t, m = assembled[item], tnet[item], mnet[item]
        if item == "model_state":
            a, t, m = a["batch_stats"], t["batch_stats"], m["batch_stats"]
        assert_trees_equal(a["net"]["tnet"], t["net"]["tnet"])
        assert_trees_equal(a["net"]["mnet"], m["net"]["mnet"])
    assert checkpoint.Checkpoints(stages["assembled"]["workdir"]).all_steps() == [0]
    # The end-to-end run restores the same sources (same config but train.steps), then trains both nets.
    e2e = host(stages["end2end"]["state"])
    assert not np.array_equal(
        e2e["params"]["net"]["tnet"]["classifier"]["kernel"],
        tnet["params"]["net"]["tnet"]["classifier"]["kernel"],
    )
    before, after = stages["assembled"]["eval"], stages["end2end"]["eval"]
    assert after["whole_sad"] < before["whole_sad"], (before, after)
    for results in (before, after):
        assert set(results) >= {"sad", "mse", "grad", "conn", "whole_sad", "whole_mse", "trimap_accuracy"}
    table = matting.MattingTask.format_eval(after)
    assert "trimap accuracy" in table
    assert os.path.isfile(os.path.join(stages["end2end"]["workdir"], "pictures", "predictions.png"))


def test_end2end_loss_is_lp_plus_lambda_lt_on_the_resampled_window(stages):
    task = matting.MattingTask(tiny_config("end2end", stages["runs"]))
    variables = train.eval_variables(stages["end2end"]["state"])
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0, 1, (2, 64, 64, 1)).astype(np.float32)
    batch = {
        "image": rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32),
        "trimap": rng.integers(0, 3, (2, 64, 64)).astype(np.int32),
        "alpha": alpha,
        "fg": rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32),
        "bg": rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32),
        "has_fg_bg": np.array([True, False]),
        "window": np.array([[0, 0, 64], [0, 0, 64]], np.int32),  # the whole crop: an identity resampling
    }
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    key = jax.random.key(3)
    loss, (metrics, _) = jax.jit(task.loss)(params, state, batch, key)
    whole = jax.jit(lambda v, x: task._apply(v, x, train=True, rng=key)[0])  # the whole pipeline at once
    out = whole(variables, batch["image"])
    lp, _ = matting_ops.prediction_loss(out["alpha_p"], alpha, batch["fg"], batch["bg"], batch["has_fg_bg"])
    lt = matting_ops.trimap_loss(out["trimap_logits"], batch["trimap"])
    np.testing.assert_allclose(float(loss), float(lp) + 0.01 * float(lt), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["trimap_loss"]), float(lt), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["prediction_loss"]), float(lp), rtol=1e-5)


def test_predict_folder_on_odd_images(stages, tmp_path):
    config = tiny_config("end2end", stages["runs"])
    task = matting.MattingTask(config)
    variables = train.eval_variables(stages["end2end"]["state"])
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "dot.png"), np.array([[[10, 200, 30]]], np.uint8))  # 1 x 1
    cv2.imwrite(str(images / "tall.png"), rng.integers(0, 255, (3000, 20, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "grey.png"), rng.integers(0, 255, (40, 30), dtype=np.uint8))
    cv2.imwrite(str(images / "rgba.png"), rng.integers(0, 255, (40, 30, 4), dtype=np.uint8))
    (images / "broken.jpg").write_bytes(b"not an image")
    background = tmp_path / "beach.jpg"
    cv2.imwrite(str(background), np.full((10, 50, 3), (255, 0, 0), np.uint8))  # blue (BGR)
    config_lib.apply_overrides(task.config, [f"eval.background={background}"])
    task = matting.MattingTask(task.config)
    out = tmp_path / "out"
    summary = task.predict_folder(variables, str(images), str(out))
    assert summary["num_images"] == 4 and summary["num_skipped"] == 1
    assert summary["skipped"][0]["image"] == "broken.jpg"
    assert sorted(c["image"] for c in summary["converted"]) == ["grey.png", "rgba.png"]
    for entry in summary["mattes"]:
        h, w = entry["height"], entry["width"]
        alpha = cv2.imread(str(out / entry["alpha"]), cv2.IMREAD_UNCHANGED)
        trimap = cv2.imread(str(out / entry["trimap"]), cv2.IMREAD_UNCHANGED)
        composite = cv2.imread(str(out / entry["composite"]))
        assert alpha.shape == trimap.shape == (h, w) and alpha.dtype == np.uint8
        assert set(np.unique(trimap)) <= {0, 128, 255}
        assert composite.shape == (h, w, 3) and cv2.imread(str(out / entry["sheet"])) is not None
    sizes = {e["image"]: (e["height"], e["width"]) for e in summary["mattes"]}
    assert sizes == {"dot.png": (1, 1), "tall.png": (3000, 20), "grey.png": (40, 30), "rgba.png": (40, 30)}
    # The 1-pixel image: the network's alpha at its one pixel (cut out of the padded input), 8-bit.
    padded, inside = matting.fit_for_prediction(np.array([[[30, 200, 10]]], np.uint8), 1500)
    assert padded.shape == (32, 32, 3) and inside == (1, 1)
    expected = np.asarray(task.predict(variables, jnp.asarray(padded)[None])["alpha"])[0, 0, 0, 0]
    dot = cv2.imread(str(out / "dot.png"), cv2.IMREAD_UNCHANGED)
    assert abs(int(dot[0, 0]) - round(255 * float(expected))) <= 1
    # The composite is the person over the given background (blue), by the written alpha.
    alpha = cv2.imread(str(out / "grey.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)[..., None] / 255
    grey = cv2.imread(str(images / "grey.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)[..., None]
    expected = alpha * grey + (1 - alpha) * np.array([255.0, 0, 0])  # BGR on disk
    composite = cv2.imread(str(out / "grey_composite.png")).astype(np.float32)
    assert np.abs(composite - expected).max() <= 2.0
    written = json.loads((out / "mattes.json").read_text())
    assert written["num_images"] == 4 and written["outputs"]["dot.png"][0] == "dot.png"


def test_predict_video_frame_by_frame_through_the_image_path(stages, tmp_path, capsys):
    """`jhuman predict --video`: every frame matted as `jhuman predict` mattes an image (the same alpha PNG,
    bit for bit, as predict_folder on that decoded frame), streams with one frame per input frame, and a
    file that is not a video is one line naming it."""
    from jhuman import cli, video

    rng = np.random.default_rng(1)
    path = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (40, 32))
    for k in range(5):
        frame = np.full((32, 40, 3), 40 * k, np.uint8)
        frame[8:28, 12 + k : 24 + k] = rng.integers(0, 255, (20, 12, 3), dtype=np.uint8)
        writer.write(frame)
    writer.release()
    workdir, out = str(stages["runs"] / "end2end"), tmp_path / "out"
    assert cli.main(["predict", "--workdir", workdir, "--video", path, "--out", str(out)]) == 0
    summary = json.loads((out / "mattes_video.json").read_text())
    assert summary["num_frames"] == 5 and not summary["truncated"] and summary["frame_size"] == [32, 40]
    assert summary["fps"] == pytest.approx(12.0)
    assert sorted(os.listdir(out / "alpha")) == [f"{k:06d}.png" for k in range(5)]
    for name in ("alpha", "composite", "trimap"):
        capture, _, _ = video.open_video(str(out / summary["streams"][name]))
        frames = list(video.read_frames(capture))
        assert len(frames) == 5 and frames[0].shape == (32, 40, 3)
    # The same frames as images through predict_folder: identical mattes.
    capture, _, _ = video.open_video(path)
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for k, frame in enumerate(video.read_frames(capture)):
        cv2.imwrite(str(frames_dir / f"{k:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    task = matting.MattingTask(tiny_config("end2end", stages["runs"]))
    task.predict_folder(
        train.eval_variables(stages["end2end"]["state"]), str(frames_dir), str(tmp_path / "images")
    )
    for k in range(5):
        by_video = cv2.imread(str(out / "alpha" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
        by_image = cv2.imread(str(tmp_path / "images" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(by_video, by_image)
    (tmp_path / "notes.mp4").write_text("not a video")
    capsys.readouterr()
    assert (
        cli.main(["predict", "--workdir", workdir, "--video", str(tmp_path / "notes.mp4"), "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.mp4" in err[0], err
    # A video inside --out (its outputs could overwrite it) is refused before anything is read or written.
    inside = out / "composite.mp4"
    before = inside.read_bytes()
    assert cli.main(["predict", "--workdir", workdir, "--video", str(inside), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and inside.read_bytes() == before, err


def test_prediction_sizes_are_buckets():
    assert [matting.prediction_size(s, 1500) for s in (1, 32, 33, 100, 700, 1500)] == [
        32,
        32,
        64,
        128,
        1024,
        1504,
    ]
    padded, inside = matting.fit_for_prediction(np.zeros((3000, 20, 3), np.uint8), 1500)
    assert padded.shape == (1504, 32, 3) and inside == (1500, 10)


def test_stage_configs_freeze_the_other_network():
    for stage, frozen in (("tnet", {"mnet"}), ("mnet", {"tnet"}), ("end2end", set())):
        config = config_lib.load_config(f"{MATTING}:stage={stage},size=tiny")
        groups = config.optim.groups
        assert {name for name in groups if groups[name].frozen} == frozen
        assert config.matting.stage == stage
    full = config_lib.load_config(f"{MATTING}:stage=end2end,size=full,tnet=a,mnet=b")
    assert full.optim.learning_rate == 1e-5 and full.train.batch_size == 10 and full.data.crop_size == 800
    assert full.data.mnet_size == 320 and full.matting.trimap_weight == 0.01
    assert full.init.from_workdir == (("a", "^net/tnet/", 0), ("b", "^net/mnet/", 0))
    assert config_lib.load_config(f"{MATTING}:stage=tnet,size=full").data.crop_size == 400
    with pytest.raises(
        config_lib.ConfigError, match=r"stage='both' is not one of \['tnet', 'mnet', 'end2end'\]"
    ):
        config_lib.load_config(f"{MATTING}:stage=both")
    folders = config_lib.load_config(f"{MATTING}:data=folders")
    assert folders.data.name == "matting"


def test_ablation_sweep_lists_its_variants(tmp_path):
    variants = sweep.load_sweep(f"{SWEEP}:size=tiny,workdir={tmp_path}")
    assert list(variants) == ["tnet", "mnet", "end2end", "no_fusion", "no_trimap_loss", "no_end2end"]
    configs = {
        name: config_lib.apply_overrides(config_lib.load_config(spec), overrides)
        for name, (spec, overrides) in variants.items()
    }
    assert configs["tnet"].matting.stage == "tnet" and configs["mnet"].matting.stage == "mnet"
    sources = ((str(tmp_path / "tnet"), "^net/tnet/", 0), (str(tmp_path / "mnet"), "^net/mnet/", 0))
    for name in ("end2end", "no_fusion", "no_trimap_loss", "no_end2end"):
        assert configs[name].matting.stage == "end2end" and configs[name].init.from_workdir == sources
    assert configs["no_fusion"].model.fusion is False and configs["end2end"].model.fusion is True
    assert configs["no_trimap_loss"].matting.trimap_weight == 0.0
    assert configs["no_end2end"].train.steps == 0 and configs["end2end"].train.steps > 0
    config_lib.validate(configs["no_end2end"])  # 0 steps is valid: the stages come from other runs
    columns = sweep.task_columns(configs.values())
    assert ("whole_sad", "SAD", 1.0) in columns and ("trimap_accuracy", "trimap acc", 100.0) in columns
