"""Retrieval metrics for text→video (T2V) and video→text (V2T) from a score matrix (SEDS Sec. 4.1:
R@1, R@5, R@10 and median rank MedR; we also report the mean rank MeanR).

Relevance
---------
``scores`` is ``(n_videos, n_texts)`` (higher = more similar) and ``relevance`` a boolean matrix of
the same shape saying which (video, text) pairs are correct. The default is the identity (text *i*
describes video *i*). When several items are relevant to a query, the query is answered at the rank
of its *best* relevant item. Every query gets exactly one rank, so R@K's denominator is always the
number of queries. (The reference ``compute_metrics`` searches for the positive's score in the
sorted row with ``np.where``; with ties it finds several positions and the extra positions silently
enlarge the denominator. Not here.)

Ties
----
With ``s*`` the best score among a query's relevant items, ``a`` the number of non-relevant items
scoring above ``s*``, ``t`` the number of non-relevant items scoring exactly ``s*`` and ``m ≥ 1``
the number of relevant items scoring exactly ``s*``:

* ``ties="expected"`` (default): the expected rank under uniformly random tie-breaking,
  ``1 + a + t / (m + 1)`` (``1 + a + t/2`` with one relevant item). Ranks are **fractional**.
  R@K is the *probability* under the same random tie-breaking that the rank is ≤ K, computed
  exactly from ``(a, t, m)`` — ``1 − C(t, K−a) / C(t+m, K−a)`` for ``0 < K−a ≤ t`` — and averaged
  over queries; it is *not* ``expected rank ≤ K``. MedR and MeanR are the median and mean of the
  expected ranks (MeanR is therefore the exact expected mean rank). A constant score matrix scores
  at chance: N×N identity relevance gives R@K = K/N and MedR = MeanR = (N+1)/2.
* ``ties="pessimistic"``: every tied non-relevant item is ranked first, rank ``1 + a + t``.
* ``ties="optimistic"``: every tied non-relevant item is ranked after, rank ``1 + a``. It rates a
  constant model as perfect, so it is only available on request and is named wherever it is used.

Repeated sentences: protocols
-----------------------------
:func:`protocol_metrics` takes ``(n_videos, n_texts)`` scores where every text is one *sentence*
and ``video_to_text`` names each video's sentence (a sentence may have several videos):

* ``"sentence_ids"`` — the authors' ``eval_epoch`` (``main_task_retrieval.py`` + ``metrics.py``): texts
  are sentence *ids* (the same string under two ids is two sentences that compete). V2T: one query
  per video, its own sentence id ranked among all ids. T2V: one query per id; each id's videos are
  one gallery item scored by the max over its videos, and the id's own group is ranked among all
  groups. Same queries, same galleries — but with honest ties instead of the reference's
  ``argsort``/``np.where`` tie behaviour.
* ``"distinct"`` — texts are distinct sentences (duplicates removed by the caller). T2V: one query
  per distinct sentence, every video of that sentence relevant, ranked among all videos. V2T: one
  query per video, its sentence counted once, ranked among the distinct sentences.

Median rank
-----------
``median="midpoint"``: the mean of the two middle ranks when the number of queries is even (``np.median``);
``median="lower"``: the lower of the two (``torch.median``). The authors' ``metrics.py`` uses both: their
video-to-text figure (``tensor_text_to_video_metrics``) takes ``torch.median``, their text-to-video one
(``compute_metrics``) ``np.median``. Under ``protocol="sentence_ids"`` V2T MedR is therefore the lower middle
value and T2V MedR the midpoint (4 videos with V2T ranks 1, 1, 2, 3: MedR 1, not 1.5); ``"distinct"`` takes
the midpoint in both directions; ``median=`` names one convention for both directions instead.

Everything is vectorised over queries and processed in chunks of queries so memory stays bounded;
``scores`` may be a numpy array or a torch tensor (on any device). float16/bfloat16 scores are
upcast exactly, so they give the same ranks and ties as the same values in float32.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

KS = (1, 5, 10)
TIES = ("expected", "pessimistic", "optimistic")
PROTOCOLS = ("sentence_ids", "distinct")
# the name "sentence_ids" had before (it is also a model variant's name); accepted wherever a protocol is read
PROTOCOL_ALIASES = {"official": "sentence_ids"}
MEDIANS = ("midpoint", "lower")
PROTOCOL_MEDIANS = {"sentence_ids": {"t2v": "midpoint", "v2t": "lower"}, "distinct": {"t2v": "midpoint", "v2t": "midpoint"}}
MEDIAN_NOTE = {"protocol": "MedR as the protocol defines it (sentence_ids: V2T lower middle value, torch.median, "
                           "T2V mean of the two middle values, np.median — as the authors' metrics.py; "
                           "distinct: mean of the two middle values)",
               "midpoint": "MedR: mean of the two middle ranks (np.median), both directions",
               "lower": "MedR: lower middle rank (torch.median), both directions"}
TIES_NOTE = {
    "expected": "ties: expected rank under random tie-breaking (fractional ranks; R@K = probability rank ≤ K)",
    "pessimistic": "ties: pessimistic (tied non-relevant items ranked first)",
    "optimistic": "ties: OPTIMISTIC (tied non-relevant items ranked after the match; a constant model scores perfect)",
}
PROTOCOL_NOTE = {
    "sentence_ids": "protocol: sentence_ids (authors' eval_epoch: V2T over sentence ids, T2V over id groups by max score; "
                "MedR as their metrics.py: V2T lower middle value, T2V mean of the two middle)",
    "distinct": "protocol: distinct (one T2V query per distinct sentence, all its videos relevant; "
                "V2T over distinct sentences)",
}


def canonical_protocol(name: str) -> str:
    """A protocol's name, its former name (:data:`PROTOCOL_ALIASES`) mapped to the current one."""
    return PROTOCOL_ALIASES.get(name, name)


