r"""Human parsing on LIP with DeepLab (Gong et al., CVPR 2017).

Tiny run on the built-in synthetic people (2 CPU cores: about 4.5 minutes, val mIoU 0.315-0.33; README):
  jhuman train --config configs/parsing.py:size=tiny,data=synthetic --workdir runs/parsing_tiny
The paper's DeepLab-v2 (ResNet-101 ASPP, 321x321 crops; needs the LIP data and an accelerator):
  jhuman train --config configs/parsing.py:model=deeplab_resnet,data=lip,size=full \
    --config.data.root=/data/LIP --workdir runs/lip_deeplab_resnet101
VGG-16 DeepLab-LargeFOV ("DeepLabV2" in the LIP paper's tables):
  jhuman train --config configs/parsing.py:model=deeplab_vgg,data=lip,size=full --config.data.root=/data/LIP ...

Arguments: model=deeplab_resnet|deeplab_vgg|attention (= attention_vgg, the paper's)|attention_resnet,
ssl=on|off, data=synthetic|lip, size=tiny|full.
Full-size hyper-parameters follow the released code: SGD momentum 0.9, weight decay 5e-4, lr 1e-4 with the
classifier (and attention) layers at 10x, batch 10, 321x321 crops, scales {0.6..1.4}, 30 epochs; with ssl=on
20 more epochs with the structure-sensitive loss (ssl.start_step). We use the poly schedule of later DeepLab
works (power 0.9) instead of the released fixed step; set optim.schedule=constant for the original.
Pretrained trunks: --config.init.backbone_weights=resnet101.safetensors (torchvision layout).
"""

import ml_collections

from jhuman.config import DATA, DISTRIBUTED, INIT, MESH, OPTIM, TRAIN, check_choice, parse_arg, section

DEFAULTS = {"model": "deeplab_resnet", "ssl": "off", "data": "synthetic", "size": "tiny"}
MODELS = {  # arg -> (model.name, backbone); "attention" is the paper's Attention (VGG-16 trunk)
    "deeplab_vgg": ("deeplab", "vgg16"),
    "deeplab_resnet": ("deeplab", "resnet101"),
    "attention": ("attention", "vgg16"),
    "attention_vgg": ("attention", "vgg16"),
    "attention_resnet": ("attention", "resnet101"),
}
LIP_TRAIN_IMAGES = 30_462


def get_config(arg=None):
    args = parse_arg(arg, DEFAULTS)
    model_arg = check_choice("model", args["model"], MODELS)
    ssl_on = check_choice("ssl", args["ssl"], ["on", "off"]) == "on"
    data_name = check_choice("data", args["data"], ["synthetic", "lip"])
    size = check_choice("size", args["size"], ["tiny", "full"])
    tiny = size == "tiny"
    model_name, backbone = MODELS[model_arg]
    resnet = backbone.startswith("resnet")
    # The demo's model (make demo): without res5 and scale augmentation its step runs at 170 img/s instead of
    # 95 on 2 CPU cores and learns as much per step; a stride-4 decoder (model.decoder, not in DeepLab-v2) draws
    # the thin limbs and small parts the stride-8 logits blur, and 8000 synthetic people instead of 1200 keep
    # it from learning the training images by heart: 5000 steps, val mIoU 0.174 -> 0.315-0.33 (README "LIP parsing
    # as in the paper"). The other tiny models keep the full trunk, augmentation and data.
    demo = tiny and model_arg == "deeplab_resnet"

    c = ml_collections.ConfigDict()
    c.task = "parsing"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = model_name
    c.model.backbone = backbone
    c.model.head = "aspp" if resnet else "largefov"
    c.model.num_classes = 20
    # ASPP rates 6/12/18/24 fit 41x41 logits (321 crops); the tiny 8x8 logits get proportionally smaller rates.
    c.model.rates = (1, 2, 3, 4) if tiny else (6, 12, 18, 24)
    c.model.width = 16 if tiny else 64
    c.model.stage_sizes = ((1, 1, 1, 0) if demo else (1, 1, 1, 1)) if (tiny and resnet) else ()
    c.model.output_stride = 8
    c.model.decoder = 32 if demo else 0  # > 0: logits refined on the res2 grid (stride 4), deeplab.Refine
    # Batch norm trains on synthetic data from scratch; DeepLab-v2 fine-tunes ImageNet weights with frozen BN.
    c.model.norm = "batch" if tiny else "frozen"
    c.model.input_norm = "torchvision"
    c.model.scales = (1.0, 0.75, 0.5)  # Attention-to-Scale input scales
    c.model.attention_width = 32 if tiny else 512

    # The self-supervised structure-sensitive loss (jhuman.ops.ssl): 30 epochs of plain training, then SSL.
    c.ssl = ml_collections.ConfigDict()
    c.ssl.enabled = ssl_on
    c.ssl.variant = (
        "stop_gradient"  # or 'product' (differentiable soft joints) or 'report_only' (= released code)
    )
    c.ssl.sigma = 1.0
    c.ssl.weight = 0.05
    c.ssl.start_step = 0 if tiny else 30 * LIP_TRAIN_IMAGES // 10

    # init.backbone_weights: a torchvision-layout ResNet/VGG-16 file (.safetensors, .npz, or .pth with the
    # [torch] extra); init.from_workdir: start from another run's checkpoint (jhuman.stages).
    c.init = section(INIT)

    c.data = section(
        DATA,
        name=data_name,
        synthetic_num=(8000 if demo else 1200) if tiny else 6000,
        synthetic_size=(96, 128) if tiny else (192, 256),
        crop_size=96 if tiny else 321,
    )
    c.data.scales = ((1.0,) if demo else (0.6, 0.8, 1.0)) if tiny else (0.6, 0.8, 1.0, 1.2, 1.4)

    # The paper: 30 epochs (batch 10), plus about 20 epochs of SSL fine-tuning when SSL is on.
    c.train = section(
        TRAIN,
        steps=(5000 if demo else 1500) if tiny else (50 if ssl_on else 30) * LIP_TRAIN_IMAGES // 10,
        batch_size=8 if tiny else 10,
        compute_dtype="float32" if tiny else "bfloat16",
        eval_every=(2500 if demo else 500) if tiny else 5000,
        checkpoint_every=(2500 if demo else 500) if tiny else 2000,
        log_every=(50 if demo else 25) if tiny else 100,
    )

    c.optim = section(
        OPTIM,
        name="adam" if tiny else "sgd",
        learning_rate=3e-3 if tiny else 1e-4,
        weight_decay=0.0 if tiny else 5e-4,
        warmup_steps=20 if tiny else 0,
        lr_multipliers=() if tiny else (("classifier/", 10.0), ("attention/", 10.0)),
    )

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 8
    c.eval.pad_size = 128 if tiny else 640
    c.eval.limit = 0  # 0 = the whole split
    c.eval.flip = False  # average with the flipped image's logits (left/right channels swapped back)
    c.eval.scales = (1.0,)  # multi-scale testing: average the logits over these input scales

    c.mesh = section(MESH)
    c.distributed = section(DISTRIBUTED)
    return c
