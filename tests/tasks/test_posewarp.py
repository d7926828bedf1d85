"""The pose-guided synthesis task: stage 1 (perceptual loss) and stage 2 (the GAN update hook, chained from
stage 1) on the one trainer with tiny modular generators on synthetic videos, evaluation against copying the
source, `jhuman eval`'s table, predict_folder on a published-layout folder, the VGG weights kept out of the
optimizer, statistics pairing and the configs."""

import json
import os
import shutil

import cv2
import jax
import numpy as np
import pytest

from jhuman import checkpoint, cli, tasks, train
from jhuman import config as config_lib
from jhuman.models import perceptual
from jhuman.tasks import posewarp

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSEWARP = os.path.join(REPO, "configs", "posewarp.py")
SIZE = 32  # the smallest multiple of 32 the U-Nets take: a few hundred ms a step on 2 CPU cores
VGG_STEPS, GAN_STEPS = 120, 8
pytestmark = pytest.mark.xdist_group("posewarp_stages")


def tiny_config(stage, cache, runs=None, **overrides):
    arg = f"stage={stage},size=tiny" + (f",from={runs}/vgg" if runs is not None else "")
    config = config_lib.load_config(f"{POSEWARP}:{arg}")
    base = {
        "model.image_size": SIZE,
        "model.width": 8,  # the mechanics, not the tiny config's quality (width 16, 3000 steps: README)
        "data.image_size": SIZE,
        "data.synthetic_num": 16,
        "data.synthetic_size": (64, 64),
        "data.synthetic_val_fraction": 0.25,
        "data.cache_dir": cache,
        "optim.learning_rate": 3e-3,
        "optim.warmup_steps": 20 if stage == "vgg" else 0,
        "loss.statistics_batches": 2,
        "train.steps": VGG_STEPS if stage == "vgg" else GAN_STEPS,
        "train.batch_size": 8,
        "train.log_every": 10 if stage == "vgg" else 1,
        "train.checkpoint_every": 1000,
        "train.num_pictures": 2 if stage == "vgg" else 0,
        "train.progress_bar": False,
        "eval.batch_size": 8,
        "eval.num_pairs": 8,
        "mesh.data": 1,  # one device: on 2 CPU cores 8 fake devices only add overhead
    }
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    return config_lib.apply_overrides(config, [f"{k}={v}" for k, v in base.items()])


def host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def metrics_rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [row for row in map(json.loads, f) if "d_loss" in row or "perceptual_loss" in row]


@pytest.fixture(scope="session")
def runs(tmp_path_factory, synthetic_cache):
    """Stage 1 evaluated at its initialisation and trained; stage 2 for the discriminator-only steps, then
    resumed past them (the same run)."""
    root = tmp_path_factory.mktemp("posewarp_runs")
    out = {"root": root, "cache": synthetic_cache}
    config = tiny_config("vgg", synthetic_cache)
    setup = train.build(config)
    ckpt = checkpoint.Checkpoints(str(root / "init"))
    init_state = train.create_or_restore(setup, ckpt)  # VGG weights loaded, statistics computed
    ckpt.close()
    out["vgg_init_eval"], out["vgg_init_state"] = train.evaluate(setup, init_state), host(init_state)
    out["vgg"] = train.run(config, str(root / "vgg"))
    gan = tiny_config("gan", synthetic_cache, runs=root, train__steps=int(config.gan.disc_only_steps))
    out["gan_disc_only"] = host(train.run(gan, str(root / "gan"))["state"])
    out["gan"] = train.run(tiny_config("gan", synthetic_cache, runs=root), str(root / "gan"))
    return out


