"""SPOT-ALIGN baselines (Duarte et al., "Sign Language Video Retrieval with Free-Form Textual Queries",
CVPR 2022), as compared against in SEDS Tab. 1: SR, CM and COMB, on the same feature store, splits,
relevance and metrics as SEDS (``seds.metrics``).

* **SA-CM** (cross-modal embedding, :class:`SACM`): the video is the sequence of its I3D window
  features (the store's 16-frame windows, stride 1, at most T chosen at equal intervals) → a temporal
  encoder (linear + transformer over windows + masked mean) → gated embedding unit → 512-d; the
  sentence is its word embeddings from a frozen Hugging Face model (MiniLM by default; or hashed
  trainable word embeddings) → NetVLAD with 20 clusters → gated embedding unit → 512-d. Cosine
  similarity, bidirectional max-margin ranking loss (margin 0.2), RAdam (lr 1e-3, weight decay 1e-5),
  batch 128, 40 epochs, checkpoint chosen by the geometric mean of T2V R@1/5/10 on validation.
* **SA-SR** (sign recognition, :class:`SignRecognizer`): a per-window classifier over the sign
  vocabulary (+ a background class) on the I3D features, trained on sign-level labels; a video's
  recognised words are those whose probability exceeds 0.5 in some window, and its similarity to a
  query is the IoU between the recognised word set and the query's word set
  (:func:`iou_similarity`). Needs sign-level labels (``meta["word_ids"]``/``["word_spans"]``), which
  the synthetic benchmark has. IoU scores tie a lot; ties are broken at random with a fixed seed
  (the metrics' optimistic tie rule would otherwise flatter SR).
* **SA-COMB**: the average of the SR and CM similarity matrices.

Library entry points: :func:`train_sa_cm`, :func:`train_sa_sr`, :func:`evaluate_sa_comb`; the CLI is
``python -m seds.baselines``.
"""
from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from seds.baselines.netvlad import NetVLAD
from seds.config import Config, _check, to_dict
from seds.metrics import relevance_from_labels, retrieval_metrics

WORD_RE = re.compile(r"[\w']+", re.UNICODE)


class BaselineError(ValueError):
    """A baseline cannot run on this data or configuration; the message says why."""


# --- configs ---------------------------------------------------------------------------------------

@dataclass
class SACMConfig:
    """SA-CM hyper-parameters (``cm.<field>=...`` on the command line)."""
    dim: int = 512                 # shared embedding space
    hidden: int = 512              # temporal video encoder width
    video_layers: int = 1          # transformer layers over the windows
    video_heads: int = 8
    text_model: str = "minilm"     # frozen HF word embeddings ("minilm" or a local model dir) or "hash"
    hash_width: int = 300
    hash_buckets: int = 32768
    max_words: int = 32
    clusters: int = 20             # NetVLAD clusters
    ghost_clusters: int = 0
    dropout: float = 0.1
    margin: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 128
    epochs: int = 40

    def __post_init__(self):
        _check(self.dim > 0 and self.hidden > 0, "dim/hidden", "must be > 0")
        _check(self.video_layers >= 0, "video_layers", "must be ≥ 0")
        _check(self.hidden % self.video_heads == 0, "video_heads", f"hidden {self.hidden} must be divisible")
        _check(self.clusters >= 1 and self.ghost_clusters >= 0, "clusters", "need ≥ 1 cluster, ≥ 0 ghosts")
        _check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        _check(self.margin >= 0, "margin", "must be ≥ 0")
        _check(self.lr > 0 and self.weight_decay >= 0, "lr", "lr > 0 and weight_decay ≥ 0")
        _check(self.batch_size >= 2, "batch_size", "must be ≥ 2 (the ranking loss needs negatives)")
        _check(self.epochs >= 1, "epochs", "must be ≥ 1")


