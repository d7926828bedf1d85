r"""Does the structure-sensitive loss help, with and without Attention-to-Scale? (LIP paper, Table 3)

Tiny, on synthetic people (2 CPU cores, a few minutes per variant):
  jhuman sweep --config configs/ablations/ssl.py:size=tiny --workdir runs/ablation_ssl_tiny
The paper's four runs (VGG-16 trunks, LIP, an accelerator, ImageNet weights):
  jhuman sweep --config configs/ablations/ssl.py:size=full,data=lip --workdir runs/ablation_ssl \
    --config.data.root=/data/LIP --config.init.backbone_weights=vgg16.safetensors
Variants: deeplab, deeplab+ssl, attention, attention+ssl. The tiny sweep uses the tiny ResNet trunk (it
trains from scratch with batch norm); the full sweep the paper's VGG-16 LargeFOV.
"""

import os

from jhuman.config import check_choice, parse_arg

PARSING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "parsing.py")


def get_sweep(arg=None):
    args = parse_arg(arg, {"size": "tiny", "data": "synthetic"})
    size = check_choice("size", args["size"], ["tiny", "full"])
    data = check_choice("data", args["data"], ["synthetic", "lip"])
    trunk = "resnet" if size == "tiny" else "vgg"
    spec = f"{PARSING}:size={size},data={data},model={{model}}_{trunk},ssl={{ssl}}"
    return {
        "deeplab": (spec.format(model="deeplab", ssl="off"), []),
        "deeplab+ssl": (spec.format(model="deeplab", ssl="on"), []),
        "attention": (spec.format(model="attention", ssl="off"), []),
        "attention+ssl": (spec.format(model="attention", ssl="on"), []),
    }
