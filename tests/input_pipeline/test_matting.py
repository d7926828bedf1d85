"""Matting data: trimaps (classes, band width within the drawn kernels, vs a numpy reference), every stage's batches,
the composition equation, determinism by (seed, position) and exact resume, the pre-composited layout, corrupt
files skipped and counted, evaluation capping and padding, and the TFDS source (tiny folders in tmp_path)."""

import collections
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from input_pipeline import matting, pipeline
from input_pipeline.pipeline import CorruptExample, NoUsableExamples, Stats
from jhuman.classes import CAFFE_MEAN_RGB

tfds.disable_progress_bar()
H, W = 40, 48  # foreground size of the tiny folders


def _imwrite(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _person(rng, h=H, w=W):
    """(alpha uint8 (h, w) with an opaque ellipse, a soft ramp and a translucent patch, fg RGB uint8)."""
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2), (w // 4, h // 3), float(rng.uniform(0, 90)), 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (5, 5), 1.0)
    alpha[h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3] = 0.5  # a translucent patch inside
    fg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return np.round(alpha * 255).astype(np.uint8), fg


def write_composite(base, n_fg=3, k=2, seed=0, bg_scale=1.0, h=H, w=W):
    """<base>/{fg,alpha,bg}/ + list files; (h, w) foregrounds, backgrounds bg_scale times their size."""
    base, rng = Path(base), np.random.default_rng(seed)
    fgs, bgs = [f"p{i}.png" for i in range(n_fg)], []
    for i, name in enumerate(fgs):
        alpha, fg = _person(rng, h, w)
        _imwrite(base / "fg" / name, fg[..., ::-1])
        _imwrite(base / "alpha" / name, alpha)
        for j in range(k):
            bg = rng.integers(0, 256, (round(h * bg_scale), round(w * bg_scale), 3), dtype=np.uint8)
            bgs.append(f"b{i}_{j}.png")
            _imwrite(base / "bg" / bgs[-1], bg[..., ::-1])
    (base / "fg_names.txt").write_text("\n".join(fgs) + "\n")
    (base / "bg_names.txt").write_text("\n".join(bgs) + "\n")
    return fgs, bgs


def write_precomposited(base, n=3, seed=1, trimaps=True):
    base, rng = Path(base), np.random.default_rng(seed)
    for i in range(n):
        alpha, image = _person(rng)
        _imwrite(base / "image" / f"im{i}.jpg", image[..., ::-1])
        _imwrite(base / "alpha" / f"im{i}.png", alpha)
        if trimaps:
            trimap = matting.fixed_trimap(alpha, 3)
            trimap[0, 0] = 7  # not 0 / 255: unknown
            _imwrite(base / "trimap" / f"im{i}.png", trimap)


@pytest.fixture(scope="module")
def composite_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("matting") / "data"
    write_composite(root / "train", n_fg=3, k=2)
    write_composite(root / "val", n_fg=2, k=2, seed=5, bg_scale=2.0)
    return root


def _band(row):
    return np.flatnonzero(row == 128)


# ----------------------------------------------------------------------------------------------- trimaps
def test_trimap_band_width_is_the_drawn_kernels_and_soft_pixels_stay_unknown():
    alpha = np.zeros((16, 256), np.float32)
    alpha[:, :128] = 1.0  # a straight edge between columns 127 and 128
    alpha[0, 140] = 0.3  # a lone soft pixel beyond any dilation
    drawn = set()
    for seed in range(30):
        erode, dilate = matting.draw_kernels(np.random.default_rng(seed), alpha.shape)
        assert 3 <= erode <= 5 and 3 <= dilate <= 5  # 1-2 % of 256 px
        drawn.add((erode, dilate))
        trimap = matting.random_trimap(alpha, np.random.default_rng(seed))
        assert set(np.unique(trimap)) == {0, 128, 255}
        for row in trimap[8:]:  # beyond the dilation of the soft pixel
            np.testing.assert_array_equal(_band(row), np.arange(128 - erode, 128 + dilate))
        assert trimap[0, 140] == 128 and trimap[0, 139] == 128  # soft: unknown, and dilated around it
        np.testing.assert_array_equal(trimap, matting.random_trimap(alpha, np.random.default_rng(seed)))
    assert {e for e, _ in drawn} == {3, 4, 5} and len(drawn) > 5  # independent draws over the whole range
    # at least min_kernel px on small pictures
    assert matting.draw_kernels(np.random.default_rng(0), (32, 32)) == (2, 2)
    np.testing.assert_array_equal(matting.trimap_classes(np.array([0, 128, 255, 7], np.uint8)), [0, 1, 2, 1])


def _reference_trimap(alpha, erode, dilate):
    """Plain numpy: erosion / dilation by a disk as a min / max over its offsets (edges replicated)."""
    h, w = alpha.shape

    def morph(mask, r, op):
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)
        padded = np.pad(mask, r, mode="edge")
        stack = [
            padded[r + dy : r + dy + h, r + dx : r + dx + w]
            for dy in range(-r, r + 1)
            for dx in range(-r, r + 1)
            if kernel[dy + r, dx + r]
        ]
        return op(np.stack(stack), axis=0)

    fg = morph(alpha >= 1.0, erode, np.all)
    maybe = morph(alpha > 0, dilate, np.any)
    return np.where(fg, 255, np.where(maybe, 128, 0)).astype(np.uint8)


