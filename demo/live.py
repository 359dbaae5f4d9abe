"""Live video queries as the app serves them: one extraction per upload, a time estimate before it starts.

* :class:`RecentQueries` — a small LRU of the last video queries keyed by the upload's SHA-256 and the
  extraction settings, with in-flight de-duplication: a second request for a file that is being processed
  waits for the first instead of extracting it again. Repeating a query, changing top-k or re-opening the
  heatmap therefore never re-extracts; a file that failed (no signer, not a video) fails again at once.
  The cache is shared by all sessions (the same bytes get the same answer), so what it holds names nothing
  of the uploader (the engine's messages carry no file name or path), and what a session is told about a
  cached answer depends only on that session's own queries: a file first searched in another session is
  answered without a word about memory or earlier searches (:class:`LiveQueries` tracks which session
  asked for what).
* :class:`CostModel` — seconds per decoded frame (decode + pose + frame filter + preview) and per RGB
  window, the running mean of the last live extractions *on this machine*; before the first one, a rough
  prior from ``benchmarks/results/app_latency_cpu.md`` (and the UI says so).
* :class:`LiveQueries` — what the UI calls: :meth:`LiveQueries.plan` when a file arrives (gallery video,
  already answered, or a live extraction of N frames / W windows taking ≈ t s), :meth:`LiveQueries.query_video`
  when the user presses *Search*.

"Real signing" is decided honestly from what the app knows: a live extraction (the upload is not one of
the gallery's videos, whose SHA-256 the gallery records) in which the pose estimator found a signer. With a
checkpoint trained on the synthetic benchmark such a query gets :func:`real_signing_note`.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .backend import AppBackend, AppError, VideoQuery
from seds.clips import WINDOW, pad_frames, select_clip_starts
from seds.retrieval.engine import QueryTimeout
from seds.retrieval.inputs import check_upload
from seds.retrieval.gallery import file_sha256

FPS = 24.0                                  # the pipeline decodes every upload at 24 fps (Sec. 3.1)
STAGES = ("decode", "pose", "RGB", "embed", "search")
_STAGE_OF = {"decode": "decode", "pose": "pose", "filter": "pose", "rgb": "RGB", "embed": "embed",
             "search": "search"}   # "done" (pipeline, query) is not a stage
# (seconds per decoded frame, seconds per RGB window, fixed seconds) before any live query was measured, from
# benchmarks/results/app_latency_cpu.md (2 CPU cores): MediaPipe ≈ 0.04 s per frame it runs on (pose_stride 2: every
# 2nd frame) + decoding ≈ 0.003 s per frame; I3D 0.08 s per window compiled, 0.17 s eager; the preview ≈ 0.6 s
PRIOR_POSE_PER_FRAME = 0.04
PRIOR_DECODE_PER_FRAME = 0.003
PRIOR_PER_WINDOW = {"proxy": 0.01, "i3d-cpu": 0.17, "i3d-cpu-compiled": 0.08, "i3d-cuda": 0.03}
PRIOR_FIXED = 0.6
ProgressFn = Callable[[str, float, float, "float | None"], None]   # (stage, fraction, elapsed s, estimate s)


# --------------------------------------------------------------------------------------------------
# recent queries
# --------------------------------------------------------------------------------------------------

class RecentQueries:
    """LRU of ``size`` computed values with in-flight de-duplication (thread-safe).

    :meth:`get_or_run` returns ``(value, hit)``; an :class:`AppError` raised by the computation is
    remembered like a value (the same file fails the same way) and raised again on a hit."""

    def __init__(self, size: int = 8):
        if size < 1:
            raise ValueError(f"RecentQueries size must be ≥ 1, got {size}")
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._busy: dict = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._items

    def get_or_run(self, key, fn: Callable[[], object]):
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    value = self._items[key]
                    break
                ev = self._busy.get(key)
                if ev is None:                      # nobody computes it: we do
                    ev = self._busy[key] = threading.Event()
                    value = None
                    break
            ev.wait()                               # someone else computes it: wait, then look again
        if value is not None:
            if isinstance(value, AppError):
                raise type(value)(str(value))      # a fresh exception: no traceback shared between requests
            return value, True
        try:
            try:
                value = fn()
            except AppError as e:
                if not isinstance(e, QueryTimeout):     # "server busy" is not the file's fault: retry next time
                    self._put(key, e)
                raise
            self._put(key, value)
            return value, False
        finally:
            with self._lock:
                self._busy.pop(key, None)
            ev.set()

    def _put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# --------------------------------------------------------------------------------------------------
# time estimates
# --------------------------------------------------------------------------------------------------

@dataclass
class CostModel:
    """Seconds per decoded frame, per RGB window and fixed per query, as the mean of the last ``keep``
    live extractions (``measured`` of them so far) or, before the first, a prior."""
    per_frame: float
    per_window: float
    fixed: float
    measured: int = 0
    keep: int = 5

    def __post_init__(self):
        self._runs: deque = deque(maxlen=self.keep)
        self._lock = threading.Lock()

    @classmethod
    def prior(cls, be: AppBackend) -> "CostModel":
        if be.rgb_features.startswith("synthetic-proxy"):
            w = PRIOR_PER_WINDOW["proxy"]
        elif be.device.type == "cuda":
            w = PRIOR_PER_WINDOW["i3d-cuda"]
        else:
            w = PRIOR_PER_WINDOW["i3d-cpu-compiled" if be.cfg.i3d_compile else "i3d-cpu"]
        per_frame = PRIOR_DECODE_PER_FRAME + PRIOR_POSE_PER_FRAME / max(1, be.cfg.pose_stride)
        return cls(per_frame, w, PRIOR_FIXED)

    def estimate(self, frames: int, windows: int) -> float:
        return self.fixed + self.per_frame * frames + self.per_window * windows

    def update(self, q: VideoQuery) -> None:
        """Add a live extraction's measured stage times."""
        t = q.timings
        frames = int(q.features.meta.get("n_frames") or len(q.features.keypoints))
        windows = int(q.features.num_clips)
        per_frames = sum(t.get(k, 0.0) for k in ("decode", "pose", "filter", "preview"))
        fixed = sum(t.get(k, 0.0) for k in ("hash", "embed", "search"))     # not one-time model loading
        with self._lock:
            self._runs.append((frames, windows, per_frames, t.get("rgb", 0.0), fixed))
            n_f = sum(r[0] for r in self._runs)
            n_w = sum(r[1] for r in self._runs)
            self.per_frame = sum(r[2] for r in self._runs) / max(n_f, 1)
            self.per_window = sum(r[3] for r in self._runs) / max(n_w, 1)
            self.fixed = sum(r[4] for r in self._runs) / len(self._runs)
            self.measured += 1

    @property
    def basis(self) -> str:
        if self.measured == 0:
            return "rough: no live query measured on this machine yet"
        n = min(self.measured, self.keep)
        return f"from the last {n} live {'query' if n == 1 else 'queries'} on this machine"


