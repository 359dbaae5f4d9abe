"""The app's logic without the UI (``demo/app.py`` is a thin Gradio layer over :class:`AppBackend`).

* **Loading, once**: the checkpoint (:func:`seds.checkpoint.load_checkpoint`), the gallery
  (:class:`seds.index.Gallery`: a video index for text→video and a sentence index for video→text,
  both :class:`seds.index.GalleryIndex`), the pose estimator and the RGB extractor *the checkpoint
  names* (``data.rgb_features``: the real I3D for ``i3d-kinetics400`` / ``i3d:<path>``, the synthetic
  proxy for ``synthetic-proxy`` — a model only understands the RGB features it was trained on).
* **Video → text** (:meth:`AppBackend.query_video`): SHA-256 of the file → the gallery's feature
  cache, or the extraction pipeline (decode → pose → frame filter → RGB windows, Sec. 3.1) → the
  model's per-stream clip features (pose-only, RGB-only, fused; Sec. 3.2) → top-k sentences per
  stream (faiss candidates re-ranked by the fine-grained score of Sec. 3.3).
* **Text → video** (:meth:`AppBackend.query_text`): word features → top-k gallery videos per stream.
* **Why** (:meth:`AppBackend.explain`): the clip×word similarity matrices ``E`` (Sec. 3.3, as in the
  paper's Fig. 6) of one (video, sentence) pair for every stream, with clip times in seconds, and
  :func:`explanation_figure` to draw them with plotly.

Every problem a user can cause (no file, not a video, corrupt, empty, no signer, empty text, ...)
raises :class:`AppError` with a message meant for the UI; the backend stays usable afterwards.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2  # noqa: F401 - load OpenCV's FFmpeg before decord's: the other order breaks cv2's VP8/VP9 writer
import numpy as np
import torch

from seds.clips import WINDOW
from seds.config import ConfigError, from_dict
from seds.data.features import VideoFeatures

log = logging.getLogger("seds.app")

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
STREAM_ORDER = ("pose", "rgb", "fused")
STREAM_TITLES = {"pose": "Pose only", "rgb": "RGB only", "fused": "Fused (CGAF)"}
ProgressFn = Callable[[str, float], None]


class AppError(ValueError):
    """A problem with a user's input or with the app's setup, worded for the UI."""


# ---------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------

@dataclass
class AppConfig:
    """The app's settings (``configs/demo.yaml`` → ``SEDS_*`` environment variables → CLI flags)."""
    checkpoint: str = "checkpoints/demo"
    gallery: str = "examples/gallery"
    pose_backend: str = "mediapipe"
    device: str = "auto"
    host: str | None = None
    port: int = 7860
    share: bool = False
    top_k: int = 5
    rerank: int = 100
    max_clips: int = 16
    max_seconds: float = 20.0
    preview: bool = True

    def __post_init__(self):
        if not 1 <= self.top_k <= 50:
            raise ConfigError(f"top_k: must be in [1, 50], got {self.top_k}")
        if self.rerank < 0:
            raise ConfigError(f"rerank: must be ≥ 0, got {self.rerank}")
        if not 1 <= self.max_clips <= 4096:
            raise ConfigError(f"max_clips: must be ≥ 1, got {self.max_clips}")
        if not self.max_seconds > 0:
            raise ConfigError(f"max_seconds: must be > 0, got {self.max_seconds}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be in [0, 65535], got {self.port}")


ENV_VARS = {  # environment variable → AppConfig field
    "SEDS_CHECKPOINT": "checkpoint", "SEDS_GALLERY": "gallery", "SEDS_POSE_BACKEND": "pose_backend",
    "SEDS_DEVICE": "device", "SEDS_HOST": "host", "SEDS_PORT": "port", "SEDS_SHARE": "share",
    "SEDS_TOP_K": "top_k", "SEDS_RERANK": "rerank", "SEDS_MAX_CLIPS": "max_clips",
    "SEDS_MAX_SECONDS": "max_seconds", "SEDS_PREVIEW": "preview",
}


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
    """``app`` section of ``path`` (may be None), then ``SEDS_*`` variables of ``env`` (default:
    ``os.environ``), then ``overrides`` (values that are None are ignored)."""
    import typing

    data: dict = {}
    if path is not None:
        from seds.demo_assets import read_demo_yaml
        data = dict(read_demo_yaml(path).get("app") or {})
    env = os.environ if env is None else env
    hints = typing.get_type_hints(AppConfig)
    for var, name in ENV_VARS.items():
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


