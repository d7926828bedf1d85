"""benchmarks/peers.py compares jhuman with the SAME networks in PyTorch: prove they are the same.

For the tiny variant of every case: jhuman's parameters (randomised, batch-norm statistics included, so that
every mapping matters) copied into benchmarks/torch_nets.py's net give the same parameter count, the same
outputs, the same loss and the same gradients; and one jhuman train step (the library's, SGD momentum,
weight decay, 10x classifier) moves the parameters as one torch.optim.SGD step of the peer does.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch peers need torch (pip install -e '.[torch]')")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import peers  # noqa: E402
from benchmarks import torch_nets as tn  # noqa: E402
from jhuman import tasks  # noqa: E402
from jhuman.ops.personlab import losses as personlab_losses  # noqa: E402
from jhuman.ops.personlab import targets as personlab_targets  # noqa: E402
from jhuman.tasks import parsing  # noqa: E402


def randomised(variables, seed=0):
    """Every leaf redrawn: He-scaled kernels (heads included, so outputs are O(1)), random biases, batch-norm
    scales / offsets / running statistics away from the identity."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        shape = np.shape(leaf)
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            return rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return rng.normal(0, 0.1, shape).astype(np.float32)  # bias, mean

    return jax.tree_util.tree_map_with_path(draw, jax.device_get(variables))


def close(actual, expected, rtol):
    """max |a - e| <= rtol * max(1, max |e|)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    err = np.max(np.abs(actual - expected))
    assert err <= rtol * max(1.0, np.max(np.abs(expected))), (err, np.max(np.abs(expected)))


def build(case):
    config = peers.case_config(case, "tiny", dtype="float32")
    task = tasks.build(config)
    variables = randomised(task.init(jax.random.key(0)))
    if config.task == "personlab":
        # Offsets of O(R) pixels as a trained net's, not He-scaled hundreds: the recurrent refinement samples
        # the offset field where the offsets land, which multiplies float32 rounding by the field's slope
        # (tens of pixels per pixel for a random field of hundreds: 0.3 px apart after two steps).
        variables["params"]["net"]["heads"] = jax.tree.map(
            lambda x: 0.05 * x, variables["params"]["net"]["heads"]
        )
    net = tn.load_jhuman_variables(peers.torch_net(config), variables).eval()
    batch = peers.host_batch(config, 2)
    return config, task, variables, net, batch


def jhuman_loss_fn(config, task, batch):
    """loss(params) on the deterministic (eval-mode) outputs, as the task's training loss computes it."""
    if config.task == "parsing":
        stride = int(config.model.output_stride)

        def loss(params, variables):
            out, _ = task.apply({**variables, "params": params}, batch["image"])
            labels = jnp.asarray(batch["label"])[:, ::stride, ::stride]
            return parsing.parsing_losses(out, labels, config.ssl, 0)[0]

        return loss
    keys = ("keypoints", "instance_ids", "segmentation", "ignore")
    targets = personlab_targets.encode_batch(*(batch[k] for k in keys), radius=float(config.personlab.radius))

    def loss(params, variables):
        out, _ = task.apply({**variables, "params": params}, batch["image"])
        radius, weights = float(config.personlab.radius), dict(config.personlab.loss_weights)
        return personlab_losses.personlab_losses(out, targets, radius, weights)[0]

    return loss


@pytest.mark.parametrize("case", list(peers.CASES))
def test_same_network(case):
    config, task, variables, net, batch = build(case)
    jhuman_count = sum(int(np.size(p)) for p in jax.tree.leaves(variables["params"]))
    assert tn.num_parameters(net) == jhuman_count

    # Forward: every output of the model, eval mode.
    images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2)
    out_j, _ = jax.jit(task.apply)(variables, batch["image"])  # compiled: op-by-op dispatch took minutes
    out_t = net(images)
    for key, value in out_j.items():
        torch_value = out_t[key].detach().numpy()
        if config.task == "parsing" and key != "scale_logits":
            torch_value = np.moveaxis(torch_value, 1, -1)  # NCHW -> NHWC
        elif key == "scale_logits":
            torch_value = np.moveaxis(torch_value, 2, -1)
        close(torch_value, value, 1e-4)

    # Loss and gradients of every parameter.
    loss_fn = jhuman_loss_fn(config, task, batch)
    loss_j, grads_j = jax.jit(jax.value_and_grad(loss_fn))(variables["params"], variables)
    targets = peers.torch_targets(config, batch)
    loss_t = peers.torch_loss_fn(config)(net(images), targets)
    loss_t.backward()
    np.testing.assert_allclose(loss_t.item(), float(loss_j), rtol=1e-5)
    expected = tn.jhuman_state_dict({"params": grads_j})
    for name, param in net.named_parameters():
        g_t, g_j = param.grad.numpy().astype(np.float64), expected[name].numpy().astype(np.float64)
        assert np.linalg.norm(g_t - g_j) <= 1e-3 * np.linalg.norm(g_j) + 1e-7, name


