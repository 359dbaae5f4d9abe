"""Long recordings through extraction (seds.extract.recording): streamed extraction equals whole-video extraction
(same windows, same features), resume at the last finished chunk, bad input (no signer, audio only, truncated,
over the limit) — with stub backends on small synthetic videos, and a real How2Sign-mini clip through real
MediaPipe + the proxy RGB (slow) for the float tolerance."""
import shutil
import subprocess
import wave

import cv2
import numpy as np
import pytest

from seds.data.store import FeatureStore, load_features
from seds.extract import pose as P
from seds.extract.__main__ import main as extract_main
from seds.extract.proxy_rgb import ProxyRGBExtractor
from seds.extract.recording import (ChunkFolder, RecordingConfig, RecordingError, RecordingExtractor,
                                    load_recording, recording_window_starts, window_presence)
from seds.extract.video import Budget, VideoError, read_video

FPS = 24.0


class StubPose(P.PoseEstimator):
    """A signer with both hands on frames whose mean brightness is ≥ 60, nobody on darker frames; x of every
    point = the frame's mean brightness (so keypoints depend on the decoded pixels). Records each call."""

    name = "stub_pose"
    layout = P.COCO_WHOLEBODY

    def __init__(self):
        self.calls = []

    def _estimate(self, frames, progress):
        self.calls.append((len(frames), self.continue_tracking))
        m = frames.reshape(len(frames), -1).mean(1).astype(np.float32)
        k = np.zeros((len(frames), 133, 3), np.float32)
        k[..., 0] = m[:, None]
        k[..., 1] = 5.0
        k[..., 2] = np.where(m >= 60, 0.9, 0.0)[:, None]
        return k


class StubRGB:
    """Feature of a window = per-frame mean colours of its frames (order-sensitive); optionally fails on call n."""

    name = "stub_rgb"

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = 0, fail_on

    def features(self, frames, clip_starts, window=16):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise RuntimeError("killed mid-run")
        means = np.asarray(frames).reshape(len(frames), -1, 3).mean(1)          # (F, 3)
        out = np.zeros((len(clip_starts), 1024), np.float32)
        for t, s in enumerate(clip_starts):
            out[t, :3 * window] = means[s:s + window].ravel()
        return out


def write_video(path, n, dark=(), size=(64, 48)):
    """An MJPG video of ``n`` frames at 24 fps: moving gradients, frames in ``dark`` nearly black (no signer)."""
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    assert vw.isOpened()
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        f = np.stack([(xx * 3 + i * 5) % 200 + 50, (yy * 4 + i * 3) % 200 + 50, np.full_like(xx, (i * 7) % 200 + 50)], -1)
        if i in dark:
            f = f // 20
        vw.write(f.astype(np.uint8))
    vw.release()
    return path


def whole_video_reference(path, cfg: RecordingConfig, pose, rgb):
    """Whole-video extraction by the public pieces: every frame decoded at once, pose in one call, every window."""
    v = read_video(path, fps=cfg.fps, budget=Budget(max_short_side=cfg.max_short_side))
    kp = pose(v.frames).to_store()
    starts = recording_window_starts(len(v.frames), cfg.window, cfg.window_stride)
    return kp, starts, np.asarray(rgb.features(v.frames, starts, window=cfg.window), np.float32)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("rec") / "rec.avi", 203, dark=set(range(40, 90)))


def small_chunks(**kw):
    return RecordingConfig(chunk_seconds=1.0, **kw)     # 24 frames per chunk: 9 chunks for 203 frames


def test_window_starts_and_presence_against_loops():
    np.testing.assert_array_equal(recording_window_starts(40, 16, 8), [0, 8, 16, 24])
    np.testing.assert_array_equal(recording_window_starts(5, 16, 8), [0])       # shorter than a window: padded
    rng = np.random.default_rng(0)
    k = np.zeros((70, 87, 3), np.float32)
    k[..., 2] = (rng.random((70, 87)) < 0.6) * 0.9
    starts = recording_window_starts(70, 16, 5)
    got = window_presence(k, starts, 16)
    keep = []
    for f in k:
        signer = (f[:7, 2] >= 0.3).sum() >= 3
        hand = max((f[7:28, 2] >= 0.3).sum(), (f[28:49, 2] >= 0.3).sum()) >= 10
        keep.append(signer and hand)
    want = [np.mean(keep[s:s + 16]) for s in starts]
    np.testing.assert_allclose(got, want, atol=1e-7)
    assert 0 < got.min() < got.max() <= 1     # not a constant: the comparison can fail


