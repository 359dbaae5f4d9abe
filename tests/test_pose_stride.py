"""seds.extract.pose_stride: pose on every s-th frame + interpolation — against a naive per-frame loop, which frames
the backend sees, bad strides, the settings that carry the stride (pipeline, CLI, app), and a slow check on a
real How2Sign-mini clip with MediaPipe."""
import numpy as np
import pytest

from demo.backend import AppConfig, load_app_config
from seds.config import ConfigError
from seds.extract import pose as P
from seds.extract.__main__ import build_parser
from seds.extract.factory import ExtractorFactory
from seds.extract.pipeline import ExtractConfig, Extractor
from seds.extract.pose_stride import (StridedPoseEstimator, check_stride, interpolate_keypoints, pose_stride_of,
                                      stride_indices, with_stride)
from seds.keypoints import LEFT_HAND, RIGHT_HAND


def naive_interpolation(known: dict[int, np.ndarray], n: int) -> np.ndarray:
    """Frame by frame, point by point: copy known frames; between two known frames interpolate a point
    linearly when its confidence is > 0 at both, else leave it missing (all zeros)."""
    frames = sorted(known)
    k, c = known[frames[0]].shape
    out = np.zeros((n, k, c), np.float64)
    for t in range(n):
        if t in known:
            out[t] = known[t]
            continue
        lo = max(f for f in frames if f < t)
        hi = min(f for f in frames if f > t)
        w = (t - lo) / (hi - lo)
        for p in range(k):
            a, b = known[lo][p], known[hi][p]
            if a[-1] > 0 and b[-1] > 0:
                out[t, p] = (1 - w) * a + w * b
    return out


def random_known(rng, idx, k=6):
    """Keypoints at frames ``idx`` with runs of missing points (confidence 0, coordinates 0)."""
    kp = np.concatenate([rng.uniform(0, 640, (len(idx), k, 2)), rng.uniform(0.05, 1, (len(idx), k, 1))], -1)
    missing = rng.random((len(idx), k)) < 0.3
    missing[2:5, 0] = True                   # a hand lost for a run of known frames
    kp[missing] = 0
    return kp.astype(np.float32)


@pytest.mark.parametrize("n,stride", [(17, 3), (16, 3), (9, 2), (10, 2), (7, 7), (5, 9), (1, 3), (2, 5), (30, 4)])
def test_interpolation_matches_the_naive_loop(n, stride):
    rng = np.random.default_rng(n * 31 + stride)
    idx = stride_indices(n, stride)
    assert idx[0] == 0 and idx[-1] == n - 1 and np.all(np.diff(idx) > 0)
    expect_grid = sorted(set(range(0, n, stride)) | {n - 1})
    np.testing.assert_array_equal(idx, expect_grid)          # 0, s, 2s, ... and the last frame
    kp = random_known(rng, idx)
    got = interpolate_keypoints(kp, idx, n)
    ref = naive_interpolation(dict(zip(idx.tolist(), kp)), n)
    assert got.dtype == np.float32 and got.shape == (n, kp.shape[1], 3)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(got[idx], kp)              # processed frames: unchanged
    assert np.all(got[got[..., 2] == 0][:, :2] == 0)         # missing points are (0, 0), never NaN


def test_missing_hand_at_either_neighbour_stays_missing():
    idx = stride_indices(7, 3)                               # 0, 3, 6
    kp = np.ones((3, 2, 3), np.float32)
    kp[1, 0] = 0                                             # point 0 missing at frame 3
    out = interpolate_keypoints(kp, idx, 7)
    assert np.all(out[1:6, 0] == 0)                          # gone on both sides of frame 3
    np.testing.assert_allclose(out[:, 1], 1.0)               # point 1 present throughout


def test_stride_one_is_the_identity():
    kp = random_known(np.random.default_rng(0), np.arange(11))
    np.testing.assert_array_equal(interpolate_keypoints(kp, stride_indices(11, 1), 11), kp)
    est = CountingPose()
    assert with_stride(est, 1) is est and pose_stride_of(est) == 1
    s2 = with_stride(est, 2)
    assert isinstance(s2, StridedPoseEstimator) and s2.inner is est and pose_stride_of(s2) == 2
    assert with_stride(s2, 2) is s2 and with_stride(s2, 1) is est and with_stride(s2, 3).inner is est


class CountingPose(P.PoseEstimator):
    """Records the frame numbers (encoded in the pixels) of every call; keypoint x = frame number, y = 2x,
    confidence 1 except the hands' on ``no_hands`` frames."""

    name = "counting"
    layout = P.COCO_WHOLEBODY

    def __init__(self, no_hands=()):
        self.no_hands = set(no_hands)
        self.calls = []

    def _estimate(self, frames, progress):
        ids = frames[:, 0, 0, 0].astype(np.int64) + 256 * frames[:, 0, 0, 1]
        self.calls.append(ids.tolist())
        k = np.zeros((len(frames), 133, 3), np.float32)
        k[..., 0] = ids[:, None]
        k[..., 1] = 2 * ids[:, None]
        k[..., 2] = 1.0
        for i, f in enumerate(ids):
            if f in self.no_hands:
                k[i, 91:] = 0
        return k


