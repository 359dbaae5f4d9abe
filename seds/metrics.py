"""Retrieval metrics for text→video (T2V) and video→text (V2T) from a score matrix (SEDS Sec. 4.1:
R@1, R@5, R@10 and median rank MedR; we also report the mean rank MeanR).

Protocol
--------
``scores`` is ``(n_videos, n_texts)`` (higher = more similar) and ``relevance`` a boolean matrix of
the same shape saying which (video, text) pairs are correct. The default is the identity (text *i*
describes video *i*). When one sentence belongs to several videos (How2Sign test repeats sentences),
mark all of them relevant (:func:`relevance_from_labels`): a text query is then correct at the *best*
rank among its matching videos, and a video query at the best rank among all texts equal to its
sentence.

Ranks are 1-based. With ``s*`` the best score among a query's relevant items, its rank is

* ``1 + #{non-relevant items with score > s*}`` (``ties="optimistic"``, default), or
* ``1 + #{non-relevant items with score ≥ s*}`` (``ties="pessimistic"``).

Every query gets exactly one rank, so R@K's denominator is always the number of queries. (The
reference evaluation searches for the positive's score in the sorted row; with ties it finds several
positions and the extra positions silently enlarge the denominator. Not here.)

Everything is vectorised over queries and processed in chunks of queries so memory stays bounded;
``scores`` may be a numpy array or a torch tensor (on any device).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

KS = (1, 5, 10)
_CHUNK_ELEMENTS = 1 << 24      # scores processed per chunk (≈ 64 MB of float32)
STREAM_ORDER = ("fused", "pose", "rgb")


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x)))


def relevance_from_labels(video_labels: Sequence, text_labels: Sequence) -> np.ndarray:
    """Boolean ``(n_videos, n_texts)`` relevance: video *i* and text *j* match iff their labels are
    equal (e.g. labels = normalised sentence strings, so repeated sentences match every video that
    carries them)."""
    v = np.asarray(list(video_labels), dtype=object)
    t = np.asarray(list(text_labels), dtype=object)
    _, inv = np.unique(np.concatenate([v, t]).astype(str), return_inverse=True)
    return inv[: len(v), None] == inv[None, len(v):]


def _relevance_tensor(query_to_targets, n_videos: int, n_texts: int) -> torch.Tensor | None:
    """None (identity), a bool (n_videos, n_texts) matrix, or a 1-D int array mapping each text to
    its video index → a bool tensor (or None for the identity, built per chunk)."""
    if query_to_targets is None:
        if n_videos != n_texts:
            raise ValueError(f"identity relevance needs a square score matrix, got {n_videos}×{n_texts}; "
                             "pass query_to_targets")
        return None
    rel = _as_tensor(query_to_targets)
    if rel.ndim == 1:
        if rel.dtype == torch.bool or rel.is_floating_point():
            raise ValueError("a 1-D query_to_targets must hold integer video indices (one per text)")
        if rel.shape[0] != n_texts:
            raise ValueError(f"query_to_targets maps {rel.shape[0]} texts, scores have {n_texts}")
        if rel.numel() and (int(rel.min()) < 0 or int(rel.max()) >= n_videos):
            raise ValueError(f"query_to_targets holds video indices outside [0, {n_videos})")
        return torch.arange(n_videos)[:, None] == rel.long()[None, :]
    if rel.ndim != 2 or tuple(rel.shape) != (n_videos, n_texts):
        raise ValueError(f"relevance matrix shape {tuple(rel.shape)} != scores shape {(n_videos, n_texts)}")
    if rel.dtype != torch.bool:
        if rel.is_floating_point() or not bool(((rel == 0) | (rel == 1)).all()):
            raise ValueError("relevance matrix must be boolean (or 0/1 integers)")
        rel = rel.bool()
    return rel


def query_ranks(scores, relevance=None, *, queries: str = "texts", ties: str = "optimistic",
                chunk_size: int | None = None) -> np.ndarray:
    """1-based rank of the best relevant item for every query.

    ``scores`` (n_videos, n_texts); ``relevance`` as in :func:`retrieval_metrics`;
    ``queries="texts"`` ranks videos for each text (T2V), ``"videos"`` ranks texts for each video (V2T).
    Returns an int64 array with one rank per query.
    """
    if ties not in ("optimistic", "pessimistic"):
        raise ValueError(f"ties must be 'optimistic' or 'pessimistic', got {ties!r}")
    if queries not in ("texts", "videos"):
        raise ValueError(f"queries must be 'texts' or 'videos', got {queries!r}")
    s = _as_tensor(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_videos, n_texts), got shape {tuple(s.shape)}")
    if not (s.is_floating_point() or s.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"scores must be numeric, got {s.dtype}")
    n_videos, n_texts = s.shape
    if n_videos == 0 or n_texts == 0:
        raise ValueError(f"empty score matrix {tuple(s.shape)}")
    if s.is_floating_point() and bool(torch.isnan(s).any()):
        raise ValueError("scores contain NaN")
    rel = _relevance_tensor(relevance, n_videos, n_texts)
    if rel is not None:
        rel = rel.to(s.device)
    if s.dtype in (torch.float16, torch.bfloat16):
        s = s.float()   # exact upcast: ordering and ties are unchanged
    elif not s.is_floating_point():
        s = s.double()
    # queries along rows
    if queries == "texts":
        s = s.t()
        rel = None if rel is None else rel.t()
    n_q, n_items = s.shape
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // n_items)
    ranks = torch.empty(n_q, dtype=torch.int64, device=s.device)
    items = torch.arange(n_items, device=s.device)
    for start in range(0, n_q, chunk_size):
        stop = min(start + chunk_size, n_q)
        sc = s[start:stop]
        rc = (torch.arange(start, stop, device=s.device)[:, None] == items[None, :]) if rel is None \
            else rel[start:stop]
        has_pos = rc.any(1)
        if not bool(has_pos.all()):
            bad = (start + torch.nonzero(~has_pos).flatten()).tolist()
            what = "text" if queries == "texts" else "video"
            raise ValueError(f"{len(bad)} {what} queries have no relevant item (first: index {bad[0]}); "
                             "every query needs at least one match")
        best = sc.masked_fill(~rc, float("-inf")).amax(1, keepdim=True)
        beats = sc > best if ties == "optimistic" else sc >= best
        ranks[start:stop] = 1 + (beats & ~rc).sum(1)
    return ranks.cpu().numpy()


def metrics_from_ranks(ranks, ks: Sequence[int] = KS) -> dict[str, float]:
    """R@K (percent of queries with rank ≤ K), MedR, MeanR from 1-based ranks, one per query."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("ranks must be a non-empty 1-D array (one rank per query)")
    out = {f"R@{k}": float(100.0 * np.count_nonzero(r <= k) / r.size) for k in ks}
    out["MedR"] = float(np.median(r))
    out["MeanR"] = float(r.mean())
    out["n_queries"] = int(r.size)
    return out


