"""Semantic Human Matting (Chen et al., ACM MM 2018): T-Net + M-Net + fusion in three stages, on the one trainer.

Stages (`matting.stage`, configs/matting.py); the network a stage does not train is a frozen optim group, so
every checkpoint carries both and `init.from_workdir` chains them:
- 'tnet': T-Net alone on T-Net crops, L_t = 3-class cross-entropy against the trimap (SHM Sec. 3.4).
- 'mnet': M-Net on M-Net crops with the ground-truth trimap as one-hot "probabilities", fused with it
  (alpha_p = Fs + Us alpha_r, SHM eq. 4: exact outside the unknown band), L_p (SHM eq. 5).
- 'end2end': T-Net on the crop (B, S, S), its softmax probabilities; the M-Net window (the host's
  batch['window'], [y0, x0, size] in crop pixels) resampled to data.mnet_size with crop_and_resize inside the
  step from the image, the probabilities (so L_p's gradient reaches T-Net through them) and the targets
  (alpha, F, B) alike; L = L_p + lambda L_t (lambda = matting.trimap_weight, 0.01; SHM eq. 6).
Images are RGB 0..255 (the model normalises); trimap classes follow jhuman.ops.matting.CLASSES
(background, unknown, foreground) everywhere.

Evaluation: alpha_p on the padded evaluation image (`eval.trimap`: from T-Net's trimap, the paper's pipeline,
or from the split's own trimap one-hot, "ground-truth trimap + DIM", the M-Net stage's default), scored on
the host over each example's valid region by jhuman.metrics.matting.MattingScores: SAD / MSE / Grad / Conn in
the Deep Image Matting protocol (unknown region) and in SHM's whole-image per-pixel protocol; T-Net's trimap
accuracy (pixels whose predicted class is the trimap's) whenever T-Net runs. The T-Net stage reports the
trimap accuracy only (its M-Net is untrained).

Where we differ from the paper: the end-to-end M-Net window is drawn by the host inside the T-Net crop and
resampled on device (the paper crops two inputs on the host; one T-Net crop per example keeps L_t and L_p on
the same pixels and the shapes static). `predict` pads to a few size buckets (multiples of 32) with replicated
edges instead of running every image at its own shape, so a folder compiles a handful of programs.
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.metrics import matting as matting_metrics
from jhuman.models import matting as matting_model
from jhuman.ops import image as image_ops
from jhuman.ops import matting as matting_ops
from jhuman.tasks import common

STAGES = ("tnet", "mnet", "end2end")
# stage -> (arch, prefix) of a single init.backbone_weights file: the network the stage trains.
PRETRAINED = {"tnet": ("resnet50", "net/tnet/trunk"), "mnet": ("vgg16", "net/mnet/encoder")}
EVAL_TRIMAPS = ("predicted", "ground_truth")


def build_model(config) -> matting_model.SemanticHumanMatting:
    m = config.model
    return matting_model.SemanticHumanMatting(
        tnet_width=int(m.tnet_width),
        tnet_stage_sizes=tuple(m.tnet_stage_sizes),
        mnet_width=int(m.mnet_width),
        trimap_channels=int(m.trimap_channels),
        fusion=bool(m.fusion),
        input_norm=common.check_input_norm(m.input_norm),
        dtype=jnp.dtype(config.train.compute_dtype),
        norm=m.norm,
    )


def check_choice(key: str, value: str, valid) -> str:
    if value not in valid:
        raise ValueError(f"{key}={value!r} is not one of {list(valid)}")
    return value


class MattingEvaluator:
    """Predicts each batch on device, scores it on the host: alpha metrics per example over its valid region
    (MattingScores: both protocols) and the trimap accuracy summed over pixels."""

    host_update = True

    def __init__(self, predict_fn, alpha: bool, trimap: bool):
        self.predict_fn, self.alpha, self.trimap = predict_fn, alpha, trimap

    def init(self):
        return {"scores": matting_metrics.MattingScores(), "correct": 0, "pixels": 0}

    def update(self, acc, variables, batch):
        from jax.experimental import multihost_utils

        out = multihost_utils.process_allgather(
            self.predict_fn(variables, batch["image"], batch["trimap"]), tiled=True
        )
        gt = multihost_utils.process_allgather(
            {k: batch[k] for k in ("alpha", "trimap", "size", "mask")}, tiled=True
        )
        for i in np.flatnonzero(np.asarray(gt["mask"])):
            h, w = (int(v) for v in gt["size"][i])
            trimap = np.asarray(gt["trimap"][i, :h, :w], np.uint8)
            if self.alpha:
                acc["scores"].add(
                    np.asarray(out["alpha"][i, :h, :w, 0], np.float64),
                    np.asarray(gt["alpha"][i, :h, :w, 0], np.float64),
                    trimap,
                )
            if self.trimap:
                acc["correct"] += int(
                    np.sum(np.asarray(out["trimap"][i, :h, :w]) == matting_ops.trimap_classes(trimap))
                )
                acc["pixels"] += h * w
        return acc

    def finalize(self, acc) -> dict:
        results = {}
        if self.alpha:
            results.update(
                {k: (float(v) if k != "count" else int(v)) for k, v in acc["scores"].result().items()}
            )
        if self.trimap:
            results["trimap_accuracy"] = float(acc["correct"]) / max(int(acc["pixels"]), 1)
        return results


class MattingTask(common.ReaderData):
    """Semantic Human Matting (see module docstring). Parameters live under net/tnet/ and net/mnet/."""

    READER, DATASET, SYNTHETIC = "input_pipeline.matting", "matting", "matting"
    sweep_columns = (
        ("whole_sad", "SAD", 1.0),
        ("whole_mse", "MSE", 1.0),
        ("whole_grad", "Grad", 1.0),
        ("whole_conn", "Conn", 1.0),
        ("sad", "SAD (trimap)", 1.0),
        ("trimap_accuracy", "trimap acc", 100.0),
    )

    def __init__(self, config):
        self.config = config
        self.stage = check_choice("matting.stage", config.matting.stage, STAGES)
        self.eval_trimap = check_choice("eval.trimap", config.eval.trimap, EVAL_TRIMAPS)
        self.net = build_model(config)
        self._predict_jit = jax.jit(self.predict)

    @staticmethod
    def format_eval(results) -> str:
        """Both protocols' table (when alpha was scored), the trimap accuracy, the skipped examples."""
        lines = []
        if "sad" in results:
            lines.append(matting_metrics.format_table(results))
        if "trimap_accuracy" in results:
            lines.append(f"T-Net trimap accuracy: {100.0 * results['trimap_accuracy']:.2f}%")
        lines.append(common.format_skips(results))
        return "\n".join(filter(None, lines))

    # --- model -------------------------------------------------------------------------------------------
    def _apply(self, variables, *args, method: str = "__call__", train: bool = False, rng=None):
        """(outputs, new model state) of SemanticHumanMatting.<method>; the task's variables keep every
        collection under 'net' (parameter paths net/tnet/..., net/mnet/...: the config's optim groups and
        init.from_workdir patterns). Training needs `rng` (PSPNet's dropout)."""
        inner = {k: v["net"] for k, v in variables.items()}
        fn = None if method == "__call__" else method
        if not train:
            return self.net.apply(inner, *args, train=False, method=fn), {}
        mutable = [k for k in inner if k != "params"]
        out, new = self.net.apply(inner, *args, train=True, method=fn, mutable=mutable, rngs={"dropout": rng})
        return out, {k: {"net": v} for k, v in new.items()}

    def example_batch(self, batch_size: int = 1) -> dict:
        size = int(self.config.data.crop_size)
        return {"image": np.zeros((batch_size, size, size, 3), np.float32)}

    def init(self, rng):
        """Both networks' variables (the test-time pipeline runs them all), under 'net'."""
        image = jnp.asarray(self.example_batch()["image"])
        variables = self.net.init({"params": rng, "dropout": rng}, image, train=False)
        return {k: {"net": v} for k, v in variables.items()}

    def loss(self, params, model_state, batch, rng):
        """The stage's loss (module docstring) and its metrics."""
        m = self.config.matting
        variables = {"params": params, **model_state}
        image = batch["image"]  # (B, S, S, 3) 0..255
        metrics = {}
        if self.stage in ("tnet", "end2end"):
            logits, state = self._apply(variables, image, method="trimap_logits", train=True, rng=rng)
            logits = logits.astype(jnp.float32)
            trimap_loss = matting_ops.trimap_loss(logits, batch["trimap"])
            metrics["trimap_loss"] = trimap_loss
            metrics["train_trimap_accuracy"] = jnp.mean(jnp.argmax(logits, -1) == batch["trimap"])
            if self.stage == "tnet":
                return trimap_loss, (metrics, state)
            variables = {"params": params, **{**model_state, **state}}
            probs = jax.nn.softmax(logits, -1)  # (B, S, S, 3)
            size = int(self.config.data.mnet_size)
            window = batch["window"]  # (B, 3) [y0, x0, size] in crop pixels
            resample = functools.partial(image_ops.crop_and_resize, windows=window, out_size=size)
            image, probs = resample(image), resample(probs)  # (B, M, M, 3) each
            alpha_g, fg, bg = (resample(batch[k]) for k in ("alpha", "fg", "bg"))
        else:  # the M-Net stage: the ground-truth trimap, one-hot
            probs = jax.nn.one_hot(batch["trimap"], len(matting_ops.CLASSES), dtype=jnp.float32)
            alpha_g, fg, bg = batch["alpha"], batch["fg"], batch["bg"]
            trimap_loss = 0.0
        out, state = self._apply(variables, image, probs, method="alpha", train=True, rng=rng)
        alpha_p = out["alpha_p"].astype(jnp.float32)  # (B, M, M, 1)
        prediction_loss, parts = matting_ops.prediction_loss(
            alpha_p, alpha_g, fg, bg, batch["has_fg_bg"], gamma=float(m.gamma), eps=float(m.eps)
        )
        metrics.update(parts)
        metrics["prediction_loss"] = prediction_loss
        metrics["train_alpha_mae"] = jnp.mean(jnp.abs(alpha_p - alpha_g))
        loss = prediction_loss + float(m.trimap_weight) * trimap_loss
        return loss, (metrics, state)

    def predict(self, variables, images):
        """Raw RGB (B, H, W, 3), H and W multiples of 32 -> the test-time pipeline's outputs:
        {'alpha': alpha_p (B, H, W, 1) in [0, 1], 'alpha_r': M-Net's own (B, H, W, 1), 'trimap': T-Net's
        classes (B, H, W) int32, 'trimap_probs': (B, H, W, 3)}."""
        out, _ = self._apply(variables, images)
        probs = jax.nn.softmax(out["trimap_logits"].astype(jnp.float32), -1)
        return {
            "alpha": out["alpha_p"].astype(jnp.float32),
            "alpha_r": out["alpha_r"].astype(jnp.float32),
            "trimap": jnp.argmax(probs, -1).astype(jnp.int32),
            "trimap_probs": probs,
        }

    def predict_with_trimap(self, variables, images, trimap_values):
        """M-Net fed a given trimap (uint8 0 / 128 / 255, (B, H, W)) as one-hot probabilities, fused with it:
        {'alpha': (B, H, W, 1), 'alpha_r': (B, H, W, 1)}."""
        probs = jax.nn.one_hot(
            matting_ops.trimap_classes(trimap_values), len(matting_ops.CLASSES), dtype=jnp.float32
        )
        out, _ = self._apply(variables, images, probs, method="alpha")
        return {"alpha": out["alpha_p"].astype(jnp.float32), "alpha_r": out["alpha_r"].astype(jnp.float32)}

    def _eval_outputs(self, variables, images, trimap_values):
        """What the evaluator scores: 'alpha' (unless the T-Net stage) and T-Net's 'trimap' (when it runs)."""
        if self.stage == "tnet":
            logits, _ = self._apply(variables, images, method="trimap_logits")
            return {"trimap": jnp.argmax(logits, -1).astype(jnp.int32)}
        if self.eval_trimap == "ground_truth":
            return {"alpha": self.predict_with_trimap(variables, images, trimap_values)["alpha"]}
        out = self.predict(variables, images)
        return {"alpha": out["alpha"], "trimap": out["trimap"]}

    def evaluator(self) -> common.SkipCountingEvaluator:
        """MattingScores over the split (and T-Net's trimap accuracy), plus the skipped examples."""
        scores_alpha = self.stage != "tnet"
        scores_trimap = self.stage == "tnet" or self.eval_trimap == "predicted"
        evaluator = MattingEvaluator(jax.jit(self._eval_outputs), scores_alpha, scores_trimap)
        return self.count_skips(evaluator)

    def pretrained_variables(self, variables):
        """`init.backbone_weights`: one file goes into the network the stage trains (T-Net's ResNet trunk,
        M-Net's VGG-16 encoder, its first convolution widened); (prefix, arch, file) entries anywhere."""
        arch, prefix = PRETRAINED.get(self.stage, (None, None))
        return common.pretrained_variables(self.config, variables, arch, prefix)

    # --- data --------------------------------------------------------------------------------------------
    def train_options(self) -> dict:
        data = self.config.data
        return {
            "stage": self.stage,
            "crop_size": int(data.crop_size),
            "mnet_size": int(data.mnet_size),
            "mnet_crops": tuple(int(c) for c in data.mnet_crops),
        }

    def eval_options(self) -> dict:
        return {"max_side": int(self.config.eval.max_side), "pad_size": int(self.config.eval.pad_size)}

    # --- pictures ----------------------------------------------------------------------------------------
    def visualize(self, batch, outputs) -> dict:
        """One row per example: image | trimap | T-Net trimap | ground-truth alpha | alpha | composite, each
        cropped to the example's size. The outputs are the test-time pipeline's (`predict`: T-Net's trimap into
        M-Net), also after the stages that train one network only (the other is then at its initialisation)."""
        from jhuman import viz

        def row(i, image):
            h, w = (int(v) for v in batch["size"][i]) if "size" in batch else image.shape[:2]
            alpha = np.asarray(outputs["alpha"][i, :h, :w, 0])
            return [
                image[:h, :w],
                np.asarray(batch["trimap"][i, :h, :w], np.uint8),
                viz.trimap_image(np.asarray(outputs["trimap"][i, :h, :w])),
                np.asarray(batch["alpha"][i, :h, :w, 0]),
                alpha,
                viz.composite(image[:h, :w], alpha, viz.checkerboard(h, w)),
            ]

        titles = ["image", "trimap", "T-Net trimap", "alpha (truth)", "alpha", "composite"]
        return {"predictions": common.batch_grid(batch, row, titles)}

    def predict_folder(self, variables, image_dir: str, out_dir: str) -> dict:
        """Mattes for every image of a folder: `<stem>.png` (alpha, 8-bit, at the input size),
        `<stem>_trimap.png` (T-Net's trimap, 0 / 128 / 255), `<stem>_composite.png` (the person over a
        checkerboard, or over `eval.background` resized to cover the image) and `<stem>_sheet.png`
        (image | trimap | alpha | composite); `<out_dir>/mattes.json` lists them.

        The network sees the image with its long edge capped at eval.max_side (1500, the paper's test
        protocol), padded (edges replicated) to size buckets (`prediction_size`); alpha and trimap are cut out
        of the padding and resized back to the input size. Grayscale, 16-bit, palette and RGBA images are
        converted to 8-bit RGB (listed in 'converted'); unreadable files are skipped and listed.
        """
        max_side = int(self.config.eval.max_side)
        background = self._background()

        def prepare(image):
            return fit_for_prediction(image, max_side)

        def write(out_dir, name, stem, image, context, outputs):
            return _write_matte(out_dir, name, stem, image, context, outputs, background)

        return common.predict_folder(
            variables,
            image_dir,
            out_dir,
            prepare=prepare,
            predict=self._predict_jit,
            write=write,
            results_file="mattes.json",
            entries_key="mattes",
            files=("{}.png", "{}_trimap.png", "{}_composite.png", "{}_sheet.png"),
            indent=2,
        )

    def predict_video(self, variables, video_path: str, out_dir: str) -> dict:
        """A video matted frame by frame through predict_folder's path (same capping, padding, fusion):
        `<out_dir>/alpha/<k>.png` (8-bit mattes, lossless, k from 0), `alpha.mp4` (the matte as gray),
        `composite.mp4` (the person over a checkerboard or `eval.background`), `trimap.mp4` (T-Net's trimap)
        and `mattes_video.json` (fps, frame size, per-frame alpha mean and unknown fraction; see
        jhuman.video.predict_video). One compiled program serves every frame (they share one size)."""
        from jhuman import video

        max_side = int(self.config.eval.max_side)
        background = self._background()

        def frame_outputs(frame, inside, outputs):
            alpha, trimap_png, composite = _matte_arrays(frame, inside, outputs, background)
            streams = {"alpha": alpha, "composite": composite, "trimap": trimap_png}
            return streams, {"alpha": alpha}, _matte_entry(alpha, trimap_png)

        return video.predict_video(
            variables,
            video_path,
            out_dir,
            prepare=lambda frame: fit_for_prediction(frame, max_side),
            predict=self._predict_jit,
            frame_outputs=frame_outputs,
            results_file="mattes_video.json",
        )

    def _background(self):
        path = self.config.eval.get("background", "")
        if not path:
            return None
        from input_pipeline.pipeline import CorruptExample

        try:
            return common.read_image(os.path.expanduser(path))
        except CorruptExample as e:
            raise ValueError(f"eval.background={path!r}: {e.reason}") from None


