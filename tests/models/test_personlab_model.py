"""PersonLab model (jhuman.models.personlab): shapes and dtypes, raw heads = trunk + 1x1 convs + aligned
upsampling, recurrent refinement against a hand-written bilinear computation, bf16 compute, config errors."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhuman.classes import PERSONLAB_DIRECTED_EDGES
from jhuman.models import resnet
from jhuman.models.personlab import PersonLab, build_personlab
from jhuman.ops.image import upsample_aligned
from jhuman.ops.personlab.offsets import refine_offsets

TINY = dict(backbone="resnet50", width=8, stage_sizes=(1, 1, 1, 1))
SHAPES = {
    "heatmap_logits": (2, 64, 64, 17),
    "short_offsets": (2, 64, 64, 17, 2),
    "mid_offsets": (2, 64, 64, 32, 2),
    "long_offsets": (2, 64, 64, 17, 2),
    "segmentation_logits": (2, 64, 64),
}


def _images(batch=2, size=64, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, size, size, 3)), jnp.float32)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shapes_and_dtypes(dtype):
    model = PersonLab(**TINY, intermediate_supervision=True, dtype=dtype)
    x = jnp.zeros((2, 64, 64, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    outputs = jax.eval_shape(lambda v: model.apply(v, x), variables)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))  # params f32 under bf16 compute
    assert sorted(variables["params"]) == ["heads", "intermediate_heads", "trunk"]
    heads = variables["params"]["heads"]
    assert sum(heads[n]["kernel"].shape[-1] for n in heads) == 150
    assert heads["heatmap"]["kernel"].shape == (1, 1, 256, 17) and heads["mid"]["kernel"].shape[-1] == 64
    for out in (outputs, outputs["intermediate"]):
        assert {k: v.shape for k, v in out.items() if k != "intermediate"} == SHAPES
        assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(out))


def _bilinear(field, x, y):
    """Plain bilinear interpolation of field (H, W, 2) at (x, y) inside the image."""
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(x0 + 1, field.shape[1] - 1), min(y0 + 1, field.shape[0] - 1)
    fx, fy = x - x0, y - y0
    return (1 - fy) * ((1 - fx) * field[y0, x0] + fx * field[y0, x1]) + fy * (
        (1 - fx) * field[y1, x0] + fx * field[y1, x1]
    )


def _refine_pixel(offset, field, row, col, steps):
    """One pixel's refinement by hand: p = clamp(x + offset), offset <- p + field(p) - x."""
    height, width = field.shape[:2]
    for _ in range(steps):
        p = np.clip(np.array([col, row], np.float64) + offset, 0, [width - 1, height - 1])
        offset = p + _bilinear(field, *p) - (col, row)
    return offset


