"""Retrieval evaluation: ``python -m seds.evaluate --checkpoint runs/x/best --split test``.

Encodes every video and sentence of a split, scores all pairs with the fine-grained similarity in
chunks (fused, pose-only and RGB-only streams), and reports R@1/5/10, MedR and MeanR for T2V and V2T.
Sentences that occur for several videos (How2Sign test) are handled by relevance: a text query is
answered correctly by any video of the same sentence, and a video query by any copy of its sentence.
Ties never change the denominator (``seds.metrics``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from seds.checkpoint import load_checkpoint
from seds.data.dataset import FeatureDataset, collate
from seds.data.official import OfficialDataset, official_collate
from seds.keypoints import KeypointLayout
from seds.metrics import format_table, relevance_from_labels, retrieval_metrics
from seds.similarity import fine_grained_scores


@dataclass
class EncodedSplit:
    video: dict[str, torch.Tensor]     # stream → (N, T, D) on CPU
    video_mask: torch.Tensor           # (N, T)
    words: torch.Tensor                # (N, L, D)
    word_mask: torch.Tensor            # (N, L)
    ids: list[str]
    texts: list[str]


def _pad_cat(chunks: list[torch.Tensor], dim_len: int = 1, value=0) -> torch.Tensor:
    n = max(c.shape[dim_len] for c in chunks)
    out = []
    for c in chunks:
        if c.shape[dim_len] < n:
            pad_shape = list(c.shape)
            pad_shape[dim_len] = n - c.shape[dim_len]
            c = torch.cat([c, torch.full(pad_shape, value, dtype=c.dtype)], dim_len)
        out.append(c)
    return torch.cat(out, 0)


@torch.no_grad()
def encode_split(model, dataset, batch_size: int = 64, amp: bool = False, progress: bool = False,
                 collate_fn=collate) -> EncodedSplit:
    """Encode all videos and their sentences of ``dataset`` (a FeatureDataset) with ``model``; ``collate_fn``
    batches its items (the official variant reads the authors' batch layout, ``seds.model.seds``)."""
    model.eval()
    dev = model.device
    streams: dict[str, list] = {}
    vmask, words, wmask, ids, texts = [], [], [], [], []
    rng = range(0, len(dataset), batch_size)
    if progress:
        rng = tqdm(rng, desc="encode", unit="batch")
    for start in rng:
        batch = collate_fn([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
            v = model.encode_batch_video(batch)
            t = model.encode_text(batch["text"])
        for k, x in v.streams.items():
            streams.setdefault(k, []).append(x.float().cpu())
        vmask.append(v.mask.cpu())
        words.append(t.words.float().cpu())
        wmask.append(t.mask.cpu())
        ids += batch["ids"]
        texts += batch["text"]
    return EncodedSplit({k: _pad_cat(x) for k, x in streams.items()}, _pad_cat(vmask, value=False),
                        _pad_cat(words), _pad_cat(wmask, value=False), ids, texts)


def score_matrices(enc: EncodedSplit, tau: float, device="cpu", chunk_size: int = 64,
                   softmax_over_padding: bool = False) -> dict[str, torch.Tensor]:
    """stream → (N_videos, N_texts) retrieval scores (½ (M_t2k + M_k2t)), computed in video chunks.
    ``softmax_over_padding``: the official variant's similarity (``VariantOptions``)."""
    out = {}
    w, wm = enc.words.to(device), enc.word_mask.to(device)
    for s, feats in enc.video.items():
        parts = []
        for i in range(0, feats.shape[0], chunk_size):
            sc = fine_grained_scores(feats[i:i + chunk_size].to(device), enc.video_mask[i:i + chunk_size].to(device),
                                     w, wm, tau=tau, softmax_over_padding=softmax_over_padding)
            parts.append(sc.mean.cpu())
        out[s] = torch.cat(parts)
    return out


def evaluate_encoded(enc: EncodedSplit, tau: float, device="cpu", softmax_over_padding: bool = False) -> dict[str, dict]:
    scores = score_matrices(enc, tau, device, softmax_over_padding=softmax_over_padding)
    rel = relevance_from_labels(enc.texts, enc.texts)     # same sentence ⇒ relevant
    results = {}
    for s in ("fused", "pose", "rgb"):
        if s in scores and not (s == "fused" and len(enc.video) == 2):   # single stream: fused is an alias
            results[s] = retrieval_metrics(scores[s], rel)
    return results


def rsum(results: dict) -> float:
    r = results.get("fused") or next(iter(results.values()))
    return sum(r[d][f"R@{k}"] for d in ("t2v", "v2t") for k in (1, 5, 10))


def evaluate_model(model, dataset, tau: float, batch_size: int = 64, amp: bool = False,
                   progress: bool = False, collate_fn=collate) -> dict[str, dict]:
    enc = encode_split(model, dataset, batch_size, amp, progress, collate_fn)
    return evaluate_encoded(enc, tau, model.device, model.cfg.options.softmax_over_padding)


def collate_for(cfg):
    """The batch function of ``cfg``'s model: the official variant reads the authors' batch layout."""
    return official_collate if cfg.model.variant == "official" else collate


def build_dataset(cfg, split: str, store: str | None = None, manifest: str | None = None,
                  missing: str | None = None):
    """The dataset of one split for a Config (shared by train, evaluate and index): a FeatureDataset, or for the
    official variant an OfficialDataset (the authors' preprocessing of the same store; batch with
    :func:`collate_for`)."""
    root = Path(store or cfg.data.store)
    if not root.is_dir():
        raise FileNotFoundError(f"feature store {root} not found (data.store); run python -m seds.extract")
    man = Path(manifest or cfg.data.manifest or root / f"manifest_{split}.csv")
    if not man.exists():
        raise FileNotFoundError(f"manifest {man} not found for split {split!r}")
    if cfg.model.variant == "official":
        return OfficialDataset(root, man, split=split, missing=missing or cfg.data.missing)
    return FeatureDataset(root, man, split=split, layout=KeypointLayout(extra=cfg.model.pose.extra_parts),
                          max_words=cfg.model.text.max_words, preload=cfg.data.preload,
                          missing=missing or cfg.data.missing)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m seds.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + config.json)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--store", default=None, help="feature store (default: the checkpoint's data.store)")
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=None, help="JSON file for the results (default: <checkpoint>/eval_<split>.json)")
    args = ap.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model, _, cfg, info = load_checkpoint(args.checkpoint, device)
    ds = build_dataset(cfg, args.split, args.store, args.manifest)
    amp = device.startswith("cuda")
    if amp and cfg.model.variant == "official":   # the authors' serving precision instead of bf16 autocast
        model.half_clip_towers()
        amp = False
    results = evaluate_model(model, ds, cfg.model.tau, args.batch_size, amp=amp, progress=True,
                             collate_fn=collate_for(cfg))
    print(f"{args.split}: {len(ds)} videos, {len(set(ds.texts))} distinct sentences")
    print(format_table(results))
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval_{args.split}.json"
    out.write_text(json.dumps({"split": args.split, "n_videos": len(ds), "checkpoint": str(args.checkpoint),
                               "checkpoint_info": info, "results": results}, indent=2))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
