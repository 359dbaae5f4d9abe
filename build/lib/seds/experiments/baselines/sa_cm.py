"""SA-CM, SPOT-ALIGN's cross-modal embedding baseline (Duarte et al., CVPR 2022; SEDS Tab. 1), and
SA-COMB (½ SR + ½ CM): see :mod:`seds.experiments.baselines.common` for the shared setting.

The video is the sequence of its I3D window features → a temporal encoder (linear + transformer over
windows + masked mean) → gated embedding unit → 512-d; the sentence is its word embeddings from a frozen
Hugging Face model (MiniLM by default; or hashed trainable word embeddings) → NetVLAD with 20 clusters →
gated embedding unit → 512-d. Cosine similarity, bidirectional max-margin ranking loss.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from seds.config import Config, from_dict, to_dict
from seds.experiments.baselines.common import (BaselineError, SACMConfig, SplitFeatures, epoch_batches,
                                               load_split, load_state, retrieval_from_scores, save_model,
                                               train_select_best)
from seds.experiments.baselines.netvlad import NetVLAD
from seds.experiments.baselines.sa_sr import load_sa_sr, sa_sr_scores
from seds.model.text_encoder import HashTokenizer, resolve_text_model


# --- SA-CM -----------------------------------------------------------------------------------------

def max_margin_ranking_loss(sim: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Bidirectional max-margin ranking loss over a (B, B) video×text similarity, positives on the
    diagonal: mean over every negative of both directions of ``max(0, margin − s_ii + s_ij)``
    (video i against text j ≠ i) and ``max(0, margin − s_ii + s_ji)`` (text i against video j ≠ i)."""
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"the ranking loss needs a square similarity matrix, got {tuple(sim.shape)}")
    b = sim.shape[0]
    if b < 2:
        raise ValueError("the ranking loss needs at least 2 pairs (one negative)")
    pos = sim.diagonal()
    off = ~torch.eye(b, dtype=torch.bool, device=sim.device)
    v2t = F.relu(margin - pos[:, None] + sim)          # row i: video i vs every text j
    t2v = F.relu(margin - pos[None, :] + sim)          # column j: text j vs every video i
    return (v2t[off].sum() + t2v[off].sum()) / (2 * b * (b - 1))


