"""Import pretrained backbones (ResNet-50/101/152, VGG-16, VGG-19) into the linen trunks' variables.

Two layouts, chosen by the file's suffix:
- torchvision: a state dict in `.safetensors` (read with safetensors.numpy), `.npz` (numpy) or `.pth`/`.pt`
  (torch.load(weights_only=True); needs the optional `jhuman[torch]` extra); conv kernels OIHW.
- Keras (`.h5`/`.hdf5`, VGG only): the legacy HDF5 weight file that keras.applications downloads (e.g.
  vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5), or a full-model save (model.save('x.h5')); one group
  per layer, conv kernels HWIO; read with h5py by jhuman.weights_keras.

Names map one to one:

  ResNet  conv1.weight                      -> conv1/kernel            (OIHW -> HWIO)
          bn1.weight / bias                 -> bn1/scale / bias        ('params')
          bn1.running_mean / running_var    -> bn1/mean / var          ('batch_stats')
          layer{L}.{i}.conv{k}.weight       -> layer{L}/block{i}/conv{k}/kernel
          layer{L}.{i}.bn{k}.*              -> layer{L}/block{i}/bn{k}/*
          layer{L}.{i}.downsample.0.weight  -> layer{L}/block{i}/downsample_conv/kernel
          layer{L}.{i}.downsample.1.*       -> layer{L}/block{i}/downsample_bn/*
          *.num_batches_tracked: ignored; fc.*: unexpected (the trunk has no classifier)
  VGG-16  features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias} -> conv1_1 .. conv5_3/{kernel,bias}
          classifier.*: unexpected (DeepLab's fc6/fc7 are dilated convs of another shape; they stay missing)
  VGG-19  features.{0,2,5,7,10,12,14,16,19,21,23,25,28,30,32,34}.{weight,bias} -> conv1_1 .. conv5_4
  Keras   block{b}_conv{k}/{kernel,bias}    -> conv{b}_{k}/{kernel,bias}   (VGG-16 and VGG-19; HWIO as is)
          fc1, fc2, predictions (the include_top file): unexpected

The mapping follows the file's keys, so a file of another depth than the model (e.g. a ResNet-50 file into a
(1, 1, 1, 1) test trunk, a VGG-19 file into a VGG19(last_layer='conv4_4')) loads what both have and lists the
rest in the report's `unexpected` / `missing`. Shapes must match exactly (a width-8 model does not take a
width-64 file), with one exception: a first convolution (conv1_1, ResNet conv1) with more input channels than
the file's 3, as in Semantic Human Matting's M-Net (RGB + trimap, 4 or 6 channels), gets the file's weights in
its first 3 input channels and zeros in the others, so it computes the pretrained function of the RGB
channels; the report lists it under `widened`.

Input conventions of the weights: torchvision's expect RGB on [0, 1] normalised with the ImageNet mean/std
(jhuman.tasks.common INPUT_NORMS['torchvision']); Keras' VGG weights (converted from the original VGG Caffe
models) expect caffe-style input: BGR on 0..255 minus the ImageNet BGR means (103.939, 116.779, 123.68)
(weights_keras.KERAS_VGG_MEAN_BGR and keras_vgg_preprocess; INPUT_NORMS['keras_caffe']), which are not the
DeepLab Caffe means of classes.CAFFE_MEAN_RGB (INPUT_NORMS['caffe']).

    variables = model.init(...)                      # {'params': {'trunk': ...}, 'batch_stats': {'trunk': ...}}
    variables, report = import_backbone(variables, "resnet101.safetensors", "resnet101")
    print(report)
"""

import dataclasses
import os
import re
from typing import Any, Mapping, Sequence, Union

import numpy as np

from jhuman import weights_keras

ARCHS = ("resnet50", "resnet101", "resnet152", "vgg16", "vgg19")
SUFFIXES = (".safetensors", ".npz", ".pth", ".pt")  # torchvision layout
COLLECTIONS = ("params", "batch_stats")

