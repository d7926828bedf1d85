"""jhuman against the same networks in PyTorch (eager and torch.compile): train step and inference of each
task's main network at the paper's input size, in one run, alternating, with FLOPs and achieved FLOP/s.

  python benchmarks/peers.py                                   # CPU: float32, batch 2 train / 1 inference
  python benchmarks/peers.py --size tiny --steps 2             # smoke run: tiny variants, 64-96 px
  python benchmarks/peers.py --cases deeplab_resnet101 --steps 3
  python benchmarks/peers.py --steps 20                        # accelerator: the configs' bfloat16 and
                                                               # batches (10 / 10 / 16), inference = train batch
  python benchmarks/peers.py --dtype float32 --batch 4 --infer_batch 4 --json peers_f32.json

Cases (`--cases`, comma list), each the full config's network at the full config's crop:
  deeplab_resnet101    configs/parsing.py:model=deeplab_resnet,size=full   DeepLab-v2 ResNet-101 ASPP, 321x321
  attention_vgg16      configs/parsing.py:model=attention,size=full        Attention-to-Scale over VGG-16
                                                                           LargeFOV, scales 1/0.75/0.5, 321x321
  personlab_resnet101  configs/personlab.py:size=full                      PersonLab ResNet-101, os 16, two
                                                                           refinement steps, 401x401
  tnet_pspnet50_400    Semantic Human Matting's T-Net, PSPNet-50 (os 8, bins 1/2/3/6), 400x400 (pretraining)
  tnet_pspnet50_800    the same at 800x800 (the end-to-end stage's T-Net crops)
  mnet_320             M-Net (VGG-16 encoder with batch norm, argmax pooling, 5x5 unpooling decoder), 320x320
  posewarp_modular_256 the pose-guided modular generator (mask / foreground / background U-Nets, the limb
                       warp, the composite), 256x256, train step with the VGG-19 perceptual loss
  posewarp_unet_256    the single-U-Net baseline, the same way
  posewarp_discriminator_256  the GAN stage's discriminator on real and generated images (BCE), 256x256
`--size tiny` keeps each full config (frozen batch norm, optimizer, heads) but shrinks the network (width 8,
one block per ResNet stage, ASPP rates 1-4, attention width 32) and the crop (65 / 65 / 72 px; matting: width
8, one block per stage, 48 / 64 / 32 px; pose-guided: width 8 for the networks and the loss's VGG-19, 32 px).
The matting cases are timed as networks (MATTING_CASES): jhuman's step is the network in training mode
(batch statistics, dropout) + the stage's loss from jhuman.ops.matting (T-Net: L_t; M-Net: L_p on alpha_r with
F and B) + optax Adam at 1e-5, jitted with the state donated, not the library's trainer on a matting config;
the torch step is the twin (torch_nets.PSPNet / MNet, same loss, torch.optim.Adam). Inputs are prepared on the
host (normalised RGB; M-Net: + a one-hot trimap), bfloat16 on an accelerator, batch 10 (the paper's
end-to-end batch) there.
The pose-guided cases are timed as networks too (POSEWARP_CASES): jhuman's step is the generator + the
perceptual loss (jhuman.models.perceptual: VGG-19 with average pooling to conv4_4, random weights, unit
statistics; the target's features without gradient) + optax Adam at 1e-4, or the discriminator on B real and B
generated images + BCE on logits + Adam; the torch step is the twin (torch_nets.ModularGenerator /
UNetBaseline / PoseDiscriminator, VGG19Features, the same loss, torch.optim.Adam). jhuman's networks compute
the pose heatmaps, limb prior and per-limb transforms inside from the joints (jhuman.ops.warp); the twins take
them precomputed, as the released Keras model took them from its data generator (which favours torch). Batch
4 (the paper's) on an accelerator, bfloat16 there.

What is compared, per case, mode 'train' and 'infer':
- jhuman: the library's own jitted train step (`jhuman.train.build` + `make_train_step`: loss, gradients, the
  config's optimizer, finite guard; state donated), compiled ahead of time once (`.lower().compile()`, whose
  `cost_analysis()['flops']` gives the FLOPs per step), called on one device-resident batch; inference is the
  task's `apply` (the network, eval mode) jitted. Parsing: SGD momentum 0.9, weight decay 5e-4 on kernels,
  classifier/attention at 10x lr; PersonLab: Adam; the dense PersonLab targets are encoded inside jhuman's
  step (its design), from the compact annotation.
- torch eager and torch.compile (default mode; its train step compiles model + loss, and the optimizer step
  separately): benchmarks/torch_nets.py, the same layers, initialised with jhuman's initial parameters (so both
  compute on the same numbers), the same loss (parsing: cross-entropy at the logit grid against
  label[::8, ::8], per scale for Attention; PersonLab: the same five terms on the same outputs, but from
  PRECOMPUTED dense targets, the usual PyTorch data-loader way: the torch step does not pay for target
  encoding, which favours torch), the same optimizer (torch.optim.SGD / Adam with param groups for the 10x
  heads and the kernels-only weight decay; constant learning rate: the schedule costs nothing either way).
  Inference: `model.eval()` under `torch.inference_mode()`. bfloat16 = torch.autocast (params float32), as
  jhuman's compute dtype. On CUDA, TF32 is allowed for torch's float32 convs and matmuls, as XLA does by
  default, and torch uses channels_last (`--memory_format`).
- Timing: compile and warm-up excluded; then for each of `--steps` rounds one call each of jhuman, torch
  eager, torch compile (alternating, so load on the machine hits all three alike), each call blocking until
  done (jax.block_until_ready / torch.cuda.synchronize); the median per contender. Ratio = jhuman speed /
  torch speed = torch time / jhuman time (> 1: jhuman faster). FLOP/s = jhuman's XLA FLOPs / time for every
  column (same network, same work). `torch_gflop` (JSON only) is PyTorch's FlopCounterMode count of one
  eager call, a cross-check: it counts convs and matmuls only, every kernel tap; XLA's cost analysis also
  counts elementwise work, gathers and (PersonLab) jhuman's on-device target encoding, but leaves out the taps
  of a conv that fall into its zero padding, which dilated layers on small maps have many of (ASPP rate 24 on
  a 41x41 map), so XLA's FLOPs are below torch's for DeepLab and above them where elementwise work dominates.
  The JSON (default benchmarks/peers.json) also keeps every call's wall and process-CPU milliseconds and the
  compile times.
- One accelerator holds both frameworks: jax gets XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 of its memory (unless
  set), torch's caching allocator the rest.
- CPU: torch runs with its own thread count (`--torch_threads` to set one), XLA with its own pool. On a loaded
  machine PyTorch's OpenMP threads wait for each other at every barrier and its wall times balloon (the
  process-CPU times show it); measure on a quiet machine.
- jhuman.tasks.common.apply(train=True) fails on nets without batch-norm state (VGG-16: the attention case);
  `workaround_stateless_apply` corrects its result here until jhuman is fixed (each JSON row says whether it
  was needed).
Equivalence of the networks: tests/test_peers.py (tiny variants, jhuman's parameters copied into torch,
outputs, losses and gradients equal to float tolerance, parameter counts equal, one SGD step alike).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")  # leave an accelerator's rest to torch
# Run as a script, Python puts benchmarks/ first on sys.path, where ssl.py would shadow the standard library's
# ssl: take it off and import the helpers as `benchmarks.common` from the repository root.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import posewarp_pairs, report  # noqa: E402
from jhuman import config as config_lib  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(_HERE), "configs")
CASES = {  # name: (config file, arg, tiny overrides)
    "deeplab_resnet101": (
        "parsing.py",
        "model=deeplab_resnet,size=full,data=synthetic",
        {
            "model.width": 8,
            "model.stage_sizes": (1, 1, 1, 1),
            "model.rates": (1, 2, 3, 4),
            "data.crop_size": 65,
        },
    ),
    "attention_vgg16": (
        "parsing.py",
        "model=attention,size=full,data=synthetic",
        {"model.width": 8, "model.attention_width": 32, "data.crop_size": 65},
    ),
    "personlab_resnet101": (
        "personlab.py",
        "size=full,data=synthetic",
        {
            "model.width": 8,
            "model.stage_sizes": (1, 1, 1, 1),
            "data.crop_size": 72,
            "data.max_persons": 4,
            "personlab.radius": 10.0,
        },
    ),
}
# Semantic Human Matting's two networks, timed as NETWORKS: the jitted step is the network (training-mode batch
# norm and dropout) + the stage's loss (jhuman.ops.matting) + Adam (lr 1e-5, the end-to-end stage's), not the
# library's trainer with the matting task's config. name: (network, crop, train batch on an accelerator,
# tiny crop). Inputs are prepared on the host (normalised RGB; M-Net: + a one-hot ground-truth trimap, its
# pretraining input); the T-Net loss is L_t, the M-Net loss L_p on alpha_r (with F and B).
MATTING_CASES = {
    "tnet_pspnet50_400": ("tnet", 400, 10, 48),  # T-Net pretraining crops
    "tnet_pspnet50_800": ("tnet", 800, 10, 64),  # the end-to-end stage's T-Net crops
    "mnet_320": ("mnet", 320, 10, 32),  # M-Net crops (pretraining and end to end)
}
MATTING_TINY = {"width": 8, "stage_sizes": (1, 1, 1, 1)}
MATTING_LR = 1e-5
# Pose-guided synthesis (Balakrishnan et al. 2018), timed as NETWORKS as the matting cases: name: (network,
# image size, train batch on an accelerator (the paper's 4), tiny size). The generators' step is the network +
# the perceptual loss (VGG-19 with average pooling to conv4_4, the target's features without gradient) + Adam
# (1e-4, stage 1); the discriminator's step is D on B real and B generated images, BCE on logits, Adam (stage
# 2's D update). Both poses (14 joints of a standing person, arms moved) are inputs: jhuman's networks compute
# the heatmaps, limb prior and per-limb transforms inside (jhuman.ops.warp); the torch twins take them
# precomputed (the released Keras model's inputs), which favours torch.
POSEWARP_CASES = {
    "posewarp_modular_256": ("modular", 256, 4, 32),
    "posewarp_unet_256": ("unet", 256, 4, 32),
    "posewarp_discriminator_256": ("discriminator", 256, 4, 32),
}
POSEWARP_TINY_WIDTH = 8  # generators, discriminator and the loss's VGG-19 at tiny size
POSEWARP_LR = 1e-4
ALL_CASES = list(CASES) + list(MATTING_CASES) + list(POSEWARP_CASES)
COLUMNS = [
    "case",
    "mode",
    "crop",
    "batch",
    "dtype",
    "jhuman_ms",
    "eager_ms",
    "compiled_ms",
    "vs_eager",
    "vs_compiled",
    "gflop",
    "jhuman_gflops",
    "eager_gflops",
    "compiled_gflops",
]


def on_accelerator() -> bool:
    return jax.default_backend() != "cpu"


def case_config(name: str, size: str = "full", dtype: str = "", batch: int = 0):
    """The case's full config (size='tiny': with the tiny network overrides), on one device."""
    path, arg, tiny = CASES[name]
    config = config_lib.load_config(f"{os.path.join(CONFIGS, path)}:{arg}")
    with config.unlocked():
        if size == "tiny":
            for key, value in tiny.items():
                section, field = key.split(".")
                config[section][field] = value
        config.mesh.data = 1  # one device against one device
        if dtype:
            config.train.compute_dtype = dtype
        if batch:
            config.train.batch_size = batch
    return config