_CHUNK_ELEMENTS = 1 << 24      # scores processed per chunk (≈ 64 MB of float32)
STREAM_ORDER = ("fused", "pose", "rgb")


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x)))


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")


def relevance_from_labels(video_labels: Sequence, text_labels: Sequence) -> np.ndarray:
    """Boolean ``(n_videos, n_texts)`` relevance: video *i* and text *j* match iff their labels are
    equal (e.g. labels = normalised sentence strings, so repeated sentences match every video that
    carries them)."""
    v = np.asarray(list(video_labels), dtype=object)
    t = np.asarray(list(text_labels), dtype=object)
    _, inv = np.unique(np.concatenate([v, t]).astype(str), return_inverse=True)
    return inv[: len(v), None] == inv[None, len(v):]


def group_labels(labels: Sequence, representative: str = "last") -> tuple[np.ndarray, np.ndarray]:
    """Group items by label, groups in order of first appearance.

    Returns ``(group_of_item, representative_item)``: an int array giving each item's group and, per
    group, the index of its ``"first"`` or ``"last"`` item (the official evaluation encodes each
    sentence id's text from its last video)."""
    if representative not in ("first", "last"):
        raise ValueError(f"representative must be 'first' or 'last', got {representative!r}")
    index: dict = {}
    group = np.empty(len(labels), dtype=np.int64)
    rep: list[int] = []
    for i, lab in enumerate(labels):
        g = index.setdefault(lab, len(index))
        group[i] = g
        if g == len(rep):
            rep.append(i)
        elif representative == "last":
            rep[g] = i
    return group, np.asarray(rep, dtype=np.int64)


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


def _score_tensor(scores) -> torch.Tensor:
    """Validated 2-D scores, upcast exactly to float32 (half types) or float64 (integers)."""
    s = _as_tensor(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_videos, n_texts), got shape {tuple(s.shape)}")
    if not (s.is_floating_point() or s.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"scores must be numeric, got {s.dtype}")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"empty score matrix {tuple(s.shape)}")
    if s.is_floating_point() and bool(torch.isnan(s).any()):
        raise ValueError("scores contain NaN")
    if s.dtype in (torch.float16, torch.bfloat16):
        return s.float()   # exact upcast: ordering and ties are unchanged
    return s if s.is_floating_point() else s.double()


