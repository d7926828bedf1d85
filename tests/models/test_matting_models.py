"""Semantic Human Matting's networks: PSPNet / T-Net logits at input size, M-Net's encoder-decoder (VGG-16
names, sigmoid output in [0, 1]), the chained model (parameter paths, fusion and its ablation), and a
torchvision-layout VGG-16 imported into the M-Net encoder."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jhuman import weights
from jhuman.models import matting, pspnet, vgg
from jhuman.tasks import common

WIDTH = 4


def images(b=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (b, size, size, 3)).astype(np.float32)


def paths(tree):
    return ["/".join(p) for p in flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))]


def tiny_shm(**kwargs):
    return matting.SemanticHumanMatting(
        tnet_width=WIDTH, tnet_stage_sizes=(1, 1, 1, 1), mnet_width=WIDTH, **kwargs
    )


def test_pspnet_logits_at_input_size(numpy_init):
    net = pspnet.PSPNet(num_classes=3, width=WIDTH, stage_sizes=(1, 1, 1, 1))
    x = np.random.default_rng(0).normal(size=(1, 36, 44, 3)).astype(np.float32)
    variables = numpy_init(net, x)
    assert sorted(variables["params"]) == ["bottleneck", "bottleneck_bn", "classifier", "ppm", "trunk"]
    ppm = variables["params"]["ppm"]
    assert sorted(ppm) == [f"{k}{i}" for k in ("bn", "conv") for i in range(4)]
    assert ppm["conv0"]["kernel"].shape == (1, 1, 32 * WIDTH, 8 * WIDTH)  # res5 / 4 bins
    assert variables["params"]["bottleneck"]["kernel"].shape == (3, 3, 64 * WIDTH, 8 * WIDTH)
    logits = jax.jit(net.apply)(variables, x)
    assert logits.shape == (1, 36, 44, 3) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all() and float(jnp.std(logits)) > 0
    # bfloat16 compute, training mode (dropout rng, batch statistics): float32 logits at input size
    bf16 = pspnet.PSPNet(num_classes=3, width=WIDTH, stage_sizes=(1, 1, 1, 1), dtype=jnp.bfloat16)
    out, state = jax.eval_shape(
        lambda v: bf16.apply(v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"]),
        variables,
    )
    assert out.shape == (1, 36, 44, 3) and out.dtype == jnp.float32 and "ppm" in state["batch_stats"]
    with pytest.raises(ValueError, match="output_stride"):
        pspnet.PSPNet(num_classes=3, output_stride=4)


def test_mnet_encoder_decoder_names_and_unit_interval_output(numpy_init):
    net = matting.MNet(width=WIDTH)
    x = np.concatenate([images(), np.full((2, 32, 32, 3), 1 / 3, np.float32)], axis=-1)
    variables = numpy_init(net, x)
    encoder, decoder = variables["params"]["encoder"], variables["params"]["decoder"]
    convs = vgg.conv_names(vgg.VGG16_BLOCKS)
    assert sorted(encoder) == sorted(convs + [c.replace("conv", "bn") for c in convs])
    assert encoder["conv1_1"]["kernel"].shape == (3, 3, 6, WIDTH)
    assert sorted(decoder) == sorted(
        [f"deconv{i}" for i in range(1, 6)] + [f"bn{i}" for i in range(1, 6)] + ["pred"]
    )
    assert decoder["deconv5"]["kernel"].shape == (5, 5, 8 * WIDTH, 8 * WIDTH)
    assert decoder["pred"]["kernel"].shape == (5, 5, WIDTH, 1)
    apply = jax.jit(net.apply)
    alpha = apply(variables, x)
    assert alpha.shape == (2, 32, 32, 1) and alpha.dtype == jnp.float32
    assert 0.0 <= float(alpha.min()) and float(alpha.max()) <= 1.0 and float(jnp.std(alpha)) > 0
    for bias, value in ((50.0, 1.0), (-50.0, 0.0)):  # the sigmoid saturates; a raw output would be +-50
        shifted = jax.tree.map(lambda a: a, variables)
        shifted["params"]["decoder"]["pred"]["bias"] = jnp.full((1,), bias)
        np.testing.assert_allclose(apply(shifted, x), value, atol=1e-6)

    four = matting.MNet(width=WIDTH, trimap_channels=1)
    shapes = jax.eval_shape(four.init, jax.random.key(0), x[..., :4])
    assert shapes["params"]["encoder"]["conv1_1"]["kernel"].shape == (3, 3, 4, WIDTH)
    with pytest.raises(ValueError, match=r"\(B, H, W, 4\)"):
        jax.eval_shape(four.init, jax.random.key(0), x)
    with pytest.raises(ValueError, match="multiples of 16"):
        jax.eval_shape(net.init, jax.random.key(0), x[:, :24, :24])
    with pytest.raises(ValueError, match="trimap_channels"):
        matting.MNet(trimap_channels=2)


def test_semantic_human_matting_paths_fusion_and_methods(numpy_init):
    model = tiny_shm()
    x = images()
    variables = numpy_init(model, x)
    assert sorted(variables["params"]) == ["mnet", "tnet"]
    for collection in ("params", "batch_stats"):
        assert all(p.startswith(("tnet/", "mnet/")) for p in paths(variables[collection]))
    assert "tnet/trunk/conv1/kernel" in paths(variables["params"])
    assert "mnet/encoder/conv1_1/kernel" in paths(variables["params"])

    classes = np.random.default_rng(1).integers(0, 3, (2, 32, 32))
    one_hot = np.eye(3, dtype=np.float32)[classes]
    ablation_model = tiny_shm(fusion=False)

    @jax.jit
    def run(v, images, trimap):  # one compilation for the four calls
        return (
            model.apply(v, images),
            model.apply(v, images, method="trimap_logits"),
            model.apply(v, images, trimap, method="alpha"),
            ablation_model.apply(v, images),  # same parameters, no fusion
        )

    out, logits, alpha, ablation = run(variables, x, one_hot)
    assert sorted(out) == ["alpha_p", "alpha_r", "trimap_logits"]
    assert out["trimap_logits"].shape == (2, 32, 32, 3) and out["alpha_p"].shape == (2, 32, 32, 1)
    probs = jax.nn.softmax(out["trimap_logits"], axis=-1)
    np.testing.assert_allclose(
        out["alpha_p"], probs[..., 2:] + probs[..., 1:2] * out["alpha_r"], rtol=1e-5, atol=1e-6
    )
    assert float(jnp.abs(out["alpha_p"] - out["alpha_r"]).max()) > 1e-3
    np.testing.assert_allclose(logits, out["trimap_logits"], rtol=1e-5, atol=1e-5)

    # alpha() with a given (one-hot) trimap: fused = 1 on foreground, 0 on background, alpha_r on unknown
    expected = np.where(classes == 2, 1.0, np.where(classes == 1, np.asarray(alpha["alpha_r"])[..., 0], 0.0))
    np.testing.assert_allclose(alpha["alpha_p"][..., 0], expected, rtol=1e-6)

    np.testing.assert_array_equal(ablation["alpha_p"], ablation["alpha_r"])
    np.testing.assert_allclose(ablation["alpha_r"], out["alpha_r"], rtol=1e-5, atol=1e-6)

    # training mode: batch statistics of both nets; T-Net dropout needs an rng unless its rate is 0
    _, state = jax.eval_shape(
        lambda v: tiny_shm(tnet_dropout_rate=0.0).apply(v, x, train=True, mutable=["batch_stats"]), variables
    )
    assert sorted(state["batch_stats"]) == ["mnet", "tnet"]
    with pytest.raises(Exception, match="dropout"):
        jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]), variables)

    single = tiny_shm(trimap_channels=1)
    shapes = jax.eval_shape(single.init, jax.random.key(0), x)
    assert shapes["params"]["mnet"]["encoder"]["conv1_1"]["kernel"].shape == (3, 3, 4, WIDTH)
    with pytest.raises(ValueError, match="input_norm"):
        jax.eval_shape(tiny_shm(input_norm="nope").init, jax.random.key(0), x)


def torchvision_vgg16_state(width=WIDTH, seed=0):
    """A random state dict in torchvision's vgg16 layout (features.{i}.weight OIHW / bias, classifier.*)."""
    rng = np.random.default_rng(seed)
    state, cin = {}, 3
    for (block, num_convs, mult), index in zip(
        [(b, k, m) for b, n, m in vgg.VGG16_BLOCKS for k in range(1, n + 1)],
        sorted(weights.VGG16_FEATURE_INDEX),
    ):
        cout = width * mult
        state[f"features.{index}.weight"] = rng.normal(0, np.sqrt(2 / (9 * cin)), (cout, cin, 3, 3))
        state[f"features.{index}.bias"] = rng.normal(0, 0.1, (cout,))
        cin = cout
    state["classifier.0.weight"] = rng.normal(size=(16, cin))
    return {k: v.astype(np.float32) for k, v in state.items()}


