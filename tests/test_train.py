"""The trainer end to end on tiny DeepLab + synthetic people (CPU, 8 fake devices)."""

import json
import logging
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import Preempting

from jhuman import checkpoint, cli, train
from jhuman import config as config_lib
from jhuman.tasks import parsing as parsing_task

PARSING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "parsing.py")
DATA = {"data.synthetic_num": "1200", "data.synthetic_size": "(96, 128)"}


@pytest.fixture
def cache_dir(synthetic_cache):
    return synthetic_cache


def tiny_config(cache_dir, **overrides):
    c = config_lib.load_config(f"{PARSING}:size=tiny,data=synthetic")
    base = {
        **DATA,
        "data.cache_dir": cache_dir,
        "train.progress_bar": "false",
        "train.num_pictures": "0",
        "eval.limit": "16",
        "eval.batch_size": "8",
        "train.eval_every": "0",
        "train.log_every": "2",
        "train.checkpoint_every": "1000",
        "train.steps": "4",
        "data.crop_size": "48",
        "eval.pad_size": "128",
        "train.batch_size": "16",
    }
    base.update({k.replace("__", "."): str(v) for k, v in overrides.items()})
    return config_lib.apply_overrides(c, [f"{k}={v}" for k, v in base.items()])


def params_of(summary):
    return jax.tree.map(np.asarray, jax.device_get(summary["state"]["params"]))


def test_one_device_and_eight_devices_give_the_same_losses(cache_dir):
    losses = {}
    for name, (data, fsdp) in {"1": (1, 1), "8": (8, 1), "4x2": (4, 2)}.items():
        config = tiny_config(cache_dir, mesh__data=data, mesh__fsdp=fsdp, mesh__fsdp_min_size=64)
        setup = train.build(config)
        step = train.make_train_step(setup)
        state = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))
        batches = setup.task.train_batches(0, 16, 0, 1)
        from jhuman import sharding

        out = []
        for _ in range(3):
            state, metrics = step(state, sharding.to_global(next(batches), setup.mesh))
            out.append(float(metrics["loss"]))
        losses[name] = out
    print(losses)
    np.testing.assert_allclose(losses["8"], losses["1"], rtol=2e-5)
    np.testing.assert_allclose(losses["4x2"], losses["1"], rtol=2e-5)
    assert losses["1"][2] != losses["1"][0]  # the steps really changed the parameters


def test_no_recompilation_in_the_steady_state(cache_dir, caplog):
    config = tiny_config(cache_dir)
    setup = train.build(config)
    step = train.make_train_step(setup)
    state = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))
    from jhuman import sharding

    batches = sharding.prefetch_to_device(setup.task.train_batches(0, 16, 0, 1), setup.mesh)
    state, _ = step(state, next(batches))  # compiles once
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING, logger="jax"):
            for _ in range(3):
                with jax.transfer_guard("disallow"):
                    state, metrics = step(state, next(batches))
            jax.block_until_ready(metrics)
    finally:
        jax.config.update("jax_log_compiles", False)
    compiles = [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
    assert compiles == [], compiles


def test_interrupted_run_resumes_to_the_same_parameters(cache_dir, tmp_path, monkeypatch):
    config = tiny_config(cache_dir, train__steps=8, train__checkpoint_every=3)
    straight = train.run(config, str(tmp_path / "straight"))

    original = parsing_task.ParsingTask.train_batches
    monkeypatch.setattr(
        parsing_task.ParsingTask, "train_batches", lambda self, *args: Preempting(original(self, *args), at=4)
    )
    first = train.run(config, str(tmp_path / "resumed"))
    monkeypatch.setattr(parsing_task.ParsingTask, "train_batches", original)
    assert 1 <= first["preempted_at"] < 8
    assert checkpoint.Checkpoints(str(tmp_path / "resumed")).latest_step() == first["preempted_at"]
    second = train.run(config, str(tmp_path / "resumed"))
    assert second["start_step"] == first["preempted_at"] and second["step"] == 8
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        params_of(straight),
        params_of(second),
    )


