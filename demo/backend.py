"""The app's backend: :class:`AppBackend` holds the library's :class:`~seds.retrieval.engine.SearchEngine` (it
does not extend it) and adds what only the app needs — its settings (``configs/demo.yaml`` → ``SEDS_*``
environment variables → flags), its notes worded (:mod:`seds.retrieval.wording`), stream titles, the header text describing what
is loaded, skeleton-overlay previews of query videos and the plotly heatmaps of the "Why?" panels.
``demo/app.py`` is the Gradio layer over it; nothing in ``seds`` imports this module.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import cv2  # noqa: F401 - load OpenCV's FFmpeg before decord's: the other order breaks cv2's VP8/VP9 writer
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from seds.clips import WINDOW
from seds.config import CONFIG_DIR, ConfigError, from_dict, read_yaml_mapping
from seds.extract.factory import describe_pose, describe_rgb
from seds.extract.overlay import overlay_video
from seds.extract.writer import write_video
from seds.retrieval.gallery_index import GalleryIndexError
from seds.retrieval.engine import EngineConfig, Explanation, SearchEngine, VideoQuery
from seds.retrieval.inputs import MAX_TEXT_CHARS, QueryError, short_label  # noqa: F401 - MAX_TEXT_CHARS: app.py
from seds.retrieval.wording import note_text

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"     # configs/ in a checkout, the installed package's copy otherwise

AppError = QueryError   # a problem with a user's input or with the app's setup, worded for the UI
PREVIEW_MAX_AGE_S = 3600.0          # previews older than this are deleted by the next query
PREVIEW_SHORT_SIDE = 240            # preview frames: shorter side at most this (decoded straight to it for cached videos)
STREAM_TITLES = {"pose": "Pose only", "rgb": "RGB only", "fused": "Fused (CGAF)"}
log = logging.getLogger("seds.app")




# ---------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------

@dataclass
class AppConfig(EngineConfig):
    """The app's settings (``configs/demo.yaml`` → ``SEDS_*`` environment variables → CLI flags): the
    engine's (checkpoint, gallery, pose backend, device, top-k, ...) plus the server's."""
    preview: bool = True
    preview_short_side: int | None = PREVIEW_SHORT_SIDE
    host: str | None = None
    port: int = 7860
    share: bool = False
    max_upload_mb: float = 100.0     # Gradio refuses larger uploads (README "Security and limits")
    media_root: str | None = None    # the only folder gallery videos are served from (None: the gallery's parent)

    def __post_init__(self):
        super().__post_init__()
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max_upload_mb: must be > 0, got {self.max_upload_mb}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be in [0, 65535], got {self.port}")


ENV_VARS = {  # environment variable → AppConfig field
    "SEDS_CHECKPOINT": "checkpoint", "SEDS_GALLERY": "gallery", "SEDS_POSE_BACKEND": "pose_backend",
    "SEDS_POSE_STRIDE": "pose_stride", "SEDS_DEVICE": "device", "SEDS_HOST": "host", "SEDS_PORT": "port",
    "SEDS_SHARE": "share",
    "SEDS_TOP_K": "top_k", "SEDS_RERANK": "rerank", "SEDS_MAX_CLIPS": "max_clips",
    "SEDS_MAX_SECONDS": "max_seconds", "SEDS_PREVIEW": "preview", "SEDS_MAX_UPLOAD_MB": "max_upload_mb",
    "SEDS_MAX_SHORT_SIDE": "max_short_side", "SEDS_MAX_FRAME_PIXELS": "max_frame_pixels",
    "SEDS_MAX_PIXELS": "max_pixels", "SEDS_MEDIA_ROOT": "media_root", "SEDS_QUERY_TIMEOUT_S": "query_timeout_s",
    "SEDS_MAX_LIVE_QUERIES": "max_live_queries", "SEDS_I3D_WEIGHTS": "i3d_weights",
    "SEDS_I3D_COMPILE": "i3d_compile",
}
# Gradio's own variables (Spaces set GRADIO_SERVER_NAME=0.0.0.0), read as in any Gradio app: above the config file,
# below the SEDS_* variables and the flags
GRADIO_ENV_VARS = {"GRADIO_SERVER_NAME": "host", "GRADIO_SERVER_PORT": "port"}


def _parse_env(name: str, raw: str, hint):
    if hint is bool or hint == "bool":
        v = raw.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r}: expected true/false")
    if hint in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if hint in (float, "float"):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
    return raw


def load_app_config(path: str | os.PathLike | None = DEMO_CONFIG, overrides: dict | None = None,
                    env: dict | None = None) -> AppConfig:
    """``app`` section of ``path`` (may be None), then Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``,
    then ``SEDS_*`` variables of ``env`` (default: ``os.environ``), then ``overrides`` (values that are None are
    ignored)."""
    data: dict = {}
    if path is not None:
        data = dict(read_yaml_mapping(path, "demo config").get("app") or {})
    env = os.environ if env is None else env
    hints = typing.get_type_hints(AppConfig)
    for var, name in {**GRADIO_ENV_VARS, **ENV_VARS}.items():
        if env.get(var, "") != "":
            hint = hints[name]
            base = bool if hint is bool else int if hint is int else float if hint is float else str
            data[name] = _parse_env(var, env[var], base)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(AppConfig, data, "app")


def resolve_path(p: str | os.PathLike) -> Path:
    """A path as given if it exists (relative to the working directory), else relative to the repo."""
    p = Path(p).expanduser()
    if p.exists() or p.is_absolute():
        return p
    alt = ROOT / p
    return alt if alt.exists() else p


# ---------------------------------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------------------------------

# what the app reads of its engine (AppBackend.__getattr__): loaded facts, queries that need no app words
ENGINE_API = frozenset({
    "model", "model_cfg", "ckpt_info", "checkpoint_path", "checkpoint_name", "fingerprint", "gallery", "cache", "plan", "variant",
    "rgb_features", "device", "streams", "max_clips", "load_seconds", "extractions", "is_synthetic", "rgb_compiled",
    "extractor_ready", "extractor", "warm_up", "check_video", "search_sentences", "query_text", "explain",
    "explain_video_query", "explain_text_query", "video_side", "sentence_side", "video_path"})


class AppBackend:
    """Everything the UI needs, loaded once and shared by all requests: a :class:`SearchEngine` (``engine``,
    whose facts and text queries it passes on, :data:`ENGINE_API`) plus the app's words and previews."""

    def __init__(self, cfg: AppConfig | None = None, *, pose_estimator=None, rgb_extractor=None,
                 preload: bool = False):
        self.cfg = cfg or AppConfig()
        self.engine = SearchEngine(self.cfg, pose_estimator=pose_estimator, rgb_extractor=rgb_extractor,
                                   preload=preload, resolve_path=resolve_path)
        media = resolve_path(self.cfg.media_root) if self.cfg.media_root else None
        try:        # browsers will fetch the gallery's files: only its own videos and thumbnails, checked now
            self.gallery.confine(media)
        except GalleryIndexError as e:
            raise AppError(f"cannot serve the gallery {self.gallery.root}: {e}") from e
        self._tmp = Path(tempfile.mkdtemp(prefix="seds-app-"))

    def __getattr__(self, name):
        if name in ENGINE_API:
            return getattr(self.__dict__["engine"], name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def query_video(self, path, progress=None, k: int | None = None, sha256: str | None = None,
                    probed: bool = False) -> VideoQuery:
        """The engine's answer with the app's words for its notes and, with ``cfg.preview``, the skeleton overlay
        drawn from the frames it returned (which are not kept)."""
        q = self.engine.query_video(path, progress, k, sha256=sha256, probed=probed)
        timings, preview = dict(q.timings), None
        if q.preview_frames is not None:
            t = time.perf_counter()
            pf = q.preview_frames
            preview = self.write_preview(pf.frames, pf.keypoints, q.sha256, pf.fps)
            timings["preview"] = time.perf_counter() - t
            timings["total"] += timings["preview"]
        return dataclasses.replace(q, notes=[note_text(n) for n in q.notes], preview=preview, preview_frames=None,
                                   timings=timings)

    def describe(self) -> dict[str, str]:
        """What is loaded, for the UI header (name → one line)."""
        cfg, m = self.model_cfg, self.model_cfg.model
        text = {"hash": "hashed words (trained from scratch)"}.get(m.text.model, m.text.model)
        if self.is_synthetic:
            ck = (f"{self.checkpoint_name} — demo model trained on the synthetic signing benchmark "
                  "(cartoon signers, proxy RGB features). Its results on real signing are not meaningful.")
        elif self.ckpt_info.get("converted_from"):
            ck = (f"{self.checkpoint_name} — the authors' released SEDS weights ({self.ckpt_info.get('source_file', '?')},"
                  f" model.variant {m.variant}), trained on {cfg.data.dataset}")
        else:
            ck = f"{self.checkpoint_name} — trained on {cfg.data.dataset} (model.variant {m.variant})"
        g = self.gallery
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        dev = str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else "")
        parts = self.plan.describe()
        return {
            "checkpoint": ck,
            "model": f"streams {'+'.join(m.streams)}, D={m.dim}, max {m.max_clips} clips; text encoder: {text}",
            "rgb": describe_rgb(self.rgb_features) if self.is_synthetic else parts["rgb"],
            "pose": (describe_pose(self.plan.pose_backend) if self.is_synthetic else parts["pose"])
                    + (f"; live queries: pose on 1 frame in {self.cfg.pose_stride}, the frames "
                       "between interpolated" if self.cfg.pose_stride > 1 else "")
                    + (f"; gallery videos use cached keypoints ({self.plan.trained_pose})" if len(self.cache) else ""),
            "gallery": (f"{g.root}: {len(g.videos) if g.videos else 0} videos, "
                        f"{len(g.sentences) if g.sentences else 0} sentences"
                        + (f", {len(self.cache)} cached feature files" if len(self.cache) else "")),
            "device": dev + threads,
            "limits": ({"authors": "live queries use the authors' windows (≤ 64 of 16 frames, as their preprocessing "
                                   "chooses)",
                        "max_clips": f"live queries use T ≤ {self.max_clips} windows of {WINDOW} frames"}
                       [self.variant.live_windows]
                       + f"; uploads longer than {self.cfg.max_seconds:g} s are trimmed; uploads ≤ "
                       f"{self.cfg.max_upload_mb:g} MB, frames ≤ {self.cfg.max_frame_pixels / 1e6:.1f} megapixels, "
                       f"decoded at ≤ {self.cfg.max_short_side} px (shorter side)"),
        }

    def write_preview(self, frames: np.ndarray, kpts: np.ndarray, sha: str, fps: float) -> str | None:
        try:
            self.prune_previews()
            return write_overlay_preview(frames, kpts, self._tmp / f"preview-{sha[:16]}.webm", fps=fps)
        except Exception as e:  # noqa: BLE001 - a preview failure must not lose the results
            log.warning("preview failed: %s", e)
            return None

    @property
    def preview_dir(self) -> Path:
        """The folder of this backend's preview videos (deleted by :meth:`close`)."""
        return self._tmp

    def prune_previews(self, max_age_s: float = PREVIEW_MAX_AGE_S) -> int:
        """Delete preview files older than ``max_age_s`` (Gradio has copied them into its own cache by then);
        returns how many were deleted."""
        now, n = time.time(), 0
        for f in self._tmp.glob("preview-*"):
            try:
                if now - f.stat().st_mtime > max_age_s:
                    f.unlink()
                    n += 1
            except OSError:      # another request deleted or replaced it
                pass
        return n

    def close(self) -> None:
        """Release the engine and delete the preview folder (the app calls this on exit)."""
        self.engine.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------------------

