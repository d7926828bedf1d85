"""Importing torchvision-layout weights: tiny PyTorch ResNet / VGG-16 / VGG-19 (torchvision's parameter names,
random weights and BatchNorm statistics) exported to .safetensors, .npz and .pth, imported into the linen trunks,
features compared on the same input; a first conv widened for more input channels; several entries of
`init.backbone_weights`; plus the report, shape and arch errors, and .pth without torch. (The Keras layout:
test_weights_keras.py.)"""

import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import safetensors.numpy  # noqa: E402
from torch import nn  # noqa: E402

from jhuman import weights  # noqa: E402
from jhuman.models import deeplab, resnet, vgg  # noqa: E402
from jhuman.tasks import common  # noqa: E402

WIDTH = 8
STAGES = (1, 1, 1, 1)
ATOL = 1e-4


# ---------------------------------------------------------------------------------------- torch references


class TorchBottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3), with DeepLab-v2's dilation in every block."""

    def __init__(self, inplanes, planes, stride, dilation):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != 4 * planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, 4 * planes, 1, stride, bias=False), nn.BatchNorm2d(4 * planes)
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
    def __init__(self, stages=STAGES, width=WIDTH, output_stride=32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, (n, (stride, dilation)) in enumerate(zip(stages, resnet.stage_dilations(output_stride))):
            planes = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(TorchBottleneck(inplanes, planes, stride if j == 0 else 1, dilation))
                inplanes = 4 * planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, 10)  # torchvision's classifier: unexpected for the trunk

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = {}
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            out[f"res{i + 2}"] = x
        return out


def torch_vgg16(width=WIDTH):
    """vgg16.features with torchvision's indices, but DeepLab-LargeFOV's pools (3x3 pad 1, strides 2, 2, 2, 1, 1)
    and conv5 dilation 2; classifier.{0,3,6} as in torchvision (unused by LargeFOV)."""
    layers, cin = [], 3
    for block, n, mult in vgg.VGG16_BLOCKS:
        dilation = 2 if block == 5 else 1
        for _ in range(n):
            layers += [nn.Conv2d(cin, width * mult, 3, padding=dilation, dilation=dilation), nn.ReLU()]
            cin = width * mult
        layers.append(nn.MaxPool2d(3, 2 if block <= 3 else 1, 1))
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.classifier = nn.Sequential(
        nn.Linear(cin * 7 * 7, 32),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(32, 10),
    )
    return model


def torch_vgg16_features(model, x):
    """conv1_2 .. conv5_3 (post-ReLU, before the pool): outputs of features.{3, 8, 15, 22, 29}."""
    names = {3: "conv1_2", 8: "conv2_2", 15: "conv3_3", 22: "conv4_3", 29: "conv5_3"}
    out = {}
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i in names:
            out[names[i]] = x
    return out


def torch_plain_vgg(convs_per_block, width=WIDTH, pooling="max", cin=3):
    """torchvision's vgg16/vgg19: `features` (conv, ReLU pairs; a 2x2 stride-2 pool closing each block, here max
    or average) and a `classifier`; the conv indices follow from that order, as in torchvision."""
    pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
    layers = []
    for block, n in enumerate(convs_per_block):
        cout = width * min(2**block, 8)
        for _ in range(n):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            cin = cout
        layers.append(pool(2, 2))
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.classifier = nn.Sequential(nn.Linear(cin * 7 * 7, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 10))
    return model


def torch_plain_vgg_activations(model, x):
    """{'conv{b}_{k}': output of the ReLU after the k-th conv of block b}, counted along `features`."""
    out, block, k = {}, 1, 0
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            k += 1
        elif isinstance(layer, nn.ReLU):
            out[f"conv{block}_{k}"] = x
        else:
            block, k = block + 1, 0
    return out


