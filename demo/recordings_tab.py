"""The app's "Find in a recording" tab: where is a sentence signed inside a long recording?

Pick a gallery recording (``examples/recordings`` by default, made by ``python -m seds.experiments.demo_recording``;
``SEDS_RECORDINGS`` names another folder of the same layout: ``index/`` a recordings index, ``features/`` their
feature store, ``videos/`` and ``recordings.json``) or upload one (at most ``SEDS_RECORDING_MAX_MINUTES`` minutes,
said up front with a time estimate), type a sentence, and see

* a timeline of the score over time for each stream (pose, RGB, fused: for each moment the best score of a span
  covering it) with the top spans marked and the parts without a signer shaded;
* the top spans per stream, a trimmed preview of the chosen span and its clip × word heatmap (the span encoded
  alone, as its exact score is computed);
* the sentence searched in every indexed recording: (recording, time span) results.

All the work is the library's (:mod:`seds.retrieval.localise`, :mod:`seds.retrieval.recordings`,
:mod:`seds.extract.recording`); :class:`RecordingsService` holds what the tab needs and words its errors,
:func:`recordings_tab` is the UI. An upload is extracted once (streamed, bounded memory), remembered by its
SHA-256 (the recent-queries cache of :mod:`demo.live`) and called "your recording" — never by its file name.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch

from .backend import PREVIEW_SHORT_SIDE, STREAM_TITLES, AppBackend, explanation_figure
from .live import LiveQueries, RecentQueries
from seds.clips import clip_times
from seds.data.features import VideoFeatures
from seds.data.store import FeatureStore
from seds.encode import encode_sentences, encode_videos, word_labels
from seds.extract.factory import make_rgb_extractor
from seds.extract.pose import make_pose_estimator
from seds.extract.recording import RecordingConfig, RecordingError, RecordingExtractor
from seds.extract.video import Budget, VideoError, VideoStream
from seds.extract.writer import write_video
from seds.retrieval.engine import SearchEngine
from seds.retrieval.inputs import MAX_TEXT_CHARS, QueryError, check_text, check_upload, short_label
from seds.retrieval.gallery import file_sha256
from seds.retrieval.localise import (NO_SIGNING, NOTE_AT_MAX_LENGTH, NOTE_COARSE_ONLY, NOTE_SHORT_RECORDING,
                                     NOTE_TRUNCATED, Localisation, LocaliseConfig, LocaliseError, Localiser,
                                     RecordingTimeline, span_features)
from seds.retrieval.recordings import RecordingArchive, RecordingIndexError, rescore_hits

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT / "examples" / "recordings"
DEFAULT_MAX_MINUTES = 3.0      # peak RSS of extraction grows with length (benchmarks/results/recording_extract.md)
UPLOAD_LABEL = "your recording"
PREVIEW_FPS, PREVIEW_PAD_S = 12.0, 0.5
# the coarse pass (index build) per window before one was measured here: benchmarks/results/recordings.md (355 s per
# hour of video at 3 windows per second on the 2-core CPU, demo checkpoint)
PRIOR_ENCODE_PER_WINDOW = 0.033
COLOURS = {"pose": "#2563eb", "rgb": "#d97706", "fused": "#059669"}


@dataclass
class Recording:
    key: str                          # "gallery:<id>" or "upload:<sha256>"
    label: str                        # what the UI calls it (an upload: never its file name)
    timeline: RecordingTimeline
    features: VideoFeatures | None    # for exact re-scoring, heatmaps
    video: Path | None                # to cut previews from
    truth: dict[str, tuple[float, float]]   # known sentences → their signing span (the example recording)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        v = float(raw) if raw.strip() else default
    except ValueError:
        raise QueryError(f"{name}={raw!r}: expected a number of minutes") from None
    if not v > 0:
        raise QueryError(f"{name} must be > 0, got {v}")
    return v


class RecordingsService:
    """Recordings for the tab: the gallery's (an index + features + videos) and uploads (extracted once)."""

    def __init__(self, be: AppBackend, live: LiveQueries | None = None, folder: str | os.PathLike | None = None,
                 max_minutes: float | None = None, *, pose_estimator=None, rgb_extractor=None,
                 cfg: LocaliseConfig = LocaliseConfig(top_k=5, rescore=5)):
        self.be, self.live = be, live
        self.max_minutes = max_minutes or _env_float("SEDS_RECORDING_MAX_MINUTES", DEFAULT_MAX_MINUTES)
        self.folder = Path(folder or os.environ.get("SEDS_RECORDINGS") or DEFAULT_FOLDER)
        self.unavailable = ""              # why the tab cannot work at all (worded for the UI)
        self.cfg = cfg
        try:
            self.localiser = Localiser(be.model, cfg)
        except LocaliseError as e:
            self.localiser, self.unavailable = None, str(e)
        self.archive, self.store, self.manifest, self.gallery_note = None, None, {}, ""
        if self.localiser is not None:
            self._load_gallery()
        self.uploads = RecentQueries(4)          # extracted uploads by SHA-256 + settings (shared, content-keyed)
        self._pose, self._rgb = pose_estimator, rgb_extractor
        self._extract_lock = threading.Lock()    # one recording extraction at a time (its models are not shared)
        self._measured: list[tuple[int, float]] = []     # (frames, seconds) of the last extractions here

    # -- the gallery ------------------------------------------------------------------------------------
    def _load_gallery(self) -> None:
        f = self.folder
        if not (f / "index").exists():
            self.gallery_note = "no gallery recordings are installed (upload one)"
            return
        try:
            self.archive = RecordingArchive(f / "index", self.be.fingerprint)
        except RecordingIndexError as e:
            self.gallery_note = f"the gallery recordings cannot be used: {e}"
            return
        if (f / "features").is_dir():
            self.store = FeatureStore(f / "features")
        try:
            doc = json.loads((f / "recordings.json").read_text()) if (f / "recordings.json").is_file() else {}
        except (OSError, ValueError):
            doc = {}                             # titles and true spans are optional
        self.manifest = {r["id"]: r for r in doc.get("recordings", []) if r.get("id") in self.archive.where}

    def choices(self) -> list[tuple[str, str]]:
        if self.archive is None:
            return []
        return [(self.manifest.get(i, {}).get("title") or i, i) for i in self.archive.recording_ids]

    def example_sentences(self, rid: str | None = None) -> list[str]:
        ids = [rid] if rid else list(self.manifest)
        return [s["text"] for i in ids for s in self.manifest.get(i, {}).get("sentences", [])]

    def gallery(self, rid: str) -> Recording:
        if self.archive is None or rid not in self.archive.where:
            raise QueryError("Pick one of the gallery recordings (or upload one).")
        m = self.manifest.get(rid, {})
        feats = self.store[rid] if self.store is not None and self.store.has(rid) else None
        video = self.folder / m["video"] if m.get("video") and (self.folder / m["video"]).is_file() else None
        truth = {s["text"]: (s["start_s"], s["end_s"]) for s in m.get("sentences", [])}
        return Recording(f"gallery:{rid}", m.get("title") or rid, self.archive.timeline(rid), feats, video, truth)

    # -- uploads ----------------------------------------------------------------------------------------
    def limits_text(self) -> str:
        per_min = self.estimate(int(60 * 24))
        return (f"Uploads: recordings of at most **{self.max_minutes:g} min** (≤ {self.be.cfg.max_upload_mb:g} MB). "
                f"A new recording is extracted once — decode → pose → RGB → encode, **≈ {per_min:.0f} s per minute** "
                f"of video on this machine ({self.basis()}) — then every sentence is answered in about a second.")

    def estimate(self, frames: int) -> float:
        windows = frames // 8
        if self._measured:
            f, s = map(sum, zip(*self._measured))
            return s / max(f, 1) * frames
        c = self.live.costs if self.live is not None else None
        per_frame = c.per_frame if c else 0.025
        per_window = c.per_window if c else 0.01
        return per_frame * frames + (per_window + PRIOR_ENCODE_PER_WINDOW) * windows

    def basis(self) -> str:
        if self._measured:
            return f"measured on the last {len(self._measured)} recording(s) extracted here"
        return "rough: from the clip queries' costs, no recording extracted here yet"

    def _checked(self, path) -> tuple[Path, float]:
        """The upload's checks before anything is decoded (the app's: header, frame size), and its duration."""
        p = check_upload(path, ask="Upload a recording (or pick a gallery recording) first.", name="recording")
        info = self.be.check_video(p)
        dur = info.duration if info.num_frames > 0 and info.fps > 0 else None
        if dur is not None and dur > self.max_minutes * 60 + 1e-6:
            raise QueryError(f"This recording is {dur / 60:.1f} min long; recordings of at most "
                             f"{self.max_minutes:g} min can be searched here.")
        return p, dur

    def gallery_id_of(self, sha: str) -> str | None:
        return next((i for i, m in self.manifest.items() if m.get("sha256") == sha), None)

    def plan(self, path) -> str:
        p, dur = self._checked(path)
        sha = self.live.sha256(p) if self.live is not None else file_sha256(p)
        if self.gallery_id_of(sha):
            return "This is one of the gallery recordings: its features are stored, **Find** answers at once."
        if self._key(sha) in self.uploads:
            return "This recording was extracted a moment ago: **Find** answers at once."
        if dur is None:
            return "New recording (its length is not in the file header): **Find** extracts it first."
        frames = int(round(dur * 24))
        return (f"New recording: {dur / 60:.1f} min → {frames:,} frames. **Find** extracts it first, "
                f"**≈ {self.estimate(frames):.0f} s** on this machine ({self.basis()}); later sentences answer at once.")

    def _key(self, sha: str) -> tuple:
        be = self.be
        return (sha, json.dumps(be.fingerprint, sort_keys=True, default=str), be.plan.pose_backend,
                be.cfg.pose_stride, be.rgb_features, self.max_minutes)

    def upload(self, path, progress=None) -> Recording:
        p, _ = self._checked(path)
        sha = self.live.sha256(p) if self.live is not None else file_sha256(p)
        rid = self.gallery_id_of(sha)
        if rid:
            return self.gallery(rid)
        (feats, tl), _ = self.uploads.get_or_run(self._key(sha), lambda: self._extract(p, progress))
        return Recording(f"upload:{sha}", UPLOAD_LABEL, tl, feats, p, {})

    def _extractor(self) -> RecordingExtractor:
        be = self.be
        if self._pose is None:
            self._pose = make_pose_estimator(be.plan.pose_backend)
        if self._rgb is None:
            self._rgb = make_rgb_extractor(be.rgb_features, be.device)
        cfg = RecordingConfig(pose_backend=be.plan.pose_backend, pose_stride=be.cfg.pose_stride,
                              max_seconds=self.max_minutes * 60, max_short_side=min(360, be.cfg.max_short_side),
                              max_frame_pixels=be.cfg.max_frame_pixels)
        return RecordingExtractor(cfg, pose_estimator=self._pose, rgb_extractor=self._rgb)

    def _extract(self, p: Path, progress) -> tuple[VideoFeatures, RecordingTimeline]:
        if not self._extract_lock.acquire(timeout=self.be.cfg.query_timeout_s):
            raise QueryError("Another recording is being extracted on this server: try again in a minute.")
        try:
            t0 = time.perf_counter()
            try:
                feats = self._extractor().extract(p, meta={"id": UPLOAD_LABEL},
                                                  progress=lambda stage, frac: progress and progress(stage, frac))
            except VideoError as e:
                raise SearchEngine.unusable_video(e, p) from None
            except RecordingError as e:
                raise QueryError(f"This recording cannot be extracted: {e}") from None
            feats.meta["video"] = ""                  # the upload's file name stays out of everything kept
            if progress:
                progress("encode", 0.95)
            tl = self.localiser.timeline(feats)
            self._measured = (self._measured + [(feats.num_frames, time.perf_counter() - t0)])[-3:]
            return feats, tl
        finally:
            self._extract_lock.release()

    # -- queries ----------------------------------------------------------------------------------------
    @staticmethod
    def check_text(text: str) -> str:
        return check_text(text, ask="Type a sentence to find.")

    def find(self, rec: Recording, text: str) -> Localisation:
        try:
            return self.localiser.localise(rec.timeline, self.check_text(text), rec.features)
        except LocaliseError as e:
            raise QueryError(str(e)) from None

    def search_all(self, text: str, k: int = 5) -> list[list]:
        """The sentence in every indexed recording: rows (#, recording, from, to, score) of the fused stream (the
        best ``cfg.rescore`` re-scored exactly when the features are stored)."""
        if self.archive is None:
            return []
        q, qmask, *_ = self.localiser.query_text(self.check_text(text))
        stream = "fused" if "fused" in self.archive.streams else self.archive.streams[-1]
        hits = self.archive.search(q, qmask, self.be.model.cfg.tau, k=k, cfg=self.cfg, streams=(stream,))
        store = self.store
        hits = rescore_hits(self.localiser, hits, q, qmask,
                            lambda rid: store[rid] if store is not None and store.has(rid) else None, self.cfg.rescore)
        return [[h.rank, self.manifest.get(h.recording, {}).get("title") or h.recording, f"{h.start_s:.1f} s",
                 f"{h.end_s:.1f} s", f"{h.score:.3f}", "exact" if h.exact else "timeline"] for h in hits[stream]]

    def explanation(self, rec: Recording, text: str, first: int, stop: int):
        """The clip × word matrices of span [first, stop) (encoded alone, as its exact score) and the sentence."""
        model = self.be.model
        words, wmask = encode_sentences(model, [text])
        labels = [short_label(w) for w in word_labels(model, text)]
        if rec.features is not None:
            sf = span_features(rec.features, first, stop, model.cfg.max_clips)
            emb, mask = encode_videos(model, [sf])
            clips, cmask = {s: emb[s][0] for s in self.be.streams}, mask[0]
            times = rec.timeline.starts_s[first] + clip_times(sf.clip_starts, sf.fps)
        else:                                 # the timeline's window features of the span
            clips = {s: rec.timeline.streams[s][first:stop].float() for s in self.be.streams}
            cmask = torch.ones(stop - first, dtype=torch.bool)
            times = rec.timeline.times[first:stop]
        start, end = rec.timeline.starts_s[first], rec.timeline.ends_s[stop - 1]
        return self.be.explain(clips, cmask, times, words[0], wmask[0], labels,
                               f"{rec.label} {start:.1f}–{end:.1f} s", text)

    def preview(self, rec: Recording, start_s: float, end_s: float) -> str | None:
        """A trimmed WebM of [start − ½ s, end + ½ s] (12 fps, ≤ 240 px), or None without a video file."""
        if rec.video is None or not rec.video.is_file():
            return None
        self.be.prune_previews()          # the app's preview folder: pruned and deleted with the app's previews
        name = f"preview-span-{abs(hash((rec.key, round(start_s, 2), round(end_s, 2)))):x}.webm"
        out = self.be.preview_dir / name
        if out.is_file():
            return str(out)
        try:
            vs = VideoStream(rec.video, fps=PREVIEW_FPS, budget=Budget(max_short_side=PREVIEW_SHORT_SIDE),
                             allow_partial=True)
            try:
                lo = int(max(0.0, start_s - PREVIEW_PAD_S) * PREVIEW_FPS)
                hi = int(np.ceil((end_s + PREVIEW_PAD_S) * PREVIEW_FPS))
                frames = vs.read(lo, hi)
            finally:
                vs.close()
            if len(frames) == 0:
                return None
            if min(frames.shape[1:3]) < 200:          # the 112-px synthetic videos: bigger for the eye
                f = int(np.ceil(200 / min(frames.shape[1:3])))
                frames = frames.repeat(f, axis=1).repeat(f, axis=2)
            return str(write_video(frames, out, PREVIEW_FPS))
        except Exception:  # noqa: BLE001 - a preview failure must not lose the results
            return None