@dataclass(frozen=True)
class TieCounts:
    """Per query: ``above`` non-relevant items scoring above the best relevant score ``s*``, ``tied``
    non-relevant items scoring exactly ``s*`` and ``tied_rel`` (≥ 1) relevant items scoring ``s*``."""
    above: np.ndarray
    tied: np.ndarray
    tied_rel: np.ndarray

    def __len__(self) -> int:
        return int(self.above.size)

    def ranks(self, ties: str = "expected") -> np.ndarray:
        """float64 ranks, one per query (fractional for ``ties="expected"``)."""
        _check_ties(ties)
        a, t, m = (x.astype(np.float64) for x in (self.above, self.tied, self.tied_rel))
        if ties == "optimistic":
            return 1.0 + a
        if ties == "pessimistic":
            return 1.0 + a + t
        return 1.0 + a + t / (m + 1.0)

    def hit_probability(self, k: int, ties: str = "expected") -> np.ndarray:
        """P(rank ≤ k) per query: exact under random tie-breaking for ``"expected"``, 0/1 otherwise."""
        _check_ties(ties)
        if k < 1:
            raise ValueError(f"K must be ≥ 1, got {k}")
        a, t, m = self.above, self.tied, self.tied_rel
        if ties == "optimistic":
            return (a < k).astype(np.float64)
        if ties == "pessimistic":
            return (a + t < k).astype(np.float64)
        # rank = 1 + a + X, X = number of tied non-relevant items drawn before the first of the m tied
        # relevant ones in a random order; P(X ≥ x) = prod_{i<x} (t − i) / (t + m − i) for x ≤ t.
        x = k - a                          # rank ≤ k  ⇔  X < x; x ≤ 0: certain miss (no factor applies)
        tf, mf = t.astype(np.float64), m.astype(np.float64)
        miss = np.ones(a.shape, dtype=np.float64)     # running P(X ≥ x)
        for i in range(k):
            step = (i < x) & (i < t)
            miss = np.where(step, miss * (tf - i) / np.maximum(tf + mf - i, 1.0), miss)
        miss = np.where(x > t, 0.0, miss)  # more places than tied items: certain hit
        return 1.0 - miss


def rank_counts(scores, relevance=None, *, queries: str = "texts",
                chunk_size: int | None = None) -> TieCounts:
    """:class:`TieCounts` for every query of ``scores`` (n_videos, n_texts); ``relevance`` as in
    :func:`retrieval_metrics`; ``queries="texts"`` ranks videos for each text (T2V), ``"videos"``
    ranks texts for each video (V2T)."""
    if queries not in ("texts", "videos"):
        raise ValueError(f"queries must be 'texts' or 'videos', got {queries!r}")
    s = _score_tensor(scores)
    n_videos, n_texts = s.shape
    rel = _relevance_tensor(relevance, n_videos, n_texts)
    if rel is not None:
        rel = rel.to(s.device)
    if queries == "texts":     # queries along rows
        s = s.t()
        rel = None if rel is None else rel.t()
    n_q, n_items = s.shape
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // n_items)
    out = [torch.empty(n_q, dtype=torch.int64, device=s.device) for _ in range(3)]
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
        eq = sc == best
        out[0][start:stop] = ((sc > best) & ~rc).sum(1)
        out[1][start:stop] = (eq & ~rc).sum(1)
        out[2][start:stop] = (eq & rc).sum(1)
    return TieCounts(*(o.cpu().numpy() for o in out))


