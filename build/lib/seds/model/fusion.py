"""Fusion variants of the fusion ablation (SEDS Tab. 5), selected by ``FusionConfig.kind``.

* ``add-mlp``            f^v = MLP(f^p + f^r) + f^p + f^r
* ``concat-mlp``         f^v = MLP([f^p, f^r]) + f^p + f^r                         (Eq. 3 alone)
* ``concat-transformer`` channel concat → linear → transformer encoder over clips (global self-attention)
* ``cross-attention``    global cross attention (every clip of one stream attends to all clips of the
                         other), then Eq. 3
* ``cgaf``               Cross Gloss Attention Fusion, local sampled cross attention (``cgaf.py``)

All take (pose, rgb, mask) of shape (B, T, D), (B, T, D), (B, T) and return (B, T, D) with padded
clips zeroed; masks are applied in every attention, so padding never leaks into valid clips.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from seds.config import FusionConfig, VariantOptions
from seds.model.cgaf import CGAF, FeedForward, FusionMLP, sinusoidal_positions


class AddMLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, pose, rgb, mask):
        s = pose + rgb
        return (self.mlp(s) + s) * mask[:, :, None].to(s.dtype)


class ConcatMLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.mlp = FusionMLP(dim)

    def forward(self, pose, rgb, mask):
        return self.mlp(pose, rgb) * mask[:, :, None].to(pose.dtype)


def _pad_mask(mask: torch.Tensor) -> torch.Tensor:
    """key_padding_mask (True = ignore); rows without any valid clip stay unmasked (output zeroed)."""
    return ~mask & mask.any(1, keepdim=True)


class ConcatTransformer(nn.Module):
    def __init__(self, dim: int, cfg: FusionConfig):
        super().__init__()
        self.inp = nn.Linear(2 * dim, dim)
        layer = nn.TransformerEncoderLayer(dim, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, max(1, cfg.layers), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, pose, rgb, mask):
        t, d = pose.shape[1], pose.shape[2]
        h = self.inp(torch.cat([pose, rgb], -1)) + sinusoidal_positions(t, d, pose.device, pose.dtype)
        h = self.encoder(h, src_key_padding_mask=_pad_mask(mask))
        return (self.norm(h) + pose + rgb) * mask[:, :, None].to(h.dtype)


class _GlobalCrossLayer(nn.Module):
    def __init__(self, dim, heads, ff, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ff = FeedForward(dim, ff, dropout)

    def forward(self, x, y, mask):
        h = self.norm(x)
        h = x + self.attn(h, y, y, key_padding_mask=_pad_mask(mask), need_weights=False)[0]
        return self.ff(h)


class CrossAttentionFusion(nn.Module):
    def __init__(self, dim: int, cfg: FusionConfig):
        super().__init__()
        n = max(1, cfg.layers)
        self.p2r = nn.ModuleList(_GlobalCrossLayer(dim, cfg.heads, cfg.ff, cfg.dropout) for _ in range(n))
        self.r2p = nn.ModuleList(_GlobalCrossLayer(dim, cfg.heads, cfg.ff, cfg.dropout) for _ in range(n))
        self.norm_p, self.norm_r = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = FusionMLP(dim)

    def forward(self, pose, rgb, mask):
        t, d = pose.shape[1], pose.shape[2]
        pe = sinusoidal_positions(t, d, pose.device, pose.dtype)
        m = mask[:, :, None].to(pose.dtype)
        p, r = (pose + pe) * m, (rgb + pe) * m
        for lp, lr in zip(self.p2r, self.r2p):
            p, r = lp(p, r, mask) * m, lr(r, p, mask) * m
        return self.mlp(self.norm_p(p), self.norm_r(r)) * m


def build_fusion(dim: int, cfg: FusionConfig, opts: VariantOptions = VariantOptions()) -> nn.Module:
    if cfg.kind == "cgaf":
        return CGAF(dim, cfg, opts)
    if cfg.kind == "add-mlp":
        return AddMLP(dim)
    if cfg.kind == "concat-mlp":
        return ConcatMLP(dim)
    if cfg.kind == "concat-transformer":
        return ConcatTransformer(dim, cfg)
    if cfg.kind == "cross-attention":
        return CrossAttentionFusion(dim, cfg)
    raise ValueError(f"fusion.kind: {cfg.kind!r} unknown")
