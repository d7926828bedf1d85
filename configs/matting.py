r"""Semantic Human Matting (Chen et al., ACM MM 2018): T-Net + M-Net + fusion, trained in three stages.

The three commands, in order (tiny, on synthetic people with soft mattes; 2 CPU cores):
  jhuman train --config configs/matting.py:stage=tnet,size=tiny --workdir runs/matting_tiny_tnet
  jhuman train --config configs/matting.py:stage=mnet,size=tiny --workdir runs/matting_tiny_mnet
  jhuman train --config configs/matting.py:stage=end2end,size=tiny --workdir runs/matting_tiny_end2end
The end-to-end stage starts from the two earlier runs (`tnet=DIR,mnet=DIR` name them; the defaults are the
workdirs above): T-Net parameters from the first, M-Net parameters from the second (init.from_workdir).
The paper's sizes, on your own data (fg/alpha/bg + list files, or image/alpha: see README) and an accelerator:
  jhuman train --config configs/matting.py:stage=tnet,size=full,data=folders --config.data.root=/data/matting \
    --config.init.backbone_weights=resnet50.safetensors --workdir runs/matting_full_tnet
  jhuman train --config configs/matting.py:stage=mnet,size=full,data=folders --config.data.root=/data/matting \
    --config.init.backbone_weights=vgg16.safetensors --workdir runs/matting_full_mnet
  jhuman train --config configs/matting.py:stage=end2end,size=full,data=folders \
    --config.data.root=/data/matting --workdir runs/matting_full_end2end
Evaluating the two pretrained stages assembled, without end-to-end training (the "no end-to-end" ablation):
  jhuman train --config configs/matting.py:stage=end2end,size=tiny --config.train.steps=0 --workdir runs/x

Arguments: stage=tnet|mnet|end2end, size=tiny|full, data=synthetic|folders, tnet=DIR, mnet=DIR.
As in the paper: T-Net = PSPNet-50 (bins 1, 2, 3, 6) with L_t (3-class cross-entropy) on 400x400 crops;
M-Net = the DIM encoder-decoder with batch norm and a sigmoid, fed the ground-truth one-hot trimap in its
pretraining, on 320/480/640 crops around the unknown band resized to 320, with L_p (gamma 0.5, Charbonnier
eps 1e-6); end to end: T-Net on 800x800 crops, the M-Net window resampled to 320 inside the step,
L = L_p + 0.01 L_t, Adam 1e-5, batch 10. The network a stage does not train is frozen (optim.groups), so
every checkpoint carries both networks.
Not in the paper, our choices: the pretraining optimisers (Adam 1e-4 with a poly schedule for T-Net, the
rate of the public ports; Adam 1e-5 for M-Net, the DIM paper's), batch 10 and the step counts of every
stage.
The tiny config trains both nets from scratch with batch norm and Adam 3e-3, end to end 3e-4 (a tenth: at
3e-3 the end-to-end stage undoes its pretraining; the paper's 1e-5 moves nothing in a few hundred steps). Its
M-Net input is 64 px (M-Net's four poolings leave 4x4 at its bottleneck; at 32 px it hardly learns).
"""

import ml_collections

from jhuman.config import DATA, DISTRIBUTED, INIT, MESH, OPTIM, TRAIN, check_choice, parse_arg, section

STAGES = ("tnet", "mnet", "end2end")
DEFAULTS = {"stage": "tnet", "size": "tiny", "data": "synthetic", "tnet": "", "mnet": ""}
DATA_NAMES = {"synthetic": "synthetic", "folders": "matting"}  # arg -> config.data.name


def stage_workdir(size: str, stage: str) -> str:
    """The default workdir of a pretraining stage (the docstring's commands)."""
    return f"runs/matting_{size}_{stage}"


