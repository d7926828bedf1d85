"""optax optimizers from config: SGD+momentum / Adam, schedules with warmup, per-parameter lr multipliers.

`config.optim` keys:
  name: 'sgd' | 'adam' | 'adamw'; learning_rate; momentum; nesterov; weight_decay (L2 added to the
  gradient for sgd/adam as Caffe does, decoupled for adamw); decay_biases (Caffe DeepLab does not);
  schedule: 'constant' | 'poly' | 'cosine' | 'step' (+ poly_power, step_boundaries (fractions of the
  run), step_factor); warmup_steps (linear from 0);
  lr_multipliers: ((regex, multiplier), ...) matched against 'a/b/kernel' parameter paths, first match
  wins (DeepLab: (('classifier', 10.0),)); grad_clip_norm (0 = off).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "poly", "cosine", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")


def param_path(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def make_schedule(cfg, total_steps: int) -> optax.Schedule:
    lr = float(cfg.learning_rate)
    warmup = int(cfg.warmup_steps)
    decay_steps = max(total_steps - warmup, 1)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif cfg.schedule == "poly":
        main = optax.polynomial_schedule(lr, 0.0, power=float(cfg.poly_power), transition_steps=decay_steps)
    elif cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps)
    elif cfg.schedule == "step":
        boundaries = {int(b * decay_steps): float(cfg.step_factor) for b in cfg.step_boundaries}
        main = optax.piecewise_constant_schedule(lr, boundaries)
    else:
        raise ValueError(f"optim.schedule={cfg.schedule!r} is not one of {SCHEDULES}")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def lr_multiplier_tree(params: Any, rules) -> Any:
    """A tree of floats: the multiplier of the first (regex, mult) rule matching each path, else 1."""
    compiled = [(re.compile(pattern), float(mult)) for pattern, mult in rules]

    def mult(path, _):
        name = param_path(path)
        return next((m for rx, m in compiled if rx.search(name)), 1.0)

    return jax.tree_util.tree_map_with_path(mult, params)


def scale_by_tree(multipliers: Any) -> optax.GradientTransformation:
    """Multiplies each update by its leaf of `multipliers` (a per-parameter learning-rate multiplier)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, m: u * jnp.asarray(m, u.dtype), updates, multipliers), state

    return optax.GradientTransformation(init, update)


def decay_mask(params: Any, decay_biases: bool) -> Any:
    """Weight decay on kernels (ndim > 1) and, when asked, on biases and norm scales too."""
    return jax.tree.map(lambda p: bool(decay_biases or p.ndim > 1), params)


def make_optimizer(cfg, params: Any, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer for `params` (used only for the tree structure) and its learning-rate schedule."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"optim.name={cfg.name!r} is not one of {OPTIMIZERS}")
    schedule = make_schedule(cfg, total_steps)
    chain = []
    if cfg.grad_clip_norm:
        chain.append(optax.clip_by_global_norm(float(cfg.grad_clip_norm)))
    mask = decay_mask(params, cfg.decay_biases)
    if cfg.weight_decay and cfg.name != "adamw":
        chain.append(optax.add_decayed_weights(float(cfg.weight_decay), mask=mask))
    if cfg.name == "sgd":
        chain.append(optax.sgd(schedule, momentum=float(cfg.momentum) or None, nesterov=bool(cfg.nesterov)))
    elif cfg.name == "adam":
        chain.append(optax.adam(schedule))
    else:
        chain.append(optax.adamw(schedule, weight_decay=float(cfg.weight_decay), mask=mask))
    if cfg.lr_multipliers:
        chain.append(scale_by_tree(lr_multiplier_tree(params, cfg.lr_multipliers)))
    return optax.chain(*chain), schedule
