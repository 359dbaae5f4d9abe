"""Interaction transformer of one video stream (SEDS Sec. 3.1; CiCo's domain-aware sign encoder).

Clip features (pose: 1536-d, RGB: 1024-d I3D) → 1-D conv (kernel 1, no bias) to the transformer width →
[CLS] + learned positional embedding → pre-LN CLIP ViT blocks with key-padding mask → LayerNorm →
projection to D. The output keeps the T clip positions (the [CLS] token is internal), padded clips are
zeroed — or, with ``keep_cls`` (``model.variant: official``, as the authors' code computes it), all T+1 tokens
with [CLS] at index 0 and padded tokens left as computed. Parameter names follow CLIP's visual tower so a local CLIP ViT-B/32 checkpoint initialises
the blocks directly (:func:`load_clip_visual`), every key and shape asserted.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from seds.config import TransformerConfig
from seds.weights import read_state_dict


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back (as CLIP's), so a tower whose weights are fp16 still works."""

    def forward(self, x):
        return super().forward(x.float()).to(x.dtype)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.drop(self.attn(h, h, h, key_padding_mask=pad, attn_mask=attn_mask, need_weights=False)[0])
        return x + self.drop(self.mlp(self.ln_2(x)))


class InteractionTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, in_dim: int, out_dim: int, max_clips: int = 64,
                 keep_cls: bool = False):
        super().__init__()
        self.cfg = cfg
        if keep_cls and not cfg.cls_token:
            raise ValueError("keep_cls needs cls_token")
        self.keep_cls = keep_cls
        w = cfg.width
        self.conv1 = nn.Conv1d(in_dim, w, kernel_size=1, bias=False)
        scale = w ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(w)) if cfg.cls_token else None
        self.positional_embedding = nn.Parameter(scale * torch.randn(max_clips + int(cfg.cls_token), w))
        self.ln_pre = LayerNorm(w)
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(w, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln_post = LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, out_dim))
        self.max_clips = max_clips
        if cfg.clip_init:
            load_clip_visual(self, cfg.clip_init)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, in_dim), mask (B, T) bool valid → (B, T, out_dim); with ``keep_cls`` (B, T+1, out_dim)."""
        b, t, _ = x.shape
        if t > self.max_clips:
            raise ValueError(f"{t} clips exceed max_clips={self.max_clips}")
        h = self.conv1(x.transpose(1, 2).to(self.conv1.weight.dtype)).transpose(1, 2)
        valid = mask.bool()
        if self.class_embedding is not None:
            h = torch.cat([self.class_embedding.to(h.dtype).expand(b, 1, -1), h], dim=1)
            valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), valid], dim=1)
        h = self.ln_pre(h + self.positional_embedding[: h.shape[1]].to(h.dtype))
        pad = ~valid
        # rows with no valid clip at all would make attention NaN; the [CLS] token prevents that, and
        # without it such rows are unmasked (their output is zeroed below anyway)
        pad = pad & valid.any(dim=1, keepdim=True)
        for blk in self.resblocks:
            h = blk(h, pad)
        h = self.ln_post(h) @ self.proj.to(h.dtype)
        if self.keep_cls:
            return h
        if self.class_embedding is not None:
            h = h[:, 1:]
        return h * mask[:, :, None].to(h.dtype)


# --- CLIP ViT-B/32 visual initialisation ------------------------------------------------------------

# Parameters that CLIP's image tower has but that cannot apply to clip features (patch conv,
# 7×7+1 positional table) are not loaded, by design; everything else must match exactly.
_CLIP_SKIP = {"conv1.weight", "positional_embedding"}


CLIP_HINT = ("OpenAI's ViT-B-32.pt is a TorchScript archive, not a plain state dict: convert it once with "
             "`torch.jit.load(p).state_dict()` and save it as .safetensors")


def load_clip_visual(module: InteractionTransformer, source) -> list[str]:
    """Copy CLIP ``visual.*`` weights into ``module``; returns the names not loaded by design.

    ``source`` is a path or a state dict with keys like ``visual.transformer.resblocks.0.ln_1.weight``.
    Raises ValueError listing every missing key and every shape mismatch.
    """
    sd = source if isinstance(source, dict) else read_state_dict(
        source, what="CLIP checkpoint", missing_error=FileNotFoundError, unwrap=("state_dict",), hint=CLIP_HINT)
    prefix = "visual."
    if not any(k.startswith(prefix) for k in sd):
        raise ValueError("no 'visual.*' keys: this is not a CLIP checkpoint")
    theirs = {}
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        name = k[len(prefix):].replace("transformer.resblocks.", "resblocks.")
        theirs[name] = v
    copy_checked(module, theirs, "the interaction transformer", _CLIP_SKIP)
    return sorted(_CLIP_SKIP)


def copy_checked(module: nn.Module, theirs: dict, what: str, skip: set[str] = frozenset()) -> None:
    """Copy ``theirs`` (names of ``module``'s state dict) into ``module``, every entry but ``skip``: raises
    ValueError listing every missing name, shape mismatch and unused name of a CLIP checkpoint, copies nothing then."""
    ours = module.state_dict()
    missing = [k for k in ours if k not in skip and k not in theirs]
    shapes = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(v.shape)}" for k, v in ours.items()
              if k not in skip and k in theirs and tuple(theirs[k].shape) != tuple(v.shape)]
    unused = sorted(set(theirs) - set(ours) - set(skip))
    if missing or shapes or unused:
        raise ValueError(f"CLIP checkpoint does not fit {what}:"
                         + "".join(f"\n  missing: {m}" for m in missing)
                         + "".join(f"\n  shape: {m}" for m in shapes)
                         + "".join(f"\n  unused: {m}" for m in unused))
    with torch.no_grad():
        for k, v in ours.items():
            if k not in skip:
                v.copy_(theirs[k].to(v.dtype))