def test_vgg_stage_learns_and_is_scored_against_copying_the_source(runs):
    before, after = runs["vgg_init_eval"], runs["vgg"]["eval"]
    for key in ("l1", "vgg_error", "ssim", "ssim_range2", "copy_l1", "copy_vgg_error", "copy_ssim"):
        assert np.isfinite(after[key]), key
    assert after["count"] == 8 and after["eval_skipped"] == 0
    # Trained briefly, the generator is far better than at its start on both of the paper's errors...
    assert after["l1"] < 0.6 * before["l1"], (before["l1"], after["l1"])
    assert after["vgg_error"] < 0.85 * before["vgg_error"], (before["vgg_error"], after["vgg_error"])
    assert after["ssim"] > before["ssim"] + 0.1
    # ...and the copy baseline does not depend on the model.
    assert after["copy_l1"] == pytest.approx(before["copy_l1"], rel=1e-5)
    # SSIM at data_range 2 (the original evaluation's) is higher than at 1 for imperfect images.
    assert after["ssim_range2"] > after["ssim"]


def test_vgg_stage_trains_the_generator_only_and_keeps_the_vgg_out_of_the_optimizer(runs):
    state, init = host(runs["vgg"]["state"]), runs["vgg_init_state"]
    assert set(state["params"]) == {"generator", "discriminator"}
    assert set(state["model_state"]) == {"vgg"}
    jax.tree.map(
        np.testing.assert_array_equal, state["params"]["discriminator"], init["params"]["discriminator"]
    )
    jax.tree.map(
        np.testing.assert_array_equal, state["model_state"], init["model_state"]
    )  # frozen VGG + stats
    changed = jax.tree.leaves(
        jax.tree.map(
            lambda a, b: not np.array_equal(a, b), state["params"]["generator"], init["params"]["generator"]
        )
    )
    assert all(changed)
    # The VGG-19 (width 8, conv1_1 .. conv4_4) is neither a parameter nor in the optimizer state.
    vgg_leaves = len(jax.tree.leaves(state["model_state"]["vgg"]["weights"]))
    assert vgg_leaves == 24
    paths = leaf_paths(state["opt_state"])
    assert not any("conv4_4" in p or "vgg" in p for p in paths)
    # The statistics were computed over training batches and written into the workdir.
    stats = perceptual.load_statistics(os.path.join(runs["vgg"]["workdir"], posewarp.STATISTICS_FILE))
    assert stats.weights == "random:0@width8" and stats.preprocessing == "caffe"
    np.testing.assert_allclose(stats.std[0], state["model_state"]["vgg"]["statistics"]["std"]["conv1_1"])
    sheet = cv2.imread(os.path.join(runs["vgg"]["workdir"], "pictures", "predictions.png"))
    assert sheet is not None and sheet.shape[1] > 6 * SIZE


def leaf_paths(tree):
    return ["/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
            for path, _ in jax.tree_util.tree_leaves_with_path(tree)]  # fmt: skip


def test_gan_stage_starts_from_stage_one_and_alternates_its_updates(runs):
    stage1 = host(runs["vgg"]["state"])
    disc_only = runs["gan_disc_only"]
    gan = host(runs["gan"]["state"])
    # The generator starts exactly from stage 1 and stays there while the discriminator trains alone.
    jax.tree.map(
        np.testing.assert_array_equal, disc_only["params"]["generator"], stage1["params"]["generator"]
    )
    jax.tree.map(np.testing.assert_array_equal, disc_only["model_state"], stage1["model_state"])
    moved = jax.tree.map(
        lambda a, b: not np.array_equal(a, b),
        disc_only["params"]["discriminator"],
        stage1["params"]["discriminator"],
    )
    assert all(jax.tree.leaves(moved))  # the discriminator trains from the first step
    # After the discriminator-only steps both networks train.
    assert not np.array_equal(
        gan["params"]["generator"]["fg_net"]["head"]["kernel"],
        stage1["params"]["generator"]["fg_net"]["head"]["kernel"],
    )
    rows = metrics_rows(runs["gan"]["workdir"])
    assert [r["step"] for r in rows] == list(range(1, GAN_STEPS + 1))
    assert [r["generator_on"] for r in rows] == [0.0] * 5 + [1.0] * (GAN_STEPS - 5)
    d_losses = [r["d_loss"] for r in rows]
    assert max(d_losses) - min(d_losses) > 1e-3, d_losses  # the discriminator's loss moves
    assert all(np.isfinite(r["g_loss"]) and r["gan_loss"] > 0 for r in rows)
    for r in rows:  # generator loss = perceptual + 0.1 BCE
        assert r["g_loss"] == pytest.approx(r["perceptual_loss"] + 0.1 * r["gan_loss"], rel=1e-5)


