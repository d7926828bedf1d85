"""optax optimizers from config: one chain, or named parameter groups each with its own optimizer.

`config.optim` keys (one chain for every parameter, or the defaults every group inherits):
  name: 'sgd' | 'adam' | 'adamw'; learning_rate; momentum; nesterov; weight_decay (L2 added to the
  gradient for sgd/adam as Caffe does, decoupled for adamw); decay_biases (Caffe DeepLab does not);
  schedule: 'constant' | 'poly' | 'cosine' | 'step' (+ poly_power, step_boundaries (fractions of the
  run), step_factor); warmup_steps (linear from 0);
  lr_multipliers: ((regex, multiplier), ...) matched against 'a/b/kernel' parameter paths, first match
  wins (DeepLab: (('classifier', 10.0),)); grad_clip_norm (0 = off).
  groups: {name: {pattern, frozen, start_step, end_step, any key above}} (empty: one chain, as above).

Parameter groups (`optim.groups`, built with `optax.multi_transform`): each group is a regex `pattern`
searched in the parameter paths ('net/tnet/trunk/conv1/kernel'); every parameter must match exactly one
group and every group at least one parameter (errors list the paths). A group is `frozen=True` (no update at
all: `optax.set_to_zero`, no optimizer state) or has its own optimizer built from the top-level keys updated
by the group's own (its own schedule, weight decay, gradient clipping over the group's gradients). A step
window `start_step <= step < end_step` (end_step 0 = the end of the run) switches a group on: outside it the
group is frozen and its optimizer state does not advance; its schedule runs over the window's length and
counts the group's own updates (so a window's schedule starts at its start). Model-state leaves (batch-norm
statistics) whose path matches a group's pattern are kept as they were while that group is frozen.

    optimizer = make_grouped_optimizer(config.optim, abstract_params, total_steps)
    opt_state = optimizer.init(params)
    params, opt_state = optimizer.apply(grads, opt_state, params, step, groups=("disc",))  # one group only

A config without groups builds exactly the single chain of before (same optimizer state tree), so older
configs and checkpoints keep working.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ("constant", "poly", "cosine", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")
GROUP_KEYS = ("pattern", "frozen", "start_step", "end_step")


def param_path(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def tree_paths(tree) -> list[str]:
    """The '/'-joined paths of a tree's leaves, in leaf order."""
    return [param_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


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


def scale_by_path(rules) -> optax.GradientTransformation:
    """Multiplies each update by the multiplier of the first (regex, mult) rule matching its path (else 1).
    Decided from the paths of the tree it is given, so it also works inside `optax.masked`."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        multipliers = lr_multiplier_tree(updates, rules)
        return jax.tree.map(lambda u, m: u * jnp.asarray(m, u.dtype), updates, multipliers), state

    return optax.GradientTransformation(init, update)


def decay_mask(params: Any, decay_biases: bool) -> Any:
    """Weight decay on kernels (ndim > 1) and, when asked, on biases and norm scales too."""
    return jax.tree.map(lambda p: bool(decay_biases or p.ndim > 1), params)


def make_chain(cfg, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """One optimizer chain (clip, L2 decay, sgd/adam/adamw, lr multipliers) and its schedule."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"optim.name={cfg.name!r} is not one of {OPTIMIZERS}")
    schedule = make_schedule(cfg, total_steps)
    chain = []
    if cfg.grad_clip_norm:
        chain.append(optax.clip_by_global_norm(float(cfg.grad_clip_norm)))
    mask = lambda params: decay_mask(params, cfg.decay_biases)
    if cfg.weight_decay and cfg.name != "adamw":
        chain.append(optax.add_decayed_weights(float(cfg.weight_decay), mask=mask))
    if cfg.name == "sgd":
        chain.append(optax.sgd(schedule, momentum=float(cfg.momentum) or None, nesterov=bool(cfg.nesterov)))
    elif cfg.name == "adam":
        chain.append(optax.adam(schedule))
    else:
        chain.append(optax.adamw(schedule, weight_decay=float(cfg.weight_decay), mask=mask))
    if cfg.lr_multipliers:
        chain.append(scale_by_path(tuple(cfg.lr_multipliers)))
    return optax.chain(*chain), schedule


def make_optimizer(cfg, params: Any, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The single chain for `params` (groups ignored) and its learning-rate schedule."""
    del params
    return make_chain(cfg, total_steps)


# ----------------------------------------------------------------------------------------------- groups
@dataclasses.dataclass(frozen=True)
class Group:
    """One parameter group: its regex, its optimizer (None = frozen) and its step window."""

    name: str
    pattern: str
    tx: optax.GradientTransformation | None
    schedule: Callable | None
    start_step: int
    end_step: int  # exclusive; total steps when the config says 0

    @property
    def frozen(self) -> bool:
        return self.tx is None

    def active(self, step):
        """Whether the group is updated at `step` (a traced scalar is fine)."""
        if self.frozen:
            return jnp.asarray(False)
        return (step >= self.start_step) & (step < self.end_step)

    def windowed(self, total_steps: int) -> bool:
        return self.start_step > 0 or self.end_step < total_steps

    def matches(self, path: str) -> bool:
        return re.search(self.pattern, path) is not None


def group_config(optim_cfg, name: str, group_cfg) -> ml_collections.ConfigDict:
    """The group's full optimizer config: the top-level keys updated by the group's own; unknown keys are
    an error that lists the valid ones."""
    valid = sorted((set(optim_cfg.keys()) - {"groups"}) | set(GROUP_KEYS))
    unknown = sorted(set(group_cfg.keys()) - set(valid))
    if unknown:
        raise ValueError(f"optim.groups.{name}: unknown keys {unknown}; valid: {valid}")
    if "pattern" not in group_cfg or not group_cfg.pattern:
        raise ValueError(f"optim.groups.{name} needs a 'pattern' (a regex over parameter paths)")
    base = {k: v for k, v in optim_cfg.to_dict().items() if k != "groups"}
    merged = {**base, "frozen": False, "start_step": 0, "end_step": 0, **group_cfg.to_dict()}
    return ml_collections.ConfigDict(merged)


def make_groups(optim_cfg, total_steps: int) -> list[Group]:
    groups = []
    for name, raw in optim_cfg.get("groups", {}).items():
        cfg = group_config(optim_cfg, name, raw)
        try:
            re.compile(cfg.pattern)
        except re.error as e:
            raise ValueError(f"optim.groups.{name}.pattern={cfg.pattern!r} is not a regex: {e}") from None
        start, end = int(cfg.start_step), int(cfg.end_step) or total_steps
        if start < 0 or (end <= start and total_steps > 0):  # a run of 0 steps (stages assembled) trains none
            raise ValueError(f"optim.groups.{name}: the window start_step={start} .. end_step={end} is empty")
        if cfg.frozen:
            groups.append(Group(name, cfg.pattern, None, None, start, end))
        else:
            tx, schedule = make_chain(cfg, end - start)
            groups.append(Group(name, cfg.pattern, tx, schedule, start, end))
    return groups


def group_labels(groups: Sequence[Group], params: Any) -> Any:
    """The tree of group names over `params`; every leaf in exactly one group, every group non-empty."""
    paths = tree_paths(params)
    owners = {path: [g.name for g in groups if g.matches(path)] for path in paths}
    unmatched = [p for p, o in owners.items() if not o]
    doubled = [f"{p} ({', '.join(o)})" for p, o in owners.items() if len(o) > 1]
    empty = [g.name for g in groups if not any(g.name in o for o in owners.values())]
    problems = []
    if unmatched:
        problems.append(f"parameters in no group: {unmatched}")
    if doubled:
        problems.append(f"parameters in two or more groups: {doubled}")
    if empty:
        problems.append(f"groups that match no parameter: {empty}")
    if problems:
        raise ValueError("optim.groups: " + "; ".join(problems) + f". All parameter paths: {paths}")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return jax.tree_util.tree_unflatten(treedef, [owners[p][0] for p in paths])


class Optimizer:
    """The run's optimizer: one chain, or parameter groups (see the module docstring).

    `apply(grads, opt_state, params, step, groups=None)` updates every group active at `step` (or only the
    named ones) and returns (new_params, new_opt_state); groups not updated keep their parameters and their
    optimizer state exactly.
    """

    def __init__(self, cfg, params: Any, total_steps: int):
        self.total_steps = int(total_steps)
        self.groups = make_groups(cfg, self.total_steps)
        if not self.groups:
            self.tx, self.schedule = make_chain(cfg, self.total_steps)
            self.labels = None
            return
        self.labels = group_labels(self.groups, params)
        transforms = {g.name: g.tx if g.tx is not None else optax.set_to_zero() for g in self.groups}
        self.tx = optax.multi_transform(transforms, self.labels)
        self._transforms = transforms
        first = next((g for g in self.groups if not g.frozen), None)
        self.schedule = (
            (lambda step: first.schedule(step - first.start_step)) if first else (lambda step: 0.0)
        )

    @property
    def trainable(self) -> Any:
        """A tree of bools over the parameters (False: a frozen group's, whose gradients are never needed),
        or None when every parameter trains."""
        if not any(g.frozen for g in self.groups):
            return None
        frozen = {g.name for g in self.groups if g.frozen}
        return jax.tree.map(lambda label: label not in frozen, self.labels)

    def group_mask(self, name: str) -> Any:
        """A tree of bools over the parameters: True on group `name`'s leaves."""
        self._check((name,))
        return jax.tree.map(lambda label: label == name, self.labels)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def init(self, params):
        return self.tx.init(params)

    def _check(self, groups):
        unknown = sorted(set(groups) - set(self.group_names))
        if unknown:
            raise ValueError(f"unknown optimizer groups {unknown}; valid: {list(self.group_names)}")

    def apply(self, grads, opt_state, params, step, groups: Sequence[str] | None = None):
        """(new_params, new_opt_state) after one update of `groups` (None: all) that are active at `step`."""
        if not self.groups:
            if groups is not None:
                raise ValueError("optimizer groups were named, but optim.groups is empty")
            updates, opt_state = self.tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state
        names = self.group_names if groups is None else tuple(groups)
        self._check(names)
        inner = dict(opt_state.inner_states)
        updates = jax.tree.map(jnp.zeros_like, grads)
        for group in self.groups:
            if group.name not in names or group.frozen:
                continue
            mask = jax.tree.map(lambda label, g=group.name: label == g, self.labels)
            masked = optax.masked(self._transforms[group.name], mask)
            group_updates, group_state = masked.update(grads, inner[group.name], params)
            if group.windowed(self.total_steps):
                on = group.active(step)
                group_updates = jax.tree.map(lambda u: jnp.where(on, u, jnp.zeros_like(u)), group_updates)
                group_state = jax.tree.map(
                    lambda new, old: jnp.where(on, new, old), group_state, inner[group.name]
                )
            # `masked` passes the other groups' leaves through: take this group's leaves only.
            updates = jax.tree.map(lambda m, u, acc: jnp.where(m, u, acc), mask, group_updates, updates)
            inner[group.name] = group_state
        return optax.apply_updates(params, updates), type(opt_state)(inner)

    def frozen_mask(self, tree, step) -> Any:
        """A tree of booleans over `tree` (model state: batch-norm statistics): True where the leaf's path
        (collection name dropped) matches a group that is frozen or outside its window at `step`."""
        if not self.groups:
            return jax.tree.map(lambda _: jnp.asarray(False), tree)

        def frozen(path, _):
            name = param_path(path[1:])  # drop the collection ('batch_stats')
            group = next((g for g in self.groups if g.matches(name)), None)
            return jnp.asarray(False) if group is None else ~group.active(step)

        return jax.tree_util.tree_map_with_path(frozen, tree)

    def learning_rates(self, step) -> dict:
        """{'learning_rate': ...} (one chain) or {'learning_rate/<group>': ...} for the trainable groups,
        each schedule counted from its window's start (0 outside the window)."""
        if not self.groups:
            return {"learning_rate": self.schedule(step)}
        return {
            f"learning_rate/{g.name}": jnp.where(g.active(step), g.schedule(step - g.start_step), 0.0)
            for g in self.groups
            if not g.frozen
        }
