"""An index of long recordings: sentence → (recording, start_s, end_s, score) over hours of video, and a short video
clip → the same (``python -m seds.index build --recordings`` / ``search --recordings``).

**What is stored** (one folder; a sharded build writes one such folder per shard under ``parts/``):

* ``index.json`` — format, checkpoint fingerprint, feature size, streams, chunk geometry, and per recording its
  id, first window (offset into the concatenated windows), window count, fps, duration;
* ``windows.<stream>.f16`` — the coarse pass of every recording (:func:`seds.retrieval.localise.encode_recording`):
  one L2-normalised float16 feature per window, raw little-endian (N, D), **memory-mapped** when searched;
* ``times.f64`` (N, 2) window start / end seconds, ``signing.u8`` (N,) a signer is seen;
* ``chunks.<stream>.f32`` (C, D) — one pooled, L2-normalised vector per chunk of ``chunk`` windows (hop
  ``chunk // 2``), loaded into memory, and ``chunks.i64`` (C, 2) the chunk's global [first, stop) windows.

**Search** (:meth:`RecordingArchive.search`), per stream: (1) the query's pooled vector against every chunk
vector of every shard at once (one matrix product; ties broken by recording id and position, so the order does
not depend on how recordings are split into shards); (2) the best ``candidates`` chunks, each widened by the
longest span on both sides, merged per recording; (3) in each region the span grid of
:func:`seds.retrieval.localise.span_score_grid` (every span of ``min_span_s`` … ``max_span_s`` scored by the
checkpoint's fine-grained score on the stored window features), signing filter and non-maximum suppression;
(4) the top-k of all regions; (5) optionally (:func:`rescore_hits`, when the recordings' features are at hand)
the exact re-scoring of the best few spans, each encoded alone. Memory: chunk vectors in RAM (3 streams × 4 B × D per ``chunk / 2`` windows);
window features on disk, read for the candidate regions only. :meth:`RecordingArchive.timeline` gives one
recording's whole timeline for :class:`seds.retrieval.localise.Localiser`.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from seds.data.features import VideoFeatures
from seds.retrieval.localise import (STREAMS, LocaliseConfig, Localiser, RecordingTimeline, chunk_starts, check_model,
                                     encode_recording, similarity_matrix, span_candidates, span_lengths,
                                     span_score_grid)
from seds.similarity import pooled

FORMAT = "seds-recordings/1"
INDEX = "index.json"
PARTS = "parts"


class RecordingIndexError(ValueError):
    """A recordings index that is missing, incomplete or made by another checkpoint (worded for a person)."""


@dataclass(frozen=True)
class RecordingHit:
    rank: int
    recording: str
    start_s: float
    end_s: float
    score: float                 # the exact score when ``exact``, else the timeline's (coarse) score
    stream: str
    first: int = -1              # the span's windows [first, stop) in its recording
    stop: int = -1
    coarse: float = float("nan")  # the timeline's score
    exact: bool = False


def _raw(path: Path, dtype, shape: tuple[int, ...], mmap: bool):
    if shape[0] == 0:
        return np.zeros(shape, dtype)
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", shape=shape)
    return np.fromfile(path, dtype=dtype).reshape(shape)


class RecordingIndexWriter:
    """Writes one index folder: :meth:`add` a recording's :class:`RecordingTimeline` at a time (appended to the raw
    files, so memory holds one recording), :meth:`close` writes ``index.json`` last and moves the folder into place
    (a half-written index is never seen under its name)."""

    def __init__(self, out: str | os.PathLike, fingerprint: dict | str, dim: int, chunk: int,
                 streams: tuple[str, ...] = STREAMS, info: dict | None = None):
        self.out = Path(out)
        if (self.out / INDEX).exists():
            raise RecordingIndexError(f"{self.out} already holds a recordings index; choose a new --out")
        self.tmp = self.out.with_name(f".{self.out.name}.partial")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.fingerprint, self.dim, self.chunk, self.streams = fingerprint, int(dim), int(chunk), tuple(streams)
        self.info = info or {}
        self.recs: list[dict] = []
        self.n = self.c = 0
        self.files = {name: open(self.tmp / name, "wb") for name in
                      [f"windows.{s}.f16" for s in streams] + [f"chunks.{s}.f32" for s in streams]
                      + ["times.f64", "signing.u8", "chunks.i64"]}

    def add(self, tl: RecordingTimeline, meta: dict | None = None) -> None:
        if any(r["id"] == tl.id for r in self.recs):
            raise RecordingIndexError(f"recording {tl.id!r} is given twice")
        n = tl.num_windows
        for s in self.streams:
            w = tl.streams[s]
            if w.shape != (n, self.dim):
                raise RecordingIndexError(f"{tl.id}: stream {s} has shape {tuple(w.shape)}, expected {(n, self.dim)}")
            self.files[f"windows.{s}.f16"].write(w.to(torch.float16).numpy().astype("<f2").tobytes())
        self.files["times.f64"].write(np.stack([tl.starts_s, tl.ends_s], 1).astype("<f8").tobytes())
        self.files["signing.u8"].write(tl.signing.astype(np.uint8).tobytes())
        starts = chunk_starts(n, self.chunk)
        size = min(self.chunk, n)
        for s in self.streams:      # pooled chunk vectors (seds.similarity.pooled) from one prefix sum
            x = F.normalize(tl.streams[s].double(), dim=-1)
            cs = torch.cat([torch.zeros(1, self.dim, dtype=torch.float64), x.cumsum(0)])
            st = torch.from_numpy(starts)
            vec = F.normalize(cs[st + size] - cs[st], dim=-1).float()           # (C, D)
            self.files[f"chunks.{s}.f32"].write(vec.numpy().astype("<f4").tobytes())
        self.files["chunks.i64"].write(np.stack([starts + self.n, starts + size + self.n], 1).astype("<i8").tobytes())
        self.recs.append({"id": tl.id, "offset": self.n, "windows": n, "fps": tl.fps,
                          "duration_s": tl.duration_s, **(meta or {})})
        self.n += n
        self.c += len(starts)

    def close(self) -> Path:
        for f in self.files.values():
            f.close()
        doc = {"format": FORMAT, "checkpoint": self.fingerprint, "dim": self.dim, "chunk": self.chunk,
               "streams": list(self.streams), "windows": self.n, "chunks": self.c, "recordings": self.recs,
               "info": self.info}
        (self.tmp / INDEX).write_text(json.dumps(doc, indent=1))
        if self.out.exists():
            if any(self.out.iterdir()):
                raise RecordingIndexError(f"{self.out} exists and is not empty")
            self.out.rmdir()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class RecordingIndex:
    """One index folder, read back (chunk vectors in memory, window features memory-mapped)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        p = self.folder / INDEX
        if not p.is_file():
            raise RecordingIndexError(f"{self.folder}: no {INDEX} — not a recordings index")
        doc = json.loads(p.read_text())
        if doc.get("format") != FORMAT:
            raise RecordingIndexError(f"{p}: format {doc.get('format')!r}, expected {FORMAT!r}")
        self.doc = doc
        self.fingerprint, self.dim, self.chunk = doc["checkpoint"], int(doc["dim"]), int(doc["chunk"])
        self.streams = tuple(doc["streams"])
        self.recordings = doc["recordings"]
        n, c = int(doc["windows"]), int(doc["chunks"])
        f = self.folder
        try:
            self._load(f, n, c)
        except (OSError, ValueError) as e:
            raise RecordingIndexError(f"{f}: damaged recordings index ({e}); rebuild it") from None
        # window → recording (for regions) and recording bounds
        self.rec_offsets = np.array([r["offset"] for r in self.recordings] + [n], dtype=np.int64)

    def _load(self, f: Path, n: int, c: int) -> None:
        self.windows = {s: _raw(f / f"windows.{s}.f16", "<f2", (n, self.dim), True) for s in self.streams}
        self.times = _raw(f / "times.f64", "<f8", (n, 2), False)
        self.signing = _raw(f / "signing.u8", np.uint8, (n,), False).astype(bool)
        self.chunks = {s: torch.from_numpy(_raw(f / f"chunks.{s}.f32", "<f4", (c, self.dim), False).copy())
                       for s in self.streams}
        self.chunk_windows = _raw(f / "chunks.i64", "<i8", (c, 2), False)

    def memory_bytes(self) -> dict[str, int]:
        """Resident (chunk vectors, times, signing) and memory-mapped (window features) bytes."""
        res = sum(v.numel() * 4 for v in self.chunks.values()) + self.times.nbytes + self.signing.nbytes \
            + self.chunk_windows.nbytes
        return {"resident": int(res), "mapped": int(sum(w.nbytes for w in self.windows.values()))}