def test_train_step_same_update():
    """One step of the library's train step == one torch.optim.SGD step of the peer (deeplab_resnet101: no
    dropout, frozen batch norm; learning rate raised so the update dominates float32 rounding)."""
    from jhuman import sharding, train

    config = peers.case_config("deeplab_resnet101", "tiny", dtype="float32", batch=2)
    with config.unlocked():
        config.optim.learning_rate = 0.05
    setup = train.build(config)
    state = jax.jit(setup.init_state)(jax.random.key(0))
    state["params"] = jax.tree.map(jnp.asarray, randomised(state["params"]))
    state["model_state"] = jax.tree.map(jnp.asarray, randomised(state["model_state"], seed=1))
    before = jax.device_get(train.eval_variables(state))
    batch = peers.host_batch(config, 2)
    new_state, metrics = train.make_train_step(setup)(state, sharding.to_global(batch, setup.mesh))
    after = tn.jhuman_state_dict(jax.device_get(train.eval_variables(new_state)))
    assert bool(metrics["finite"])

    net = tn.load_jhuman_variables(peers.torch_net(config), before).train()
    optimizer = peers.torch_optimizer(config, net)
    images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2)
    loss = peers.torch_loss_fn(config)(net(images), peers.torch_targets(config, batch))
    np.testing.assert_allclose(loss.item(), float(metrics["cross_entropy"]), rtol=1e-5)
    loss.backward()
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    optimizer.step()
    for name, value in net.state_dict().items():
        delta_t = (value - start[name]).numpy().astype(np.float64)
        delta_j = (after[name] - start[name]).numpy().astype(np.float64)
        assert np.linalg.norm(delta_t - delta_j) <= 1e-3 * np.linalg.norm(delta_j) + 1e-7, name


def test_optimizer_groups():
    """Parsing: classifier at 10x, weight decay on conv kernels only; PersonLab: Adam."""
    config = peers.case_config("attention_vgg16", "tiny")
    net = peers.torch_net(config)
    optimizer = peers.torch_optimizer(config, net)
    names = {id(p): n for n, p in net.named_parameters()}
    base = float(config.optim.learning_rate)
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            head = ".classifier." in name or ".attention." in name
            assert group["lr"] == pytest.approx(base * (10 if head else 1)), name
            assert group["weight_decay"] == (float(config.optim.weight_decay) if p.ndim > 1 else 0.0), name
    config = peers.case_config("personlab_resnet101", "tiny")
    assert isinstance(peers.torch_optimizer(config, peers.torch_net(config)), torch.optim.Adam)


# --- Semantic Human Matting ---------------------------------------------------------------------------------


def nchw(array):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(array), -1, 1)))


def nhwc(tensor):
    return np.moveaxis(tensor.detach().numpy(), 1, -1)


