"""The body of one training step: gradients (with accumulation) and the default update.

A train state is a plain dict {step, params, model_state, opt_state} (the trainer keeps `ema_params` itself).
An update is `(state, batch, rng, optimizer) -> (state, metrics)`, pure and jitted by the trainer inside its
one step; `default_update` is the one every single-network task uses. A multi-network task (a GAN's
discriminator then generator, k:1 schedules, staged networks) defines its own `update` with the same
signature from the same two pieces:

    def update(self, state, batch, rng, optimizer):
        d_rng, g_rng = jax.random.split(rng)
        d_loss, d_metrics, model_state, grads = compute_gradients(
            self.discriminator_loss, state["params"], state["model_state"], batch, d_rng)
        params, opt_state = optimizer.apply(grads, state["opt_state"], state["params"], state["step"],
                                            groups=("disc",))
        ...  # then the generator with groups=("gen",)
        return {**state, "params": params, "opt_state": opt_state, "model_state": model_state}, metrics

Around either, the trainer adds the step's rng (`fold_in(seed, step)`), `batch["step"]`, the finite guard,
EMA, batch-norm statistics kept for frozen groups, step counting, donation and shardings (jhuman.train).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax


def compute_gradients(
    loss_fn: Callable, params, model_state, batch, rng, accum: int = 1, trainable: Any = None
) -> tuple[jax.Array, dict, Any, Any]:
    """(loss, metrics, new_model_state, grads) of `loss_fn(params, model_state, batch, rng)`.

    accum > 1: the batch is split into `accum` micro-batches (micro-batch i takes rows i, i + accum, ...,
    so every device keeps working on its own rows), scanned with the model state threaded through, and
    loss, metrics and gradients averaged. trainable: an optional tree of bools over params; the others are
    held by `stop_gradient` (their weight gradients are never computed) and get zero gradients.
    """
    if trainable is not None:
        frozen = lambda p: jax.tree.map(lambda x, t: x if t else jax.lax.stop_gradient(x), p, trainable)
    else:
        frozen = lambda p: p

    def grads_of(params, model_state, batch, rng):
        grad_fn = jax.value_and_grad(lambda p, *a: loss_fn(frozen(p), *a), has_aux=True)
        (loss, (metrics, new_model_state)), grads = grad_fn(params, model_state, batch, rng)
        return loss, metrics, {**model_state, **new_model_state}, grads

    if accum == 1:
        return grads_of(params, model_state, batch, rng)
    scalars = {k: v for k, v in batch.items() if jnp.ndim(v) == 0}
    rows = {k: v for k, v in batch.items() if k not in scalars}
    micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1), rows)

    def body(carry, xs):
        model_state, grad_sum, loss_sum, metric_sum = carry
        micro_batch, i = xs
        loss, metrics, model_state, grads = grads_of(
            params, model_state, {**micro_batch, **scalars}, jax.random.fold_in(rng, i)
        )
        add = lambda a, b: jax.tree.map(jnp.add, a, b)
        return (model_state, add(grad_sum, grads), loss_sum + loss, add(metric_sum, metrics)), None

    first = {**jax.tree.map(lambda x: x[0], micro), **scalars}
    zero_metrics = jax.eval_shape(lambda: grads_of(params, model_state, first, rng)[1])
    init = (
        model_state,
        jax.tree.map(jnp.zeros_like, params),
        jnp.zeros((), jnp.float32),
        jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero_metrics),
    )
    (model_state, grads, loss, metrics), _ = jax.lax.scan(body, init, (micro, jnp.arange(accum)))
    scale = lambda t: jax.tree.map(lambda x: x / accum, t)
    return loss / accum, scale(metrics), model_state, scale(grads)


def default_update(task, state: dict, batch, rng, optimizer, accum: int = 1) -> tuple[dict, dict]:
    """One optimizer step on `task.loss` over every active parameter group: the update of single-network
    tasks. Metrics: the task's, plus 'loss' and 'grad_norm' (global norm of the gradients)."""
    loss, metrics, model_state, grads = compute_gradients(
        task.loss, state["params"], state["model_state"], batch, rng, accum, optimizer.trainable
    )
    params, opt_state = optimizer.apply(grads, state["opt_state"], state["params"], state["step"])
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
    return {**state, "params": params, "model_state": model_state, "opt_state": opt_state}, metrics


def all_finite(metrics: dict) -> jax.Array:
    """True when every floating-point scalar metric is finite (the loss, gradient norms, a GAN's two losses)."""
    checks = [
        jnp.all(jnp.isfinite(v)) for v in metrics.values() if jnp.issubdtype(jnp.result_type(v), jnp.floating)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def ema_update(ema_params, params, decay: float, mask: Any = None):
    """decay * ema + (1 - decay) * params on the leaves where `mask` is True (None: all); the other leaves
    follow the parameters (so the EMA tree can always stand in for the parameters)."""
    if mask is None:
        return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema_params, params)
    return jax.tree.map(lambda e, p, m: decay * e + (1 - decay) * p if m else p, ema_params, params, mask)