def prediction_size(size: int, max_side: int) -> int:
    """The padded length of an image side of `size` pixels (<= max_side): the smallest of 32, 64, 128, ...
    (doubling) and max_side rounded up to a multiple of 32 that holds it, so a folder of images of any
    shapes compiles a handful of programs (H and W are bucketed separately)."""
    top = 32 * math.ceil(max_side / 32)
    bucket = 32
    while bucket < size and bucket < top:
        bucket *= 2
    return max(min(bucket, top), 32 * math.ceil(size / 32))


def fit_for_prediction(image, max_side: int):
    """(network input float32 (PH, PW, 3), (h, w) of the image inside it): RGB uint8 (H, W, 3) with its long
    edge capped at max_side (area interpolation), padded bottom/right with replicated edges to
    prediction_size of each side."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    sh, sw = image.shape[:2]
    ph, pw = prediction_size(sh, max_side), prediction_size(sw, max_side)
    padded = cv2.copyMakeBorder(image, 0, ph - sh, 0, pw - sw, cv2.BORDER_REPLICATE)
    return padded.astype(np.float32), (sh, sw)


def _matte_arrays(image, inside, outputs, background):
    """(alpha float32 (H, W) in [0, 1], trimap uint8 (H, W) 0 / 128 / 255, composite RGB uint8 (H, W, 3)) of
    one image at its own size: the network's outputs cut out of the padding (`inside` = (h, w) there) and
    resized back; the person over `background` (None: a checkerboard)."""
    import cv2

    from jhuman import viz

    h, w = image.shape[:2]
    sh, sw = inside
    alpha = np.asarray(outputs["alpha"][:sh, :sw, 0], np.float32)
    trimap = np.asarray(outputs["trimap"][:sh, :sw], np.uint8)
    if (sh, sw) != (h, w):
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        trimap = cv2.resize(trimap, (w, h), interpolation=cv2.INTER_NEAREST)
    alpha = np.clip(alpha, 0.0, 1.0).reshape(h, w)
    trimap_png = np.asarray(matting_ops.TRIMAP_VALUES, np.uint8)[trimap.reshape(h, w)]
    back = viz.checkerboard(h, w) if background is None else viz.cover(background, h, w)
    return alpha, trimap_png, viz.composite(image, alpha, back)


def _matte_entry(alpha, trimap_png) -> dict:
    return {
        "alpha_mean": round(float(alpha.mean()), 6),
        "unknown_fraction": round(
            float(np.mean(trimap_png == matting_ops.TRIMAP_VALUES[matting_ops.UNKNOWN])), 6
        ),
    }


def _write_matte(out_dir, name, stem, image, inside, outputs, background) -> list:
    """The four pictures of one image (see MattingTask.predict_folder); its mattes.json entry."""
    from jhuman import viz

    h, w = image.shape[:2]
    alpha, trimap_png, composite = _matte_arrays(image, inside, outputs, background)
    files = {k: f"{stem}{suffix}" for k, suffix in
             (("alpha", ".png"), ("trimap", "_trimap.png"), ("composite", "_composite.png"),
              ("sheet", "_sheet.png"))}  # fmt: skip
    viz.save_png(os.path.join(out_dir, files["alpha"]), alpha)
    viz.save_png(os.path.join(out_dir, files["trimap"]), trimap_png)
    viz.save_png(os.path.join(out_dir, files["composite"]), composite)
    viz.save_png(os.path.join(out_dir, files["sheet"]), viz.matte_sheet(image, trimap_png, alpha, composite))
    return [{"image": name, **files, "height": h, "width": w, **_matte_entry(alpha, trimap_png)}]