def test_trimap_matches_a_numpy_reference_on_a_soft_matte():
    alpha, _ = _person(np.random.default_rng(3))
    for erode, dilate in ((2, 2), (2, 5), (4, 3)):
        expected = _reference_trimap(alpha.astype(np.float32) / 255, erode, dilate)
        np.testing.assert_array_equal(matting.trimap_from_kernels(alpha, erode, dilate), expected)
    np.testing.assert_array_equal(matting.fixed_trimap(alpha, 3), matting.trimap_from_kernels(alpha, 3, 3))


def test_trimap_classes_follow_the_ops_order():
    ops = pytest.importorskip(
        "jhuman.ops.matting"
    )  # input_pipeline repeats the values (it never imports jax)
    assert ops.CLASSES == ("background", "unknown", "foreground")
    assert (ops.BACKGROUND, ops.UNKNOWN, ops.FOREGROUND) == (
        matting.BACKGROUND,
        matting.UNKNOWN,
        matting.FOREGROUND,
    )
    assert tuple(ops.TRIMAP_VALUES) == matting.TRIMAP_VALUES


def test_crop_geometry_rotates_mirrors_and_covers_like_numpy():
    picture = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    warp = lambda m, out=8: matting._warp(picture, m, out)  # noqa: E731
    np.testing.assert_allclose(warp(matting._crop_matrix(0, 0, 8, 8)), picture, atol=1e-6)
    np.testing.assert_allclose(warp(matting._crop_matrix(0, 0, 8, 8, flip=True)), picture[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(warp(matting._crop_matrix(0, 0, 8, 8, angle=90)), np.rot90(picture), atol=1e-5)
    half = warp(matting._crop_matrix(0, 0, 8, 4), 4)  # the whole picture into 4x4: 2x2 means
    np.testing.assert_allclose(half, picture.reshape(4, 2, 4, 2, 3).mean((1, 3)), atol=1e-5)
    window = warp(matting._crop_matrix(2, 3, 4, 4), 4)  # a window at (y0, x0) = (2, 3)
    np.testing.assert_allclose(window, picture[2:6, 3:7], atol=1e-6)
    # Warping only the part of a source the output reads (reflected borders included) changes nothing.
    rng = np.random.default_rng(1)
    big = rng.random((60, 50, 3)).astype(np.float32)
    for _ in range(20):
        side, angle = rng.uniform(8, 36), rng.uniform(-40, 40)  # at most 1.5 source px per output px
        m = matting._crop_matrix(
            rng.uniform(-10, 40), rng.uniform(-10, 30), side, 24, rng.random() < 0.5, angle
        )
        whole = cv2.warpAffine(
            big, m, (24, 24), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
        )
        np.testing.assert_allclose(matting._warp(big, m, 24), whole, atol=1e-5)


# ----------------------------------------------------------------------------------------------- stages
KEYS = {
    "tnet": {"image", "trimap"},
    "mnet": {"image", "trimap", "alpha", "fg", "bg", "has_fg_bg"},
    "end2end": {"image", "trimap", "alpha", "fg", "bg", "has_fg_bg", "window"},
}
ARGS = dict(crop_size=32, mnet_size=16, mnet_crops=(16, 24, 32), kernel_range=(0.05, 0.1))


@pytest.mark.parametrize("stage", matting.STAGES)
def test_every_stage_batch_keys_shapes_dtypes_ranges_and_composition(composite_root, stage):
    with matting.train_stream(composite_root, batch_size=3, stage=stage, seed=4, **ARGS) as stream:
        batch = next(stream)
    s = 16 if stage == "mnet" else 32
    assert set(batch) == KEYS[stage]
    assert batch["image"].shape == (3, s, s, 3) and batch["image"].dtype == np.float32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 255
    assert batch["trimap"].shape == (3, s, s) and batch["trimap"].dtype == np.int32
    assert set(np.unique(batch["trimap"])) == {0, 1, 2}
    if stage == "tnet":
        return
    alpha, fg, bg = batch["alpha"], batch["fg"], batch["bg"]
    assert alpha.shape == (3, s, s, 1) and alpha.dtype == np.float32 and 0 <= alpha.min() and alpha.max() <= 1
    for x in (fg, bg):
        assert x.shape == (3, s, s, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert batch["has_fg_bg"].dtype == np.bool_ and batch["has_fg_bg"].all()
    np.testing.assert_allclose(batch["image"] / 255.0, alpha * fg + (1 - alpha) * bg, atol=1e-5)
    soft = (alpha[..., 0] > 0) & (alpha[..., 0] < 1)
    assert np.all(batch["trimap"][soft] == matting.UNKNOWN)
    assert np.all(alpha[..., 0][batch["trimap"] == matting.FOREGROUND] == 1)
    assert np.all(alpha[..., 0][batch["trimap"] == matting.BACKGROUND] == 0)
    if stage == "end2end":
        window = batch["window"]
        assert window.dtype == np.int32 and window.shape == (3, 3)
        for (y0, x0, size), trimap in zip(window, batch["trimap"]):
            assert 1 <= size <= 32 and 0 <= y0 <= 32 - size and 0 <= x0 <= 32 - size
            assert (trimap[y0 : y0 + size, x0 : x0 + size] == matting.UNKNOWN).any()


def _files(base, fg, bg):
    read = lambda p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED)  # noqa: E731
    return (
        read(base / "alpha" / fg) / 255.0,
        read(base / "fg" / fg)[..., ::-1] / 255.0,
        read(base / "bg" / bg),
    )


def test_composite_equals_numpy_from_the_files(composite_root, tmp_path):
    # Whole-picture crops without rotation of square 40x40 pictures into 40x40: the numpy composite or its mirror.
    square = tmp_path / "square"
    write_composite(square / "train", n_fg=3, k=2, h=H, w=H)
    entries = matting.find_layout(square)["train"]
    with matting.train_stream(
        square,
        batch_size=6,
        stage="end2end",
        crop_size=H,
        tnet_crop_scale=(1.0, 1.0),
        max_rotation=0,
        mnet_crops=(H,),
    ) as stream:
        batch = next(stream)
    for image in batch["image"]:
        matches = 0
        for entry in entries:
            a, f, b = _files(square / "train", Path(entry.fg).name, Path(entry.bg).name)
            composite = (a[..., None] * f + (1 - a[..., None]) * b[..., ::-1] / 255.0) * 255
            matches += sum(np.abs(c - image).max() < 1e-3 for c in (composite, composite[:, ::-1]))
        assert matches == 1
    # Evaluation: the 2x larger backgrounds are resized to cover (2x2 means) and composited in [0, 1].
    batch = next(iter(matting.eval_stream(composite_root, batch_size=4, pad_size=64)))
    val = composite_root / "val"
    for image, name in zip(batch["image"], batch["id"]):
        fg_name, bg_name = (Path(p).name for p in name.split(" over "))
        a, f, b = _files(val, fg_name, bg_name)
        b = b[..., ::-1].reshape(H, 2, W, 2, 3).mean((1, 3)) / 255.0
        expected = (a[..., None] * f + (1 - a[..., None]) * b) * 255
        np.testing.assert_allclose(image[:H, :W], expected, atol=1e-3)


def test_examples_are_functions_of_seed_and_position_and_resume_is_exact(composite_root):
    args = dict(batch_size=2, stage="end2end", seed=7, **ARGS)
    with matting.train_stream(composite_root, **args) as stream:
        full = [next(stream) for _ in range(5)]  # 10 examples of 6: into the second epoch
    with matting.train_stream(composite_root, start_index=3 * 2, **args) as resumed:
        tail = [next(resumed) for _ in range(2)]
    for a, b in zip(tail, full[3:]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # Example at position p = train_example(raw, example_rng(seed, p)): the trimap too, whatever the batching.
    entries = matting.find_layout(composite_root)["train"]
    opts = matting.TrainOptions(stage="end2end", **ARGS)
    for position in (0, 5, 9):
        entry = entries[pipeline.example_index(position, len(entries), 7)]
        expected = matting.train_example(matting.read_example(entry), pipeline.example_rng(7, position), opts)
        got = {k: v[position % 2] for k, v in full[position // 2].items()}
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    with matting.train_stream(composite_root, **{**args, "seed": 8}) as other:
        assert not np.array_equal(next(other)["trimap"], full[0]["trimap"])


def test_precomposited_layout_uses_the_image_as_fg_and_bg_and_its_own_trimaps(tmp_path):
    root = tmp_path / "pre"
    write_precomposited(root / "train")
    write_precomposited(root / "test", n=2, seed=2)  # 'val' reads test/ when there is no val/
    with matting.train_stream(root, batch_size=3, stage="mnet", **ARGS) as stream:
        batch = next(stream)
    assert not batch["has_fg_bg"].any()
    np.testing.assert_array_equal(batch["fg"], batch["image"] / 255.0)
    np.testing.assert_array_equal(batch["bg"], batch["image"] / 255.0)
    batch = next(iter(matting.eval_stream(root, batch_size=2, pad_size=64)))
    for trimap, name in zip(batch["trimap"], batch["id"]):
        own = cv2.imread(str(root / "test" / "trimap" / (Path(name).stem + ".png")), cv2.IMREAD_UNCHANGED)
        assert own[0, 0] == 7 and trimap[0, 0] == 128  # other values read as unknown
        own[0, 0] = 128
        np.testing.assert_array_equal(trimap[:H, :W], own)
    assert list(batch["size"][0]) == [H, W]


# ----------------------------------------------------------------------------------------------- evaluation
def test_eval_caps_the_long_edge_pads_and_counts_what_it_shrinks(tmp_path):
    root = tmp_path / "big"
    base = root / "val"
    rng = np.random.default_rng(0)
    alpha = np.zeros((40, 100), np.uint8)
    alpha[10:30, 20:80] = 255
    _imwrite(base / "image" / "a.png", rng.integers(0, 256, (40, 100, 3), dtype=np.uint8))
    _imwrite(base / "alpha" / "a.png", alpha)
    _imwrite(base / "image" / "b.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    _imwrite(base / "alpha" / "b.png", np.full((20, 24), 255, np.uint8))
    stats = Stats()
    stream = matting.eval_stream(root, batch_size=2, pad_size=32, max_side=50, stats=stats)
    (batch,) = list(stream)
    assert set(batch) == {"image", "alpha", "trimap", "size", "mask", "id"}
    assert (
        batch["mask"].all() and batch["trimap"].dtype == np.uint8 and batch["alpha"].shape == (2, 32, 32, 1)
    )
    np.testing.assert_array_equal(batch["size"], [[13, 32], [20, 24]])  # 40x100 -> 20x50 (cap) -> 13x32 (pad)
    assert stats.downscaled == 1
    h, w = batch["size"][0]
    expected = cv2.resize(
        cv2.resize(alpha.astype(np.float32) / 255, (50, 20), interpolation=cv2.INTER_AREA),
        (32, 13),
        interpolation=cv2.INTER_AREA,
    )
    np.testing.assert_allclose(batch["alpha"][0, :h, :w, 0], expected, atol=1e-6)
    assert np.all(batch["alpha"][0, h:] == 0) and np.all(batch["trimap"][0, h:] == 0)
    np.testing.assert_allclose(batch["image"][0, h:], np.broadcast_to(CAFFE_MEAN_RGB, (32 - h, 32, 3)))
    np.testing.assert_array_equal(batch["trimap"][0, :h, :w], matting.fixed_trimap(expected, 2))
    kept = next(iter(matting.eval_stream(root, batch_size=2, pad_size=64, max_side=100)))
    np.testing.assert_array_equal(kept["size"], [[26, 64], [20, 24]])  # 40x100: under max_side, over pad_size
    with pytest.raises(ValueError, match="pad_size 60 must be a positive multiple of 32"):
        matting.eval_stream(root, batch_size=2, pad_size=60)


# ----------------------------------------------------------------------------------------------- bad input
def _break(path, fault):
    path = Path(path)
    if fault == "missing":
        path.unlink()
    elif fault == "empty":
        path.write_bytes(b"")
    elif fault == "truncated":
        path.write_bytes(path.read_bytes()[:-12])
    elif fault == "small":
        _imwrite(path, np.zeros((5, 5), np.uint8))
    elif fault == "colour":
        _imwrite(path, np.zeros((H, W, 3), np.uint8))
    elif fault == "grey":
        _imwrite(path, np.zeros((H, W), np.uint8))
    return str(path)


def test_corrupt_and_mismatched_files_are_skipped_named_and_counted(tmp_path):
    root = tmp_path / "bad"
    write_composite(root / "val", n_fg=8, k=1)
    entries = matting.find_layout(root)["val"]
    faults = {  # entry -> (role, fault, kind counted); 7 stays good; 6 is converted to RGB
        0: ("alpha", "small", "size mismatch"),
        1: ("alpha", "missing", "missing pair"),
        2: ("fg", "missing", "missing pair"),
        3: ("bg", "empty", "empty file"),
        4: ("fg", "truncated", "truncated"),
        5: ("alpha", "colour", "wrong mode"),
        6: ("fg", "grey", None),
    }
    culprits = {i: _break(getattr(entries[i], role), fault) for i, (role, fault, _) in faults.items()}
    stats = Stats()
    batches = list(matting.eval_stream(root, batch_size=4, pad_size=64, stats=stats))
    mask = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(mask, [False] * 6 + [True, True])
    assert stats.skip_kinds == collections.Counter(k for _, _, k in faults.values() if k)
    assert sorted(stats.skipped_files) == sorted(culprits[i] for i in range(6))
    assert f"missing alpha matte of foreground {entries[1].fg}" in stats.reasons[culprits[1]]
    assert f"missing foreground of alpha matte {entries[2].alpha}" in stats.reasons[culprits[2]]
    assert "alpha matte is 5x5 (WxH), its image 48x40" in stats.reasons[culprits[0]]
    assert stats.conversions == {"grayscale -> RGB": 1}
    # Pre-composited: a trimap of another size; training skips and counts too.
    write_precomposited(root / "train", n=2)
    _break(root / "train" / "trimap" / "im0.png", "small")
    with pytest.raises(CorruptExample, match="trimap is 5x5"):
        matting.read_example(matting.find_layout(root)["train"][0])
    _break(root / "train" / "image" / "im1.jpg", "empty")
    with pytest.raises(NoUsableExamples, match=r"matting train split under .*all 2 listed were skipped"):
        with matting.train_stream(root, batch_size=2, **ARGS) as stream:
            next(stream)


def test_layout_errors_name_what_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no matting data found.*fg_names.txt"):
        matting.find_layout(tmp_path / "empty")
    root = tmp_path / "d"
    write_composite(root / "train", n_fg=2, k=2)
    (root / "train" / "bg_names.txt").write_text("b0_0.png\nb0_1.png\nb1_0.png\n")
    with pytest.raises(ValueError, match="lists 3 backgrounds for the 2 foregrounds"):
        matting.find_layout(root)
    (root / "train" / "bg_names.txt").unlink()
    with pytest.raises(FileNotFoundError, match="bg_names.txt"):
        matting.find_layout(root)
    with pytest.raises(ValueError, match="stage must be one of"):
        matting.train_stream(root, batch_size=1, stage="both")
    with pytest.raises(ValueError, match="multiple of 16"):
        matting.train_stream(root, batch_size=1, stage="mnet", mnet_size=20)


# ----------------------------------------------------------------------------------------------- TFDS
def test_tfds_source_gives_the_folder_batches(composite_root, tmp_path):
    data_dir = str(tmp_path / "tfds")
    builder = matting.prepare_tfds(composite_root, data_dir)
    assert builder.info.splits["train"].num_examples == 6
    tf_args = dict(source="tfds", tfds_data_dir=data_dir)
    args = dict(batch_size=3, stage="end2end", seed=1, **ARGS)
    with (
        matting.train_stream(composite_root, **args) as a,
        matting.train_stream(None, **args, **tf_args) as b,
    ):
        x, y = next(a), next(b)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    x = next(iter(matting.eval_stream(composite_root, batch_size=4, pad_size=64)))
    y = next(iter(matting.eval_stream(None, batch_size=4, pad_size=64, **tf_args)))
    for k in ("image", "alpha", "trimap", "size", "mask"):
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    assert list(y["id"]) == list(x["id"])
