"""Pieces every task shares: input normalisation around a net, applying it, finding its data, pretrained import."""

from __future__ import annotations

import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jhuman import classes, weights_keras

INPUT_NORMS = {
    # name: (mean, std, reverse channels to BGR), applied to RGB in 0..255
    "torchvision": (np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255, False),
    "caffe": (np.array(classes.CAFFE_MEAN_RGB), np.ones(3), True),
    # Keras' VGG-16/19 weights (jhuman.weights_keras): BGR minus the ImageNet means of the VGG Caffe models
    "keras_caffe": (np.array(weights_keras.KERAS_VGG_MEAN_BGR[::-1]), np.ones(3), True),
}


class Normalized(nn.Module):
    """Normalises raw RGB (0..255) as `input_norm` says ('torchvision': ImageNet mean/std on [0, 1] RGB, the
    layout of imported torchvision weights; 'caffe': BGR minus the DeepLab Caffe mean; 'keras_caffe': BGR minus
    the ImageNet means Keras' VGG weights expect), then runs `net`."""

    net: nn.Module
    input_norm: str = "torchvision"

    @nn.compact
    def __call__(self, images, train: bool = False):
        mean, std, bgr = INPUT_NORMS[self.input_norm]
        x = (images.astype(jnp.float32) - mean) / std
        if bgr:
            x = x[..., ::-1]
        return self.net(x.astype(self.net.dtype), train=train)


def check_input_norm(name: str) -> str:
    if name not in INPUT_NORMS:
        raise ValueError(f"model.input_norm={name!r} is not one of {sorted(INPUT_NORMS)}")
    return name


def apply(net: nn.Module, variables, images, train: bool = False, rng=None):
    """(outputs, new_model_state); the model state only changes when training with batch norm."""
    mutable = [k for k in variables if k != "params"] if train else False
    result = net.apply(
        variables, images, train=train, rngs={"dropout": rng} if train else None, mutable=mutable
    )
    return result if mutable else (result, {})


def data_root(config, task: str, real_name: str) -> str:
    """The dataset folder: synthetic people generated into the cache on first use, or `data.root`."""
    data = config.data
    if data.name == "synthetic":
        from input_pipeline import synthetic

        return synthetic.ensure_dataset(
            task,
            os.path.expanduser(data.cache_dir),
            num=int(data.synthetic_num),
            seed=int(data.synthetic_seed),
            size=tuple(data.synthetic_size),
            val_fraction=float(data.synthetic_val_fraction),
        )
    if data.name == real_name:
        if not data.root or not os.path.isdir(os.path.expanduser(data.root)):
            raise FileNotFoundError(
                f"data.root={data.root!r} is not a folder: point it at the {real_name} data "
                f"(e.g. --config.data.root=/data/{real_name})"
            )
        return os.path.expanduser(data.root)
    raise ValueError(f"data.name={data.name!r} is not one of [{real_name!r}, 'synthetic']")


def source_kwargs(config, stats) -> dict:
    """The reader arguments every task's streams take: data.source, data.tfds_data_dir, and the stats."""
    return {"source": config.data.source, "tfds_data_dir": config.data.tfds_data_dir or None, "stats": stats}


def pretrained_variables(config, variables, arch: str | None = None, prefix: tuple | str | None = None):
    """`init.backbone_weights` imported into `variables` (jhuman.weights.import_backbone), or None when unset.

    The setting is either one weight file (a path string: imported as `arch` into the trunk at `prefix`, the
    task's defaults), or a tuple/list of (prefix, arch, file) entries for a task of several networks, each
    imported in turn into the sub-network at its '/'-joined prefix inside the variables, e.g.
      (('net/tnet/trunk', 'resnet50', 'resnet50.safetensors'),
       ('net/mnet/encoder', 'vgg16', 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5')).
    The file's suffix picks the layout (.h5: Keras, otherwise torchvision). Every report is printed. An entry
    that is not such a triple, an unknown arch and a missing file raise errors naming `init.backbone_weights`
    and the entry, before anything is imported.
    """
    setting = config.init.backbone_weights
    if not setting:
        return None
    from jhuman import weights

    if isinstance(setting, (str, os.PathLike)):
        if arch is None or prefix is None:
            raise ValueError(
                f"init.backbone_weights={os.fspath(setting)!r}: this task has no default backbone; give "
                "(prefix, arch, file) entries, e.g. (('net/trunk', 'vgg16', 'vgg16.h5'),)"
            )
        setting = ((prefix, arch, setting),)
    entries = []
    for entry in setting:
        if (
            isinstance(entry, (str, bytes))
            or not isinstance(entry, (tuple, list))
            or len(entry) != 3
            or not isinstance(entry[1], str)
            or not isinstance(entry[2], (str, os.PathLike))
            or not isinstance(entry[0], (str, tuple, list))
        ):
            raise ValueError(
                f"init.backbone_weights entry {entry!r} is not a (prefix, arch, file) triple, e.g. "
                "('net/mnet/encoder', 'vgg16', 'vgg16.h5')"
            )
        entry_prefix, entry_arch, path = entry
        if entry_arch not in weights.ARCHS:
            raise ValueError(
                f"init.backbone_weights entry {tuple(entry)!r}: unknown arch {entry_arch!r}; "
                f"valid: {list(weights.ARCHS)}"
            )
        path = os.path.expanduser(os.fspath(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"init.backbone_weights entry {tuple(entry)!r}: no file {path!r}")
        entries.append((entry_prefix, entry_arch, path))
    for entry_prefix, entry_arch, path in entries:
        variables, report = weights.import_backbone(variables, path, entry_arch, prefix=entry_prefix)
        print(report)
    return variables


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))


def read_rgb(path: str):
    """RGB uint8 (h, w, 3), or None (with a warning) when the file cannot be decoded (the caller counts it)."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        print(f"warning: cannot decode {path}; skipped")
        return None
    return np.ascontiguousarray(bgr[..., ::-1])


def read_padded(path: str, size: int, upscale: bool):
    """(image RGB uint8 (h, w, 3), padded float32 (size, size, 3), scale), or None when the file cannot be
    decoded (`read_rgb`). The image is resized by scale = size / max(h, w) (never above 1 unless `upscale`),
    then padded bottom/right with the Caffe mean, as the LIP evaluation pipeline does."""
    import cv2

    image = read_rgb(path)
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = size / max(h, w) if upscale else min(1.0, size / max(h, w))
    small = (
        image
        if scale == 1.0
        else cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR
        )
    )
    padded = np.empty((size, size, 3), np.float32)
    padded[:] = classes.CAFFE_MEAN_RGB
    padded[: small.shape[0], : small.shape[1]] = small
    return image, padded, scale
