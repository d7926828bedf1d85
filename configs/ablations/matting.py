r"""What does each piece of Semantic Human Matting bring? (SHM paper, Tables 3 and 5)

Tiny, on synthetic people (2 CPU cores; the two pretraining stages first, then the four variants):
  jhuman sweep --config configs/ablations/matting.py:size=tiny --workdir runs/ablation_matting_tiny
The paper's sizes, on your own data and an accelerator (workdir= must name the sweep's --workdir):
  jhuman sweep --config configs/ablations/matting.py:size=full,data=folders,workdir=runs/ablation_matting \
    --workdir runs/ablation_matting --config.data.root=/data/matting

Variants, in the order they run (each end-to-end variant starts from the two pretraining runs of this sweep,
`<workdir>/tnet` and `<workdir>/mnet`, which the sweep trains first):
  tnet, mnet        the pretraining stages (T-Net alone with L_t; M-Net on ground-truth trimaps with L_p);
                    the mnet row is "ground-truth trimap + M-Net" (DIM in the paper's Table 3);
  end2end           SHM: both, end to end, L = L_p + 0.01 L_t;
  no_fusion         end to end with alpha_p = alpha_r (Table 5: "no fusion");
  no_trimap_loss    end to end with L = L_p (Table 5: "no L_t");
  no_end2end        the two pretrained stages assembled and evaluated without training (train.steps=0): T-Net's
                    trimap into the pretrained M-Net (Table 3's "PSP50 + DIM" in spirit).
`workdir=` defaults to runs/ablation_matting_<size>; the end-to-end variants read their sources from there
(a sweep run from another folder must say where: `workdir=DIR` the same as --workdir).
"""

import os

from jhuman.config import check_choice, parse_arg

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "matting.py")


def get_sweep(arg=None):
    args = parse_arg(arg, {"size": "tiny", "data": "synthetic", "workdir": ""})
    size = check_choice("size", args["size"], ["tiny", "full"])
    data = check_choice("data", args["data"], ["synthetic", "folders"])
    workdir = args["workdir"] or f"runs/ablation_matting_{size}"
    base = f"{CONFIG}:size={size},data={data}"
    sources = f"tnet={os.path.join(workdir, 'tnet')},mnet={os.path.join(workdir, 'mnet')}"
    end2end = f"{base},stage=end2end,{sources}"
    return {
        "tnet": (f"{base},stage=tnet", []),
        "mnet": (f"{base},stage=mnet", []),
        "end2end": (end2end, []),
        "no_fusion": (end2end, ["model.fusion=false"]),
        "no_trimap_loss": (end2end, ["matting.trimap_weight=0.0"]),
        "no_end2end": (end2end, ["train.steps=0"]),
    }