def test_eval_command_prints_and_writes_the_table(runs, capsys):
    workdir = runs["gan"]["workdir"]
    assert cli.main(["eval", "--workdir", workdir, "--split", "test"]) in (0, None)
    printed = capsys.readouterr().out
    assert "copy the source" in printed and "SSIM (range 2)" in printed and "8 test pairs" in printed
    with open(os.path.join(workdir, "eval", f"test_{GAN_STEPS}.json")) as f:
        saved = json.load(f)
    for key in ("l1", "vgg_error", "ssim", "ssim_range2", "copy_l1", "copy_vgg_error"):
        assert np.isfinite(saved[key]), key
    # The same pairs as the run's final evaluation ('val' reads test/).
    assert saved["l1"] == pytest.approx(runs["gan"]["eval"]["l1"], rel=1e-5)


def test_predict_folder_writes_the_test_pairs_and_skips_a_bad_video(runs, tmp_path):
    config = tiny_config("gan", runs["cache"], runs=runs["root"])
    task = tasks.build(config)
    data = task.data_root()
    folder = tmp_path / "videos"
    shutil.copytree(os.path.join(data, "test"), folder / "test")
    infos = sorted(os.listdir(folder / "test" / "info"))
    (folder / "test" / "info" / infos[0]).write_bytes(b"not a mat file")
    variables = train.eval_variables(runs["gan"]["state"])
    summary = task.predict_folder(variables, str(folder), str(tmp_path / "out"))
    with open(tmp_path / "out" / posewarp.RESULTS_FILE) as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    assert summary["num_images"] == 8 and len(summary["pairs"]) == 8
    assert summary["num_skipped"] == 1 and infos[0] in summary["skipped"][0]["reason"]
    assert all(p["video"] != infos[0][: -len(".mat")] for p in summary["pairs"])
    for entry in summary["pairs"]:
        image = cv2.imread(str(tmp_path / "out" / entry["image"]))
        assert image.shape == (SIZE, SIZE, 3)
        assert cv2.imread(str(tmp_path / "out" / entry["sheet"])) is not None
        assert 0 <= entry["l1"] <= 1 and -1 <= entry["ssim"] <= 1
    # A split folder itself works too; a folder of another layout is refused, naming what is missing.
    assert posewarp.published_split(str(folder / "test")) == (str(folder), "test")
    with pytest.raises(FileNotFoundError, match="published pose-video layout"):
        task.predict_folder(variables, str(tmp_path / "out"), str(tmp_path / "out2"))


def test_statistics_of_other_weights_are_refused(tmp_path, synthetic_cache):
    stats = perceptual.VGGStatistics(
        mean=tuple(np.zeros(8 * m, np.float32) for m in perceptual.LAYER_WIDTH_MULTIPLIERS),
        std=tuple(np.ones(8 * m, np.float32) for m in perceptual.LAYER_WIDTH_MULTIPLIERS),
        weights="random:1@width8",
        preprocessing="caffe",
    )
    path = perceptual.save_statistics(stats, str(tmp_path / "other.npz"))
    task = tasks.build(tiny_config("vgg", synthetic_cache, loss__vgg_statistics=path))
    variables = jax.eval_shape(task.init, jax.random.key(0))
    with pytest.raises(ValueError, match="random:1@width8"):
        task.pretrained_variables(variables)
    task = tasks.build(tiny_config("vgg", synthetic_cache, loss__vgg_weights=str(tmp_path / "missing.h5")))
    with pytest.raises(FileNotFoundError, match="needs VGG-19 weights"):
        task.pretrained_variables(variables)