# --- batches that look like the real ones ---------------------------------------------------------------------

# A standing person's COCO keypoints, (x, y) in units of half the person's height around the body centre.
_POSE = np.array(
    [[0, -0.8], [0.05, -0.85], [-0.05, -0.85], [0.1, -0.82], [-0.1, -0.82], [0.2, -0.6], [-0.2, -0.6],
     [0.25, -0.3], [-0.25, -0.3], [0.28, 0.0], [-0.28, 0.0], [0.12, 0.0], [-0.12, 0.0], [0.13, 0.45],
     [-0.13, 0.45], [0.14, 0.9], [-0.14, 0.9]], np.float32,
)  # fmt: skip


def host_batch(config, batch: int, seed: int = 0) -> dict:
    """numpy batch in the task's training layout: parsing {'image', 'label'}; PersonLab {'image',
    'keypoints' (B, P, 17, 3), 'instance_ids', 'segmentation', 'ignore'} with a few people per image (their
    keypoints, elliptic masks, overlaps -1)."""
    rng = np.random.default_rng(seed)
    crop = int(config.data.crop_size)
    image = rng.uniform(0, 255, (batch, crop, crop, 3)).astype(np.float32)
    if config.task == "parsing":
        return {"image": image, "label": rng.integers(0, 20, (batch, crop, crop)).astype(np.int32)}
    persons = int(config.data.max_persons)
    keypoints = np.zeros((batch, persons, 17, 3), np.float32)
    count = np.zeros((batch, crop, crop), np.int32)
    ids = np.zeros((batch, crop, crop), np.int32)
    rows, cols = np.mgrid[:crop, :crop]
    for b in range(batch):
        for j in range(min(4, persons)):
            half = rng.uniform(0.2, 0.4) * crop
            centre = rng.uniform(0.25 * crop, 0.75 * crop, 2)
            xy = centre + half * _POSE + rng.normal(0, 0.02 * half, (17, 2))
            inside = (xy >= 0).all(-1) & (xy <= crop - 1).all(-1)
            keypoints[b, j, :, :2] = np.where(inside[:, None], xy, 0)
            keypoints[b, j, :, 2] = np.where(inside, 2, 0)
            mask = ((cols - centre[0]) / (0.35 * half)) ** 2 + ((rows - centre[1]) / half) ** 2 <= 1
            count[b] += mask
            ids[b][mask] = j + 1
    ids[count > 1] = -1
    return {
        "image": image,
        "keypoints": keypoints,
        "instance_ids": ids,
        "segmentation": (count > 0).astype(np.uint8),
        "ignore": np.zeros((batch, crop, crop), np.uint8),
    }


