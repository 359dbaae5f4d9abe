"""``python -m seds.extract ... --format official``: our extraction written in the SEDS authors' layout.

For each video of the manifest, below ``--out``:

* ``RTMpose/Pose_all_24rates/<id>.pkl``: ``{"keypoints": (T, 133, 3), "img_list": [...]}`` for every
  decoded frame (24 fps), x, y in pixels of a 256 × 256 frame (the authors' ``original_size``: the
  source pixels scaled by 256/W and 256/H), raw scores. RTMPose/MMPose give all 133 COCO-WholeBody
  points. **MediaPipe** has another layout: only the slots the SEDS model reads are filled, body
  ``0, 5, 7, 9, 6, 8, 10`` (nose, shoulders, elbows, wrists) from pose landmarks ``0, 11, 13, 15, 12,
  14, 16`` and hands ``91:112`` / ``112:133`` from its left / right hand; every other slot (face,
  feet, eyes, ears, hips, knees) is zeros with score 0;
* ``I3D_features/<split>/<id>.pkl``: ``{"name": id, "feature": (n, 1024)}``, one I3D feature per
  16-frame window over the frames the authors' hand filter keeps (after their >300-frame
  subsampling), the windows chosen exactly as their loader chooses pose windows, so ``n`` equals their
  pose-window count (their loader asserts it). Their own I3D windowing code is not public: this is
  the layout their loader implies (FORMATS.md §3), not a reproduction of their extractor;
* ``data_h2/<split>.pkl``: the annotation pickle (sentence id = the manifest's ``sentence_id``
  column, else the video id);
* ``official_export_<split>.json``: the backends used, ``failures_<split>.csv``.

The result is read by the authors' loader and by ``python -m seds.data.official import``.

:class:`OfficialQueryExtractor` is the same extraction for one live query (the app and ``python -m seds.index
search`` on a converted official checkpoint): video → :class:`~seds.data.features.VideoFeatures` exactly as
``python -m seds.data.official import`` stores the authors' files, so the query is encoded like their test set.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from seds.data.manifest import Manifest
from seds.data.official import store_features
from seds.data.official_batch import OfficialPreprocess, as_seds49, clip_starts, select_frames
from seds.data.official_format import (ANNOTATION_SUBDIR, N_WHOLEBODY, OfficialFormatError, OfficialPaths,
                                       OfficialVideo, img_list_for, write_annotations, write_pose, write_rgb)
from seds.data.store import escape_id
from seds.extract.factory import i3d_rgb_features, make_rgb_extractor
from seds.extract.pipeline import Decoded, ExtractionResult, ProgressFn
from seds.extract.pose import COCO_WHOLEBODY, NoSignerError, PoseResult, make_pose_estimator
from seds.extract.pose_stride import check_stride, with_stride
from seds.extract.video import Budget, read_video
from seds.keypoints import COCO_WB_BODY, COCO_WB_LEFT_HAND, COCO_WB_RIGHT_HAND, MEDIAPIPE_TO_SEDS

FPS = 24.0


def wholebody133(result: PoseResult) -> np.ndarray:
    """A pose result in the 133-point COCO-WholeBody layout (see the module doc for MediaPipe)."""
    k = np.asarray(result.keypoints, dtype=np.float32)
    if result.layout == COCO_WHOLEBODY:
        return k.copy()
    out = np.zeros((k.shape[0], N_WHOLEBODY, 3), np.float32)
    out[:, list(COCO_WB_BODY + COCO_WB_LEFT_HAND + COCO_WB_RIGHT_HAND)] = k[:, list(MEDIAPIPE_TO_SEDS)]
    return out


def to_official_frame(kp133: np.ndarray, image_size: tuple[int, int], size: tuple[int, int] = (256, 256)) -> np.ndarray:
    """Scale pixel x, y of a ``image_size`` = (W, H) frame to a ``size`` frame (scores unchanged)."""
    out = np.array(kp133, dtype=np.float32, copy=True)
    out[..., 0] *= np.float32(size[0] / image_size[0])
    out[..., 1] *= np.float32(size[1] / image_size[1])
    return out


@dataclass(frozen=True)
class OfficialExporterFactory:
    """Builds an :class:`OfficialExporter` (picklable; backends are built lazily)."""

    pose_backend: str = "mediapipe"
    i3d_weights: str = "kinetics400"
    device: str = "cpu"
    max_seconds: float | None = None
    pose_stride: int = 1

    def __call__(self) -> OfficialExporter:
        return OfficialExporter(self.pose_backend, self.i3d_weights, self.device, max_seconds=self.max_seconds,
                                pose_stride=self.pose_stride)


class OfficialExporter:
    """Video → the authors' keypoint array + I3D features (``pose_estimator`` / ``rgb_extractor``
    replace the backends, e.g. in tests; the RGB one needs ``.features(frames, starts, window)``).
    ``pose_stride``: pose on every s-th frame, the rest interpolated (:mod:`seds.extract.pose_stride`)."""

    def __init__(self, pose_backend: str = "mediapipe", i3d_weights: str = "kinetics400", device: str = "cpu",
                 pose_estimator=None, rgb_extractor=None, cfg: OfficialPreprocess = OfficialPreprocess(),
                 max_seconds: float | None = None, pose_stride: int = 1):
        self.pose_backend, self.i3d_weights, self.device = pose_backend, i3d_weights, device
        self.pose_stride = check_stride(pose_stride)
        self._pose, self._rgb = pose_estimator, rgb_extractor
        self.cfg = cfg
        self.max_seconds = max_seconds

    @property
    def pose(self):
        if self._pose is None:
            self._pose = make_pose_estimator(self.pose_backend)
        self._pose = with_stride(self._pose, self.pose_stride)
        return self._pose

    @property
    def rgb(self):
        if self._rgb is None:
            self._rgb = make_rgb_extractor(i3d_rgb_features(self.i3d_weights), self.device)
        return self._rgb

    def extract_frames(self, frames: np.ndarray, progress: ProgressFn | None = None) -> dict:
        """``keypoints`` (T, 133, 3) in the 256 × 256 frame and ``rgb`` (n, 1024) for RGB frames; also
        ``kept`` (the frames the authors' hand filter keeps) and per-stage ``timings`` (s)."""
        report = progress or (lambda stage, frac: None)
        t = time.perf_counter()
        report("pose", 0.1)
        res = self.pose(frames, progress=lambda f: report("pose", 0.1 + 0.6 * float(f)))
        timings = {"pose": time.perf_counter() - t}
        t = time.perf_counter()
        report("filter", 0.7)
        kp = to_official_frame(wholebody133(res), res.image_size, self.cfg.image_size)
        kept, _ = select_frames(as_seds49(kp), self.cfg)
        starts = clip_starts(len(kept), self.cfg)
        index = np.concatenate([kept, np.full(max(self.cfg.window - len(kept), 0), kept[-1])])
        timings["filter"] = time.perf_counter() - t
        t = time.perf_counter()
        report("rgb", 0.72)
        rgb = np.asarray(self.rgb.features(frames[index], starts, window=self.cfg.window), np.float32)
        if rgb.shape != (len(starts), 1024):
            raise ValueError(f"RGB extractor returned {rgb.shape}, expected ({len(starts)}, 1024)")
        timings["rgb"] = time.perf_counter() - t
        return {"keypoints": kp, "rgb": rgb, "pose_backend": getattr(self.pose, "name", "pose"),
                "pose_layout": res.layout, "kept": kept, "timings": timings}

    def __call__(self, video_path) -> dict:
        video = read_video(video_path, fps=FPS, max_seconds=self.max_seconds, trim_long=self.max_seconds is not None)
        return self.extract_frames(video.frames)


class OfficialQueryExtractor:
    """One video file → the features an official checkpoint reads, as :class:`ExtractionResult` (the interface
    of :class:`seds.extract.pipeline.Extractor`, which the retrieval engine calls):

    decode at 24 fps (the authors' ``Pose_all_24rates``; ``max_seconds`` trims) → pose on every frame, in the
    133-point COCO-WholeBody layout of the 256 × 256 frame → their hand filter and windows (≤ 64, linspace) →
    one I3D feature per window → :func:`seds.data.official.store_features` (the layout their imported test set
    has). ``frames`` of the result are the decoded frames resized to 256 × 256, aligned with the keypoints
    (the overlay preview draws on them); ``keep`` marks the frames the hand filter kept.
    """

    def __init__(self, exporter: OfficialExporter, max_seconds: float | None = None, budget: Budget | None = None):
        self.exporter, self.max_seconds, self.budget = exporter, max_seconds, budget   # budget: decoding limits

    def extract(self, video_path, meta: dict | None = None, progress: ProgressFn | None = None) -> ExtractionResult:
        return self.extract_decoded(self.decode(video_path, progress), meta, progress)

    def decode(self, video_path, progress: ProgressFn | None = None) -> Decoded:
        """Decoding alone (no model involved: callers may run it outside a lock that guards the models)."""
        t0 = time.perf_counter()
        (progress or (lambda stage, frac: None))("decode", 0.0)
        video = read_video(video_path, fps=FPS, max_seconds=self.max_seconds, trim_long=self.max_seconds is not None,
                           allow_partial=True, budget=self.budget)
        info = {"video": Path(str(video_path)).name, "duration_s": round(float(video.duration), 4),
                "trimmed": bool(video.trimmed), "truncated": bool(video.truncated),
                "source_frames": int(video.source_frames), "reported_frames": int(video.reported_frames)}
        return Decoded(video.frames, FPS, info, time.perf_counter() - t0)

    def extract_decoded(self, decoded: Decoded, meta: dict | None = None,
                        progress: ProgressFn | None = None) -> ExtractionResult:
        """Pose, the authors' preprocessing and RGB on the output of :meth:`decode`."""
        report = progress or (lambda stage, frac: None)
        t0 = time.perf_counter()
        timings = {"decode": decoded.seconds}
        try:
            r = self.exporter.extract_frames(decoded.frames, progress=report)
        except OfficialFormatError as e:
            raise NoSignerError(str(e)) from None
        timings.update(r["timings"])
        info = {**decoded.meta, "fps": FPS, "n_frames": int(len(decoded.frames)), "kept_frames": int(len(r["kept"])),
                "pose_backend": r["pose_backend"], "pose_layout": r["pose_layout"],
                "i3d_weights": str(getattr(self.exporter, "i3d_weights", "")),
                "timings_s": {k: round(v, 4) for k, v in timings.items()}}
        try:
            feats = store_features(r["keypoints"], None, r["rgb"], self.exporter.cfg, meta={**info, **(meta or {})},
                                   name=info["video"])
        except OfficialFormatError as e:
            raise NoSignerError(str(e)) from None
        keep = np.zeros(len(decoded.frames), bool)
        keep[r["kept"]] = True
        w, h = self.exporter.cfg.image_size
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in decoded.frames])
        timings["total"] = decoded.seconds + time.perf_counter() - t0
        report("done", 1.0)
        return ExtractionResult(feats, frames, keep, timings)


