"""Human parsing on LIP (Gong et al., CVPR 2017) with DeepLab: model + loss + evaluator + pictures.

- Input: RGB in 0..255 from the pipeline; the model normalises (`model.input_norm`: 'torchvision' =
  ImageNet mean/std on [0, 1] RGB, the layout of imported torchvision weights; 'caffe' = BGR minus the Caffe
  mean, the released LIP/DeepLab code).
- Loss: softmax cross-entropy at the logit resolution against `label[::8, ::8]` (as the released code
  subsamples the ground truth), mean over the batch's non-ignored pixels (255 and >= num_classes ignored).
- Evaluation: the official LIP protocol: logits upsampled to the padded input size, argmax, one confusion
  matrix over the whole split (rows = ground truth), padding ignored through label 255 and the batch mask.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jhuman import classes
from jhuman.metrics import parsing as parsing_metrics
from jhuman.models import deeplab
from jhuman.ops import image as image_ops
from jhuman.ops import ssl as ssl_ops
from jhuman.tasks import common

MODELS = ("deeplab", "attention")


def build_model(config) -> common.Normalized:
    """DeepLab (VGG-16 LargeFOV / ResNet ASPP) or Attention-to-Scale over it, wrapped with input normalisation."""
    m = config.model
    if m.name not in MODELS:
        raise ValueError(f"model.name={m.name!r} is not one of {MODELS}")
    dtype = jnp.dtype(config.train.compute_dtype)
    net = deeplab.DeepLab(
        backbone=m.backbone,
        num_classes=m.num_classes,
        head=m.head,
        rates=tuple(m.rates),
        width=m.width,
        output_stride=m.output_stride,
        norm=m.norm,
        decoder=m.get("decoder", 0),
        dtype=dtype,
        **({"stage_sizes": tuple(m.stage_sizes)} if m.stage_sizes else {}),
    )
    if m.name == "attention":
        net = deeplab.AttentionToScale(
            base=net, scales=tuple(m.scales), attention_width=m.attention_width, dtype=dtype
        )
    return common.Normalized(net, common.check_input_norm(m.input_norm))


def parsing_losses(out, labels, ssl_cfg, step):
    """The training loss of the LIP paper and its metrics.

    out: the model's outputs ('logits' (B, h, w, C); with Attention-to-Scale also 'scale_logits'
    (S, B, h, w, C)); labels: (B, h, w) ground truth at the logit grid. Cross-entropy per image (mean over its
    non-ignored pixels), then over the batch; Attention-to-Scale adds one such loss per scale. With SSL
    (ssl.enabled, from step ssl.start_step) every per-image loss is weighted by the joint loss of the fused
    prediction, Eq. (2) of the paper, with the gradient variant ssl.variant (see jhuman.ops.ssl).
    """
    logits = out["logits"].astype(jnp.float32)
    outputs = [logits] + (
        [s.astype(jnp.float32) for s in out["scale_logits"]] if "scale_logits" in out else []
    )
    ce = jnp.stack([ssl_ops.per_image_cross_entropy(o, labels) for o in outputs])  # (1 + S, B)
    metrics = {"cross_entropy": jnp.mean(ce[0])}
    if ssl_cfg.enabled:
        multiplier, joint = ssl_ops.ssl_weights(
            labels, logits, ssl_cfg.variant, float(ssl_cfg.sigma), float(ssl_cfg.weight)
        )  # (B,), (B,)
        active = step >= int(ssl_cfg.start_step)
        multiplier = jnp.where(active, multiplier, 1.0)
        metrics["joint_loss"] = jnp.mean(joint)
        ce = ce * multiplier[None]
    return jnp.sum(jnp.mean(ce, axis=1)), metrics


class ConfusionEvaluator:
    """Accumulates one (C, C) confusion matrix on device over a split; `finalize` gives the LIP scores.

    The count is kept as two int32 words (low 20 bits + high part) so that whole splits of any size fit
    without 64-bit integers on device.
    """

    SHIFT = 20

    def __init__(self, predict_fn, num_classes):
        self.predict_fn = predict_fn
        self.num_classes = num_classes

    def init(self):
        shape = (self.num_classes, self.num_classes)
        return {
            "low": jnp.zeros(shape, jnp.int32),
            "high": jnp.zeros(shape, jnp.int32),
        }  # two buffers: donated

    def update(self, acc, variables, batch):
        pred = self.predict_fn(variables, batch["image"])["labels"]  # (B, S, S)
        label = batch["label"]
        valid = (label >= 0) & (label < self.num_classes) & batch["mask"][:, None, None]
        low = acc["low"] + parsing_metrics.confusion_matrix_jax(label, pred, self.num_classes, valid)
        return {"low": low & ((1 << self.SHIFT) - 1), "high": acc["high"] + (low >> self.SHIFT)}

    def finalize(self, acc) -> dict:
        confusion = (np.asarray(acc["high"], np.int64) << self.SHIFT) + np.asarray(acc["low"], np.int64)
        return parsing_metrics.scores(confusion)


class ParsingTask(common.ReaderData):
    """LIP human parsing (see module docstring)."""

    READER, DATASET, SYNTHETIC = "input_pipeline.lip", "lip", "parsing"
    sweep_columns = (
        ("pixel_accuracy", "pixel acc", 100.0),
        ("mean_accuracy", "mean acc", 100.0),
        ("mean_iou", "mIoU", 100.0),
    )

    def __init__(self, config):
        self.config = config
        self.num_classes = int(config.model.num_classes)
        self.net = build_model(config)
        self.logit_stride = deeplab.logit_stride(config.model.output_stride, config.model.get("decoder", 0))

    @staticmethod
    def format_eval(results) -> str:
        """The LIP scores as a table: IoU per class, pixel accuracy, mean accuracy, mean IoU (percent), and
        the evaluation examples skipped, if any."""
        return "\n".join(filter(None, [parsing_metrics.format_table(results), common.format_skips(results)]))

    # --- model -------------------------------------------------------------------------------------------
    def example_batch(self, batch_size: int = 1) -> dict:
        crop = int(self.config.data.crop_size)
        return {
            "image": np.zeros((batch_size, crop, crop, 3), np.float32),
            "label": np.zeros((batch_size, crop, crop), np.int32),
        }

    def init(self, rng):
        image = jnp.asarray(self.example_batch()["image"])
        return self.net.init({"params": rng, "dropout": rng}, image, train=False)

    def apply(self, variables, images, train=False, rng=None):
        return common.apply(self.net, variables, images, train, rng)

    def loss(self, params, model_state, batch, rng):
        out, new_state = self.apply({"params": params, **model_state}, batch["image"], train=True, rng=rng)
        logits = out["logits"]  # (B, h, w, C)
        labels = image_ops.subsample_labels(batch["label"], logits.shape[1:3], self.logit_stride)
        loss, metrics = parsing_losses(out, labels, self.config.ssl, batch.get("step", 0))
        valid = (labels >= 0) & (labels < self.num_classes)
        correct = jnp.sum((jnp.argmax(logits, -1) == labels) & valid)
        metrics["train_pixel_accuracy"] = correct / jnp.maximum(jnp.sum(valid), 1)
        return loss, (metrics, dict(new_state))

    def predict_logits(self, variables, images):
        """(B, H, W, C) float32 logits at the input resolution, averaged over eval.scales and, with eval.flip,
        over the horizontally flipped images (their left/right channels swapped back), as in later LIP works."""
        ev, stride = self.config.eval, float(self.logit_stride)
        height, width = images.shape[1:3]
        total = 0.0
        for scale in tuple(ev.scales):  # a few static test-time scales, not a loop over data
            size = (image_ops.scaled_size(height, scale), image_ops.scaled_size(width, scale))
            x = images if size == (height, width) else image_ops.resize_bilinear(images, size)
            for flipped in (False, True) if ev.flip else (False,):
                out, _ = self.apply(variables, x[:, :, ::-1] if flipped else x)
                # Logit i sits on scaled pixel stride*i, i.e. input pixel stride*i*(H-1)/(h_s-1).
                strides = (
                    stride * (height - 1) / max(size[0] - 1, 1),
                    stride * (width - 1) / max(size[1] - 1, 1),
                )
                if flipped:  # flip back at the scaled input's full resolution, where the geometry is exact
                    up = image_ops.upsample_aligned(out["logits"], size, stride)[:, :, ::-1]
                    up = up[..., classes.LIP_FLIP_CHANNELS]
                    logits = up if size == (height, width) else image_ops.resize_bilinear(up, (height, width))
                else:
                    logits = image_ops.upsample_aligned(out["logits"], (height, width), strides)
                total = total + logits
        return total / (len(tuple(ev.scales)) * (2 if ev.flip else 1))

    def predict(self, variables, images):
        """Raw RGB (B, H, W, 3) -> {'labels': (B, H, W) int32, 'probabilities': (B, H, W, C) float32}."""
        logits = self.predict_logits(variables, images)
        return {
            "labels": jnp.argmax(logits, -1).astype(jnp.int32),
            "probabilities": jax.nn.softmax(logits, -1),
        }

    def evaluator(self) -> common.SkipCountingEvaluator:
        """The confusion matrix over the split, plus the count of skipped examples (common.count_skips)."""
        evaluator = ConfusionEvaluator(
            lambda v, x: {"labels": self.predict(v, x)["labels"]}, self.num_classes
        )
        return self.count_skips(evaluator)

    def pretrained_variables(self, variables):
        """`init.backbone_weights` imported into the trunk (see jhuman.tasks.common), or None."""
        prefix = ("net", "net", "trunk") if self.config.model.name == "attention" else ("net", "trunk")
        return common.pretrained_variables(self.config, variables, self.config.model.backbone, prefix)

    # --- data --------------------------------------------------------------------------------------------
    def train_options(self) -> dict:
        data = self.config.data
        return {"crop_size": int(data.crop_size), "scales": tuple(data.scales)}

    def eval_options(self) -> dict:
        return {"pad_size": int(self.config.eval.pad_size)}

    # --- pictures ----------------------------------------------------------------------------------------
    def visualize(self, batch, outputs) -> dict:
        """One row per example: image | ground truth | prediction | overlay, cropped to the original size."""
        from jhuman import viz

        def row(i, image):
            h, w = (
                (int(batch["height"][i]), int(batch["width"][i]))
                if "height" in batch
                else batch["label"].shape[1:3]
            )
            image = image[:h, :w]
            pred = np.asarray(outputs["labels"][i, :h, :w])
            gt = np.asarray(batch["label"][i, :h, :w])
            return [image, viz.colorize(gt), viz.colorize(pred), viz.overlay(image, pred)]

        titles = ["image", "ground truth", "prediction", "overlay"]
        return {"predictions": common.batch_grid(batch, row, titles)}

    def predict_folder(self, variables, image_dir: str, out_dir: str) -> dict:
        """Label PNGs (`<stem>.png`, LIP values) and colour overlays for every image in a folder.

        Each image is padded (or, if larger, downscaled) to eval.pad_size, so one compiled shape serves all;
        the labels come back at the image's original size. Writes `<out_dir>/predictions.json`. Two images
        with one stem (`a.jpg`, `a.png`) get their whole names as stems (`a.jpg.png`, see
        common.output_stems); each entry names its own files.
        """
        size = int(self.config.eval.pad_size)
        return common.predict_folder(
            variables,
            image_dir,
            out_dir,
            prepare=lambda image: common.fit_and_pad(image, size),
            predict=jax.jit(lambda v, x: {"labels": self.predict(v, x)["labels"]}),
            write=self._write_labels,
            results_file="predictions.json",
            entries_key="images",
            files=("{}.png", "{}_overlay.png"),
            indent=2,
        )

    def _write_labels(self, out_dir, name, stem, image, scale, outputs) -> list:
        """`<stem>.png` (labels at the original size) and `<stem>_overlay.png`; the image's predictions entry."""
        import cv2

        from jhuman import viz

        h, w = image.shape[:2]
        small = (max(1, round(h * scale)), max(1, round(w * scale))) if scale != 1.0 else (h, w)
        labels = outputs["labels"][: small[0], : small[1]]
        if scale != 1.0:
            labels = cv2.resize(labels.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        labels = labels.astype(np.uint8)
        cv2.imwrite(os.path.join(out_dir, f"{stem}.png"), labels)
        viz.save_png(os.path.join(out_dir, f"{stem}_overlay.png"), viz.overlay(image, labels))
        counts = np.bincount(labels.ravel(), minlength=self.num_classes)
        fractions = {
            classes.LIP_CLASSES[c]: round(float(counts[c]) / labels.size, 6) for c in np.flatnonzero(counts)
        }
        entry = {
            "image": name,
            "labels": f"{stem}.png",
            "overlay": f"{stem}_overlay.png",
            "height": h,
            "width": w,
            "class_fractions": fractions,
        }
        return [entry]
