"""How `decode` reads its inputs: host arrays in place (never copied), each field where it is used.

A PersonLab decoder reads little of its inputs: the Hough votes every `hough_stride`-th pixel, the mid-range
offsets along a few hundred tree walks, the long-range offsets on the mask grid and at the keypoints. At 401x401
the five maps are 96 MB of float32 (mid-range offsets (H, W, 32, 2) alone 41 MB), so COPYING them costs more than
the decoding, and two things copy them:

1. `jax.device_put` of a numpy array copies it unless its data is 64-byte aligned (XLA's CPU client aliases host
   memory only then), and numpy allocates at 16 bytes: every network output a user holds as numpy gets copied,
   into fresh pages (page faults: about as costly as the copy itself). `host_view` therefore hands XLA an aligned
   view that starts at the 64-byte boundary at or before the array's first element (the same memory page, so
   always readable; the up to 60 bytes before the array are never used) and says where the array starts in it
   (a traced int32: every alignment shares one compiled decoder). A transposed view of a C-contiguous buffer (a
   channels-first output permuted to (H, W, C)) is read in place the same way, through its strides.
2. A field sliced out of such a view and read inside a `lax.while_loop` / `fori_loop` / `cond` is
   materialised: XLA hoists the loop-invariant slice out of the loop (or makes it an operand of the cond) and
   copies it. So a `View` is never sliced where control flow reads it: `at` gathers elements straight from the
   flat buffer (flat[start + sum(index * stride)]); `dense` (the slice, reshaped) is for reads outside control
   flow, where XLA fuses it into its consumers. `at`, `bilinear`, `dense` and `shape` take a View or a plain
   array alike, so the kernels (`offsets.sample_refined_mid`, `grouping.traverse`, `grouping.block_owners`) do
   not care which they get.

Everything read comes back as float32: float16 / bfloat16 inputs are read as they are (half the transfer) and
converted where read; other dtypes are converted once on the host (float64: one pass into aligned memory, where
jax would convert and then copy).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jhuman.ops import image as image_ops

ALIGN = 64  # bytes: XLA's CPU client aliases a host buffer (instead of copying it) at this alignment
PAGE = 4096  # bytes: the granularity of memory protection (a multiple of ALIGN)
READ_AS_IS = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(jnp.bfloat16))


class View:
    """A field read in place: element (i_0, i_1, ...) of a field of `shape` is flat[start + sum_k i_k strides[k]]
    (`flat` a 1-D device array aliasing the host memory, `start` a traced int32, strides in items)."""

    def __init__(self, flat, start, shape, strides):
        self.flat, self.start = flat, start
        self.shape, self.strides = tuple(shape), tuple(strides)

    def image(self, index):
        """Image `index` (traced) of a batched field."""
        return View(self.flat, self.start + index * self.strides[0], self.shape[1:], self.strides[1:])

    def dense(self):
        """The whole field as an array: a dynamic slice, reshaped and transposed (outside control flow XLA fuses
        it into the ops that read it); a gather of every element if they are not one block of memory (an image
        of a batch whose batch axis is not the outermost in memory)."""
        order = sorted(range(len(self.shape)), key=lambda axis: -self.strides[axis])  # memory order
        size, block = math.prod(self.shape), 1
        for axis in reversed(order):
            if self.shape[axis] > 1 and self.strides[axis] != block:
                return self.at(*np.indices(self.shape, sparse=True))
            block *= self.shape[axis]
        x = lax.dynamic_slice(self.flat, (self.start,), (size,)).reshape([self.shape[a] for a in order])
        return x.transpose(np.argsort(order))

    def at(self, *index):
        """field[index] for integer index arrays (broadcast together) on the leading axes: gathered from flat.
        Trailing axes that lie in one block of memory (C order) come as one window per index (a gather of
        slices, not of every element)."""
        offset = self.start
        for i, stride in zip(index, self.strides):
            offset = offset + jnp.asarray(i, jnp.int32) * stride
        trailing = list(zip(self.shape[len(index) :], self.strides[len(index) :]))
        block = 1
        while trailing and trailing[-1][1] == block:  # the C-ordered innermost axes: one window
            block *= trailing.pop()[0]
        window = self.shape[len(self.shape) - (len(self.shape) - len(index) - len(trailing)) :]
        for size, stride in trailing:  # the other trailing axes, element by element
            offset = offset[..., None] + jnp.arange(size, dtype=jnp.int32) * stride
        if block == 1:
            return self.flat[offset]
        offset = jnp.asarray(offset, jnp.int32)
        numbers = lax.GatherDimensionNumbers(
            offset_dims=(offset.ndim,), collapsed_slice_dims=(), start_index_map=(0,)
        )
        values = lax.gather(
            self.flat, offset[..., None], numbers, (block,), mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS
        )
        return values.reshape(*offset.shape, *window)


def every(field, offset: int, stride: int):
    """field[offset::stride, offset::stride] of a field (H, W, ...) as a float32 array; from a View, one gather
    of just those elements (sliced out of the buffer instead, XLA recomputed the slice in each of its
    consumers)."""
    if not isinstance(field, View):
        return jnp.asarray(field[offset::stride, offset::stride], jnp.float32)
    height, width = field.shape[:2]
    rows = np.arange(offset, height, stride)[:, None]
    cols = np.arange(offset, width, stride)[None, :]
    return jnp.asarray(field.at(rows, cols), jnp.float32)


def shape(field) -> tuple:
    return tuple(field.shape)


def dense(field):
    """A field (array or View) as a float32 array."""
    return jnp.asarray(field.dense() if isinstance(field, View) else field, jnp.float32)


def at(field, *index):
    """field[index] as float32, index: int arrays (broadcast together) on the leading axes; for an array, one
    gather from its flattened form (as the kernels index their fields), for a View from its buffer."""
    if isinstance(field, View):
        return jnp.asarray(field.at(*index), jnp.float32)
    field = jnp.asarray(field)
    lead, trailing = field.shape[: len(index)], field.shape[len(index) :]
    flat = 0
    for i, size in zip(index, lead):
        flat = flat * size + jnp.asarray(i, jnp.int32)
    return jnp.asarray(field.reshape(-1, *trailing)[flat], jnp.float32)


def bilinear(field, points, channels=None):
    """`jhuman.ops.image.bilinear_sample(field, points, channels, clamp=False)` for a field that may be a View, at
    points (..., 2) already clamped into the image: with `channels` (broadcast against points[..., 0]) channel
    channels[i] of a field (H, W, C, *T) at points[i] -> (..., *T); without, all of a field (H, W, *T) -> (..., *T).
    float32."""
    height, width = shape(field)[:2]
    x0, x1, y0, y1, fx, fy = image_ops.bilinear_corners(points, height, width)
    if channels is None:
        index = ()
        expand = (...,) + (None,) * (len(shape(field)) - 2)
    else:
        index = (jnp.broadcast_to(jnp.asarray(channels, jnp.int32), x0.shape),)
        expand = (...,) + (None,) * (len(shape(field)) - 3)
    fx, fy = fx[expand], fy[expand]

    def corner(y, x):
        return at(field, y, x, *index)

    return (1 - fy) * ((1 - fx) * corner(y0, x0) + fx * corner(y0, x1)) + fy * (
        (1 - fx) * corner(y1, x0) + fx * corner(y1, x1)
    )


class _Interface:
    """Exposes `length` items of `dtype` at address `pointer` to numpy, keeping `owner` alive."""

    def __init__(self, owner, pointer: int, length: int, dtype):
        self.owner = owner
        self.__array_interface__ = {
            "data": (pointer, True),  # read-only
            "shape": (length,),
            "typestr": np.dtype(dtype).str,
            "version": 3,
        }


def _aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array whose data is ALIGN-byte aligned, with ALIGN spare bytes after it (so
    its `host_view` never needs memory beyond the allocation)."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + 2 * ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _in_place(x) -> bool:
    """x's elements fill one block of memory in some order of its axes (C-contiguous up to a transposition)."""
    if x.size == 0 or any(stride < 0 for stride in x.strides):
        return False
    if x.flags.c_contiguous:  # the common case, without sorting the strides
        return True
    return x.transpose(np.argsort([-s for s in x.strides], kind="stable")).flags.c_contiguous


