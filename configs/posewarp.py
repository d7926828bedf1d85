r"""Pose-guided human image synthesis (Balakrishnan et al., CVPR 2018): the modular generator (or the single
U-Net baseline), trained with the perceptual loss, then with a discriminator added.

The commands, in order (tiny, on synthetic videos; 2 CPU cores; random VGG-19 weights, statistics computed
over a few training batches and written into the workdir):
  jhuman train --config configs/posewarp.py:stage=vgg,size=tiny --workdir runs/posewarp_tiny_vgg
  jhuman train --config configs/posewarp.py:stage=gan,size=tiny --workdir runs/posewarp_tiny_gan
  jhuman eval --workdir runs/posewarp_tiny_gan --split test
  jhuman predict --workdir runs/posewarp_tiny_gan --images DATA_ROOT --out runs/posewarp_tiny_pred
The GAN stage starts its generator from the first run (`from=DIR` names it; the default is the workdir
above), its discriminator from scratch (init.from_workdir).
The paper's sizes on the published data ({train,test}/frames, {train,test}/info: see README) with the
original Keras VGG-19 weights and the paper's statistics (an accelerator):
  jhuman train --config configs/posewarp.py:stage=vgg,size=full,data=folders --config.data.root=/data/posewarp \
    --config.loss.vgg_weights=vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \
    --config.loss.vgg_statistics=vgg_activation_distribution_train.mat --workdir runs/posewarp_full_vgg
  jhuman train --config configs/posewarp.py:stage=gan,size=full,data=folders --config.data.root=/data/posewarp \
    --config.loss.vgg_weights=... --config.loss.vgg_statistics=... --workdir runs/posewarp_full_gan
torchvision-layout VGG-19 weights need statistics computed with them (`jhuman posewarp-stats`, or leave
loss.vgg_statistics empty: the task computes them over loss.statistics_batches training batches) and
--config.loss.vgg_preprocessing=torchvision. model=unet trains the single-U-Net baseline the same way.

Arguments: model=modular|unet, stage=vgg|gan, size=tiny|full, data=synthetic|folders, from=DIR.
As in the paper and its released code: 256x256 pairs two frames of one video at least 2% of it apart; stage
vgg = the perceptual loss alone (VGG-19, average pooling, conv1_1 .. conv4_4, each layer / (std + 0.1)), Adam
1e-4, batch 4, 100k iterations; stage gan = 10k iterations from stage 1, generator loss perceptual + 0.1 BCE,
discriminator on real / fake targets with both poses, both Adam 1e-4, the discriminator alone for the first
5 steps.
The tiny config: 64x64 images, generator width 16 (discriminator and VGG width 8), 200 synthetic videos,
the paper's batch of 4, pairs at least 40% of a synthetic clip apart; stage vgg 3000 steps at Adam 1e-3 with a
100-step warm-up and cosine decay (about 6.5 minutes on 2 CPU cores), stage gan 120 steps at a constant 1e-4.
It is the smallest setting measured in which the generator beats copying the source frame on L1 (README):
fewer videos overfit (24: test L1 0.069 where the training batches reach 0.042), width 8 or 1500 steps stay
above the copy's L1, and Adam at 2e-3 or more learns slower (4e-3 ends with saturated, zero gradients).
"""

import ml_collections

from jhuman.config import DATA, DISTRIBUTED, INIT, MESH, OPTIM, TRAIN, check_choice, parse_arg, section

STAGES = ("vgg", "gan")
MODELS = ("modular", "unet")
DEFAULTS = {"model": "modular", "stage": "vgg", "size": "tiny", "data": "synthetic", "from": ""}
DATA_NAMES = {"synthetic": "synthetic", "folders": "posewarp"}  # arg -> config.data.name


def stage_workdir(size: str, model: str, stage: str) -> str:
    """The default workdir of a stage (the docstring's commands)."""
    return f"runs/posewarp_{size}_{stage}" if model == "modular" else f"runs/posewarp_{size}_{model}_{stage}"