def test_corrupt_image_is_skipped_counted_and_resume_stays_exact(cache_dir, tmp_path, monkeypatch):
    from input_pipeline import synthetic

    root = str(tmp_path / "lip")
    synthetic.write_dataset("parsing", root, num=40, seed=3, size=(96, 112), val_fraction=0.2, workers=1)
    ids = open(os.path.join(root, "TrainVal_images", "train_id.txt")).read().split()
    broken = os.path.join(root, "TrainVal_images", "train_images", f"{ids[5]}.jpg")
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8 this is not a JPEG")
    config = tiny_config(
        cache_dir,
        data__name="lip",
        data__root=root,
        train__steps=8,
        train__checkpoint_every=3,
        train__log_every=1,
    )
    straight = train.run(config, str(tmp_path / "straight"))
    rows = [json.loads(line) for line in open(tmp_path / "straight" / "metrics.jsonl")]
    skipped = [r["data_skipped"] for r in rows if "data_skipped" in r]
    assert skipped[-1] >= 3 and skipped == sorted(skipped)  # 32 train images, 16 a step: once an epoch

    original = parsing_task.ParsingTask.train_batches
    monkeypatch.setattr(
        parsing_task.ParsingTask, "train_batches", lambda self, *args: Preempting(original(self, *args), at=5)
    )
    first = train.run(config, str(tmp_path / "resumed"))
    monkeypatch.setattr(parsing_task.ParsingTask, "train_batches", original)
    assert first["preempted_at"] < 8
    second = train.run(config, str(tmp_path / "resumed"))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        params_of(straight),
        params_of(second),
    )
    # The skip count continues across the resume (it is kept with the data position), step by step.
    resumed = [json.loads(line) for line in open(tmp_path / "resumed" / "metrics.jsonl")]
    after = [r["data_skipped"] for r in resumed[[i for i, r in enumerate(resumed) if "resumed_from" in r][0] :]
             if "data_skipped" in r]  # fmt: skip
    assert after == skipped[-len(after) :]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(cache_dir, tmp_path):
    workdir = str(tmp_path / "run")
    # The learning rate warms up from 0 to 1e30: the first steps are good, then Adam steps of ~1e30
    # overflow the activations.
    bad = tiny_config(
        cache_dir, train__steps=8, train__checkpoint_every=1, optim__learning_rate=1e30, optim__warmup_steps=4,
        optim__schedule="constant",
    )  # fmt: skip
    with pytest.raises(train.NonFiniteLossError) as error:
        train.run(bad, workdir)
    found = re.search(r"NaN/Inf at step (\d+).*Last good checkpoint: step (\d+)", str(error.value))
    nan_step, good_step = int(found.group(1)), int(found.group(2))
    assert 1 <= good_step < nan_step
    ckpt = checkpoint.Checkpoints(workdir)
    assert ckpt.latest_step() == good_step
    setup = train.build(bad)
    restored = jax.device_get(ckpt.restore(setup.abstract_state, setup.state_shardings)["params"])
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(restored))


def test_a_run_whose_gradients_stay_exactly_zero_stops_naming_the_step(
    cache_dir, tmp_path, monkeypatch, capsys
):
    original = parsing_task.ParsingTask.loss

    def dead_after_three_steps(self, params, model_state, batch, rng):  # a network that saturated at step 4
        loss, aux = original(self, params, model_state, batch, rng)
        return loss * jnp.where(batch["step"] < 3, 1.0, 0.0), aux

    monkeypatch.setattr(parsing_task.ParsingTask, "loss", dead_after_three_steps)
    monkeypatch.setattr(train, "ZERO_GRADIENT_STEPS", 9)
    workdir = str(tmp_path / "run")
    config = tiny_config(cache_dir, train__steps=20, train__checkpoint_every=2, train__log_every=1)
    with pytest.raises(train.StalledError) as error:
        train.run(config, workdir)
    message = str(error.value)
    assert "exactly zero since step 4 (9 steps)" in message, message
    # Step 4's zero gradient was taken at the state after step 3: the last one before it is step 2's. The dead
    # states of steps 4 .. 12 were not saved: four of them would have rotated it out (3 checkpoints kept).
    assert f"Last checkpoint from before: step 2 in {workdir}/checkpoints" in message, message
    ckpt = checkpoint.Checkpoints(workdir)
    assert ckpt.finished_steps() == [2]
    skips = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("no checkpoint at step")
    ]
    assert skips == [  # said once, at the first skipped save
        "no checkpoint at step 4: the gradients have been exactly zero since step 4; the checkpoints from "
        "before are kept"
    ]
    ckpt.close()
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert max(r["step"] for r in rows if "loss" in r) < 13  # it stopped there, not at step 20
    assert [r["grad_norm"] > 0 for r in rows if "grad_norm" in r][:3] == [True, True, True]