def _same_page(first: int, last: int) -> bool:
    return first // PAGE == last // PAGE


def host_view(x, in_place: bool = True):
    """A host array -> (flat, start, shape, strides): `flat` a 1-D numpy view of x's memory with x's element i at
    flat[start + sum(i_k strides[k])] (strides in items, start < 2 * ALIGN / itemsize).

    in_place (for a CPU device, which then reads the memory without copying it): flat starts on an ALIGN-byte
    boundary and holds size + ALIGN / itemsize items whatever x's alignment, so that one compiled decoder serves
    every alignment (the start is a traced value). It covers x and, before or after it, less than ALIGN bytes
    that lie in the same memory page as x's first or last byte (mapped, so readable; never read by the decoder,
    whose indices stay within x). Otherwise (an accelerator copies the memory anyway): flat is x's memory alone.
    Copies (once, into aligned memory) only when x cannot be read in place: a dtype other than float32 / float16 /
    bfloat16 (converted to float32), a layout that is not a transposition of a C-contiguous one, or (rarely) no
    room in x's pages for the spare bytes."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in READ_AS_IS else np.dtype(np.float32)
    owned = x.dtype != dtype or not _in_place(x) or x.ctypes.data % x.itemsize
    if owned:
        copy = _aligned_empty(x.shape, dtype)
        np.copyto(copy, x, casting="unsafe")
        x = copy
    strides = tuple(s // x.itemsize for s in x.strides)
    if not in_place:
        memory = x.transpose(np.argsort([-s for s in x.strides], kind="stable")).reshape(-1)  # a view
        return memory, 0, x.shape, strides
    pointer, nbytes = x.ctypes.data, x.nbytes  # pointer: the lowest address (strides are >= 0)
    gap = pointer % ALIGN
    if owned:
        begin = pointer  # aligned, with ALIGN spare bytes after it
    elif gap and _same_page(pointer + nbytes - 1, pointer + nbytes - 1 + ALIGN - gap):
        begin = pointer - gap  # gap bytes before x (its own 64-byte block), ALIGN - gap after it
    elif not gap and _same_page(pointer + nbytes - 1, pointer + nbytes - 1 + ALIGN):
        begin = pointer  # ALIGN bytes after x
    elif not gap and _same_page(pointer - ALIGN, pointer):
        begin = pointer - ALIGN  # ALIGN bytes before x
    else:  # x ends too close to a page boundary: an aligned copy, with room after it
        copy = _aligned_empty(x.shape, x.dtype)
        np.copyto(copy, x)
        x, begin = copy, copy.ctypes.data
        pointer = begin
    items = ALIGN // x.itemsize
    flat = np.asarray(_Interface(x, begin, x.size + items, x.dtype))
    return flat, (pointer - begin) // x.itemsize, x.shape, strides


def put_host(arrays, device=None):
    """Host arrays (None allowed) -> (flats, starts, layouts): their `host_view`s, where each array starts in
    its view (int32, one (n,) array) and the static layouts (shape, strides in items) per array; `view` turns
    them into Views inside the jitted function. For a CPU device the flats stay numpy arrays, handed to the
    jitted call as they are: XLA's CPU client aliases their aligned memory (no copy), and jit's own argument
    conversion does it for a fraction of the cost of a `jax.device_put` from Python (0.2 ms of a 3.5 ms
    decode, benchmarks/RESULTS.md); for an accelerator ONE `jax.device_put` of them all."""
    if device is None:
        default = jax.config.jax_default_device
        platform = getattr(default, "platform", default) or jax.default_backend()
    else:
        platform = device.platform
    views = [None if a is None else host_view(a, platform == "cpu") for a in arrays]
    flats = tuple(v[0] for v in views if v is not None)
    if platform != "cpu" or device is not None:
        flats = jax.device_put(flats, device)
    starts = np.array([v[1] for v in views if v is not None], np.int32)
    layouts = tuple(None if v is None else (v[2], v[3]) for v in views)
    return flats, starts, layouts


def view(flat, start, layout) -> View:
    shape, strides = layout
    return View(flat, start, shape, strides)
