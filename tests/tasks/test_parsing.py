"""The parsing task: test-time flip/multi-scale, the SSL loss inside the task, prediction files, CLI tools."""

import json
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman import classes, cli, train
from jhuman import config as config_lib
from jhuman.ops import ssl as ssl_ops
from jhuman.tasks import parsing

PARSING = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "parsing.py"
)


def make_task(arg="size=tiny", **overrides):
    config = config_lib.load_config(f"{PARSING}:{arg}")
    base = {"model.width": "8", "data.crop_size": "48", "model.attention_width": "8"}
    base.update({k.replace("__", "."): str(v) for k, v in overrides.items()})
    config_lib.apply_overrides(config, [f"{k}={v}" for k, v in base.items()])
    task = parsing.ParsingTask(config)
    return task, task.init(jax.random.key(0))


@pytest.fixture(scope="module")
def resnet_task():
    return make_task()


def random_images(n=2, size=48, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32))


def test_flip_testing_is_mirror_equivariant_with_the_swap(resnet_task):
    task, variables = resnet_task
    task.config.eval.flip = True
    try:
        images = random_images()
        mirrored = images[:, :, ::-1]
        logits = np.asarray(task.predict_logits(variables, images))
        logits_mirrored = np.asarray(task.predict_logits(variables, mirrored))
    finally:
        task.config.eval.flip = False
    # Mirroring the input mirrors the flip-tested logits with left/right classes exchanged.
    expected = logits[:, :, ::-1][..., classes.LIP_FLIP_CHANNELS]
    np.testing.assert_allclose(logits_mirrored, expected, rtol=1e-4, atol=1e-4)
    # ... and a left-arm channel is not its own mirror (the swap matters).
    assert not np.allclose(logits_mirrored[..., 14], logits[:, :, ::-1, 14], atol=1e-3)


def test_flip_testing_averages_the_plain_and_flipped_logits(resnet_task):
    task, variables = resnet_task
    images = random_images()
    plain = np.asarray(task.predict_logits(variables, images))
    flipped_input = np.asarray(task.predict_logits(variables, images[:, :, ::-1]))
    task.config.eval.flip = True
    try:
        both = np.asarray(task.predict_logits(variables, images))
    finally:
        task.config.eval.flip = False
    manual = 0.5 * (plain + flipped_input[:, :, ::-1][..., classes.LIP_FLIP_CHANNELS])
    np.testing.assert_allclose(both, manual, rtol=1e-4, atol=1e-4)


def test_multi_scale_testing_averages_the_scales(resnet_task):
    task, variables = resnet_task
    images = random_images(size=49)
    single = np.asarray(task.predict_logits(variables, images))
    task.config.eval.scales = (1.0, 0.5)
    try:
        multi = np.asarray(task.predict_logits(variables, images))
    finally:
        task.config.eval.scales = (1.0,)
    from jhuman.ops import image

    half = image.resize_bilinear(images, (25, 25))
    out, _ = task.apply(variables, half)
    # Logit i of the half-size input sits on half-size pixel s*i = full-size pixel s*i * 48/24 (s = 8, or 4 with
    # the demo's decoder).
    stride = task.logit_stride
    assert out["logits"].shape[1] == -(-25 // stride)
    up = np.asarray(image.upsample_aligned(out["logits"], (49, 49), stride * 48 / 24))
    np.testing.assert_allclose(multi, 0.5 * (single + up), rtol=1e-4, atol=1e-4)
    assert multi.shape == single.shape == (2, 49, 49, 20)


def _loss(task, variables, batch, **ssl):
    for k, v in ssl.items():
        task.config.ssl[k] = v
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    return task.loss(params, state, batch, jax.random.key(1))


def test_ssl_report_only_equals_plain_cross_entropy_and_stop_gradient_weights_it():
    task, variables = make_task(model__norm="frozen")
    rng = np.random.default_rng(0)
    batch = {
        "image": random_images(3),
        "label": jnp.asarray(rng.integers(0, 20, (3, 48, 48)).astype(np.int32)),
        "step": jnp.int32(10),
    }
    plain, (m_plain, _) = _loss(task, variables, batch, enabled=False)
    report, (m_report, _) = _loss(task, variables, batch, enabled=True, variant="report_only")
    assert float(plain) == float(report) and float(m_report["joint_loss"]) > 0
    weighted, _ = _loss(task, variables, batch, enabled=True, variant="stop_gradient", start_step=0)
    out, _ = task.apply(variables, batch["image"])
    assert task.logit_stride == 4  # the demo's decoder: the loss reads the labels on the stride-4 grid
    labels = np.asarray(batch["label"])[:, ::4, ::4]
    ce = np.asarray(ssl_ops.per_image_cross_entropy(out["logits"], labels))
    joint = np.asarray(ssl_ops.joint_loss(labels, np.asarray(out["logits"]).argmax(-1)))
    np.testing.assert_allclose(float(weighted), np.mean(ce * joint), rtol=1e-5)
    # Before ssl.start_step the loss is plain cross-entropy.
    early, _ = _loss(task, variables, batch, enabled=True, variant="stop_gradient", start_step=11)
    assert float(early) == float(plain)


def test_attention_loss_adds_one_cross_entropy_per_scale():
    task, variables = make_task("size=tiny,model=attention_resnet", model__norm="frozen")
    rng = np.random.default_rng(1)
    batch = {
        "image": random_images(2),
        "label": jnp.asarray(rng.integers(0, 20, (2, 48, 48)).astype(np.int32)),
    }
    loss, (metrics, _) = _loss(task, variables, batch, enabled=False)
    out, _ = task.apply(variables, batch["image"], train=True, rng=jax.random.key(1))
    labels = np.asarray(batch["label"])[:, ::8, ::8]
    per_output = [
        np.mean(ssl_ops.per_image_cross_entropy(o, labels)) for o in [out["logits"], *out["scale_logits"]]
    ]
    assert len(per_output) == 4
    np.testing.assert_allclose(float(loss), sum(per_output), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["cross_entropy"]), per_output[0], rtol=1e-5)


