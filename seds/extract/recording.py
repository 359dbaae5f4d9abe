"""Long recordings (broadcasts, lectures, untrimmed How2Sign videos) through extraction with bounded memory.

A trimmed clip is decoded whole, filtered and described by at most 64 windows (:mod:`seds.extract.pipeline`,
Sec. 3.1). A recording of any length is instead **streamed**: :class:`RecordingExtractor` decodes it in
chunks of ``chunk_frames`` frames (:class:`seds.extract.video.VideoStream`, never the whole video), runs the
pose backend on each chunk with its tracking continued across chunks, and computes the RGB features of every
16-frame window whose first frame lies in the chunk (the window's last 15 frames come from the next chunk's
start, decoded once and carried over). Windows lie along the whole timeline at a fixed stride
(``window_stride``, default 8 frames = 1/3 s at 24 fps: every frame is in two windows, and a span boundary is
resolved to 1/3 s; stride 16 halves the RGB cost, stride 1 is the paper's dense sliding window).

What is stored (one ordinary :class:`VideoFeatures` file per recording in the feature store):

* ``keypoints`` of *every* frame (no frame is dropped: frame index = time × fps), ``clip_starts`` =
  ``0, S, 2S, …`` (:func:`recording_window_starts`; window i covers ``[start_i, start_i + 16) / fps`` s), one
  ``rgb`` row per window;
* ``meta["kind"] = "recording"``, ``window``, ``window_stride``, ``duration_s``, and per window ``presence``:
  the fraction of its frames that show a signer with a visible hand (the Sec. 3.1 frame test,
  :func:`window_presence`), with ``signing_windows`` / ``no_signer`` (no window at ≥ 0.5: "no signing found").

Frames are scaled by the decoder to a shorter side of at most ``max_short_side`` = 360 pixels by default (the
640×360 of the How2Sign-mini features the checkpoints here were trained on; MediaPipe's buffers grow with the
frame size, and I3D sees a 224² crop anyway); ``None`` keeps the full resolution.
Memory is bounded by one chunk of decoded frames (``chunk_mb``, 256 MiB by default, whatever the resolution)
plus the backends plus the features themselves (≈ 135 MB per hour at stride 8: 87 × 3 floats per frame,
1024 per window); the decoder holds nothing between chunks (:class:`~seds.extract.video.VideoStream` drops
decord's decoded-ahead backlog after every read, which otherwise grew with the recording: 2.7 GB at 5 minutes
of 720p). Measured: ``benchmarks/results/recording_extract.md``. Time limits (``max_seconds``) and the frame
size (``max_frame_pixels``) are checked from the headers before any decoding.

**Resumable**: with a ``work_dir`` (the runner gives ``FeatureStore.work_dir(id)``) every finished chunk is
written there atomically; a killed run restarts at the first missing chunk, and chunks of another version of
the file or of other settings (a fingerprint of both) are discarded. A corrupt or truncated file raises
:class:`~seds.extract.video.VideoError` and its chunk folder is removed: nothing half-written stays behind.
After a resume, pose tracking restarts at the first new chunk (MediaPipe re-detects the signer there).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from seds.atomic import atomic_write_bytes
from seds.clips import WINDOW, num_windows
from seds.data.features import RGB_DIM, STORE_LAYOUT, VideoFeatures
from seds.data.store import TMP_SUFFIX, FeatureStore, load_features
from seds.extract.pose import FrameFilter, PoseEstimator, frame_presence
from seds.extract.pose_stride import check_stride, strided_backend
from seds.extract.video import Budget, VideoError, VideoStream

DEFAULT_WINDOW_STRIDE = 8      # frames between window starts (1/3 s at 24 fps)
PRESENT = 0.5                  # a window "shows signing" when at least this fraction of its frames does
CHUNK_FORMAT = "seds.recording_chunk"
MAX_FRAME_PIXELS = 4096 * 2304   # source frames (width × height) above 4K are refused before decoding
STAGES = ("pose", "rgb", "done")
ProgressFn = Callable[[str, float], None]


class RecordingError(ValueError):
    """Settings or a stage output that a recording cannot be extracted with."""


@dataclass
class RecordingConfig:
    """Streaming extraction settings (see the module docstring)."""

    fps: float = 24.0
    window: int = WINDOW
    window_stride: int = DEFAULT_WINDOW_STRIDE
    chunk_seconds: float = 32.0        # frames per chunk: this many seconds ...
    chunk_mb: float = 256.0            # ... unless a chunk's decoded frames would take more MiB than this
    pose_backend: str = "mediapipe"
    pose_options: dict = field(default_factory=dict)
    pose_stride: int = 1
    max_seconds: float | None = None   # longer recordings are refused (the message names the limit)
    allow_partial: bool = False        # a truncated file: use the frames that are there
    resize_short: int | None = None
    crop: tuple[int, int, int, int] | None = None
    max_short_side: int | None = 360   # frames with a larger shorter side are scaled down by the decoder
    max_frame_pixels: int | None = MAX_FRAME_PIXELS   # larger source frames are refused from the headers
    filter: FrameFilter = field(default_factory=FrameFilter)   # the presence test (frames are never dropped)

    def __post_init__(self):
        if isinstance(self.filter, dict):
            self.filter = FrameFilter(**self.filter)
        if not self.fps or self.fps <= 0:
            raise RecordingError(f"RecordingConfig.fps must be positive, got {self.fps}")
        for name in ("window", "window_stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise RecordingError(f"RecordingConfig.{name} must be an integer ≥ 1, got {v!r}")
        if self.chunk_seconds <= 0 or self.chunk_mb <= 0:
            raise RecordingError("RecordingConfig.chunk_seconds and chunk_mb must be positive")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise RecordingError(f"RecordingConfig.max_seconds must be positive, got {self.max_seconds}")
        self.pose_stride = check_stride(self.pose_stride)

    def chunk_frames(self, frame_bytes: int) -> int:
        """Frames per chunk: ``chunk_seconds`` of frames, fewer if their ``frame_bytes`` each (plus the
        ``window - 1`` carried over) exceed ``chunk_mb``; a multiple of both strides, at least one of each."""
        unit = math.lcm(self.window_stride, self.pose_stride)
        by_time = int(round(self.chunk_seconds * self.fps))
        by_bytes = int(self.chunk_mb * 2**20 // max(1, frame_bytes)) - (self.window - 1)
        return max(unit, min(by_time, by_bytes) // unit * unit)


def recording_window_starts(n_frames: int, window: int = WINDOW, stride: int = DEFAULT_WINDOW_STRIDE) -> np.ndarray:
    """``0, stride, 2·stride, …``: every window of ``window`` frames that fits in ``n_frames`` (one window
    at 0 for a recording shorter than a window, which is padded)."""
    return np.arange(num_windows(n_frames, window, stride), dtype=np.int64) * stride


def window_presence(keypoints: np.ndarray, clip_starts: np.ndarray, window: int = WINDOW,
                    frame_filter: FrameFilter = FrameFilter()) -> np.ndarray:
    """``(T,)`` float32: per window, the fraction of its ``window`` frames that pass ``frame_filter``'s test
    (a signer and, if it requires one, a visible hand) — computed from store-layout keypoints in O(frames)."""
    signer, hand = frame_presence(np.asarray(keypoints), frame_filter.conf, frame_filter.min_body_points,
                                  frame_filter.min_hand_points)
    ok = np.ones(len(signer), bool)
    if frame_filter.require_signer:
        ok &= signer
    if frame_filter.require_hand:
        ok &= hand
    c = np.concatenate([[0], np.cumsum(ok)])
    s = np.asarray(clip_starts, dtype=np.int64)
    return ((c[np.minimum(s + window, len(ok))] - c[s]) / window).astype(np.float32)


def load_recording(store: FeatureStore | str | os.PathLike, recording_id: str | None = None) -> VideoFeatures:
    """A stored recording's features (``store[recording_id]``, or the feature file ``store`` itself);
    :class:`RecordingError` if they are a clip's, not a recording's."""
    feats = store[recording_id] if isinstance(store, FeatureStore) else load_features(store)
    if feats.meta.get("kind") != "recording":
        raise RecordingError(f"{recording_id or store}: features of a trimmed clip, not of a recording "
                             "(extract it with python -m seds.extract --recordings)")
    return feats


class ChunkFolder:
    """Finished chunks of one recording: ``chunk_<k>.safetensors`` files written atomically in ``path``,
    each tagged with the recording's fingerprint (file version + settings). ``path=None``: nothing is kept."""

    def __init__(self, path: str | os.PathLike | None, fingerprint: str):
        self.path = None if path is None else Path(path)
        self.fingerprint = fingerprint
        if self.path is not None and self.path.is_dir():
            for f in self.path.iterdir():          # leftovers of a write that was killed
                if f.name.endswith(TMP_SUFFIX):
                    f.unlink(missing_ok=True)

    def _file(self, k: int) -> Path:
        return self.path / f"chunk_{k:06d}.safetensors"

    def done(self, n_chunks: int) -> set[int]:
        """Chunks already finished for this fingerprint; a folder of another fingerprint is emptied."""
        if self.path is None or not self.path.is_dir():
            return set()
        out = set()
        for k in range(n_chunks):
            f = self._file(k)
            if not f.is_file():
                continue
            try:
                with safe_open(str(f), framework="np") as h:
                    md = h.metadata() or {}
            except Exception:  # noqa: BLE001 - an unreadable chunk is recomputed
                f.unlink(missing_ok=True)
                continue
            if md.get("format") != CHUNK_FORMAT or md.get("fingerprint") != self.fingerprint:
                self.remove()     # another file version or other settings: start afresh
                return set()
            out.add(k)
        return out

    def save(self, k: int, keypoints: np.ndarray, rgb: np.ndarray) -> None:
        if self.path is None:
            return
        blob = save({"keypoints": np.ascontiguousarray(keypoints, np.float32),
                     "rgb": np.ascontiguousarray(rgb, np.float32)},
                    {"format": CHUNK_FORMAT, "fingerprint": self.fingerprint, "chunk": str(k)})
        atomic_write_bytes(self._file(k), blob, suffix=TMP_SUFFIX)

    def load(self, k: int, n_frames: int, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
        with safe_open(str(self._file(k)), framework="np") as h:
            kp, rgb = h.get_tensor("keypoints"), h.get_tensor("rgb")
        if kp.shape != (n_frames, STORE_LAYOUT.num_points, 3) or rgb.shape != (n_windows, RGB_DIM):
            raise RecordingError(f"{self._file(k)}: chunk of the wrong size {kp.shape}, {rgb.shape}")
        return kp, rgb

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


def _fingerprint(path: Path, stream: VideoStream, settings: dict) -> str:
    st = path.stat()
    facts = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "frames": stream.num_frames,
             "frame_size": list(stream.size), **settings}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class RecordingExtractor:
    """Recording path → :class:`VideoFeatures` of the whole timeline, streamed (module docstring).

    ``pose_estimator`` / ``rgb_extractor`` replace the backends built from ``cfg`` (tests, sharing models
    with the app); the RGB extractor needs ``.features(frames, clip_starts, window) -> (T, 1024)``. Called
    as ``extractor(path, meta=..., work_dir=...)`` by :func:`seds.extract.runner.run_extraction`, which
    passes each recording's chunk folder (``resumable``)."""

    resumable = True

    def __init__(self, cfg: RecordingConfig | None = None, pose_estimator: PoseEstimator | None = None,
                 rgb_extractor=None):
        self.cfg = cfg or RecordingConfig()
        self._pose = pose_estimator
        self.rgb = rgb_extractor
        if self.rgb is None:
            raise RecordingError("RecordingExtractor needs an rgb_extractor (seds.extract.factory builds one)")
        self.last_stats: dict = {}

    @property
    def pose(self) -> PoseEstimator:
        self._pose = strided_backend(self._pose, self.cfg.pose_backend, self.cfg.pose_options, self.cfg.pose_stride)
        return self._pose

    def open(self, path) -> VideoStream:
        """The decoded stream of ``path`` (checks: missing, audio-only, corrupt, truncated, over the limit)."""
        cfg = self.cfg
        return VideoStream(path, cfg.fps, cfg.max_seconds, cfg.resize_short, cfg.crop,
                           Budget(cfg.max_short_side, cfg.max_frame_pixels), allow_partial=cfg.allow_partial)

    def __call__(self, video_path, meta: dict | None = None, work_dir=None,
                 progress: ProgressFn | None = None) -> VideoFeatures:
        return self.extract(video_path, meta, work_dir, progress)

    def extract(self, video_path, meta: dict | None = None, work_dir=None,
                progress: ProgressFn | None = None) -> VideoFeatures:
        report = progress or (lambda stage, frac: None)
        t0 = time.perf_counter()
        stream = self.open(video_path)
        try:
            return self._extract(stream, Path(video_path), meta or {}, work_dir, report, t0)
        finally:
            stream.close()

    def _extract(self, stream: VideoStream, path: Path, meta: dict, work_dir, report, t0) -> VideoFeatures:
        cfg, W = self.cfg, self.cfg.window
        n = stream.num_frames
        starts = recording_window_starts(n, W, cfg.window_stride)
        C = cfg.chunk_frames(3 * stream.size[0] * stream.size[1])
        n_chunks = -(-n // C)
        pose = self.pose
        settings = {k: v for k, v in asdict(cfg).items() if k not in ("max_seconds", "pose_options")}
        settings.update(chunk_frames=C, pose=getattr(pose, "name", type(pose).__name__),
                        rgb=getattr(self.rgb, "name", type(self.rgb).__name__))
        folder = ChunkFolder(work_dir, _fingerprint(path, stream, settings))
        done = folder.done(n_chunks)
        keypoints = np.zeros((max(n, W), STORE_LAYOUT.num_points, 3), np.float32)
        rgb = np.zeros((len(starts), RGB_DIM), np.float32)
        bounds = np.searchsorted(starts, np.arange(n_chunks + 1) * C)   # windows of chunk k: bounds[k]:bounds[k+1]
        # one frame buffer for every chunk (its frames + the window - 1 after it): a fresh array per chunk would
        # fragment the heap and grow the process by about a chunk every few chunks
        buf = np.empty((max(C + W - 1, W), stream.size[1], stream.size[0], 3), np.uint8)
        carried, prev, timings = 0, -2, {"decode": 0.0, "pose": 0.0, "rgb": 0.0, "write": 0.0}
        try:
            for k in range(n_chunks):
                a, b = k * C, min((k + 1) * C, n)
                lo, hi = int(bounds[k]), int(bounds[k + 1])
                if k in done:
                    keypoints[a:b], rgb[lo:hi] = folder.load(k, b - a, hi - lo)
                    continue
                t = time.perf_counter()
                end = min(b + W - 1, n)                      # the last frame a window of this chunk needs
                if prev != k - 1:
                    carried = 0                              # the frames carried over belong to another chunk
                got = carried + len(stream.read(a + carried, end, out=buf[carried:]))
                if got < W:                                  # a recording shorter than one window: pad
                    buf[got:W] = buf[got - 1]
                frames = buf[:max(got, W)]
                timings["decode"] += time.perf_counter() - t
                report("pose", (k + 0.1) / n_chunks)
                t = time.perf_counter()
                kp = pose(frames[:b - a], continue_tracking=prev == k - 1).to_store()
                timings["pose"] += time.perf_counter() - t
                report("rgb", (k + 0.7) / n_chunks)
                t = time.perf_counter()
                r = (np.asarray(self.rgb.features(frames, starts[lo:hi] - a, window=W), dtype=np.float32)
                     if hi > lo else np.zeros((0, RGB_DIM), np.float32))   # a last chunk too short to start a window
                if r.shape != (hi - lo, RGB_DIM):
                    raise RecordingError(f"RGB extractor returned {r.shape}, expected ({hi - lo}, {RGB_DIM})")
                timings["rgb"] += time.perf_counter() - t
                t = time.perf_counter()
                folder.save(k, kp, r)
                timings["write"] += time.perf_counter() - t
                keypoints[a:b], rgb[lo:hi] = kp, r
                carried, prev = end - b, k                   # frames [b, end) move to the buffer's start
                buf[:carried] = buf[b - a:end - a].copy()
        except VideoError:
            folder.remove()      # a corrupt/truncated file: resuming cannot help, leave nothing behind
            raise
        if n < W:
            keypoints[n:] = keypoints[n - 1]
        presence = window_presence(keypoints, starts, W, cfg.filter)
        timings["total"] = time.perf_counter() - t0
        info = {"kind": "recording", "video": path.name, "fps": float(stream.fps), "window": int(W),
                "window_stride": int(cfg.window_stride), "duration_s": round(float(stream.duration), 4),
                "n_frames": int(n), "padded_frames": int(max(0, W - n)), "source_fps": float(stream.source_fps),
                "source_frames": int(stream.source_frames), "reported_frames": int(stream.reported_frames),
                "source_width": int(stream.width), "source_height": int(stream.height),
                "frame_width": int(stream.size[0]), "frame_height": int(stream.size[1]),
                "chunk_frames": int(C), "chunks": int(n_chunks), "resumed_chunks": len(done),
                "pose_backend": settings["pose"], "pose_stride": int(cfg.pose_stride), "rgb_backend": settings["rgb"],
                "filter": asdict(cfg.filter), "presence": np.round(presence.astype(np.float64), 3).tolist(),
                "signing_windows": int((presence >= PRESENT).sum()), "no_signer": bool(not (presence >= PRESENT).any()),
                "timings_s": {k: round(v, 3) for k, v in timings.items()}}
        self.last_stats = {"chunks": n_chunks, "resumed": len(done), "computed": n_chunks - len(done), **timings}
        feats = VideoFeatures(keypoints, rgb, starts, float(stream.fps), {**info, **meta})
        feats.validate(W)
        report("done", 1.0)
        return feats