# --- jhuman ------------------------------------------------------------------------------------------------------


def workaround_stateless_apply() -> bool:
    """jhuman.tasks.common.apply(train=True) on a net without model state (VGG-16: deeplab_vgg, attention)
    asks flax for mutable=[], gets (outputs, {}) back and wraps it again as ((outputs, {}), {}), so the task's
    loss fails (TypeError: tuple indices must be integers). Reported; until it is fixed in jhuman, this unwraps
    the extra level (nothing changes for nets with batch-norm state). Returns True when the bug was found."""
    import flax.linen as nn
    import jax.numpy as jnp

    from jhuman.tasks import common

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(1)(x)

    x = jnp.zeros((1, 1))
    variables = Probe().init(jax.random.key(0), x)
    if not isinstance(common.apply(Probe(), variables, x, True, jax.random.key(0))[0], tuple):
        return False
    original = common.apply

    def apply(net, variables, images, train=False, rng=None):
        result = original(net, variables, images, train, rng)
        return result[0] if train and isinstance(result[0], tuple) else result

    common.apply = apply
    print("peers: jhuman.tasks.common.apply returns ((out, {}), {}) for stateless nets; unwrapped here")
    return True


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


class JhumanRunner:
    """The library's train step and the task's apply, compiled ahead of time on fixed device batches."""

    def __init__(self, config, train_batch: dict, infer_images: np.ndarray):
        from jhuman import sharding, train

        self.setup = setup = train.build(config)
        self.state = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(0))
        # Host copies of the initial variables (for the torch peers) before the first step donates the state.
        self.initial_variables = jax.device_get(train.eval_variables(self.state))
        self.batch = sharding.to_global(train_batch, setup.mesh)
        self.images = jax.device_put(infer_images)
        t = time.perf_counter()
        self.step = train.make_train_step(setup).lower(self.state, self.batch).compile()
        self.train_compile_s = time.perf_counter() - t
        self.train_flops = _flops(self.step)
        task = setup.task
        infer = jax.jit(lambda variables, images: task.apply(variables, images)[0])
        t = time.perf_counter()
        self.infer_fn = infer.lower(train.eval_variables(self.state), self.images).compile()
        self.infer_compile_s = time.perf_counter() - t
        self.infer_flops = _flops(self.infer_fn)

    def train_step(self):
        self.state, metrics = self.step(self.state, self.batch)
        jax.block_until_ready((self.state, metrics))

    def infer(self):
        from jhuman import train

        jax.block_until_ready(self.infer_fn(train.eval_variables(self.state), self.images))


# --- torch -------------------------------------------------------------------------------------------------------


def torch_net(config):
    """The config's network in PyTorch (benchmarks.torch_nets), wrapped with the input normalisation."""
    from benchmarks import torch_nets as tn

    m = config.model
    if m.input_norm != "torchvision":
        raise ValueError(
            f"torch peers normalise as 'torchvision', config has model.input_norm={m.input_norm!r}"
        )
    stage_sizes = tuple(m.stage_sizes) or None
    if config.task == "personlab":
        from jhuman.classes import PERSONLAB_DIRECTED_EDGES

        net = tn.PersonLab(
            PERSONLAB_DIRECTED_EDGES,
            backbone=m.backbone,
            width=m.width,
            stage_sizes=stage_sizes,
            output_stride=m.output_stride,
            norm=m.norm,
            refine_steps=m.refine_steps,
        )
        return tn.Normalized(net)
    net = tn.DeepLab(
        backbone=m.backbone,
        num_classes=m.num_classes,
        head=m.head,
        rates=tuple(m.rates),
        width=m.width,
        output_stride=m.output_stride,
        norm=m.norm,
        stage_sizes=stage_sizes,
    )
    if m.name == "attention":
        net = tn.AttentionToScale(net, tuple(m.scales), m.attention_width)
    return tn.Normalized(net)


def torch_loss_fn(config):
    from benchmarks import torch_nets as tn

    if config.task == "personlab":
        radius, weights = float(config.personlab.radius), dict(config.personlab.loss_weights)
        return lambda outputs, targets: tn.personlab_loss(outputs, targets, radius, weights)
    stride = int(config.model.output_stride)
    return lambda outputs, labels: tn.parsing_loss(outputs, labels, stride)


