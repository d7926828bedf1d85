"""jhuman.ops.conv: values and gradients equal lax.conv_general_dilated's, for strides, dilations, paddings."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jhuman.models.conv import Conv
from jhuman.ops import conv as conv_ops


def reference(x, w, strides, padding, dilation):
    return lax.conv_general_dilated(
        x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=conv_ops.DIMENSIONS
    )


@pytest.mark.parametrize(
    "kernel, strides, padding, dilation, cin, cout",
    [
        (1, (1, 1), ((0, 0), (0, 0)), (1, 1), 5, 4),
        (1, (2, 2), ((0, 0), (0, 0)), (1, 1), 5, 4),
        (
            1,
            (2, 3),
            ((0, 0), (0, 0)),
            (1, 1),
            5,
            4,
        ),  # a pointwise product; zeros after the last strided column
        (1, (1, 1), ((1, 0), (0, 1)), (1, 1), 5, 4),  # padded: XLA's convolution
        (3, (1, 1), ((1, 1), (1, 1)), (1, 1), 5, 4),
        (3, (2, 2), ((1, 1), (1, 1)), (1, 1), 5, 4),
        (3, (1, 1), ((2, 2), (2, 2)), (2, 2), 5, 4),
        (3, (1, 2), ((4, 3), (0, 1)), (4, 1), 5, 4),
        (7, (2, 2), ((3, 3), (3, 3)), (1, 1), 5, 4),
        (3, (1, 1), ((3, 3), (3, 3)), (3, 3), 512, 3),  # narrow output from a wide input: tap products
        (3, (1, 1), ((2, 1), (0, 3)), (2, 1), 512, 3),
        (2, (1, 1), ((0, 0), (1, 0)), (1, 2), 512, 5),
    ],
)
def test_values_and_gradients_match_lax(kernel, strides, padding, dilation, cin, cout):
    rng = np.random.default_rng(kernel + strides[1] + dilation[0])
    x = jnp.asarray(rng.normal(size=(2, 13, 11, cin)), jnp.float32)
    w = jnp.asarray(
        rng.normal(size=(kernel, kernel, cin, cout)) / np.sqrt(kernel * kernel * cin), jnp.float32
    )
    assert conv_ops.uses_tap_product(w.shape, strides) == (cin >= 512 and kernel > 1)
    ours = conv_ops.conv2d(x, w, strides, padding, dilation)
    theirs = reference(x, w, strides, padding, dilation)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(rng.normal(size=theirs.shape), jnp.float32)
    loss = lambda fn: lambda x, w: jnp.sum(fn(x, w, strides, padding, dilation) * g)
    dx, dw = jax.grad(loss(conv_ops.conv2d), argnums=(0, 1))(x, w)
    rx, rw = jax.grad(loss(reference), argnums=(0, 1))(x, w)
    np.testing.assert_allclose(dx, rx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, rw, rtol=1e-4, atol=1e-4)


def test_linen_layer_is_nn_conv_with_the_same_parameters_and_gradients():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 3)), jnp.float32)
    ours = Conv(6, (3, 3), padding=((2, 2), (2, 2)), kernel_dilation=(2, 2), name="c")
    plain = nn.Conv(6, (3, 3), padding=((2, 2), (2, 2)), kernel_dilation=(2, 2), name="c")
    variables = plain.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(variables)
    grads = [jax.grad(lambda v, m=m: jnp.sum(m.apply(v, x) ** 2))(variables) for m in (ours, plain)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), *grads)
    # 'SAME' padding and grouped convolutions take lax's own path, unchanged.
    same = Conv(6, (3, 3), padding="SAME")
    np.testing.assert_allclose(
        same.apply(same.init(jax.random.key(1), x), x),
        nn.Conv(6, (3, 3), padding="SAME").apply(same.init(jax.random.key(1), x), x),
        rtol=1e-6,
    )


def test_patch_gradient_only_where_it_wins(monkeypatch):
    """1x1 kernels and wide k x k kernels go through conv2d; narrow k x k kernels (a tiny model's layers, a
    20-class classifier) keep XLA's own gradient."""
    assert conv_ops.uses_patch_gradient((1, 1, 8, 4))
    assert conv_ops.uses_patch_gradient((3, 3, 256, 256))
    assert not conv_ops.uses_patch_gradient((3, 3, 2048, 20))
    assert not conv_ops.uses_patch_gradient((3, 3, 16, 16))
    assert not conv_ops.uses_patch_gradient((1, 1, 8, 4), backend="gpu")  # XLA:CPU only
    calls = []
    monkeypatch.setattr(conv_ops, "conv2d", lambda *a: calls.append(a[1].shape) or reference(*a))
    x = jnp.zeros((1, 5, 5, 128), jnp.float32)
    dims = lax.conv_dimension_numbers(x.shape, (3, 3, 128, 128), conv_ops.DIMENSIONS)
    for kernel in [(3, 3, 128, 128), (3, 3, 128, 20), (1, 1, 128, 20)]:
        conv_ops.conv_general_dilated(x, jnp.zeros(kernel), (1, 1), ((1, 1), (1, 1)), None, (1, 1), dims)
    assert calls == [(3, 3, 128, 128), (1, 1, 128, 20)]


def test_pointwise_kernels_are_dots_forward_and_backward():
    x = jnp.zeros((1, 8, 8, 16), jnp.float32)
    for kernel, padding, convolutions in ((1, ((0, 0), (0, 0)), 0), (3, ((1, 1), (1, 1)), 2)):
        w = jnp.zeros((kernel, kernel, 16, 8), jnp.float32)
        step = jax.jit(
            jax.value_and_grad(lambda x, w: jnp.sum(conv_ops.conv2d(x, w, (2, 2), padding)), (0, 1))
        )
        hlo = step.lower(x, w).compile().as_text()
        # forward and input gradient; the weight gradient is always a dot
        assert len(re.findall(r"= \S+ convolution\(", hlo)) == convolutions, hlo