def export_manifest(manifest: Manifest, out: str | Path, split: str, factory, progress: bool = True) -> dict:
    """Export every manifest video (sequentially) in the authors' layout below ``out``; returns a summary
    dict (``exported``, ``skipped``, ``failures`` [(id, error)], ``pose_backend``)."""
    out = Path(out)
    paths = OfficialPaths.under(out, split)
    exporter = factory()
    t0 = time.perf_counter()
    videos, failures, backend = [], [], None
    done = 0
    for row in tqdm(list(manifest), unit="video", desc=f"extract {split} (official)", disable=not progress,
                    file=sys.stderr):
        stem = escape_id(row.id)
        try:
            r = exporter(row.video)
            write_pose(paths.pose(stem), r["keypoints"], img_list_for(stem, len(r["keypoints"])))
            write_rgb(paths.rgb(stem), r["rgb"], stem)
            backend = r["pose_backend"]
            videos.append(OfficialVideo(row.extra.get("sentence_id") or row.id, row.text, stem, row.id,
                                        len(r["keypoints"])))
            done += 1
        except Exception as e:  # noqa: BLE001 - a bad video must never stop the run
            failures.append((row.id, f"{type(e).__name__}: {e}".replace("\n", " ")))
    if videos:
        write_annotations(out / ANNOTATION_SUBDIR / f"{split}.pkl", videos)
    with open(out / f"failures_{split}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "error"])
        w.writerows(failures)
    summary = {"split": split, "exported": done, "failures": failures, "pose_backend": backend,
               "i3d_weights": getattr(exporter, "i3d_weights", ""), "seconds": round(time.perf_counter() - t0, 2),
               "keypoint_frame": list(exporter.cfg.image_size),
               "note": "MediaPipe fills only body 0,5,7,9,6,8,10 and hands 91:133 of the 133 slots"
                       if backend == "mediapipe" else ""}
    (out / f"official_export_{split}.json").write_text(json.dumps(summary, indent=2))
    return summary
