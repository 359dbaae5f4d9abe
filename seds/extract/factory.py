"""Which extractor a run uses — the one place that turns names into extractors.

``rgb_features`` names (a checkpoint's ``data.rgb_features``): ``i3d-kinetics400`` (InceptionI3d with
DeepMind's Kinetics-400 weights), ``i3d:<path>`` (a local I3D checkpoint, e.g. BSL-1K: the paper's
encoder), ``synthetic-proxy`` and ``synthetic-proxy-conv`` (the synthetic benchmark's two proxies,
:mod:`seds.extract.proxy_rgb`, not I3D). A model only understands the
RGB features it was trained on, so the index and the app build the extractor its checkpoint names.

A checkpoint converted from the authors' release (``python -m seds.convert official``) was trained on their
processed features: RTMPose whole-body keypoints (COCO-WholeBody 133) and a BSL-1K-trained I3D (``i3d-bsl1k``,
whose weights are not shipped here). :func:`plan_extractors` decides what live queries use for a checkpoint and
says which parts match its training features and which are substitutes (MediaPipe when RTMPose cannot run here,
Kinetics-400 I3D when no BSL-1K weights are given).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from seds.extract.i3d import I3DFeatureExtractor
from seds.extract.pipeline import ExtractConfig, Extractor
from seds.extract.pose import PoseBackendUnavailable, PoseError, make_pose_estimator
from seds.extract.proxy_rgb import ConvProxyRGBExtractor, ProxyRGBExtractor
from seds.extract.recording import DEFAULT_WINDOW_STRIDE, RecordingConfig, RecordingExtractor

PROXIES = {"synthetic-proxy": ProxyRGBExtractor, "synthetic-proxy-conv": ConvProxyRGBExtractor}

BSL1K = "i3d-bsl1k"              # the authors' RGB features: I3D trained on BSL-1K (weights supplied by the user)
OFFICIAL_POSE = "rtmpose"        # the authors' keypoints: RTMPose whole-body (COCO-WholeBody 133)
POSE_BACKEND_NAMES = {"mediapipe": "MediaPipe Holistic (model in the wheel)",
                      "rtmpose": "RTMPose whole-body (rtmlib, COCO-WholeBody 133)", "mmpose": "MMPose whole-body"}


class RGBFeaturesError(ValueError):
    """An ``rgb_features`` name that is not known, or whose I3D weights cannot be loaded."""


def i3d_rgb_features(weights: str) -> str:
    """The ``rgb_features`` name of I3D ``weights`` (``kinetics400`` or a checkpoint path)."""
    return "i3d-kinetics400" if weights == "kinetics400" else f"i3d:{weights}"


def rgb_weights(rgb_features: str) -> str | None:
    """I3D weights named by a checkpoint's ``data.rgb_features`` (None for the synthetic proxies)."""
    if rgb_features in PROXIES:
        return None
    if rgb_features == BSL1K:
        raise RGBFeaturesError("this checkpoint was trained on BSL-1K I3D features, whose weights are not shipped: "
                               "give the checkpoint file (--i3d-weights / SEDS_I3D_WEIGHTS), or the Kinetics-400 "
                               "I3D is used as a substitute")
    if rgb_features == "i3d-kinetics400":
        return "kinetics400"
    if rgb_features.startswith("i3d:") and len(rgb_features) > 4:
        return rgb_features[4:]
    raise RGBFeaturesError(f"checkpoint data.rgb_features={rgb_features!r} is not one of 'i3d-kinetics400', "
                           "'i3d:<weights path>', 'synthetic-proxy', 'synthetic-proxy-conv'")


def describe_pose(backend: str) -> str:
    return POSE_BACKEND_NAMES.get(backend, backend)