def resolve_device(name: str) -> torch.device:
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AppError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu or auto")
    return dev


# ---------------------------------------------------------------------------------------------------
# RGB features: the extractor a checkpoint was trained with
# ---------------------------------------------------------------------------------------------------

class ProxyRGBExtractor:
    """The synthetic benchmark's proxy RGB encoder (:func:`seds.data.synthetic.rgb_proxy_features`)
    behind the RGB-extractor interface of :class:`seds.extract.pipeline.Extractor`. Not I3D."""

    name = "synthetic-proxy"
    weights = "none (fixed colour histograms + random projections)"

    def features(self, frames, clip_starts, window: int = WINDOW) -> np.ndarray:
        from seds.data.synthetic import rgb_proxy_features
        return rgb_proxy_features(np.asarray(frames), np.asarray(clip_starts), window)


def rgb_weights(rgb_features: str) -> str | None:
    """I3D weights named by a checkpoint's ``data.rgb_features`` (None for the synthetic proxy)."""
    if rgb_features == "synthetic-proxy":
        return None
    if rgb_features == "i3d-kinetics400":
        return "kinetics400"
    if rgb_features.startswith("i3d:") and len(rgb_features) > 4:
        return rgb_features[4:]
    raise AppError(f"checkpoint data.rgb_features={rgb_features!r} is not one of 'i3d-kinetics400', "
                   "'i3d:<weights path>', 'synthetic-proxy'")


def describe_rgb(rgb_features: str) -> str:
    w = rgb_weights(rgb_features)
    if w is None:
        return "synthetic proxy (colour histograms + fixed random projections; not I3D)"
    if w == "kinetics400":
        return "I3D, Kinetics-400 weights (DeepMind)"
    return f"I3D, weights {w}"


def make_rgb_extractor(rgb_features: str, device: str | torch.device = "cpu"):
    """The RGB extractor matching a checkpoint's ``data.rgb_features``."""
    w = rgb_weights(rgb_features)
    if w is None:
        return ProxyRGBExtractor()
    from seds.extract.i3d import I3DFeatureExtractor
    try:
        return I3DFeatureExtractor(weights=w, device=device)
    except (ValueError, OSError) as e:
        raise AppError(f"cannot load the I3D weights the checkpoint needs ({rgb_features}): {e}") from e


@dataclass(frozen=True)
class ExtractorFactory:
    """Picklable factory of the extraction pipeline for a checkpoint (``seds.extract.run_extraction``
    workers build it once each): pose backend + the checkpoint's RGB extractor."""
    rgb_features: str
    pose_backend: str = "mediapipe"
    device: str = "cpu"
    max_clips: int = 64
    max_seconds: float | None = None
    trim_long: bool = False

    def __call__(self):
        from seds.extract.pipeline import ExtractConfig, Extractor
        cfg = ExtractConfig(pose_backend=self.pose_backend, device=self.device, max_clips=self.max_clips,
                            max_seconds=self.max_seconds, trim_long=self.trim_long)
        return Extractor(cfg, rgb_extractor=make_rgb_extractor(self.rgb_features, self.device))


# ---------------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------------

def features_to_item(feats: VideoFeatures, layout, conf_threshold: float = 0.3, text: str = "") -> dict:
    """A :class:`seds.data.dataset.FeatureDataset`-style item (keypoints of ``layout`` normalized part
    by part, RGB windows, clip starts) for :func:`seds.data.dataset.collate`."""
    from seds.data.dataset import layout_index
    from seds.keypoints import normalize_parts

    kp = feats.keypoints[:, layout_index(layout)]
    kp = normalize_parts(kp, layout, conf_threshold=conf_threshold)
    return {"id": str(feats.meta.get("id", "")), "keypoints": np.ascontiguousarray(kp, np.float32),
            "rgb": feats.rgb, "clip_starts": feats.clip_starts, "text": text, "meta": {}}


