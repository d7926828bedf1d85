"""2-D convolution (NHWC, HWIO) computed where XLA's CPU backend is fast: matrix products.

XLA:CPU computes a convolution's weight gradient as a convolution of the input with the output gradient, which
it runs several times slower than the same contraction written as matrix products: for each of the kernel's
taps, the shifted view of the padded input times the output gradient (`weight_gradient`, accumulated in
float32; for a 1x1 kernel one `einsum('bhwc,bhwo->co')`). `conv2d` keeps XLA's convolution for the forward
pass and the input gradient of k x k kernels, with two exceptions, each a product forward and backward:
- a 1x1 kernel without padding: XLA:CPU ran its forward and input gradient as convolutions 1.1-2x slower than
  as dots (ResNet-101's shapes);
- a narrow k x k convolution from a much wider input (`uses_tap_product`: a classifier, DeepLab's ASPP 2048
  -> 20 channels with dilations 6-24): one product to every tap's output, shifted and summed (`tap_conv`);
  XLA:CPU's convolution ran those 5-10x slower.
Values are those of `lax.conv_general_dilated` and its autodiff (tested).

The weight-gradient products win where the contraction is large: every 1x1 convolution, and k x k ones whose
input and output both have at least `PATCH_MIN_CHANNELS` channels; for other narrow k x k convolutions (a tiny
model's layers) `conv_general_dilated` leaves the gradient to XLA (`uses_patch_gradient`), and so it does on
every other backend (this is a fix for XLA:CPU, not measured elsewhere). The measurements behind these choices
are in benchmarks/RESULTS.md ("Convolution weight gradients", "DeepLab-v2 on the AMX machine").
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jhuman.ops.materialize import materialize

DIMENSIONS = ("NHWC", "HWIO", "NHWC")
PATCH_MIN_CHANNELS = 128
TAP_MAX_OUT = 32  # `uses_tap_product`: at most this many output channels, at least 8x as many inputs,
TAP_MIN_IN = 512  # and at least this many


def uses_patch_gradient(kernel_shape, backend: str | None = None) -> bool:
    """Whether `conv_general_dilated` computes this HWIO kernel's weight gradient as a patch product: on the
    CPU backend only (GPU and TPU compilers have their own weight-gradient kernels, which we leave alone)."""
    if (backend or jax.default_backend()) != "cpu":
        return False
    kh, kw, cin, cout = kernel_shape
    return kh * kw == 1 or min(cin, cout) >= PATCH_MIN_CHANNELS


def uses_tap_product(kernel_shape, strides, backend: str | None = None) -> bool:
    """Whether `conv2d` computes this stride-1 k x k convolution (and its gradients) as ONE matrix product to
    the k*k taps' outputs, shifted and summed (`tap_conv`): on CPU, for a narrow output (<= TAP_MAX_OUT
    channels) from a much wider input, the shape of a classifier (DeepLab's ASPP: 2048 -> 20 channels, 3x3,
    dilation 6-24), which XLA:CPU's convolution ran at under a tenth of its speed on wide layers. Not below
    TAP_MIN_IN inputs: the parsing demo's ASPP (256 -> 20 at 12x12), faster alone as a tap product, made the
    demo's whole training step 45% slower (62 against 43 ms)."""
    if (backend or jax.default_backend()) != "cpu":
        return False
    kh, kw, cin, cout = kernel_shape
    narrow = cout <= TAP_MAX_OUT and cin >= max(8 * cout, TAP_MIN_IN)
    return kh * kw > 1 and tuple(strides) == (1, 1) and narrow


def tap_conv(x, w, padding, dilation):
    """The stride-1 convolution as y = x . [w_t for each tap t] (one product to k*k*O channels), then
    out[p] = sum_t y_t[p + offset_t] with zeros outside: the same sum of products, reordered. Its autodiff is
    dots too (the input and weight gradients are products with the shifted-back output gradient)."""
    kh, kw, cin, cout = w.shape
    (ph0, ph1), (pw0, pw1) = padding
    dh, dw = dilation
    batch, height, width, _ = x.shape
    ho, wo = height + ph0 + ph1 - dh * (kh - 1), width + pw0 + pw1 - dw * (kw - 1)
    taps = w.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)  # (I, taps x O), taps in (row, column) order
    y = jnp.einsum("bhwi,io->bhwo", x, taps, preferred_element_type=jnp.float32)
    y = jnp.pad(
        y.reshape(batch, height, width, kh * kw, cout), ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0), (0, 0))
    )
    out = sum(
        y[:, i * dh : i * dh + ho, j * dw : j * dw + wo, i * kw + j] for i in range(kh) for j in range(kw)
    )
    return out.astype(jnp.result_type(x, w))


def is_pointwise(kernel_shape, padding) -> bool:
    """A 1x1 kernel without padding: a matrix product over channels at every (strided) pixel."""
    return kernel_shape[0] * kernel_shape[1] == 1 and all(p == 0 for pair in padding for p in pair)


