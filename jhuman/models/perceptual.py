"""The perceptual loss of the pose-guided synthesis paper (Balakrishnan et al., CVPR 2018, Sec. 3.5;
shared/reference/posewarp.md) and the per-channel VGG-19 statistics it is normalised with.

Loss (paper eq. 3 with the released code's normalisation): for the 12 post-ReLU layers LAYERS = conv1_1 ..
conv4_4 of a VGG-19 with AVERAGE pooling (jhuman.models.vgg.VGG19(pooling='avg', last_layer='conv4_4')),

    L(y, y_hat) = 1/12 sum_l mean_{b,i,j,c} |f_l(y) - f_l(y_hat)|_{b,i,j,c} / (sigma_{l,c} + 0.1)

sigma_{l,c} the standard deviation of channel c of layer l over the training set. `perceptual_loss` returns
the batch mean (the released loss), or per example with per_example=True (the evaluator's "VGG error").

Statistics (`VGGStatistics`, a pytree: the arrays are leaves, the identity strings static) belong to the
weights and the input preprocessing they were computed with:
- the paper's file vgg_activation_distribution_train.mat (keys '0'..'11', each (2, C) float32: row 0 mean, row
  1 std) goes with the original Keras VGG-19 ImageNet weights (keras.applications'
  vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, identity PAPER_WEIGHTS) and caffe preprocessing;
- our own .npz (`save_statistics`) records the identity and preprocessing it was computed with
  (`compute_statistics`, the statistics command of the CLI).
`check_pairing` raises on any mismatch; the loss must not normalise one network's activations with another's
statistics.

Preprocessing (`preprocess`), images RGB in [-1, 1]:
- 'caffe' (the Keras weights, converted from the VGG Caffe models): BGR on 0..255 minus (103.939, 116.779,
  123.68). The released code feeds its cv2 (BGR) images to its vgg_preprocess, which subtracts these in
  channel order, i.e. exactly this; our images are RGB, hence the channel flip.
- 'torchvision': RGB on [0, 1] normalised by the ImageNet mean / std.

Weights (`load_vgg19`): a Keras-layout .h5/.hdf5 or a torchvision-layout .pth/.pt/.safetensors/.npz file,
read by jhuman.weights (only conv1_1 .. conv4_4 are used; conv5_x are reported unexpected), or 'random:<seed>'
(He-normal kernels from numpy's generator, zero biases: for tests and tiny runs, which then need statistics
computed with them). The identity (`weights_identity`): 'keras-vgg19-imagenet' for a full-width (64) Keras
file (the only public Keras VGG-19 weights are keras.applications' ImageNet ones), '<layout>-vgg19-<sha256 of
the file, 16 hex>' for any other file, 'random:<seed>@width<width>' for random weights.

Standard deviations follow the released save_VGG_statistics.py: per channel over every pixel of every image,
with the (n - 1) normalisation; we accumulate exact per-batch moments (Chan et al.'s pairwise update in float64)
in one pass where the released script made a second pass over fresh batches.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Mapping, Optional, Union

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jhuman import weights, weights_keras
from jhuman.models import vgg
from jhuman.tasks.common import INPUT_NORMS

LAYERS = tuple(vgg.conv_names(vgg.VGG19_BLOCKS)[:12])  # conv1_1 .. conv4_4
LAYER_WIDTH_MULTIPLIERS = (1, 1, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8)
STD_OFFSET = 0.1
PREPROCESSINGS = ("caffe", "torchvision")
PAPER_WEIGHTS = "keras-vgg19-imagenet"
PAPER_PREPROCESSING = "caffe"
STATISTICS_SUFFIXES = (".mat", ".npz")
_NORMS = {"caffe": "keras_caffe", "torchvision": "torchvision"}  # -> jhuman.tasks.common.INPUT_NORMS
_MISSING_WEIGHTS = (
    "the perceptual loss needs VGG-19 weights: give the Keras file vgg19_weights_tf_dim_ordering_tf_kernels_"
    "notop.h5 (keras.applications; it pairs with the paper's statistics vgg_activation_distribution_train.mat), "
    "a torchvision vgg19 .pth (with statistics computed with it by the statistics command), or 'random:<seed>' "
    "for tests and tiny runs"
)


@flax.struct.dataclass
class VGGStatistics:
    """Per-layer, per-channel activation statistics: mean[l], std[l] (C_l,) for LAYERS[l], with the identity of
    the weights and the preprocessing they were computed with (and the file they came from)."""

    mean: tuple
    std: tuple
    weights: str = flax.struct.field(pytree_node=False, default="")
    preprocessing: str = flax.struct.field(pytree_node=False, default="")
    source: str = flax.struct.field(pytree_node=False, default="")

    @property
    def width(self) -> int:
        """The VGG base width the statistics belong to (conv1_1's channel count)."""
        return int(self.std[0].shape[0])


def _check_preprocessing(preprocessing):
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(f"VGG preprocessing must be one of {list(PREPROCESSINGS)}, got {preprocessing!r}")


def _check_widths(shapes, where):
    """shapes: 12 channel counts; they must be (1, 1, 2, 2, 4 x4, 8 x4) times conv1_1's."""
    base = shapes[0]
    expected = tuple(base * m for m in LAYER_WIDTH_MULTIPLIERS)
    if tuple(shapes) != expected:
        raise ValueError(
            f"{where}: channel counts {tuple(shapes)} are not those of a VGG-19's conv1_1 .. conv4_4 "
            f"(expected {expected} for width {base})"
        )


# ----------------------------------------------------------------------------------------------- the network


def preprocess(images, preprocessing: str):
    """RGB images in [-1, 1] (..., 3) -> the VGG input of `preprocessing` ('caffe' or 'torchvision'), float32."""
    _check_preprocessing(preprocessing)
    mean, std, bgr = INPUT_NORMS[_NORMS[preprocessing]]
    x = (jnp.asarray(images, jnp.float32) + 1.0) * 127.5  # RGB 0..255
    x = (x - mean.astype(np.float32)) / std.astype(np.float32)
    return x[..., ::-1] if bgr else x


def vgg19(width: int = 64, dtype: Any = jnp.float32) -> vgg.VGG:
    """The loss network: VGG-19 with average pooling, up to conv4_4 (convolutions computed in `dtype`)."""
    return vgg.VGG19(width=width, pooling="avg", last_layer=LAYERS[-1], dtype=dtype)


def vgg_width(vgg_variables) -> int:
    """conv1_1's output channels in `vgg_variables` ({'params': {'conv1_1': ...}})."""
    try:
        return int(vgg_variables["params"]["conv1_1"]["kernel"].shape[-1])
    except (KeyError, TypeError) as e:
        raise ValueError(
            "vgg_variables must be {'params': {'conv1_1': {'kernel': ...}, ...}} of a VGG-19"
        ) from e


def vgg_features(vgg_variables, images, preprocessing: str, dtype: Any = jnp.float32) -> dict:
    """images (B, H, W, 3) RGB in [-1, 1] -> {layer: (B, H / 2^k, W / 2^k, C_l) float32} for the 12 LAYERS
    (k poolings before the layer); the convolutions compute in `dtype` (e.g. bfloat16 for speed)."""
    net = vgg19(vgg_width(vgg_variables), dtype)
    features = net.apply(vgg_variables, preprocess(images, preprocessing))
    return {name: features[name].astype(jnp.float32) for name in LAYERS}


def perceptual_loss(features_a, features_b, statistics: VGGStatistics, per_example: bool = False):
    """The paper's perceptual loss between two feature dicts of `vgg_features` (or sequences in LAYERS order):
    mean over the 12 layers of mean |fa - fb| / (std_c + 0.1). Scalar (the batch mean), or (B,) per example."""
    if len(statistics.std) != len(LAYERS):
        raise ValueError(f"statistics have {len(statistics.std)} layers, the loss uses {len(LAYERS)}")
    total = 0.0
    for i, name in enumerate(LAYERS):
        fa = features_a[name] if isinstance(features_a, Mapping) else features_a[i]
        fb = features_b[name] if isinstance(features_b, Mapping) else features_b[i]
        std = jnp.asarray(statistics.std[i], jnp.float32)
        if fa.shape != fb.shape or fa.shape[-1] != std.shape[0]:
            raise ValueError(
                f"perceptual_loss: {name} features {fa.shape} / {fb.shape} vs statistics of {std.shape[0]} "
                f"channels (statistics {statistics.source or '<in memory>'} for weights {statistics.weights!r})"
            )
        scaled = jnp.abs(fa.astype(jnp.float32) - fb.astype(jnp.float32)) / (std + STD_OFFSET)
        total = total + jnp.mean(scaled, axis=tuple(range(1, scaled.ndim)))  # (B,)
    loss = total / len(LAYERS)
    return loss if per_example else jnp.mean(loss)


# ----------------------------------------------------------------------------------------------- weights


def _sha256(path, chunk=1 << 22):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(path: str, width: int = 64) -> str:
    """The identity statistics are paired with (module docstring): 'random:<seed>@width<w>' for random
    weights, 'keras-vgg19-imagenet' for a width-64 Keras file, '<layout>-vgg19-<sha256[:16]>' otherwise."""
    path = os.fspath(path)
    if path.startswith("random:"):
        return f"{path}@width{width}"
    layout = "keras" if os.path.splitext(path)[1].lower() in weights_keras.SUFFIXES else "torchvision"
    if layout == "keras" and width == 64:
        return PAPER_WEIGHTS
    return f"{layout}-vgg19-{_sha256(path)[:16]}"


def _random_variables(abstract, seed: int):
    """He-normal kernels (numpy generator `seed`) and zero biases in the shapes of `abstract`."""
    rng = np.random.default_rng(seed)
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract))
    out = {}
    for path, leaf in sorted(flat.items()):
        if path[-1] == "kernel":
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(leaf.shape[:-1])), leaf.shape)
        else:
            value = np.zeros(leaf.shape)
        out[path] = jnp.asarray(value, leaf.dtype)
    return flax.traverse_util.unflatten_dict(out)


