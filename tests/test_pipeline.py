"""Single-video extraction (seds.extract.pipeline): frame filtering, padding, shared windows, meta,
progress and timings — with stub pose/RGB backends where the real ones are not the point, plus a real
clip through real MediaPipe (stub RGB) and a slow run with the real I3D."""
import csv

import numpy as np
import pytest

from seds.clips import select_clip_starts
from seds.data.features import VideoFeatures
from seds.extract import pose as P
from seds.extract.pipeline import STAGES, ExtractConfig, ExtractionError, Extractor
from seds.extract.pose import FrameFilter, NoSignerError


class StubPose(P.PoseEstimator):
    """Frame i of the synthetic videos encodes i in its pixels; frames listed in ``no_signer`` /
    ``no_hands`` get no body / no hands. Keypoint x of every point = frame number."""

    name = "stub_pose"
    layout = P.COCO_WHOLEBODY

    def __init__(self, no_signer=(), no_hands=()):
        self.no_signer, self.no_hands = set(no_signer), set(no_hands)
        self.calls = 0

    def _estimate(self, frames, progress):
        self.calls += 1
        n = len(frames)
        ids = frames[:, 0, 0, 0].astype(np.float32) + 256 * frames[:, 0, 0, 1]
        k = np.zeros((n, 133, 3), np.float32)
        k[..., 0] = ids[:, None] + 1
        k[..., 1] = 7.0
        k[..., 2] = 0.9
        for i in range(n):
            if i in self.no_signer:
                k[i, :23, 2] = 0
            if i in self.no_hands or i in self.no_signer:
                k[i, 91:, 2] = 0
            if progress:
                progress((i + 1) / n)
        return k


class StubRGB:
    """RGB extractor with the I3D API: feature t = the frame numbers of window t (padded to 1024)."""

    name = "stub_rgb"

    def __init__(self):
        self.seen = []

    def features(self, frames, clip_starts, window=16):
        frames = np.asarray(frames)
        self.seen.append((frames.shape, np.asarray(clip_starts).copy(), window))
        ids = frames[:, 0, 0, 0].astype(np.float32) + 256 * frames[:, 0, 0, 1]
        out = np.zeros((len(clip_starts), 1024), np.float32)
        for t, s in enumerate(clip_starts):
            out[t, :window] = ids[s:s + window]
        return out