def test_refine_offsets_against_manual_bilinear():
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-20, 20, (2, 12, 15, 3, 2)).astype(np.float32)
    field = rng.uniform(-4, 4, (2, 12, 15, 5, 2)).astype(np.float32)
    channels = np.array([4, 0, 2])
    got = np.asarray(refine_offsets(offsets, field, channels, steps=2))
    for b, row, col, e in [(0, 5, 7, 0), (1, 0, 14, 2), (1, 11, 0, 1), (0, 3, 3, 2)]:
        want = _refine_pixel(
            offsets[b, row, col, e].astype(np.float64), field[b, ..., channels[e], :], row, col, 2
        )
        np.testing.assert_allclose(got[b, row, col, e], want, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(refine_offsets(offsets, field, channels, steps=0), offsets)


def test_refine_steps_zero_gives_raw_heads_and_refinement_uses_short_offsets(numpy_init):
    x = _images()
    raw_model = PersonLab(**TINY, refine_steps=0)
    variables = numpy_init(raw_model, x)
    params = flax.core.unfreeze(variables["params"])
    rng = np.random.default_rng(1)
    for head in params["heads"].values():  # larger heads: offsets of tens of pixels, land anywhere
        head["kernel"] = jnp.asarray(rng.normal(0, 0.05, head["kernel"].shape), jnp.float32)
        head["bias"] = jnp.asarray(rng.normal(0, 0.1, head["bias"].shape), jnp.float32)
    variables = {**variables, "params": params}
    raw = jax.jit(raw_model.apply)(variables, x)

    # Raw heads by hand: trunk res5 -> 1x1 convs -> upsample_aligned (stride 16) -> offsets x 32.
    trunk = resnet.ResNet(stage_sizes=(1, 1, 1, 1), width=8, output_stride=16, norm="frozen")
    res5 = trunk.apply({"params": params["trunk"], "batch_stats": variables["batch_stats"]["trunk"]}, x)[
        "res5"
    ]

    def head(name):
        p = params["heads"][name]
        return upsample_aligned(
            jnp.einsum("bhwc,cd->bhwd", res5, p["kernel"][0, 0]) + p["bias"], (64, 64), 16
        )

    np.testing.assert_allclose(raw["heatmap_logits"], head("heatmap"), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(raw["segmentation_logits"], head("segmentation")[..., 0], rtol=1e-4, atol=1e-4)
    for name, size in (("short", 17), ("mid", 32), ("long", 17)):
        np.testing.assert_allclose(
            raw[f"{name}_offsets"], 32 * head(name).reshape(2, 64, 64, size, 2), rtol=1e-4, atol=1e-3
        )

    refined = jax.jit(PersonLab(**TINY, refine_steps=2).apply)(variables, x)
    np.testing.assert_array_equal(refined["heatmap_logits"], raw["heatmap_logits"])
    np.testing.assert_array_equal(refined["short_offsets"], raw["short_offsets"])
    short, mid, long = (
        np.asarray(raw[k], np.float64) for k in ("short_offsets", "mid_offsets", "long_offsets")
    )
    for b, row, col, e in [(0, 10, 20, 3), (1, 63, 0, 30), (0, 40, 51, 17)]:
        k, l = PERSONLAB_DIRECTED_EDGES[e]
        want = _refine_pixel(mid[b, row, col, e], short[b, ..., l, :], row, col, 2)
        np.testing.assert_allclose(refined["mid_offsets"][b, row, col, e], want, rtol=1e-4, atol=1e-2)
        want = _refine_pixel(long[b, row, col, k], long[b, ..., k, :], row, col, 2)  # with themselves,
        want = _refine_pixel(want, short[b, ..., k, :], row, col, 2)  # then with short-range offsets
        np.testing.assert_allclose(refined["long_offsets"][b, row, col, k], want, rtol=1e-4, atol=1e-2)
    assert not np.allclose(refined["mid_offsets"], raw["mid_offsets"], atol=1.0)


def test_bfloat16_compute_runs_with_float32_params_and_outputs(numpy_init):
    x = _images(batch=1)
    model = PersonLab(**TINY, dtype=jnp.bfloat16)
    variables = numpy_init(model, x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    outputs = jax.jit(model.apply)(variables, x)
    assert all(v.dtype == jnp.float32 and bool(jnp.isfinite(v).all()) for v in jax.tree.leaves(outputs))


def test_config_errors_and_builder():
    with pytest.raises(ValueError, match="unknown backbone"):
        PersonLab(backbone="vgg16")
    with pytest.raises(ValueError, match="output_stride"):
        PersonLab(output_stride=4)
    with pytest.raises(ValueError, match="edges"):
        PersonLab(num_keypoints=5)
    with pytest.raises(ValueError, match="unknown PersonLab option"):
        build_personlab(backbone="resnet50", refine=2)
    model = build_personlab(backbone="resnet50", stage_sizes=[1, 1, 1, 1], dtype="bfloat16")
    assert model.stage_sizes == (1, 1, 1, 1) and model.dtype == jnp.bfloat16
