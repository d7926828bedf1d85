import flax
import jax
import numpy as np
import pytest


def _numpy_init(model, *args, seed=0, **kwargs):
    """Variables of `model` with He-normal kernels from numpy: random.normal compiles slowly on CPU, and
    these tests need shapes and well-scaled numbers, not flax's exact initialisers."""
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kwargs))
    rng = np.random.default_rng(seed)
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract))
    out = {}
    for path, leaf in flat.items():
        name = path[-1]
        if name == "kernel":
            std = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
            value = rng.normal(0.0, std, leaf.shape)
        elif name in ("scale", "var"):
            value = np.ones(leaf.shape)
        else:  # bias, mean
            value = np.zeros(leaf.shape)
        out[path] = jax.numpy.asarray(value, leaf.dtype)
    return flax.traverse_util.unflatten_dict(out)


@pytest.fixture
def numpy_init():
    return _numpy_init
