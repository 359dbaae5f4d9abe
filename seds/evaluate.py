"""Retrieval evaluation: ``python -m seds.evaluate --checkpoint runs/x/best --split test``.

Encodes every video and sentence of a split, scores all pairs with the fine-grained similarity in
chunks (fused, pose-only and RGB-only streams), and reports R@1/5/10, MedR and MeanR for T2V and V2T
under two protocols for repeated sentences (:mod:`seds.metrics`):

* ``sentence_ids`` (default; the paper's tables; ``official`` is its former name): the authors'
  ``eval_epoch``. Videos are grouped by *sentence id*: the manifest's ``sentence_id`` column where it has one (How2Sign's ``SENTENCE_ID``:
  several recordings of one sentence), else the sentence text with whitespace normalised (then
  identical strings form one id). Each id's text is used once (from its last video, as the authors
  do); V2T ranks each video's own id among all ids, T2V ranks each id's video group (max score).
* ``distinct``: one T2V query per distinct (whitespace-normalised) sentence with all its videos
  relevant; V2T ranks each video's sentence once among the distinct sentences.

Ties get the expected rank under random tie-breaking (fractional ranks; R@K is the probability that
the rank is ≤ K), so a constant model scores at chance. ``--ties pessimistic`` or (explicitly)
``--ties optimistic`` choose the other conventions; the JSON and the printout name the convention.
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
from seds.hub import resolve_checkpoint
from seds.metrics import (MEDIAN_NOTE, MEDIANS, PROTOCOL_NOTE, PROTOCOLS, TIES, TIES_NOTE, canonical_protocol,
                          format_table, group_labels, protocol_metrics)
from seds.similarity import fine_grained_scores
from seds.variants import build_dataset, variant_of
from seds.progname import prog


@dataclass
class EncodedSplit:
    video: dict[str, torch.Tensor]     # stream → (N, T, D) on CPU
    video_mask: torch.Tensor           # (N, T)
    words: torch.Tensor                # (N, L, D)
    word_mask: torch.Tensor            # (N, L)
    ids: list[str]
    texts: list[str]                   # as given to the text encoder (truncated to max_words)
    sentence_ids: list[str]            # sentence_ids protocol groups (module docstring)
    sentences: list[str]               # whitespace-normalised full sentence (distinct protocol)


def normalise_sentence(text: str) -> str:
    """The key of a 'distinct sentence': the text with runs of whitespace collapsed and ends stripped."""
    return " ".join(str(text).split())


def sentence_id(meta: dict, text: str) -> str:
    """A video's sentence id: the manifest's ``sentence_id`` column if present and non-empty, else
    ``text:`` + the normalised sentence."""
    sid = str(meta.get("sentence_id") or "").strip()
    return sid if sid else "text:" + normalise_sentence(text)


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
                 collate_fn=None) -> EncodedSplit:
    """Encode all videos and their sentences of ``dataset`` (the variant's dataset, :func:`build_dataset`) with
    ``model``; ``collate_fn`` batches its items (default: the model variant's collate)."""
    model.eval()
    variant = variant_of(model)
    collate_fn = collate_fn or variant.collate
    dev = model.device
    streams: dict[str, list] = {}
    vmask, words, wmask, ids, texts, sids, sents = [], [], [], [], [], [], []
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
        for m, txt in zip(variant.batch_meta(batch), batch["text"]):
            full = m.get("text") or txt
            sids.append(sentence_id(m, full))
            sents.append(normalise_sentence(full))
    return EncodedSplit({k: _pad_cat(x) for k, x in streams.items()}, _pad_cat(vmask, value=False),
                        _pad_cat(words), _pad_cat(wmask, value=False), ids, texts, sids, sents)


def score_matrices(enc: EncodedSplit, tau: float, device="cpu", chunk_size: int = 64,
                   text_rows=None, softmax_over_padding: bool = False) -> dict[str, torch.Tensor]:
    """stream → (N_videos, N_texts) retrieval scores (½ (M_t2k + M_k2t)), computed in video chunks;
    ``text_rows`` selects which encoded sentences are the columns (default: all);
    ``softmax_over_padding``: the official variant's similarity (``VariantOptions``)."""
    out = {}
    w, wm = enc.words, enc.word_mask
    if text_rows is not None:
        rows = torch.as_tensor(text_rows, dtype=torch.long)
        w, wm = w[rows], wm[rows]
    w, wm = w.to(device), wm.to(device)
    for s, feats in enc.video.items():
        parts = []
        for i in range(0, feats.shape[0], chunk_size):
            sc = fine_grained_scores(feats[i:i + chunk_size].to(device), enc.video_mask[i:i + chunk_size].to(device),
                                     w, wm, tau=tau, softmax_over_padding=softmax_over_padding)
            parts.append(sc.mean.cpu())
        out[s] = torch.cat(parts)
    return out


def evaluate_protocols(enc: EncodedSplit, tau: float, device="cpu", protocols=PROTOCOLS,
                       ties: str = "expected", softmax_over_padding: bool = False,
                       median: str = "protocol") -> dict[str, dict[str, dict]]:
    """protocol → stream → ``{"t2v", "v2t"}`` metrics; the scores are computed once, with one column
    per sentence id (sentence_ids) or distinct sentence (distinct). ``median``: the MedR convention
    (:func:`seds.metrics.protocol_metrics`; default: the protocol's own)."""
    protocols = [canonical_protocol(p) for p in protocols]
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise ValueError(f"unknown protocol(s) {bad}; choose from {', '.join(PROTOCOLS)}")
    keys = {"sentence_ids": enc.sentence_ids, "distinct": enc.sentences}
    grouped = {p: group_labels(keys[p], "last") for p in protocols}
    cols = sorted({int(i) for _, rep in grouped.values() for i in rep})   # encoded sentences scored once
    where = {row: c for c, row in enumerate(cols)}
    scores = score_matrices(enc, tau, device, text_rows=cols, softmax_over_padding=softmax_over_padding)
    out = {}
    for p, (video_to_text, rep) in grouped.items():
        take = torch.as_tensor([where[int(i)] for i in rep], dtype=torch.long)
        out[p] = {s: protocol_metrics(scores[s][:, take], video_to_text, protocol=p, ties=ties, median=median)
                  for s in ("fused", "pose", "rgb")
                  if s in scores and not (s == "fused" and len(enc.video) == 2)}  # single stream: fused is an alias
    return out


def evaluate_encoded(enc: EncodedSplit, tau: float, device="cpu", protocol: str = "sentence_ids",
                     ties: str = "expected", softmax_over_padding: bool = False) -> dict[str, dict]:
    """stream → ``{"t2v", "v2t"}`` metrics under one protocol."""
    protocol = canonical_protocol(protocol)
    return evaluate_protocols(enc, tau, device, (protocol,), ties, softmax_over_padding)[protocol]


def rsum(results: dict) -> float:
    r = results.get("fused") or next(iter(results.values()))
    return sum(r[d][f"R@{k}"] for d in ("t2v", "v2t") for k in (1, 5, 10))


def evaluate_model(model, dataset, tau: float, batch_size: int = 64, amp: bool = False,
                   progress: bool = False, protocol: str = "sentence_ids", ties: str = "expected",
                   collate_fn=None) -> dict[str, dict]:
    """stream → ``{"t2v", "v2t"}`` metrics of ``model`` on ``dataset`` under one protocol."""
    enc = encode_split(model, dataset, batch_size, amp, progress, collate_fn)
    return evaluate_encoded(enc, tau, model.device, protocol, ties, model.cfg.options.softmax_over_padding)


def main(argv=None):
    ap = argparse.ArgumentParser(prog=prog("seds.evaluate", "seds-evaluate"), description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + config.json) or a Hub "
                    "model repo: org/name[@revision] (cached; HF_HUB_OFFLINE=1 uses the cache only)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--store", default=None, help="feature store (default: the checkpoint's data.store)")
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=None, help="JSON file for the results (default: <checkpoint>/eval_<split>.json)")
    ap.add_argument("--protocol", type=canonical_protocol, choices=PROTOCOLS, default="sentence_ids",
                    help="primary repeated-sentence protocol (the other is printed beside it); sentence_ids: the "
                         "authors' eval_epoch ('official' is accepted as its former name)")
    ap.add_argument("--ties", choices=TIES, default="expected",
                    help="tie convention (default: expected rank under random tie-breaking)")
    ap.add_argument("--median", choices=("protocol",) + MEDIANS, default="protocol",
                    help="MedR convention (default: the protocol's; sentence_ids = the authors' metrics.py: V2T lower "
                         "middle value, T2V mean of the two middle)")
    args = ap.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    ckpt = resolve_checkpoint(args.checkpoint)     # a local folder or a Hub repo (its cached snapshot)
    model, _, cfg, info = load_checkpoint(ckpt, device)
    ds = build_dataset(cfg, args.split, args.store, args.manifest)
    amp = device.startswith("cuda")
    variant = variant_of(cfg)
    if amp and variant.fp16_towers:   # the authors' serving precision instead of bf16 autocast
        model.half_clip_towers()
    enc = encode_split(model, ds, args.batch_size, amp=amp and variant.autocast, progress=True)
    order = [args.protocol] + [p for p in PROTOCOLS if p != args.protocol]
    results = evaluate_protocols(enc, cfg.model.tau, model.device, order, args.ties,
                                 cfg.model.options.softmax_over_padding, args.median)
    n_ids, n_distinct = len(set(enc.sentence_ids)), len(set(enc.sentences))
    print(f"{args.split}: {len(ds)} videos, {n_ids} sentence ids, {n_distinct} distinct sentences")
    print(TIES_NOTE[args.ties])
    print(MEDIAN_NOTE[args.median])
    for p in order:
        print(f"\n{PROTOCOL_NOTE[p]}{' [primary]' if p == args.protocol else ''}")
        print(format_table(results[p]))
    # next to a local checkpoint; a Hub checkpoint's cached snapshot is not ours to write into: the working directory
    out = Path(args.out) if args.out else (ckpt if ckpt == Path(args.checkpoint) else Path()) / f"eval_{args.split}.json"
    out.write_text(json.dumps({"split": args.split, "n_videos": len(ds), "n_sentence_ids": n_ids,
                               "n_distinct_sentences": n_distinct, "checkpoint": str(args.checkpoint),
                               "checkpoint_info": info, "ties": args.ties, "ties_note": TIES_NOTE[args.ties],
                               "protocol": args.protocol, "median": args.median,
                               "median_note": MEDIAN_NOTE[args.median],
                               "protocol_notes": {p: PROTOCOL_NOTE[p] for p in order},
                               "results": results}, indent=2))
    print(f"wrote {out}")
    return results[args.protocol]


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
