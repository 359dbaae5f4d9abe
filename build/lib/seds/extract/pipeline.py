"""Single-video extraction (Sec. 3.1): video file → model inputs (:class:`VideoFeatures`).

Stages, in order:

1. **decode** the video to RGB frames at ``fps`` (24 by default; :func:`seds.extract.video.read_video`);
2. **pose**: 2-D whole-body keypoints of every frame in the store layout (49 SEDS + face + mouth); with
   ``pose_stride`` s > 1 the backend runs on every s-th frame and the others are interpolated
   (:mod:`seds.extract.pose_stride`);
3. **filter**: drop frames without a signer or without a visible hand (:class:`FrameFilter`);
4. **pad** videos shorter than one window by repeating their last frame (``seds.clips.pad_frames``)
   and **choose windows**: 16-frame windows, stride 1, at most ``max_clips`` at equal intervals
   (``seds.clips.select_clip_starts``); pose and RGB streams share these windows;
5. **rgb**: I3D features of the chosen windows (``seds.extract.i3d.I3DFeatureExtractor``).

``Extractor(cfg)(path, meta)`` returns :class:`VideoFeatures`; :meth:`Extractor.extract` also returns
the frames the keypoints refer to, the keep mask and per-stage timings (for the app's preview).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from seds.clips import MAX_CLIPS, WINDOW, pad_frames, select_clip_starts
from seds.data.features import RGB_DIM, VideoFeatures
from seds.extract.pose import FrameFilter, PoseEstimator, PoseError
from seds.extract.pose_stride import check_stride, pose_stride_of, strided_backend
from seds.extract.video import Budget, read_video

# progress(stage, fraction): fraction of the whole extraction done, in [0, 1]; stages in order
STAGES = ("decode", "pose", "filter", "rgb", "done")
_STAGE_SPAN = {"decode": (0.0, 0.1), "pose": (0.1, 0.7), "filter": (0.7, 0.72), "rgb": (0.72, 1.0)}
ProgressFn = Callable[[str, float], None]


class ExtractionError(ValueError):
    """A stage produced something unusable (e.g. an RGB extractor returning the wrong shape)."""


@dataclass
class ExtractConfig:
    """Extraction settings (defaults follow Sec. 3.1: 24 fps, 16-frame windows, at most 64 clips)."""

    fps: float = 24.0
    pose_backend: str = "mediapipe"
    pose_options: dict = field(default_factory=dict)
    pose_stride: int = 1              # run the pose backend on every pose_stride-th frame, interpolate the rest
    i3d_weights: str = "kinetics400"
    device: str = "cpu"
    i3d_batch_size: int | None = None
    i3d_memory_budget_mb: float | None = None
    max_clips: int = MAX_CLIPS
    window: int = WINDOW
    filter: FrameFilter = field(default_factory=FrameFilter)
    max_seconds: float | None = None
    trim_long: bool = False           # cut videos longer than max_seconds instead of refusing them
    folder_fps: float = 25.0          # frame rate of frame-folder "videos" (PHOENIX-2014T 25, CSL-Daily 30)
    resize_short: int | None = None   # decode with the shorter side scaled to this many pixels
    crop: tuple[int, int, int, int] | None = None   # (x, y, w, h) in source pixels, before resizing
    allow_partial: bool = False       # keep the decodable part of a truncated video
    max_short_side: int | None = None     # frames with a larger shorter side are scaled down (by the decoder)
    max_frame_pixels: int | None = None   # refuse videos whose frames are larger (width × height)
    max_pixels: int | None = None         # refuse videos whose decoded frames would hold more pixels in all

    def __post_init__(self):
        if isinstance(self.filter, dict):
            self.filter = FrameFilter(**self.filter)
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"ExtractConfig.fps must be positive, got {self.fps}")
        if self.max_clips < 1:
            raise ValueError(f"ExtractConfig.max_clips must be ≥ 1, got {self.max_clips}")
        if self.window < 1:
            raise ValueError(f"ExtractConfig.window must be ≥ 1, got {self.window}")
        try:
            self.pose_stride = check_stride(self.pose_stride)
        except PoseError as e:
            raise ValueError(f"ExtractConfig.pose_stride: {e}") from None


@dataclass
class ExtractionResult:
    """What one extraction produced: the features plus what the app shows."""

    features: VideoFeatures
    frames: np.ndarray        # (F, H, W, 3) uint8: kept (and padded) frames, aligned with keypoints
    keep: np.ndarray          # (N,) bool over the decoded frames
    timings: dict             # seconds per stage


def _select_frames(frames: np.ndarray, kept: np.ndarray, n_pad: int, in_place: bool,
                   chunk: int = 64) -> np.ndarray:
    """``frames[kept]`` followed by ``n_pad`` copies of the last kept frame. ``in_place`` compacts
    ``frames`` itself chunk by chunk (``kept`` is increasing, so each read precedes its overwrite),
    keeping the extra memory to one chunk instead of a second copy of the video."""
    if len(kept) == len(frames):
        out = frames
    elif not in_place:
        out = frames[kept]
    else:
        for lo in range(0, len(kept), chunk):
            src = kept[lo:lo + chunk]
            frames[lo:lo + len(src)] = frames[src]
        out = frames[:len(kept)]
    if n_pad:
        out = np.concatenate([out, np.repeat(out[-1:], n_pad, axis=0)])
    return out


@dataclass
class Decoded:
    """A decoded video ready for :meth:`Extractor.extract_decoded`."""

    frames: np.ndarray        # (N, H, W, 3) uint8 at ``fps``
    fps: float
    meta: dict                # what decoding measured (source size, frame counts, trimmed/truncated)
    seconds: float            # decoding time


class Extractor:
    """Video path → :class:`VideoFeatures` (see the module docstring for the stages).

    ``pose_estimator`` / ``rgb_extractor`` replace the backends built from ``cfg`` (tests, sharing
    models); the RGB extractor needs ``.features(frames, clip_starts, window) -> (T, 1024)``. Either pose
    estimator runs at ``cfg.pose_stride``.
    Backends are built lazily on first use and kept for the next videos.
    """

    def __init__(self, cfg: ExtractConfig | None = None, pose_estimator: PoseEstimator | None = None,
                 rgb_extractor=None):
        self.cfg = cfg or ExtractConfig()
        self._pose = pose_estimator
        self._rgb = rgb_extractor
        self.last_timings: dict = {}

    @property
    def pose(self) -> PoseEstimator:
        self._pose = strided_backend(self._pose, self.cfg.pose_backend, self.cfg.pose_options, self.cfg.pose_stride)
        return self._pose

    @property
    def rgb(self):
        if self._rgb is None:
            from seds.extract.i3d import I3DFeatureExtractor   # torch: imported only when needed
            kw = {}
            if self.cfg.i3d_batch_size is not None:
                kw["batch_size"] = self.cfg.i3d_batch_size
            if self.cfg.i3d_memory_budget_mb is not None:
                kw["memory_budget_mb"] = self.cfg.i3d_memory_budget_mb
            self._rgb = I3DFeatureExtractor(weights=self.cfg.i3d_weights, device=self.cfg.device, **kw)
        return self._rgb

    def __call__(self, video_path, meta: dict | None = None,
                 progress: ProgressFn | None = None) -> VideoFeatures:
        return self.extract(video_path, meta, progress).features

    def extract(self, video_path, meta: dict | None = None,
                progress: ProgressFn | None = None) -> ExtractionResult:
        return self.extract_decoded(self.decode(video_path, progress), meta, progress)

    def decode(self, video_path, progress: ProgressFn | None = None) -> "Decoded":
        """Stage 1 alone (no model involved: callers may run it outside a lock that guards the models)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        (progress or (lambda stage, frac: None))("decode", 0.0)
        video = read_video(video_path, fps=cfg.fps, max_seconds=cfg.max_seconds,
                           resize_short=cfg.resize_short, crop=cfg.crop, trim_long=cfg.trim_long,
                           allow_partial=cfg.allow_partial, folder_fps=cfg.folder_fps,
                           budget=Budget(cfg.max_short_side, cfg.max_frame_pixels, cfg.max_pixels))
        auto = {"video": Path(video_path).name, "source_fps": float(video.source_fps),
                "source_frames": int(video.source_frames), "duration_s": round(float(video.duration), 4),
                "source_width": int(video.width), "source_height": int(video.height),
                "decoder": video.backend, "trimmed": bool(video.trimmed), "truncated": bool(video.truncated),
                "reported_frames": int(video.reported_frames)}
        return Decoded(video.frames, float(video.fps), auto, time.perf_counter() - t0)

    def extract_decoded(self, decoded: "Decoded", meta: dict | None = None,
                        progress: ProgressFn | None = None) -> ExtractionResult:
        """Stages 2–5 on the output of :meth:`decode` (whose frames it may compact in place)."""
        return self.extract_frames(decoded.frames, fps=decoded.fps, meta={**decoded.meta, **(meta or {})},
                                   progress=progress, _timings={"decode": decoded.seconds}, _owned=True)

    def extract_frames(self, frames: np.ndarray, fps: float | None = None, meta: dict | None = None,
                       progress: ProgressFn | None = None, _timings: dict | None = None,
                       _owned: bool = False) -> ExtractionResult:
        """The stages after decoding, on frames already at ``fps`` (uint8 ``(N, H, W, 3)`` RGB).
        ``frames`` is not modified (internally, freshly decoded frames are compacted in place)."""
        cfg = self.cfg
        fps = float(fps if fps is not None else cfg.fps)
        report = progress or (lambda stage, frac: None)
        timings = dict(_timings or {})

        def span(stage):
            lo, hi = _STAGE_SPAN[stage]
            return lambda f: report(stage, lo + (hi - lo) * float(f))

        report("pose", _STAGE_SPAN["pose"][0])
        t = time.perf_counter()
        raw = self.pose(frames, progress=span("pose")).to_store()
        timings["pose"] = time.perf_counter() - t

        report("filter", _STAGE_SPAN["filter"][0])
        t = time.perf_counter()
        keep = cfg.filter(raw)
        kept = np.flatnonzero(keep)
        n_pad = pad_frames(len(kept), cfg.window)
        index = np.concatenate([kept, np.full(n_pad, kept[-1], kept.dtype)])
        kpts = raw[index]
        n_frames = len(frames)
        used = _select_frames(frames, kept, n_pad, in_place=_owned)
        starts = select_clip_starts(len(index), cfg.max_clips, cfg.window)
        timings["filter"] = time.perf_counter() - t

        report("rgb", _STAGE_SPAN["rgb"][0])
        t = time.perf_counter()
        rgb = np.asarray(self.rgb.features(used, starts, window=cfg.window), dtype=np.float32)
        if rgb.shape != (len(starts), RGB_DIM):
            raise ExtractionError(f"RGB extractor returned {rgb.shape}, expected ({len(starts)}, {RGB_DIM})")
        timings["rgb"] = time.perf_counter() - t
        timings["total"] = sum(v for k, v in timings.items())

        info = {"fps": fps, "n_frames": int(n_frames), "kept_frames": int(len(kept)),
                "dropped_frames": int(n_frames - len(kept)), "padded_frames": int(n_pad),
                "frame_width": int(used.shape[2]), "frame_height": int(used.shape[1]),
                "pose_backend": getattr(self.pose, "name", type(self.pose).__name__),
                "pose_stride": pose_stride_of(self.pose),
                "rgb_backend": getattr(self.rgb, "name", "i3d"), "i3d_weights": str(self.cfg.i3d_weights),
                "window": int(cfg.window), "max_clips": int(cfg.max_clips),
                "filter": asdict(cfg.filter), "timings_s": {k: round(v, 4) for k, v in timings.items()}}
        feats = VideoFeatures(keypoints=kpts, rgb=rgb, clip_starts=starts, fps=fps,
                              meta={**info, **(meta or {})})
        feats.validate(cfg.window)
        self.last_timings = timings
        report("done", 1.0)
        return ExtractionResult(feats, used, keep, timings)