def torch_optimizer(config, model):
    """The config's optimizer over `model`: torch.optim.SGD (momentum, L2 weight decay on conv kernels only,
    10x learning rate for the lr_multipliers' heads) or Adam; constant learning rate."""
    import re

    import torch

    o = config.optim
    rules = [(re.compile(pattern.replace("/", r"\.")), float(mult)) for pattern, mult in o.lr_multipliers]
    groups = {}
    for name, param in model.named_parameters():
        mult = next((m for rx, m in rules if rx.search(name)), 1.0)
        decay = float(o.weight_decay) if (o.decay_biases or param.ndim > 1) else 0.0
        groups.setdefault((mult, decay), []).append(param)
    params = [
        {"params": p, "lr": float(o.learning_rate) * mult, "weight_decay": decay}
        for (mult, decay), p in groups.items()
    ]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=float(o.learning_rate), momentum=float(o.momentum))
    if o.name == "adam":
        return torch.optim.Adam(params, lr=float(o.learning_rate))
    raise ValueError(f"no torch peer for optim.name={o.name!r}")


def torch_targets(config, batch: dict):
    """What the torch loss takes: parsing labels (B, H, W) int64; PersonLab the dense targets, encoded once
    with jhuman's encoder (the torch step gets them precomputed)."""
    import torch

    if config.task == "parsing":
        return torch.from_numpy(batch["label"].astype(np.int64))
    from jhuman.ops.personlab import targets as personlab_targets

    encode = jax.jit(personlab_targets.encode_batch, static_argnames="radius")
    dense = encode(
        batch["keypoints"],
        batch["instance_ids"],
        batch["segmentation"],
        batch["ignore"],
        radius=float(config.personlab.radius),
    )
    return {k: torch.from_numpy(np.array(v)) for k, v in jax.device_get(dense).items()}


class TorchRunner:
    """A torch model's train step (loss, backward, optimizer) and inference, eager or torch.compile'd.
    images / infer_images: numpy NHWC inputs (or a tuple of arrays already in the twin's layout, NCHW where
    spatial: the model takes the tuple); targets: what loss_fn(outputs, targets) takes (tensors, or a dict
    of them); make_optimizer(model) builds the optimizer."""

    def __init__(
        self, model, make_optimizer, loss_fn, images, targets, infer_images, compiled, device, dtype,
        memory_format,
    ):  # fmt: skip
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.model = model.to(self.device).to(memory_format=memory_format)
        self.optimizer = make_optimizer(self.model)
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
        to = lambda x: x.to(self.device)  # noqa: E731

        def nchw(
            array,
        ):  # NHWC images -> NCHW tensors; a tuple (inputs already in the twin's layout) -> a tuple
            if isinstance(array, tuple):
                tensors = (to(torch.from_numpy(np.ascontiguousarray(a))) for a in array)
                return tuple(t.contiguous(memory_format=memory_format) if t.ndim == 4 else t for t in tensors)
            return to(torch.from_numpy(array).permute(0, 3, 1, 2)).contiguous(memory_format=memory_format)

        self.images, self.infer_images = nchw(images), nchw(infer_images)
        self.targets = {k: to(v) for k, v in targets.items()} if isinstance(targets, dict) else to(targets)
        model = self.model

        def loss(images, targets):
            with torch.autocast(**self.autocast):
                outputs = model(images)
            return loss_fn(outputs, targets)

        def opt_step():
            self.optimizer.step()

        def forward(images):
            with torch.autocast(**self.autocast):
                return model(images)

        self.loss, self.opt_step, self.forward = (
            (torch.compile(loss), torch.compile(opt_step), torch.compile(forward))
            if compiled
            else (loss, opt_step, forward)
        )

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def train_step(self):
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(self.images, self.targets).backward()
        self.opt_step()
        self.sync()

    def infer(self):
        self.model.eval()
        with self.torch.inference_mode():
            self.forward(self.infer_images)
        self.sync()

    def count_flops(self, mode: str) -> float:
        """PyTorch's own count (FlopCounterMode: convs and matmuls) of one eager call of `mode`."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.train_step() if mode == "train" else self.infer()
        return float(counter.get_total_flops())


def config_torch_runner(config, variables, batch, infer_images, compiled, device, dtype, memory_format):
    """TorchRunner over the config's network (jhuman's variables), loss, targets and optimizer."""
    from benchmarks import torch_nets as tn

    model = tn.load_jhuman_variables(torch_net(config), variables)
    return TorchRunner(
        model,
        lambda m: torch_optimizer(config, m),
        torch_loss_fn(config),
        batch["image"],
        torch_targets(config, batch),
        infer_images,
        compiled,
        device,
        dtype,
        memory_format,
    )


# --- Semantic Human Matting: networks, batches, losses -------------------------------------------------------


def matting_networks(name: str, size: str = "full", dtype: str = "float32"):
    """(jhuman module, torch module) of a MATTING_CASES case (size='tiny': width 8, one block per stage),
    batch norm in training mode ('batch'), as in the matting stages."""
    import jax.numpy as jnp

    from benchmarks import torch_nets as tn
    from jhuman.models import matting

    kind = MATTING_CASES[name][0]
    tiny = MATTING_TINY if size == "tiny" else {}
    width = tiny.get("width", 64)
    if kind == "tnet":
        stages = tiny.get("stage_sizes", (3, 4, 6, 3))
        net = matting.TNet(width=width, stage_sizes=stages, norm="batch", dtype=jnp.dtype(dtype))
        return net, tn.PSPNet(3, width, stages, norm="batch")
    return matting.MNet(width=width, norm="batch", dtype=jnp.dtype(dtype)), tn.MNet(width, 3, norm="batch")


def matting_crop(name: str, size: str = "full") -> int:
    _, crop, _, tiny_crop = MATTING_CASES[name]
    return tiny_crop if size == "tiny" else crop


def matting_batch(name: str, crop: int, batch: int, seed: int = 0) -> dict:
    """numpy NHWC batch like the matting stages': an elliptic person with a soft edge on a random image;
    'x' the network input (normalised RGB; M-Net: + the one-hot trimap), 'classes' (B, S, S) int32 trimap
    classes (bg / unknown / fg), 'alpha' (B, S, S, 1), 'fg' / 'bg' (B, S, S, 3) in [0, 1]."""
    from jhuman.ops import matting as matting_ops
    from jhuman.tasks.common import INPUT_NORMS

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:crop, :crop] / crop
    alpha = np.zeros((batch, crop, crop, 1), np.float32)
    for b in range(batch):
        cy, cx, ry, rx = (
            rng.uniform(0.4, 0.6),
            rng.uniform(0.4, 0.6),
            rng.uniform(0.25, 0.4),
            rng.uniform(0.1, 0.25),
        )
        distance = np.sqrt(((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2)
        alpha[b, ..., 0] = np.clip((1.1 - distance) / 0.2, 0, 1)
    fg = rng.uniform(0, 1, (batch, crop, crop, 3)).astype(np.float32)
    bg = rng.uniform(0, 1, (batch, crop, crop, 3)).astype(np.float32)
    image = 255 * (alpha * fg + (1 - alpha) * bg)
    mean, std, _ = INPUT_NORMS["torchvision"]
    x = ((image - mean) / std).astype(np.float32)
    classes = np.where(alpha[..., 0] >= 1, 2, np.where(alpha[..., 0] > 0, 1, 0)).astype(np.int32)
    if MATTING_CASES[name][0] == "mnet":
        assert matting_ops.CLASSES[2] == "foreground"
        x = np.concatenate([x, np.eye(3, dtype=np.float32)[classes]], axis=-1)
    return {"x": x, "classes": classes, "alpha": alpha, "fg": fg, "bg": bg}


def jhuman_matting_loss(name: str):
    """loss(outputs, batch) of the case's stage: L_t (T-Net) or L_p on alpha_r (M-Net)."""
    import jax.numpy as jnp

    from jhuman.ops import matting as matting_ops

    if MATTING_CASES[name][0] == "tnet":
        return lambda logits, batch: matting_ops.trimap_loss(logits, batch["classes"])

    def loss(alpha, batch):
        has_fg_bg = jnp.ones((alpha.shape[0],), bool)
        return matting_ops.prediction_loss(alpha, batch["alpha"], batch["fg"], batch["bg"], has_fg_bg)[0]

    return loss