# --------------------------------------------------------------------------------------------------
# wording and figures
# --------------------------------------------------------------------------------------------------

def status_text(loc: Localisation, rec: Recording, cfg: LocaliseConfig) -> str:
    if loc.status == NO_SIGNING:
        return ("**No signing found** in this recording: no part of it shows a signer with a visible hand, so there "
                "are no spans to show.")
    exact = "every span re-scored exactly" if cfg.rescore >= cfg.top_k else f"best {cfg.rescore} re-scored exactly"
    lines = [f"**{rec.label}**: top {cfg.top_k} spans of {cfg.min_span_s:g}–{cfg.max_span_s:g} s per stream in "
             f"{loc.timings.get('total', 0.0):.2f} s ({exact}; the band #1 on the timeline is the fused stream's "
             "best span, lighter bands its others)."]
    if NOTE_TRUNCATED in loc.notes:
        lines.append(f"ℹ️ The text encoder reads only the first {loc.words_read} of your {loc.words_given} words.")
    if NOTE_AT_MAX_LENGTH in loc.notes:
        lines.append(f"ℹ️ The best span is as long as the longest span searched ({cfg.max_span_s:g} s): the sentence "
                     "may be longer than any span, the span marks part of it.")
    if NOTE_SHORT_RECORDING in loc.notes:
        lines.append(f"ℹ️ The recording is shorter than the shortest span ({cfg.min_span_s:g} s).")
    if NOTE_COARSE_ONLY in loc.notes:
        lines.append("ℹ️ Scores are the timeline's (no features to re-score the spans with).")
    return "\n\n".join(lines)


