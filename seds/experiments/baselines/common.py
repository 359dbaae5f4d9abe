"""What the SPOT-ALIGN baselines share (:mod:`~seds.experiments.baselines.sa_cm`,
:mod:`~seds.experiments.baselines.sa_sr`): their configs, the store's window features of a split, the
evaluation on score matrices, and saving/loading their weights.

SPOT-ALIGN baselines (Duarte et al., "Sign Language Video Retrieval with Free-Form Textual Queries",
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
  (written when the metrics ranked ties optimistically; ``seds.metrics`` now scores ties by their
  expectation under random tie-breaking, of which this is one draw).
* **SA-COMB**: the average of the SR and CM similarity matrices.

Library entry points: :func:`train_sa_cm`, :func:`train_sa_sr`, :func:`evaluate_sa_comb`; the CLI is
``python -m seds.experiments.baselines``.
"""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file

from seds.atomic import atomic_save_file
from seds.config import Config, check, from_dict, parse_overrides
from seds.metrics import relevance_from_labels, retrieval_metrics
from seds.variants import build_dataset

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
    epochs: int = 150              # a cap: training stops when val has not improved for `patience` epochs
    patience: int = 10             # epochs without a val gain before stopping (0: train all `epochs`)

    def __post_init__(self):
        check(self.dim > 0 and self.hidden > 0, "dim/hidden", "must be > 0")
        check(self.video_layers >= 0, "video_layers", "must be ≥ 0")
        check(self.hidden % self.video_heads == 0, "video_heads", f"hidden {self.hidden} must be divisible")
        check(self.clusters >= 1 and self.ghost_clusters >= 0, "clusters", "need ≥ 1 cluster, ≥ 0 ghosts")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        check(self.margin >= 0, "margin", "must be ≥ 0")
        check(self.lr > 0 and self.weight_decay >= 0, "lr", "lr > 0 and weight_decay ≥ 0")
        check(self.batch_size >= 2, "batch_size", "must be ≥ 2 (the ranking loss needs negatives)")
        check(self.epochs >= 1, "epochs", "must be ≥ 1")
        check(self.patience >= 0, "patience", "must be ≥ 0")


@dataclass
class SASRConfig:
    """SA-SR hyper-parameters (``sr.<field>=...``)."""
    hidden: int = 512
    dropout: float = 0.3
    threshold: float = 0.5         # a word is recognised when its window probability exceeds this
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 512          # windows per step
    epochs: int = 300              # a cap: training stops when val has not improved for `patience` epochs
    patience: int = 10             # epochs without a val gain before stopping (0: train all `epochs`)

    def __post_init__(self):
        check(self.hidden > 0, "hidden", "must be > 0")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        check(0 < self.threshold < 1, "threshold", "must be in (0, 1)")
        check(self.lr > 0 and self.weight_decay >= 0, "lr", "lr > 0 and weight_decay ≥ 0")
        check(self.batch_size >= 1 and self.epochs >= 1, "batch_size/epochs", "must be ≥ 1")
        check(self.patience >= 0, "patience", "must be ≥ 0")


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


def train_select_best(model: nn.Module, opt: torch.optim.Optimizer, name: str, epochs: int,
                      batch_losses: Callable[[int], Iterable[torch.Tensor]], validate: Callable[[], dict],
                      progress: bool = True, extra: Callable[[dict], dict] = lambda res: {},
                      patience: int = 0) -> tuple[int, float, list[dict]]:
    """The baselines' training loop: each epoch takes one optimiser step per loss ``batch_losses(epoch)``
    yields, then scores ``validate()`` (val retrieval results) by :func:`geometric_mean_recall`; training
    stops early when ``patience`` > 0 epochs in a row bring no gain (``epochs`` is then a cap), and the best
    epoch's weights are loaded back into ``model``. Returns (best epoch, its score, per-epoch history —
    epoch, mean loss, val_geomean and ``extra(results)``)."""
    best, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        if patience and best_state is not None and epoch - best_state[0] >= patience:
            if progress:
                print(f"{name}: early stopping after epoch {epoch} (best epoch {best_state[0]})", flush=True)
            break
        model.train()
        losses = []
        for loss in batch_losses(epoch):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        res = validate()
        score = geometric_mean_recall(res)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_geomean": score, **extra(res)})
        if progress:
            print(f"{name} epoch {epoch + 1}/{epochs} loss={np.mean(losses):.4f} val geomean={score:.2f}", flush=True)
        if score > best:
            best, best_state = score, (epoch + 1, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best_state[1])
    return best_state[0], best, history


# --- weights ----------------------------------------------------------------------------------------

def save_model(folder: Path, model: nn.Module, doc: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
                     folder / "model.safetensors", {"format": doc["format"]})
    (folder / "config.json").write_text(json.dumps(doc, indent=2))


def load_state(folder: Path, model: nn.Module) -> nn.Module:
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


def epoch_batches(n: int, batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [c for c in (perm[s:s + batch] for s in range(0, n, batch)) if len(c) >= 2]


# --- configs from overrides ------------------------------------------------------------------------

def split_overrides(overrides: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``cm.*`` / ``sr.*`` overrides apart from the SEDS ``Config`` ones."""
    cm = [o[3:] for o in overrides if o.startswith("cm.")]
    sr = [o[3:] for o in overrides if o.startswith("sr.")]
    rest = [o for o in overrides if not o.startswith(("cm.", "sr."))]
    return rest, cm, sr


def baseline_configs(cm_overrides: list[str], sr_overrides: list[str]) -> tuple[SACMConfig, SASRConfig]:
    return (from_dict(SACMConfig, parse_overrides(cm_overrides), "cm"),
            from_dict(SASRConfig, parse_overrides(sr_overrides), "sr"))