def test_predict_folder_writes_labels_overlays_and_json_and_counts_bad_files(resnet_task, tmp_path):
    task, variables = resnet_task
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "a.jpg"), rng.integers(0, 255, (40, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "b.png"), rng.integers(0, 255, (200, 90, 3), dtype=np.uint8))  # larger than pad
    (images / "broken.jpg").write_bytes(b"not an image")
    task.config.eval.pad_size = 64
    summary = task.predict_folder(variables, str(images), str(tmp_path / "out"))
    assert [r["image"] for r in summary["images"]] == ["a.jpg", "b.png"] and summary["num_skipped"] == 1
    assert summary["skipped"] == [{"image": "broken.jpg", "reason": "cannot decode image"}]
    label = cv2.imread(str(tmp_path / "out" / "b.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (200, 90) and label.max() < 20
    assert cv2.imread(str(tmp_path / "out" / "a_overlay.png")).shape == (40, 30, 3)
    written = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert abs(sum(written["images"][0]["class_fractions"].values()) - 1) < 1e-3


def test_eval_parsing_cli_reports_the_protocol(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    rng = np.random.default_rng(0)
    confusion = np.zeros((20, 20), np.int64)
    for i in range(3):
        g = rng.integers(0, 20, (16, 12)).astype(np.uint8)
        g[0] = 255
        p = np.where(rng.random((16, 12)) < 0.7, g, rng.integers(0, 20, (16, 12))).astype(np.uint8)
        p[0] = 0
        cv2.imwrite(str(gt / f"{i}.png"), g)
        cv2.imwrite(str(pred / f"{i}.png"), p)
        keep = g != 255
        np.add.at(confusion, (g[keep], p[keep]), 1)
    out = tmp_path / "scores.json"
    assert cli.main(["eval-parsing", "--gt_dir", str(gt), "--pred_dir", str(pred), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert np.isclose(scores["pixel_accuracy"], np.trace(confusion) / confusion.sum())
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert np.isclose(scores["mean_iou"], np.nanmean(iou))
    assert "mean IoU" in capsys.readouterr().out


def _torchvision_state_dict(variables, prefix=("net", "trunk")):
    """A torchvision-named ResNet state dict with random values, shaped for the linen trunk."""
    rng = np.random.default_rng(0)
    params = variables["params"]
    for key in prefix:
        params = params[key]
    state = {}

    def visit(tree, names):
        for name, sub in tree.items():
            if "kernel" in sub:
                torch_name = ".".join(names + [name])
                torch_name = torch_name.replace("downsample_conv", "downsample.0")
                torch_name = torch_name.replace(".block", ".")
                state[f"{torch_name}.weight"] = np.transpose(  # HWIO -> OIHW
                    rng.normal(size=np.shape(sub["kernel"])).astype(np.float32), (3, 2, 0, 1)
                )
            elif "scale" in sub:
                torch_name = (
                    ".".join(names + [name]).replace("downsample_bn", "downsample.1").replace(".block", ".")
                )
                n = np.shape(sub["scale"])[0]
                state[f"{torch_name}.weight"] = rng.normal(size=n).astype(np.float32)
                state[f"{torch_name}.bias"] = rng.normal(size=n).astype(np.float32)
                state[f"{torch_name}.running_mean"] = rng.normal(size=n).astype(np.float32)
                state[f"{torch_name}.running_var"] = rng.uniform(0.5, 2, size=n).astype(np.float32)
            else:
                visit(sub, names + [name])

    visit(params, [])
    return state


def test_backbone_weights_from_the_config_land_in_the_trunk(tmp_path):
    config = config_lib.load_config(f"{PARSING}:size=tiny")
    config_lib.apply_overrides(config, ["model.width=8", "data.crop_size=48"])
    setup = train.build(config)
    abstract = jax.eval_shape(setup.task.init, jax.random.key(0))
    state_dict = _torchvision_state_dict(abstract)
    path = tmp_path / "resnet.npz"
    np.savez(path, **state_dict)
    config_lib.apply_overrides(config, [f"init.backbone_weights={path}"])
    setup = train.build(config)
    from jhuman import checkpoint

    state = train.create_or_restore(setup, checkpoint.Checkpoints(str(tmp_path / "run")))
    kernel = np.asarray(state["params"]["net"]["trunk"]["layer2"]["block0"]["conv2"]["kernel"])
    np.testing.assert_array_equal(kernel, np.transpose(state_dict["layer2.0.conv2.weight"], (2, 3, 1, 0)))
    mean = np.asarray(state["model_state"]["batch_stats"]["net"]["trunk"]["bn1"]["mean"])
    np.testing.assert_array_equal(mean, state_dict["bn1.running_mean"])
    assert (
        state["params"]["net"]["trunk"]["conv1"]["kernel"].sharding
        == setup.state_shardings["params"]["net"]["trunk"]["conv1"]["kernel"]
    )


@pytest.mark.slow
def test_tiny_attention_with_ssl_learns(synthetic_cache, tmp_path):
    config = config_lib.load_config(f"{PARSING}:size=tiny,model=attention_resnet,ssl=on")
    config_lib.apply_overrides(
        config,
        [
            f"data.cache_dir={synthetic_cache}",
            "data.synthetic_num=1200",
            "data.synthetic_size=(96, 128)",
            "train.steps=300",
            "ssl.start_step=150",
            "train.eval_every=0",
            "train.checkpoint_every=300",
            "train.num_pictures=0",
            "train.progress_bar=false",
            "eval.limit=48",
            "eval.pad_size=128",
        ],
    )
    # The untrained model on the first 16 of those images (its mIoU is near chance on any of them).
    setup = train.build(config_lib.apply_overrides(config.copy_and_resolve_references(), ["eval.limit=16"]))
    untrained = train.evaluate(
        setup, jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))
    )
    summary = train.run(config, str(tmp_path / "run"))
    trained = summary["eval"]
    print(f"attention+ssl: untrained mIoU {untrained['mean_iou']:.4f} -> trained {trained['mean_iou']:.4f}")
    # Measured 0.0036 -> 0.0485 (2026-12-01): the margins leave room for another CPU's arithmetic.
    assert (
        trained["mean_iou"] > untrained["mean_iou"] + 0.03 and trained["mean_iou"] > 5 * untrained["mean_iou"]
    ), (untrained["mean_iou"], trained["mean_iou"])
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    joint = [r["joint_loss"] for r in rows if "joint_loss" in r]
    assert len(joint) > 5 and all(np.isfinite(joint))


def test_a_network_without_batch_norm_trains():
    """VGG-16 (no batch-norm state): flax returns (outputs, {}) for mutable=[]; the loss must not wrap it again."""
    import jax

    from jhuman import config as config_lib
    from jhuman.tasks import parsing

    task = parsing.ParsingTask(config_lib.load_config(f"{PARSING}:size=tiny,model=deeplab_vgg"))
    variables = task.init(jax.random.key(0))
    loss, (_, new_state) = task.loss(variables["params"], {}, task.example_batch(2), jax.random.key(1))
    assert float(loss) > 0 and new_state == {}