@dataclass
class LiveVideoQuery(VideoQuery):
    """A :class:`VideoQuery` as the app answers it; ``recent``: answered again from memory."""
    recent: bool = False

    @classmethod
    def of(cls, q: VideoQuery, **changes) -> "LiveVideoQuery":
        return cls(**{**{f.name: getattr(q, f.name) for f in dataclasses.fields(VideoQuery)}, **changes})


@dataclass
class Plan:
    """What pressing *Search* will do with a file."""
    kind: str                         # "gallery" (feature cache), "recent" (answered before) or "live"
    sha256: str
    duration_s: float | None = None   # the part that will be used (uploads are trimmed to max_seconds)
    frames: int | None = None         # decoded at 24 fps
    windows: int | None = None        # RGB windows
    estimate_s: float | None = None
    basis: str = ""
    trimmed: bool = False
    first: bool = False               # the pose model (and RGB extractor) still has to be loaded


# --------------------------------------------------------------------------------------------------
# the UI's entry point
# --------------------------------------------------------------------------------------------------

class LiveQueries:
    """Video → text queries over an :class:`AppBackend` with the recent-queries cache and estimates."""

    SESSIONS_KEPT = 4096                              # (session, query) pairs remembered for the wording

    def __init__(self, be: AppBackend, size: int = 8):
        self.be = be
        self.recent = RecentQueries(size)
        self._asked: OrderedDict = OrderedDict()         # (session, cache key) → None: what each session searched
        self.costs = CostModel.prior(be)
        self._sha: OrderedDict = OrderedDict()          # (path, size, mtime) → SHA-256, for plan → query
        self._probed: OrderedDict = OrderedDict()       # SHA-256 → None: headers checked by plan (query skips it)
        self._sha_lock = threading.Lock()
        self._model_id = json.dumps(be.fingerprint, sort_keys=True, default=str)   # a dict: hashable as text

    def sha256(self, path) -> str:
        st = Path(path).stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._sha_lock:
            if key in self._sha:
                return self._sha[key]
        sha = file_sha256(path)
        with self._sha_lock:
            self._sha[key] = sha
            while len(self._sha) > 64:
                self._sha.popitem(last=False)
        return sha

    def key(self, sha: str) -> tuple:
        """The cache key: the file's bytes and every setting that changes its features or results."""
        be = self.be
        return (sha, self._model_id, be.cfg.pose_backend, be.cfg.pose_stride, be.rgb_features, be.max_clips,
                be.cfg.max_seconds,
                be.cfg.preview, FPS)

    def _mark(self, session, key) -> bool:
        """Remember that ``session`` searched ``key``; returns whether it had before."""
        with self._sha_lock:
            before = (session, key) in self._asked
            self._asked[(session, key)] = None
            self._asked.move_to_end((session, key))
            while len(self._asked) > self.SESSIONS_KEPT:
                self._asked.popitem(last=False)
        return before

    def asked_before(self, session, key) -> bool:
        """Whether ``session`` itself searched this file (+ settings) before (``session`` None: one user)."""
        with self._sha_lock:
            return (session, key) in self._asked

    def windows_for(self, frames: int) -> int:
        return len(select_clip_starts(frames + pad_frames(frames, WINDOW), self.be.max_clips, WINDOW))

    def plan(self, path, session=None) -> Plan:
        """What a search of ``path`` will cost (cheap: hashes the file and reads the container header; frames
        over the size limit are refused here, from the header). ``session``: who asks (a file only counts as
        searched before when this session searched it)."""
        path = check_upload(path)
        sha = self.sha256(path)
        if self.key(sha) in self.recent and self.asked_before(session, self.key(sha)):
            return Plan("recent", sha)
        if self.be.cache is not None and sha in self.be.cache:
            return Plan("gallery", sha)
        info = self.be.check_video(path)
        with self._sha_lock:
            self._probed[sha] = None
            while len(self._probed) > 64:
                self._probed.popitem(last=False)
        if info.num_frames <= 0 or info.fps <= 0:          # e.g. a webcam recording: no duration in the header
            return Plan("live", sha, basis=self.costs.basis, first=not self.be.extractor_ready)
        dur = info.duration
        used = min(dur, self.be.cfg.max_seconds)
        frames = max(1, int(round(used * FPS)))
        windows = self.windows_for(frames)
        return Plan("live", sha, used, frames, windows, self.costs.estimate(frames, windows), self.costs.basis,
                    trimmed=dur > self.be.cfg.max_seconds, first=not self.be.extractor_ready)

    def query_video(self, path, k: int | None = None, progress: ProgressFn | None = None,
                    estimate_s: float | None = None, session=None) -> LiveVideoQuery:
        """Top-k sentences for a video; an extraction only the first time a file (+ settings) is seen.
        ``session``: who asks (see :meth:`plan`)."""
        path = check_upload(path)
        report = progress or (lambda stage, frac, elapsed, est: None)
        t0 = time.perf_counter()

        def stage(name, frac):
            if name in _STAGE_OF:
                report(_STAGE_OF.get(name, name), frac, time.perf_counter() - t0, estimate_s)

        sha = self.sha256(path)
        key = self.key(sha)
        mine = self._mark(session, key)       # marked before running: a double click's second request is "mine"
        with self._sha_lock:
            probed = sha in self._probed
        q, hit = self.recent.get_or_run(key, lambda: self.be.query_video(path, progress=stage, k=k, sha256=sha,
                                                                         probed=probed))
        if not hit:
            if q.source == "extracted":
                self.costs.update(q)
            return LiveVideoQuery.of(q)
        # answered before: search again (top-k may differ) with the stored clip features
        stage("search", 0.5)
        t = time.perf_counter()
        hits = self.be.search_sentences(q.clips, q.clip_mask, k)
        t_search = time.perf_counter() - t
        preview = q.preview if q.preview and Path(q.preview).is_file() else None
        notes = list(q.notes)
        if mine:        # only this session's own earlier search is mentioned, never another session's
            notes.insert(0, "Answered from the recent-queries cache: you searched this file before (same "
                            "settings), so nothing was decoded or extracted again.")
        total = time.perf_counter() - t0
        return LiveVideoQuery.of(q, hits=hits, preview=preview, notes=notes, recent=mine,
                                 timings={"search": t_search, "total": total})