def frames_numbered(n, h=8, w=8):
    f = np.zeros((n, h, w, 3), np.uint8)
    f[..., 0] = (np.arange(n) % 256)[:, None, None]
    f[..., 1] = (np.arange(n) // 256)[:, None, None]
    return f


@pytest.mark.parametrize("n,stride", [(10, 2), (11, 2), (10, 3), (300, 3), (1, 2)])
def test_backend_runs_once_on_frames_0_s_2s_and_the_last(n, stride):
    inner = CountingPose(no_hands={stride})
    est = StridedPoseEstimator(inner, stride)
    res = est(frames_numbered(n))
    assert inner.calls == [sorted(set(range(0, n, stride)) | {n - 1})]     # one call: tracking spans the sequence
    assert res.layout == P.COCO_WHOLEBODY and res.num_frames == n and est.name == "counting"
    k = res.to_store()
    body = k[:, 0]
    np.testing.assert_allclose(body[:, 0], np.arange(n))                    # linear in time: exact
    np.testing.assert_allclose(body[:, 1], 2 * np.arange(n))
    if n > stride:                                                          # the hand lost at frame s
        assert np.all(k[1:2 * stride, LEFT_HAND, 2] == 0) and np.all(k[1:2 * stride, RIGHT_HAND, 2] == 0)
        assert np.all(k[[0, 2 * stride] if 2 * stride < n else [0], LEFT_HAND, 2] == 1)


@pytest.mark.parametrize("bad", [0, -1, -3, 1.5, "2", True, None])
def test_bad_stride_gives_a_clear_error(bad):
    with pytest.raises(P.PoseError, match="stride must be an integer ≥ 1"):
        check_stride(bad)
    with pytest.raises(P.PoseError, match="stride"):
        StridedPoseEstimator(CountingPose(), bad)


def test_bad_stride_in_the_settings():
    with pytest.raises(ValueError, match="pose_stride"):
        ExtractConfig(pose_stride=0)
    with pytest.raises(ConfigError, match="pose_stride"):
        AppConfig(pose_stride=-2)
    with pytest.raises(ConfigError, match="SEDS_POSE_STRIDE"):
        load_app_config(None, env={"SEDS_POSE_STRIDE": "two"})
    assert load_app_config(None, env={"SEDS_POSE_STRIDE": "2"}).pose_stride == 2
    assert load_app_config(None, env={}).pose_stride == AppConfig().pose_stride == 1     # the library's default


def test_pipeline_runs_pose_at_the_configured_stride():
    class RGB:
        def features(self, frames, starts, window=16):
            return np.zeros((len(starts), 1024), np.float32)

    inner = CountingPose()
    ex = Extractor(ExtractConfig(pose_stride=3), pose_estimator=inner, rgb_extractor=RGB())
    f = ex.extract_frames(frames_numbered(41), fps=24.0).features
    assert inner.calls == [list(range(0, 41, 3)) + [40]]
    assert f.meta["pose_stride"] == 3 and f.meta["pose_backend"] == "counting"
    np.testing.assert_allclose(f.keypoints[:, 0, 0], np.arange(41))
    assert Extractor(ExtractConfig(), pose_estimator=inner).pose is inner


def test_cli_flag_reaches_the_extractor():
    base = ["--annotations", "a.csv", "--out", "o"]
    assert build_parser().parse_args(base).pose_stride == 1
    assert build_parser().parse_args(base + ["--pose-stride", "2"]).pose_stride == 2
    for bad in ("0", "-1", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(base + ["--pose-stride", bad])
    ex = ExtractorFactory("synthetic-proxy", pose_stride=2)()
    assert ex.cfg.pose_stride == 2


@pytest.mark.slow
def test_stride_two_on_a_real_clip_is_close_to_every_frame(shared_data):
    """MediaPipe on a real How2Sign-mini clip (2 s): stride 2 gives the same shape and hands within a loose bound
    of the every-frame keypoints (benchmarks/results/pose_stride.md measures it properly)."""
    import csv

    from seds.extract.video import read_video
    root = shared_data / "how2sign-mini"
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    frames = read_video(root / row["file"], fps=24.0, max_seconds=2.0, trim_long=True).frames
    base = P.make_pose_estimator("mediapipe")
    try:
        ref = base(frames).to_store()
        got = with_stride(base, 2)(frames).to_store()
    finally:
        base.close()
    assert got.shape == ref.shape == (len(frames), 87, 3)
    checked = 0
    for sl in (LEFT_HAND, RIGHT_HAND):
        both = (ref[:, sl, 2] > 0) & (got[:, sl, 2] > 0)
        if both.sum() < 21 * 5:
            continue
        checked += 1
        err = np.linalg.norm(ref[:, sl, :2] - got[:, sl, :2], axis=-1)[both]
        assert err.mean() < 15.0, err.mean()     # hands are ~60 px across in these 640x360 frames
    assert checked, "MediaPipe found no hand in 5 frames of both runs"