def span_rows(loc: Localisation, streams) -> list[list]:
    return [[i + 1, STREAM_TITLES.get(s, s), f"{sp.start_s:.1f} s", f"{sp.end_s:.1f} s", f"{sp.score:.3f}",
             "exact" if sp.exact else "timeline"] for s in streams for i, sp in enumerate(loc.spans.get(s, []))]


def span_choices(loc: Localisation, streams) -> list[tuple[str, str]]:
    order = ("fused",) + tuple(s for s in streams if s != "fused")
    return [(f"{STREAM_TITLES.get(s, s)} #{i + 1}: {sp.start_s:.1f}–{sp.end_s:.1f} s ({sp.score:.3f})", f"{s}:{i}")
            for s in order if s in loc.spans for i, sp in enumerate(loc.spans[s])]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) runs of True in a boolean array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))


def timeline_figure(loc: Localisation, rec: Recording, text: str, height: int = 360):
    """Score over time per stream (the best span covering each moment), the fused top spans as bands (#1 …), each
    stream's best span as a marker, parts without a signer shaded, the true span of a known sentence dashed."""
    tl = rec.timeline
    fig = go.Figure()
    for a, b in _runs(~tl.signing):
        fig.add_vrect(x0=tl.starts_s[a], x1=tl.ends_s[b - 1], fillcolor="#9ca3af", opacity=0.18, line_width=0,
                      layer="below")
    if (~tl.signing).any():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="no signer",
                                 marker={"color": "#9ca3af", "symbol": "square", "size": 12}))
    for s, curve in loc.curve.items():
        y = np.where(np.isfinite(curve), curve, np.nan)
        fig.add_trace(go.Scatter(x=np.round(loc.times, 3), y=np.round(y, 4), mode="lines", name=STREAM_TITLES.get(s, s),
                                 line={"color": COLOURS.get(s), "width": 2},
                                 hovertemplate="%{x:.1f} s: %{y:.3f}<extra>" + STREAM_TITLES.get(s, s) + "</extra>"))
    for i, sp in enumerate(loc.spans.get("fused", [])):
        fig.add_vrect(x0=sp.start_s, x1=sp.end_s, fillcolor=COLOURS["fused"], opacity=0.3 if i == 0 else 0.1,
                      line_width=0, **({"annotation_text": "#1", "annotation_position": "top left"} if i == 0 else {}))
    for s, spans in loc.spans.items():
        if spans:
            sp = spans[0]
            fig.add_trace(go.Scatter(x=[(sp.start_s + sp.end_s) / 2], y=[sp.score], mode="markers",
                                     name=f"best span: {STREAM_TITLES.get(s, s)}", showlegend=False,
                                     marker={"color": COLOURS.get(s), "size": 11, "symbol": "diamond"},
                                     hovertemplate=f"{STREAM_TITLES.get(s, s)} #1: {sp.start_s:.1f}–{sp.end_s:.1f} s, "
                                                   f"score {sp.score:.3f}<extra></extra>"))
    true = rec.truth.get(text.strip())
    if true:
        fig.add_vrect(x0=true[0], x1=true[1], line={"color": "#111827", "dash": "dash", "width": 1.5},
                      fillcolor="rgba(0,0,0,0)", annotation_text="true span", annotation_position="bottom left")
    fig.update_layout(height=height, margin={"l": 50, "r": 20, "t": 50, "b": 45}, hovermode="x unified",
                      title={"text": f"“{short_label(text, 80)}” in {rec.label}", "font": {"size": 13}},
                      xaxis={"title": {"text": "time (s)"}, "range": [0, max(tl.duration_s, 1e-3)]},
                      yaxis={"title": {"text": "score"}}, legend={"orientation": "h", "y": -0.22})
    return fig


