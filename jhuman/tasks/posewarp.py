"""Pose-guided human image synthesis (Balakrishnan et al., "Synthesizing Images of Humans in Unseen Poses",
CVPR 2018) on the one trainer: the modular generator (or the single-U-Net baseline) and its discriminator.

Parameters {'generator': ..., 'discriminator': ...} (optim groups "generator" and "discriminator"); the
frozen VGG-19 of the perceptual loss and its per-channel statistics are model state, {'vgg': {'weights':
its variables, 'statistics': {'mean' | 'std': {layer: (C,)}}}}: arguments of the jitted step (never constants
of the compiled program), outside the optimizer, and in every checkpoint (so `jhuman eval` scores with the
loss the run trained with). `init` leaves them as placeholders; `pretrained_variables` (called by the trainer
on a fresh run) loads `loss.vgg_weights` (a Keras .h5 / torchvision .pth file, or "random:<seed>") and the
statistics of `loss.vgg_statistics` (the paper's .mat or our .npz), or, when that is empty, computes them over
`loss.statistics_batches` training batches and writes them to `<workdir>/vgg_statistics.npz`, saying so. A
statistics file computed with other weights or preprocessing is an error (perceptual.check_pairing).

Stages (`posewarp.stage`, configs/posewarp.py):
- 'vgg': L = the perceptual loss (paper Sec. 3.5: mean over VGG-19 layers conv1_1 .. conv4_4 of
  |f(y) - f(y_hat)| / (sigma_c + 0.1)) of the generated target; the trainer's default update over the
  generator group (the discriminator group is frozen, carried along).
- 'gan': the task's `update` hook, one jitted step (Sec. 3.5 / the released posewarp_gan_train.py):
  1. discriminator: L_D = BCE(D(y, p_s, p_t), 1) and BCE(D(G(x), p_s, p_t), 0), averaged over the 2B
     examples (Keras' train_on_batch on the concatenation), the fake from the current generator with its
     gradient stopped; Adam on the "discriminator" group;
  2. generator: L_G = perceptual + gan.weight (0.1) * BCE(D(G(x), p_s, p_t), 1) through the updated
     discriminator; Adam on the "generator" group, applied only from step gan.disc_only_steps (5) on (before,
     its parameters and Adam state stay as they were: the discriminator trains alone).
  The generator starts from stage 1 (init.from_workdir '^generator/'), the discriminator from scratch.
  Where we differ from the released code: the generator step reuses the step's batch (the released code
  draws a second one; one batch per step keeps the trainer's exact resume); D's BCE is on logits
  (numerically stable; the sigmoid lives in the loss).

Evaluation (Table 1 of the paper): over the seeded test pairs (eval.num_pairs, 500 in the paper), per pair
L1 = mean |y - y_hat| on [0, 1] images, VGG error = the perceptual loss, SSIM on [0, 1] RGB with a 7x7
uniform window at data_range 1 ('ssim') and data_range 2 ('ssim_range2': the released evaluation mapped
the images to [0, 1] and called the 2018 compare_ssim without a data range, which took the float dtype's range
(-1, 1)); the same for copying the source image as the prediction ('copy_*'), the floor any model must beat.
Averages over pairs.

The published data has train/ and test/ only: the trainer's 'val' split reads test/ (input_pipeline.posewarp).
"""

from __future__ import annotations

import functools
import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jhuman.metrics import image as image_metrics
from jhuman.models import discriminator as discriminator_model
from jhuman.models import perceptual
from jhuman.models import posewarp as posewarp_model
from jhuman.tasks import common

STAGES = ("vgg", "gan")
MODELS = ("modular", "unet")
# What the generator reads from a batch (and `predict` takes): the source image and both poses.
INPUT_KEYS = ("source", "source_joints", "target_joints", "source_visible", "target_visible")
STATISTICS_FILE = "vgg_statistics.npz"
RESULTS_FILE = "posewarp.json"  # predict_folder's results


def check_choice(key: str, value: str, valid) -> str:
    if value not in valid:
        raise ValueError(f"{key}={value!r} is not one of {list(valid)}")
    return value


def build_generator(config):
    """The modular generator (mask / foreground / background U-Nets) or the single-U-Net baseline."""
    m = config.model
    name = check_choice("model.name", m.name, MODELS)
    cls = posewarp_model.ModularGenerator if name == "modular" else posewarp_model.UNetBaseline
    return cls(width=int(m.width), image_size=int(m.image_size), dtype=jnp.dtype(config.train.compute_dtype))


