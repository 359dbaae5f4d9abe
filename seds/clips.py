"""Clip sampling (Sec. 3.1): sliding 16-frame windows with stride 1, at most T chosen at equal intervals.

Pose and RGB streams are built from the *same* windows: a video is described by ``clip_starts``
(the first frame of each chosen window), and both the I3D features and the pose-encoder windows use
them. Videos shorter than one window are padded by repeating their last frame (``pad_frames``).
"""
from __future__ import annotations

import numpy as np

WINDOW = 16
MAX_CLIPS = 64


def num_windows(num_frames: int, window: int = WINDOW, stride: int = 1) -> int:
    """Number of sliding windows over a (padded-to-one-window) video."""
    if num_frames <= 0:
        raise ValueError("a video needs at least one frame")
    return (max(num_frames, window) - window) // stride + 1


def select_clip_starts(num_frames: int, max_clips: int = MAX_CLIPS, window: int = WINDOW,
                       stride: int = 1) -> np.ndarray:
    """First frames of the chosen windows: all windows if there are ≤ ``max_clips``, else
    ``max_clips`` windows at equal intervals (first and last window always included)."""
    if max_clips < 1:
        raise ValueError("max_clips must be ≥ 1")
    n = num_windows(num_frames, window, stride)
    all_starts = np.arange(n, dtype=np.int64) * stride
    if n <= max_clips:
        return all_starts
    pick = np.round(np.linspace(0, n - 1, max_clips)).astype(np.int64)
    return all_starts[pick]


def pad_frames(num_frames: int, window: int = WINDOW) -> int:
    """How many repeated last frames a video needs to hold one full window."""
    return max(0, window - num_frames)


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