def synthetic(n, h=24, w=32):
    """uint8 frames whose top-left pixel encodes the frame number (low byte R, high byte G)."""
    f = np.zeros((n, h, w, 3), np.uint8)
    f[:, :, :, 0] = (np.arange(n) % 256)[:, None, None]
    f[:, :, :, 1] = (np.arange(n) // 256)[:, None, None]
    return f


def test_frames_without_signer_or_hands_are_dropped_from_both_streams():
    n = 60
    drop_s, drop_h = {3, 4, 10}, {20, 21, 22, 59}
    rgb = StubRGB()
    ex = Extractor(ExtractConfig(max_clips=64), pose_estimator=StubPose(drop_s, drop_h), rgb_extractor=rgb)
    frames = synthetic(n)
    before = frames.copy()
    res = ex.extract_frames(frames, fps=24.0, meta={"id": "v1"})
    np.testing.assert_array_equal(frames, before)                  # the caller's frames are untouched
    kept = np.array([i for i in range(n) if i not in drop_s | drop_h])
    np.testing.assert_array_equal(res.keep, np.isin(np.arange(n), kept))
    f = res.features
    assert isinstance(f, VideoFeatures) and f.num_frames == len(kept)
    np.testing.assert_array_equal(f.keypoints[:, 0, 0], kept + 1)     # keypoints of the kept frames
    np.testing.assert_array_equal(res.frames[:, 0, 0, 0], kept)       # and the same frames for RGB
    np.testing.assert_array_equal(f.clip_starts, select_clip_starts(len(kept), 64, 16))
    for t, s in enumerate(f.clip_starts):                             # RGB window t = kept[s:s+16]
        np.testing.assert_array_equal(f.rgb[t, :16], kept[s:s + 16])
    assert f.meta["n_frames"] == n and f.meta["kept_frames"] == len(kept)
    assert f.meta["dropped_frames"] == 7 and f.meta["padded_frames"] == 0
    assert f.meta["pose_backend"] == "stub_pose" and f.meta["rgb_backend"] == "stub_rgb"
    assert f.meta["id"] == "v1" and f.fps == 24.0


def test_short_video_is_padded_by_repeating_its_last_kept_frame():
    ex = Extractor(ExtractConfig(), pose_estimator=StubPose(no_hands={6}), rgb_extractor=StubRGB())
    res = ex.extract_frames(synthetic(7), fps=24.0)
    f = res.features
    assert f.num_frames == 16 and f.meta["padded_frames"] == 10 and f.meta["kept_frames"] == 6
    np.testing.assert_array_equal(f.keypoints[:, 0, 0], [1, 2, 3, 4, 5, 6] + [6] * 10)
    np.testing.assert_array_equal(res.frames[:, 0, 0, 0], [0, 1, 2, 3, 4, 5] + [5] * 10)
    np.testing.assert_array_equal(f.clip_starts, [0])
    np.testing.assert_array_equal(f.rgb[0, :16], [0, 1, 2, 3, 4, 5] + [5] * 10)


def test_long_video_takes_max_clips_windows_at_equal_intervals():
    ex = Extractor(ExtractConfig(max_clips=8, window=16), pose_estimator=StubPose(), rgb_extractor=StubRGB())
    f = ex.extract_frames(synthetic(300), fps=24.0).features
    assert f.num_clips == 8 and f.clip_starts[0] == 0 and f.clip_starts[-1] == 300 - 16
    np.testing.assert_array_equal(f.clip_starts, np.round(np.linspace(0, 284, 8)).astype(int))
    np.testing.assert_array_equal(f.rgb[:, 0], f.clip_starts)


def test_in_place_compaction_matches_copying():
    """``extract`` compacts freshly decoded frames in place; the result equals the copying path."""
    from seds.extract.pipeline import _select_frames
    frames = synthetic(500)
    kept = np.sort(np.random.default_rng(0).choice(500, 321, replace=False))
    ref = frames[kept]
    out = _select_frames(frames.copy(), kept, 0, in_place=True, chunk=17)
    np.testing.assert_array_equal(out, ref)
    out = _select_frames(frames.copy(), kept[:5], 11, in_place=True)
    np.testing.assert_array_equal(out, np.concatenate([frames[kept[:5]], np.repeat(frames[kept[4:5]], 11, 0)]))


def test_filter_settings_are_applied():
    no_hands = set(range(0, 40, 2))
    ex = Extractor(ExtractConfig(filter=FrameFilter(require_hand=False)), pose_estimator=StubPose(no_hands=no_hands),
                   rgb_extractor=StubRGB())
    assert ex.extract_frames(synthetic(40)).features.meta["kept_frames"] == 40
    ex = Extractor(ExtractConfig(filter={"require_hand": True}), pose_estimator=StubPose(no_hands=no_hands),
                   rgb_extractor=StubRGB())
    assert ex.extract_frames(synthetic(40)).features.meta["kept_frames"] == 20


def test_no_signer_anywhere_is_a_clear_error():
    ex = Extractor(ExtractConfig(), pose_estimator=StubPose(no_signer=range(30)), rgb_extractor=StubRGB())
    with pytest.raises(NoSignerError, match="no signer found"):
        ex.extract_frames(synthetic(30))


def test_progress_and_timings():
    events = []
    ex = Extractor(ExtractConfig(), pose_estimator=StubPose(), rgb_extractor=StubRGB())
    ex.extract_frames(synthetic(50), progress=lambda stage, frac: events.append((stage, frac)))
    stages = [s for s, _ in events]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == ["pose", "filter", "rgb", "done"]
    fr = [f for _, f in events]
    assert all(b >= a for a, b in zip(fr, fr[1:])) and fr[-1] == 1.0 and 0 <= fr[0]
    assert set(stages) <= set(STAGES)
    assert {"pose", "filter", "rgb", "total"} <= set(ex.last_timings)
    assert all(v >= 0 for v in ex.last_timings.values())


def test_bad_rgb_extractor_output_is_caught():
    class Bad(StubRGB):
        def features(self, frames, clip_starts, window=16):
            return np.zeros((len(clip_starts), 512), np.float32)
    ex = Extractor(ExtractConfig(), pose_estimator=StubPose(), rgb_extractor=Bad())
    with pytest.raises(ExtractionError, match="1024"):
        ex.extract_frames(synthetic(20))


def test_config_validation():
    with pytest.raises(ValueError, match="max_clips"):
        ExtractConfig(max_clips=0)
    with pytest.raises(ValueError, match="fps"):
        ExtractConfig(fps=-1)


# --- real clips -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_clip(shared_data):
    root = shared_data / "how2sign-mini"
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"{root}/manifest.csv not present")
    with open(root / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if 40 <= int(r["n_frames"]) <= 70 and r["fps"] == "23.976"]
    r = rows[0]
    return root / r["file"], int(r["n_frames"]), float(r["fps"])


