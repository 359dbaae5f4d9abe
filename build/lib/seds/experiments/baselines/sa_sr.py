"""SA-SR, SPOT-ALIGN's sign-recognition baseline (Duarte et al., CVPR 2022; SEDS Tab. 1): a per-window
classifier over the sign vocabulary (+ a background class) on the I3D window features, trained on
sign-level labels; a video's recognised words are those whose probability exceeds the threshold in some
window, and its similarity to a query is the IoU of the word sets (:func:`iou_similarity`). Ties are
broken at random with a fixed seed. See :mod:`seds.experiments.baselines.common`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from seds.config import Config, from_dict, to_dict
from seds.experiments.baselines.common import (BaselineError, SASRConfig, SplitFeatures, break_ties,
                                               load_split, load_state, retrieval_from_scores, save_model,
                                               train_select_best, words_of)


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

    def batch_losses(epoch: int):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), sr.batch_size):
            idx = perm[s:s + sr.batch_size]
            yield F.cross_entropy(model(x[idx]), y[idx])

    best_epoch, best, history = train_select_best(
        model, opt, "sa-sr", sr.epochs, batch_losses,
        lambda: retrieval_from_scores(break_ties(sa_sr_scores(model, val, vocab, sr.threshold), cfg.train.seed),
                                      val.texts), progress, patience=sr.patience)
    doc = {"format": "seds.baselines.sa-sr/1", "sr": to_dict(sr), "vocab": vocab, "in_dim": int(x.shape[-1]),
           "seed": cfg.train.seed, "best_epoch": best_epoch, "val_geomean": best}
    save_model(out / "best", model, doc)
    rec_test = recognise(model, test, vocab, sr.threshold)
    test_scores = iou_similarity(rec_test, [set(words_of(t)) for t in test.texts])
    return {"method": "sa-sr", "seed": cfg.train.seed, "best_epoch": best_epoch, "val_geomean": best,
            "test": retrieval_from_scores(break_ties(test_scores, cfg.train.seed), test.texts),
            "recognition_test": recognition_quality(rec_test, test), "vocab_size": len(vocab),
            "train_windows": int(len(x)), "background_fraction": float((y == len(vocab)).float().mean()),
            "history": history, "seconds": round(time.time() - t0, 1), "out": str(out)}


def load_sa_sr(folder: str | Path) -> tuple[SignRecognizer, list[str], SASRConfig]:
    folder = Path(folder)
    doc = json.loads((folder / "config.json").read_text())
    sr = from_dict(SASRConfig, doc["sr"])
    model = SignRecognizer(doc["in_dim"], len(doc["vocab"]), sr)
    return load_state(folder, model), doc["vocab"], sr
