"""CiCo-style fine-grained clip×word similarity (SEDS Sec. 3.3) and the Pose-RGB matching scores
(SEDS Eq. 5–6), computed for all pairs with batched tensor contractions.

For a video k with clip features f^k (T×D) and a sentence t with word features f^w (L×D), both
L2-normalized, ``E = f^k f^wᵀ`` (T×L). With softmaxes at temperature τ (0.07 in the reference code):

* ``E_row = softmax_over_words(E / τ)``: each clip attends to the words; ``E_k2t = E ⊙ E_row`` summed
  over words gives one score per clip, averaged over the valid clips → ``M_k2t`` (video→text);
* ``E_col = softmax_over_clips(E / τ)``: each word attends to the clips; ``E_t2k = E ⊙ E_col`` summed
  over clips gives one score per word, averaged over the valid words → ``M_t2k`` (text→video).

Padded clips and words take no part: they are excluded from every softmax and every mean, so adding
padding never changes a score (tested). Retrieval ranks with ``½ (M_t2k + M_k2t)`` by default.

``softmax_over_padding=True`` (``model.variant: official``, ``VariantOptions.softmax_over_padding``) computes
what the authors' code computes: the token softmaxes run over *all* positions, padded clips and words
included (their features then change the scores), and only the means skip padding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_TAU = 0.07
_NEG = -1e4  # large negative for masked logits (safe in bf16/fp16 after /τ)


@dataclass
class PairScores:
    t2v: torch.Tensor   # (Bv, Bt) M_t2k: word-wise text→video score
    v2t: torch.Tensor   # (Bv, Bt) M_k2t: clip-wise video→text score

    @property
    def mean(self) -> torch.Tensor:
        return 0.5 * (self.t2v + self.v2t)


def _masked_softmax(x: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """softmax over the positions of ``mask`` (None: over all positions)."""
    if mask is None:
        return torch.softmax(x, dim=dim)
    x = x.masked_fill(~mask, _NEG)
    return torch.softmax(x, dim=dim) * mask


def clip_word_matrix(video: torch.Tensor, text: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """E for every pair: (Bv, T, D) × (Bt, L, D) → (Bv, Bt, T, L)."""
    if normalize:
        video, text = F.normalize(video, dim=-1), F.normalize(text, dim=-1)
    return torch.einsum("aid,bjd->abij", video, text)


def fine_grained_scores(video: torch.Tensor, video_mask: torch.Tensor,
                        text: torch.Tensor, text_mask: torch.Tensor,
                        tau: float = DEFAULT_TAU, normalize: bool = True,
                        chunk_size: int | None = None, softmax_over_padding: bool = False) -> PairScores:
    """M_t2k and M_k2t for all (video, text) pairs.

    video (Bv, T, D), video_mask (Bv, T) bool; text (Bt, L, D), text_mask (Bt, L) bool.
    ``chunk_size`` bounds memory for large galleries: videos are processed that many at a time
    (the (chunk, Bt, T, L) similarity tensor is the peak).
    """
    if video.shape[-1] != text.shape[-1]:
        raise ValueError(f"feature sizes differ: video {video.shape[-1]} vs text {text.shape[-1]}")
    video_mask, text_mask = video_mask.bool(), text_mask.bool()
    if chunk_size is not None and video.shape[0] > chunk_size:
        parts = [fine_grained_scores(video[i:i + chunk_size], video_mask[i:i + chunk_size], text, text_mask,
                                     tau, normalize, softmax_over_padding=softmax_over_padding)
                 for i in range(0, video.shape[0], chunk_size)]
        return PairScores(torch.cat([p.t2v for p in parts]), torch.cat([p.v2t for p in parts]))
    e = clip_word_matrix(video, text, normalize)                      # (Bv, Bt, T, L)
    vm = video_mask[:, None, :, None]                                 # (Bv, 1, T, 1)
    tm = text_mask[None, :, None, :]                                  # (1, Bt, 1, L)
    pair = None if softmax_over_padding else vm & tm
    # video → text: each clip attends over words; mean over valid clips
    per_clip = (e * _masked_softmax(e / tau, pair, dim=3)).sum(3)      # (Bv, Bt, T)
    n_clips = video_mask.sum(1).clamp(min=1).to(e.dtype)[:, None]
    v2t = (per_clip * video_mask[:, None, :]).sum(2) / n_clips
    # text → video: each word attends over clips; mean over valid words
    per_word = (e * _masked_softmax(e / tau, pair, dim=2)).sum(2)      # (Bv, Bt, L)
    n_words = text_mask.sum(1).clamp(min=1).to(e.dtype)[None, :]
    t2v = (per_word * text_mask[None, :, :]).sum(2) / n_words
    return PairScores(t2v=t2v, v2t=v2t)


def pose_rgb_scores(pose: torch.Tensor, rgb: torch.Tensor, mask: torch.Tensor,
                    tau: float = DEFAULT_TAU, normalize: bool = True,
                    softmax_over_padding: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose-RGB fine-grained matching scores S_p2r, S_r2p (Eq. 5–6), each (B, B).

    Pose and RGB clips of one video come from the same windows, so clip i of the pose stream should
    match clip i of the RGB stream. With E[a, b] = p_a r_bᵀ (T×T):

    * S_p2r[a, b] = Σ_i E[a,b,i,i] · softmax_j(E[a,b,i,:]/τ)[i] — pose clip i of video a attends
      over the RGB clips of video b and is scored on its own position;
    * S_r2p[a, b] = Σ_j E[a,b,j,j] · softmax_i(E[a,b,:,j]/τ)[j] — the same from the RGB side.

    As in the reference implementation the diagonal terms are *summed* over clips: a mean divides the
    logits by T and, at initialisation (near-uniform softmax weights ≈ 1/T), leaves the matching loss
    stuck at log(B) — measured here. Unlike the reference, softmaxes run over valid clips only (it lets
    padded RGB clips into the softmax) and the diagonal counts positions valid in both videos.
    ``softmax_over_padding=True`` is the authors' computation: softmaxes over all positions, S_p2r sums the
    positions valid in the pose video a, S_r2p those valid in the RGB video b.
    """
    if pose.shape != rgb.shape:
        raise ValueError(f"pose {tuple(pose.shape)} and rgb {tuple(rgb.shape)} must have the same shape")
    mask = mask.bool()
    if normalize:
        pose, rgb = F.normalize(pose, dim=-1), F.normalize(rgb, dim=-1)
    e = torch.einsum("aid,bjd->abij", pose, rgb)                       # (B, B, T, T)
    ma = mask[:, None, :, None]                                       # pose clip i valid in a
    mb = mask[None, :, None, :]                                       # rgb clip j valid in b
    pair = None if softmax_over_padding else ma & mb
    diag_e = torch.diagonal(e, dim1=2, dim2=3)                        # (B, B, T)
    both = mask[:, None, :] & mask[None, :, :]                        # position valid in a and b
    w_p2r = torch.diagonal(_masked_softmax(e / tau, pair, dim=3), dim1=2, dim2=3)
    w_r2p = torch.diagonal(_masked_softmax(e / tau, pair, dim=2), dim1=2, dim2=3)
    in_a, in_b = (mask[:, None, :], mask[None, :, :]) if softmax_over_padding else (both, both)
    s_p2r = (diag_e * w_p2r * in_a).sum(2)
    s_r2p = (diag_e * w_r2p * in_b).sum(2)
    return s_p2r, s_r2p


def pooled(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of L2-normalized features, L2-normalized again: the vector a faiss index stores."""
    f = F.normalize(features, dim=-1) * mask[..., None]
    return F.normalize(f.sum(-2) / mask.sum(-1, keepdim=True).clamp(min=1), dim=-1)
