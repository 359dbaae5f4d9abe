"""Baselines compared against SEDS (Tab. 1): SPOT-ALIGN's SR, CM and COMB models and CiCo.

``python -m seds.baselines --name sa-cm|sa-sr|sa-comb|cico|all --config configs/ablation_cpu.yaml``.
"""
from seds.baselines.cico import cico_config
from seds.baselines.netvlad import NetVLAD
from seds.baselines.spot_align import (SACM, SACMConfig, SASRConfig, SignRecognizer, evaluate_sa_comb,
                                       iou_similarity, max_margin_ranking_loss, train_sa_cm, train_sa_sr)

__all__ = ["NetVLAD", "SACM", "SACMConfig", "SASRConfig", "SignRecognizer", "cico_config", "evaluate_sa_comb",
           "iou_similarity", "max_margin_ranking_loss", "train_sa_cm", "train_sa_sr"]