def load_vgg19(path: Optional[Union[str, os.PathLike]], width: int = 64, weights_id: Optional[str] = None):
    """(variables {'params': conv1_1 .. conv4_4}, weights identity) of the loss network.

    path: a weight file (Keras .h5/.hdf5, or torchvision .pth/.pt/.safetensors/.npz) or 'random:<seed>';
    width: the network's base width (64 for any real file); weights_id: overrides `weights_identity`.
    A missing path or file raises FileNotFoundError saying that the loss needs weights; a file lacking any of
    the 12 layers, or of another width, raises ValueError.
    """
    if path is None or not os.fspath(path):
        raise FileNotFoundError(f"no VGG-19 weight file given: {_MISSING_WEIGHTS}")
    path = os.fspath(path)
    abstract = jax.eval_shape(lambda: vgg19(width).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    if path.startswith("random:"):
        try:
            seed = int(path[len("random:") :])
        except ValueError:
            raise ValueError(f"VGG weights {path!r}: 'random:<seed>' needs an integer seed") from None
        variables = _random_variables(abstract, seed)
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"VGG-19 weight file {path!r} does not exist: {_MISSING_WEIGHTS}")
        variables, report = weights.import_backbone(abstract, path, "vgg19", prefix=())
        if report.missing:
            raise ValueError(
                f"{path}: the VGG-19 weight file lacks {len(report.missing)} tensors of conv1_1 .. conv4_4 "
                f"({', '.join(report.missing[:4])}{', ...' if len(report.missing) > 4 else ''})"
            )
        variables = jax.tree.map(jnp.asarray, flax.core.unfreeze(variables))
    return variables, weights_id or weights_identity(path, width)


