"""Which extractor a run uses — the one place that turns names into extractors.

``rgb_features`` names (a checkpoint's ``data.rgb_features``): ``i3d-kinetics400`` (InceptionI3d with
DeepMind's Kinetics-400 weights), ``i3d:<path>`` (a local I3D checkpoint, e.g. BSL-1K: the paper's
encoder) and ``synthetic-proxy`` (:mod:`seds.extract.proxy_rgb`, not I3D). A model only understands the
RGB features it was trained on, so the index and the app build the extractor its checkpoint names.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from seds.extract.i3d import I3DFeatureExtractor
from seds.extract.pipeline import ExtractConfig, Extractor
from seds.extract.proxy_rgb import ProxyRGBExtractor


class RGBFeaturesError(ValueError):
    """An ``rgb_features`` name that is not known, or whose I3D weights cannot be loaded."""


def i3d_rgb_features(weights: str) -> str:
    """The ``rgb_features`` name of I3D ``weights`` (``kinetics400`` or a checkpoint path)."""
    return "i3d-kinetics400" if weights == "kinetics400" else f"i3d:{weights}"


def rgb_weights(rgb_features: str) -> str | None:
    """I3D weights named by a checkpoint's ``data.rgb_features`` (None for the synthetic proxy)."""
    if rgb_features == "synthetic-proxy":
        return None
    if rgb_features == "i3d-kinetics400":
        return "kinetics400"
    if rgb_features.startswith("i3d:") and len(rgb_features) > 4:
        return rgb_features[4:]
    raise RGBFeaturesError(f"checkpoint data.rgb_features={rgb_features!r} is not one of 'i3d-kinetics400', "
                           "'i3d:<weights path>', 'synthetic-proxy'")


def describe_rgb(rgb_features: str) -> str:
    w = rgb_weights(rgb_features)
    if w is None:
        return "synthetic proxy (colour histograms + fixed random projections; not I3D)"
    if w == "kinetics400":
        return "I3D, Kinetics-400 weights (DeepMind)"
    return f"I3D, weights {w}"


def make_rgb_extractor(rgb_features: str, device: str | torch.device = "cpu",
                       memory_budget_mb: float | None = None):
    """The RGB extractor matching a checkpoint's ``data.rgb_features`` (``memory_budget_mb``: I3D's
    activation budget per batch of windows, default I3D's own)."""
    w = rgb_weights(rgb_features)
    if w is None:
        return ProxyRGBExtractor()
    try:
        return I3DFeatureExtractor(weights=w, device=device, memory_budget_mb=memory_budget_mb)
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

    def __call__(self):
        cfg = ExtractConfig(pose_backend=self.pose_backend, device=self.device, max_clips=self.max_clips,
                            max_seconds=self.max_seconds, trim_long=self.trim_long)
        return Extractor(cfg, rgb_extractor=make_rgb_extractor(self.rgb_features, self.device))