@dataclass
class SASRConfig:
    """SA-SR hyper-parameters (``sr.<field>=...``)."""
    hidden: int = 512
    dropout: float = 0.3
    threshold: float = 0.5         # a word is recognised when its window probability exceeds this
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 512          # windows per step
    epochs: int = 30

    def __post_init__(self):
        _check(self.hidden > 0, "hidden", "must be > 0")
        _check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        _check(0 < self.threshold < 1, "threshold", "must be in (0, 1)")
        _check(self.lr > 0 and self.weight_decay >= 0, "lr", "lr > 0 and weight_decay ≥ 0")
        _check(self.batch_size >= 1 and self.epochs >= 1, "batch_size/epochs", "must be ≥ 1")


# --- data ------------------------------------------------------------------------------------------

@dataclass
class SplitFeatures:
    """The RGB window features of one split, padded: what every SPOT-ALIGN baseline consumes."""
    rgb: torch.Tensor             # (N, T, 1024)
    mask: torch.Tensor            # (N, T) bool
    clip_starts: torch.Tensor     # (N, T) int64
    texts: list[str]
    ids: list[str]
    meta: list[dict]

    def __len__(self) -> int:
        return len(self.ids)


def load_split(cfg: Config, split: str) -> SplitFeatures:
    """Read one split of ``cfg.data.store`` (the same manifests as SEDS)."""
    from seds.evaluate import build_dataset

    ds = build_dataset(cfg, split)
    items = [ds[i] for i in range(len(ds))]
    t = max(it["rgb"].shape[0] for it in items)
    d = items[0]["rgb"].shape[1]
    rgb = torch.zeros(len(items), t, d)
    starts = torch.zeros(len(items), t, dtype=torch.long)
    mask = torch.zeros(len(items), t, dtype=torch.bool)
    for i, it in enumerate(items):
        n = it["rgb"].shape[0]
        rgb[i, :n] = torch.from_numpy(np.asarray(it["rgb"], dtype=np.float32))
        starts[i, :n] = torch.from_numpy(np.asarray(it["clip_starts"], dtype=np.int64))
        mask[i, :n] = True
    return SplitFeatures(rgb, mask, starts, [it["text"] for it in items], [it["id"] for it in items],
                         [it["meta"] for it in items])


def words_of(text: str) -> list[str]:
    """Lower-cased word tokens of a sentence (what SR recognises and IoU compares)."""
    return WORD_RE.findall(text.lower())


# --- shared evaluation -----------------------------------------------------------------------------

def geometric_mean_recall(results: dict) -> float:
    """SPOT-ALIGN / Collaborative-Experts model selection: (R@1 · R@5 · R@10)^(1/3) of text→video."""
    r = results["t2v"]
    return float((max(r["R@1"], 1e-3) * max(r["R@5"], 1e-3) * max(r["R@10"], 1e-3)) ** (1 / 3))


def retrieval_from_scores(scores: torch.Tensor, texts: list[str]) -> dict:
    """T2V/V2T metrics of a (videos × texts) score matrix; identical sentences are all relevant."""
    return retrieval_metrics(scores, relevance_from_labels(texts, texts))


def break_ties(scores: torch.Tensor, seed: int = 0, eps: float = 1e-6) -> torch.Tensor:
    """Add ``eps``·U(0, 1) noise (fixed seed) so exactly tied scores are ordered at random."""
    g = torch.Generator().manual_seed(seed)
    return scores.double() + eps * torch.rand(scores.shape, generator=g, dtype=torch.float64)


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
        from seds.model.text_encoder import resolve_text_model
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

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
            from seds.model.text_encoder import HashTokenizer
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


def _save(folder: Path, model: nn.Module, doc: dict) -> None:
    from seds.checkpoint import atomic_save_file
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
                     folder / "model.safetensors", {"format": doc["format"]})
    (folder / "config.json").write_text(json.dumps(doc, indent=2))


def _load_state(folder: Path, model: nn.Module) -> nn.Module:
    from safetensors.torch import load_file
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


