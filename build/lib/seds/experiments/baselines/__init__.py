"""Baselines compared against SEDS (Tab. 1): SPOT-ALIGN's SR, CM and COMB models and CiCo.

``python -m seds.experiments.baselines --name sa-cm|sa-sr|sa-comb|cico|all --config configs/ablation_cpu.yaml``.
"""
from seds.experiments.baselines.cico import cico_config
from seds.experiments.baselines.common import BaselineError, SACMConfig, SASRConfig
from seds.experiments.baselines.netvlad import NetVLAD
from seds.experiments.baselines.sa_cm import SACM, evaluate_sa_comb, max_margin_ranking_loss, train_sa_cm
from seds.experiments.baselines.sa_sr import SignRecognizer, iou_similarity, train_sa_sr

__all__ = ["BaselineError", "NetVLAD", "SACM", "SACMConfig", "SASRConfig", "SignRecognizer", "cico_config",
           "evaluate_sa_comb", "iou_similarity", "max_margin_ranking_loss", "train_sa_cm", "train_sa_sr"]