class RecordingArchive:
    """All shards of a recordings index (a folder with ``index.json``, or with ``parts/*/index.json``), searched as
    one."""

    def __init__(self, folder: str | os.PathLike, fingerprint: dict | str | None = None):
        folder = Path(folder)
        if (folder / INDEX).is_file():
            parts = [folder]
        else:
            parts = sorted(p.parent for p in (folder / PARTS).glob(f"*/{INDEX}")) if (folder / PARTS).is_dir() else []
        if not parts:
            raise RecordingIndexError(f"{folder}: no recordings index (build one with python -m seds.index build "
                                      "--recordings ...)")
        names = [p.name for p in parts if p != folder]
        counts = {n.split("-of-")[-1] for n in names}
        if names and (len(counts) != 1 or len(names) != int(counts.pop())):
            raise RecordingIndexError(f"{folder}: incomplete sharded index (parts {names}); build every shard")
        self.parts = [RecordingIndex(p) for p in parts]
        fps = {_weights_id(p.fingerprint) for p in self.parts}
        if len(fps) != 1 or (fingerprint is not None and _weights_id(fingerprint) not in fps):
            raise RecordingIndexError(f"{folder} was built with another checkpoint: rebuild it with this one")
        self.streams = self.parts[0].streams
        self.where: dict[str, tuple[int, int]] = {}
        for pi, p in enumerate(self.parts):
            for ri, r in enumerate(p.recordings):
                if r["id"] in self.where:
                    raise RecordingIndexError(f"recording {r['id']!r} is in two shards")
                self.where[r["id"]] = (pi, ri)
        # global chunk table over all parts, in a shard-independent order: (recording id, first window)
        rows = []
        for pi, p in enumerate(self.parts):
            rec_of = np.searchsorted(p.rec_offsets, p.chunk_windows[:, 0], side="right") - 1
            for ci in range(len(p.chunk_windows)):
                rows.append((p.recordings[rec_of[ci]]["id"], int(p.chunk_windows[ci, 0] - p.rec_offsets[rec_of[ci]]),
                             pi, ci, int(rec_of[ci])))
        rows.sort()
        self.chunk_part = np.array([r[2] for r in rows], dtype=np.int64)
        self.chunk_index = np.array([r[3] for r in rows], dtype=np.int64)
        self.chunk_rec = np.array([r[4] for r in rows], dtype=np.int64)
        self.chunks = {s: torch.cat([p.chunks[s] for p in self.parts])[self._perm()] for s in self.streams}

    def _perm(self) -> torch.Tensor:
        base = np.cumsum([0] + [len(p.chunk_windows) for p in self.parts])[:-1]
        return torch.from_numpy(base[self.chunk_part] + self.chunk_index)

    @property
    def recording_ids(self) -> list[str]:
        return sorted(self.where)

    @property
    def hours(self) -> float:
        return sum(r["duration_s"] for p in self.parts for r in p.recordings) / 3600.0

    def memory_bytes(self) -> dict[str, int]:
        out = {"resident": 0, "mapped": 0}
        for p in self.parts:
            for k, v in p.memory_bytes().items():
                out[k] += v
        return out

    def timeline(self, recording: str) -> RecordingTimeline:
        """One recording's whole coarse pass (for :class:`seds.retrieval.localise.Localiser`)."""
        if recording not in self.where:
            raise RecordingIndexError(f"no recording {recording!r} in the index")
        pi, ri = self.where[recording]
        p, r = self.parts[pi], self.parts[pi].recordings[self.where[recording][1]]
        a, b = r["offset"], r["offset"] + r["windows"]
        return RecordingTimeline(recording, p.times[a:b, 0].copy(), p.times[a:b, 1].copy(), p.signing[a:b].copy(),
                                 {s: torch.from_numpy(np.array(p.windows[s][a:b], dtype=np.float16))
                                  for s in p.streams}, float(r["fps"]))

    def search(self, query: dict[str, torch.Tensor], query_mask: torch.Tensor, tau: float, k: int = 10,
               cfg: LocaliseConfig = LocaliseConfig(), candidates: int = 64,
               streams: tuple[str, ...] | None = None) -> dict[str, list[RecordingHit]]:
        """Top-k spans over every recording per stream; ``query``: stream → (L, D) word (or query-clip) features."""
        out = {}
        for s in streams or self.streams:
            if s not in self.streams:
                raise RecordingIndexError(f"stream {s!r} is not in the index (has {self.streams})")
            q = query[s].float()
            qp = pooled(q[None], query_mask[None].bool())[0]
            sc = (self.chunks[s] @ qp).numpy()
            n = min(candidates, len(sc))
            top = np.argsort(-sc, kind="stable")[:n]          # chunk table is in (id, position) order: stable ties
            out[s] = self._spans(s, q, query_mask, top, tau, k, cfg)
        return out

    def _spans(self, stream, q, qmask, top, tau, k, cfg) -> list[RecordingHit]:
        """The candidate chunks → regions (± the longest span, merged per recording, ordered by recording id) →
        one batched span grid over all regions → signing filter, suppression and top-k on one global axis."""
        by_rec: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for ci in top:
            pi, idx, ri = int(self.chunk_part[ci]), int(self.chunk_index[ci]), int(self.chunk_rec[ci])
            a, b = self.parts[pi].chunk_windows[idx]
            by_rec.setdefault((pi, ri), []).append((int(a), int(b)))
        regions = []                                      # (recording id, part, first window, stop window, offset)
        lengths = None
        for (pi, ri), spans in by_rec.items():
            p = self.parts[pi]
            lo_r, hi_r = int(p.rec_offsets[ri]), int(p.rec_offsets[ri + 1])
            if lengths is None:         # the window grid is the same for every recording of an index
                step = float(np.median(np.diff(p.times[lo_r:min(hi_r, lo_r + 64), 0]))) if hi_r - lo_r > 1 else 1.0
                lengths = span_lengths(step, float(p.times[lo_r, 1] - p.times[lo_r, 0]), 1 << 40,
                                       cfg.min_span_s, cfg.max_span_s)
            w = int(lengths.max())
            for a, b in _merge([(max(lo_r, a - w), min(hi_r, b + w)) for a, b in spans]):
                regions.append((p.recordings[ri]["id"], pi, a, b, lo_r))
        if not regions:
            return []
        regions.sort()
        tmax = max(b - a for _, _, a, b, _ in regions)
        e = torch.zeros(len(regions), tmax, q.shape[0])
        sig = np.zeros((len(regions), tmax), dtype=bool)
        for i, (_, pi, a, b, _) in enumerate(regions):
            p = self.parts[pi]
            e[i, :b - a] = similarity_matrix(np.asarray(p.windows[stream][a:b]), q)
            sig[i, :b - a] = p.signing[a:b]
        valid = torch.tensor([b - a for _, _, a, b, _ in regions])
        ls = lengths[lengths <= tmax] if (lengths <= tmax).any() else np.array([tmax])
        grid = span_score_grid(e, qmask, ls, tau, valid=valid)
        # a global axis: recordings in id order, each at its own window offset
        rank = {rid: j for j, rid in enumerate(sorted({r[0] for r in regions}))}
        keys = np.array([rank[rid] * (1 << 32) + (a - lo) for rid, _, a, _, lo in regions], dtype=np.int64)
        ri, first, stop, score = span_candidates(grid, ls, sig, cfg, k, keys=keys)
        hits = []
        for j, (i, f, t, v) in enumerate(zip(ri, first, stop, score)):
            rid, pi, a, _, lo = regions[i]
            times = self.parts[pi].times
            hits.append(RecordingHit(j + 1, rid, float(times[a + f, 0]), float(times[a + t - 1, 1]), float(v), stream,
                                     int(a - lo + f), int(a - lo + t), float(v)))
        return hits