# --------------------------------------------------------------------------------------------------
# wording
# --------------------------------------------------------------------------------------------------

def plan_text(plan: Plan) -> str:
    """One or two lines for the status area after an upload, before anything runs."""
    if plan.kind == "recent":
        return "You searched this file before: **Search sentences** answers from memory (< 1 s)."
    if plan.kind == "gallery":
        return ("This is one of the gallery's videos: its features are cached, **Search sentences** answers in "
                "about a second.")
    if plan.estimate_s is None:
        return ("New video (its length is not in the file header, e.g. a webcam recording): **Search sentences** "
                "runs the live pipeline — decode → pose → RGB → embed → search.")
    trim = " (trimmed to its first part)" if plan.trimmed else ""
    load = ", plus a few seconds to load the pose model for this first live query" if plan.first else ""
    return (f"New video: {plan.duration_s:.1f} s{trim} → {plan.frames} frames for pose, {plan.windows} RGB windows. "
            f"**Search sentences** runs the live pipeline, **≈ {plan.estimate_s:.0f} s** on this machine "
            f"({plan.basis}{load}).")


def progress_text(stage: str, elapsed: float, estimate_s: float | None) -> str:
    """``decode → [pose] → RGB → embed → search · 3.1 s of ≈ 9 s`` — the one progress line of a query."""
    chain = " → ".join(f"[{s}]" if s == stage else s for s in STAGES)
    return chain + f" · {elapsed:.1f} s" + (f" of ≈ {estimate_s:.0f} s" if estimate_s is not None else "")


def real_signing_note(be: AppBackend, q: VideoQuery) -> str:
    """One line beside the results when a real video meets a synthetic checkpoint (else "")."""
    if not be.is_synthetic or q.source != "extracted":
        return ""
    return ("⚠️ **Real video, synthetic model** — not a gallery video and a signer was found, so it counts as real "
            "signing; this checkpoint was trained only on synthetic cartoon signing, so these sentences mean nothing. "
            "For real results load a converted checkpoint of the authors (`python -m seds.convert official …`) or "
            "your own (`--checkpoint DIR --gallery DIR`).")