def build_discriminator(config):
    m = config.model
    return discriminator_model.Discriminator(
        width=int(m.disc_width), dtype=jnp.dtype(config.train.compute_dtype)
    )


def bce(logits, label: float):
    """Mean binary cross-entropy of sigmoid(logits) against a constant label (stable, on logits)."""
    logits = logits.astype(jnp.float32)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))


def to_unit(images):
    """[-1, 1] -> [0, 1], clipped (the metrics' range)."""
    return jnp.clip((images.astype(jnp.float32) + 1.0) * 0.5, 0.0, 1.0)


class PoseWarpEvaluator:
    """Sums over the (unpadded) pairs on device: L1, VGG error, SSIM at data ranges 1 and 2, for the generated
    target and for the source copied as the prediction. finalize -> their means and the count."""

    METRICS = ("l1", "vgg_error", "ssim", "ssim_range2")

    def __init__(self, task):
        self.task = task

    def init(self):
        keys = [*self.METRICS, *(f"copy_{k}" for k in self.METRICS), "count"]
        return {k: jnp.zeros((), jnp.float32) for k in keys}

    def scores(self, model_state, prediction, target) -> dict:
        """Per-pair scores (B,) of predictions vs targets, both (B, H, W, 3) in [-1, 1]."""
        p, t = to_unit(prediction), to_unit(target)
        return {
            "l1": image_metrics.l1(p, t),
            "vgg_error": self.task.vgg_error(model_state, prediction, target),
            "ssim": image_metrics.ssim(p, t, data_range=1.0),
            "ssim_range2": image_metrics.ssim(p, t, data_range=2.0),
        }

    def update(self, acc, variables, batch):
        model_state = {k: v for k, v in variables.items() if k != "params"}
        generated = self.task.predict(variables, self.task.predict_inputs(batch))["image"]
        mask = jnp.asarray(batch["mask"], jnp.float32)  # (B,) padding rows 0
        ours = self.scores(model_state, generated, batch["target"])
        copied = self.scores(model_state, batch["source"], batch["target"])
        acc = dict(acc)
        for k in self.METRICS:
            acc[k] = acc[k] + jnp.sum(ours[k] * mask)
            acc[f"copy_{k}"] = acc[f"copy_{k}"] + jnp.sum(copied[k] * mask)
        acc["count"] = acc["count"] + jnp.sum(mask)
        return acc

    def finalize(self, acc) -> dict:
        count = int(acc["count"])
        results = {k: float(acc[k]) / max(count, 1) for k in acc if k != "count"}
        results["count"] = count
        return results