def _conv(x, w, strides, padding, dilation):
    if is_pointwise(w.shape, padding):  # XLA:CPU runs this contraction 1.1-2x faster as a dot than as a conv
        sh, sw = strides
        out = jnp.einsum("bhwi,io->bhwo", x[:, ::sh, ::sw], w[0, 0], preferred_element_type=jnp.float32)
        return out.astype(jnp.result_type(x, w))
    if uses_tap_product(w.shape, strides):
        return tap_conv(x, w, padding, dilation)
    return lax.conv_general_dilated(
        x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=DIMENSIONS
    )


def _input_gradient(x, w, g, strides, padding, dilation):
    """d(sum(g * conv(x, w))) / dx: for a pointwise kernel the product with w transposed, placed back on the
    strided pixels (zeros between); otherwise XLA's transposed convolution."""
    if not is_pointwise(w.shape, padding):
        return jax.vjp(lambda x_: _conv(x_, w, strides, padding, dilation), x)[1](g)[0]
    dx = jnp.einsum("bhwo,io->bhwi", g, w[0, 0], preferred_element_type=jnp.float32).astype(x.dtype)
    (sh, sw), (height, width) = strides, x.shape[1:3]
    if (sh, sw) == (1, 1):
        return dx
    pad_h, pad_w = height - ((dx.shape[1] - 1) * sh + 1), width - ((dx.shape[2] - 1) * sw + 1)
    zero = jnp.zeros((), dx.dtype)
    return lax.pad(dx, zero, ((0, 0, 0), (0, pad_h, sh - 1), (0, pad_w, sw - 1), (0, 0, 0)))


def tap_views(x, kernel_hw: Sequence[int], out_hw: Sequence[int], strides, padding, dilation):
    """For each of the kernel's taps, in (row, column) order, the (B, Ho, Wo, C) input values it meets at the
    output pixels, from x (B, H, W, C) padded by `padding`."""
    (ph0, ph1), (pw0, pw1) = padding
    xp = jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
    (kh, kw), (ho, wo), (sh, sw), (dh, dw) = kernel_hw, out_hw, strides, dilation
    return [
        xp[:, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]


def weight_gradient(x, g, kernel_shape, strides, padding, dilation):
    """d(sum(g * conv(x, w))) / dw for x (B, H, W, C), g (B, Ho, Wo, O): (kh, kw, C, O) in g's dtype.

    One product per tap, x_t^T g, accumulated in float32. Per tap rather than one product with the
    (B, Ho, Wo, k*k*C) patch matrix: XLA:CPU then copied the concatenated patches once more into its dot layout
    (3x3, 256 channels at 41x41: 25 ms against 37). The operand XLA lays out again for its dot is the first
    one: the narrower of the two goes first."""
    kh, kw, cin, cout = kernel_shape
    taps = tap_views(x, (kh, kw), g.shape[1:3], strides, padding, dilation)
    if cin >= cout:
        dw = jnp.stack([jnp.einsum("bhwo,bhwi->oi", g, t, preferred_element_type=jnp.float32) for t in taps])
        dw = jnp.swapaxes(dw, 1, 2)
    else:
        dw = jnp.stack([jnp.einsum("bhwi,bhwo->io", t, g, preferred_element_type=jnp.float32) for t in taps])
    return dw.reshape(kh, kw, cin, cout).astype(g.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x, w, strides=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
    """`lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation)` in NHWC / HWIO, with the
    weight gradient computed as a patch product (see the module docstring). strides, padding ((top, bottom),
    (left, right)) and dilation are static tuples."""
    return _conv(x, w, strides, padding, dilation)


def _conv2d_fwd(x, w, strides, padding, dilation):
    return _conv(x, w, strides, padding, dilation), (x, w)


def _conv2d_bwd(strides, padding, dilation, residuals, g):
    x, w = residuals
    if uses_tap_product(w.shape, strides):  # both gradients are products (tap_conv's autodiff)
        return jax.vjp(lambda x_, w_: tap_conv(x_, w_, padding, dilation), x, w)[1](g)
    g = materialize(
        g
    )  # stored once: fused into the dots' transposed operand copies, XLA redid it (slowly) there
    dx = _input_gradient(x, w, g, strides, padding, dilation)
    dw = weight_gradient(x, g, w.shape, strides, padding, dilation).astype(w.dtype)
    return dx, dw


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv_general_dilated(
    lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
    feature_group_count=1, precision=None,
):  # fmt: skip
    """`lax.conv_general_dilated`'s signature (what `flax.linen.Conv(conv_general_dilated=...)` calls):
    `conv2d` for 2-D NHWC / HWIO convolutions with explicit padding, no input dilation and one group whose
    kernel `uses_patch_gradient` or `uses_tap_product`; anything else goes to lax unchanged."""
    simple = (
        lhs.ndim == 4
        and feature_group_count == 1
        and precision is None
        and not isinstance(padding, str)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, DIMENSIONS)
        and (uses_patch_gradient(rhs.shape) or uses_tap_product(rhs.shape, window_strides))
    )
    if not simple:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, precision=precision,
        )  # fmt: skip
    pads = tuple(tuple(int(p) for p in pair) for pair in padding)
    return conv2d(lhs, rhs, tuple(window_strides), pads, tuple(rhs_dilation or (1, 1)))