def randomise(model, seed=0):
    """He-normal convs, random biases, BN affine AND running statistics; eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(123)
    return model.eval()


def export(state_dict, directory):
    """The state dict as .safetensors, .npz and .pth files."""
    arrays = {k: v.detach().cpu().numpy() for k, v in state_dict.items()}
    paths = [directory / "w.safetensors", directory / "w.npz", directory / "w.pth"]
    safetensors.numpy.save_file(arrays, str(paths[0]))
    np.savez(paths[1], **arrays)
    torch.save(state_dict, paths[2])
    return paths


def zeros_like_init(model, x):
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)


def torch_input(x_nhwc):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x_nhwc, (0, 3, 1, 2))))


def nchw_to_nhwc(t):
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def max_diff(linen_features, torch_features):
    return {
        k: float(np.abs(np.asarray(linen_features[k]) - nchw_to_nhwc(v)).max())
        for k, v in torch_features.items()
    }


def image(size=35, seed=0):
    return np.random.default_rng(seed).normal(size=(2, size, size, 3)).astype(np.float32)


# ---------------------------------------------------------------------------------------- ResNet


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory):
    model = randomise(TorchResNet())
    return model, export(model.state_dict(), tmp_path_factory.mktemp("resnet"))


def test_resnet_matches_torch_in_every_format(resnet_files):
    torch_model, paths = resnet_files
    x = image()
    with torch.no_grad():
        expected = torch_model(torch_input(x))
    model = resnet.ResNet(stage_sizes=STAGES, width=WIDTH, norm="frozen")
    variables = zeros_like_init(model, x)
    apply = jax.jit(model.apply)
    for path in paths:
        new, report = weights.import_backbone(variables, path, "resnet50", prefix=())
        diffs = max_diff(apply(new, x), expected)
        assert max(diffs.values()) < ATOL, (path.suffix, diffs)
        assert float(np.abs(nchw_to_nhwc(expected["res5"])).mean()) > 0.1  # a non-degenerate comparison
        assert report.missing == [] and sorted(report.unexpected) == ["fc.bias", "fc.weight"]
        assert len(report.ignored) == sum(isinstance(m, nn.BatchNorm2d) for m in torch_model.modules())
        assert all(k.endswith("num_batches_tracked") for k in report.ignored)
    # input tree untouched
    assert all(not np.asarray(leaf).any() for leaf in jax.tree.leaves(variables))


def test_resnet_into_deeplab_at_output_stride_8(resnet_files, tmp_path):
    """DeepLab's dilated trunk (prefix 'trunk', and a nested prefix) against the torch net with the same
    dilations; the classifier is left alone."""
    torch_model = TorchResNet(output_stride=8)
    torch_model.load_state_dict(resnet_files[0].state_dict())
    torch_model.eval()
    x = image(33, seed=1)
    with torch.no_grad():
        expected = torch_model(torch_input(x))["res5"]
    model = deeplab.DeepLab(
        backbone="resnet101", stage_sizes=STAGES, width=WIDTH, output_stride=8, num_classes=3
    )
    variables = zeros_like_init(model, x)
    variables["params"]["classifier"] = jax.tree.map(jnp.ones_like, variables["params"]["classifier"])
    new, report = weights.import_backbone(variables, resnet_files[1][0], "resnet101")
    assert report.missing == [] and all(p.split("/")[1] == "trunk" for p in report.loaded)
    assert "params/trunk/layer4/block0/downsample_conv/kernel" in report.loaded
    assert "batch_stats/trunk/layer4/block0/downsample_bn/var" in report.loaded
    features = jax.jit(model.apply)(new, x)["features"]
    assert np.abs(np.asarray(features) - nchw_to_nhwc(expected)).max() < ATOL
    assert all(np.asarray(v).min() == 1 for v in jax.tree.leaves(new["params"]["classifier"]))

    wrapped = {c: {"net": v} for c, v in variables.items()}
    nested, nested_report = weights.import_backbone(
        wrapped, resnet_files[1][0], "resnet101", ("net", "trunk")
    )
    assert nested_report.loaded == [p.replace("/trunk/", "/net/trunk/") for p in report.loaded]
    jax.tree.map(np.testing.assert_array_equal, nested["params"]["net"], new["params"])


def test_values_cast_to_target_dtype(resnet_files):
    model = resnet.ResNet(stage_sizes=STAGES, width=WIDTH, norm="frozen")
    variables = jax.tree.map(lambda v: v.astype(jnp.bfloat16), zeros_like_init(model, image()))
    new, _ = weights.import_backbone(variables, resnet_files[0].state_dict(), "resnet50", prefix=())
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(new))
    kernel = resnet_files[0].conv1.weight.detach().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_allclose(np.asarray(new["params"]["conv1"]["kernel"], np.float32), kernel, rtol=1e-2)


def test_depth_difference_reported_as_missing_and_unexpected():
    """A (2, 1, 1, 1) file into a (1, 1, 1, 2) trunk: layer1.1.* unexpected, layer4/block1 missing (also
    into abstract eval_shape variables)."""
    state = randomise(TorchResNet(stages=(2, 1, 1, 1))).state_dict()
    model = resnet.ResNet(stage_sizes=(1, 1, 1, 2), width=WIDTH, norm="frozen")
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    new, report = weights.import_backbone(abstract, state, "resnet152", prefix=())
    assert sorted(report.unexpected) == sorted(
        [k for k in state if k.startswith("layer1.1.") and not k.endswith("num_batches_tracked")]
        + ["fc.weight", "fc.bias"]
    )
    block = "layer4/block1/"
    assert sorted(report.missing) == sorted(
        [f"params/{block}conv{k}/kernel" for k in (1, 2, 3)]
        + [f"params/{block}bn{k}/{leaf}" for k in (1, 2, 3) for leaf in ("scale", "bias")]
        + [f"batch_stats/{block}bn{k}/{leaf}" for k in (1, 2, 3) for leaf in ("mean", "var")]
    )
    assert isinstance(new["params"]["layer1"]["block0"]["conv1"]["kernel"], jax.Array)
    assert isinstance(new["params"]["layer4"]["block1"]["conv1"]["kernel"], jax.ShapeDtypeStruct)
    text = str(report)
    assert "85 loaded" in text and "15 missing (params/layer4/block1/" in text
    assert "17 unexpected (layer1.1." in text and "20 ignored" in text


def test_shape_mismatch_names_key_path_and_shapes():
    state = randomise(TorchResNet(width=16)).state_dict()
    model = resnet.ResNet(stage_sizes=STAGES, width=WIDTH, norm="frozen")
    variables = zeros_like_init(model, image())
    with pytest.raises(ValueError) as err:
        weights.import_backbone({c: {"trunk": v} for c, v in variables.items()}, state, "resnet50")
    message = str(err.value)
    assert "'conv1.weight'" in message and "params/trunk/conv1/kernel" in message
    assert "(16, 3, 7, 7)" in message and "(7, 7, 3, 16)" in message and "(7, 7, 3, 8)" in message


# ---------------------------------------------------------------------------------------- VGG-16


def test_vgg16_matches_torch_in_every_format(tmp_path):
    torch_model = randomise(torch_vgg16())
    paths = export(torch_model.state_dict(), tmp_path)
    x = image(35, seed=2)
    with torch.no_grad():
        expected = torch_vgg16_features(torch_model, torch_input(x))
    model = deeplab.DeepLab(backbone="vgg16", width=WIDTH, fc_width=16, num_classes=3)
    variables = zeros_like_init(model, x)
    trunk_features = jax.jit(lambda v, x: model.apply(v, x, method=lambda m, x: m.trunk(x)))
    for path in paths:
        new, report = weights.import_backbone(variables, path, "vgg16")
        diffs = max_diff(trunk_features(new, x), expected)
        assert max(diffs.values()) < ATOL, (path.suffix, diffs)
        assert float(np.abs(nchw_to_nhwc(expected["conv5_3"])).mean()) > 0.1
        assert sorted(report.missing) == [
            f"params/trunk/{n}/{leaf}" for n in ("fc6", "fc7") for leaf in ("bias", "kernel")
        ]
        assert sorted(report.unexpected) == [
            f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("bias", "weight")
        ]
        assert len(report.loaded) == 26 and report.ignored == []


# ---------------------------------------------------------------------------------------- VGG-19


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_vgg19_matches_torch_in_every_format(pooling, tmp_path):
    """All 16 post-ReLU activations of the linen VGG19 with imported weights equal torch's, for max and average
    pooling; torchvision's classifier is unexpected; a VGG19 stopped at conv4_4 (the perceptual loss) takes
    conv1_1..conv4_4 and leaves conv5_* unexpected."""
    torch_model = randomise(torch_plain_vgg((2, 2, 4, 4, 4), pooling=pooling), seed=3)
    paths = export(torch_model.state_dict(), tmp_path)
    x = image(36, seed=3)
    with torch.no_grad():
        expected = torch_plain_vgg_activations(torch_model, torch_input(x))
    assert len(expected) == 16 and expected["conv5_4"].shape == (2, 8 * WIDTH, 2, 2)
    model = vgg.VGG19(width=WIDTH, pooling=pooling)
    variables = zeros_like_init(model, x)
    apply = jax.jit(model.apply)
    for path in paths:
        new, report = weights.import_backbone(variables, path, "vgg19", prefix=())
        diffs = max_diff(apply(new, x), expected)
        assert max(diffs.values()) < ATOL, (path.suffix, diffs)
        assert float(np.abs(nchw_to_nhwc(expected["conv5_4"])).mean()) > 0.05  # a non-degenerate comparison
        assert report.layout == "torchvision" and report.missing == [] and len(report.loaded) == 32
        assert sorted(report.unexpected) == [
            f"classifier.{i}.{p}" for i in (0, 3) for p in ("bias", "weight")
        ]
        assert "imported vgg19 (torchvision layout)" in str(report)

    short = vgg.VGG19(width=WIDTH, pooling=pooling, last_layer="conv4_4")
    new, report = weights.import_backbone(zeros_like_init(short, x), paths[0], "vgg19", prefix=())
    features = jax.jit(short.apply)(new, x)
    assert list(features) == list(expected)[:12]
    diffs = max_diff(features, {k: expected[k] for k in features})
    assert max(diffs.values()) < ATOL, diffs
    assert report.missing == [] and len(report.loaded) == 24
    assert sorted(k for k in report.unexpected if k.startswith("features.")) == sorted(
        f"features.{i}.{p}" for i in (28, 30, 32, 34) for p in ("weight", "bias")
    )


def test_vgg19_bn_file_rejected():
    state = {"features.0.weight": np.zeros((8, 3, 3, 3)), "features.1.running_mean": np.zeros(8)}
    model = vgg.VGG19(width=WIDTH)
    with pytest.raises(ValueError, match="vgg19_bn"):
        weights.import_backbone(zeros_like_init(model, image()), state, "vgg19", prefix=())


# ---------------------------------------------------------------------------------------- widened first conv


def test_vgg16_file_into_a_six_channel_encoder():
    """SHM's M-Net encoder: RGB + 3 trimap channels. The file's conv1_1 fills input channels 0..2, channels
    3..5 are zero, so on an input whose extra channels are zero the encoder computes the torch VGG-16's
    activations (and the 3-channel linen network's)."""
    torch_model = randomise(torch_plain_vgg((2, 2, 3, 3, 3)), seed=4)
    state = torch_model.state_dict()
    x = image(32, seed=4)
    with torch.no_grad():
        expected = torch_plain_vgg_activations(torch_model, torch_input(x))
    x6 = np.concatenate([x, np.zeros_like(x)], axis=-1)
    model = vgg.VGG16(width=WIDTH)
    ones = jax.tree.map(jnp.ones_like, zeros_like_init(model, x6))  # ones: untouched leaves would show
    wide, report = weights.import_backbone(ones, state, "vgg16", prefix=())
    kernel = np.asarray(wide["params"]["conv1_1"]["kernel"])
    assert kernel.shape == (3, 3, 6, WIDTH)
    np.testing.assert_array_equal(kernel[:, :, :3], state["features.0.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(kernel[:, :, 3:], 0)
    assert report.widened == ["params/conv1_1/kernel: 3 -> 6 input channels"]
    assert report.missing == [] and len(report.loaded) == 26
    assert "widened params/conv1_1/kernel: 3 -> 6 input channels (extra channels zero)" in str(report)

    apply = jax.jit(model.apply)
    features = apply(wide, x6)
    diffs = max_diff(features, expected)
    assert max(diffs.values()) < ATOL, diffs
    narrow, narrow_report = weights.import_backbone(zeros_like_init(model, x), state, "vgg16", prefix=())
    assert narrow_report.widened == [] and "widened" not in str(narrow_report)
    narrow_features = apply(narrow, x)
    for name in expected:
        np.testing.assert_allclose(features[name], narrow_features[name], atol=ATOL)


@pytest.mark.parametrize(
    "file_cin, model_cin, other",
    [(3, 2, {}), (4, 6, {}), (3, 6, {"features.2.weight": (WIDTH, 2 * WIDTH, 3, 3)})],
    ids=["fewer-channels", "file-not-rgb", "another-layer"],
)
def test_other_shape_mismatches_stay_errors(file_cin, model_cin, other):
    """Only a 3-channel file kernel going into a first conv with MORE input channels is widened; a narrower
    model, a file that is not 3-channel, or a mismatch elsewhere is an error naming the key."""
    rng = np.random.default_rng(0)
    state = {"features.0.weight": rng.normal(size=(WIDTH, file_cin, 3, 3)).astype(np.float32)}
    state.update({k: rng.normal(size=shape).astype(np.float32) for k, shape in other.items()})
    model = vgg.VGG16(width=WIDTH, last_layer="conv1_2")
    variables = zeros_like_init(model, np.zeros((1, 8, 8, model_cin), np.float32))
    key = list(other)[0] if other else "features.0.weight"
    with pytest.raises(ValueError, match=f"shape mismatch importing vgg16.*'{key}'"):
        weights.import_backbone(variables, state, "vgg16", prefix=())


def test_resnet_conv1_widened_too(resnet_files):
    model = resnet.ResNet(stage_sizes=STAGES, width=WIDTH, norm="frozen")
    variables = zeros_like_init(model, np.zeros((1, 32, 32, 4), np.float32))
    new, report = weights.import_backbone(variables, resnet_files[1][0], "resnet50", prefix=())
    assert report.widened == ["params/conv1/kernel: 3 -> 4 input channels"]
    kernel = np.asarray(new["params"]["conv1"]["kernel"])
    expected = resnet_files[0].conv1.weight.detach().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(kernel[:, :, :3], expected)
    np.testing.assert_array_equal(kernel[:, :, 3], 0)


# ---------------------------------------------------------------------------------------- several entries


def _config(backbone_weights):
    return ml_collections.ConfigDict({"init": {"backbone_weights": backbone_weights}})


def test_several_backbone_entries_land_in_their_sub_networks(resnet_files, tmp_path, capsys):
    """(prefix, arch, file) entries of init.backbone_weights: a ResNet file into net/tnet/trunk (params and
    batch_stats) and a VGG-16 file into a 6-channel net/mnet/encoder (widened), one variables tree; the
    sub-networks' other leaves and the rest of the tree keep their values."""
    x = image(32)
    trunk_vars = zeros_like_init(resnet.ResNet(stage_sizes=STAGES, width=WIDTH, norm="frozen"), x)
    encoder = vgg.VGG16(width=WIDTH)
    encoder_vars = zeros_like_init(encoder, np.zeros((1, 32, 32, 6), np.float32))
    variables = {
        "params": {
            "net": {
                "tnet": {"trunk": trunk_vars["params"], "head": {"kernel": jnp.ones((3, 3))}},
                "mnet": {"encoder": encoder_vars["params"], "decoder": {"kernel": jnp.ones((2, 2))}},
            }
        },
        "batch_stats": {"net": {"tnet": {"trunk": trunk_vars["batch_stats"]}}},
    }
    torch_vgg = randomise(torch_plain_vgg((2, 2, 3, 3, 3)), seed=5)
    vgg_path = export(torch_vgg.state_dict(), tmp_path)[1]  # .npz
    resnet_path = resnet_files[1][0]
    config = _config(
        (("net/tnet/trunk", "resnet50", str(resnet_path)), ["net/mnet/encoder", "vgg16", str(vgg_path)])
    )
    new = common.pretrained_variables(config, variables, "resnet101", ("ignored", "default"))

    torch_resnet = resnet_files[0]
    tnet, mnet = new["params"]["net"]["tnet"], new["params"]["net"]["mnet"]
    np.testing.assert_array_equal(
        tnet["trunk"]["layer3"]["block0"]["conv2"]["kernel"],
        torch_resnet.layer3[0].conv2.weight.detach().numpy().transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        new["batch_stats"]["net"]["tnet"]["trunk"]["bn1"]["var"], torch_resnet.bn1.running_var.numpy()
    )
    np.testing.assert_array_equal(mnet["encoder"]["conv4_2"]["bias"], torch_vgg.features[19].bias.detach())
    kernel = np.asarray(mnet["encoder"]["conv1_1"]["kernel"])
    np.testing.assert_array_equal(
        kernel[:, :, :3], torch_vgg.features[0].weight.detach().numpy().transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(kernel[:, :, 3:], 0)
    np.testing.assert_array_equal(tnet["head"]["kernel"], 1)
    np.testing.assert_array_equal(mnet["decoder"]["kernel"], 1)
    printed = capsys.readouterr().out
    assert printed.count("imported ") == 2
    assert (
        "imported resnet50 (torchvision layout)" in printed
        and "imported vgg16 (torchvision layout)" in printed
    )
    assert "widened params/net/mnet/encoder/conv1_1/kernel: 3 -> 6" in printed


def test_single_backbone_path_keeps_the_task_default(resnet_files):
    model = resnet.ResNet(stage_sizes=STAGES, width=WIDTH, norm="frozen")
    variables = {c: {"net": {"trunk": v}} for c, v in zeros_like_init(model, image()).items()}
    path = str(resnet_files[1][1])  # .npz
    new = common.pretrained_variables(_config(path), variables, "resnet50", ("net", "trunk"))
    expected, _ = weights.import_backbone(variables, path, "resnet50", ("net", "trunk"))
    jax.tree.map(np.testing.assert_array_equal, new, expected)
    assert common.pretrained_variables(_config(""), variables, "resnet50", ("net", "trunk")) is None
    with pytest.raises(ValueError, match=r"init\.backbone_weights=.*no default backbone"):
        common.pretrained_variables(_config(path), variables)


@pytest.mark.parametrize(
    "entry, error, pattern",
    [
        (
            ("net/trunk", "resnet50"),
            ValueError,
            r"entry \('net/trunk', 'resnet50'\) is not a \(prefix, arch, file\)",
        ),
        ("net/trunk,resnet50,w.npz", ValueError, r"entry 'net/trunk,resnet50,w.npz' is not a \(prefix"),
        (
            ("net/trunk", "resnet18", "{file}"),
            ValueError,
            r"entry \('net/trunk', 'resnet18', .*unknown arch 'resnet18'",
        ),
        (
            ("net/trunk", "resnet50", "{missing}"),
            FileNotFoundError,
            r"entry \('net/trunk', 'resnet50', .*no file",
        ),
    ],
    ids=["pair", "string", "unknown-arch", "missing-file"],
)
def test_bad_backbone_entries_name_the_setting_and_entry(resnet_files, tmp_path, entry, error, pattern):
    files = {"file": str(resnet_files[1][0]), "missing": str(tmp_path / "nowhere.npz")}
    if isinstance(entry, tuple):
        entry = tuple(e.format(**files) for e in entry)
    good = ("net/trunk", "resnet50", files["file"])
    variables = {"params": {"net": {"trunk": {}}}}
    with pytest.raises(error, match=r"init\.backbone_weights " + pattern):
        common.pretrained_variables(_config((good, entry)), variables)


# ---------------------------------------------------------------------------------------- errors


def test_unknown_arch_lists_valid():
    with pytest.raises(
        ValueError, match=r"unknown arch 'resnet18'.*resnet50.*resnet101.*resnet152.*vgg16.*vgg19"
    ):
        weights.import_backbone({"params": {}}, {}, "resnet18")


def test_wrong_arch_or_prefix_imports_nothing(resnet_files):
    model = resnet.ResNet(stage_sizes=STAGES, width=WIDTH, norm="frozen")
    variables = zeros_like_init(model, image())
    with pytest.raises(ValueError, match="nothing imported"):
        weights.import_backbone(variables, resnet_files[0].state_dict(), "vgg16", prefix=())
    with pytest.raises(ValueError, match="no trunk at params/trunk"):
        weights.import_backbone(variables, resnet_files[0].state_dict(), "resnet50")


def test_pth_without_torch_says_what_to_do(resnet_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"jhuman\[torch\].*\.safetensors"):
        weights.load_state_dict(resnet_files[1][2])
    assert "conv1.weight" in weights.load_state_dict(resnet_files[1][0])  # other formats still work


def test_unsupported_suffix(tmp_path):
    with pytest.raises(ValueError, match="suffix must be one of"):
        weights.load_state_dict(tmp_path / "w.bin")
    with pytest.raises(ValueError, match="are Keras files"):
        weights.load_state_dict(tmp_path / "w.h5")
