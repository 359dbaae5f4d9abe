"""Pose at lower cost: run a pose backend on every ``stride``-th frame and interpolate the others.

:class:`StridedPoseEstimator` wraps any :class:`~seds.extract.pose.PoseEstimator`. On a video of ``n`` frames it
runs the backend once, on the frame sequence ``0, s, 2s, …`` plus the last frame ``n - 1`` (so tracking
backends such as MediaPipe in video mode track across the subsampled sequence itself), and fills the frames
in between by linear interpolation of x, y and confidence between the two processed neighbours
(:func:`interpolate_keypoints`). A point missing (confidence 0, the convention of
:func:`~seds.extract.pose.sanitize_keypoints`) at either neighbour stays missing in between: a hand that
MediaPipe lost on one side is never invented. Processed frames keep the backend's output unchanged. (MediaPipe's
legacy solutions stamp frames 1/30 s apart whatever the real rate, so its landmark smoothing sees a strided
sequence as faster motion: part of what the benchmark measures.)

The error this costs against running on every frame, next to MediaPipe's own frame-to-frame jitter, is
measured by ``benchmarks/bench_pose_stride.py`` (``benchmarks/results/pose_stride.md``).
"""
from __future__ import annotations

import numpy as np

from seds.extract.pose import PoseError, PoseEstimator, Progress, make_pose_estimator


def check_stride(stride) -> int:
    """``stride`` as an int ≥ 1, else :class:`PoseError`."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise PoseError(f"pose stride must be an integer ≥ 1 (1: every frame), got {stride!r}")
    return int(stride)


def stride_indices(n: int, stride: int) -> np.ndarray:
    """The frames a backend runs on: ``0, s, 2s, …`` and the last frame ``n - 1`` (increasing, no repeats)."""
    stride = check_stride(stride)
    if n < 1:
        raise PoseError(f"no frames to estimate pose on (n = {n})")
    idx = np.arange(0, n, stride)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def interpolate_keypoints(kpts: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Keypoints ``(len(idx), K, C)`` known at frames ``idx`` (increasing, ``idx[0] = 0``, ``idx[-1] = n - 1``)
    → ``(n, K, C)`` float32. A frame between two known ones gets the linear interpolation of all channels
    where the point's confidence (last channel) is > 0 at both, else zeros (missing); known frames are copied."""
    kpts = np.asarray(kpts, dtype=np.float32)
    idx = np.asarray(idx)
    if kpts.ndim != 3 or len(kpts) != len(idx) or len(idx) == 0:
        raise PoseError(f"need keypoints (frames, points, C) for each of {len(idx)} frames, got {kpts.shape}")
    if idx[0] != 0 or idx[-1] != n - 1 or np.any(np.diff(idx) <= 0):
        raise PoseError(f"known frames must increase from 0 to {n - 1}, got {idx[:3]}…{idx[-3:]}")
    if len(idx) == 1:
        return kpts.copy()
    t = np.arange(n)
    j = np.clip(np.searchsorted(idx, t, side="right") - 1, 0, len(idx) - 2)   # left known neighbour
    lo, hi = idx[j], idx[j + 1]
    w = ((t - lo) / (hi - lo)).astype(np.float32)[:, None, None]
    a, b = kpts[j], kpts[j + 1]
    both = (a[..., -1] > 0) & (b[..., -1] > 0)
    out = np.where(both[..., None], a + (b - a) * w, np.float32(0.0))
    out[idx] = kpts
    return out


class StridedPoseEstimator(PoseEstimator):
    """``estimator`` run on every ``stride``-th frame (and the last), the frames between interpolated
    (:func:`interpolate_keypoints`). Name and layout are the wrapped backend's; ``stride`` says the rest.
    With a stride that does not reach the last frame exactly, the backend gets a copy of its frames
    (``1/stride`` of the video); otherwise a view."""

    def __init__(self, estimator: PoseEstimator, stride: int):
        if isinstance(estimator, StridedPoseEstimator):
            estimator = estimator.inner
        self.inner = estimator
        self.stride = check_stride(stride)
        self.name = getattr(estimator, "name", type(estimator).__name__)
        self.layout = getattr(estimator, "layout", "")

    def _estimate(self, frames: np.ndarray, progress: Progress | None) -> np.ndarray:
        n = len(frames)
        idx = stride_indices(n, self.stride)
        sub = frames[::self.stride] if (n - 1) % self.stride == 0 else frames[idx]
        res = self.inner(sub, progress, continue_tracking=self.continue_tracking)
        return interpolate_keypoints(res.keypoints, idx, n)

    def close(self) -> None:
        self.inner.close()


def with_stride(estimator: PoseEstimator, stride: int) -> PoseEstimator:
    """``estimator`` run at ``stride``: itself at stride 1 (unwrapped if it was strided), the same object
    if it already runs at ``stride``, else a :class:`StridedPoseEstimator` over the plain backend."""
    stride = check_stride(stride)
    if isinstance(estimator, StridedPoseEstimator):
        if estimator.stride == stride:
            return estimator
        estimator = estimator.inner
    return estimator if stride == 1 else StridedPoseEstimator(estimator, stride)


def pose_stride_of(estimator) -> int:
    """The stride an estimator runs at (1 for a plain backend)."""
    return estimator.stride if isinstance(estimator, StridedPoseEstimator) else 1


def strided_backend(estimator: PoseEstimator | None, backend: str, options: dict, stride: int) -> PoseEstimator:
    """``estimator`` (built from ``backend`` / ``options`` when None) at ``stride``: an extractor's lazy pose backend."""
    return with_stride(estimator if estimator is not None else make_pose_estimator(backend, **options), stride)
