"""SEDS training objectives (Sec. 3.3–3.4).

* InfoNCE with a learnable temperature τ (``logit_scale = 1/τ``, clamped at ``max_logit_scale``):
  rows of a score matrix are queries, the diagonal holds the positives.
* Text–video loss of one stream k (Eq. 4 building block):
  ``L_t-k = ½ (L_t2k + L_k2t)``, with ``L_t2k`` = InfoNCE over the text rows of M_t2k and ``L_k2t`` over
  the video rows of M_k2t (``seds.similarity.fine_grained_scores``).
* Eq. 4: ``L_tva = L_t-v + α (L_t-p + L_t-r)``, α = 0.8 (fused, pose and RGB streams).
* Eq. 5–6: Pose-RGB fine-grained matching, ``L_p-r = ½ (InfoNCE(S_p2r) + InfoNCE(S_r2pᵀ))``.
* Eq. 7: ``L = L_tva + β L_p-r``, β = 0.4.

``model.variant: official`` (``VariantOptions``): the authors' code enters every score matrix M into its
cross-entropy both ways, mixed by ``dual_mix`` = 0.5 — ``L(M) = dm·CE(M) + (1−dm)·CE(Mᵀ)`` —, so a stream's
loss is ``½ (L(M_k2t) + L(M_t2kᵀ))`` and ``L_p-r = ½ (L(S_p2r) + L(S_r2pᵀ))``; its token softmaxes include
padding (``seds.similarity``); α is parsed but never read, so the stream weight is 1 (its configs set
``loss.alpha: 1.0``): total = L_fusion + L_pose + L_rgb + 0.4·L_p-r.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from seds.config import LossConfig, VariantOptions
from seds.similarity import fine_grained_scores, pose_rgb_scores


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row against its diagonal entry (rows = queries)."""
    if logits.shape[0] != logits.shape[1]:
        raise ValueError(f"InfoNCE needs a square score matrix, got {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits.float(), target)


def mixed_nce(logits: torch.Tensor, dual_mix: float | None = None) -> torch.Tensor:
    """InfoNCE over the rows; with ``dual_mix`` (authors' code) ``dm·CE(M) + (1−dm)·CE(Mᵀ)``."""
    if dual_mix is None:
        return info_nce(logits)
    return dual_mix * info_nce(logits) + (1 - dual_mix) * info_nce(logits.t())


def text_video_loss(t2v: torch.Tensor, v2t: torch.Tensor, scale: torch.Tensor,
                    dual_mix: float | None = None) -> tuple[torch.Tensor, ...]:
    """L_t-k = ½ (L_t2k + L_k2t). ``t2v``/``v2t`` are (B_video, B_text) score matrices."""
    l_t2k = mixed_nce(scale * t2v.t(), dual_mix)    # text queries over videos
    l_k2t = mixed_nce(scale * v2t, dual_mix)        # video queries over texts
    return 0.5 * (l_t2k + l_k2t), l_t2k, l_k2t


def pose_rgb_loss(s_p2r: torch.Tensor, s_r2p: torch.Tensor, scale: torch.Tensor,
                  dual_mix: float | None = None) -> torch.Tensor:
    """L_p-r = ½ (InfoNCE over pose rows of S_p2r + InfoNCE over RGB rows of S_r2pᵀ)."""
    return 0.5 * (mixed_nce(scale * s_p2r, dual_mix) + mixed_nce(scale * s_r2p.t(), dual_mix))


class SEDSLoss(nn.Module):
    """Holds the learnable temperature; ``forward`` returns a dict of every term and the total."""

    def __init__(self, cfg: LossConfig = LossConfig(), tau: float = 0.07, opts: VariantOptions = VariantOptions()):
        super().__init__()
        self.cfg = cfg
        self.opts = opts
        self.tau = tau     # softmax temperature inside the fine-grained similarity (not learned)
        init = torch.tensor(math.log(1.0 / cfg.init_temperature))
        self.logit_scale = nn.Parameter(init, requires_grad=cfg.learn_temperature)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)

    def forward(self, video, text, text_t2v=None) -> dict[str, torch.Tensor]:
        """video: ``VideoEmbedding`` (streams + mask); text: ``TextEmbedding`` (words + mask). ``text_t2v``
        (the authors' training, ``pairs_text_aug``): the sentences the text-to-video scores use instead of
        ``text`` — an augmented copy of each (``seds.data.official_train``)."""
        scale = self.scale()
        terms: dict[str, torch.Tensor] = {}
        streams = [s for s in ("fused", "pose", "rgb") if s in video.streams]
        single = not ("pose" in video.streams and "rgb" in video.streams)   # "fused" is then an alias
        for s in streams:
            if single and s == "fused":
                continue
            sc = fine_grained_scores(video.streams[s], video.mask, text.words, text.mask, tau=self.tau,
                                     softmax_over_padding=self.opts.softmax_over_padding)
            t2v = sc.t2v if text_t2v is None else fine_grained_scores(
                video.streams[s], video.mask, text_t2v.words, text_t2v.mask, tau=self.tau,
                softmax_over_padding=self.opts.softmax_over_padding).t2v
            terms[f"t-{s}"], terms[f"t2{s}"], terms[f"{s}2t"] = text_video_loss(t2v, sc.v2t, scale,
                                                                                 self.opts.dual_mix)
        if single:
            only = [s for s in ("pose", "rgb") if s in video.streams][0]
            total = terms[f"t-{only}"]
        else:
            total = terms["t-fused"] + self.cfg.alpha * (terms["t-pose"] + terms["t-rgb"])
        terms["tva"] = total
        if "pose" in video.streams and "rgb" in video.streams and self.cfg.beta > 0:
            s_p2r, s_r2p = pose_rgb_scores(video.streams["pose"], video.streams["rgb"], video.mask, tau=self.tau,
                                           softmax_over_padding=self.opts.softmax_over_padding)
            terms["p-r"] = pose_rgb_loss(s_p2r, s_r2p, scale, self.opts.dual_mix)
            total = total + self.cfg.beta * terms["p-r"]
        terms["loss"] = total
        terms["logit_scale"] = scale.detach()
        return terms