def test_streaming_equals_whole_video_extraction(video):
    cfg = small_chunks()
    ex = RecordingExtractor(cfg, pose_estimator=StubPose(), rgb_extractor=StubRGB())
    feats = ex.extract(video)
    kp, starts, rgb = whole_video_reference(video, cfg, StubPose(), StubRGB())
    assert feats.meta["chunks"] == 9 and feats.meta["chunk_frames"] == 24
    np.testing.assert_array_equal(feats.clip_starts, starts)
    np.testing.assert_array_equal(feats.keypoints, kp)
    np.testing.assert_array_equal(feats.rgb, rgb)     # windows across chunk ends see the same 16 frames
    # tracking continued across chunks: every chunk after the first continues the previous one
    assert [c for _, c in ex.pose.calls] == [False] + [True] * 8
    m = feats.meta
    assert m["kind"] == "recording" and m["window_stride"] == 8 and m["n_frames"] == 203
    assert abs(m["duration_s"] - 203 / FPS) < 1e-3
    # presence: the dark frames 40..89 show nobody
    pres = np.asarray(m["presence"])
    assert pres[starts // 1 == 48].item() == 0.0 and pres[0] == 1.0
    assert m["signing_windows"] == int((pres >= 0.5).sum()) and not m["no_signer"]
    # negative control: windows shifted by one frame do not match
    assert not np.allclose(feats.rgb[1:], np.asarray(StubRGB().features(read_video(video, fps=FPS).frames,
                                                                          starts[1:] - 1), np.float32))


def test_streaming_equals_whole_video_with_decoder_scaling(video):
    cfg = small_chunks(max_short_side=24)       # 64x48 → 32x24, scaled by the decoder
    feats = RecordingExtractor(cfg, pose_estimator=StubPose(), rgb_extractor=StubRGB()).extract(video)
    kp, starts, rgb = whole_video_reference(video, cfg, StubPose(), StubRGB())
    assert (feats.meta["frame_width"], feats.meta["frame_height"]) == (32, 24)
    np.testing.assert_array_equal(feats.keypoints, kp)
    np.testing.assert_array_equal(feats.rgb, rgb)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg makes the H.264 input")
def test_stream_reads_of_inter_coded_video_equal_whole_video_decoding(tmp_path):
    """After every read VideoStream drops decord's decoded-ahead backlog (a seek to the key frame before the next
    frame; the next read skips forward from there). On H.264 with B-frames and key frames every 30 frames, reads
    of 25 frames — boundaries inside GOPs, at 24 fps from a 30 fps source — give exactly read_video's frames,
    scaled by the decoder or not. Negative control: landing one frame past the key frame fails it."""
    from seds.extract.video import VideoStream
    path = tmp_path / "gop.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=128x96:r=30:d=5", "-c:v", "libx264",
                    "-g", "30", "-bf", "2", "-pix_fmt", "yuv420p", str(path)], check=True)
    for budget in (Budget(), Budget(max_short_side=48)):
        whole = read_video(path, fps=FPS, budget=budget).frames
        stream = VideoStream(path, FPS, budget=budget)
        got = np.concatenate([stream.read(lo, lo + 25) for lo in range(0, stream.num_frames, 25)])
        stream.close()
        assert len(whole) == len(got) == 120
        np.testing.assert_array_equal(got, whole)


def test_resume_restarts_at_the_last_finished_chunk(video, tmp_path):
    cfg = small_chunks()
    work = tmp_path / "work"
    broken = RecordingExtractor(cfg, pose_estimator=StubPose(), rgb_extractor=StubRGB(fail_on=4))
    with pytest.raises(RuntimeError, match="killed"):
        broken.extract(video, work_dir=work)
    assert sorted(p.name for p in work.iterdir()) == [f"chunk_{k:06d}.safetensors" for k in range(3)]
    (work / ".chunk_000003.safetensors.abc.tmp").write_bytes(b"half")        # a write that was killed
    pose = StubPose()
    ex = RecordingExtractor(cfg, pose_estimator=pose, rgb_extractor=StubRGB())
    feats = ex.extract(video, work_dir=work)
    assert ex.last_stats["resumed"] == 3 and ex.last_stats["computed"] == 6
    assert len(pose.calls) == 6 and pose.calls[0] == (24, False)              # tracking restarts at chunk 3
    assert not any(p.name.endswith(".tmp") for p in work.iterdir())
    whole = RecordingExtractor(cfg, pose_estimator=StubPose(), rgb_extractor=StubRGB()).extract(video)
    np.testing.assert_array_equal(feats.keypoints, whole.keypoints)
    np.testing.assert_array_equal(feats.rgb, whole.rgb)
    # other settings (or another version of the file): the chunks are not reused
    ex2 = RecordingExtractor(small_chunks(window_stride=4), pose_estimator=StubPose(), rgb_extractor=StubRGB())
    ex2.extract(video, work_dir=work)
    assert ex2.last_stats["resumed"] == 0