def _epoch_batches(n: int, batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [c for c in (perm[s:s + batch] for s in range(0, n, batch)) if len(c) >= 2]


def train_sa_cm(cfg: Config, cm: SACMConfig, out: str | Path, progress: bool = True) -> dict:
    """Train SA-CM on ``cfg.data`` (train split), select on val, evaluate test; writes ``<out>/best``."""
    out = Path(out)
    torch.manual_seed(cfg.train.seed)
    t0 = time.time()
    train, val, test = (load_split(cfg, getattr(cfg.data, f"{s}_split")) for s in ("train", "val", "test"))
    text_inputs = TextInputs(cm)
    model = SACM(cm, train.rgb.shape[-1], text_inputs.dim)
    opt = torch.optim.RAdam(model.parameters(), lr=cm.lr, weight_decay=cm.weight_decay)
    best, best_state, history = -1.0, None, []
    for epoch in range(cm.epochs):
        model.train()
        losses = []
        for idx in _epoch_batches(len(train), cm.batch_size, cfg.train.seed, epoch):
            w, m = text_inputs([train.texts[i] for i in idx])
            sim = model(train.rgb[idx], train.mask[idx], w, m)
            loss = max_margin_ranking_loss(sim, cm.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        res = retrieval_from_scores(sa_cm_scores(model, val, text_inputs), val.texts)
        score = geometric_mean_recall(res)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_geomean": score,
                        "val_t2v_R@1": res["t2v"]["R@1"]})
        if progress:
            print(f"sa-cm epoch {epoch + 1}/{cm.epochs} loss={np.mean(losses):.4f} val geomean={score:.2f}",
                  flush=True)
        if score > best:
            best, best_state = score, (epoch + 1, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best_state[1])
    doc = {"format": "seds.baselines.sa-cm/1", "cm": to_dict(cm), "data": to_dict(cfg.data),
           "seed": cfg.train.seed, "best_epoch": best_state[0], "val_geomean": best}
    _save(out / "best", model, doc)
    test_scores = sa_cm_scores(model, test, text_inputs)
    return {"method": "sa-cm", "seed": cfg.train.seed, "best_epoch": best_state[0], "val_geomean": best,
            "val": retrieval_from_scores(sa_cm_scores(model, val, text_inputs), val.texts),
            "test": retrieval_from_scores(test_scores, test.texts), "history": history,
            "seconds": round(time.time() - t0, 1), "out": str(out)}


def load_sa_cm(folder: str | Path) -> tuple[SACM, TextInputs, dict]:
    folder = Path(folder)
    doc = json.loads((folder / "config.json").read_text())
    from seds.config import from_dict
    cm = from_dict(SACMConfig, doc["cm"])
    text_inputs = TextInputs(cm)
    model = SACM(cm, 1024, text_inputs.dim)
    return _load_state(folder, model), text_inputs, doc


# --- SA-SR -----------------------------------------------------------------------------------------

def window_labels(feats: SplitFeatures, window: int = 16) -> tuple[torch.Tensor, dict[int, str]]:
    """(N, T) word id of the sign at the centre frame of each window (-1: rest/transition/padding),
    from the store's sign-level labels ``meta["word_ids"]`` and ``meta["word_spans"]`` ("s:e ...").
    Also returns ``{word id: word}`` from ``meta["words"]``."""
    labels = torch.full(feats.mask.shape, -1, dtype=torch.long)
    names: dict[int, str] = {}
    for i, meta in enumerate(feats.meta):
        if not meta.get("word_ids") or not meta.get("word_spans"):
            raise BaselineError(f"SA-SR needs sign-level labels: video {feats.ids[i]!r} has no meta "
                                "'word_ids'/'word_spans' (the synthetic benchmark has them; real data "
                                "needs sign spotting annotations)")
        ids = [int(x) for x in str(meta["word_ids"]).split(",")]
        spans = [tuple(int(v) for v in s.split(":")) for s in str(meta["word_spans"]).split()]
        words = str(meta.get("words", "")).split() or [str(w) for w in ids]
        if not (len(ids) == len(spans) == len(words)):
            raise BaselineError(f"video {feats.ids[i]!r}: {len(ids)} word_ids, {len(spans)} word_spans, "
                                f"{len(words)} words — they must match")
        names.update(zip(ids, words))
        size = max(max(e for _, e in spans), int(feats.clip_starts[i].max()) + window) + 1
        frame = np.full(size, -1, dtype=np.int64)
        for (s, e), w in zip(spans, ids):       # ≤ max_words spans per video
            frame[s:e] = w
        centre = feats.clip_starts[i].numpy() + window // 2
        lab = torch.from_numpy(frame[centre])
        labels[i] = torch.where(feats.mask[i], lab, torch.full_like(lab, -1))
    return labels, names