def torch_matting_loss(name: str):
    """The torch twin of jhuman_matting_loss on NCHW tensors (targets: torch_matting_targets)."""
    from benchmarks import torch_nets as tn

    if MATTING_CASES[name][0] == "tnet":
        return lambda logits, t: tn.trimap_loss(logits, t["classes"])
    return lambda alpha, t: tn.prediction_loss(alpha, t["alpha"], t["fg"], t["bg"])


def torch_matting_targets(batch: dict) -> dict:
    import torch

    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)))  # noqa: E731
    return {
        "classes": torch.from_numpy(batch["classes"].astype(np.int64)),
        "alpha": nchw(batch["alpha"]),
        "fg": nchw(batch["fg"]),
        "bg": nchw(batch["bg"]),
    }


class MattingJhumanRunner:
    """A matting network's jitted train step (network + loss + Adam, state donated) and inference, compiled
    ahead of time on fixed device batches; the same interface as JhumanRunner."""

    def __init__(self, name: str, size: str, dtype: str, train_batch: dict, infer_x: np.ndarray):
        import optax

        net, _ = matting_networks(name, size, dtype)
        loss_fn = jhuman_matting_loss(name)
        variables = jax.jit(net.init)(jax.random.key(0), infer_x[:1])
        self.initial_variables = jax.device_get(variables)
        optimizer = optax.adam(MATTING_LR)
        self.state = {
            "params": variables["params"],
            "batch_stats": variables["batch_stats"],
            "opt": optimizer.init(variables["params"]),
            "rng": jax.random.key(1),
        }

        def step(state, batch):
            rng, dropout = jax.random.split(state["rng"])

            def loss(params):
                out, new = net.apply(
                    {"params": params, "batch_stats": state["batch_stats"]},
                    batch["x"],
                    train=True,
                    rngs={"dropout": dropout},
                    mutable=["batch_stats"],
                )
                return loss_fn(out, batch), new["batch_stats"]

            (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(state["params"])
            updates, opt = optimizer.update(grads, state["opt"], state["params"])
            params = optax.apply_updates(state["params"], updates)
            return {"params": params, "batch_stats": stats, "opt": opt, "rng": rng}, value

        self.batch = jax.device_put(train_batch)
        self.images = jax.device_put(infer_x)
        t = time.perf_counter()
        self.step = jax.jit(step, donate_argnums=0).lower(self.state, self.batch).compile()
        self.train_compile_s = time.perf_counter() - t
        self.train_flops = _flops(self.step)
        infer = jax.jit(lambda v, x: net.apply(v, x))
        t = time.perf_counter()
        self.infer_fn = infer.lower(self._variables(), self.images).compile()
        self.infer_compile_s = time.perf_counter() - t
        self.infer_flops = _flops(self.infer_fn)

    def _variables(self):
        return {"params": self.state["params"], "batch_stats": self.state["batch_stats"]}

    def train_step(self):
        self.state, loss = self.step(self.state, self.batch)
        jax.block_until_ready((self.state, loss))

    def infer(self):
        jax.block_until_ready(self.infer_fn(self._variables(), self.images))


def matting_torch_runner(name, size, variables, batch, infer_x, compiled, device, dtype, memory_format):
    """TorchRunner over the case's torch twin (jhuman's initial variables), Adam at MATTING_LR."""
    import torch

    from benchmarks import torch_nets as tn

    model = tn.load_jhuman_variables(matting_networks(name, size)[1], variables)
    return TorchRunner(
        model,
        lambda m: torch.optim.Adam(m.parameters(), lr=MATTING_LR),
        torch_matting_loss(name),
        batch["x"],
        torch_matting_targets(batch),
        infer_x,
        compiled,
        device,
        dtype,
        memory_format,
    )


# --- pose-guided synthesis: networks, batches, losses ----------------------------------------------------------


def posewarp_networks(name: str, size: str = "full", dtype: str = "float32"):
    """(jhuman module, torch twin) of a POSEWARP_CASES case (size='tiny': width 8)."""
    import jax.numpy as jnp

    from benchmarks import torch_nets as tn
    from jhuman.models import discriminator, posewarp

    kind, full, _, tiny = POSEWARP_CASES[name]
    width = POSEWARP_TINY_WIDTH if size == "tiny" else 64
    side = tiny if size == "tiny" else full
    dt = jnp.dtype(dtype)
    if kind == "modular":
        return posewarp.ModularGenerator(width=width, image_size=side, dtype=dt), tn.ModularGenerator(
            posewarp.modular_widths(width)
        )
    if kind == "unet":
        return posewarp.UNetBaseline(width=width, image_size=side, dtype=dt), tn.UNetBaseline(
            posewarp.baseline_widths(width)
        )
    return discriminator.Discriminator(width=width, dtype=dt), tn.PoseDiscriminator(width, side)


def posewarp_size(name: str, size: str = "full") -> int:
    _, full, _, tiny = POSEWARP_CASES[name]
    return tiny if size == "tiny" else full


def posewarp_pose_inputs(batch: dict) -> dict:
    """The pose inputs jhuman's networks compute inside, computed once with jhuman.ops.warp for the torch twins
    (NHWC numpy): 'source_pose', 'target_pose' (B, S/2, S/2, 14), 'prior' (B, S, S, 11), 'transforms'
    (B, 10, 2, 3)."""
    from jhuman.models import posewarp
    from jhuman.ops import warp

    side = batch["source"].shape[1]

    @jax.jit
    def compute(b):
        return {
            "source_pose": posewarp.pose_maps(b["source_joints"], b["source_visible"], side, side),
            "target_pose": posewarp.pose_maps(b["target_joints"], b["target_visible"], side, side),
            "prior": warp.limb_prior(
                b["source_joints"], b["source_visible"], side, side, scale=side / posewarp.REFERENCE_SIZE
            ),
            "transforms": warp.limb_transforms(
                b["source_joints"], b["target_joints"], b["source_visible"], b["target_visible"]
            ),
        }

    return {k: np.array(v) for k, v in jax.device_get(compute(batch)).items()}  # writable copies


GENERATOR_KEYS = ("source", "source_joints", "target_joints", "source_visible", "target_visible")


def posewarp_torch_inputs(name: str, batch: dict) -> tuple:
    """The torch twin's inputs for a case, numpy in the twin's layout (NCHW where spatial): generators
    (source, source_pose, target_pose, prior, transforms (B, 10, 2, 3)); discriminator (image = the target,
    source_pose, target_pose)."""
    pose = posewarp_pose_inputs(batch)
    nchw = lambda a: np.ascontiguousarray(np.moveaxis(a, -1, 1))  # noqa: E731
    if POSEWARP_CASES[name][0] == "discriminator":
        return nchw(batch["target"]), nchw(pose["source_pose"]), nchw(pose["target_pose"])
    return (nchw(batch["source"]), nchw(pose["source_pose"]), nchw(pose["target_pose"]), nchw(pose["prior"]),
            pose["transforms"])  # fmt: skip


def posewarp_vgg(size: str):
    """(VGG-19 variables ('random:0'), per-layer stds (12 arrays)) of the perceptual loss: random weights and
    unit statistics cost what the real ones cost."""
    from jhuman.models import perceptual

    width = POSEWARP_TINY_WIDTH if size == "tiny" else 64
    variables, _ = perceptual.load_vgg19("random:0", width=width)
    stds = [np.ones(width * m, np.float32) for m in perceptual.LAYER_WIDTH_MULTIPLIERS]
    return variables, stds


def jhuman_posewarp_loss(name: str, stds):
    """loss(net, variables, vgg, batch): the generators' perceptual loss or the discriminator's BCE on B real
    (the targets) and B generated images (batch['fake'])."""
    import jax.numpy as jnp
    import optax

    from jhuman.models import perceptual

    stats = perceptual.VGGStatistics(mean=tuple(np.zeros_like(s) for s in stds), std=tuple(stds))
    if POSEWARP_CASES[name][0] == "discriminator":

        def d_loss(net, variables, vgg, batch):
            del vgg
            poses = [batch[k] for k in GENERATOR_KEYS[1:]]
            real = net.apply(variables, batch["target"], *poses)
            fake = net.apply(variables, batch["fake"], *poses)
            bce = optax.sigmoid_binary_cross_entropy
            return 0.5 * (
                jnp.mean(bce(real, jnp.ones_like(real))) + jnp.mean(bce(fake, jnp.zeros_like(fake)))
            )

        return d_loss

    def g_loss(net, variables, vgg, batch):
        image = net.apply(variables, *(batch[k] for k in GENERATOR_KEYS))["image"]
        target = jax.lax.stop_gradient(perceptual.vgg_features(vgg, batch["target"], "caffe"))
        return perceptual.perceptual_loss(perceptual.vgg_features(vgg, image, "caffe"), target, stats)

    return g_loss


def torch_posewarp_loss(name: str, vgg_net, stds):
    """The torch twin of jhuman_posewarp_loss: loss(outputs, targets) on NCHW tensors."""
    from benchmarks import torch_nets as tn

    if POSEWARP_CASES[name][0] == "discriminator":
        import torch.nn.functional as F

        def d_loss(outputs, targets):
            del targets  # the labels are constants: 1 for the real images, 0 for the generated ones
            real, fake = outputs
            bce = F.binary_cross_entropy_with_logits
            return 0.5 * (bce(real, real.new_ones(real.shape)) + bce(fake, fake.new_zeros(fake.shape)))

        return d_loss
    std_tensors = None

    def g_loss(outputs, targets):
        nonlocal std_tensors
        import torch

        if std_tensors is None:
            std_tensors = [torch.from_numpy(s).to(targets.device) for s in stds]
        with torch.no_grad():
            target_features = vgg_net(targets)
        return tn.perceptual_loss(vgg_net(outputs["image"]), target_features, std_tensors)

    return g_loss


def real_and_fake(net):
    """A torch module wrapping the discriminator twin: inputs (real, fake, source_pose, target_pose) -> (real
    logits, fake logits); parameters under the twin's own names."""
    import torch

    class RealAndFake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, inputs):
            real, fake, source_pose, target_pose = inputs
            return self.net(real, source_pose, target_pose), self.net(fake, source_pose, target_pose)

    return RealAndFake()


