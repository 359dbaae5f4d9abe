"""CiCo baseline (Cheng et al., CVPR 2023) as compared against in SEDS Tab. 1: the RGB stream alone with
the fine-grained clip×word similarity — SEDS without the pose stream and without fusion (Sec. 3.3).

It is the same code path as SEDS with ``model.streams=[rgb]``; only the configuration differs, so a
CiCo number and a SEDS number from the same config differ by exactly the pose stream + CGAF + L_p-r.
"""
from __future__ import annotations

import copy

from seds.config import Config, from_dict, to_dict


def cico_config(cfg: Config) -> Config:
    """A copy of ``cfg`` with the RGB stream only (the text encoder, data and training stay the same).

    β (Pose-RGB alignment) and α (per-stream terms) have no effect on a single-stream model
    (``seds.losses.SEDSLoss`` then optimises L_t-r alone); they are left as given."""
    d = copy.deepcopy(to_dict(cfg))
    d["model"]["streams"] = ["rgb"]
    return from_dict(Config, d)