# --------------------------------------------------------------------------------------------------
# the tab
# --------------------------------------------------------------------------------------------------

def recordings_tab(be: AppBackend, live: LiveQueries | None = None, service: RecordingsService | None = None):
    """Add the "Find in a recording" tab (call inside ``gr.Tabs()``); returns the service."""
    import gradio as gr

    svc = service or RecordingsService(be, live)
    streams = be.streams
    with gr.Tab("Find in a recording", id="recordings"):
        if svc.unavailable:
            gr.Markdown(f"⚠️ {svc.unavailable}", elem_id="rec-unavailable")
            return svc
        choices = svc.choices()
        gr.Markdown("Where is a sentence signed inside a long recording? Pick a gallery recording or upload one, "
                    "type a sentence, press **Find**. " + svc.limits_text()
                    + (f" ({svc.gallery_note})" if svc.gallery_note else ""), elem_id="rec-limits")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                pick = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None,
                                   label="Gallery recording", elem_id="rec-pick")
                upload = gr.Video(label=f"…or upload a recording (≤ {svc.max_minutes:g} min)", sources=["upload"],
                                  include_audio=True, elem_id="rec-upload", height=200)
            with gr.Column(scale=2):
                with gr.Row():
                    text = gr.Textbox(label="Sentence", placeholder="Type a sentence …", scale=4, elem_id="rec-text",
                                      lines=1, max_length=MAX_TEXT_CHARS)
                    run = gr.Button("Find", variant="primary", scale=1, elem_id="rec-run")
                ex = svc.example_sentences()
                if ex:
                    gr.Examples([[t] for t in ex], inputs=[text], label="Sentences signed in the example recording")
                status = gr.Markdown("", elem_id="rec-status", elem_classes=["seds-status"])
        plot = gr.Plot(label="score over time", elem_id="rec-timeline")
        with gr.Row():
            with gr.Column(scale=3):
                table = gr.Dataframe(headers=["#", "stream", "from", "to", "score", "scored on"], label="Top spans per stream",
                                     interactive=False, elem_id="rec-spans")
            with gr.Column(scale=2):
                which = gr.Dropdown(label="Play span", choices=[], elem_id="rec-span-pick")
                clip = gr.Video(label="Span preview (½ s before and after)", interactive=False, autoplay=True,
                                loop=True, elem_id="rec-preview", height=260)
        gr.Markdown("### Why? Clip × word similarity of the chosen span")
        heat = gr.Plot(label="clip × word similarity E", elem_id="rec-heatmap")
        gr.Markdown("### The sentence in every indexed recording")
        all_table = gr.Dataframe(headers=["#", "recording", "from", "to", "score", "scored on"], interactive=False,
                                 label="Fused stream, best spans over all indexed recordings", elem_id="rec-all")

        outputs = [state, status, plot, table, which, clip, heat, all_table]

        def empty(msg: str):
            return [None, msg, None, [], gr.update(choices=[], value=None), None, None, []]

        def new_upload(path):
            if not path:
                return "", gr.skip()
            try:
                return svc.plan(path), None
            except QueryError as e:
                return f"⚠️ {e}", None

        def picked(_):
            return None, ""

        def show_span(st, key):
            """Preview + heatmap of span ``key`` ("stream:index") of the answer on screen."""
            if st is None or not key:
                return None, None
            rec, loc, sentence = st
            s, i = key.split(":")
            sp = loc.spans[s][int(i)]
            try:
                fig = explanation_figure(svc.explanation(rec, sentence, sp.first, sp.stop))
            except QueryError as e:
                gr.Warning(str(e))
                fig = None
            return svc.preview(rec, sp.start_s, sp.end_s), fig

        def find(rid, path, sentence, progress=gr.Progress()):
            try:
                sentence = svc.check_text(sentence)
                if path:
                    def report(stage, frac):
                        progress(min(max(frac, 0.0), 1.0), desc=f"extracting the recording: {stage}")
                    rec = svc.upload(path, report)
                elif rid:
                    rec = svc.gallery(rid)
                else:
                    raise QueryError("Pick a gallery recording or upload one first.")
                loc = svc.find(rec, sentence)
                everywhere = svc.search_all(sentence)
            except QueryError as e:
                gr.Warning(str(e))
                return empty(f"⚠️ {e}")
            msg = status_text(loc, rec, svc.cfg)
            if be.is_synthetic and rec.key.startswith("upload:") and loc.status != NO_SIGNING:
                msg += ("\n\n⚠️ **Real video, synthetic model**: this checkpoint was trained only on synthetic cartoon "
                        "signing, so these spans mean nothing on real signing.")
            fig = timeline_figure(loc, rec, sentence) if loc.status != NO_SIGNING else None
            ch = span_choices(loc, streams)
            st = (rec, loc, sentence)
            video, heatmap = show_span(st, ch[0][1]) if ch else (None, None)
            return [st, msg, fig, span_rows(loc, streams), gr.update(choices=ch, value=ch[0][1] if ch else None),
                    video, heatmap, everywhere]

        upload.upload(new_upload, [upload], [status, pick], show_progress="hidden")
        pick.input(picked, [pick], [upload, status], show_progress="hidden")
        for trigger in (run.click, text.submit):
            trigger(find, [pick, upload, text], outputs, concurrency_id="recordings", concurrency_limit=2,
                    show_progress_on=[status])
        which.input(show_span, [state, which], [clip, heat], show_progress="hidden")
    return svc