def write_overlay_preview(frames: np.ndarray, kpts: np.ndarray, path: str | os.PathLike, fps: float,
                          short_side: int = PREVIEW_SHORT_SIDE, max_frames: int = 480) -> str:
    """Skeleton overlay of keypoints on their frames (downscaled, at most ``max_frames``) as WebM."""
    n = min(len(frames), len(kpts), max_frames)
    step = 2 if n > 48 else 1                   # a 12 fps preview of longer videos: half the encoding time
    frames, kpts = frames[:n:step], np.array(kpts[:n:step], dtype=np.float32)   # a view: no copy
    fps, n = fps / step, len(frames)
    h, w = frames.shape[1:3]
    s = min(1.0, short_side / min(h, w))
    if s < 1.0:
        size = (max(2, int(round(w * s)) // 2 * 2), max(2, int(round(h * s)) // 2 * 2))
        small = np.empty((n, size[1], size[0], 3), np.uint8)     # frame by frame: no full-size copy
        for i in range(n):
            small[i] = cv2.resize(frames[i], size, interpolation=cv2.INTER_AREA)
        frames = small
        kpts[..., 0] *= size[0] / w
        kpts[..., 1] *= size[1] / h
    elif min(h, w) < short_side:       # tiny videos (the synthetic ones are 112 px): scale up for legibility
        f = int(short_side // min(h, w))
        if f > 1:
            frames = frames.repeat(f, axis=1).repeat(f, axis=2)
            kpts[..., :2] *= f
    return str(write_video(overlay_video(frames, kpts), path, fps))


def explanation_figure(expl: Explanation, height: int = 420):
    """Plotly heatmaps of ``expl`` side by side (one per stream): words on x, clip time on y."""
    streams = list(expl.matrices)
    titles = [f"{STREAM_TITLES.get(s, s)} — score {expl.scores[s]:.3f}" for s in streams]
    fig = make_subplots(rows=1, cols=len(streams), shared_yaxes=True, subplot_titles=titles,
                        horizontal_spacing=0.04)
    zmax = max(float(np.abs(m).max()) for m in expl.matrices.values()) if streams else 1.0
    words = [short_label(w) for w in expl.words]       # labels are copied into every cell's hover data
    x = list(range(len(words)))
    y = [round(float(t), 2) for t in expl.times]
    for i, s in enumerate(streams):
        fig.add_trace(go.Heatmap(z=expl.matrices[s], x=x, y=y, coloraxis="coloraxis",
                                 hovertemplate="word %{customdata}<br>clip at %{y:.2f} s<br>E = %{z:.3f}<extra></extra>",
                                 customdata=np.broadcast_to(np.asarray(words, dtype=object),
                                                            expl.matrices[s].shape)),
                      row=1, col=i + 1)
        fig.update_xaxes(tickmode="array", tickvals=x, ticktext=words, tickangle=-45, row=1, col=i + 1)
    fig.update_yaxes(title_text="clip centre (s)", autorange="reversed", row=1, col=1)
    fig.update_layout(coloraxis={"colorscale": "RdBu", "reversescale": True, "cmin": -zmax, "cmax": zmax,
                                 "colorbar": {"title": {"text": "E"}}},
                      height=height, margin={"l": 60, "r": 20, "t": 60, "b": 80},
                      title={"text": f"clip × word similarity E — {short_label(expl.video_label, 40)} vs "
                                     f"“{short_label(expl.sentence, 80)}”",
                             "font": {"size": 13}})
    return fig