class SignRecognizer(nn.Module):
    """Per-window classifier over the sign vocabulary + background (last class)."""

    def __init__(self, in_dim: int, n_words: int, cfg: SASRConfig):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, cfg.hidden), nn.GELU(),
                                 nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, n_words + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@torch.no_grad()
def recognise(model: SignRecognizer, feats: SplitFeatures, vocab: list[str], threshold: float,
              batch: int = 256) -> list[set[str]]:
    """Words whose probability exceeds ``threshold`` in at least one valid window of each video."""
    model.eval()
    out = []
    for i in range(0, len(feats), batch):
        p = torch.softmax(model(feats.rgb[i:i + batch]), -1)[..., :-1]       # drop background
        p = p.masked_fill(~feats.mask[i:i + batch, :, None], 0.0).amax(1)     # (b, V)
        hits = p > threshold
        out += [{vocab[j] for j in torch.nonzero(row).flatten().tolist()} for row in hits]
    return out


def iou_similarity(recognised: list[set[str]], queries: list[set[str]]) -> torch.Tensor:
    """(videos × queries) IoU |R ∩ Q| / |R ∪ Q| of word sets (0 when both are empty), by matrix products."""
    index: dict[str, int] = {}
    for s in list(recognised) + list(queries):
        for w in s:
            index.setdefault(w, len(index))
    r = torch.zeros(len(recognised), max(1, len(index)))
    q = torch.zeros(len(queries), max(1, len(index)))
    for i, s in enumerate(recognised):
        r[i, [index[w] for w in s]] = 1.0
    for j, s in enumerate(queries):
        q[j, [index[w] for w in s]] = 1.0
    inter = r @ q.t()
    union = r.sum(1, keepdim=True) + q.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def sa_sr_scores(model: SignRecognizer, feats: SplitFeatures, vocab: list[str], threshold: float) -> torch.Tensor:
    rec = recognise(model, feats, vocab, threshold)
    return iou_similarity(rec, [set(words_of(t)) for t in feats.texts])


def recognition_quality(rec: list[set[str]], feats: SplitFeatures) -> dict:
    """Micro precision/recall of recognised word sets against each video's true word set."""
    tp = sum(len(r & set(words_of(t))) for r, t in zip(rec, feats.texts))
    n_rec = sum(len(r) for r in rec)
    n_true = sum(len(set(words_of(t))) for t in feats.texts)
    return {"precision": 100.0 * tp / max(1, n_rec), "recall": 100.0 * tp / max(1, n_true),
            "words_per_video": n_rec / max(1, len(rec))}