def test_recording_without_a_signer(tmp_path):
    path = write_video(tmp_path / "empty.avi", 60, dark=set(range(60)))
    feats = RecordingExtractor(small_chunks(), pose_estimator=StubPose(), rgb_extractor=StubRGB()).extract(path)
    assert feats.meta["no_signer"] and feats.meta["signing_windows"] == 0
    assert feats.num_clips == len(recording_window_starts(60)) and max(feats.meta["presence"]) == 0


def test_short_recording_is_padded_to_one_window(tmp_path):
    path = write_video(tmp_path / "short.avi", 9)
    feats = RecordingExtractor(small_chunks(), pose_estimator=StubPose(), rgb_extractor=StubRGB()).extract(path)
    assert feats.num_clips == 1 and feats.num_frames == 16 and feats.meta["padded_frames"] == 7


def _wav(path, seconds=0.5, rate=16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), "<i2").tobytes())
    return path


def test_bad_input_clear_messages_and_nothing_left(video, tmp_path):
    ex = RecordingExtractor(small_chunks(max_seconds=5.0), pose_estimator=StubPose(), rgb_extractor=StubRGB())
    with pytest.raises(VideoError, match=r"is 8.46 s long, more than the limit of 5 s"):
        ex.extract(video)
    ex = RecordingExtractor(small_chunks(), pose_estimator=StubPose(), rgb_extractor=StubRGB())
    with pytest.raises(VideoError, match="audio-only"):
        ex.extract(_wav(tmp_path / "speech.wav"))
    with pytest.raises(VideoError, match="not found"):
        ex.extract(tmp_path / "missing.mp4")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is needed to write a truncated Matroska file")
    full = tmp_path / "full.mkv"
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(video), "-c:v", "mjpeg", str(full)], check=True)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[:full.stat().st_size // 3])
    work = tmp_path / "work_cut"
    with pytest.raises(VideoError, match="truncated"):
        ex.extract(cut, work_dir=work)
    assert not work.exists()
    part = RecordingExtractor(small_chunks(allow_partial=True), pose_estimator=StubPose(), rgb_extractor=StubRGB())
    assert 0 < part.extract(cut).meta["n_frames"] < 203


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                    reason="ffmpeg/ffprobe make and read the H.264 input")
def test_huge_frames_are_refused_from_the_header_before_any_decoding(tmp_path, monkeypatch):
    """An 8000×8000 one-frame H.264 file (a few KB) is refused by VideoStream — and by the extractor's default
    limit — from the file's headers, before decord or OpenCV open it (they decode the first frame at full size)."""
    from seds.extract import video as V
    from tests.hostile_files import huge_h264
    f = huge_h264(tmp_path / "huge.mp4", 8000, 8000)

    def decoded(*a, **k):
        raise AssertionError("a decoder opened the file")
    monkeypatch.setattr(V, "_open_decord", decoded)
    monkeypatch.setattr(V, "_open_cv2", decoded)
    monkeypatch.setattr(cv2, "VideoCapture", decoded)
    with pytest.raises(VideoError, match="frames of 8000x8000 are larger than the limit of 9.44 megapixels"):
        V.VideoStream(f, budget=Budget(max_frame_pixels=4096 * 2304))
    ex = RecordingExtractor(RecordingConfig(), pose_estimator=StubPose(), rgb_extractor=StubRGB())
    with pytest.raises(VideoError, match="frames of 8000x8000 are larger than the limit"):
        ex.extract(f, work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_bad_settings():
    for kw in ({"window_stride": 0}, {"chunk_seconds": 0}, {"max_seconds": -1}, {"pose_stride": 0}):
        with pytest.raises(ValueError):
            RecordingConfig(**kw)
    assert RecordingConfig(window_stride=8, pose_stride=3).chunk_frames(100) % 24 == 0
    # a 4K chunk is bounded in bytes, not seconds
    assert RecordingConfig().chunk_frames(3840 * 2160 * 3) * 3840 * 2160 * 3 <= 256 * 2**20


class RecordingFactory:
    def __init__(self, fail_on=None):
        self.fail_on = fail_on

    def __call__(self):
        return RecordingExtractor(small_chunks(), pose_estimator=StubPose(), rgb_extractor=StubRGB(self.fail_on))


def test_cli_recordings_resume_and_store(video, tmp_path):
    ann = tmp_path / "recs.csv"
    ann.write_text(f"id,file\nlecture 1,{video}\n")
    out = tmp_path / "store"
    argv = ["--recordings", "--dataset", "folder", "--annotations", str(ann), "--opt", "text_col=", "--opt",
            "split_col=", "--out", str(out), "--no-progress"]
    assert extract_main(argv, extractor_factory=RecordingFactory(fail_on=5)) == 1      # failed on chunk 4
    store = FeatureStore(out)
    assert store.ids() == [] and len(list(store.work_dir("lecture 1").glob("chunk_*"))) == 4
    assert extract_main(argv, extractor_factory=RecordingFactory()) == 0
    feats = load_recording(store, "lecture 1")
    assert feats.meta["resumed_chunks"] == 4 and feats.meta["id"] == "lecture 1"
    assert not store.work_dir("lecture 1").exists() and store.ids() == ["lecture 1"]
    with pytest.raises(RecordingError, match="trimmed clip"):
        load_recording(_clip_file(tmp_path, feats))


def _clip_file(tmp_path, feats):
    from seds.data.features import VideoFeatures
    from seds.data.store import save_features
    clip = VideoFeatures(feats.keypoints[:32], feats.rgb[:2], feats.clip_starts[:2], meta={"id": "c"})
    return save_features(tmp_path / "clip.safetensors", clip)


def test_chunk_folder_ignores_unreadable_chunks(tmp_path):
    f = ChunkFolder(tmp_path / "w", "fp")
    f.save(0, np.zeros((4, 87, 3)), np.zeros((1, 1024)))
    (tmp_path / "w" / "chunk_000001.safetensors").write_bytes(b"garbage")
    assert f.done(3) == {0}
    assert ChunkFolder(tmp_path / "w", "other").done(3) == set() and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_real_clip_streamed_equals_whole_video(shared_data, tmp_path):
    """The first 5 s of a How2Sign-mini clip through real MediaPipe (every frame) + the proxy RGB, in 16-frame
    chunks vs the whole video at once. MediaPipe's tracking continues across chunks, so keypoints are equal; RGB
    windows are computed from different frame batches, so they agree to float rounding. Measured on a full clip
    (365 frames, 23 chunks): keypoints max abs difference 0, RGB 3.4e-8 (features up to 0.53; the same run twice
    differs by 0); tolerance 2e-7. Negative control: windows one frame off differ by 0.027."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is needed to cut the clip")
    src = sorted((shared_data / "how2sign-mini" / "clips").glob("*.mp4"))[0]
    path = tmp_path / "clip5s.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(src), "-t", "5", "-c", "copy", str(path)], check=True)
    cfg = RecordingConfig(chunk_seconds=16 / FPS)
    mp = P.make_pose_estimator("mediapipe")
    try:
        feats = RecordingExtractor(cfg, pose_estimator=mp, rgb_extractor=ProxyRGBExtractor()).extract(path)
        kp, starts, rgb = whole_video_reference(path, cfg, mp, ProxyRGBExtractor())
    finally:
        mp.close()
    assert feats.meta["chunks"] >= 7
    np.testing.assert_array_equal(feats.clip_starts, starts)
    np.testing.assert_array_equal(feats.keypoints, kp)
    np.testing.assert_allclose(feats.rgb, rgb, rtol=0, atol=2e-7)
    assert not np.allclose(feats.rgb[1:], ProxyRGBExtractor().features(read_video(path).frames, starts[1:] - 1),
                           rtol=0, atol=2e-7)      # the tolerance can fail: windows one frame off
    assert feats.meta["signing_windows"] > 0.8 * feats.num_clips
    stored = load_features(FeatureStore(tmp_path, create=True).save("clip", feats))
    np.testing.assert_array_equal(stored.rgb, feats.rgb)
    assert stored.meta["presence"] == feats.meta["presence"]
