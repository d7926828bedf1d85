"""PersonLab (Papandreou et al., ECCV 2018): model + loss + COCO evaluator + pictures.

- The host pipeline (input_pipeline.coco) sends a compact example (keypoints, instance ids, segmentation,
  ignore mask); the dense targets (disks, short/mid/long offsets) are computed on device inside the loss
  (jhuman.ops.personlab.targets): dense float targets are about 100 MB per 401x401 example, the compact form
  about 1 MB.
- Loss: the paper's five terms with weights 4 / 2 / 1 / 0.25 / 0.125, offsets divided by R.
- Prediction: sigmoid heatmaps and segmentation, the model's refined offsets, then
  `jhuman.ops.personlab.decode` (Hough voting, greedy grouping, expected-OKS scores, soft keypoint NMS,
  instance masks), all jitted and batched.
- Evaluation: COCO results at the original image size through pycocotools ('keypoints' and 'segm').
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.metrics import coco as coco_metrics
from jhuman.models import personlab as personlab_model
from jhuman.ops import personlab as personlab_ops
from jhuman.ops.personlab import losses as personlab_losses
from jhuman.ops.personlab import targets as personlab_targets
from jhuman.tasks import common


def build_model(config) -> common.Normalized:
    m = config.model
    net = personlab_model.build_personlab(
        backbone=m.backbone,
        width=m.width,
        stage_sizes=tuple(m.stage_sizes) or None,
        output_stride=m.output_stride,
        norm=m.norm,
        refine_steps=m.refine_steps,
        dtype=jnp.dtype(config.train.compute_dtype),
    )
    return common.Normalized(net, common.check_input_norm(m.input_norm))


class CocoEvaluator:
    """Decodes each batch on device, gathers the people on the host as COCO results, scores them with
    pycocotools at the end (keypoint AP/AR and mask AP/AR)."""

    host_update = True

    def __init__(self, predict_fn, annotation_file: str):
        self.predict_fn = predict_fn
        self.annotation_file = annotation_file

    def init(self):
        return {"keypoints": [], "segm": [], "image_ids": [], "dropped_people": 0, "dropped_candidates": 0}

    def update(self, acc, variables, batch):
        from jax.experimental import multihost_utils

        out = multihost_utils.process_allgather(self.predict_fn(variables, batch["image"]), tiled=True)
        meta = multihost_utils.process_allgather(
            {k: batch[k] for k in ("image_id", "scale", "height", "width", "mask")}, tiled=True
        )
        for i in np.flatnonzero(np.asarray(meta["mask"])):
            image_id, scale = int(meta["image_id"][i]), float(meta["scale"][i])
            acc["image_ids"].append(image_id)
            # the decoder's capacities (max_people, max_candidates): what did not fit, never silently
            acc["dropped_people"] += int(out["dropped_people"][i])
            acc["dropped_candidates"] += int(out["dropped_candidates"][i])
            acc["keypoints"] += coco_metrics.keypoint_results(
                image_id, out["keypoints"][i], out["scores"][i], out["valid"][i], scale
            )
            acc["segm"] += coco_metrics.mask_results(
                image_id,
                out["masks"][i],
                out["scores"][i],
                out["valid"][i],
                int(meta["height"][i]),
                int(meta["width"][i]),
                scale,
            )
        return acc

    def finalize(self, acc) -> dict:
        results = {}
        for iou_type in ("keypoints", "segm"):
            scores = coco_metrics.evaluate(self.annotation_file, acc[iou_type], iou_type, acc["image_ids"])
            results.update({f"{iou_type}/{k}": v for k, v in scores.items()})
        results["num_images"] = float(len(set(acc["image_ids"])))
        results["people_per_image"] = len(acc["keypoints"]) / max(len(set(acc["image_ids"])), 1)
        results["dropped_people"] = float(acc["dropped_people"])
        results["dropped_candidates"] = float(acc["dropped_candidates"])
        return results


class PersonLabTask(common.ReaderData):
    """Multi-person pose and instance segmentation (see module docstring)."""

    READER, DATASET, SYNTHETIC = "input_pipeline.coco", "coco", "personlab"
    sweep_columns = tuple(  # kp AP, kp AP50, segm AP, segm AP50 (percent)
        (f"{kind}/{stat}", f"{title} {stat}", 100.0)
        for kind, title in (("keypoints", "kp"), ("segm", "segm"))
        for stat in ("AP", "AP50")
    )

    def __init__(self, config):
        self.config = config
        self.net = build_model(config)
        self._predict_jit = jax.jit(self.predict)

    @staticmethod
    def format_eval(results) -> str:
        """COCO keypoint and mask scores as a table (percent; '-' where undefined), then the image count and
        the evaluation examples skipped, if any."""
        return "\n".join(filter(None, [format_scores(results), common.format_skips(results)]))

    # --- model -------------------------------------------------------------------------------------------
    def init(self, rng):
        size = int(self.config.data.crop_size)
        return self.net.init({"params": rng, "dropout": rng}, jnp.zeros((1, size, size, 3)), train=False)

    def apply(self, variables, images, train=False, rng=None):
        return common.apply(self.net, variables, images, train, rng)

    def loss(self, params, model_state, batch, rng):
        out, new_state = self.apply({"params": params, **model_state}, batch["image"], train=True, rng=rng)
        radius = float(self.config.personlab.radius)
        targets = personlab_targets.encode_batch(
            batch["keypoints"], batch["instance_ids"], batch["segmentation"], batch["ignore"], radius=radius
        )
        total, terms = personlab_losses.personlab_losses(
            out, targets, radius=radius, weights=dict(self.config.personlab.loss_weights)
        )
        return total, ({f"loss_{k}": v for k, v in terms.items()}, dict(new_state))

    def decode_options(self) -> dict:
        """The config's decode options; the decoder refines the offsets itself (mid-range lazily at the
        points it reads, long-range densely) only when the model does not (model.refine_steps = 0)."""
        model_refines = int(self.config.model.refine_steps) > 0
        return {
            **self.config.personlab.decode.to_dict(),
            "radius": float(self.config.personlab.radius),
            "refine_steps": 0 if model_refines else 2,
            "refine_long": not model_refines,
        }

    def predict(self, variables, images):
        """Raw RGB (B, S, S, 3) -> {'keypoints' (B, P, 17, 3) [x, y, score], 'scores' (B, P), 'valid' (B, P),
        'masks' (B, P, S, S), 'dropped_people' (B,), 'dropped_candidates' (B,), ...} in network-input pixels
        (all of `jhuman.ops.personlab.decode`'s outputs)."""
        out, _ = self.apply(variables, images)
        return personlab_ops.decode(
            jax.nn.sigmoid(out["heatmap_logits"]),
            out["short_offsets"],
            out["mid_offsets"],
            out["long_offsets"],
            jax.nn.sigmoid(out["segmentation_logits"]),
            **self.decode_options(),
        )

    def evaluator(self) -> common.SkipCountingEvaluator:
        """COCO keypoint and mask AP/AR, plus the count of skipped examples (common.count_skips)."""
        from input_pipeline import coco

        evaluator = CocoEvaluator(self._predict_jit, coco.annotation_file(self.data_root(), "val"))
        return self.count_skips(evaluator)

    def pretrained_variables(self, variables):
        return common.pretrained_variables(
            self.config, variables, self.config.model.backbone, ("net", "trunk")
        )

    # --- data --------------------------------------------------------------------------------------------
    def eval_options(self) -> dict:
        data = self.config.data
        return {"crop_size": int(data.crop_size), "max_persons": int(data.max_persons)}

    def train_options(self) -> dict:
        data = self.config.data
        return {
            **self.eval_options(),
            "scale_range": tuple(data.scale_range),
            "max_rotation": float(data.max_rotation),
        }

    # --- pictures ----------------------------------------------------------------------------------------
    def visualize(self, batch, outputs) -> dict:
        """One row per example: image | ground truth (instances + skeletons) | prediction."""
        from jhuman import viz

        def row(i, image):
            gt_kp = np.asarray(batch["keypoints"][i], np.float32)
            gt_valid = (gt_kp[:, :, 2] > 0).any(-1)
            ids = np.asarray(batch["instance_ids"][i])
            gt_masks = ids[None] == np.arange(1, len(gt_kp) + 1)[:, None, None]
            return [
                image,
                viz.draw_people(image, gt_kp, gt_valid, gt_masks),
                viz.draw_people(image, outputs["keypoints"][i], outputs["valid"][i], outputs["masks"][i]),
            ]

        return {"predictions": common.batch_grid(batch, row, ["image", "ground truth", "prediction"])}

    def predict_folder(self, variables, image_dir: str, out_dir: str) -> dict:
        """Skeleton + mask overlays and one COCO-style results JSON for a folder of images.

        Each image goes through the evaluation's own warp (input_pipeline.coco.eval_example: scaled so its longer
        side is data.crop_size, x_in = scale * x, padded); keypoints and masks are mapped back to the original size
        by its exact inverse. Writes `<out_dir>/results.json` (COCO keypoint results with 'file_name' instead of
        'image_id', plus 'segmentation' RLE) and `<stem>_people.png` (the stem as in common.output_stems); its
        'outputs' name each image's picture, also for images without people.
        """
        from input_pipeline import coco

        size = int(self.config.data.crop_size)

        def prepare(image):
            example = coco.eval_example(0, image, [], crop_size=size, max_persons=1)  # the evaluation's warp
            return example["image"], float(example["scale"])

        return common.predict_folder(
            variables,
            image_dir,
            out_dir,
            prepare=prepare,
            predict=self._predict_jit,
            write=_write_people,
            results_file="results.json",
            entries_key="results",
            files=("{}_people.png",),
        )


def _write_people(out_dir, name, stem, image, scale, out) -> list:
    """`<stem>_people.png` (masks and skeletons at the original size); the image's people as COCO results."""
    from jhuman import viz

    h, w = image.shape[:2]
    results = []
    for p in np.flatnonzero(out["valid"]):
        one = (out["scores"][p : p + 1], np.ones(1, bool))
        person = coco_metrics.keypoint_results(0, out["keypoints"][p : p + 1], *one, scale)[0]
        mask = coco_metrics.mask_results(0, out["masks"][p : p + 1], *one, h, w, scale)
        person.pop("image_id")
        results.append(
            {"file_name": name, **person, **({"segmentation": mask[0]["segmentation"]} if mask else {})}
        )
    keypoints = out["keypoints"].copy()
    keypoints[..., :2] /= scale
    full_masks = [coco_metrics.mask_to_original(m, h, w, scale) for m in out["masks"]]
    picture = viz.draw_people(image, keypoints, out["valid"], np.asarray(full_masks, bool))
    viz.save_png(os.path.join(out_dir, f"{stem}_people.png"), picture)
    return results


def format_scores(results) -> str:
    """'keypoints/AP', ... 'segm/AR' (what CocoEvaluator returns) as rows keypoints / segm under the COCO
    statistics' names, in percent ('-' for NaN or missing), then the number of images and people per image."""
    names = list(coco_metrics.KEYPOINT_STATS)
    width = max(len("keypoints"), len("segm"))

    def pct(v):
        return "-" if v is None or not np.isfinite(v) else f"{100.0 * v:.2f}"

    lines = [f"{'':<{width}}" + "".join(f"  {n:>7}" for n in names), "-" * (width + 9 * len(names))]
    for iou_type in ("keypoints", "segm"):
        values = "".join(f"  {pct(results.get(f'{iou_type}/{n}')):>7}" for n in names)
        lines.append(f"{iou_type:<{width}}{values}")
    if "num_images" in results:
        lines.append(
            f"{int(results['num_images'])} images, {results.get('people_per_image', 0.0):.2f} people per image"
        )
    if results.get("dropped_people") or results.get("dropped_candidates"):
        lines.append(
            f"decoder capacity hit: {int(results.get('dropped_people', 0))} people and "
            f"{int(results.get('dropped_candidates', 0))} keypoint candidates dropped "
            "(raise personlab.decode.max_people / max_candidates)"
        )
    return "\n".join(lines)