def test_configs_carry_the_papers_settings():
    full = config_lib.load_config(f"{POSEWARP}:stage=vgg,size=full,data=folders")
    assert full.data.name == "posewarp" and full.model.image_size == 256 and full.model.width == 64
    assert (full.optim.name, full.optim.learning_rate, full.train.batch_size) == ("adam", 1e-4, 4)
    assert full.train.steps == 100_000 and full.eval.num_pairs == 500 and full.data.min_gap == 0.02
    assert full.optim.groups.discriminator.frozen and not full.optim.groups.generator.get("frozen", False)
    gan = config_lib.load_config(f"{POSEWARP}:stage=gan,size=full,from=runs/x")
    assert gan.train.steps == 10_000 and gan.gan.weight == 0.1 and gan.gan.disc_only_steps == 5
    assert (gan.init.from_workdir, gan.init.from_pattern) == ("runs/x", "^generator/")
    assert not gan.optim.groups.discriminator.frozen
    assert config_lib.load_config(f"{POSEWARP}:stage=gan").init.from_workdir == "runs/posewarp_tiny_vgg"
    baseline = config_lib.load_config(f"{POSEWARP}:model=unet,stage=gan")
    assert baseline.model.name == "unet" and baseline.init.from_workdir == "runs/posewarp_tiny_unet_vgg"
    tiny = config_lib.load_config(POSEWARP)
    assert tiny.model.image_size == 64 and tiny.model.width == 16 and tiny.data.synthetic_num == 200
    assert tiny.train.batch_size == 4 and tiny.train.steps <= 3000  # the paper's batch, a brief run
    config_lib.validate(tiny)
    with pytest.raises(config_lib.ConfigError, match="model='vgg'"):
        config_lib.load_config(f"{POSEWARP}:model=vgg")
    assert tasks.task_class(tiny) is posewarp.PoseWarpTask
    assert "copy the source" in posewarp.PoseWarpTask.format_eval(
        {k: 0.5 for k in ("l1", "vgg_error", "ssim", "ssim_range2")} | {"count": 3}
    )


def test_unet_baseline_wires_into_both_stages_and_the_pictures(synthetic_cache):
    """Traced, not compiled: the baseline's two update paths and the pictures without warped layers."""
    for stage in ("vgg", "gan"):
        config = tiny_config(stage, synthetic_cache, runs="runs_unused", model__name="unet")
        setup = train.build(config)
        batch = {
            k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in setup.task.example_inputs(8).items()
        } | {"target": jax.ShapeDtypeStruct((8, SIZE, SIZE, 3), np.float32)}
        state, metrics = jax.eval_shape(train.make_train_step(setup), setup.abstract_state, batch)
        assert set(state["params"]) == {"generator", "discriminator"}
        assert ("d_loss" in metrics) == (stage == "gan") and "perceptual_loss" in metrics
    rng = np.random.default_rng(0)
    pictures = setup.task.visualize(
        {
            "source": rng.uniform(-1, 1, (2, SIZE, SIZE, 3)),
            "target": rng.uniform(-1, 1, (2, SIZE, SIZE, 3)),
            "target_joints": rng.uniform(0, SIZE, (2, 14, 2)),
            "target_visible": np.ones((2, 14), bool),
            "mask": np.array([True, False]),
        },
        {"image": rng.uniform(-1, 1, (2, SIZE, SIZE, 3))},
    )
    grid = pictures["predictions"]
    assert grid.dtype == np.uint8 and grid.shape[1] > 6 * SIZE  # one row (padding left out), six columns
    assert grid.shape[0] == 24 + SIZE + 2 * 2  # viz.image_grid: title band + 1 row + 2 gaps
