"""The retrieval engine: a checkpoint + a gallery, queried with a video file or a sentence (the
library side of ``python -m seds.index search`` and of the app, ``demo/backend.py``).

* **Loading, once**: the checkpoint (:func:`seds.checkpoint.load_checkpoint`), the gallery
  (:class:`seds.retrieval.gallery.Gallery`: a video index for text→video and a sentence index for
  video→text, both :class:`seds.retrieval.gallery_index.GalleryIndex`), the pose estimator and the RGB
  extractor *the checkpoint needs* (:func:`seds.extract.factory.plan_extractors`: a model only understands
  the features it was trained on; the plan names any substitute used); the checkpoint's variant extracts.
* **Video → text** (:meth:`SearchEngine.query_video`): SHA-256 of the file → the gallery's feature
  cache (:meth:`~SearchEngine._cached`), or the checkpoint variant's live extraction (decode → pose → frame filter
  → RGB windows, Sec. 3.1; :meth:`~SearchEngine._extracted`) → the model's per-stream clip features (pose-only,
  RGB-only, fused; Sec. 3.2, :mod:`seds.encode`) → top-k sentences per stream (faiss candidates re-ranked by the
  fine-grained score of Sec. 3.3). The result is data: what the query found is a list of :class:`Note` codes
  with values (worded by :mod:`seds.retrieval.wording` for the app and the CLI), and with ``cfg.preview`` the
  frames and keypoints a preview is drawn from (the app draws it).
* **Text → video** (:meth:`SearchEngine.query_text`): word features → top-k gallery videos per stream.
* **Why** (:meth:`SearchEngine.explain`): the clip×word similarity matrices ``E`` (Sec. 3.3, as in the
  paper's Fig. 6) of one (video, sentence) pair for every stream, with clip times in seconds.

Every problem a user can cause (no file, not a video, corrupt, empty, no signer, empty text, a text
over ``MAX_TEXT_CHARS``, frames over the size limit, ...) raises :class:`QueryError` with a message meant
for a person; the engine stays usable afterwards. Messages and results of video queries name nothing of
the uploader (no file name or path: an app may show one user's answer for the same bytes to another), and
frame sizes are checked from the file's headers before anything is decoded (:func:`seds.extract.video.probe`).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from seds.checkpoint import CheckpointError, load_checkpoint
from seds.clips import WINDOW, clip_times
from seds.config import ConfigError
from seds.data.features import VideoFeatures
from seds.encode import EncodeError, encode_sentences, encode_videos, word_labels
from seds.extract.factory import (RGBFeaturesError, make_rgb_extractor, plan_extractors, probe_pose_backend,
                                  rgb_weights)
from seds.extract.pipeline import ExtractionError
from seds.extract.pose import NoSignerError, PoseBackendUnavailable, PoseError, make_pose_estimator
from seds.extract.video import Budget, VideoError, probe, read_video
from seds.hub import parse_spec, resolve_checkpoint, resolve_gallery
from seds.keypoints import N_BODY, N_HAND
from seds.retrieval.gallery import Gallery, checkpoint_fingerprint, file_sha256
from seds.retrieval.gallery_index import GalleryIndexError
from seds.retrieval.inputs import QueryError, check_text, check_upload, short_label, without_path
from seds.similarity import clip_word_matrix, fine_grained_scores
from seds.variants import variant_of

log = logging.getLogger(__name__)

STREAM_ORDER = ("pose", "rgb", "fused")
CPU_I3D_MEMORY_MB = 512      # I3D activation budget per batch of windows on CPU (bounds a query's peak RSS)
ProgressFn = Callable[[str, float], None]


class QueryTimeout(QueryError):
    """A query ran past ``EngineConfig.query_timeout_s`` (waiting included)."""


@dataclass
class EngineConfig:
    """What a :class:`SearchEngine` loads and how it answers (the app's ``AppConfig`` extends it)."""
    checkpoint: str = "checkpoints/demo"
    gallery: str = "examples/gallery"
    pose_backend: str = "auto"          # auto: the checkpoint's training backend when it runs here, else MediaPipe
    pose_stride: int = 1                # pose on every s-th frame, the rest interpolated (results/pose_stride.md)
    i3d_weights: str = ""               # I3D checkpoint for models trained on BSL-1K features (else Kinetics-400)
    i3d_compile: bool = False           # CPU: I3D through torch.compile (1.76x less CPU per window; compiled once,
                                        # by warm_up() or the first query: benchmarks/results/i3d.md); ignored on GPU
    device: str = "auto"
    top_k: int = 5
    rerank: int = 100
    max_clips: int = 32        # benchmarks/results/query_windows.md: V2T R@1 52 / 80 / 84 % at T = 8 / 16 / 32
    max_seconds: float = 20.0
    preview: bool = False               # return the frames (and keypoints) a preview is drawn from
    preview_short_side: int | None = None   # cached gallery videos are decoded for it at this size (None: max_short_side)
    # limits on uploaded videos (README "Security and limits"): bounded memory whatever the resolution/length
    max_short_side: int = 480                # frames are decoded with the shorter side scaled down to this
    max_frame_pixels: int = 4096 * 2304      # larger source frames (width × height) are refused (4K is fine)
    max_pixels: int = 250_000_000            # decoded frames of one query, in all (≈ 750 MB of RGB)
    # concurrency: extraction models run one query at a time; these bound waiting and memory
    query_timeout_s: float = 120.0           # a query (waiting for the extractor included) ends after this
    max_live_queries: int = 2                # uploads being decoded/extracted at once (each holds its frames)

    def __post_init__(self):
        if not 1 <= self.top_k <= 50:
            raise ConfigError(f"top_k: must be in [1, 50], got {self.top_k}")
        if self.rerank < 0:
            raise ConfigError(f"rerank: must be ≥ 0, got {self.rerank}")
        if not 1 <= self.max_clips <= 4096:
            raise ConfigError(f"max_clips: must be ≥ 1, got {self.max_clips}")
        if not self.max_seconds > 0:
            raise ConfigError(f"max_seconds: must be > 0, got {self.max_seconds}")
        if not self.query_timeout_s > 0:
            raise ConfigError(f"query_timeout_s: must be > 0, got {self.query_timeout_s}")
        for name in ("pose_stride", "max_short_side", "max_frame_pixels", "max_pixels", "max_live_queries"):
            if not getattr(self, name) >= 1:
                raise ConfigError(f"{name}: must be ≥ 1, got {getattr(self, name)}")


def resolve_device(name: str) -> torch.device:
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise QueryError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu or auto")
    return dev


def scale_keypoints(feats: VideoFeatures, size: tuple[int, int], source: tuple[int, int]) -> np.ndarray:
    """``feats.keypoints`` moved to frames of ``size`` = (width, height) from the pixel space they were
    extracted in (``meta.frame_width/height``, else the video's ``source`` size)."""
    m = feats.meta
    w0 = m.get("frame_width") or source[0]
    h0 = m.get("frame_height") or source[1]
    k = np.array(feats.keypoints, dtype=np.float32)
    k[..., 0] *= size[0] / float(w0)
    k[..., 1] *= size[1] / float(h0)
    return k


def hand_presence(raw_kpts: np.ndarray, conf: float = 0.3, min_points: int = 10) -> tuple[float, float]:
    """Fraction of frames in which the (subject's) left / right hand is visible."""
    ok = np.nan_to_num(raw_kpts[..., 2]) >= conf
    left = (ok[:, N_BODY:N_BODY + N_HAND].sum(1) >= min_points).mean()
    right = (ok[:, N_BODY + N_HAND:N_BODY + 2 * N_HAND].sum(1) >= min_points).mean()
    return float(left), float(right)


# --- results ------------------------------------------------------------------------------------------------

# What a video query found, as codes with values (a UI words them: demo/backend.py, python -m seds.index)
NOTE_CACHED = "features_from_gallery_cache"       # pose_backend: what made the cached keypoints
NOTE_TRIMMED = "video_trimmed"                     # max_seconds: only the first seconds were used
NOTE_TRUNCATED = "file_truncated"                  # source_frames of reported_frames could be decoded
NOTE_FRAMES_SKIPPED = "frames_skipped"             # skipped of decoded frames showed no signer or no hand
NOTE_PADDED = "last_frame_repeated"                # usable frames < window
NOTE_HAND_RARE = "hand_rarely_found"               # hand ("left" / "right") found in fraction of the frames
NOTE_EXTRACTED = "features_extracted"              # pose_backend, rgb_features, windows, window_rule
NOTE_SUBSTITUTES = "substitute_extractors"         # lines: the plan's lines of the parts that are substitutes


@dataclass(frozen=True)
class Note:
    code: str                                    # one of NOTE_*
    values: dict = field(default_factory=dict)


@dataclass
class PreviewFrames:
    """The frames of a query video and their keypoints (pixels of those frames): what a preview draws."""
    frames: np.ndarray
    keypoints: np.ndarray
    fps: float


@dataclass
class FoundFeatures:
    """A query video's features from one source (the gallery's cache or a live extraction)."""
    features: VideoFeatures
    source: str                                  # "cache" or "extracted"
    times: np.ndarray                            # window centres (s)
    notes: list[Note]
    timings: dict[str, float]
    preview: PreviewFrames | None = None


@dataclass
class VideoQuery:
    """A video query's features, embedding and per-stream top-k sentences."""
    features: VideoFeatures
    source: str                                  # "cache" or "extracted"
    clips: dict[str, torch.Tensor]               # stream → (T, D) float32 CPU
    clip_mask: torch.Tensor                      # (T,) bool
    clip_times: np.ndarray                       # (T,) seconds
    hits: dict[str, list]                        # stream → [seds.retrieval.gallery_index.Hit] (sentences)
    timings: dict[str, float]
    notes: list = field(default_factory=list)    # the engine's: Note codes; the app's: its sentences for them
    preview: str | None = None                   # skeleton-overlay video (drawn by the app)
    sha256: str = ""
    gallery_id: str | None = None                # set when the file is a gallery video
    true_text: str | None = None                 # its sentence, when known
    preview_frames: PreviewFrames | None = None  # with cfg.preview: what the preview is drawn from


@dataclass
class TextQuery:
    text: str
    words: torch.Tensor                          # (L, D)
    word_mask: torch.Tensor                      # (L,)
    labels: list[str]
    hits: dict[str, list]                        # stream → [Hit] (videos)
    timings: dict[str, float]


@dataclass
class Explanation:
    """Clip×word similarity matrices of one (video, sentence) pair: ``matrices[stream]`` is
    ``(T, L)`` over the valid clips (rows, at ``times`` seconds) and words (columns, ``words``);
    ``scores[stream]`` the retrieval score ½ (M_t2k + M_k2t) of the pair."""
    matrices: dict[str, np.ndarray]
    scores: dict[str, float]
    times: np.ndarray
    words: list[str]
    video_label: str = ""
    sentence: str = ""


# ---------------------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------------------

class SearchEngine:
    """A checkpoint and its gallery, loaded once and shared by all requests. Thread-safe: only the
    extraction models (pose, RGB) run under a lock, one query at a time; checking and decoding an upload,
    cached gallery videos, encoding and search run concurrently. At most ``max_live_queries`` uploads
    hold decoded frames at once, and every query ends by ``query_timeout_s`` (waits included)."""

    def __init__(self, cfg: EngineConfig | None = None, *, pose_estimator=None, rgb_extractor=None,
                 preload: bool = False, resolve_path: Callable[[str], Path] | None = None):
        self.cfg = cfg or EngineConfig()
        self.resolve_path = resolve_path or (lambda p: Path(p).expanduser())   # where a configured path points
        self.device = resolve_device(self.cfg.device)
        t0 = time.perf_counter()
        ckpt = self.cfg.checkpoint
        try:        # a local folder, or a Hub model repo (its cached snapshot)
            ckpt = resolve_checkpoint(self.resolve_path(ckpt))
            self.model, _, self.model_cfg, self.ckpt_info = load_checkpoint(ckpt, self.device)
        except (CheckpointError, FileNotFoundError) as e:
            raise QueryError(f"cannot load the checkpoint {ckpt}: {e}") from e
        self.checkpoint_path = ckpt      # named as given for a Hub repo (its cached folder is a commit hash)
        self.checkpoint_name = str(self.cfg.checkpoint) if parse_spec(self.cfg.checkpoint) else str(ckpt)
        self.fingerprint = checkpoint_fingerprint(ckpt)
        self.plan, probed = plan_extractors(self.model_cfg, self.ckpt_info, self.cfg.pose_backend,
                                            self.cfg.i3d_weights or None,
                                            probe=probe_pose_backend if pose_estimator is None
                                            else (lambda name: (None, "a pose estimator was given")))
        self.rgb_features = self.plan.rgb_features
        self.variant = variant_of(self.model_cfg)
        try:
            weights = rgb_weights(self.rgb_features)                # validates the name
        except RGBFeaturesError as e:
            raise QueryError(str(e)) from e
        if weights not in (None, "kinetics400") and not Path(weights).expanduser().is_file():
            raise QueryError(f"the RGB extractor's I3D weights {weights} do not exist (the checkpoint's "
                             "data.rgb_features, or --i3d-weights / SEDS_I3D_WEIGHTS): no live query could be answered")
        gpath = self.cfg.gallery
        try:        # a local folder, or a Hub dataset repo (its cached snapshot)
            gpath = resolve_gallery(self.resolve_path(gpath))
            self.gallery = Gallery.load(gpath, device=self.device)
        except (GalleryIndexError, CheckpointError, FileNotFoundError) as e:
            raise QueryError(f"cannot load the gallery {gpath}: {e}") from e
        try:
            self.gallery.check_checkpoint(self.fingerprint)
        except GalleryIndexError as e:
            raise QueryError(str(e)) from e
        self.cache = self.gallery.cache
        self._sha_to_video = {}
        if self.gallery.videos is not None:
            for vid in self.gallery.videos.ids:
                sha = self.gallery.videos.meta(vid).get("sha256")
                if sha:
                    self._sha_to_video[sha] = vid
        self.streams = tuple(s for s in STREAM_ORDER if s in self._model_streams())
        self.max_clips = self.variant.live_max_clips(self.cfg.max_clips, self.model_cfg.model.max_clips)
        self._pose = pose_estimator or probed
        self._rgb = rgb_extractor
        self._extractor = None
        self._lock = threading.Lock()           # the extraction models (pose, RGB) are not thread-safe
        self._build_lock = threading.Lock()     # building them happens once
        self._live = threading.BoundedSemaphore(self.cfg.max_live_queries)
        self._probes = threading.BoundedSemaphore(self.cfg.max_live_queries)   # header reads / decoder opens at once
        self.extractions = 0                                        # extraction pipeline runs (tests, logs)
        self.load_seconds = time.perf_counter() - t0
        if preload:
            self.extractor()

    # -- setup --------------------------------------------------------------------------------------
    def _model_streams(self) -> tuple[str, ...]:
        s = tuple(self.model_cfg.model.streams)
        return s + ("fused",) if len(s) == 2 else s

    @property
    def is_synthetic(self) -> bool:
        return self.rgb_features == "synthetic-proxy" or self.model_cfg.data.dataset == "synthetic"

    @property
    def rgb_compiled(self) -> bool:
        """Whether the loaded RGB extractor runs through ``torch.compile`` (I3D with ``i3d_compile`` on CPU)."""
        owner = getattr(self._extractor, "exporter", self._extractor)
        return bool(getattr(getattr(owner, "rgb", None), "compiled", False))

    @property
    def extractor_ready(self) -> bool:
        """Whether the extraction pipeline is loaded (the first live query loads it)."""
        return self._extractor is not None

    def extractor(self):
        """The extraction pipeline (built on first use: MediaPipe + I3D take seconds to load)."""
        with self._build_lock:
            return self._build_extractor()

    def _build_extractor(self):
        if self._extractor is None:
            backend = self.plan.pose_backend
            try:
                pose = self._pose or make_pose_estimator(backend)     # the extractor runs it at cfg.pose_stride
            except (PoseError, PoseBackendUnavailable, ImportError) as e:
                raise QueryError(f"pose backend {backend!r} is not usable: {e}") from e
            try:
                budget = CPU_I3D_MEMORY_MB if self.device.type == "cpu" else None   # RSS, not GPU memory
                rgb = self._rgb or make_rgb_extractor(self.rgb_features, self.device, memory_budget_mb=budget,
                                                      i3d_compile=self.cfg.i3d_compile and self.device.type == "cpu")
            except RGBFeaturesError as e:
                log.error("the RGB extractor could not be loaded: %s", e)
                raise QueryError("The RGB extractor could not be loaded on this server (the server log says why): "
                                 "live video queries are not available.") from e
            self._extractor = self.variant.live_extractor(
                pose_backend=backend, rgb_weights=str(rgb_weights(self.rgb_features)), device=self.device, pose=pose,
                rgb=rgb, pose_stride=self.cfg.pose_stride, max_clips=self.max_clips, max_seconds=self.cfg.max_seconds,
                budget=Budget(self.cfg.max_short_side, self.cfg.max_frame_pixels, self.cfg.max_pixels))
        return self._extractor

    def warm_up(self) -> float:
        """Build the extraction models and, with ``i3d_compile``, compile I3D on one window of a blank clip
        (a server calls this at start, so that no user query pays the compilation). Returns the seconds."""
        t0 = time.perf_counter()
        ex = self.extractor()
        owner = getattr(ex, "exporter", ex)            # the official layout's extractor holds an exporter
        rgb = getattr(owner, "rgb", None) if self.cfg.i3d_compile else None
        if rgb is not None and getattr(rgb, "compiled", False):
            with self._lock:
                rgb.features(np.zeros((16, 224, 224, 3), np.uint8), np.zeros(1, np.int64))
        return time.perf_counter() - t0

    # -- video → text -------------------------------------------------------------------------------
    def query_video(self, path, progress: ProgressFn | None = None, k: int | None = None,
                    sha256: str | None = None, probed: bool = False) -> VideoQuery:
        """Top-k sentences per stream for a video file: its features (the gallery's cache by SHA-256, else a live
        extraction) → clip features → search. ``sha256``: the file's hash when the caller has it; ``probed``: its
        headers were checked already (:meth:`check_video`)."""
        if self.gallery.sentences is None:
            raise QueryError("this gallery has no sentences: video → text search is not available")
        path = check_upload(path)
        deadline = time.monotonic() + self.cfg.query_timeout_s
        user_report = progress or (lambda stage, frac: None)

        def report(stage, frac):         # progress is reported often: the time limit is checked there too
            self._check_deadline(deadline)
            user_report(stage, frac)
        t_all = t = time.perf_counter()
        sha = sha256 or file_sha256(path)
        timings = {"hash": time.perf_counter() - t}
        cached = self.cache.get(sha) if self.cache is not None else None
        found = self._cached(cached, path, report) if cached is not None else \
            self._extracted(path, sha, report, deadline, probed)
        timings.update(found.timings)
        report("embed", 0.97)
        t = time.perf_counter()
        try:
            streams, mask = encode_videos(self.model, [found.features])
        except EncodeError as e:
            raise QueryError(str(e)) from e
        clips, clip_mask = {s: streams[s][0] for s in self.streams}, mask[0]
        timings["embed"] = time.perf_counter() - t
        report("search", 0.98)
        t = time.perf_counter()
        hits = self.search_sentences(clips, clip_mask, k)
        timings["search"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all
        gid = self._sha_to_video.get(sha)
        true_text = (self.gallery.videos.meta(gid).get("text") or None) if gid is not None else None
        report("done", 1.0)
        return VideoQuery(found.features, found.source, clips, clip_mask, found.times, hits, timings, found.notes,
                          None, sha, gid, true_text, found.preview)

    def _cached(self, feats: VideoFeatures, path: Path, report: ProgressFn) -> FoundFeatures:
        """A gallery video: its cached features (and, for a preview, its frames decoded at the preview's size)."""
        notes = [Note(NOTE_CACHED, {"pose_backend": feats.meta.get("pose_backend", "cached")})]
        if feats.num_clips > self.model_cfg.model.max_clips:
            raise QueryError(f"cached features have {feats.num_clips} clips > model max_clips")
        timings, preview = {}, None
        if self.cfg.preview:    # decoded straight to the preview's size; keypoints follow
            t = time.perf_counter()
            report("decode", 0.05)
            try:
                dec = read_video(path, fps=feats.fps, max_seconds=self.cfg.max_seconds, trim_long=True,
                                 budget=Budget(self.cfg.preview_short_side or self.cfg.max_short_side,
                                               self.cfg.max_frame_pixels, self.cfg.max_pixels))
                preview = PreviewFrames(dec.frames, scale_keypoints(feats, dec.frame_size, (dec.width, dec.height)),
                                        feats.fps)
            except VideoError:
                preview = None
            timings["decode"] = time.perf_counter() - t
        return FoundFeatures(feats, "cache", clip_times(feats.clip_starts, feats.fps), notes, timings, preview)

    def _extracted(self, path: Path, sha: str, report: ProgressFn, deadline: float, probed: bool) -> FoundFeatures:
        """A new video: the live extraction (the checkpoint's variant chooses how), its notes."""
        try:
            res = self._extract(path, report, deadline, probed)
        except NoSignerError as e:
            raise QueryError(f"No signer found in this video ({without_path(str(e), path)}). Use a "
                             "front-facing video that shows the signer's upper body and hands.") from e
        except VideoError as e:
            raise self.unusable_video(e, path) from e
        except (PoseError, ExtractionError) as e:
            raise QueryError(f"Feature extraction failed: {without_path(str(e), path)}") from e
        except MemoryError as e:
            raise QueryError("Out of memory while extracting features: try a shorter or smaller video.") from e
        feats = res.features
        feats.meta["video"] = f"upload-{sha[:16]}"      # not the uploader's file name
        timings = {st: res.timings.get(st, 0.0) for st in ("decode", "pose", "filter", "rgb")}
        live = self.variant.live_frames(feats, res.keep, len(res.frames))
        notes = self._extraction_notes(feats, live, int(np.count_nonzero(res.keep)), len(res.keep))
        preview = PreviewFrames(res.frames, feats.keypoints, feats.fps) if self.cfg.preview else None
        return FoundFeatures(feats, "extracted", live.times, notes, timings, preview)

    def _extraction_notes(self, feats: VideoFeatures, live, n_kept: int, n_dec: int) -> list[Note]:
        m, notes = feats.meta, []
        if m.get("trimmed"):
            notes.append(Note(NOTE_TRIMMED, {"max_seconds": self.cfg.max_seconds}))
        if m.get("truncated"):
            notes.append(Note(NOTE_TRUNCATED, {"source_frames": m.get("source_frames"),
                                               "reported_frames": m.get("reported_frames")}))
        if n_dec - n_kept > 0:
            notes.append(Note(NOTE_FRAMES_SKIPPED, {"skipped": n_dec - n_kept, "decoded": n_dec}))
        if live.padded > 0:
            notes.append(Note(NOTE_PADDED, {"usable": n_kept, "window": WINDOW}))
        left, right = hand_presence(live.kept_keypoints)
        for name, frac in (("left", left), ("right", right)):
            if frac < 0.1:
                notes.append(Note(NOTE_HAND_RARE, {"hand": name, "fraction": frac}))
        notes.append(Note(NOTE_EXTRACTED, {"pose_backend": self.plan.pose_backend, "rgb_features": self.rgb_features,
                                           "windows": feats.num_clips, "window_rule": self.variant.live_windows}))
        subs = [f"{part}: {line}" for part, line in self.plan.describe().items() if "substitute" in line]
        if subs:
            notes.append(Note(NOTE_SUBSTITUTES, {"lines": subs}))
        return notes

    def search_sentences(self, clips: dict[str, torch.Tensor], clip_mask: torch.Tensor, k: int | None = None):
        """Top-k gallery sentences per stream for a video's clip features."""
        k = k or self.cfg.top_k
        return {s: self.gallery.sentences.search(clips[s], clip_mask, stream="text", k=k, rerank=self.cfg.rerank)
                for s in self.streams}

    def _timeout(self) -> QueryTimeout:
        return QueryTimeout(f"This query took longer than the limit of {self.cfg.query_timeout_s:g} s (the server "
                            "may be busy with other videos): try again later, or with a shorter video.")

    def _check_deadline(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise self._timeout()

    def _wait(self, lock, deadline: float) -> None:
        """Acquire ``lock`` (or semaphore) by the query's deadline, else end the query."""
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise self._timeout()

    @staticmethod
    def unusable_video(e: VideoError, path: Path) -> QueryError:
        """The user's message for a video the decoders refuse, naming nothing of the upload."""
        detail = without_path(str(e), path).lstrip(": ").split(" (")[0]
        return QueryError(f"This file cannot be used as a video: {detail}.")

    def check_video(self, path: Path, deadline: float | None = None):
        """The upload's header facts (:func:`probe`), with frames over ``max_frame_pixels`` refused from the
        file's headers before any frame is decoded; at most ``max_live_queries`` such checks at once (a
        decoder's open decodes a frame where no header tool is installed). Raises :class:`QueryError`."""
        deadline = time.monotonic() + self.cfg.query_timeout_s if deadline is None else deadline
        self._wait(self._probes, deadline)
        try:
            return probe(path, Budget(max_frame_pixels=self.cfg.max_frame_pixels))
        except VideoError as e:
            raise self.unusable_video(e, path) from e
        finally:
            self._probes.release()

    def _extract(self, path: Path, report: ProgressFn, deadline: float, probed: bool = False):
        """Decode outside the model lock, then pose + RGB under it. At most ``max_live_queries`` uploads
        hold decoded frames at once; every wait ends at the query's deadline."""
        with self._build_lock:
            self.extractions += 1
        if not probed:      # not a video / too large / no frames: refused at once, no decoding
            self.check_video(path, deadline)
        ex = self.extractor()
        self._wait(self._live, deadline)
        try:
            decoded = ex.decode(path, report)
            self._wait(self._lock, deadline)
            try:
                return ex.extract_decoded(decoded, progress=report)
            finally:
                self._lock.release()
        finally:
            self._live.release()

    # -- text → video -------------------------------------------------------------------------------
    def query_text(self, text: str, k: int | None = None) -> TextQuery:
        if self.gallery.videos is None:
            raise QueryError("this gallery has no videos: text → video search is not available")
        text = check_text(text, why=f" (the text encoder reads only its first {self.model_cfg.model.text.max_words} "
                                    "words)")
        k = k or self.cfg.top_k
        t0 = time.perf_counter()
        try:
            words, mask = encode_sentences(self.model, [text])
        except ValueError as e:
            raise QueryError(f"The text cannot be encoded: {e}") from e
        t1 = time.perf_counter()
        w, m = words[0], mask[0]
        hits = {s: self.gallery.videos.search(w, m, stream=s, k=k, rerank=self.cfg.rerank) for s in self.streams}
        t2 = time.perf_counter()
        return TextQuery(text, w, m, [short_label(x) for x in word_labels(self.model, text)], hits,
                         {"embed": t1 - t0, "search": t2 - t1, "total": t2 - t0})

    # -- why ----------------------------------------------------------------------------------------
    def video_side(self, video_id) -> tuple[dict[str, torch.Tensor], torch.Tensor, np.ndarray, str]:
        """Stored clip features of a gallery video: ({stream: (T, D)}, mask (T,), times, label)."""
        g = self.gallery.videos
        if g is None or video_id not in g:
            raise QueryError(f"video {video_id!r} is not in the gallery")
        row = g.row(video_id)
        clips, mask = {}, None
        for s in self.streams:
            f, m = g.stream_data(s)
            clips[s], mask = f[row].float().cpu(), m[row].cpu()
        meta = g.meta(video_id)
        times = np.asarray(meta.get("clip_times") or clip_times(np.arange(int(mask.sum())), meta.get("fps", 24.0)))
        return clips, mask, times, str(video_id)

    def sentence_side(self, sentence_id) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
        g = self.gallery.sentences
        if g is None or sentence_id not in g:
            raise QueryError(f"sentence {sentence_id!r} is not in the gallery")
        f, m = g.stream_data("text")
        row = g.row(sentence_id)
        text = g.meta(sentence_id).get("text", "")
        return f[row].float().cpu(), m[row].cpu(), [short_label(x) for x in word_labels(self.model, text)], text

    def explain(self, clips: dict[str, torch.Tensor], clip_mask: torch.Tensor, times: np.ndarray,
                words: torch.Tensor, word_mask: torch.Tensor, labels: list[str], video_label: str = "",
                sentence: str = "") -> Explanation:
        """E = f^k f^wᵀ of normalised clip and word features (Sec. 3.3) for every stream, restricted to
        valid clips and words, with the pair's score ½ (M_t2k + M_k2t) (the official variant: its own score,
        [CLS] and padding included, while the drawn rows are the clips only)."""
        cm, wm = clip_mask.bool(), word_mask.bool()
        tau = self.model_cfg.model.tau
        sop = self.model_cfg.model.options.softmax_over_padding
        rows = cm.clone()
        if self.model_cfg.model.options.keep_cls_token:   # [CLS] (index 0) counts in the score, not drawn as a clip
            rows[0] = False
        mats, scores = {}, {}
        for s in self.streams:
            v = clips[s].float()
            e = clip_word_matrix(v[None], words.float()[None])[0, 0]            # (T, L)
            mats[s] = e[rows][:, wm].numpy()
            scores[s] = float(fine_grained_scores(v[None], cm[None], words.float()[None], wm[None], tau=tau,
                                                  softmax_over_padding=sop).mean[0, 0])
        n_valid, nw = int(rows.sum()), int(wm.sum())
        labels = list(labels)[:nw] + [f"w{i}" for i in range(len(labels), nw)]
        return Explanation(mats, scores, np.asarray(times)[:n_valid], labels, video_label, sentence)

    def explain_video_query(self, q: VideoQuery, sentence_id) -> Explanation:
        words, wm, labels, text = self.sentence_side(sentence_id)
        return self.explain(q.clips, q.clip_mask, q.clip_times, words, wm, labels, "your video", text)

    def explain_text_query(self, q: TextQuery, video_id) -> Explanation:
        clips, mask, times, label = self.video_side(video_id)
        return self.explain(clips, mask, times, q.words, q.word_mask, q.labels, label, q.text)

    def video_path(self, video_id) -> str | None:
        """Absolute path of a gallery video's file (None when the gallery has no file for it)."""
        return self.gallery.video_path(video_id)

    def close(self) -> None:
        """Release what the engine holds (nothing on disk here)."""
