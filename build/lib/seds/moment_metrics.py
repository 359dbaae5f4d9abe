"""Metrics of temporal localisation, from the two fields that measure it (``benchmarks/bench_recordings.py``):

**Moment retrieval** (one query sentence, one ground-truth span, a ranked list of predicted spans):

* ``R1@IoU θ`` — the top-ranked span overlaps the truth with IoU ≥ θ;
* ``mAP@[0.5:0.95]`` — average precision at IoU θ ∈ {0.50, 0.55, …, 0.95}, averaged over θ (as in
  QVHighlights / Moment-DETR). With one true span AP = 1 / (rank of the first prediction with IoU ≥ θ), 0 if none.

Ties are never rewarded (as :mod:`seds.metrics`): predictions with equal scores are ranked in random order and
the metric is its *expected value* under that order, computed exactly (:func:`expected_first_hit`).

**Alignment** (every sentence of a recording is given and placed by its top-1 span; subtitle-alignment style):

* ``F1@θ`` (θ = 0.1, 0.25, 0.5) — a sentence is a true positive when its span has IoU ≥ θ with its truth;
  precision = TP / sentences with a span, recall = TP / sentences;
* ``frame accuracy`` — every frame of the recording labelled with the sentence whose span covers it (the higher
  score wins where predicted spans overlap) or background; the fraction of frames whose label is right;
* ``mean start / end offset`` — mean |predicted − true| start and end (s) over sentences with a span.
"""
from __future__ import annotations

from math import comb

import numpy as np

MAP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
F1_THRESHOLDS = (0.1, 0.25, 0.5)


def iou_1d(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of spans ``pred`` (N, 2) with one span ``gt`` (2,) → (N,)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    s, e = float(gt[0]), float(gt[1])
    inter = np.clip(np.minimum(pred[:, 1], e) - np.maximum(pred[:, 0], s), 0, None)
    union = (pred[:, 1] - pred[:, 0]) + (e - s) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def expected_first_hit(scores: np.ndarray, hit: np.ndarray) -> tuple[float, float]:
    """(P(the top-ranked prediction is a hit), E[1 / rank of the first hit]) under random tie-breaking.

    Ranked by descending score; the first hit lies in the best-scoring tie group that holds a hit: with ``a``
    predictions above that group, ``t`` in it and ``m`` hits in it, the first hit's position in the group is x
    with P(x) = C(t − x, m − 1) / C(t, m)."""
    scores = np.asarray(scores, dtype=np.float64)
    hit = np.asarray(hit, dtype=bool)
    if len(scores) == 0 or not hit.any():
        return 0.0, 0.0
    best = scores[hit].max()
    a = int((scores > best).sum())
    t = int((scores == best).sum())
    m = int((hit & (scores == best)).sum())
    inv = sum(comb(t - x, m - 1) / comb(t, m) / (a + x) for x in range(1, t - m + 2))
    top = m / t if a == 0 else 0.0
    return float(top), float(inv)


def moment_metrics(preds: list[np.ndarray], scores: list[np.ndarray], gts: np.ndarray) -> dict[str, float]:
    """R1@0.5, R1@0.7 and mAP@[0.5:0.95] (percent) over queries; ``preds[i]`` (k_i, 2) ranked spans of query i with
    ``scores[i]``, ``gts[i]`` its true span. A query without predictions scores 0."""
    r1 = {0.5: [], 0.7: []}
    ap = []
    for p, s, g in zip(preds, scores, np.asarray(gts, dtype=np.float64)):
        ious = iou_1d(p, g) if len(p) else np.zeros(0)
        for th in r1:
            r1[th].append(expected_first_hit(s, ious >= th)[0])
        ap.append(np.mean([expected_first_hit(s, ious >= th)[1] for th in MAP_THRESHOLDS]))
    n = max(len(ap), 1)
    return {"R1@0.5": 100 * sum(r1[0.5]) / n, "R1@0.7": 100 * sum(r1[0.7]) / n, "mAP": 100 * sum(ap) / n}


def alignment_metrics(pred: np.ndarray, scores: np.ndarray, gts: np.ndarray, duration_s: float,
                      fps: float = 24.0) -> dict[str, float]:
    """F1@{0.1, 0.25, 0.5}, frame accuracy (percent) and mean start / end offsets (s) of one recording.

    ``pred`` (n, 2): each sentence's top-1 span (NaN row: no span), ``scores`` (n,), ``gts`` (n, 2) true spans."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    gts = np.asarray(gts, dtype=np.float64).reshape(-1, 2)
    has = ~np.isnan(pred).any(1)
    ious = np.array([iou_1d(p[None], g)[0] if h else 0.0 for p, g, h in zip(pred, gts, has)])
    out = {}
    for th in F1_THRESHOLDS:
        tp = float((ious >= th).sum())
        prec = tp / max(int(has.sum()), 1)
        rec = tp / max(len(gts), 1)
        out[f"F1@{th}"] = 100 * (2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0)
    n_frames = int(np.ceil(duration_s * fps))
    centre = (np.arange(n_frames) + 0.5) / fps
    truth = np.full(n_frames, -1)
    for i, (s, e) in enumerate(gts):
        truth[(centre >= s) & (centre < e)] = i
    label = np.full(n_frames, -1)
    for i in np.argsort(np.where(has, scores, -np.inf), kind="stable"):   # higher scores painted last
        if has[i]:
            label[(centre >= pred[i, 0]) & (centre < pred[i, 1])] = i
    out["frame_acc"] = 100 * float((label == truth).mean()) if n_frames else 0.0
    out["start_offset_s"] = float(np.abs(pred[has, 0] - gts[has, 0]).mean()) if has.any() else float("nan")
    out["end_offset_s"] = float(np.abs(pred[has, 1] - gts[has, 1]).mean()) if has.any() else float("nan")
    return out