# ----------------------------------------------------------------------------------------------- statistics


def check_pairing(statistics: VGGStatistics, weights_id: str, preprocessing: str) -> None:
    """Raise ValueError unless `statistics` were computed with `weights_id` and `preprocessing`, and the
    preprocessing is the one that weights layout expects (Keras: 'caffe', torchvision: 'torchvision')."""
    _check_preprocessing(preprocessing)
    expected = {"keras": "caffe", "torchvision": "torchvision"}.get(weights_id.split("-")[0])
    if expected is not None and preprocessing != expected:
        raise ValueError(
            f"VGG weights {weights_id!r} expect {expected!r} preprocessing, not {preprocessing!r}"
        )
    if (statistics.weights, statistics.preprocessing) != (weights_id, preprocessing):
        raise ValueError(
            f"VGG statistics {statistics.source or '<in memory>'} were computed with weights "
            f"{statistics.weights!r} and preprocessing {statistics.preprocessing!r}, but the loss uses weights "
            f"{weights_id!r} and preprocessing {preprocessing!r}: compute statistics with these weights (the "
            "statistics command) or use the weights they belong to"
        )


def _moments(features):
    """{layer: (B, h, w, C)} -> {layer: (count, mean (C,), sum of squared deviations (C,))}, float32, two-pass
    within the batch (count = B h w as an int32 array)."""
    out = {}
    for name, f in features.items():
        mean = jnp.mean(f, axis=(0, 1, 2))
        count = jnp.asarray(f.shape[0] * f.shape[1] * f.shape[2], jnp.int32)
        out[name] = (count, mean, jnp.sum(jnp.square(f - mean), axis=(0, 1, 2)))
    return out