# torchvision vgg16.features indices of the 13 convs, in order.
VGG16_FEATURE_INDEX = {
    0: "conv1_1",
    2: "conv1_2",
    5: "conv2_1",
    7: "conv2_2",
    10: "conv3_1",
    12: "conv3_2",
    14: "conv3_3",
    17: "conv4_1",
    19: "conv4_2",
    21: "conv4_3",
    24: "conv5_1",
    26: "conv5_2",
    28: "conv5_3",
}
# torchvision vgg19.features indices of the 16 convs, in order.
VGG19_FEATURE_INDEX = dict(
    zip(
        (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34),
        [f"conv{b}_{k}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for k in range(1, n + 1)],
    )
)
# The first convolution's kernel, the one that may take more input channels than the file's 3.
FIRST_CONV = {"resnet": ("conv1", "kernel"), "vgg": ("conv1_1", "kernel")}

# torchvision BatchNorm2d attribute -> (linen collection, leaf name); None = ignored.
_BN = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
    "num_batches_tracked": None,
}

_IGNORED = "ignored"


# ----------------------------------------------------------------------------------------------- reading files


def _to_numpy(value):
    """np.ndarray from a numpy array or a torch tensor (bfloat16 tensors widened to float32)."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _load_torch(path):
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"reading {os.fspath(path)!r} needs PyTorch, which is not installed: install the extra "
            "(pip install 'jhuman[torch]') or convert the file to .safetensors (e.g. "
            "safetensors.torch.save_file(torch.load(path), 'model.safetensors') where torch is available)"
        ) from e
    obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and not any(hasattr(v, "detach") for v in obj.values()):
        for key in ("state_dict", "model"):  # a training checkpoint wrapping the state dict
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{os.fspath(path)!r} holds a {type(obj).__name__}, not a state dict")
    return {str(k): _to_numpy(v) for k, v in obj.items() if hasattr(v, "detach")}


def load_state_dict(path: Union[str, os.PathLike]) -> dict[str, np.ndarray]:
    """{torchvision name: numpy array} from a .safetensors, .npz or .pth/.pt file (the last needs torch)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        keras = ""
        if suffix in weights_keras.SUFFIXES:
            keras = f" ({list(weights_keras.SUFFIXES)} are Keras files: weights_keras.load_keras_h5)"
        raise ValueError(
            f"unsupported weight file {path!r}: the suffix must be one of {list(SUFFIXES)}{keras}"
        )
    if suffix in (".pth", ".pt"):
        return _load_torch(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if suffix == ".safetensors":
        import safetensors.numpy

        return dict(safetensors.numpy.load_file(path))
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ----------------------------------------------------------------------------------------------- name mapping


def _resnet_target(key):
    """(collection, path, is_conv) for a torchvision ResNet key; _IGNORED; or None (not a trunk key)."""

    def bn(module, attr):
        if attr not in _BN:
            return None
        if _BN[attr] is None:
            return _IGNORED
        collection, leaf = _BN[attr]
        return collection, module + (leaf,), False

    if key == "conv1.weight":
        return "params", ("conv1", "kernel"), True
    m = re.fullmatch(r"bn1\.(\w+)", key)
    if m:
        return bn(("bn1",), m.group(1))
    m = re.fullmatch(r"layer([1-4])\.(\d+)\.(.+)", key)
    if not m:
        return None
    block = (f"layer{m.group(1)}", f"block{int(m.group(2))}")
    rest = m.group(3)
    m = re.fullmatch(r"conv([1-3])\.weight", rest)
    if m:
        return "params", block + (f"conv{m.group(1)}", "kernel"), True
    m = re.fullmatch(r"bn([1-3])\.(\w+)", rest)
    if m:
        return bn(block + (f"bn{m.group(1)}",), m.group(2))
    if rest == "downsample.0.weight":
        return "params", block + ("downsample_conv", "kernel"), True
    m = re.fullmatch(r"downsample\.1\.(\w+)", rest)
    if m:
        return bn(block + ("downsample_bn",), m.group(1))
    return None


def _vgg_torchvision_target(feature_index):
    def target(key):
        m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
        if not m or int(m.group(1)) not in feature_index:
            return None
        name = feature_index[int(m.group(1))]
        if m.group(2) == "weight":
            return "params", (name, "kernel"), True
        return "params", (name, "bias"), False

    return target


# ----------------------------------------------------------------------------------------------- import


@dataclasses.dataclass
class ImportReport:
    """What import_backbone did. Paths are '/'-joined linen paths with the collection first
    ('params/trunk/layer1/block0/conv1/kernel'); keys are the file's names."""

    arch: str
    source: str
    layout: str = "torchvision"  # or 'keras'
    loaded: list = dataclasses.field(default_factory=list)  # linen paths that received a file tensor
    missing: list = dataclasses.field(default_factory=list)  # trunk leaves that received nothing
    unexpected: list = dataclasses.field(default_factory=list)  # file keys not used
    ignored: list = dataclasses.field(
        default_factory=list
    )  # file keys skipped on purpose (num_batches_tracked)
    # first-conv kernels given more input channels than the file's 3, as 'path: 3 -> C input channels'
    widened: list = dataclasses.field(default_factory=list)

    def __str__(self):
        def few(items, n=4):
            shown = ", ".join(items[:n])
            return f" ({shown}{', ...' if len(items) > n else ''})" if items else ""

        widened = f", widened {'; '.join(self.widened)} (extra channels zero)" if self.widened else ""
        return (
            f"imported {self.arch} ({self.layout} layout) from {self.source}: {len(self.loaded)} loaded, "
            f"{len(self.missing)} missing{few(self.missing)}, "
            f"{len(self.unexpected)} unexpected{few(self.unexpected)}, "
            f"{len(self.ignored)} ignored (num_batches_tracked){widened}"
        )


def _copy_tree(tree):
    """Nested dict copy (leaves shared), FrozenDicts turned into dicts."""
    if isinstance(tree, Mapping):
        return {k: _copy_tree(v) for k, v in tree.items()}
    return tree


def _subtree(tree, prefix):
    for name in prefix:
        if not isinstance(tree, Mapping) or name not in tree:
            return None
        tree = tree[name]
    return tree if isinstance(tree, Mapping) else None


def _leaves(tree, path=()):
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from _leaves(v, path + (k,))
        else:
            yield path + (k,), v


def _place(value, target):
    """`value` (numpy, already the target's dtype) as a jax array placed like `target` when it is one."""
    import jax

    if isinstance(target, jax.Array):
        return jax.device_put(value, target.sharding)
    return jax.numpy.asarray(value)


def _read(path_or_state_dict, arch):
    """(state, source, layout, target_of): the file's tensors and the name mapping its layout and `arch` use."""
    if isinstance(path_or_state_dict, Mapping):
        state, source = {str(k): _to_numpy(v) for k, v in path_or_state_dict.items()}, "<state dict>"
        layout = "torchvision"
    else:
        source = os.fspath(path_or_state_dict)
        layout = "keras" if os.path.splitext(source)[1].lower() in weights_keras.SUFFIXES else "torchvision"
        if layout == "keras" and not arch.startswith("vgg"):
            raise ValueError(f"{source}: Keras-layout (.h5) files are read for VGG only, not {arch}")
        state = weights_keras.load_keras_h5(source) if layout == "keras" else load_state_dict(source)
    if layout == "keras":
        return state, source, layout, weights_keras.vgg_target
    if arch.startswith("vgg"):
        if any(re.fullmatch(r"features\.\d+\.running_mean", k) for k in state):
            raise ValueError(
                f"{source} looks like torchvision's {arch}_bn (BatchNorm in features); only plain {arch} "
                "matches the linen VGG trunks"
            )
        index = VGG16_FEATURE_INDEX if arch == "vgg16" else VGG19_FEATURE_INDEX
        return state, source, layout, _vgg_torchvision_target(index)
    return state, source, layout, _resnet_target


def _widened(kernel, shape):
    """`kernel` (HWIO, 3 input channels) zero-padded to `shape` with more input channels, or None when the
    shapes differ in any other way."""
    if kernel.ndim != 4 or len(shape) != 4 or kernel.shape[2] != 3 or shape[2] <= 3:
        return None
    if (kernel.shape[0], kernel.shape[1], kernel.shape[3]) != (shape[0], shape[1], shape[3]):
        return None
    out = np.zeros(shape, kernel.dtype)
    out[:, :, :3] = kernel
    return out


def import_backbone(
    variables: Mapping[str, Any],
    path_or_state_dict: Union[str, os.PathLike, Mapping[str, Any]],
    arch: str,
    prefix: Union[Sequence[str], str] = ("trunk",),
):
    """Copy pretrained weights into the trunk at `prefix` of linen `variables`.

    variables: {'params': ..., 'batch_stats': ...} of the model (leaves: arrays, or ShapeDtypeStructs from
      jax.eval_shape); the trunk sits at `prefix` inside each collection (() for a bare ResNet/VGG,
      ('trunk',) for DeepLab, ('net', 'trunk') for a wrapped one; a string is split on '/').
    path_or_state_dict: a weight file, `.h5`/`.hdf5` in the Keras layout (weights_keras, VGG only), any
      other in the torchvision layout (load_state_dict); or a {torchvision name: array or torch tensor}
      mapping.
    arch: one of ARCHS.
    Returns (new_variables, ImportReport). Values are cast to each target leaf's dtype; leaves that receive
    nothing keep their value; `variables` is not modified. A first-conv kernel with more input channels than
    the file's 3 is widened with zeros (report.widened); any other shape mismatch raises ValueError naming
    the file key, the linen path and both shapes; a file of which nothing maps onto the trunk raises
    ValueError.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {list(ARCHS)}")
    if isinstance(prefix, str):
        prefix = tuple(p for p in prefix.split("/") if p)
    prefix = tuple(prefix)
    state, source, layout, target_of = _read(path_or_state_dict, arch)
    first_conv = ("params",) + FIRST_CONV["vgg" if arch.startswith("vgg") else "resnet"]

    new = _copy_tree(variables)
    trunks = {c: _subtree(new, (c,) + prefix) for c in COLLECTIONS}
    if trunks["params"] is None:
        raise ValueError(
            f"no trunk at {'/'.join(('params',) + prefix)}; top-level params: {sorted(new.get('params', {}))}"
        )
    trunk_leaves = {
        (c,) + path: leaf for c in COLLECTIONS if trunks[c] is not None for path, leaf in _leaves(trunks[c])
    }

    def name(path):  # ('params', 'conv1', 'kernel') -> 'params/<prefix>/conv1/kernel'
        return "/".join((path[0],) + prefix + path[1:])

    report = ImportReport(arch=arch, source=source, layout=layout)
    updates, mismatches = {}, []
    for key, value in state.items():
        target = target_of(key)
        if target == _IGNORED:
            report.ignored.append(key)
            continue
        if target is None or (target[0],) + target[1] not in trunk_leaves:
            report.unexpected.append(key)
            continue
        collection, path, is_conv = target
        leaf_path = (collection,) + path
        leaf = trunk_leaves[leaf_path]
        converted = np.transpose(value, (2, 3, 1, 0)) if (is_conv and value.ndim == 4) else value
        if tuple(converted.shape) != tuple(leaf.shape) and leaf_path == first_conv:
            widened = _widened(converted, tuple(leaf.shape))
            if widened is not None:
                report.widened.append(f"{name(leaf_path)}: 3 -> {leaf.shape[2]} input channels")
                converted = widened
        if tuple(converted.shape) != tuple(leaf.shape):
            layout = " (OIHW, HWIO after transposing)" if is_conv and value.ndim == 4 else ""
            mismatches.append(
                f"{key!r} -> {name(leaf_path)}: file shape {tuple(value.shape)}{layout}"
                + (f" = {tuple(converted.shape)}" if layout else "")
                + f" vs model shape {tuple(leaf.shape)}"
            )
            continue
        updates[leaf_path] = (key, np.ascontiguousarray(converted).astype(leaf.dtype))
    if mismatches:
        more = f" (and {len(mismatches) - 5} more)" if len(mismatches) > 5 else ""
        raise ValueError(
            f"shape mismatch importing {arch} from {source}: " + "; ".join(mismatches[:5]) + more
        )
    if not updates:
        raise ValueError(
            f"nothing imported: no key of {source} maps onto a {arch} trunk leaf under prefix "
            f"{prefix!r} (wrong arch or prefix?); file keys start {sorted(state)[:5]}"
        )

    for leaf_path, (key, value) in updates.items():
        parent = trunks[leaf_path[0]]
        for part in leaf_path[1:-1]:
            parent = parent[part]
        parent[leaf_path[-1]] = _place(value, parent[leaf_path[-1]])
        report.loaded.append(name(leaf_path))
    report.missing = [name(p) for p in trunk_leaves if p not in updates]
    if hasattr(variables, "unfreeze"):  # FrozenDict in, FrozenDict out
        from flax.core import freeze

        new = freeze(new)
    return new, report
