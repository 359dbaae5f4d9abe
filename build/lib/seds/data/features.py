"""The per-video model inputs that extraction produces and the feature store saves.

Keypoints are stored *raw* (pixel x, y and confidence) in the full SEDS layout with both optional
parts, i.e. ``KeypointLayout(extra=("face", "mouth"))`` = 49 + 18 + 20 = 87 points; backends that
have no face write confidence 0 there. Normalization (``seds.keypoints.normalize_parts``) and part
selection happen when a dataset is read, so one extraction serves every ablation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seds.keypoints import KeypointLayout

STORE_LAYOUT = KeypointLayout(extra=("face", "mouth"))
RGB_DIM = 1024


@dataclass
class VideoFeatures:
    keypoints: np.ndarray     # (F, 87, 3) float32: x, y (pixels), confidence in [0, 1]
    rgb: np.ndarray           # (T, 1024) float32: I3D Mixed_5c features of the chosen windows
    clip_starts: np.ndarray   # (T,) int64: first frame (in `keypoints` frame numbering) of each window
    fps: float = 24.0
    meta: dict = field(default_factory=dict)   # id, text, split, signer, source fps, backends, ...

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        self.rgb = np.asarray(self.rgb, dtype=np.float32)
        self.clip_starts = np.asarray(self.clip_starts, dtype=np.int64)
        self.validate()

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_clips(self) -> int:
        return int(self.clip_starts.shape[0])

    def validate(self, window: int = 16) -> None:
        k = self.keypoints
        if k.ndim != 3 or k.shape[1:] != (STORE_LAYOUT.num_points, 3):
            raise ValueError(f"keypoints must be (frames, {STORE_LAYOUT.num_points}, 3), got {k.shape}")
        if self.rgb.ndim != 2 or self.rgb.shape[1] != RGB_DIM:
            raise ValueError(f"rgb must be (clips, {RGB_DIM}), got {self.rgb.shape}")
        if self.rgb.shape[0] != self.clip_starts.shape[0]:
            raise ValueError(f"{self.rgb.shape[0]} RGB clips but {self.clip_starts.shape[0]} clip starts: "
                             "pose and RGB must use the same windows")
        if self.num_clips == 0:
            raise ValueError("a video needs at least one clip")
        if self.clip_starts.min() < 0 or self.clip_starts.max() + window > self.num_frames:
            raise ValueError("clip_starts point outside the keypoint frames (videos shorter than one "
                             "window must be padded by repeating their last frame)")
        if not (all_finite(self.rgb) and all_finite(k)):
            raise ValueError("features contain NaN/inf")


def all_finite(a: np.ndarray) -> bool:
    """Whether every value of ``a`` is finite: a NaN or inf makes the sum non-finite, so a finite sum (one
    pass, no temporary) settles it; only an overflowing sum needs the element-wise check."""
    return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())