def train_sa_sr(cfg: Config, sr: SASRConfig, out: str | Path, progress: bool = True) -> dict:
    """Train the window classifier on train-split sign labels, select on val retrieval (geometric mean
    of T2V R@1/5/10 with IoU scores), evaluate test; writes ``<out>/best``."""
    out = Path(out)
    torch.manual_seed(cfg.train.seed)
    t0 = time.time()
    train, val, test = (load_split(cfg, getattr(cfg.data, f"{s}_split")) for s in ("train", "val", "test"))
    lab, names = window_labels(train, cfg.model.window)
    word_ids = sorted(names)
    vocab = [names[w] for w in word_ids]
    to_class = torch.full((max(word_ids) + 2,), len(vocab), dtype=torch.long)   # -1 → background
    to_class[torch.tensor(word_ids)] = torch.arange(len(vocab))
    x = train.rgb[train.mask]
    y = to_class[lab[train.mask]]
    model = SignRecognizer(x.shape[-1], len(vocab), sr)
    opt = torch.optim.AdamW(model.parameters(), lr=sr.lr, weight_decay=sr.weight_decay)
    g = torch.Generator().manual_seed(cfg.train.seed)
    best, best_state, history = -1.0, None, []
    for epoch in range(sr.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        losses = []
        for s in range(0, len(x), sr.batch_size):
            idx = perm[s:s + sr.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        res = retrieval_from_scores(break_ties(sa_sr_scores(model, val, vocab, sr.threshold), cfg.train.seed),
                                    val.texts)
        score = geometric_mean_recall(res)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_geomean": score})
        if progress:
            print(f"sa-sr epoch {epoch + 1}/{sr.epochs} loss={np.mean(losses):.4f} val geomean={score:.2f}",
                  flush=True)
        if score > best:
            best, best_state = score, (epoch + 1, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best_state[1])
    doc = {"format": "seds.baselines.sa-sr/1", "sr": to_dict(sr), "vocab": vocab, "in_dim": int(x.shape[-1]),
           "seed": cfg.train.seed, "best_epoch": best_state[0], "val_geomean": best}
    _save(out / "best", model, doc)
    rec_test = recognise(model, test, vocab, sr.threshold)
    test_scores = iou_similarity(rec_test, [set(words_of(t)) for t in test.texts])
    return {"method": "sa-sr", "seed": cfg.train.seed, "best_epoch": best_state[0], "val_geomean": best,
            "test": retrieval_from_scores(break_ties(test_scores, cfg.train.seed), test.texts),
            "recognition_test": recognition_quality(rec_test, test), "vocab_size": len(vocab),
            "train_windows": int(len(x)), "background_fraction": float((y == len(vocab)).float().mean()),
            "history": history, "seconds": round(time.time() - t0, 1), "out": str(out)}


def load_sa_sr(folder: str | Path) -> tuple[SignRecognizer, list[str], SASRConfig]:
    from seds.config import from_dict
    folder = Path(folder)
    doc = json.loads((folder / "config.json").read_text())
    sr = from_dict(SASRConfig, doc["sr"])
    model = SignRecognizer(doc["in_dim"], len(doc["vocab"]), sr)
    return _load_state(folder, model), doc["vocab"], sr


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


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``cm.*`` / ``sr.*`` overrides apart from the SEDS ``Config`` ones."""
    cm = [o[3:] for o in overrides if o.startswith("cm.")]
    sr = [o[3:] for o in overrides if o.startswith("sr.")]
    rest = [o for o in overrides if not o.startswith(("cm.", "sr."))]
    return rest, cm, sr


def baseline_configs(cm_overrides: list[str], sr_overrides: list[str]) -> tuple[SACMConfig, SASRConfig]:
    from seds.config import from_dict, parse_overrides
    return (from_dict(SACMConfig, parse_overrides(cm_overrides), "cm"),
            from_dict(SASRConfig, parse_overrides(sr_overrides), "sr"))


__all__ = ["SACMConfig", "SASRConfig", "SACM", "SignRecognizer", "NetVLAD", "max_margin_ranking_loss",
           "iou_similarity", "train_sa_cm", "train_sa_sr", "evaluate_sa_comb", "load_sa_cm", "load_sa_sr",
           "geometric_mean_recall", "window_labels", "break_ties", "BaselineError"]
