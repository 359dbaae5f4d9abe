"""Building a SEDS model from its config, weights included: the one place that loads initial weights
(constructors never read files)."""
from __future__ import annotations

from pathlib import Path

from seds.config import ModelConfig
from seds.model.clip_text import load_clip_text
from seds.model.hand_init import load_pretrained_hands, load_signbert_init
from seds.model.seds import SEDS

_FROM_CONFIG = object()

# how a pose encoder (``VariantOptions.pose_encoder``) takes its pretrained initialisation
HAND_INIT = {"stgcn": load_pretrained_hands,                                      # the hand ST-GCNs (supp. Tab. 3)
             "signbert": lambda model, path: load_signbert_init(model.pose_encoder, path)}   # the whole encoder


def create_model(cfg: ModelConfig, with_text: bool = True, hand_init: str | Path | None = _FROM_CONFIG) -> SEDS:
    """A new :class:`SEDS` for ``cfg``; its hand ST-GCN is initialised from ``hand_init`` (default:
    ``cfg.pose.hand_init``; SEDS starts it from SignBERT, supp. Tab. 3; ``None`` or ``""``: random). In the
    official variant ``hand_init`` is the authors' ``pretrain_signbert.pth`` converted by
    ``python -m seds.convert signbert`` and initialises its whole pose encoder (hand, body, clip block)."""
    model = SEDS(cfg, with_text=with_text)
    path = cfg.pose.hand_init if hand_init is _FROM_CONFIG else hand_init
    if path:
        HAND_INIT[cfg.options.pose_encoder](model, path)
    if with_text and cfg.text.clip_init:        # openai-clip: the text tower from CLIP, as the authors start
        load_clip_text(model.text.backbone, cfg.text.clip_init)
    return model