def median_rank(ranks, median: str = "midpoint") -> float:
    """The median of 1-D ranks: ``"midpoint"`` (np.median) or ``"lower"`` (torch.median; module docstring)."""
    if median not in MEDIANS:
        raise ValueError(f"median must be one of {', '.join(MEDIANS)}, got {median!r}")
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.median(r)) if median == "midpoint" else float(np.sort(r)[(r.size - 1) // 2])


def metrics_from_counts(counts: TieCounts, ties: str = "expected", ks: Sequence[int] = KS,
                        median: str = "midpoint") -> dict[str, float]:
    """R@K (percent; mean hit probability), MedR (``median``: module docstring) and MeanR (of the ranks) and
    ``n_queries``."""
    if len(counts) == 0:
        raise ValueError("no queries")
    r = counts.ranks(ties)
    # rounded to 10 decimals: the products of tie fractions leave ~1e-15 noise (2.0000000000000018)
    out = {f"R@{k}": round(float(100.0 * counts.hit_probability(k, ties).mean()), 10) for k in ks}
    out["MedR"] = median_rank(r, median)
    out["MeanR"] = float(r.mean())
    out["n_queries"] = int(r.size)
    return out


def retrieval_metrics(scores, query_to_targets=None, *, ties: str = "expected",
                      ks: Sequence[int] = KS, chunk_size: int | None = None) -> dict[str, dict[str, float]]:
    """T2V and V2T metrics from a ``(n_videos, n_texts)`` score matrix.

    ``query_to_targets``: ``None`` (identity: text *i* ↔ video *i*), a boolean ``(n_videos, n_texts)``
    relevance matrix, or a 1-D integer array giving each text's video index.
    Returns ``{"t2v": {...}, "v2t": {...}}``, each with ``R@1``, ``R@5``, ``R@10`` (percent), ``MedR``,
    ``MeanR`` and ``n_queries``.
    """
    _check_ties(ties)
    s = _score_tensor(scores)
    rel = _relevance_tensor(query_to_targets, *s.shape)
    return {d: metrics_from_counts(rank_counts(s, rel, queries=q, chunk_size=chunk_size), ties, ks)
            for d, q in (("t2v", "texts"), ("v2t", "videos"))}


def protocol_metrics(scores, video_to_text, *, protocol: str = "sentence_ids", ties: str = "expected",
                     ks: Sequence[int] = KS, chunk_size: int | None = None,
                     median: str = "protocol") -> dict[str, dict[str, float]]:
    """T2V and V2T metrics of one repeated-sentence protocol (module docstring).

    ``scores`` (n_videos, n_texts): one column per sentence (per sentence *id* for ``"sentence_ids"``,
    per distinct sentence for ``"distinct"``); ``video_to_text``: each video's column. Every column
    needs at least one video. ``median``: ``"protocol"`` (the protocol's MedR convention,
    :data:`PROTOCOL_MEDIANS`) or one of :data:`MEDIANS` for both directions.
    """
    protocol = canonical_protocol(protocol)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if median not in ("protocol",) + MEDIANS:
        raise ValueError(f"median must be 'protocol' or one of {', '.join(MEDIANS)}, got {median!r}")
    medians = PROTOCOL_MEDIANS[protocol] if median == "protocol" else {"t2v": median, "v2t": median}
    _check_ties(ties)
    s = _score_tensor(scores)
    n_videos, n_texts = s.shape
    idx = _as_tensor(video_to_text)
    if idx.ndim != 1 or idx.shape[0] != n_videos or idx.dtype in (torch.bool,) or idx.is_floating_point():
        raise ValueError(f"video_to_text must be {n_videos} integer text indices (one per video)")
    idx = idx.long().to(s.device)
    if int(idx.min()) < 0 or int(idx.max()) >= n_texts:
        raise ValueError(f"video_to_text holds text indices outside [0, {n_texts})")
    count = torch.bincount(idx, minlength=n_texts)
    if bool((count == 0).any()):
        j = int(torch.nonzero(count == 0)[0])
        raise ValueError(f"{int((count == 0).sum())} texts have no video (first: column {j})")
    rel = torch.arange(n_texts, device=s.device)[None, :] == idx[:, None]
    kw = dict(chunk_size=chunk_size)
    v2t = rank_counts(s, rel, queries="videos", **kw)
    if protocol == "sentence_ids":   # one gallery item per sentence id: the max over its videos
        groups = torch.full((n_texts, n_texts), float("-inf"), dtype=s.dtype, device=s.device)
        groups.scatter_reduce_(0, idx[:, None].expand(-1, n_texts), s, "amax")
        t2v = rank_counts(groups, None, queries="texts", **kw)
    else:
        t2v = rank_counts(s, rel, queries="texts", **kw)
    return {"t2v": metrics_from_counts(t2v, ties, ks, medians["t2v"]),
            "v2t": metrics_from_counts(v2t, ties, ks, medians["v2t"])}


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