def rescore_hits(localiser: Localiser, hits: dict[str, list[RecordingHit]], query: dict[str, torch.Tensor],
                 query_mask: torch.Tensor, features: Callable[[str], VideoFeatures | None],
                 n: int = 4) -> dict[str, list[RecordingHit]]:
    """Exact re-scoring of an index-wide search (stage 3 of :mod:`seds.retrieval.localise`): the best ``n`` hits
    of each stream, each span encoded alone from its recording's features (``features(recording id)``, None when
    not at hand: those hits keep their timeline score), scored by the checkpoint's fine-grained score. Per stream
    the re-scored hits come first by exact score, then the rest in their order; ranks renumbered. One recording's
    features in memory at a time."""
    want: dict[str, set[tuple[int, int]]] = {}
    for s, hs in hits.items():
        for h in hs[:n]:
            want.setdefault(h.recording, set()).add((h.first, h.stop))
    exact: dict[tuple[str, str, int, int], float] = {}
    for rid in sorted(want):
        feats = features(rid) if n > 0 else None
        if feats is None:
            continue
        spans = sorted(want[rid])
        sc = localiser.exact_scores(feats, spans, query, query_mask)
        for s in sc:
            for i, (a, b) in enumerate(spans):
                exact[(s, rid, a, b)] = float(sc[s][i])
        del feats
    out = {}
    for s, hs in hits.items():
        new = [replace(h, score=exact[(s, h.recording, h.first, h.stop)], exact=True)
               if i < n and (s, h.recording, h.first, h.stop) in exact else h for i, h in enumerate(hs)]
        new.sort(key=lambda h: (not h.exact, -h.score if h.exact else 0.0))     # stable: the rest keep their order
        out[s] = [replace(h, rank=r + 1) for r, h in enumerate(new)]
    return out