def get_config(arg=None):
    args = parse_arg(arg, DEFAULTS)
    model = check_choice("model", args["model"], MODELS)
    stage = check_choice("stage", args["stage"], STAGES)
    size = check_choice("size", args["size"], ["tiny", "full"])
    data_arg = check_choice("data", args["data"], list(DATA_NAMES))
    tiny = size == "tiny"
    image_size = 64 if tiny else 256

    c = ml_collections.ConfigDict()
    c.task = "posewarp"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = model
    c.model.width = 16 if tiny else 64  # the first encoder width; the paper's widths scale with it
    c.model.disc_width = 8 if tiny else 64  # the discriminator's first width (the paper's: 64)
    c.model.image_size = image_size

    c.posewarp = ml_collections.ConfigDict()
    c.posewarp.stage = stage

    # The perceptual loss: VGG-19 weights (a Keras .h5 or torchvision .pth file, or "random:<seed>" for tests
    # and tiny runs), the per-channel statistics that belong to them ('' = computed by the task over
    # statistics_batches training batches and written into the workdir), the input preprocessing the weights
    # expect ('caffe': the Keras weights and the paper's statistics; 'torchvision').
    c.loss = ml_collections.ConfigDict()
    c.loss.vgg_weights = "random:0" if tiny else ""
    c.loss.vgg_width = 8 if tiny else 64  # 64 for real weights
    c.loss.vgg_statistics = ""
    c.loss.vgg_preprocessing = "caffe"
    c.loss.statistics_batches = 4 if tiny else 100

    c.gan = ml_collections.ConfigDict()
    c.gan.weight = 0.1  # generator loss = perceptual + weight * BCE(D(fake), real)
    c.gan.disc_only_steps = 5  # the discriminator alone for the first steps (the released code: 5)

    c.init = section(INIT)
    if stage == "gan":  # the generator from stage 1; the discriminator starts here
        source = args["from"] or stage_workdir(size, model, "vgg")
        c.init = section(INIT, from_workdir=source, from_pattern="^generator/")

    c.data = section(
        DATA,
        name=DATA_NAMES[data_arg],
        synthetic_num=200,  # videos
        synthetic_size=(96, 96) if tiny else (320, 320),
        crop_size=image_size,
    )
    c.data.image_size = image_size
    # Two frames of a pair at least this fraction of the video apart: the paper's 2% of a real clip is many
    # frames; the synthetic clips have 8 frames, where 2% lets neighbouring frames pair (near copies).
    c.data.min_gap = 0.4 if (tiny and data_arg == "synthetic") else 0.02

    # tiny: 3000 + 120 steps of 4 pairs (module docstring)
    steps = {"vgg": 3000, "gan": 120} if tiny else {"vgg": 100_000, "gan": 10_000}
    c.train = section(
        TRAIN,
        steps=steps[stage],
        batch_size=4,
        compute_dtype="float32" if tiny else "bfloat16",
        log_every=100,
        eval_every=0 if tiny else 10_000,
        checkpoint_every=1000 if tiny else 5000,
        num_pictures=4,
    )

    # Two optimizer groups: stage vgg trains the generator alone (the discriminator is frozen but carried, so
    # every checkpoint has both); stage gan's update hook steps each group in turn (one jitted step).
    c.optim = section(
        OPTIM,
        name="adam",
        # tiny stage vgg: Adam 1e-3, warm-up and cosine decay (1500 steps: L1 0.0494 at 1e-3, 0.0529 at 5e-4,
        # 0.0586 at 2e-3); tiny stage gan fine-tunes at the paper's constant 1e-4
        learning_rate=1e-3 if (tiny and stage == "vgg") else 1e-4,
        schedule="cosine" if (tiny and stage == "vgg") else "constant",
        warmup_steps=100 if (tiny and stage == "vgg") else 0,
        groups={
            "generator": {"pattern": "^generator/"},
            "discriminator": {"pattern": "^discriminator/", "frozen": stage == "vgg"},
        },
    )

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 8
    c.eval.limit = 0  # 0 = every pair
    c.eval.num_pairs = 16 if tiny else 500  # the seeded test pairs (the paper: 500)
    c.eval.seed = 0

    c.mesh = section(MESH)
    c.distributed = section(DISTRIBUTED)
    return c