def unpacked(net):
    """A torch module calling `net(*inputs)` on a tuple of inputs (TorchRunner passes one object)."""
    import torch

    class Unpacked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, inputs):
            return self.net(*inputs)

    return Unpacked()


class PoseWarpJhumanRunner:
    """A pose-guided network's jitted train step (network + loss + Adam, state donated) and inference, compiled
    ahead of time on fixed device batches; the same interface as JhumanRunner."""

    def __init__(self, name: str, size: str, dtype: str, train_batch: dict, infer_batch: dict):
        import optax

        net, _ = posewarp_networks(name, size, dtype)
        self.kind = POSEWARP_CASES[name][0]
        vgg, stds = posewarp_vgg(size)
        loss_fn = jhuman_posewarp_loss(name, stds)
        discriminator = self.kind == "discriminator"
        first = {k: v[:1] for k, v in infer_batch.items()}
        image_key = ("target",) if discriminator else ("source",)
        args = [first[k] for k in image_key + GENERATOR_KEYS[1:]]
        variables = jax.jit(net.init)(jax.random.key(0), *args)
        self.initial_variables = jax.device_get(variables)
        optimizer = optax.adam(POSEWARP_LR)
        self.state = {"params": variables["params"], "opt": optimizer.init(variables["params"]), "vgg": vgg}

        def step(state, batch):
            def loss(params):
                return loss_fn(net, {"params": params}, state["vgg"], batch)

            value, grads = jax.value_and_grad(loss)(state["params"])
            updates, opt = optimizer.update(grads, state["opt"], state["params"])
            return {
                "params": optax.apply_updates(state["params"], updates),
                "opt": opt,
                "vgg": state["vgg"],
            }, value

        def infer(params, batch):
            keys = image_key + GENERATOR_KEYS[1:]
            return net.apply({"params": params}, *(batch[k] for k in keys))

        self.batch = jax.device_put(train_batch)
        self.images = jax.device_put(infer_batch)
        t = time.perf_counter()
        self.step = jax.jit(step, donate_argnums=0).lower(self.state, self.batch).compile()
        self.train_compile_s = time.perf_counter() - t
        self.train_flops = _flops(self.step)
        t = time.perf_counter()
        self.infer_fn = jax.jit(infer).lower(self.state["params"], self.images).compile()
        self.infer_compile_s = time.perf_counter() - t
        self.infer_flops = _flops(self.infer_fn)

    def train_step(self):
        self.state, loss = self.step(self.state, self.batch)
        jax.block_until_ready((self.state, loss))

    def infer(self):
        jax.block_until_ready(self.infer_fn(self.state["params"], self.images))


