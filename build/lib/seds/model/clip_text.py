"""OpenAI CLIP's text tower, as the authors' SEDS code uses it (``model.text.model: openai-clip``).

CLIP ViT-B/32 text transformer (Radford et al. 2021): token embedding (49408 × 512) + learned positional
embedding (77 × 512, the first L rows used), 12 pre-LN blocks (width 512, 8 heads, QuickGELU MLP) with a
causal attention mask, ``ln_final`` and ``@ text_projection`` (512 × 512). Unlike CLIP, which keeps only the
end-of-text token, SEDS uses every position as a word feature (Sec. 3.3): the tower returns all L tokens.
The word mask is the authors' one: positions ``≤ argmax(ids)`` (start-of-text … end-of-text inclusive;
the EOT id 49407 is the largest id). The blocks are :class:`ResidualAttentionBlock` of the interaction
transformer (same parameter names as CLIP), so nothing is duplicated.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from seds.model.interaction_transformer import LayerNorm, ResidualAttentionBlock

VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77
WIDTH = 512
LAYERS = 12
HEADS = 8


def eot_mask(ids: torch.Tensor) -> torch.Tensor:
    """(N, L) token ids → bool mask of positions ≤ argmax(ids) (the authors' ``text_mask``)."""
    last = ids.argmax(dim=-1, keepdim=True)
    return torch.arange(ids.shape[1], device=ids.device)[None, :] <= last


class ClipTextTower(nn.Module):
    def __init__(self, out_dim: int = 512, width: int = WIDTH, layers: int = LAYERS, heads: int = HEADS,
                 vocab_size: int = VOCAB_SIZE, context_length: int = CONTEXT_LENGTH):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, out_dim) * width ** -0.5)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.out_dim = out_dim
        self.context_length = context_length

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (N, L) → token features (N, L, out_dim) at every position, mask (N, L) bool."""
        n, length = ids.shape
        if length > self.context_length:
            raise ValueError(f"{length} tokens exceed CLIP's context length {self.context_length}")
        dtype = self.resblocks[0].attn.in_proj_weight.dtype if len(self.resblocks) else self.text_projection.dtype
        x = self.token_embedding(ids).to(dtype) + self.positional_embedding[:length].to(dtype)
        causal = torch.full((length, length), float("-inf"), device=ids.device, dtype=dtype).triu_(1)
        for blk in self.resblocks:
            x = blk(x, None, causal)
        x = self.ln_final(x) @ self.text_projection.to(dtype)
        return x, eot_mask(ids)
