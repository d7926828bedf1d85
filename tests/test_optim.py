import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jhuman import optim


def cfg(**kw):
    c = ml_collections.ConfigDict(
        dict(
            name="sgd",
            learning_rate=0.1,
            momentum=0.0,
            nesterov=False,
            weight_decay=0.0,
            decay_biases=False,
            schedule="constant",
            poly_power=0.9,
            step_boundaries=(0.5,),
            step_factor=0.1,
            warmup_steps=0,
            lr_multipliers=(),
            grad_clip_norm=0.0,
        )
    )
    c.update(kw)
    return c


PARAMS = {
    "backbone": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))},
    "classifier": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))},
}


def test_poly_schedule_with_warmup_matches_formula():
    sched = optim.make_schedule(cfg(schedule="poly", warmup_steps=10), total_steps=110)
    assert float(sched(0)) == 0.0 and np.isclose(float(sched(5)), 0.05)
    for t in (10, 50, 109):
        assert np.isclose(float(sched(t)), 0.1 * (1 - (t - 10) / 100) ** 0.9, rtol=1e-5)


def test_step_and_cosine_schedules():
    step = optim.make_schedule(cfg(schedule="step"), total_steps=100)
    assert np.isclose(float(step(49)), 0.1) and np.isclose(float(step(51)), 0.01)
    cos = optim.make_schedule(cfg(schedule="cosine"), total_steps=100)
    assert np.isclose(float(cos(50)), 0.05, rtol=1e-4) and float(cos(100)) < 1e-6
    with pytest.raises(ValueError, match="not one of"):
        optim.make_schedule(cfg(schedule="linear"), 10)


def test_classifier_lr_multiplier_and_weight_decay_mask():
    tx, _ = optim.make_optimizer(cfg(lr_multipliers=(("classifier", 10.0),), weight_decay=0.5), PARAMS, 10)
    grads = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    # Zero gradients: the update is pure weight decay, only on kernels, 10x on the classifier.
    np.testing.assert_allclose(updates["backbone"]["kernel"], -0.1 * 0.5)
    np.testing.assert_allclose(updates["classifier"]["kernel"], -0.1 * 0.5 * 10)
    np.testing.assert_allclose(updates["backbone"]["bias"], 0.0)


def test_sgd_momentum_matches_hand_computation():
    tx, _ = optim.make_optimizer(cfg(momentum=0.9), PARAMS, 10)
    state = tx.init(PARAMS)
    g = jax.tree.map(jnp.ones_like, PARAMS)
    u1, state = tx.update(g, state, PARAMS)
    u2, state = tx.update(g, state, PARAMS)
    np.testing.assert_allclose(u1["backbone"]["bias"], -0.1)
    np.testing.assert_allclose(u2["backbone"]["bias"], -0.1 * 1.9, rtol=1e-6)


def test_unknown_optimizer_lists_valid():
    with pytest.raises(ValueError, match="sgd"):
        optim.make_optimizer(cfg(name="lamb"), PARAMS, 10)