@torch.inference_mode()
def encode_videos(model, feats_list: list[VideoFeatures], batch_size: int = 16):
    """Per-stream clip features of several videos → (``{stream: (N, T, D)}`` float32 CPU, mask (N, T)),
    T the longest video's clip count (shorter ones zero-padded and masked)."""
    from seds.data.dataset import collate
    from seds.keypoints import KeypointLayout

    layout = KeypointLayout(extra=model.cfg.pose.extra_parts)
    for f in feats_list:
        if f.num_clips > model.cfg.max_clips:
            raise AppError(f"video {f.meta.get('id', '')!r} has {f.num_clips} clips; this model takes at most "
                           f"{model.cfg.max_clips} (model.max_clips)")
    t = max(f.num_clips for f in feats_list)
    streams: dict[str, torch.Tensor] = {}
    mask = torch.zeros(len(feats_list), t, dtype=torch.bool)
    amp = model.device.type == "cuda"
    for lo in range(0, len(feats_list), batch_size):
        batch = collate([features_to_item(f, layout) for f in feats_list[lo:lo + batch_size]])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            emb = model.encode_batch_video(batch)
        n, tb = emb.mask.shape
        for s, x in emb.streams.items():
            if s not in streams:
                streams[s] = torch.zeros(len(feats_list), t, x.shape[-1])
            streams[s][lo:lo + n, :tb] = x.float().cpu()
        mask[lo:lo + n, :tb] = emb.mask.cpu()
    return streams, mask


@torch.inference_mode()
def encode_sentences(model, texts: list[str], batch_size: int = 64):
    """Word features of sentences → (words (N, L, D) float32 CPU, mask (N, L))."""
    words, masks = [], []
    amp = model.device.type == "cuda"
    for lo in range(0, len(texts), batch_size):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            e = model.encode_text(list(texts[lo:lo + batch_size]))
        words.append(e.words.float().cpu())
        masks.append(e.mask.cpu())
    n = max(w.shape[1] for w in words)
    w_out = torch.zeros(len(texts), n, words[0].shape[-1])
    m_out = torch.zeros(len(texts), n, dtype=torch.bool)
    lo = 0
    for w, m in zip(words, masks):
        w_out[lo:lo + w.shape[0], :w.shape[1]] = w
        m_out[lo:lo + w.shape[0], :w.shape[1]] = m
        lo += w.shape[0]
    return w_out, m_out


def word_labels(model, text: str) -> list[str]:
    """The tokens the text encoder scores, in order (the heatmap's word axis): words for the hashed
    encoder, word pieces for Hugging Face tokenizers (special tokens left out)."""
    enc = model.text
    toks = enc.tokenize([text])
    mask = toks["word_mask"][0].bool()
    if enc.kind == "hash":
        return enc.tokenizer.words(text)[: int(mask.sum())]
    ids = toks["input_ids"][0][mask].tolist()
    return [t.replace("Ġ", "").replace("</w>", "") for t in enc.tokenizer.convert_ids_to_tokens(ids)]


def clip_times(clip_starts: np.ndarray, fps: float, frame_times: np.ndarray | None = None,
               window: int = WINDOW) -> np.ndarray:
    """Centre time (s) of each 16-frame window. ``frame_times``: time of each (kept) frame in the
    original video when frames were dropped by the filter; default ``index / fps``."""
    s = np.asarray(clip_starts, np.int64)
    if frame_times is None:
        return (s + (window - 1) / 2.0) / float(fps)
    ft = np.asarray(frame_times, np.float64)
    last = len(ft) - 1
    return 0.5 * (ft[np.minimum(s, last)] + ft[np.minimum(s + window - 1, last)])


def hand_presence(raw_kpts: np.ndarray, conf: float = 0.3, min_points: int = 10) -> tuple[float, float]:
    """Fraction of frames in which the (subject's) left / right hand is visible."""
    from seds.keypoints import N_BODY, N_HAND
    ok = np.nan_to_num(raw_kpts[..., 2]) >= conf
    left = (ok[:, N_BODY:N_BODY + N_HAND].sum(1) >= min_points).mean()
    right = (ok[:, N_BODY + N_HAND:N_BODY + 2 * N_HAND].sum(1) >= min_points).mean()
    return float(left), float(right)


# ---------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------

@dataclass
class VideoQuery:
    """A video query's features, embedding and per-stream top-k sentences."""
    features: VideoFeatures
    source: str                                  # "cache" or "extracted"
    clips: dict[str, torch.Tensor]               # stream → (T, D) float32 CPU
    clip_mask: torch.Tensor                      # (T,) bool
    clip_times: np.ndarray                       # (T,) seconds
    hits: dict[str, list]                        # stream → [seds.index.Hit] (sentences)
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    preview: str | None = None                   # skeleton-overlay video
    sha256: str = ""
    gallery_id: str | None = None                # set when the file is a gallery video
    true_text: str | None = None                 # its sentence, when known


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
# the backend
# ---------------------------------------------------------------------------------------------------

