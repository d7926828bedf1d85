"""`materialize(x)`: the identity, computed so that XLA's CPU backend keeps `x` in memory.

XLA fuses cheap elementwise producers into every consumer, duplicating them. In a residual network each
block's output is such a producer (batch norm, add, ReLU of the previous output), so where no consumer forces
it into memory the whole chain of earlier blocks is recomputed inside each consumer: the backward pass of n
bottlenecks did O(n^2) elementwise work (ResNet-101's 23-block stage read every earlier block's convolution
output again for each later block). On accelerators `lax.optimization_barrier` stops this; XLA:CPU drops
barriers before fusion, so on CPU the value is routed through a conditional on a runtime predicate, whose
result is a buffer that no fusion can look through. The gradient passes straight through. Measurements in
benchmarks/RESULTS.md ("Residual chains on CPU").
"""

import jax
import jax.numpy as jnp
from jax import lax


def _cpu_only_barrier(x):
    if jax.default_backend() != "cpu":
        return lax.optimization_barrier(x)
    first = jax.tree.leaves(x)[0]
    finite = jnp.isfinite(first.ravel()[0].astype(jnp.float32))  # a runtime predicate: both branches return x
    return lax.cond(finite, lambda: x, lambda: jax.tree.map(lambda v: v + jnp.zeros((), v.dtype), x))


@jax.custom_vjp
def materialize(x):
    """x (an array, or a pytree of arrays kept together by one conditional), kept in memory (see the module
    docstring); the gradient is the identity."""
    return _cpu_only_barrier(x)


materialize.defvjp(lambda x: (_cpu_only_barrier(x), None), lambda _, g: (g,))