def posewarp_train_batch(name: str, side: int, batch: int, seed: int = 0) -> dict:
    """The case's jhuman train batch: posewarp_pairs, + 'fake' (B generated-looking images) for the
    discriminator."""
    out = posewarp_pairs(side, batch, seed)
    if POSEWARP_CASES[name][0] == "discriminator":
        out["fake"] = posewarp_pairs(side, batch, seed + 100)["target"]
    return out


def posewarp_torch_runner(name, size, variables, batch, infer_batch, compiled, device, dtype, memory_format):
    """TorchRunner over the case's torch twin (jhuman's initial variables), the twin loss, Adam at POSEWARP_LR."""
    import torch

    from benchmarks import torch_nets as tn

    twin = tn.load_jhuman_variables(posewarp_networks(name, size)[1], variables)
    vgg_variables, stds = posewarp_vgg(size)
    train_inputs = posewarp_torch_inputs(name, batch)
    infer_inputs = posewarp_torch_inputs(name, infer_batch)
    if POSEWARP_CASES[name][0] == "discriminator":
        model = real_and_fake(twin)
        fake = np.ascontiguousarray(np.moveaxis(batch["fake"], -1, 1))
        train_inputs = (train_inputs[0], fake, *train_inputs[1:])
        infer_model_inputs = (infer_inputs[0], infer_inputs[0], *infer_inputs[1:])
        targets = torch.zeros(1)  # unused: the labels are constants of the loss
        vgg_net = None
    else:
        model = unpacked(twin)
        infer_model_inputs = infer_inputs
        vgg_net = tn.load_jhuman_variables(tn.VGG19Features(perceptual_width(vgg_variables)), vgg_variables)
        vgg_net = vgg_net.to(device)
        targets = torch.from_numpy(np.moveaxis(batch["target"], -1, 1).copy())
    return TorchRunner(
        model,
        lambda m: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=POSEWARP_LR),
        torch_posewarp_loss(name, vgg_net, stds),
        train_inputs,
        targets,
        infer_model_inputs,
        compiled,
        device,
        dtype,
        memory_format,
    )


def perceptual_width(vgg_variables) -> int:
    from jhuman.models import perceptual

    return perceptual.vgg_width(vgg_variables)


# --- the benchmark ---------------------------------------------------------------------------------------------