@pytest.mark.slow
def test_real_clip_through_mediapipe_with_stub_rgb(real_clip):
    path, n_frames, fps = real_clip
    rgb = StubRGB()
    events = []
    ex = Extractor(ExtractConfig(max_clips=16, resize_short=240), rgb_extractor=rgb)
    res = ex.extract(path, meta={"id": "clip", "text": "hello"}, progress=lambda s, f: events.append(s))
    f = res.features
    m = f.meta
    n24 = int(n_frames * 24.0 / fps + 0.5)
    assert m["source_frames"] == n_frames and m["source_fps"] == pytest.approx(fps, abs=1e-2)
    assert m["n_frames"] == n24 and m["duration_s"] == pytest.approx(n_frames / fps, rel=1e-3)
    assert m["pose_backend"] == "mediapipe" and m["id"] == "clip" and m["text"] == "hello"
    assert (m["frame_width"], m["frame_height"]) == (427, 240) and res.frames.shape[1:] == (240, 427, 3)
    assert m["kept_frames"] >= 0.8 * n24
    assert f.keypoints.shape == (max(16, m["kept_frames"]), 87, 3)
    body = f.keypoints[:, :7]
    assert (body[..., 0].max() < 427 + 50) and (body[..., 1].max() < 240 + 50)   # pixels of the resized frames
    assert f.num_clips == min(16, f.num_frames - 15) and rgb.seen[0][0][0] == f.num_frames
    assert events[0] == "decode" and events[-1] == "done"
    assert {"decode", "pose", "filter", "rgb", "total"} <= set(m["timings_s"])


def test_bad_video_raises_before_any_model_runs(tmp_path):
    from seds.extract.video import VideoError
    p = tmp_path / "x.mp4"
    p.write_text("not a video")
    pose = StubPose()
    ex = Extractor(ExtractConfig(), pose_estimator=pose, rgb_extractor=StubRGB())
    with pytest.raises(VideoError):
        ex(p)
    assert pose.calls == 0


@pytest.mark.slow
def test_real_clip_end_to_end_with_real_i3d(real_clip):
    i3d = pytest.importorskip("seds.extract.i3d")
    try:
        rgb = i3d.I3DFeatureExtractor(weights="kinetics400", device="cpu")
    except (ValueError, ImportError, FileNotFoundError) as e:
        pytest.skip(f"Kinetics-400 I3D weights unavailable: {e}")
    path, n_frames, fps = real_clip
    ex = Extractor(ExtractConfig(max_clips=4), rgb_extractor=rgb)
    f = ex(path, meta={"id": "clip"})
    assert f.rgb.shape == (f.num_clips, 1024) and np.isfinite(f.rgb).all()
    assert f.rgb.std() > 0 and f.num_clips == min(4, f.num_frames - 15)
    # the same windows give the same features when computed directly
    direct = rgb.features(ex.extract(path).frames, f.clip_starts, window=16)
    np.testing.assert_allclose(direct, f.rgb, rtol=1e-4, atol=1e-4)


# --- overlay (app preview) -----------------------------------------------------------------------------

def test_overlay_draws_confident_edges_only():
    from seds.extract.overlay import POINT_COLOUR, overlay_video
    frames = np.zeros((2, 200, 300, 3), np.uint8)
    k = np.zeros((2, 87, 3), np.float32)
    k[:, 0] = [150, 40, 0.9]          # nose
    k[:, 1] = [200, 100, 0.9]         # left shoulder
    k[:, 4] = [100, 100, 0.9]         # right shoulder
    k[:, 7] = [250, 180, 0.9]         # left wrist of the left hand (thumb points missing)
    k[:, 8] = [280, 150, 0.1]         # below threshold
    k[1, 4, 2] = 0.0                  # frame 1: right shoulder missing
    out = overlay_video(frames, k, conf_threshold=0.3, thickness=2)
    assert out.shape == frames.shape and not frames.any()          # input untouched
    body = POINT_COLOUR["body"]
    assert tuple(out[0, 100, 150]) == body                          # shoulder line midpoint
    assert tuple(out[0, 70, 175]) == body                           # nose → left shoulder midpoint
    assert tuple(out[0, 70, 125]) == body                           # nose → right shoulder (frame 0)
    assert not out[1, 70, 125].any() and not out[1, 100, 150].any()  # missing shoulder: no edges to it
    assert tuple(out[1, 70, 175]) == body
    assert tuple(out[0, 180, 250]) == POINT_COLOUR["left_hand"]     # a joint alone is still drawn
    assert not out[0, 165, 265].any() and not out[0, 150, 280].any()  # low-confidence joint and edge
    assert not out[0, 10, 10].any()
    with pytest.raises(ValueError, match="87"):
        overlay_video(frames, k[:, :49])
    with pytest.raises(ValueError, match="frames"):
        overlay_video(frames[:1], k)