@pytest.mark.parametrize("case", ["tnet_pspnet50_400", "mnet_320"])  # the two 800/400 T-Nets are one tiny net
def test_same_matting_network(case):
    """T-Net (PSPNet) and M-Net twins: parameter count, eval outputs, the stage's loss and every gradient; for
    M-Net (no dropout) also the training-mode output (batch statistics) and the updated running statistics."""
    net_j, net_t = peers.matting_networks(case, "tiny")
    batch = peers.matting_batch(case, peers.matting_crop(case, "tiny"), 2)
    variables = randomised(jax.eval_shape(net_j.init, jax.random.key(0), batch["x"]))
    net_t = tn.load_jhuman_variables(net_t, variables).eval()
    assert tn.num_parameters(net_t) == sum(int(np.size(p)) for p in jax.tree.leaves(variables["params"]))

    loss_j = peers.jhuman_matting_loss(case)

    def loss(params):
        out = net_j.apply({**variables, "params": params}, batch["x"])
        return loss_j(out, batch), out

    @jax.jit
    def run(v):  # one compilation: eval outputs, loss, gradients; M-Net's training-mode outputs
        train = None
        if case.startswith("mnet"):
            train = net_j.apply(v, batch["x"], train=True, mutable=["batch_stats"])
        return jax.value_and_grad(loss, has_aux=True)(v["params"]), train

    ((value_j, out_j), grads_j), train_out = run(variables)
    x_t = nchw(batch["x"])
    out_t = net_t(x_t)
    close(nhwc(out_t), out_j, 1e-4)
    value_t = peers.torch_matting_loss(case)(out_t, peers.torch_matting_targets(batch))
    value_t.backward()
    np.testing.assert_allclose(value_t.item(), float(value_j), rtol=1e-5)
    expected = tn.jhuman_state_dict({"params": grads_j})
    for name, param in net_t.named_parameters():
        g_t, g_j = param.grad.numpy().astype(np.float64), expected[name].numpy().astype(np.float64)
        assert np.linalg.norm(g_t - g_j) <= 1e-3 * np.linalg.norm(g_j) + 1e-7, name

    if case.startswith("mnet"):
        train_j, state_j = train_out
        net_t.train()
        close(nhwc(net_t(x_t)), train_j, 1e-4)
        # torch keeps the unbiased batch variance in its running average, linen the biased one: n / (n - 1)
        # apart, n = B H W of the layer (bn{b}_{k} of the encoder at 1 / 2^(b-1) of the crop, bn{i} of the
        # decoder at 1 / 2^(i-1))
        stats = tn.jhuman_state_dict({"batch_stats": state_j["batch_stats"]})
        before = tn.jhuman_state_dict({"batch_stats": variables["batch_stats"]})
        crop = batch["x"].shape[1]
        for name, value in net_t.state_dict().items():
            if name.endswith("running_mean"):
                close(value.numpy(), stats[name].numpy(), 1e-4)
            elif name.endswith("running_var"):
                level = int(name.split(".")[-2][2])  # 'encoder.bn3_1' / 'decoder.bn3' -> 3
                n = 2 * (crop // 2 ** (level - 1)) ** 2
                old = before[name].numpy()
                unbiased = (stats[name].numpy() - 0.9 * old) / 0.1 * n / (n - 1)
                close(value.numpy(), 0.9 * old + 0.1 * unbiased, 1e-4)


# --- pose-guided synthesis ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(peers.POSEWARP_CASES))
def test_same_posewarp_network(case):
    """Modular generator, U-Net baseline and discriminator twins (tiny): parameter count, every output, the
    case's loss (generators: the perceptual loss through the VGG-19 twin; D: BCE on real and generated
    images) and every gradient, the twins fed the pose inputs jhuman computes inside."""
    net_j, net_t = peers.posewarp_networks(case, "tiny")
    side = peers.posewarp_size(case, "tiny")
    batch = peers.posewarp_train_batch(case, side, 2)
    kind = peers.POSEWARP_CASES[case][0]
    first = batch["target"] if kind == "discriminator" else batch["source"]
    poses = [batch[k] for k in peers.GENERATOR_KEYS[1:]]
    variables = randomised(jax.eval_shape(net_j.init, jax.random.key(0), first, *poses))
    net_t = tn.load_jhuman_variables(net_t, variables).eval()
    assert tn.num_parameters(net_t) == sum(int(np.size(p)) for p in jax.tree.leaves(variables["params"]))
    vgg, stds = peers.posewarp_vgg("tiny")
    loss_j = peers.jhuman_posewarp_loss(case, stds)

    @jax.jit
    def run(v):
        out = net_j.apply(v, first, *poses)
        return out, jax.value_and_grad(lambda p: loss_j(net_j, {"params": p}, vgg, batch))(v["params"])

    out_j, (value_j, grads_j) = run(variables)
    inputs = tuple(torch.from_numpy(a) for a in peers.posewarp_torch_inputs(case, batch))
    if kind == "discriminator":
        close(net_t(*inputs).detach().numpy(), out_j, 1e-4)
        fake = nchw(batch["fake"])
        outputs, targets, vgg_t = peers.real_and_fake(net_t)((inputs[0], fake, *inputs[1:])), None, None
    else:
        out_t = net_t(*inputs)
        for key, value in out_j.items():
            if key == "prior":  # an input of the twin, not an output
                continue
            got = out_t[key].detach().numpy()
            got = np.moveaxis(got, (1, 2), (-2, -1)) if key == "warped" else np.moveaxis(got, 1, -1)
            close(got, value, 1e-4)
        outputs, targets = out_t, nchw(batch["target"])
        vgg_t = tn.load_jhuman_variables(tn.VGG19Features(peers.perceptual_width(vgg)), vgg)
    value_t = peers.torch_posewarp_loss(case, vgg_t, stds)(outputs, targets)
    value_t.backward()
    np.testing.assert_allclose(value_t.item(), float(value_j), rtol=1e-5)
    expected = tn.jhuman_state_dict({"params": grads_j})
    for name, param in net_t.named_parameters():
        g_t, g_j = param.grad.numpy().astype(np.float64), expected[name].numpy().astype(np.float64)
        assert np.linalg.norm(g_t - g_j) <= 1e-3 * np.linalg.norm(g_j) + 1e-7, name