def _timed(fn, cpu_times=None) -> float:
    """Wall seconds of `fn()`; its process CPU seconds (all threads) appended to `cpu_times` if given."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    if cpu_times is not None:
        cpu_times.append(time.process_time() - c)
    return time.perf_counter() - t


def _contenders(name, args, device, memory_format):
    """(runners {'jhuman', 'eager', 'compiled'}, crop, train batch, inference batch, dtype) of a case."""
    accel = on_accelerator()
    if name in POSEWARP_CASES:
        crop = posewarp_size(name, args.size)
        dtype = args.dtype or ("bfloat16" if accel else "float32")
        train_batch = args.batch or (POSEWARP_CASES[name][2] if accel else 2)
        infer_batch = args.infer_batch or (train_batch if accel else 1)
        batch = posewarp_train_batch(name, crop, train_batch)
        infer_inputs = posewarp_pairs(crop, infer_batch, seed=1)
        print(f"[{name}] jhuman: build + compile", flush=True)
        jh = PoseWarpJhumanRunner(name, args.size, dtype, batch, infer_inputs)

        def torch_runner(compiled):
            return posewarp_torch_runner(
                name, args.size, jh.initial_variables, batch, infer_inputs, compiled, device, dtype,
                memory_format,
            )  # fmt: skip
    elif name in MATTING_CASES:
        crop = matting_crop(name, args.size)
        dtype = args.dtype or ("bfloat16" if accel else "float32")
        train_batch = args.batch or (MATTING_CASES[name][2] if accel else 2)
        infer_batch = args.infer_batch or (train_batch if accel else 1)
        batch = matting_batch(name, crop, train_batch)
        infer_images = matting_batch(name, crop, infer_batch, seed=1)["x"]
        print(f"[{name}] jhuman: build + compile", flush=True)
        jh = MattingJhumanRunner(name, args.size, dtype, batch, infer_images)

        def torch_runner(compiled):
            return matting_torch_runner(
                name, args.size, jh.initial_variables, batch, infer_images, compiled, device, dtype,
                memory_format,
            )  # fmt: skip
    else:
        config = case_config(name, args.size, args.dtype or ("" if accel else "float32"))
        train_batch = args.batch or (int(config.train.batch_size) if accel else 2)
        infer_batch = args.infer_batch or (train_batch if accel else 1)
        with config.unlocked():
            config.train.batch_size = train_batch
        batch = host_batch(config, train_batch)
        infer_images = host_batch(config, infer_batch, seed=1)["image"]
        dtype, crop = str(config.train.compute_dtype), int(config.data.crop_size)
        print(f"[{name}] jhuman: build + compile", flush=True)
        jh = JhumanRunner(config, batch, infer_images)

        def torch_runner(compiled):
            return config_torch_runner(
                config, jh.initial_variables, batch, infer_images, compiled, device, dtype, memory_format
            )

    runners = {"jhuman": jh, "eager": torch_runner(False), "compiled": torch_runner(True)}
    return runners, crop, train_batch, infer_batch, dtype


def bench_case(name, args, device, memory_format) -> list[dict]:
    runners, crop, train_batch, infer_batch, dtype = _contenders(name, args, device, memory_format)
    jh = runners["jhuman"]
    compile_s = {"jhuman": {"train": jh.train_compile_s, "infer": jh.infer_compile_s}}
    gflop = {"train": jh.train_flops / 1e9, "infer": jh.infer_flops / 1e9}
    rows = []
    for mode in ("train", "infer"):
        calls = {c: getattr(r, "train_step" if mode == "train" else "infer") for c, r in runners.items()}
        for contender in ("eager", "compiled"):  # first calls: torch.compile's compile, eager's warm-up
            print(f"[{name}] torch {contender}: first {mode} call", flush=True)
            compile_s.setdefault(contender, {})[mode] = _timed(calls[contender])
        for call in calls.values():  # one warm-up call each, outside the timed rounds
            call()
        torch_gflop = runners["eager"].count_flops(mode) / 1e9 if args.torch_flops else None
        times, cpu = {c: [] for c in calls}, {c: [] for c in calls}
        for _ in range(args.steps):
            for contender, call in calls.items():
                times[contender].append(_timed(call, cpu[contender]))
        median = {c: statistics.median(t) for c, t in times.items()}
        row = {
            "case": name,
            "mode": mode,
            "crop": crop,
            "batch": train_batch if mode == "train" else infer_batch,
            "dtype": dtype,
            "jhuman_ms": round(median["jhuman"] * 1e3, 2),
            "eager_ms": round(median["eager"] * 1e3, 2),
            "compiled_ms": round(median["compiled"] * 1e3, 2),
            "vs_eager": round(median["eager"] / median["jhuman"], 3),
            "vs_compiled": round(median["compiled"] / median["jhuman"], 3),
            "gflop": round(gflop[mode], 3),
            "torch_gflop": None if torch_gflop is None else round(torch_gflop, 3),
        }
        for contender in median:
            row[f"{contender}_gflops"] = round(gflop[mode] / median[contender], 2)
        row["compile_s"] = {c: round(v[mode], 2) for c, v in compile_s.items()}
        row["times_ms"] = {c: [round(t * 1e3, 2) for t in v] for c, v in times.items()}
        # CPU seconds of the process during each call (all threads; spinning OpenMP threads count too): on a
        # loaded machine, where wall times say more about the scheduler than about the code.
        row["cpu_ms"] = {c: [round(t * 1e3, 2) for t in v] for c, v in cpu.items()}
        row["steps_timed"] = args.steps
        rows.append(row)
        print(f"[{name}] {mode}: " + ", ".join(f"{c} {median[c] * 1e3:.1f} ms" for c in median), flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma list of {ALL_CASES}")
    parser.add_argument("--size", default="full", choices=["full", "tiny"])
    parser.add_argument("--steps", type=int, default=0, help="timed rounds (default: 3 on CPU, 20 otherwise)")
    parser.add_argument(
        "--dtype", default="", help="compute dtype (default: float32 on CPU, else the config's)"
    )
    parser.add_argument(
        "--batch", type=int, default=0, help="train batch (default: 2 on CPU, else the config's)"
    )
    parser.add_argument("--infer_batch", type=int, default=0, help="default: 1 on CPU, else the train batch")
    parser.add_argument(
        "--memory_format",
        default="auto",
        choices=["auto", "contiguous", "channels_last"],
        help="torch tensors' layout (auto: channels_last on CUDA, contiguous on CPU)",
    )
    parser.add_argument("--torch_threads", type=int, default=0, help="torch.set_num_threads (0: torch's own)")
    parser.add_argument("--no_torch_flops", dest="torch_flops", action="store_false")
    parser.add_argument("--json", default=None, help="output path (default benchmarks/peers.json)")
    args = parser.parse_args(argv)
    names = [n for n in args.cases.split(",") if n]
    unknown = sorted(set(names) - set(ALL_CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; valid: {ALL_CASES}")
    args.steps = args.steps or (20 if on_accelerator() else 3)

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    patched = workaround_stateless_apply()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":  # XLA's default float32 precision on GPUs uses TF32 too
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    fmt = args.memory_format
    if fmt == "auto":
        fmt = "channels_last" if device == "cuda" else "contiguous"
    memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format

    rows = []
    for name in names:
        # torch.compile's caches start empty for every case: the cases share the train-step functions, whose
        # guards (the loss closure, the optimizer object) differ per case, and after 8 recompilations dynamo
        # silently runs them eagerly (its recompile_limit), which timed later cases' "compiled" calls as eager.
        torch._dynamo.reset()
        rows += bench_case(name, args, device, memory_format)
    for row in rows:
        row.update(size=args.size, torch=torch.__version__, torch_device=device, memory_format=fmt)
        row.update(torch_threads=torch.get_num_threads(), jhuman_apply_workaround=patched)
    report("peers", rows, COLUMNS, args.json)


if __name__ == "__main__":
    main()