class PoseWarpTask(common.ReaderData):
    """Pose-guided synthesis (see the module docstring)."""

    READER, DATASET, SYNTHETIC = "input_pipeline.posewarp", "posewarp", "posewarp"
    sweep_columns = (
        ("l1", "L1", 1.0),
        ("vgg_error", "VGG error", 1.0),
        ("ssim", "SSIM", 1.0),
        ("ssim_range2", "SSIM (range 2)", 1.0),
    )
    workdir = None  # set by the trainer: where computed VGG statistics are written

    def __init__(self, config):
        self.config = config
        self.stage = check_choice("posewarp.stage", config.posewarp.stage, STAGES)
        self.preprocessing = config.loss.vgg_preprocessing
        self.generator = build_generator(config)
        self.discriminator = build_discriminator(config)
        self._predict_jit = jax.jit(self.predict)
        if self.stage == "gan":
            groups = set(config.optim.get("groups", {}).keys())
            if not {"generator", "discriminator"} <= groups:
                raise ValueError(
                    f"posewarp.stage='gan' steps two optimizer groups, optim.groups 'generator' (pattern "
                    f"'^generator/') and 'discriminator' ('^discriminator/'); the config has {sorted(groups)}"
                )
            self.update = self.gan_update  # the trainer's hook; stage 'vgg' keeps the default update

    @staticmethod
    def format_eval(results) -> str:
        """Our scores beside copying the source image, as a table (SSIM at data_range 1 and 2)."""
        if "l1" not in results:
            return common.format_skips(results)
        head = f"{'':<18}{'L1':>8}{'VGG error':>11}{'SSIM':>8}{'SSIM (range 2)':>16}"
        rows = [head]
        for label, prefix in (("generated", ""), ("copy the source", "copy_")):
            values = [results.get(f"{prefix}{k}", float("nan")) for k in PoseWarpEvaluator.METRICS]
            rows.append(f"{label:<18}{values[0]:>8.4f}{values[1]:>11.4f}{values[2]:>8.4f}{values[3]:>16.4f}")
        rows.append(
            f"{int(results.get('count', 0))} test pairs; L1 on [0, 1] images; SSIM 7x7 uniform window on [0, 1] "
            "RGB (range 2: the original evaluation's)"
        )
        skips = common.format_skips(results)
        return "\n".join(rows + ([skips] if skips else []))

    # --- model -------------------------------------------------------------------------------------------
    def example_inputs(self, batch_size: int = 1) -> dict:
        size = int(self.config.model.image_size)
        return {
            "source": jnp.zeros((batch_size, size, size, 3), jnp.float32),
            "source_joints": jnp.zeros((batch_size, 14, 2), jnp.float32),
            "target_joints": jnp.zeros((batch_size, 14, 2), jnp.float32),
            "source_visible": jnp.ones((batch_size, 14), bool),
            "target_visible": jnp.ones((batch_size, 14), bool),
        }

    def _vgg_placeholder(self):
        """Zeros in the shapes of the loss network's variables and ones / zeros for its statistics."""
        width = int(self.config.loss.vgg_width)
        shapes = jax.eval_shape(
            lambda: perceptual.vgg19(width).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        )
        channels = [width * m for m in perceptual.LAYER_WIDTH_MULTIPLIERS]
        return {
            "weights": jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
            "statistics": {
                "mean": {n: jnp.zeros((c,), jnp.float32) for n, c in zip(perceptual.LAYERS, channels)},
                "std": {n: jnp.ones((c,), jnp.float32) for n, c in zip(perceptual.LAYERS, channels)},
            },
        }

    def init(self, rng):
        """{'params': {'generator', 'discriminator'}, 'vgg': placeholders (see `pretrained_variables`)}."""
        g_rng, d_rng = jax.random.split(rng)
        x = self.example_inputs()
        generator = self.generator.init(g_rng, *(x[k] for k in INPUT_KEYS))
        discriminator = self.discriminator.init(
            d_rng,
            x["source"],
            x["source_joints"],
            x["target_joints"],
            x["source_visible"],
            x["target_visible"],
        )
        return {
            "params": {"generator": generator["params"], "discriminator": discriminator["params"]},
            "vgg": self._vgg_placeholder(),
        }

    def generate(self, params, inputs) -> dict:
        """The generator's outputs (ModularGenerator: image, fg, bg, target_mask, masks, warped, prior; the
        baseline: image), float32."""
        out = self.generator.apply({"params": params["generator"]}, *(inputs[k] for k in INPUT_KEYS))
        return jax.tree.map(lambda v: v.astype(jnp.float32), out)

    def discriminate(self, params, image, inputs):
        """D's logits (B, 1) for target images (real or generated) given both poses."""
        return self.discriminator.apply(
            {"params": params["discriminator"]},
            image,
            inputs["source_joints"],
            inputs["target_joints"],
            inputs["source_visible"],
            inputs["target_visible"],
        ).astype(jnp.float32)

    def _statistics(self, model_state) -> perceptual.VGGStatistics:
        s = model_state["vgg"]["statistics"]
        return perceptual.VGGStatistics(
            mean=tuple(s["mean"][name] for name in perceptual.LAYERS),
            std=tuple(s["std"][name] for name in perceptual.LAYERS),
            preprocessing=self.preprocessing,
        )

    def features(self, model_state, images):
        return perceptual.vgg_features(model_state["vgg"]["weights"], images, self.preprocessing)

    def perceptual_loss(self, model_state, generated, target):
        """The paper's VGG loss of generated vs target images (B, H, W, 3) in [-1, 1], over the batch."""
        stats = self._statistics(model_state)
        target_features = jax.lax.stop_gradient(self.features(model_state, target))
        return perceptual.perceptual_loss(self.features(model_state, generated), target_features, stats)

    def vgg_error(self, model_state, generated, target):
        """The perceptual loss of each pair (B,) (the paper's "VGG error")."""
        fa, fb = self.features(model_state, generated), self.features(model_state, target)
        return perceptual.perceptual_loss(fa, fb, self._statistics(model_state), per_example=True)

    # --- losses and the GAN update -----------------------------------------------------------------------
    def loss(self, params, model_state, batch, rng):
        """Stage 1: the perceptual loss of the generated target (module docstring)."""
        del rng
        generated = self.generate(params, batch)["image"]  # (B, S, S, 3)
        loss = self.perceptual_loss(model_state, generated, batch["target"])
        metrics = {
            "perceptual_loss": loss,
            "train_l1": jnp.mean(jnp.abs(to_unit(generated) - to_unit(batch["target"]))),
        }
        return loss, (metrics, {})

    def discriminator_loss(self, params, model_state, batch, rng):
        del model_state, rng
        fake = jax.lax.stop_gradient(self.generate(params, batch)["image"])
        real_logits = self.discriminate(params, batch["target"], batch)
        fake_logits = self.discriminate(params, fake, batch)
        loss = 0.5 * (bce(real_logits, 1.0) + bce(fake_logits, 0.0))
        metrics = {
            "d_loss": loss,
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }
        return loss, (metrics, {})

    def generator_loss(self, params, model_state, batch, rng):
        del rng
        generated = self.generate(params, batch)["image"]
        vgg = self.perceptual_loss(model_state, generated, batch["target"])
        adversarial = bce(self.discriminate(params, generated, batch), 1.0)
        loss = vgg + float(self.config.gan.weight) * adversarial
        metrics = {"g_loss": loss, "perceptual_loss": vgg, "gan_loss": adversarial}
        return loss, (metrics, {})

    def gan_update(self, state, batch, rng, optimizer):
        """Stage 2 (module docstring): a discriminator step, then a generator step from
        gan.disc_only_steps on."""
        from jhuman.update import compute_gradients

        d_rng, g_rng = jax.random.split(rng)
        step, model_state = state["step"], state["model_state"]
        _, d_metrics, _, grads = compute_gradients(
            self.discriminator_loss, state["params"], model_state, batch, d_rng,
            trainable=optimizer.group_mask("discriminator"),
        )  # fmt: skip
        d_norm = optax.tree.norm(grads["discriminator"])
        params, opt_state = optimizer.apply(
            grads, state["opt_state"], state["params"], step, groups=("discriminator",)
        )
        _, g_metrics, _, grads = compute_gradients(
            self.generator_loss,
            params,
            model_state,
            batch,
            g_rng,
            trainable=optimizer.group_mask("generator"),
        )  # the discriminator's weight gradients are never computed here
        g_norm = optax.tree.norm(grads["generator"])
        new_params, new_opt_state = optimizer.apply(grads, opt_state, params, step, groups=("generator",))
        on = step >= int(self.config.gan.disc_only_steps)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(on, n, o), new, old)
        params, opt_state = keep(new_params, params), keep(new_opt_state, opt_state)
        metrics = {
            **d_metrics,
            **g_metrics,
            "loss": g_metrics["g_loss"],
            "d_grad_norm": d_norm,
            "g_grad_norm": g_norm,
            "generator_on": on.astype(jnp.float32),
        }
        return {**state, "params": params, "opt_state": opt_state}, metrics

    # --- VGG weights and statistics ----------------------------------------------------------------------
    def pretrained_variables(self, variables):
        """The fresh run's VGG-19 (loss.vgg_weights) and statistics (loss.vgg_statistics, or computed and
        written into the workdir) in `variables['vgg']`; the networks are left as they are."""
        loss_cfg = self.config.loss
        vgg, weights_id = perceptual.load_vgg19(loss_cfg.vgg_weights, width=int(loss_cfg.vgg_width))
        expected = jax.tree.structure(variables["vgg"]["weights"])
        if jax.tree.structure(vgg) != expected:
            raise ValueError(
                f"loss.vgg_weights={loss_cfg.vgg_weights!r} gives a VGG-19 of another layout than "
                f"loss.vgg_width={loss_cfg.vgg_width} makes"
            )
        if loss_cfg.vgg_statistics:
            stats = perceptual.load_statistics(os.path.expanduser(loss_cfg.vgg_statistics))
            perceptual.check_pairing(stats, weights_id, self.preprocessing)
            print(f"VGG statistics from {loss_cfg.vgg_statistics} ({stats.weights}, {stats.preprocessing})")
        else:
            stats = self.compute_statistics(vgg, weights_id)
        statistics = {
            "mean": {n: jnp.asarray(m, jnp.float32) for n, m in zip(perceptual.LAYERS, stats.mean)},
            "std": {n: jnp.asarray(s, jnp.float32) for n, s in zip(perceptual.LAYERS, stats.std)},
        }
        return {**variables, "vgg": {"weights": vgg, "statistics": statistics}}

    def compute_statistics(self, vgg, weights_id) -> perceptual.VGGStatistics:
        """Per-channel statistics of the VGG layers over loss.statistics_batches training batches (sources
        and targets), written to <workdir>/vgg_statistics.npz when the trainer gave a workdir."""
        from input_pipeline import pipeline

        count = int(self.config.loss.statistics_batches)
        module = importlib.import_module(self.READER)
        stream = module.train_stream(
            self.data_root(),
            batch_size=int(self.config.train.batch_size),
            seed=int(self.config.seed),
            start_index=0,
            process_index=0,  # every host computes the same statistics
            process_count=1,
            **common.source_kwargs(self.config, pipeline.Stats()),
            **self.train_options(),
        )
        try:
            batches = []
            for _, batch in zip(range(count), stream):
                batches.append(np.concatenate([batch["source"], batch["target"]]))
        finally:
            getattr(stream, "close", lambda: None)()
        stats = perceptual.compute_statistics(vgg, batches, self.preprocessing, weights_id)
        if self.workdir:  # a training run without loss.vgg_statistics (`jhuman posewarp-stats` says its own)
            path = os.path.join(self.workdir, STATISTICS_FILE)
            if jax.process_index() == 0:
                perceptual.save_statistics(stats, path)
            print(
                f"loss.vgg_statistics is empty: computed the VGG statistics over {len(batches)} training "
                f"batches ({weights_id}, {self.preprocessing}); written to {path} (loss.vgg_statistics can "
                "name it)"
            )
        return stats

    # --- prediction --------------------------------------------------------------------------------------
    @staticmethod
    def predict_inputs(batch) -> dict:
        """What `predict` takes from a batch: the source image and both poses."""
        return {k: batch[k] for k in INPUT_KEYS}

    def predict(self, variables, inputs) -> dict:
        """inputs {source (B, S, S, 3) in [-1, 1], source_joints, target_joints (B, 14, 2) in crop pixels,
        source_visible, target_visible (B, 14) bool} -> the generator's outputs: 'image' (B, S, S, 3) in
        [-1, 1] and, for the modular generator, 'fg', 'bg', 'target_mask', 'masks', 'warped', 'prior'."""
        return self.generate(variables["params"], inputs)

    def evaluator(self) -> common.SkipCountingEvaluator:
        return self.count_skips(PoseWarpEvaluator(self))

    # --- data --------------------------------------------------------------------------------------------
    def train_options(self) -> dict:
        data = self.config.data
        return {"image_size": int(data.image_size), "min_gap": float(data.min_gap)}

    def eval_options(self) -> dict:
        data, ev = self.config.data, self.config.eval
        return {
            "image_size": int(data.image_size),
            "min_gap": float(data.min_gap),
            "num_pairs": int(ev.num_pairs),
            "seed": int(ev.seed),
        }

    # --- pictures ----------------------------------------------------------------------------------------
    def visualize(self, batch, outputs) -> dict:
        """One row per pair: source | target pose | warped layers | masks | output | target."""
        from jhuman import viz

        rows = []
        for i in range(len(batch["source"])):
            if "mask" in batch and not batch["mask"][i]:
                continue
            rows.append(viz.posewarp_row(
                batch["source"][i], batch["target_joints"][i], batch["target_visible"][i],
                {k: v[i] for k, v in outputs.items()}, target=batch["target"][i],
            ))  # fmt: skip
        return {"predictions": viz.image_grid(rows, titles=list(viz.POSEWARP_TITLES))}

    def predict_folder(self, variables, image_dir: str, out_dir: str) -> dict:
        """Generated targets for the seeded test pairs of a folder in the published layout (`jhuman predict`).

        image_dir: a data root holding test/ (else train/), or one split folder (frames/ + info/). Its pairs
        are test_pairs(eval.num_pairs, eval.seed, data.min_gap), each cropped as evaluation crops it. Per pair
        k: `pair_<k>.png` (the generated target, data.image_size square) and `pair_<k>_sheet.png` (source |
        target pose | warped layers | masks | output | target); `<out_dir>/posewarp.json` lists the pairs
        (video, 1-based frames, files, L1 / VGG error / SSIM against the real target frame), their means and
        what was skipped (a bad .mat, a missing frame: named with the reason).
        """
        from input_pipeline.pipeline import CorruptExample
        from jhuman import viz

        data = importlib.import_module(self.READER)
        root, split = published_split(image_dir)
        size, ev = int(self.config.data.image_size), self.config.eval
        stats = data.READER.builder.STATS()
        pairs = data.test_pairs(root, split, int(ev.num_pairs), int(ev.seed), float(self.config.data.min_gap),
                                stats=stats)  # fmt: skip
        skipped = [{"pair": None, "reason": f"{path}: {reason}"} for path, reason in stats.reasons.items()]
        os.makedirs(out_dir, exist_ok=True)
        base = os.path.join(root, split)
        videos, entries, outputs_by_pair = {}, [], {}
        for k, (name, i, j) in enumerate(pairs):
            pair = {"video": name, "source_frame": i + 1, "target_frame": j + 1}
            try:
                if name not in videos:
                    videos[name] = data.read_video((base, name))
                example = data.pair_example(videos[name], i, j, size)
            except CorruptExample as e:
                print(f"warning: {e}; skipped")
                skipped.append({"pair": pair, "reason": f"{e.path}: {e.reason}"})
                continue
            inputs = {key: np.asarray(example[key])[None] for key in INPUT_KEYS}
            out = jax.device_get(self._predict_jit(variables, inputs))
            scores = jax.device_get(self._scores_jit(variables, out["image"], example["target"][None]))
            out = {key: np.asarray(v)[0] for key, v in out.items()}
            stem = f"pair_{k:03d}"
            files = {"image": f"{stem}.png", "sheet": f"{stem}_sheet.png"}
            viz.save_png(os.path.join(out_dir, files["image"]), viz.signed_to_unit(out["image"]))
            row = viz.posewarp_row(example["source"], example["target_joints"], example["target_visible"], out,
                                   target=example["target"])  # fmt: skip
            viz.save_png(
                os.path.join(out_dir, files["sheet"]), viz.image_grid([row], list(viz.POSEWARP_TITLES))
            )
            entries.append({**pair, **files, **{m: round(float(v[0]), 6) for m, v in scores.items()}})
            outputs_by_pair[stem] = list(files.values())
        means = (
            {m: float(np.mean([e[m] for e in entries])) for m in PoseWarpEvaluator.METRICS} if entries else {}
        )
        summary = {
            "folder": os.path.join(root, split),
            "pairs": entries,
            "means": means,
            "skipped": skipped,
            "num_skipped": len(skipped),
            "num_images": len(entries),
            "outputs": outputs_by_pair,
        }
        with open(os.path.join(out_dir, RESULTS_FILE), "w") as f:
            json.dump(summary, f, indent=2)
        return summary

    @functools.cached_property
    def _scores_jit(self):
        """(variables, generated, target) -> the evaluator's per-pair scores (B,) each."""
        evaluator = PoseWarpEvaluator(self)
        return jax.jit(
            lambda variables, generated, target: evaluator.scores(
                {k: v for k, v in variables.items() if k != "params"}, generated, target
            )
        )


def published_split(folder: str) -> tuple[str, str]:
    """(root, split) of a folder in the published layout: a root with test/ (preferred) or train/, or a split
    folder itself (frames/ and info/ inside, named test or train). FileNotFoundError naming what is missing."""
    folder = os.path.abspath(os.path.expanduser(folder))
    has_layout = lambda d: os.path.isdir(os.path.join(d, "info")) and os.path.isdir(os.path.join(d, "frames"))
    for split in ("test", "train"):
        if has_layout(os.path.join(folder, split)):
            return folder, split
    if has_layout(folder) and os.path.basename(folder) in ("test", "train"):
        return os.path.dirname(folder), os.path.basename(folder)
    raise FileNotFoundError(
        f"{folder} is not in the published pose-video layout: looked for test/ or train/ with frames/<video>/"
        "<k>.jpg|png and info/<video>.mat inside (or such a test/ or train/ folder itself)"
    )