class AppBackend:
    """Everything the UI needs, loaded once and shared by all requests (thread-safe: extraction is
    serialised by a lock, encoding and search run concurrently)."""

    def __init__(self, cfg: AppConfig | None = None, *, pose_estimator=None, rgb_extractor=None,
                 preload: bool = False):
        from seds.checkpoint import CheckpointError, load_checkpoint
        from seds.index import Gallery, GalleryIndexError, checkpoint_fingerprint

        self.cfg = cfg or AppConfig()
        self.device = resolve_device(self.cfg.device)
        t0 = time.perf_counter()
        ckpt = resolve_path(self.cfg.checkpoint)
        try:
            self.model, _, self.model_cfg, self.ckpt_info = load_checkpoint(ckpt, self.device)
        except (CheckpointError, FileNotFoundError) as e:
            raise AppError(f"cannot load the checkpoint {ckpt}: {e}") from e
        self.checkpoint_path = ckpt
        self.fingerprint = checkpoint_fingerprint(ckpt)
        self.rgb_features = self.model_cfg.data.rgb_features
        rgb_weights(self.rgb_features)                              # validates the name
        gpath = resolve_path(self.cfg.gallery)
        try:
            self.gallery = Gallery.load(gpath, device=self.device)
        except (GalleryIndexError, FileNotFoundError) as e:
            raise AppError(f"cannot load the gallery {gpath}: {e}") from e
        try:
            self.gallery.check_checkpoint(self.fingerprint)
        except GalleryIndexError as e:
            raise AppError(str(e)) from e
        self.cache = self.gallery.cache
        self._sha_to_video = {}
        if self.gallery.videos is not None:
            for vid in self.gallery.videos.ids:
                sha = self.gallery.videos.meta(vid).get("sha256")
                if sha:
                    self._sha_to_video[sha] = vid
        self.streams = tuple(s for s in STREAM_ORDER if s in self._model_streams())
        self.max_clips = min(self.cfg.max_clips, self.model_cfg.model.max_clips)
        self._pose = pose_estimator
        self._rgb = rgb_extractor
        self._extractor = None
        self._lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="seds-app-"))
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

    def extractor(self):
        """The extraction pipeline (built on first use: MediaPipe + I3D take seconds to load)."""
        if self._extractor is None:
            from seds.extract.pipeline import ExtractConfig, Extractor
            from seds.extract.pose import PoseBackendUnavailable, PoseError, make_pose_estimator
            try:
                pose = self._pose or make_pose_estimator(self.cfg.pose_backend)
            except (PoseError, PoseBackendUnavailable, ImportError) as e:
                raise AppError(f"pose backend {self.cfg.pose_backend!r} is not usable: {e}") from e
            rgb = self._rgb or make_rgb_extractor(self.rgb_features, self.device)
            xcfg = ExtractConfig(pose_backend=self.cfg.pose_backend, device=str(self.device),
                                 max_clips=self.max_clips, max_seconds=self.cfg.max_seconds, trim_long=True)
            self._extractor = Extractor(xcfg, pose_estimator=pose, rgb_extractor=rgb)
        return self._extractor

    def describe(self) -> dict[str, str]:
        """What is loaded, for the UI header (name → one line)."""
        cfg, m = self.model_cfg, self.model_cfg.model
        text = {"hash": "hashed words (trained from scratch)"}.get(m.text.model, m.text.model)
        if self.is_synthetic:
            ck = (f"{self.checkpoint_path} — demo model trained on the synthetic signing benchmark "
                  "(cartoon signers, proxy RGB features). Its results on real signing are not meaningful.")
        else:
            ck = f"{self.checkpoint_path} — trained on {cfg.data.dataset}"
        g = self.gallery
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        dev = str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else "")
        return {
            "checkpoint": ck,
            "model": f"streams {'+'.join(m.streams)}, D={m.dim}, max {m.max_clips} clips; text encoder: {text}",
            "rgb": describe_rgb(self.rgb_features),
            "pose": {"mediapipe": "MediaPipe Holistic (model in the wheel)", "rtmpose": "RTMPose whole-body (rtmlib)",
                     "mmpose": "MMPose whole-body"}.get(self.cfg.pose_backend, self.cfg.pose_backend)
                    + (f"; gallery videos use cached keypoints ({cfg.data.pose_backend})" if len(self.cache) else ""),
            "gallery": (f"{g.root}: {len(g.videos) if g.videos else 0} videos, "
                        f"{len(g.sentences) if g.sentences else 0} sentences"
                        + (f", {len(self.cache)} cached feature files" if len(self.cache) else "")),
            "device": dev + threads,
            "limits": (f"live queries use ≤ {self.max_clips} windows of {WINDOW} frames; uploads longer than "
                       f"{self.cfg.max_seconds:g} s are trimmed"),
        }

    # -- video → text -------------------------------------------------------------------------------
    def query_video(self, path, progress: ProgressFn | None = None, k: int | None = None) -> VideoQuery:
        from seds.extract.pipeline import ExtractionError
        from seds.extract.pose import NoSignerError, PoseError
        from seds.extract.video import VideoError, read_video
        from seds.index import file_sha256

        if self.gallery.sentences is None:
            raise AppError("this gallery has no sentences: video → text search is not available")
        if path is None or str(path).strip() == "":
            raise AppError("Upload a video (or record one with the webcam) first.")
        path = Path(path)
        if not path.is_file():
            raise AppError(f"The video file {path.name} was not found (the upload may have failed).")
        if path.stat().st_size == 0:
            raise AppError(f"{path.name} is empty (0 bytes): not a video.")
        report = progress or (lambda stage, frac: None)
        k = k or self.cfg.top_k
        timings: dict[str, float] = {}
        notes: list[str] = []
        t_all = time.perf_counter()
        t = time.perf_counter()
        sha = file_sha256(path)
        timings["hash"] = time.perf_counter() - t
        feats = self.cache.get(sha) if self.cache is not None else None
        frames = kpts_for_preview = None
        if feats is not None:
            source = "cache"
            notes.append("Features from the gallery cache: this file is a gallery video, so its keypoints and RGB "
                         f"features were computed when the gallery was built ({feats.meta.get('pose_backend', 'cached')}"
                         f" keypoints); MediaPipe was not run.")
            if feats.num_clips > self.model_cfg.model.max_clips:
                raise AppError(f"cached features have {feats.num_clips} clips > model max_clips")
            times = clip_times(feats.clip_starts, feats.fps)
            if self.cfg.preview:
                t = time.perf_counter()
                report("decode", 0.05)
                try:
                    frames = read_video(path, fps=feats.fps, max_seconds=self.cfg.max_seconds,
                                        trim_long=True).frames
                except VideoError:
                    frames = None
                timings["decode"] = time.perf_counter() - t
                kpts_for_preview = feats.keypoints
        else:
            source = "extracted"
            try:
                with self._lock:
                    ex = self.extractor()
                    res = ex.extract(path, progress=report)
            except NoSignerError as e:
                raise AppError(f"No signer found in this video ({e}). Use a front-facing video that shows the "
                               "signer's upper body and hands.") from e
            except VideoError as e:
                detail = str(e).replace(str(path), "").lstrip(": ").split(" (")[0]
                raise AppError(f"This file cannot be used as a video ({path.name}): {detail}.") from e
            except (PoseError, ExtractionError) as e:
                raise AppError(f"Feature extraction failed: {e}") from e
            except MemoryError as e:
                raise AppError("Out of memory while extracting features: try a shorter or smaller video.") from e
            feats = res.features
            for st in ("decode", "pose", "filter", "rgb"):
                timings[st] = res.timings.get(st, 0.0)
            kept = np.flatnonzero(res.keep)
            n_dec = len(res.keep)
            frame_times = kept / feats.fps
            pad = len(res.frames) - len(kept)
            if pad > 0:
                frame_times = np.concatenate([frame_times, np.full(pad, frame_times[-1])])
            times = clip_times(feats.clip_starts, feats.fps, frame_times)
            if feats.meta.get("trimmed"):
                notes.append(f"The video is longer than {self.cfg.max_seconds:g} s: only its first "
                             f"{self.cfg.max_seconds:g} s were used.")
            if n_dec - len(kept) > 0:
                notes.append(f"{n_dec - len(kept)} of {n_dec} frames showed no signer or no hand and were skipped.")
            if pad > 0:
                notes.append(f"Only {len(kept)} usable frames (< {WINDOW}): the last one was repeated.")
            left, right = hand_presence(feats.keypoints[:len(kept)])
            for name, frac in (("left", left), ("right", right)):
                if frac < 0.1:
                    notes.append(f"The signer's {name} hand was found in {100 * frac:.0f}% of the frames: the pose "
                                 "stream works with one hand, results may be less reliable.")
            notes.append(f"Features extracted: pose by {self.cfg.pose_backend}, RGB by "
                         f"{describe_rgb(self.rgb_features)}; {feats.num_clips} windows.")
            frames, kpts_for_preview = res.frames, feats.keypoints
        report("embed", 0.97)
        t = time.perf_counter()
        streams, mask = encode_videos(self.model, [feats])
        clips = {s: streams[s][0] for s in self.streams}
        clip_mask = mask[0]
        timings["embed"] = time.perf_counter() - t
        t = time.perf_counter()
        hits = {s: self.gallery.sentences.search(clips[s], clip_mask, stream="text", k=k, rerank=self.cfg.rerank)
                for s in self.streams}
        timings["search"] = time.perf_counter() - t
        preview = None
        if self.cfg.preview and frames is not None and kpts_for_preview is not None:
            t = time.perf_counter()
            try:
                preview = write_overlay_preview(frames, kpts_for_preview, self._tmp / f"preview-{sha[:16]}.webm",
                                                fps=feats.fps)
            except Exception as e:  # noqa: BLE001 - a preview failure must not lose the results
                log.warning("preview failed: %s", e)
            timings["preview"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all
        gid = self._sha_to_video.get(sha)
        true_text = None
        if gid is not None:
            true_text = self.gallery.videos.meta(gid).get("text") or None
        report("done", 1.0)
        return VideoQuery(feats, source, clips, clip_mask, times, hits, timings, notes, preview, sha, gid, true_text)

    # -- text → video -------------------------------------------------------------------------------
    def query_text(self, text: str, k: int | None = None) -> TextQuery:
        if self.gallery.videos is None:
            raise AppError("this gallery has no videos: text → video search is not available")
        text = (text or "").strip()
        if not text:
            raise AppError("Type a sentence to search for.")
        k = k or self.cfg.top_k
        t0 = time.perf_counter()
        try:
            words, mask = encode_sentences(self.model, [text])
        except ValueError as e:
            raise AppError(f"The text cannot be encoded: {e}") from e
        t1 = time.perf_counter()
        w, m = words[0], mask[0]
        hits = {s: self.gallery.videos.search(w, m, stream=s, k=k, rerank=self.cfg.rerank) for s in self.streams}
        t2 = time.perf_counter()
        return TextQuery(text, w, m, word_labels(self.model, text), hits,
                         {"embed": t1 - t0, "search": t2 - t1, "total": t2 - t0})

    # -- why ----------------------------------------------------------------------------------------
    def video_side(self, video_id) -> tuple[dict[str, torch.Tensor], torch.Tensor, np.ndarray, str]:
        """Stored clip features of a gallery video: ({stream: (T, D)}, mask (T,), times, label)."""
        g = self.gallery.videos
        if g is None or video_id not in g:
            raise AppError(f"video {video_id!r} is not in the gallery")
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
            raise AppError(f"sentence {sentence_id!r} is not in the gallery")
        f, m = g.stream_data("text")
        row = g.row(sentence_id)
        text = g.meta(sentence_id).get("text", "")
        return f[row].float().cpu(), m[row].cpu(), word_labels(self.model, text), text

    def explain(self, clips: dict[str, torch.Tensor], clip_mask: torch.Tensor, times: np.ndarray,
                words: torch.Tensor, word_mask: torch.Tensor, labels: list[str], video_label: str = "",
                sentence: str = "") -> Explanation:
        """E = f^k f^wᵀ of normalised clip and word features (Sec. 3.3) for every stream, restricted to
        valid clips and words, with the pair's score ½ (M_t2k + M_k2t)."""
        from seds.similarity import clip_word_matrix, fine_grained_scores

        cm, wm = clip_mask.bool(), word_mask.bool()
        tau = self.model_cfg.model.tau
        mats, scores = {}, {}
        for s in self.streams:
            v = clips[s].float()
            e = clip_word_matrix(v[None], words.float()[None])[0, 0]            # (T, L)
            mats[s] = e[cm][:, wm].numpy()
            scores[s] = float(fine_grained_scores(v[None], cm[None], words.float()[None], wm[None], tau=tau).mean[0, 0])
        n_valid = int(cm.sum())
        nw = int(wm.sum())
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
        import shutil
        shutil.rmtree(self._tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------------------

def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float, fourcc: str = "VP80") -> Path:
    """RGB uint8 ``(N, H, W, 3)`` → WebM (VP8 by default: quick to encode, plays in every browser).

    OpenCV's writer first; if it cannot open the codec (its bundled libvpx refuses to start when
    decord's FFmpeg was loaded into the process first), the ``ffmpeg`` program is used instead."""
    import shutil
    import subprocess

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(frames)
    n, h, w = frames.shape[:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if writer.isOpened():
        try:
            for f in frames:       # the encoder takes one frame at a time
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    else:
        writer.release()
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise AppError(f"cannot write a {fourcc} video: OpenCV's encoder is unavailable in this process and "
                           "the ffmpeg program is not installed")
        codec = {"VP80": "libvpx", "VP90": "libvpx-vp9"}.get(fourcc, "libvpx")
        cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", f"{float(fps):g}", "-i", "-", "-an", "-c:v", codec, "-pix_fmt", "yuv420p", "-b:v", "0",
               "-crf", "32", "-deadline", "realtime", "-cpu-used", "8", str(path)]
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise AppError(f"ffmpeg could not write {path}: {proc.stderr.decode(errors='replace')[-300:]}")
    if not path.is_file() or path.stat().st_size == 0:
        raise AppError(f"no video was written to {path}")
    return path


def write_overlay_preview(frames: np.ndarray, kpts: np.ndarray, path: str | os.PathLike, fps: float,
                          short_side: int = 240, max_frames: int = 480) -> str:
    """Skeleton overlay of keypoints on their frames (downscaled, at most ``max_frames``) as WebM."""
    from seds.extract.overlay import overlay_video

    n = min(len(frames), len(kpts), max_frames)
    step = 2 if n > 48 else 1                   # a 12 fps preview of longer videos: half the encoding time
    frames, kpts = np.asarray(frames[:n:step]), np.array(kpts[:n:step], dtype=np.float32)
    fps, n = fps / step, len(frames)
    h, w = frames.shape[1:3]
    s = min(1.0, short_side / min(h, w))
    if s < 1.0:
        size = (max(2, int(round(w * s)) // 2 * 2), max(2, int(round(h * s)) // 2 * 2))
        tall = np.ascontiguousarray(frames).reshape(n * h, w, 3)
        frames = cv2.resize(tall, (size[0], n * size[1]), interpolation=cv2.INTER_AREA).reshape(n, size[1], size[0], 3)
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
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    streams = list(expl.matrices)
    titles = [f"{STREAM_TITLES.get(s, s)} — score {expl.scores[s]:.3f}" for s in streams]
    fig = make_subplots(rows=1, cols=len(streams), shared_yaxes=True, subplot_titles=titles,
                        horizontal_spacing=0.04)
    zmax = max(float(np.abs(m).max()) for m in expl.matrices.values()) if streams else 1.0
    x = list(range(len(expl.words)))
    y = [round(float(t), 2) for t in expl.times]
    for i, s in enumerate(streams):
        fig.add_trace(go.Heatmap(z=expl.matrices[s], x=x, y=y, coloraxis="coloraxis",
                                 hovertemplate="word %{customdata}<br>clip at %{y:.2f} s<br>E = %{z:.3f}<extra></extra>",
                                 customdata=np.broadcast_to(np.asarray(expl.words, dtype=object),
                                                            expl.matrices[s].shape)),
                      row=1, col=i + 1)
        fig.update_xaxes(tickmode="array", tickvals=x, ticktext=expl.words, tickangle=-45, row=1, col=i + 1)
    fig.update_yaxes(title_text="clip centre (s)", autorange="reversed", row=1, col=1)
    fig.update_layout(coloraxis={"colorscale": "RdBu", "reversescale": True, "cmin": -zmax, "cmax": zmax,
                                 "colorbar": {"title": {"text": "E"}}},
                      height=height, margin={"l": 60, "r": 20, "t": 60, "b": 80},
                      title={"text": f"clip × word similarity E — {expl.video_label} vs “{expl.sentence}”",
                             "font": {"size": 13}})
    return fig
