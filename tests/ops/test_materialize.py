"""jhuman.ops.materialize: the identity in value and gradient, and a residual chain's compiled gradient no
longer recomputes earlier blocks inside later ones."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from jhuman.models import resnet
from jhuman.ops.materialize import materialize


def test_identity_in_value_and_gradient_nan_included():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4)), jnp.float32).at[0, 0, 0].set(jnp.nan)
    np.testing.assert_array_equal(jax.jit(materialize)(x), x)
    g = jax.grad(lambda x: jnp.nansum(jnp.sin(materialize(x))))(x)
    np.testing.assert_array_equal(g, jax.grad(lambda x: jnp.nansum(jnp.sin(x)))(x))


def test_a_pytree_is_kept_whole_ints_included():
    ints = jnp.arange(6, dtype=jnp.int32).reshape(2, 3)
    floats = jnp.full((4,), jnp.inf, jnp.float32)  # a non-finite first element takes the other branch
    for tree in ((ints, floats), (floats, ints), {"a": ints}):
        out = jax.jit(materialize)(tree)
        assert jax.tree.structure(out) == jax.tree.structure(tree)
        for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(tree)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_no_instruction_of_a_residual_chain_gradient_reads_several_blocks():
    """Before materialize, XLA:CPU fused each block's output (batch norm + add + ReLU) into its consumers
    through every earlier block: one fusion read the bn3 statistics of blocks 0..n-2 (O(n^2) work)."""
    x = jnp.zeros((1, 8, 8, 32), jnp.float32)
    stage = resnet.Stage(num_blocks=4, planes=8, dilation=2, norm="frozen")
    variables = jax.eval_shape(stage.init, jax.random.key(0), x)

    def grad(params, variables, x):
        return jax.grad(lambda p: jnp.sum(stage.apply({**variables, "params": p}, x) ** 2))(params)

    text = jax.jit(grad).lower(variables["params"], variables, x).compile().as_text()
    blocks_read = [
        len(set(re.findall(r"block(\d)____bn3____mean", line)))
        for line in text.splitlines()
        if " = " in line and "parameter(" not in line
    ]
    assert blocks_read and max(blocks_read) == 1, max(blocks_read)