def test_vgg16_imports_into_the_mnet_encoder(numpy_init, tmp_path):
    """init.backbone_weights' (prefix, arch, file) entry into mnet/encoder: every conv loaded, conv1_1 widened
    (trimap channels zero), batch norm and the decoder untouched; with identity batch norm the encoder then
    computes the file's VGG-16 on RGB (the trimap channels have no effect)."""
    model = tiny_shm()
    x = images()
    variables = numpy_init(model, x)
    state = torchvision_vgg16_state()
    path = tmp_path / "vgg16.npz"
    np.savez(path, **state)
    config = ml_collections.ConfigDict(
        {"init": {"backbone_weights": (("mnet/encoder", "vgg16", str(path)),)}}
    )
    new = common.pretrained_variables(config, variables)
    encoder = new["params"]["mnet"]["encoder"]
    for index, name in weights.VGG16_FEATURE_INDEX.items():
        kernel = state[f"features.{index}.weight"].transpose(2, 3, 1, 0)
        got = np.asarray(encoder[name]["kernel"])
        np.testing.assert_array_equal(got[:, :, :3] if name == "conv1_1" else got, kernel)
        np.testing.assert_array_equal(encoder[name]["bias"], state[f"features.{index}.bias"])
    np.testing.assert_array_equal(encoder["conv1_1"]["kernel"][:, :, 3:], 0)
    for untouched in (new["params"]["mnet"]["decoder"], new["params"]["tnet"], new["batch_stats"]):
        assert jax.tree.leaves(untouched)  # present
    np.testing.assert_array_equal(
        new["params"]["mnet"]["decoder"]["pred"]["kernel"],
        variables["params"]["mnet"]["decoder"]["pred"]["kernel"],
    )

    _, report = weights.import_backbone(variables, state, "vgg16", prefix="mnet/encoder")
    assert len(report.loaded) == 26 and report.unexpected == ["classifier.0.weight"]
    assert report.widened == ["params/mnet/encoder/conv1_1/kernel: 3 -> 6 input channels"]
    assert all("/bn" in p for p in report.missing) and len(report.missing) == 13 * 4

    encoder_net = matting.MNetEncoder(width=WIDTH)
    encoder_vars = {c: new[c]["mnet"]["encoder"] for c in ("params", "batch_stats")}
    rgb = (x - 128.0) / 64.0
    trimap = np.random.default_rng(2).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    features, _ = jax.jit(encoder_net.apply)(encoder_vars, np.concatenate([rgb, trimap], -1))
    plain = vgg.VGG16(width=WIDTH)
    plain_vars, _ = weights.import_backbone(numpy_init(plain, rgb), state, "vgg16", prefix=())
    expected = jax.jit(plain.apply)(plain_vars, rgb)["conv5_3"]
    np.testing.assert_allclose(features, expected, rtol=1e-3, atol=1e-3 * float(jnp.abs(expected).max()))