def compute_statistics(
    vgg_variables, batches: Iterable[Any], preprocessing: str, weights_id: str
) -> VGGStatistics:
    """Per-channel mean and std (n - 1) of the 12 LAYERS over `batches` of RGB images (B, H, W, 3) in [-1, 1]
    (every pixel of every image counts once); batches may differ in size."""
    _check_preprocessing(preprocessing)
    step = jax.jit(lambda v, x: _moments(vgg_features(v, x, preprocessing)))
    count = None
    for images in batches:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"compute_statistics: batches must be (B, H, W, 3) images, got {images.shape}")
        moments = jax.device_get(step(vgg_variables, images))
        if count is None:
            count = np.zeros(len(LAYERS))
            mean = [np.zeros_like(moments[n][1], np.float64) for n in LAYERS]
            m2 = [np.zeros_like(moments[n][1], np.float64) for n in LAYERS]
        for i, name in enumerate(LAYERS):  # Chan et al.'s pairwise combination, float64
            n = float(moments[name][0])
            batch_mean, batch_m2 = (np.asarray(a, np.float64) for a in moments[name][1:])
            delta = batch_mean - mean[i]
            total = count[i] + n
            mean[i] = mean[i] + delta * (n / total)
            m2[i] = m2[i] + batch_m2 + delta**2 * (count[i] * n / total)
            count[i] = total
    if count is None:
        raise ValueError("compute_statistics: no batches")
    return VGGStatistics(
        mean=tuple(m.astype(np.float32) for m in mean),
        std=tuple(np.sqrt(v / max(c - 1.0, 1.0)).astype(np.float32) for v, c in zip(m2, count)),
        weights=weights_id,
        preprocessing=preprocessing,
    )


def save_statistics(statistics: VGGStatistics, path: Union[str, os.PathLike]) -> str:
    """Write `statistics` to `path` (.npz: mean_<layer>, std_<layer>, weights, preprocessing), atomically;
    returns the path."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"VGG statistics are saved as .npz, got {path!r}")
    arrays = {"weights": np.str_(statistics.weights), "preprocessing": np.str_(statistics.preprocessing)}
    for name, mean, std in zip(LAYERS, statistics.mean, statistics.std):
        arrays[f"mean_{name}"] = np.asarray(mean, np.float32)
        arrays[f"std_{name}"] = np.asarray(std, np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path[: -len(".npz")] + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def _read_mat(path):
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for a file that is not a MATLAB file
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({e})") from e
    mean, std = [], []
    for i, name in enumerate(LAYERS):
        key = str(i)
        if key not in data:
            raise ValueError(f"{path}: key {key!r} ({name}) missing; a statistics .mat has keys '0'..'11'")
        value = np.asarray(data[key])
        if value.ndim != 2 or value.shape[0] != 2:
            raise ValueError(f"{path}: key {key!r} ({name}) must be (2, C) = mean, std; got {value.shape}")
        mean.append(value[0].astype(np.float32))
        std.append(value[1].astype(np.float32))
    return mean, std, PAPER_WEIGHTS, PAPER_PREPROCESSING


def _read_npz(path):
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    with data:
        keys = ["weights", "preprocessing"] + [f"{s}_{n}" for n in LAYERS for s in ("mean", "std")]
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise ValueError(f"{path}: keys {missing[:4]} missing; written by save_statistics?")
        mean = [np.asarray(data[f"mean_{n}"], np.float32) for n in LAYERS]
        std = [np.asarray(data[f"std_{n}"], np.float32) for n in LAYERS]
        return mean, std, str(data["weights"]), str(data["preprocessing"])


def load_statistics(path: Union[str, os.PathLike]) -> VGGStatistics:
    """VGGStatistics from the paper's .mat (keys '0'..'11', (2, C) = mean, std; weights PAPER_WEIGHTS,
    preprocessing 'caffe') or our .npz (save_statistics). Errors name the file and the key."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in STATISTICS_SUFFIXES:
        raise ValueError(
            f"VGG statistics file {path!r}: the suffix must be one of {list(STATISTICS_SUFFIXES)}"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"VGG statistics file {path!r} does not exist (compute it with the statistics command, or give "
            "the paper's vgg_activation_distribution_train.mat for the Keras ImageNet weights)"
        )
    mean, std, weights_id, preprocessing = (_read_mat if suffix == ".mat" else _read_npz)(path)
    for name, m, s in zip(LAYERS, mean, std):
        if m.shape != s.shape or m.ndim != 1:
            raise ValueError(f"{path}: {name} mean {m.shape} and std {s.shape} must be equal (C,) vectors")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s)) and np.all(s >= 0)):
            raise ValueError(f"{path}: {name} has non-finite values or a negative std")
    _check_widths([s.shape[0] for s in std], path)
    _check_preprocessing(preprocessing)
    return VGGStatistics(
        tuple(mean), tuple(std), weights=weights_id, preprocessing=preprocessing, source=path
    )
