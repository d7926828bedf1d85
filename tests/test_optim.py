import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
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


def grouped(**groups):
    c = cfg()
    c.groups = ml_collections.ConfigDict(groups)
    return c


def test_without_groups_the_state_tree_is_the_single_chain_of_before():
    c = cfg(momentum=0.9, weight_decay=0.5, lr_multipliers=(("classifier", 10.0),))
    state = optim.Optimizer(c, PARAMS, 10).init(PARAMS)

    def multipliers():  # the earlier per-parameter multiplier transformation: stateless
        return optax.GradientTransformation(lambda p: optax.EmptyState(), lambda u, s, p=None: (u, s))

    before = optax.chain(
        optax.add_decayed_weights(0.5, mask=optim.decay_mask(PARAMS, False)),
        optax.sgd(optim.make_schedule(c, 10), momentum=0.9),
        multipliers(),
    ).init(PARAMS)
    assert jax.tree.structure(state) == jax.tree.structure(before)


def test_groups_have_their_own_rates_and_a_frozen_group_never_moves():
    opt = optim.Optimizer(
        grouped(
            head={"pattern": "^classifier/", "learning_rate": 1.0},
            trunk={"pattern": "^backbone/", "frozen": True},
        ),
        PARAMS,
        10,
    )
    state = opt.init(PARAMS)
    assert jax.tree.leaves(state.inner_states["trunk"]) == []  # frozen: no optimizer state
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    params, state = opt.apply(grads, state, PARAMS, jnp.asarray(0))
    np.testing.assert_array_equal(params["backbone"]["kernel"], PARAMS["backbone"]["kernel"])
    np.testing.assert_allclose(params["classifier"]["kernel"], PARAMS["classifier"]["kernel"] - 1.0)
    assert opt.trainable == {
        "backbone": {"bias": False, "kernel": False},
        "classifier": {"bias": True, "kernel": True},
    }


def test_a_window_schedule_counts_from_its_start_and_other_groups_keep_their_state():
    # SGD without momentum and unit gradients: each update is -lr(k), k = the group's own update count.
    opt = optim.Optimizer(
        grouped(
            head={
                "pattern": "^classifier/",
                "schedule": "poly",
                "poly_power": 1.0,
                "start_step": 5,
                "end_step": 15,
            },
            trunk={"pattern": "^backbone/", "name": "adam"},
        ),
        PARAMS,
        20,
    )
    state, params = opt.init(PARAMS), PARAMS
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    moves = []
    for step in range(12):
        before = params["classifier"]["bias"]
        params, state = opt.apply(grads, state, params, jnp.asarray(step))
        moves.append(float((before - params["classifier"]["bias"])[0]))
    expected = [0.0] * 5 + [0.1 * (1 - k / 10) for k in range(7)]
    np.testing.assert_allclose(moves, expected, rtol=1e-5, atol=1e-7)
    rates = opt.learning_rates(jnp.asarray(7))
    assert np.isclose(float(rates["learning_rate/head"]), 0.1 * (1 - 2 / 10))
    # Updating one group leaves the other's Adam moments exactly as they were.
    trunk = jax.tree.map(np.asarray, state.inner_states["trunk"])
    _, after = opt.apply(grads, state, params, jnp.asarray(8), groups=("head",))
    jax.tree.map(np.testing.assert_array_equal, trunk, jax.tree.map(np.asarray, after.inner_states["trunk"]))
    with pytest.raises(ValueError, match=r"unknown optimizer groups \['disc'\]; valid: \['head', 'trunk'\]"):
        opt.apply(grads, state, params, jnp.asarray(8), groups=("disc",))


def test_group_window_and_pattern_errors():
    with pytest.raises(ValueError, match="window start_step=5 .. end_step=5 is empty"):
        optim.Optimizer(grouped(all={"pattern": ".", "start_step": 5, "end_step": 5}), PARAMS, 10)
    with pytest.raises(ValueError, match="needs a 'pattern'"):
        optim.Optimizer(grouped(all={"learning_rate": 0.1}), PARAMS, 10)
    with pytest.raises(ValueError, match="is not a regex"):
        optim.Optimizer(grouped(all={"pattern": "("}), PARAMS, 10)
