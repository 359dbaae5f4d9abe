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

from seds.model.interaction_transformer import CLIP_HINT, LayerNorm, ResidualAttentionBlock, copy_checked
from seds.weights import read_state_dict

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


# --- initialisation from a local CLIP ViT-B/32 checkpoint (the authors' start) ---------------------------------

#: entries of OpenAI's CLIP state dict that the text tower does not take: the image tower, the temperature
#: (read by :func:`clip_logit_scale`) and the JIT archive's size entries
_TEXT_SKIP_PREFIXES = ("visual.",)
_TEXT_SKIP = {"logit_scale", "input_resolution", "context_length", "vocab_size"}


def read_clip(source) -> dict:
    """A CLIP checkpoint as a state dict: ``source`` a dict, or a path read without running code from it
    (``.safetensors``, or a plain state-dict ``.pt`` through ``torch.load(weights_only=True)``). OpenAI's
    ``ViT-B-32.pt`` is a TorchScript archive: it is refused with the one-time conversion to run (``CLIP_HINT``)."""
    if isinstance(source, dict):
        return source
    return read_state_dict(source, what="CLIP checkpoint", missing_error=FileNotFoundError,
                           unwrap=("state_dict",), hint=CLIP_HINT)


def load_clip_text(tower: ClipTextTower, source) -> None:
    """Copy CLIP's text tower (``token_embedding``, ``positional_embedding``, ``transformer.resblocks.*``,
    ``ln_final``, ``text_projection``) into ``tower`` — what the authors' ``CLIP4Clip.from_pretrained`` loads into
    ``clip.*`` from ``ViT-B-32.pt`` before training. Every parameter must be there with its shape (raises
    ValueError listing missing keys, shape mismatches and unused text keys)."""
    sd = read_clip(source)
    if "token_embedding.weight" not in sd:
        raise ValueError("no 'token_embedding.weight': this is not a CLIP checkpoint")
    theirs = {k.replace("transformer.resblocks.", "resblocks."): v for k, v in sd.items()
              if k not in _TEXT_SKIP and not k.startswith(_TEXT_SKIP_PREFIXES)}
    copy_checked(tower, theirs, "the text tower")


def clip_logit_scale(source) -> torch.Tensor:
    """CLIP's learned temperature (``logit_scale``, a log): the authors' ``clip.logit_scale`` starts from it."""
    sd = read_clip(source)
    if "logit_scale" not in sd or sd["logit_scale"].numel() != 1:
        raise ValueError("the CLIP checkpoint has no scalar 'logit_scale'")
    return sd["logit_scale"].reshape(()).float()