def retrieval_metrics(scores, query_to_targets=None, *, ties: str = "optimistic",
                      ks: Sequence[int] = KS, chunk_size: int | None = None) -> dict[str, dict[str, float]]:
    """T2V and V2T metrics from a ``(n_videos, n_texts)`` score matrix.

    ``query_to_targets``: ``None`` (identity: text *i* ↔ video *i*), a boolean ``(n_videos, n_texts)``
    relevance matrix, or a 1-D integer array giving each text's video index.
    Returns ``{"t2v": {...}, "v2t": {...}}``, each with ``R@1``, ``R@5``, ``R@10`` (percent), ``MedR``,
    ``MeanR`` and ``n_queries``.
    """
    s = _as_tensor(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_videos, n_texts), got shape {tuple(s.shape)}")
    rel = _relevance_tensor(query_to_targets, *s.shape)
    kw = dict(ties=ties, chunk_size=chunk_size)
    return {
        "t2v": metrics_from_ranks(query_ranks(s, rel, queries="texts", **kw), ks),
        "v2t": metrics_from_ranks(query_ranks(s, rel, queries="videos", **kw), ks),
    }


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def format_table(results: Mapping[str, Mapping[str, Mapping[str, float]]], ks: Sequence[int] = KS) -> str:
    """Markdown table: one row per stream (fused, pose, rgb first, then any others in given order),
    columns T2V R@K…, MedR then V2T R@K…, MedR."""
    if not results:
        raise ValueError("no results to format")
    names = [n for n in STREAM_ORDER if n in results] + [n for n in results if n not in STREAM_ORDER]
    cols = [f"R@{k}" for k in ks] + ["MedR"]
    head = ["Stream"] + [f"{d} {c}" for d in ("T2V", "V2T") for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for n in names:
        row = results[n]
        try:
            cells = [_fmt(row[d][c]) for d in ("t2v", "v2t") for c in cols]
        except KeyError as e:
            raise ValueError(f"results[{n!r}] lacks {e.args[0]!r}; expected retrieval_metrics() output") from None
        lines.append("| " + " | ".join([n] + cells) + " |")
    return "\n".join(lines)
