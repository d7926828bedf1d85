"""The Keras layout of pretrained VGG weights: reading the legacy HDF5 file, its names, its input convention.

keras.applications downloads its VGG-16/VGG-19 weights (e.g. vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)
in the legacy Keras-2 HDF5 format: one group per layer (`block{b}_conv{k}`, and fc1/fc2/predictions in the
include_top file) whose attribute `weight_names` lists its datasets, the conv kernel already HWIO, then the
bias; the list of layers is the attribute `layer_names` of the file's root, or of its `model_weights` group in
a full-model save (model.save('x.h5')). Keras 3's own `.weights.h5` names groups by layer class, not by layer
name, and is not read. h5py (installed with TensorFlow) is imported only when a file is read.

Input convention: these weights were converted from the original VGG Caffe models and expect caffe-style
input, BGR on 0..255 minus the ImageNet BGR channel means KERAS_VGG_MEAN_BGR = (103.939, 116.779, 123.68)
(Keras' preprocess_input mode 'caffe'): `keras_vgg_preprocess`, or the input norm 'keras_caffe' of
jhuman.tasks.common. These are not the DeepLab Caffe means of classes.CAFFE_MEAN_RGB (the 'caffe' norm).
"""

import os
import re
from typing import Union

import numpy as np

SUFFIXES = (".h5", ".hdf5")
KERAS_VGG_MEAN_BGR = (103.939, 116.779, 123.68)


def keras_vgg_preprocess(images_rgb):
    """RGB on 0..255 (..., 3) -> the Keras VGG weights' input: BGR minus KERAS_VGG_MEAN_BGR (numpy or jax)."""
    return images_rgb[..., ::-1] - np.asarray(KERAS_VGG_MEAN_BGR, np.float32)


def _h5_strings(group, name):
    """A string-list attribute as Keras writes it: `name`, or split into `name0`, `name1`, ... when long."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(group.attrs[f"{name}{len(chunks)}"])
    values = [v for chunk in chunks for v in np.asarray(chunk).ravel()]
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def load_keras_h5(path: Union[str, os.PathLike]) -> dict[str, np.ndarray]:
    """{'<layer>/kernel' and '<layer>/bias': numpy array} from a legacy Keras HDF5 weight file.

    Each layer's datasets are the ones its `weight_names` attribute lists (Keras 1 names them
    'block1_conv1_W_1:0', Keras 2 'block1_conv1/kernel:0', Keras 3 'block1_conv1/kernel'). A layer of two
    weights, an array of 2 or 4 dimensions then a vector (every Conv2D and Dense), gives '<layer>/kernel' and
    '<layer>/bias'; other layers keep their weight names. Arrays stay in the file's layout (kernels HWIO).
    """
    path = os.fspath(path)
    try:
        import h5py
    except ImportError as e:
        raise ImportError(f"reading {path!r} needs h5py (pip install h5py; TensorFlow installs it)") from e
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    state = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        layers = _h5_strings(root, "layer_names") or [k for k in root if isinstance(root[k], h5py.Group)]
        for layer in layers:
            if layer not in root:
                raise ValueError(f"{path!r}: layer {layer!r} is listed in layer_names but has no group")
            group = root[layer]
            names = _h5_strings(group, "weight_names")
            absent = [n for n in names if n not in group]
            if absent:
                raise ValueError(f"{path!r}: layer {layer!r} lists weights {absent} that it does not hold")
            values = [np.asarray(group[n]) for n in names]
            is_kernel_bias = len(values) == 2 and values[0].ndim in (2, 4) and values[1].ndim == 1
            for leaf, value in zip(("kernel", "bias") if is_kernel_bias else names, values):
                state[f"{layer}/{leaf}"] = value
        top = sorted(root)[:5]
    if not state:
        raise ValueError(
            f"{path!r} holds no legacy Keras HDF5 layer weights (no group with a 'weight_names' attribute; "
            f"top-level keys {top}): a Keras 3 '.weights.h5' names its groups by class, not by layer, and is "
            "not read; use the keras.applications file or save the model with model.save('x.h5')"
        )
    return state


def vgg_target(key):
    """('params', (conv{b}_{k}, kernel|bias), False) for a Keras VGG key 'block{b}_conv{k}/kernel|bias', else
    None. False: the kernel is HWIO already, nothing to transpose."""
    m = re.fullmatch(r"block([1-5])_conv([1-4])/(kernel|bias)", key)
    if not m:
        return None
    return "params", (f"conv{m.group(1)}_{m.group(2)}", m.group(3)), False