class GatedEmbeddingUnit(nn.Module):
    """Miech et al. (MEE): ``y = W x + b``, ``y ← y ⊙ σ(W' y + b')``, L2-normalised."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(d_out, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return F.normalize(y * torch.sigmoid(self.gate(y)), dim=-1)


class TemporalVideoEncoder(nn.Module):
    """I3D window features (B, T, 1024) → linear → transformer over windows → masked mean → GEU."""

    def __init__(self, in_dim: int, cfg: SACMConfig, max_windows: int = 4096):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout))
        self.pos = nn.Parameter(torch.randn(max_windows, cfg.hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.video_heads, 2 * cfg.hidden, cfg.dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, cfg.video_layers, enable_nested_tensor=False) \
            if cfg.video_layers > 0 else None
        self.out = GatedEmbeddingUnit(cfg.hidden, cfg.dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.pos[: x.shape[1]]
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=~mask & mask.any(1, keepdim=True))
        m = mask[..., None].to(h.dtype)
        return self.out((h * m).sum(1) / m.sum(1).clamp(min=1))


class WordEmbedder:
    """Frozen word-piece embeddings of a Hugging Face encoder, computed once per sentence (cached)."""

    def __init__(self, model: str, max_words: int):
        from transformers import AutoModel, AutoTokenizer  # heavy optional dependency, only for HF word embeddings
        from transformers.utils import logging as hf_logging  # same optional dependency

        hf_logging.disable_progress_bar()
        kind, path = resolve_text_model(model)
        if kind != "hf":
            raise BaselineError(f"cm.text_model={model!r}: use 'minilm', a local HF model dir, or 'hash'")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.max_words = max_words
        self.dim = self.model.config.hidden_size
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str], batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        todo = sorted({t for t in texts if t not in self._cache})
        for s in range(0, len(todo), batch):
            chunk = todo[s:s + batch]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_words + 2,
                                 return_tensors="pt", return_special_tokens_mask=True)
            keep = enc.pop("special_tokens_mask").eq(0) & enc["attention_mask"].bool()
            h = self.model(**enc).last_hidden_state
            for i, t in enumerate(chunk):
                self._cache[t] = h[i][keep[i]].clone()
        rows = [self._cache[t] for t in texts]
        n = max(1, max(len(r) for r in rows))
        out = torch.zeros(len(rows), n, self.dim)
        mask = torch.zeros(len(rows), n, dtype=torch.bool)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
            mask[i, :len(r)] = True
        return out, mask


class TextNetVLADEncoder(nn.Module):
    """Word embeddings (B, L, Dw) → NetVLAD (K clusters) → dropout → GEU → (B, dim)."""

    def __init__(self, word_dim: int, cfg: SACMConfig, hashed: bool):
        super().__init__()
        self.embed = nn.Embedding(cfg.hash_buckets, word_dim, padding_idx=0) if hashed else None
        self.vlad = NetVLAD(word_dim, cfg.clusters, cfg.ghost_clusters)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = GatedEmbeddingUnit(self.vlad.out_dim, cfg.dim)

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(words) if self.embed is not None else words
        return self.out(self.drop(self.vlad(x, mask)))


class SACM(nn.Module):
    """SPOT-ALIGN's cross-modal embedding model."""

    def __init__(self, cfg: SACMConfig, rgb_dim: int = 1024, word_dim: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.hashed = cfg.text_model == "hash"
        self.video = TemporalVideoEncoder(rgb_dim, cfg)
        self.text = TextNetVLADEncoder(cfg.hash_width if self.hashed else int(word_dim), cfg, self.hashed)

    def forward(self, rgb, mask, words, word_mask) -> torch.Tensor:
        """→ (B_video, B_text) cosine similarities."""
        return self.video(rgb, mask) @ self.text(words, word_mask).t()


class TextInputs:
    """Turns sentences into what :class:`TextNetVLADEncoder` eats (frozen embeddings or hashed ids)."""

    def __init__(self, cfg: SACMConfig):
        self.cfg = cfg
        if cfg.text_model == "hash":
            self._tok = HashTokenizer(cfg.hash_buckets, cfg.max_words)
            self.dim = cfg.hash_width
        else:
            self._emb = WordEmbedder(cfg.text_model, cfg.max_words)
            self.dim = self._emb.dim

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.text_model == "hash":
            t = self._tok(texts)
            return t["input_ids"], t["word_mask"]
        return self._emb(texts)


@torch.no_grad()
def sa_cm_scores(model: SACM, feats: SplitFeatures, text_inputs: TextInputs, batch: int = 256) -> torch.Tensor:
    """(videos × texts) cosine similarities of a whole split, in chunks."""
    model.eval()
    dev = next(model.parameters()).device
    v = torch.cat([model.video(feats.rgb[i:i + batch].to(dev), feats.mask[i:i + batch].to(dev))
                   for i in range(0, len(feats), batch)])
    ts = []
    for i in range(0, len(feats), batch):
        w, m = text_inputs(feats.texts[i:i + batch])
        ts.append(model.text(w.to(dev), m.to(dev)))
    return (v @ torch.cat(ts).t()).cpu()


def train_sa_cm(cfg: Config, cm: SACMConfig, out: str | Path, progress: bool = True) -> dict:
    """Train SA-CM on ``cfg.data`` (train split), select on val, evaluate test; writes ``<out>/best``."""
    out = Path(out)
    torch.manual_seed(cfg.train.seed)
    t0 = time.time()
    train, val, test = (load_split(cfg, getattr(cfg.data, f"{s}_split")) for s in ("train", "val", "test"))
    text_inputs = TextInputs(cm)
    model = SACM(cm, train.rgb.shape[-1], text_inputs.dim)
    opt = torch.optim.RAdam(model.parameters(), lr=cm.lr, weight_decay=cm.weight_decay)

    def batch_losses(epoch: int):
        for idx in epoch_batches(len(train), cm.batch_size, cfg.train.seed, epoch):
            w, m = text_inputs([train.texts[i] for i in idx])
            yield max_margin_ranking_loss(model(train.rgb[idx], train.mask[idx], w, m), cm.margin)

    best_epoch, best, history = train_select_best(
        model, opt, "sa-cm", cm.epochs, batch_losses,
        lambda: retrieval_from_scores(sa_cm_scores(model, val, text_inputs), val.texts), progress,
        extra=lambda res: {"val_t2v_R@1": res["t2v"]["R@1"]}, patience=cm.patience)
    doc = {"format": "seds.baselines.sa-cm/1", "cm": to_dict(cm), "data": to_dict(cfg.data),
           "seed": cfg.train.seed, "best_epoch": best_epoch, "val_geomean": best}
    save_model(out / "best", model, doc)
    test_scores = sa_cm_scores(model, test, text_inputs)
    return {"method": "sa-cm", "seed": cfg.train.seed, "best_epoch": best_epoch, "val_geomean": best,
            "val": retrieval_from_scores(sa_cm_scores(model, val, text_inputs), val.texts),
            "test": retrieval_from_scores(test_scores, test.texts), "history": history,
            "seconds": round(time.time() - t0, 1), "out": str(out)}


def load_sa_cm(folder: str | Path) -> tuple[SACM, TextInputs, dict]:
    folder = Path(folder)
    doc = json.loads((folder / "config.json").read_text())
    cm = from_dict(SACMConfig, doc["cm"])
    text_inputs = TextInputs(cm)
    model = SACM(cm, 1024, text_inputs.dim)
    return load_state(folder, model), text_inputs, doc


# --- SA-COMB -----------------------------------------------------------------------------------------

def evaluate_sa_comb(cfg: Config, cm_folder: str | Path, sr_folder: str | Path, split: str | None = None) -> dict:
    """SA-COMB: ½ (SR IoU + CM cosine) from trained SA-SR and SA-CM checkpoints, on ``split`` (test)."""
    feats = load_split(cfg, split or cfg.data.test_split)
    cm_model, text_inputs, _ = load_sa_cm(cm_folder)
    sr_model, vocab, sr = load_sa_sr(sr_folder)
    s_cm = sa_cm_scores(cm_model, feats, text_inputs)
    s_sr = sa_sr_scores(sr_model, feats, vocab, sr.threshold)
    comb = 0.5 * (s_cm + s_sr)
    return {"method": "sa-comb", "seed": cfg.train.seed, "test": retrieval_from_scores(comb, feats.texts)}
