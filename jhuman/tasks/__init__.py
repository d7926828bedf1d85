"""The task interface: the one seam every paper plugs into the trainer.

A task is a class built from the config with:
  init(rng) -> variables                              {'params': ..., other collections (batch_stats)}
  loss(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))   pure, jitted by the trainer;
                                                      batch["step"] holds the current step (a scalar)
  update(state, batch, rng, optimizer) -> (state, metrics)   optional: the task's own update for several
                                                      networks (a GAN's discriminator then generator, k:1
                                                      schedules), built from jhuman.update.compute_gradients
                                                      and optimizer.apply(..., groups=...); default:
                                                      jhuman.update.default_update over `loss`
  evaluator() -> object with init() -> acc, update(acc, variables, batch) -> acc (on device, jitted),
                 finalize(acc) -> dict of floats (host)
  train_batches(start_index, per_host_batch, process_index, process_count) -> iterator of numpy dicts
  eval_batches(split, per_host_batch, process_index, process_count) -> finite iterator of numpy dicts
  predict(variables, images) -> dict of arrays         raw images in, the task's outputs out
  predict_inputs(batch) -> tree of arrays              optional: what predict takes from an evaluation batch
                                                      (default batch['image']; posewarp: the source image
                                                      and both poses)
  visualize(batch, outputs) -> dict name -> uint8 RGB image
  predict_folder(variables, image_dir, out_dir) -> summary dict with at least 'num_images' and 'num_skipped'
                                                      (`jhuman predict`: pictures + a results file per folder)
  data_stats                                           counts of skipped (corrupt) training examples
  data_names() -> tuple of str                         (static) the config.data.name values the task reads
                                                      (checked at load time: `check_data_name`)
  format_eval(results) -> str                          (static) the evaluator's dict as a table people read
                                                      (`jhuman train | eval` print it)
  sweep_columns                                        (class attribute) ((metric key, title, scale), ...):
                                                      the columns of `jhuman sweep`'s table
  workdir                                              optional attribute: when the class has it, the trainer
                                                      sets it to the run's workdir (files a task writes there)
The tasks (REGISTRY): parsing (LIP, SSL), personlab (pose + instances), matting (Semantic Human Matting),
posewarp (pose-guided synthesis: the modular generator, perceptual + GAN stages).
What two tasks share is in jhuman.tasks.common: `ReaderData` gives data_root, data_stats, train_batches and
eval_batches from a task's reader module (input_pipeline.lip, .coco, ...) and its train_options() /
eval_options(); `batch_grid` draws visualize's rows; `predict_folder` is predict_folder's loop, the task
supplying how one image is prepared, predicted and written.
Paper-specific pieces (targets, decoders, metrics) live in jhuman.ops and jhuman.metrics.
"""

from __future__ import annotations

import importlib

# config.task -> "module:Class"; imported lazily so one task's dependencies never load for another.
REGISTRY = {
    "parsing": "jhuman.tasks.parsing:ParsingTask",
    "personlab": "jhuman.tasks.personlab:PersonLabTask",
    "matting": "jhuman.tasks.matting:MattingTask",
    "posewarp": "jhuman.tasks.posewarp:PoseWarpTask",
}


def task_class(config):
    """The task class named by `config.task` (a REGISTRY entry: "module:Class", or a class itself); nothing
    is built: its format_eval and sweep_columns are static."""
    if config.task not in REGISTRY:
        raise ValueError(f"config.task={config.task!r} is not one of {sorted(REGISTRY)}")
    entry = REGISTRY[config.task]
    if not isinstance(entry, str):
        return entry
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def data_names(config) -> tuple[str, ...] | None:
    """The config.data.name values the task of `config` reads (its static `data_names()`), or None when the
    task does not say."""
    names = getattr(task_class(config), "data_names", None)
    return tuple(names()) if callable(names) else None


def check_data_name(config):
    """Refuses, at config load time, a `data.name` that the config's task does not read: ConfigError naming
    the value and the valid ones. Returns the config. (Nothing to check without a data.name or when the task
    does not declare `data_names`.)"""
    from jhuman.config import ConfigError

    if "data" not in config or "name" not in config.data:
        return config
    valid = data_names(config)
    if valid is not None and config.data.name not in valid:
        raise ConfigError(
            f"data.name={config.data.name!r} is not one of {list(valid)} (the data task {config.task!r} reads)"
        )
    return config


def build(config):
    """The task object named by `config.task`."""
    return task_class(config)(config)