def build_recording_index(out: str | os.PathLike, model, fingerprint: dict | str, recordings, chunk: int = 0,
                          info: dict | None = None, progress=None) -> Path:
    """Encode recordings (an iterable of :class:`VideoFeatures`, one in memory at a time) into an index folder."""
    check_model(model)
    chunk = min(chunk or model.cfg.max_clips, model.cfg.max_clips, 64)
    streams = tuple(s for s in STREAMS)
    w = RecordingIndexWriter(out, fingerprint, model.cfg.dim, chunk, streams, info)
    try:
        for i, feats in enumerate(recordings):
            if not isinstance(feats, VideoFeatures):
                raise RecordingIndexError(f"item {i} is not VideoFeatures")
            tl = encode_recording(model, feats, chunk, streams=streams)
            w.add(tl, {"duration_s": feats.num_frames / float(feats.fps), "source_kind": str(feats.meta.get("kind", "")),
                       "text": str(feats.meta.get("text", ""))[:200]})
            if progress:
                progress(tl.id, tl.duration_s)
    except BaseException:
        w.abort()
        raise
    return w.close()


def _weights_id(fingerprint) -> str:
    """The weights' identity in a fingerprint (:func:`seds.retrieval.gallery.checkpoint_fingerprint`'s dict, or
    any string)."""
    return str(fingerprint.get("sha256")) if isinstance(fingerprint, dict) else str(fingerprint)


def _merge(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(regions):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]
