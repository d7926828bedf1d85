r"""PersonLab: bottom-up multi-person pose and instance segmentation (Papandreou et al., ECCV 2018).

Tiny run on synthetic multi-person COCO-format data (2 CPU cores):
  jhuman train --config configs/personlab.py:size=tiny,data=synthetic --workdir runs/personlab_tiny
COCO keypoints (ResNet-101, 401x401 crops, output stride 16; an accelerator and ImageNet weights):
  jhuman train --config configs/personlab.py:size=full,data=coco --config.data.root=/data/coco \
    --config.init.backbone_weights=resnet101.safetensors --workdir runs/personlab_r101

Arguments: model=resnet101|resnet152, data=synthetic|coco, size=tiny|full.
As in the paper: disks of radius R = 32 px, loss weights heatmap 4 / segmentation 2 / short 1 / mid 0.25 /
long 0.125 with offsets divided by R, two steps of mid-range refinement, greedy decoding with r = 10 px,
instance masks at 0.25 of sqrt(area). The paper does not state its optimiser: we use Adam 1e-4 with a cosine
schedule (the public ports use Adam). The tiny config scales R and r down with its 128-px crops and lets the
decoder, not the model, refine the offsets.
"""

import ml_collections

from jhuman.config import DATA, DISTRIBUTED, INIT, MESH, OPTIM, TRAIN, check_choice, parse_arg, section

DEFAULTS = {"model": "resnet101", "data": "synthetic", "size": "tiny"}


def get_config(arg=None):
    args = parse_arg(arg, DEFAULTS)
    backbone = check_choice("model", args["model"], ["resnet101", "resnet152"])
    data_name = check_choice("data", args["data"], ["synthetic", "coco"])
    tiny = check_choice("size", args["size"], ["tiny", "full"]) == "tiny"

    c = ml_collections.ConfigDict()
    c.task = "personlab"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.backbone = backbone
    c.model.width = 16 if tiny else 64
    c.model.stage_sizes = (1, 1, 1, 1) if tiny else ()
    c.model.output_stride = 8 if tiny else 16
    c.model.norm = "batch" if tiny else "frozen"
    c.model.input_norm = "torchvision"
    # The model's recurrent refinement (dense bilinear gathers of every offset, and their scatter-add gradients)
    # is ~85% of a tiny step on CPU (1.95 s vs 0.29 s at 128 px, batch 8; benchmarks/RESULTS.md, "Moved from
    # module docstrings"): the tiny config leaves it to the decoder, which refines lazily at the points it
    # reads (the task passes refine_steps=2 to the decoder).
    c.model.refine_steps = 0 if tiny else 2

    c.personlab = ml_collections.ConfigDict()
    c.personlab.radius = 10.0 if tiny else 32.0
    c.personlab.loss_weights = ml_collections.ConfigDict(
        {"heatmap": 4.0, "segmentation": 2.0, "short": 1.0, "mid": 0.25, "long": 0.125}
    )
    c.personlab.decode = ml_collections.ConfigDict(
        {
            # capacities; 0 = automatic by image size (30 / 256 up to 401 x 401, more above: decoder.capacities);
            # what does not fit is counted (the evaluator's dropped_people / dropped_candidates)
            "max_people": 10 if tiny else 0,
            "max_candidates": 128 if tiny else 0,
            "nms_radius": 4.0 if tiny else 10.0,
            "peak_threshold": 0.01,
            "hough_sigma": 1.0 if tiny else 2.0,
            "hough_stride": 0,  # 0: automatic (radius // 4: 2 tiny, 8 full); 1: the paper's every-pixel voting
            "mask_stride": 0,  # 0: automatic (hough_stride // 2); 1: every pixel's own mask decision
            "mask_threshold": 0.25,
            "seg_threshold": 0.5,
        }
    )

    c.init = section(INIT)

    c.data = section(
        DATA,
        name=data_name,
        synthetic_num=1000 if tiny else 6000,
        synthetic_size=(128, 192) if tiny else (256, 400),
        crop_size=128 if tiny else 401,
    )
    c.data.max_persons = 10 if tiny else 30
    c.data.scale_range = (0.7, 1.3)
    c.data.max_rotation = 25.0

    c.train = section(
        TRAIN,
        steps=1500 if tiny else 400_000,
        batch_size=8 if tiny else 16,
        compute_dtype="float32" if tiny else "bfloat16",
        log_every=25 if tiny else 100,
        eval_every=750 if tiny else 20_000,
        checkpoint_every=750 if tiny else 5000,
        num_pictures=4,
    )

    c.optim = section(
        OPTIM, learning_rate=2e-3 if tiny else 1e-4, schedule="cosine", warmup_steps=50 if tiny else 1000
    )

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 8
    c.eval.limit = 0

    c.mesh = section(MESH)
    c.distributed = section(DISTRIBUTED)
    return c