def describe_rgb(rgb_features: str) -> str:
    if rgb_features == BSL1K:
        return "I3D, BSL-1K weights"
    w = rgb_weights(rgb_features)
    if rgb_features == "synthetic-proxy-conv":
        return "synthetic proxy (frozen random conv stack over 112×112 frames + frame differences; not I3D)"
    if w is None:
        return "synthetic proxy (colour histograms + fixed random projections; not I3D)"
    if w == "kinetics400":
        return "I3D, Kinetics-400 weights (DeepMind)"
    return f"I3D, weights {w}"


def make_rgb_extractor(rgb_features: str, device: str | torch.device = "cpu",
                       memory_budget_mb: float | None = None, i3d_compile: bool = False):
    """The RGB extractor matching a checkpoint's ``data.rgb_features`` (``memory_budget_mb``: I3D's
    activation budget per batch of windows, default I3D's own; ``i3d_compile``: I3D through torch.compile,
    see :class:`I3DFeatureExtractor`)."""
    w = rgb_weights(rgb_features)
    if w is None:
        return PROXIES[rgb_features]()
    try:
        return I3DFeatureExtractor(weights=w, device=device, memory_budget_mb=memory_budget_mb, compile=i3d_compile)
    except (ValueError, OSError) as e:
        raise RGBFeaturesError(f"cannot load the I3D weights the checkpoint needs ({rgb_features}): {e}") from e


@dataclass(frozen=True)
class ExtractorFactory:
    """The one picklable factory of the extraction pipeline (:func:`seds.extract.runner.run_extraction`
    workers build it once each): pose backend + the RGB extractor named by ``rgb_features`` (a
    checkpoint's ``data.rgb_features``; :func:`i3d_rgb_features` turns ``--i3d`` weights into one)."""
    rgb_features: str
    pose_backend: str = "mediapipe"
    device: str = "cpu"
    max_clips: int = 64
    max_seconds: float | None = None
    trim_long: bool = False
    pose_stride: int = 1
    i3d_compile: bool = False

    def __call__(self):
        cfg = ExtractConfig(pose_backend=self.pose_backend, device=self.device, max_clips=self.max_clips,
                            max_seconds=self.max_seconds, trim_long=self.trim_long, pose_stride=self.pose_stride)
        return Extractor(cfg, rgb_extractor=make_rgb_extractor(self.rgb_features, self.device,
                                                               i3d_compile=self.i3d_compile))


@dataclass(frozen=True)
class RecordingExtractorFactory:
    """The picklable factory of streaming extraction for long recordings (``python -m seds.extract
    --recordings``; :class:`seds.extract.recording.RecordingExtractor`): windows every ``window_stride``
    frames along the whole timeline, decoded ``chunk_seconds`` at a time, ``max_seconds`` the length limit."""
    rgb_features: str
    pose_backend: str = "mediapipe"
    device: str = "cpu"
    window_stride: int = DEFAULT_WINDOW_STRIDE
    chunk_seconds: float = 32.0
    max_seconds: float | None = None
    pose_stride: int = 1
    i3d_compile: bool = False
    max_short_side: int | None = 360

    def __call__(self):
        cfg = RecordingConfig(pose_backend=self.pose_backend, window_stride=self.window_stride,
                              chunk_seconds=self.chunk_seconds, max_seconds=self.max_seconds,
                              pose_stride=self.pose_stride, max_short_side=self.max_short_side)
        return RecordingExtractor(cfg, rgb_extractor=make_rgb_extractor(self.rgb_features, self.device,
                                                                        i3d_compile=self.i3d_compile))


# --- which extractors a checkpoint's live queries use -------------------------------------------------

def training_extractors(model_cfg, info: dict | None = None) -> tuple[str, str]:
    """(pose backend, ``rgb_features``) that produced a checkpoint's training features: the authors' (RTMPose,
    BSL-1K I3D) for a checkpoint converted from their release, else its ``data.pose_backend`` / ``rgb_features``."""
    if (info or {}).get("converted_from"):    # only seds.convert official writes it
        return OFFICIAL_POSE, BSL1K
    return model_cfg.data.pose_backend, model_cfg.data.rgb_features


