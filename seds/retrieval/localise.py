"""Where is a sentence signed inside a long recording? Temporal localisation with the checkpoint's own
fine-grained clip × word score (SEDS Sec. 3.3), per stream (pose, RGB, fused), usable without the app.

A *recording* is a :class:`~seds.data.features.VideoFeatures` whose ``clip_starts`` are 16-frame windows at
a fixed stride along the whole timeline (``meta["kind"] == "recording"``). Three stages, none of which
encodes every possible span:

1. **Coarse pass** (:func:`encode_recording`, once per recording, what an index stores): the timeline is cut
   into overlapping chunks of ``chunk`` ≤ ``model.max_clips`` windows (hop = half a chunk), every chunk is
   encoded once (:func:`seds.encode.encode_videos`: the interaction transformers attend within a chunk) and
   each window keeps the features of the chunk it is most central in → one L2-normalised feature per window
   and stream (a :class:`RecordingTimeline`). Cost: ≈ 2 × windows / chunk encoder calls of ``chunk`` windows.
2. **Boundary refinement** (:func:`span_score_grid`): with ``E = timeline · wordsᵀ`` (T × L) the
   fine-grained score of *every* span [a, a + ℓ) of the window grid, for every length from ``min_span_s`` to
   ``max_span_s``, is a ratio of prefix sums — the video→text half is the mean over the span's clips of
   ``Σ_j E_ij softmax_j(E_i/τ)_j`` (independent of the span: one cumulative sum), the text→video half per word
   is ``Σ_i E_ij e^{E_ij/τ} / Σ_i e^{E_ij/τ}`` over the span's clips (running sums that grow by one clip per
   length, vectorised over starts: positive additions only, no cancellation). This is the exact score of the timeline features restricted to the span (tested against a loop over every span).
   Spans must lie mostly (``min_signing``) on windows where a signer is seen, overlapping spans are
   suppressed (non-maximum suppression at ``nms_iou``).
3. **Exact re-scoring** (``rescore`` best per stream, when the recording's features are at hand): each
   candidate span is encoded *alone*, sampled as a trained clip is (:func:`span_features`: ≤ ``model.max_clips``
   windows at equal intervals over every frame of the span) — and scored with the checkpoint's fine-grained score (:func:`seds.similarity.fine_grained_scores`).

The result is data (:class:`Localisation`, :class:`Span`); its ``status`` and ``notes`` are codes
(:data:`NO_SIGNING`, :data:`NOTE_TRUNCATED`, ...), worded by the caller. A video query (a short clip found in
a recording) goes through the same machinery with the query's clips in the place of the words
(:meth:`Localiser.localise_video`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from seds.clips import WINDOW, select_clip_starts
from seds.data.features import VideoFeatures
from seds.encode import EncodeError, encode_sentences, encode_videos
from seds.keypoints import N_BODY, N_HAND
from seds.similarity import fine_grained_scores
from seds.variants import variant_of

STREAMS = ("pose", "rgb", "fused")
OK = "ok"
NO_SIGNING = "no_signing"                 # no window of the recording shows a signer: no spans
NOTE_TRUNCATED = "sentence_truncated"     # the text encoder read only the first words
NOTE_AT_MAX_LENGTH = "best_span_at_max_length"   # the best span is as long as allowed: the sentence may be longer
NOTE_SHORT_RECORDING = "recording_shorter_than_min_span"
NOTE_COARSE_ONLY = "coarse_scores_only"   # no features to re-score with: scores are the timeline's
SIGNING_PRESENCE = 0.5                    # a window shows signing when this fraction of its frames shows a signer


class LocaliseError(ValueError):
    """Features or settings that cannot be localised in (worded for a person)."""


@dataclass(frozen=True)
class LocaliseConfig:
    min_span_s: float = 1.0
    max_span_s: float = 15.0
    top_k: int = 5
    nms_iou: float = 0.3
    rescore: int = 4            # best candidates per stream re-scored by encoding the span alone (0: none)
    pool: int = 200             # best grid spans per stream that enter non-maximum suppression
    min_signing: float = 0.5    # fraction of a span's windows that must show a signer
    chunk: int = 0              # windows per coarse chunk (0: model.max_clips, at most 64)
    streams: tuple[str, ...] = STREAMS

    def __post_init__(self):
        if not 0 < self.min_span_s <= self.max_span_s:
            raise LocaliseError(f"need 0 < min_span_s ≤ max_span_s, got {self.min_span_s}, {self.max_span_s}")
        if self.top_k < 1 or self.rescore < 0 or self.pool < 1:
            raise LocaliseError("top_k and pool must be ≥ 1, rescore ≥ 0")
        if not 0 <= self.nms_iou <= 1 or not 0 <= self.min_signing <= 1:
            raise LocaliseError("nms_iou and min_signing must be in [0, 1]")
        if self.chunk < 0 or self.chunk > 64:
            raise LocaliseError("chunk must be in [0, 64] windows")
        bad = [s for s in self.streams if s not in STREAMS]
        if bad or not self.streams:
            raise LocaliseError(f"streams must be among {STREAMS}, got {self.streams}")


@dataclass(frozen=True)
class Span:
    start_s: float
    end_s: float
    score: float                # exact score when ``exact``, else the timeline (coarse) score
    coarse_score: float         # the timeline's score of the same span
    first: int                  # first window (index into the recording's windows)
    stop: int                   # one past the last window
    exact: bool


@dataclass
class Localisation:
    recording: str
    query: str
    status: str                                  # OK or NO_SIGNING
    spans: dict[str, list[Span]]                 # stream → top-k spans, best first
    curve: dict[str, np.ndarray]                 # stream → (T,) best coarse score of a span covering each window
    times: np.ndarray                            # (T,) window centres (s)
    notes: tuple[str, ...] = ()
    words_read: int = 0
    words_given: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class RecordingTimeline:
    """The coarse pass of one recording: per window and stream one L2-normalised feature (float16)."""
    id: str
    starts_s: np.ndarray            # (T,) float64: window start times
    ends_s: np.ndarray              # (T,) window end times (start + 16 frames)
    signing: np.ndarray             # (T,) bool: a signer is seen in the window
    streams: dict[str, torch.Tensor]   # stream → (T, D) float16, L2-normalised
    fps: float

    @property
    def num_windows(self) -> int:
        return int(self.starts_s.shape[0])

    @property
    def times(self) -> np.ndarray:
        return 0.5 * (self.starts_s + self.ends_s)

    @property
    def duration_s(self) -> float:
        return float(self.ends_s[-1]) if self.num_windows else 0.0

    @property
    def window_s(self) -> float:
        return float(self.ends_s[0] - self.starts_s[0]) if self.num_windows else WINDOW / self.fps

    @property
    def step_s(self) -> float:
        """Seconds between window starts (the median stride)."""
        if self.num_windows < 2:
            return self.window_s
        return max(float(np.median(np.diff(self.starts_s))), 1e-6)

    def span_lengths(self, min_s: float, max_s: float) -> np.ndarray:
        return span_lengths(self.step_s, self.window_s, self.num_windows, min_s, max_s)


# ----------------------------------------------------------------------------------------------------
# signer presence, chunks, the coarse pass
# ----------------------------------------------------------------------------------------------------

def window_presence(feats: VideoFeatures, conf: float = 0.3) -> np.ndarray:
    """(T,) fraction of each window's frames that show a signer with a visible hand (≥ 3 body points and ≥ 10
    points of one hand at confidence ≥ ``conf``, the frame filter's test): ``meta["presence"]`` when extraction
    stored it, else computed here with prefix sums over frames (no loop)."""
    stored = feats.meta.get("presence")
    if stored is not None and len(stored) == feats.num_clips:
        return np.asarray(stored, dtype=np.float64)
    ok = np.nan_to_num(feats.keypoints[:, :N_BODY + 2 * N_HAND, 2]) >= conf
    hand = np.maximum(ok[:, N_BODY:N_BODY + N_HAND].sum(1), ok[:, N_BODY + N_HAND:].sum(1))
    frame = (ok[:, :N_BODY].sum(1) >= 3) & (hand >= 10)
    seen = np.concatenate([[0], np.cumsum(frame)])
    s = feats.clip_starts
    e = np.minimum(s + WINDOW, feats.num_frames)
    return (seen[e] - seen[s]) / np.maximum(e - s, 1)


def chunk_starts(n_windows: int, chunk: int) -> np.ndarray:
    """First window of each coarse chunk: hop ``chunk // 2``, the last chunk ends at the last window."""
    if n_windows <= chunk:
        return np.zeros(1, dtype=np.int64)
    hop = max(chunk // 2, 1)
    s = np.arange(0, n_windows - chunk + 1, hop, dtype=np.int64)
    if s[-1] != n_windows - chunk:
        s = np.append(s, n_windows - chunk)
    return s


def sub_features(feats: VideoFeatures, windows: np.ndarray) -> VideoFeatures:
    """The features of some windows of a recording (sorted indices) as one video: frames from the first
    window's start to the last window's end, clip starts shifted."""
    cs = feats.clip_starts[windows]
    f0, f1 = int(cs[0]), int(min(cs[-1] + WINDOW, feats.num_frames))
    return VideoFeatures(feats.keypoints[f0:f1], feats.rgb[windows], cs - f0, feats.fps,
                         {"id": str(feats.meta.get("id", ""))})


def span_windows(first: int, stop: int, max_clips: int) -> np.ndarray:
    """≤ ``max_clips`` windows of [first, stop) at equal intervals, first and last included (as
    :func:`seds.clips.select_clip_starts` picks a trained clip's windows)."""
    n = stop - first
    if n <= max_clips:
        return np.arange(first, stop, dtype=np.int64)
    return first + np.round(np.linspace(0, n - 1, max_clips)).astype(np.int64)


def span_features(feats: VideoFeatures, first: int, stop: int, max_clips: int) -> VideoFeatures:
    """Windows [first, stop) of a recording as a trained clip is sampled (:func:`seds.clips.select_clip_starts`):
    ≤ ``max_clips`` 16-frame windows at equal intervals over *every frame* of the span (pose sees them exactly,
    keypoints exist for every frame); each takes the RGB feature of the stored window nearest to it (≤ half a
    stride away)."""
    cs = feats.clip_starts
    f0, f1 = int(cs[first]), int(min(cs[stop - 1] + WINDOW, feats.num_frames))
    starts = f0 + select_clip_starts(f1 - f0, max_clips)
    near = np.clip(np.searchsorted(cs, starts), 1, len(cs) - 1)
    near = np.where(np.abs(cs[near - 1] - starts) <= np.abs(cs[near] - starts), near - 1, near)
    near = np.clip(near, first, stop - 1)
    return VideoFeatures(feats.keypoints[f0:f1], feats.rgb[near], starts - f0, feats.fps,
                         {"id": str(feats.meta.get("id", ""))})


def check_model(model) -> None:
    variant = variant_of(model)
    if not variant.localises:
        raise LocaliseError(variant.recordings_refusal)


def encode_recording(model, feats: VideoFeatures, chunk: int = 0, batch_size: int = 16,
                     streams: tuple[str, ...] = STREAMS) -> RecordingTimeline:
    """The coarse pass (module docstring, stage 1): overlapping chunks encoded once, each window keeps the
    features of the chunk whose centre is nearest."""
    check_model(model)
    chunk = min(chunk or model.cfg.max_clips, model.cfg.max_clips, 64)
    n = feats.num_clips
    if n > 1 and np.any(np.diff(feats.clip_starts) <= 0):
        raise LocaliseError("a recording's windows must be in time order (clip_starts increasing)")
    starts = chunk_starts(n, chunk)
    size = min(chunk, n)
    out = {s: torch.empty(n, model.cfg.dim, dtype=torch.float16) for s in streams}
    centres = starts + (size - 1) / 2.0
    # each window's chunk: the one whose centre is nearest (ties → the earlier chunk)
    idx = np.arange(n)
    right = np.clip(np.searchsorted(centres, idx), 0, len(starts) - 1)
    left = np.clip(right - 1, 0, len(starts) - 1)
    own = np.where(np.abs(idx - centres[left]) <= np.abs(idx - centres[right]), left, right)
    for lo in range(0, len(starts), batch_size):
        group = starts[lo:lo + batch_size]
        parts = [sub_features(feats, np.arange(s, s + size)) for s in group]
        emb, _ = encode_videos(model, parts, batch_size=batch_size)
        for ci in range(len(group)):
            mine = np.nonzero(own == lo + ci)[0]
            if len(mine):
                for s in streams:
                    out[s][mine] = F.normalize(emb[s][ci, mine - group[ci]], dim=-1).half()
    fps = float(feats.fps)
    starts_s = feats.clip_starts.astype(np.float64) / fps
    return RecordingTimeline(str(feats.meta.get("id", "")), starts_s, starts_s + WINDOW / fps,
                             window_presence(feats) >= SIGNING_PRESENCE, out, fps)


# ----------------------------------------------------------------------------------------------------
# boundary refinement: every span of the grid from prefix sums
# ----------------------------------------------------------------------------------------------------

def span_lengths(step_s: float, window_s: float, n_windows: int, min_s: float, max_s: float) -> np.ndarray:
    """Span lengths in windows whose duration ``(ℓ − 1) · step_s + window_s`` lies in [min_s, max_s] (every window
    count in between; at least one window; a recording shorter than ``min_s`` gives its own length)."""
    lo = max(1, int(np.ceil((min_s - window_s) / step_s - 1e-9)) + 1)
    hi = max(1, int(np.floor((max_s - window_s) / step_s + 1e-9)) + 1)
    if n_windows < lo:
        return np.array([n_windows], dtype=np.int64)
    return np.arange(min(lo, hi), min(hi, n_windows) + 1, dtype=np.int64)


def similarity_matrix(windows, query: torch.Tensor) -> torch.Tensor:
    """E = windows · queryᵀ of L2-normalised features in float32 (stored windows are float16)."""
    x = windows.float() if torch.is_tensor(windows) else torch.from_numpy(np.array(windows, dtype=np.float32))
    return F.normalize(x, dim=-1) @ F.normalize(query.float(), dim=-1).T


def span_score_grid(e: torch.Tensor, word_mask: torch.Tensor, lengths: np.ndarray, tau: float,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """The fine-grained score ½ (M_t2k + M_k2t) of the timeline clips [a, a + ℓ) for every start ``a`` and
    every ℓ in ``lengths``: (..., len(lengths), T) float64, −inf where the span leaves the timeline.

    ``e``: (..., T, L) clip × word similarities (normalised features; leading dimensions = several timelines,
    e.g. the candidate regions of an index search), ``word_mask`` (L,) valid words, ``valid`` (...,) the number of
    real rows of each timeline (default T). Equal to :func:`seds.similarity.fine_grained_scores` on the span's
    rows of ``e`` (tests)."""
    e = e[..., word_mask.bool()].double()
    *batch, t, n_words = e.shape
    lengths = np.asarray(lengths, dtype=np.int64)
    out = torch.full((*batch, len(lengths), t), -torch.inf, dtype=torch.float64)
    if t == 0 or n_words == 0 or len(lengths) == 0:
        return out
    # video → text: each clip's score over the words, mean over the span's clips (one prefix sum)
    per_clip = (e * torch.softmax(e / tau, dim=-1)).sum(-1)
    c = torch.cat([torch.zeros(*batch, 1, dtype=torch.float64), per_clip.cumsum(-1)], -1)
    # text → video: per word Σ E e^{E/τ} / Σ e^{E/τ} over the span. The sums of every start grow by one clip per
    # length (additions of positive terms only: no cancellation, unlike differences of prefix sums); cosines
    # are ≤ 1, so e^{(E − max)/τ} neither overflows nor underflows in float64 for τ > 0.003
    x = torch.exp((e - e.amax(-2, keepdim=True)) / tau)
    ex = e * x
    den = torch.zeros_like(e)
    num = torch.zeros_like(e)
    want = {int(ell): i for i, ell in enumerate(lengths.tolist())}
    for ell in range(1, min(int(lengths.max()), t) + 1):              # a loop over lengths, not over spans
        n = t - ell + 1
        den[..., :n, :] += x[..., ell - 1:, :]
        num[..., :n, :] += ex[..., ell - 1:, :]
        if ell in want:
            out[..., want[ell], :n] = 0.5 * ((num[..., :n, :] / den[..., :n, :]).mean(-1)
                                             + (c[..., ell:] - c[..., :n]) / ell)
    if valid is not None:
        ends = torch.arange(t)[None, :] + torch.from_numpy(lengths)[:, None]          # (n_len, T)
        out = out.masked_fill(ends > valid.reshape(*batch, 1, 1), -torch.inf)
    return out


def nms(first: np.ndarray, stop: np.ndarray, scores: np.ndarray, iou: float, k: int) -> np.ndarray:
    """Greedy non-maximum suppression of 1-D spans (sorted by score, ties by position) → kept indices."""
    order = np.lexsort((first, -scores))
    f, s = first[order].astype(np.float64), stop[order].astype(np.float64)
    inter = np.clip(np.minimum(s[:, None], s[None]) - np.maximum(f[:, None], f[None]), 0, None)
    union = (s - f)[:, None] + (s - f)[None] - inter
    over = inter / np.maximum(union, 1e-12) > iou
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):                    # ≤ pool candidates
        if alive[i]:
            keep.append(order[i])
            if len(keep) == k:
                break
            alive &= ~over[i]
    return np.asarray(keep, dtype=np.int64)


def span_candidates(grid: torch.Tensor, lengths: np.ndarray, signing: np.ndarray, cfg: LocaliseConfig, k: int,
                    keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best ``k`` non-overlapping spans of a score grid ((R, n_len, T): R timelines, or (n_len, T)) that lie mostly
    on signing (``signing`` (R, T) or (T,)) → (timeline, first, stop, score). ``keys`` (R,): each timeline's
    position on one global window axis (timelines must not overlap there; default R · T apart), so that
    suppression and ties act on global positions. Vectorised: no loop over lengths or spans."""
    g = grid if grid.dim() == 3 else grid[None]
    sig = np.asarray(signing, dtype=np.int64).reshape(g.shape[0], -1)
    r, n_len, t = g.shape
    prefix = np.concatenate([np.zeros((r, 1), np.int64), np.cumsum(sig, 1)], 1)   # (R, T + 1)
    a = np.arange(t)
    stop = np.minimum(a[None, :] + lengths[:, None], t)                                 # (n_len, T)
    inside = prefix[:, stop] - prefix[:, a][:, None, :]                                 # (R, n_len, T)
    bad = torch.from_numpy(inside < cfg.min_signing * lengths[None, :, None])
    flat = g.masked_fill(bad, -torch.inf).reshape(-1).numpy()
    ok = np.nonzero(np.isfinite(flat))[0]
    empty = np.zeros(0, np.int64)
    if len(ok) == 0:
        return empty, empty, empty, np.zeros(0)
    pool = max(cfg.pool, 20 * k)
    top = ok[np.argsort(-flat[ok], kind="stable")[:pool]]
    ri, rest = np.divmod(top, n_len * t)
    li, first = np.divmod(rest, t)
    keys = np.arange(r, dtype=np.int64) * (t + 1) if keys is None else np.asarray(keys, dtype=np.int64)
    gfirst = keys[ri] + first
    keep = nms(gfirst, gfirst + lengths[li], flat[top], cfg.nms_iou, k)
    return ri[keep], first[keep], first[keep] + lengths[li[keep]], flat[top][keep]


def coverage_curve(grid: torch.Tensor, lengths: np.ndarray) -> np.ndarray:
    """(T,) for each window the best score of a grid span covering it (a timeline to plot): a running
    maximum per length, vectorised over windows."""
    t = grid.shape[1]
    best = np.full(t, -np.inf)
    g = grid.numpy()
    for i, ell in enumerate(lengths.tolist()):
        row = np.concatenate([np.full(ell - 1, -np.inf), g[i]])
        # covering spans of window j start in [j - ell + 1, j]: a sliding maximum of width ell
        win = np.lib.stride_tricks.sliding_window_view(row, ell)[:t].max(1)
        best = np.maximum(best, win)
    return best


# ----------------------------------------------------------------------------------------------------
# the localiser
# ----------------------------------------------------------------------------------------------------

class Localiser:
    """A checkpoint localising sentences (or video clips) in recordings; see the module docstring."""

    def __init__(self, model, cfg: LocaliseConfig = LocaliseConfig()):
        check_model(model)
        self.model, self.cfg = model, cfg
        self.streams = tuple(s for s in cfg.streams)

    def timeline(self, feats: VideoFeatures) -> RecordingTimeline:
        return encode_recording(self.model, feats, self.cfg.chunk, streams=self.streams)

    def query_text(self, text: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, tuple[str, ...], int, int]:
        """Word features of a sentence (the same for every stream) + notes."""
        if not text or not text.strip():
            raise LocaliseError("the sentence is empty")
        words, mask = encode_sentences(self.model, [text])
        read = int(mask[0].sum())
        given = len(self.model.text.tokenizer.words(text)) if self.model.text.kind == "hash" else read
        notes = (NOTE_TRUNCATED,) if given > read else ()
        return {s: words[0] for s in self.streams}, mask[0], notes, read, given

    def query_clips(self, query: VideoFeatures) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Per-stream clip features of a short query video (≤ model.max_clips windows at equal intervals)."""
        win = span_windows(0, query.num_clips, self.model.cfg.max_clips)
        emb, mask = encode_videos(self.model, [sub_features(query, win)])
        return {s: emb[s][0] for s in self.streams}, mask[0]

    def localise(self, tl: RecordingTimeline, text: str, feats: VideoFeatures | None = None) -> Localisation:
        """Top-k spans of ``text`` in the recording per stream; ``feats`` (the recording's features) allow the
        exact re-scoring of the best candidates."""
        t0 = time.perf_counter()
        q, qmask, notes, read, given = self.query_text(text)
        loc = self._localise(tl, q, qmask, feats, text, t0)
        loc.notes = tuple(notes) + loc.notes
        loc.words_read, loc.words_given = read, given
        return loc

    def localise_video(self, tl: RecordingTimeline, query: VideoFeatures,
                       feats: VideoFeatures | None = None) -> Localisation:
        """Where a short query clip is signed in the recording: its clips in the place of the words."""
        t0 = time.perf_counter()
        q, qmask = self.query_clips(query)
        return self._localise(tl, q, qmask, feats, str(query.meta.get("id", "video")), t0)

    def _localise(self, tl, q, qmask, feats, label, t0) -> Localisation:
        cfg = self.cfg
        timings = {"query": time.perf_counter() - t0}
        lengths = tl.span_lengths(cfg.min_span_s, cfg.max_span_s)
        notes: list[str] = []
        if tl.duration_s - tl.starts_s[0] < cfg.min_span_s:
            notes.append(NOTE_SHORT_RECORDING)
        spans: dict[str, list[Span]] = {}
        curve: dict[str, np.ndarray] = {}
        cands = {}
        t1 = time.perf_counter()
        for s in self.streams:
            e = similarity_matrix(tl.streams[s], q[s])
            grid = span_score_grid(e, qmask, lengths, self.model.cfg.tau)
            curve[s] = coverage_curve(grid, lengths)
            k = max(cfg.top_k, cfg.rescore)
            cands[s] = span_candidates(grid, lengths, tl.signing, cfg, k)[1:]
        timings["refine"] = time.perf_counter() - t1
        if not tl.signing.any() or all(len(c[0]) == 0 for c in cands.values()):
            timings["total"] = time.perf_counter() - t0
            return Localisation(tl.id, label, NO_SIGNING, {s: [] for s in self.streams}, curve, tl.times,
                                tuple(notes), timings=timings)
        t2 = time.perf_counter()
        exact = self._rescore(cands, q, qmask, feats) if feats is not None and cfg.rescore else {}
        if feats is None or not cfg.rescore:
            notes.append(NOTE_COARSE_ONLY)
        timings["rescore"] = time.perf_counter() - t2
        longest = int(lengths.max())
        for s, (first, stop, sc) in cands.items():
            out = []
            for i in range(len(first)):
                ex = exact.get((s, int(first[i]), int(stop[i])))
                out.append(Span(float(tl.starts_s[first[i]]), float(tl.ends_s[stop[i] - 1]),
                                float(ex if ex is not None else sc[i]), float(sc[i]), int(first[i]), int(stop[i]),
                                ex is not None))
            # re-scored spans first (by exact score), then the rest by their timeline score
            out.sort(key=lambda sp: (not sp.exact, -sp.score, sp.first))
            spans[s] = out[:cfg.top_k]
            if out and out[0].stop - out[0].first >= longest and longest > 1 and NOTE_AT_MAX_LENGTH not in notes:
                notes.append(NOTE_AT_MAX_LENGTH)
        timings["total"] = time.perf_counter() - t0
        return Localisation(tl.id, label, OK, spans, curve, tl.times, tuple(notes), timings=timings)

    def exact_scores(self, feats: VideoFeatures, windows: list[tuple[int, int]], q: dict[str, torch.Tensor],
                     qmask: torch.Tensor) -> dict[str, np.ndarray]:
        """The checkpoint's fine-grained score of each span [first, stop) encoded alone, per stream."""
        mc = self.model.cfg.max_clips
        parts = [span_features(feats, a, b, mc) for a, b in windows]
        emb, mask = encode_videos(self.model, parts)
        out = {}
        for s in self.streams:
            sc = fine_grained_scores(emb[s], mask, q[s][None], qmask[None], tau=self.model.cfg.tau)
            out[s] = sc.mean[:, 0].numpy().astype(np.float64)
        return out

    def _rescore(self, cands, q, qmask, feats) -> dict[tuple[str, int, int], float]:
        want = {s: [(int(a), int(b)) for a, b in zip(c[0][:self.cfg.rescore], c[1][:self.cfg.rescore])]
                for s, c in cands.items()}
        uniq = sorted({w for ws in want.values() for w in ws})
        if not uniq:
            return {}
        try:
            sc = self.exact_scores(feats, uniq, q, qmask)
        except EncodeError as e:
            raise LocaliseError(str(e)) from None
        pos = {w: i for i, w in enumerate(uniq)}
        return {(s, a, b): float(sc[s][pos[(a, b)]]) for s, ws in want.items() for a, b in ws}
