"""Loading experiment configs: `configs/<name>.py:arg` files, `--config.a.b=value` overrides, saving.

A config file defines `get_config(arg: str) -> ml_collections.ConfigDict`; `arg` is a comma-separated list
of `key=value` choices (e.g. `size=tiny,data=synthetic`) parsed by `parse_arg`. Overrides are type-checked
against the existing field; an unknown key is an error that lists the valid keys at that level.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from typing import Any, Iterable, Mapping

import ml_collections


class ConfigError(ValueError):
    """A config file, argument or override is not valid; the message says which and why."""


def parse_arg(arg: str | None, defaults: Mapping[str, str]) -> dict[str, str]:
    """Parses `a=1,b=x` into a dict over `defaults`; an unknown choice lists the valid ones."""
    choices = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"config argument {item!r} is not key=value (valid keys: {sorted(defaults)})")
        if key not in defaults:
            raise ConfigError(f"unknown config argument {key!r}; valid: {sorted(defaults)}")
        choices[key] = value
    return choices


def check_choice(name: str, value: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not one of {valid}")
    return value


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads `path/to/config.py[:arg]` and calls its `get_config(arg)`."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"jhuman_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config(arg)")
    config = module.get_config(arg or None)
    config.lock()  # Unknown keys are errors from here on.
    return config


def _parse_value(text: str, current: Any, key: str) -> Any:
    """Converts override text to the type of the current value."""
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={text!r}: expected a bool (true/false)")
    if isinstance(current, str) or current is None:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"--config.{key}={text!r}: expected {type(current).__name__}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        value = type(current)(value)
    if type(value) is not type(current):
        raise ConfigError(
            f"--config.{key}={text!r}: expected {type(current).__name__}, got {type(value).__name__}"
        )
    return value


def set_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets `config.<key>` from override text; errors name the key and list the valid ones."""
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts):
        valid = sorted(node.keys())
        if part not in valid:
            where = ".".join(parts[:depth]) or "<top level>"
            raise ConfigError(f"unknown config key {key!r}: {part!r} is not in {where}; valid keys: {valid}")
        if depth < len(parts) - 1:
            node = node[part]
            if not isinstance(node, ml_collections.ConfigDict):
                raise ConfigError(f"config key {'.'.join(parts[: depth + 1])!r} is a value, not a section")
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
        raise ConfigError(f"config key {key!r} is a section; valid keys inside: {sorted(current.keys())}")
    with node.unlocked():
        node[parts[-1]] = _parse_value(text, current, key)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
    """Applies `a.b=value` (or `--config.a.b=value`) strings in order."""
    for item in overrides:
        item = item.removeprefix("--").removeprefix("config.")
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        set_override(config, key, text)
    return config


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    return path


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a run saved (lists come back as tuples, as the config files write them)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{path} not found: is {workdir!r} the workdir of a `jhuman train` run?")
    with open(path) as f:
        config = ml_collections.ConfigDict(_tuples(json.load(f)))
    config.lock()
    return config


# Sections every experiment config has; config files give only what differs (`section(TRAIN, steps=...)`).
TRAIN = {
    "steps": 1000,
    "batch_size": 8,
    "grad_accum_steps": 1,
    "compute_dtype": "float32",
    "ema_decay": 0.0,
    "ema_group": "",  # an optim.groups name: EMA over that group only ('' = every parameter)
    "log_every": 25,
    "eval_every": 500,
    "checkpoint_every": 500,
    "keep_checkpoints": 2,
    "num_pictures": 6,
    "progress_bar": True,
    "transfer_guard": True,
}
OPTIM = {
    "name": "adam",
    "learning_rate": 1e-3,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 0.0,
    "decay_biases": False,
    "schedule": "poly",
    "poly_power": 0.9,
    "step_boundaries": (0.5, 0.75),
    "step_factor": 0.1,
    "warmup_steps": 0,
    "lr_multipliers": (),
    "grad_clip_norm": 0.0,
    # {name: {pattern, frozen, start_step, end_step, any key above}}: see jhuman.optim (empty = one chain)
    "groups": {},
}
# How a fresh run's parameters start (jhuman.train.create_or_restore): pretrained backbones
# (jhuman.tasks.common.pretrained_variables), then other runs' checkpoints (stage chaining: jhuman.stages).
INIT = {"backbone_weights": "", "from_workdir": "", "from_step": 0, "from_pattern": ""}
# The data keys every task reads through jhuman.tasks.common (data_root, source_kwargs, the synthetic cache);
# source 'folders' (the official layout under root) or 'tfds' (the project's builder, manual_dir = root).
# A task's own data keys are set after: `c.data = section(DATA, ...); c.data.scales = ...`.
DATA = {
    "name": "synthetic",
    "root": "",
    "source": "folders",
    "tfds_data_dir": "",
    "cache_dir": "~/.cache/jhuman",
    "synthetic_num": 1000,
    "synthetic_seed": 0,
    "synthetic_size": (128, 128),
    "synthetic_val_fraction": 0.1,
    "crop_size": 128,
}
MESH = {"data": -1, "fsdp": 1, "fsdp_min_size": 2**14}
DISTRIBUTED = {"coordinator_address": "", "num_processes": 1, "process_id": 0}


def section(defaults: dict, **values) -> ml_collections.ConfigDict:
    """A config section: `defaults` updated by `values` (a name not in defaults is an error listing them)."""
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown keys {unknown}; valid: {sorted(defaults)}")
    return ml_collections.ConfigDict({**defaults, **values})


COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
DATA_SOURCES = ("folders", "tfds")


def validate(config) -> ml_collections.ConfigDict:
    """Checks the values every run reads before anything is built or compiled; a ConfigError lists every
    problem with the key and its valid values. Returns the config."""
    from jhuman import optim, stages

    problems = []

    def at_least(key, low):
        section, name = key.split(".")
        value = config[section][name]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            problems.append(f"{key}={value!r} must be an integer >= {low}")

    def one_of(key, valid):
        section, name = key.split(".")
        if config[section][name] not in valid:
            problems.append(f"{key}={config[section][name]!r} is not one of {list(valid)}")

    for key in ("train.batch_size", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
                "train.grad_accum_steps"):  # fmt: skip
        at_least(key, 1)
    for key in ("train.eval_every", "train.num_pictures"):
        at_least(key, 0)
    if "eval" in config and "batch_size" in config.eval:
        at_least("eval.batch_size", 1)
    steps = config.train.steps
    from_runs = bool(stages.sources(config.init)) if "init" in config else False
    if not isinstance(steps, int) or steps < 0 or (steps == 0 and not from_runs):
        problems.append(
            f"train.steps={steps!r} must be an integer >= 1 (0 only for a run initialised from other runs' "
            "checkpoints with init.from_workdir, to evaluate the assembled stages)"
        )
    accum = config.train.grad_accum_steps
    if isinstance(accum, int) and accum >= 1 and config.train.batch_size % accum:
        problems.append(
            f"train.batch_size={config.train.batch_size} is not a multiple of train.grad_accum_steps={accum}"
        )
    one_of("train.compute_dtype", COMPUTE_DTYPES)
    one_of("optim.name", optim.OPTIMIZERS)
    one_of("optim.schedule", optim.SCHEDULES)
    if "data" in config and "source" in config.data:
        one_of("data.source", DATA_SOURCES)
    from jhuman import tasks

    try:
        tasks.check_data_name(config)
    except (ConfigError, ValueError) as e:  # a data name the task does not read, or an unknown task
        problems.append(str(e))
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    return config