def test_gradient_accumulation_matches_the_full_batch(cache_dir):
    from jhuman import sharding

    results = []
    for accum in (1, 2):
        config = tiny_config(cache_dir, train__grad_accum_steps=accum, model__norm="frozen")
        setup = train.build(config)
        step = train.make_train_step(setup)
        state = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))
        batch = sharding.to_global(next(setup.task.train_batches(0, 16, 0, 1)), setup.mesh)
        state, metrics = step(state, batch)
        results.append((float(metrics["loss"]), jax.tree.map(np.asarray, jax.device_get(state["params"]))))
    assert np.isclose(results[0][0], results[1][0], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), results[0][1], results[1][1]
    )


def test_cli_config_errors_name_the_valid_keys(capsys, tmp_path):
    code = cli.main(
        ["train", "--config", f"{PARSING}:size=tiny", "--workdir", str(tmp_path), "--config.train.stepz=3"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'stepz'" in err and "'steps'" in err
    code = cli.main(
        ["train", "--config", f"{PARSING}:size=tiny", "--workdir", str(tmp_path), "--config.data.name=lip"]
    )
    assert code == 2 and "data.root" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_deeplab_learns_and_writes_its_outputs(cache_dir, tmp_path):
    """Trained mIoU must clearly beat the untrained model; metrics, TensorBoard, pictures and eval files exist."""
    config = tiny_config(
        cache_dir,
        train__steps=400,
        train__log_every=20,
        train__num_pictures=3,
        eval__limit=48,
        data__crop_size=96,
        train__batch_size=8,
        train__eval_every=200,
        train__checkpoint_every=200,
    )
    setup = train.build(config)
    untrained = train.evaluate(
        setup, jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))
    )
    workdir = str(tmp_path / "run")
    summary = train.run(config, workdir)
    trained = summary["eval"]
    print(
        f"untrained mIoU {untrained['mean_iou']:.4f} -> trained {trained['mean_iou']:.4f}; "
        f"pixel acc {untrained['pixel_accuracy']:.4f} -> {trained['pixel_accuracy']:.4f}"
    )
    assert (
        trained["mean_iou"] > untrained["mean_iou"] + 0.05 and trained["mean_iou"] > 3 * untrained["mean_iou"]
    )
    assert trained["pixel_accuracy"] > 0.7

    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(20, 401, 20))
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert any("val/mean_iou" in r for r in rows) and all(r["data_skipped"] == 0 for r in train_rows)
    assert os.path.isfile(os.path.join(workdir, "eval", "val_400.json"))
    assert os.path.isfile(os.path.join(workdir, "eval", "val_200.json"))

    import glob

    import tensorflow as tf

    scalars, images = {}, set()
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):  # a real parse of the event file format
            for value in event.summary.value:
                if value.HasField("image"):
                    images.add(value.tag)
                    assert value.image.encoded_image_string[:4] == b"\x89PNG"
                elif value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    assert "predictions" in images and "val/mean_iou" in scalars
    assert [step for step, _ in scalars["loss"]] == list(range(20, 401, 20))

    import cv2

    for name in ("curves.png", "predictions.png"):
        picture = cv2.imread(os.path.join(workdir, "pictures", name))
        assert picture is not None and picture.shape[0] > 50 and picture.std() > 5