def get_config(arg=None):
    args = parse_arg(arg, DEFAULTS)
    stage = check_choice("stage", args["stage"], STAGES)
    size = check_choice("size", args["size"], ["tiny", "full"])
    data_arg = check_choice("data", args["data"], list(DATA_NAMES))
    tiny = size == "tiny"

    c = ml_collections.ConfigDict()
    c.task = "matting"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.tnet_width = 8 if tiny else 64  # PSPNet-50 trunk: ResNet-50 widths 64 .. 2048
    c.model.tnet_stage_sizes = (1, 1, 1, 1) if tiny else (3, 4, 6, 3)
    c.model.mnet_width = 8 if tiny else 64  # VGG-16 widths 64 .. 512
    c.model.trimap_channels = 3  # 1: the paper's single-channel variant (about as good)
    c.model.fusion = True  # False: alpha_p = alpha_r (the "no fusion" ablation)
    c.model.norm = "batch"  # batch norm after every convolution (M-Net: the paper; T-Net: PSPNet)
    c.model.input_norm = "torchvision"

    c.matting = ml_collections.ConfigDict()
    c.matting.stage = stage
    c.matting.gamma = 0.5  # L_p = gamma |alpha_p - alpha_g| + (1 - gamma) |c_p - c_g|
    c.matting.eps = 1e-6  # Charbonnier epsilon (DIM)
    c.matting.trimap_weight = 0.01  # lambda of L = L_p + lambda L_t (end to end); 0: the "no L_t" ablation

    # init.backbone_weights: one file goes into the network the stage trains (T-Net: a torchvision ResNet-50;
    # M-Net: a VGG-16, first convolution widened); init.from_workdir: the end-to-end stage's two sources.
    c.init = section(INIT)
    if stage == "end2end":
        tnet_dir = args["tnet"] or stage_workdir(size, "tnet")
        mnet_dir = args["mnet"] or stage_workdir(size, "mnet")
        c.init = section(INIT, from_workdir=((tnet_dir, "^net/tnet/", 0), (mnet_dir, "^net/mnet/", 0)))

    # Crops: T-Net 400 (its pretraining) / 800 (end to end); M-Net windows of 320/480/640 resized to 320.
    crop = {"tnet": 400, "mnet": 320, "end2end": 800}[stage]
    c.data = section(
        DATA,
        name=DATA_NAMES[data_arg],
        synthetic_num=400 if tiny else 6000,
        synthetic_size=(64, 96) if tiny else (320, 640),
        crop_size=64 if tiny else crop,  # T-Net crops (the M-Net stage reads data.mnet_size)
    )
    c.data.mnet_size = 64 if tiny else 320
    c.data.mnet_crops = (64, 80, 96) if tiny else (320, 480, 640)

    steps = {"tnet": 300, "mnet": 300, "end2end": 200} if tiny else {"tnet": 100_000, "mnet": 100_000,
                                                                     "end2end": 50_000}  # fmt: skip
    c.train = section(
        TRAIN,
        steps=steps[stage],
        batch_size=8 if tiny else 10,
        compute_dtype="float32" if tiny else "bfloat16",
        log_every=25 if tiny else 100,
        eval_every=0 if tiny else 10_000,
        checkpoint_every=100 if tiny else 5000,
        num_pictures=4,
    )

    lr = (
        {"tnet": 3e-3, "mnet": 3e-3, "end2end": 3e-4}
        if tiny
        else {"tnet": 1e-4, "mnet": 1e-5, "end2end": 1e-5}
    )
    # Each stage trains one network or both; the other is frozen (parameters, batch-norm statistics, no
    # optimizer state), so every checkpoint carries both nets and the end-to-end stage can take either.
    c.optim = section(
        OPTIM,
        name="adam",
        learning_rate=lr[stage],
        schedule="constant" if stage == "end2end" else "poly",
        groups={
            "tnet": {"pattern": "^net/tnet/", "frozen": stage == "mnet"},
            "mnet": {"pattern": "^net/mnet/", "frozen": stage == "tnet"},
        },
    )

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 4
    c.eval.limit = 0  # 0 = the whole split
    c.eval.max_side = 1500  # test images: long edge capped here, alpha resized back (the paper)
    c.eval.pad_size = 96 if tiny else 1504  # eval images padded to this square (a multiple of 32)
    # The trimap M-Net sees at evaluation: 'predicted' (T-Net, the paper's pipeline) or 'ground_truth' (the
    # eval split's trimap, one-hot: "ground-truth trimap + DIM"); the M-Net stage is judged on the latter.
    c.eval.trimap = "ground_truth" if stage == "mnet" else "predicted"
    c.eval.background = ""  # `jhuman predict`: composite over this image ('' = a checkerboard)

    c.mesh = section(MESH)
    c.distributed = section(DISTRIBUTED)
    return c