@dataclass(frozen=True)
class ExtractorPlan:
    """What live queries of one checkpoint use, next to what produced its training features."""
    pose_backend: str             # used: mediapipe | rtmpose | mmpose
    rgb_features: str             # used: a name make_rgb_extractor builds
    trained_pose: str
    trained_rgb: str
    pose_reason: str = ""         # why the pose backend differs from the trained one
    rgb_reason: str = ""

    @property
    def pose_matches(self) -> bool:
        return self.pose_backend == self.trained_pose

    @property
    def rgb_matches(self) -> bool:
        # a user-given checkpoint stands for the BSL-1K weights the authors used (it cannot be verified here)
        return self.rgb_features == self.trained_rgb or (self.trained_rgb == BSL1K and self.rgb_features.startswith("i3d:"))

    def describe(self) -> dict[str, str]:
        """One line each for ``pose`` and ``rgb``: what is used and whether it matches the training features."""
        out = {}
        for part, used, trained, ok, why, name in (
                ("pose", self.pose_backend, self.trained_pose, self.pose_matches, self.pose_reason, describe_pose),
                ("rgb", self.rgb_features, self.trained_rgb, self.rgb_matches, self.rgb_reason, describe_rgb)):
            if ok:
                out[part] = f"{name(used)} — matches the checkpoint's training features"
            elif trained in POSE_BACKEND_NAMES or trained in (BSL1K, "i3d-kinetics400") or trained.startswith("i3d:"):
                out[part] = (f"{name(used)} — substitute for {name(trained)}, which made the checkpoint's "
                             "training features" + (f" ({why})" if why else ""))
            else:
                out[part] = f"{name(used)} (training features: {trained})"
        return out


def probe_pose_backend(name: str):
    """(estimator, "") when backend ``name`` can run here without downloading anything, else (None, reason)."""
    try:
        return make_pose_estimator(name, allow_download=False) if name == "rtmpose" else make_pose_estimator(name), ""
    except (PoseError, PoseBackendUnavailable, ImportError, OSError) as e:
        return None, str(e).split("\n")[0].split(";")[0][:200]


def plan_extractors(model_cfg, info: dict | None = None, pose_backend: str = "auto", i3d_weights: str | None = None,
                    probe=probe_pose_backend):
    """→ (:class:`ExtractorPlan`, a pose estimator built while probing or None).

    ``pose_backend="auto"``: the backend of the training keypoints when it runs here (``probe``), else MediaPipe;
    any other name is used as given. ``i3d_weights`` (a checkpoint path): the I3D weights for checkpoints
    trained on BSL-1K features; without it those checkpoints use the Kinetics-400 I3D as a substitute. Other
    checkpoints use exactly the RGB extractor they name (``data.rgb_features``)."""
    trained_pose, trained_rgb = training_extractors(model_cfg, info)
    pose, estimator, pose_reason = pose_backend, None, ""
    if pose_backend in ("auto", "", None):
        pose = "mediapipe"
        if trained_pose in POSE_BACKEND_NAMES and trained_pose != "mediapipe":
            estimator, pose_reason = probe(trained_pose)
            if estimator is not None:
                pose = trained_pose
        elif trained_pose not in POSE_BACKEND_NAMES:
            pose_reason = "not an extractor that runs on video"
    elif pose_backend != trained_pose:
        pose_reason = "chosen with --pose-backend"
    rgb, rgb_reason = trained_rgb, ""
    if i3d_weights:
        rgb = i3d_rgb_features(i3d_weights)
        if trained_rgb != BSL1K and rgb != trained_rgb:
            rgb_reason = "chosen with --i3d-weights"
    elif trained_rgb == BSL1K:
        rgb, rgb_reason = "i3d-kinetics400", "no BSL-1K weights given: --i3d-weights"
    plan = ExtractorPlan(pose, rgb, trained_pose, trained_rgb, pose_reason, rgb_reason)
    return plan, estimator
