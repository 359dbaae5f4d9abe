"""Video decoding (seds.extract.video): real How2Sign clips, frame-rate resampling against a brute-force
nearest-frame reference, the OpenCV fallback, and clear errors for every kind of bad file."""
import csv
import math
import shutil
import struct
import subprocess
import wave

import numpy as np
import pytest

from seds.extract import video as V
from seds.extract.video import (VideoError, VideoNotFoundError, probe, read_video, resample_by_time,
                               resample_indices)


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clips(shared_data):
    root = shared_data / "how2sign-mini"
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"{root}/manifest.csv not present")
    with open(root / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["path"] = root / r["file"]
        r["n_frames"] = int(r["n_frames"])
        r["fps"] = float(r["fps"])
    return rows


def _pick(clips, fps, lo=60, hi=220, k=2):
    out = [r for r in clips if abs(r["fps"] - fps) < 1e-3 and lo <= r["n_frames"] <= hi]
    assert len(out) >= k, f"need {k} clips at {fps} fps with {lo}..{hi} frames"
    return out[:k]


@pytest.fixture(scope="module")
def clip(clips):
    return _pick(clips, 23.976, 100, 200, 1)[0]


def _nearest_reference(n_src, src_fps, fps):
    """Brute force: distance in time from every output frame to every source frame."""
    n_out = int(n_src * fps / src_fps + 0.5)
    t_out = np.arange(n_out)[:, None] / fps
    t_src = np.arange(n_src)[None, :] / src_fps
    return np.abs(t_out - t_src)          # (n_out, n_src)


def _faststart(src, dst):
    """Rewrite an MP4 with its 'moov' box before 'mdat' (chunk offsets shifted), as a streaming-
    friendly encoder writes it, so that a truncated copy still opens."""
    b = bytearray(src.read_bytes())

    def boxes(buf, start, end):
        i = start
        while i < end:
            size, typ = struct.unpack(">I4s", buf[i:i + 8])
            yield typ, i, size
            i += size

    top = {t: (i, s) for t, i, s in boxes(b, 0, len(b))}
    (mi, ms), (di, _) = top[b"moov"], top[b"mdat"]
    assert mi > di, "clip already has moov first"
    moov = bytearray(b[mi:mi + ms])

    def shift(buf, start, end):
        for t, i, size in boxes(buf, start, end):
            if t in (b"trak", b"mdia", b"minf", b"stbl"):
                shift(buf, i + 8, i + size)
            elif t == b"stco":
                (count,) = struct.unpack(">I", buf[i + 12:i + 16])
                for k in range(count):
                    o = i + 16 + 4 * k
                    struct.pack_into(">I", buf, o, struct.unpack(">I", buf[o:o + 4])[0] + ms)
            elif t == b"co64":
                (count,) = struct.unpack(">I", buf[i + 12:i + 16])
                for k in range(count):
                    o = i + 16 + 8 * k
                    struct.pack_into(">Q", buf, o, struct.unpack(">Q", buf[o:o + 8])[0] + ms)

    shift(moov, 8, ms)
    dst.write_bytes(bytes(b[:di] + moov + b[di:mi] + b[mi + ms:]))


def _wav(path, seconds=0.5, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    pcm = (3000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


# --- resampling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n_src,src_fps,fps", [(365, 24000 / 1001, 24.0), (100, 24.0, 24.0), (97, 30.0, 24.0),
                                               (250, 60.0, 24.0), (40, 12.5, 24.0), (15, 24.0, 10.0),
                                               (1, 30.0, 24.0)])
def test_resample_indices_pick_the_nearest_source_frame(n_src, src_fps, fps):
    idx = resample_indices(n_src, src_fps, fps)
    dist = _nearest_reference(n_src, src_fps, fps)
    assert len(idx) == max(1, dist.shape[0])
    assert np.all(np.diff(idx) >= 0) and idx[0] == 0 and idx[-1] <= n_src - 1
    chosen = dist[np.arange(len(idx)), idx] if dist.shape[0] else np.zeros(0)
    np.testing.assert_allclose(chosen, dist.min(1), atol=1e-9)   # nearest (ties either way)


def test_resample_indices_identity_and_errors():
    np.testing.assert_array_equal(resample_indices(7, 25.0, None), np.arange(7))
    np.testing.assert_array_equal(resample_indices(50, 24.0, 24.0), np.arange(50))
    with pytest.raises(ValueError):
        resample_indices(0, 24.0, 24.0)
    with pytest.raises(ValueError):
        resample_indices(10, 24.0, 0.0)


# --- real clips ----------------------------------------------------------------------------------

def test_real_clips_probe_matches_manifest(clips):
    for r in _pick(clips, 23.976, k=3) + _pick(clips, 24.0, k=3):
        info = probe(r["path"])
        assert info.num_frames == r["n_frames"], r["id"]
        assert info.fps == pytest.approx(r["fps"], abs=1e-2), r["id"]
        assert (info.width, info.height) == (int(r["width"]), int(r["height"]))
        assert info.duration == pytest.approx(r["n_frames"] / r["fps"], rel=1e-3)
    ntsc = _pick(clips, 23.976, k=1)[0]
    assert probe(ntsc["path"]).fps == pytest.approx(23.976, abs=1e-3)


@pytest.mark.slow
def test_real_clip_resampled_to_24fps(clips):
    for r in [_pick(clips, 23.976, k=1)[0], _pick(clips, 24.0, k=1)[0]]:
        src = read_video(r["path"], fps=None)
        assert src.num_frames == r["n_frames"] and src.frames.dtype == np.uint8
        assert src.frames.shape == (r["n_frames"], 360, 640, 3)
        v = read_video(r["path"], fps=24.0)
        assert v.fps == 24.0 and v.source_fps == pytest.approx(r["fps"], abs=1e-2)
        assert v.source_frames == r["n_frames"]
        assert v.num_frames == int(r["n_frames"] * 24.0 / v.source_fps + 0.5)
        assert v.duration == pytest.approx(r["n_frames"] / r["fps"], rel=1e-3)
        # every output frame is the nearest source frame (frame content, not only indices)
        dist = _nearest_reference(src.num_frames, src.source_fps, 24.0)
        near = dist.argmin(1)
        np.testing.assert_array_equal(v.frames, src.frames[near])


def test_real_clip_downsampled_resized_cropped(clip):
    full = read_video(clip["path"], fps=None)
    v = read_video(clip["path"], fps=8.0, crop=(160, 0, 320, 360), resize_short=180)
    n_exp = int(clip["n_frames"] * 8.0 / full.source_fps + 0.5)
    assert v.frames.shape == (n_exp, 202, 180, 3)          # 320x360 crop, short side → 180
    assert v.frame_size == (180, 202) and (v.width, v.height) == (640, 360)
    # against crop + resize of the full-rate frames
    import cv2
    ref = np.stack([cv2.resize(f[:, 160:480], (180, 202), interpolation=cv2.INTER_AREA)
                    for f in full.frames[v.source_indices]])
    assert np.abs(ref.astype(int) - v.frames).mean() < 1.0


@pytest.mark.slow
def test_opencv_fallback_matches_decord(clip, monkeypatch):
    a = read_video(clip["path"], fps=30.0, resize_short=120)     # upsampling repeats frames
    assert a.backend == "decord"

    def no_decord(p):
        raise ImportError("No module named 'decord'")
    monkeypatch.setattr(V, "_open_decord", no_decord)
    b = read_video(clip["path"], fps=30.0, resize_short=120)
    assert b.backend == "opencv"
    np.testing.assert_array_equal(a.source_indices, b.source_indices)
    assert a.frames.shape == b.frames.shape
    # decord scales while decoding (FFmpeg's swscale), OpenCV decodes full size then INTER_AREA:
    # ~1.4 grey levels apart on average
    assert np.abs(a.frames.astype(int) - b.frames).mean() < 2.0
    info = probe(clip["path"])
    assert info.backend == "opencv" and info.num_frames == clip["n_frames"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resample_by_time_picks_the_nearest_timestamp(seed):
    """Irregular timestamps (a webcam recording): each output time k/fps takes the nearest source
    frame (ties to the earlier one), compared with a brute-force distance matrix."""
    rng = np.random.default_rng(seed)
    times = 3.7 + np.cumsum(rng.uniform(0.02, 0.07, size=80))        # any origin, jittery intervals
    idx, src_fps = resample_by_time(times, 24.0)
    t = times - times[0]
    dur = t[-1] + t[-1] / (len(t) - 1)
    assert len(idx) == int(np.floor(dur * 24.0 + 0.5))
    assert src_fps == pytest.approx((len(t) - 1) / t[-1])
    dist = np.abs(np.arange(len(idx))[:, None] / 24.0 - t[None, :])
    best = dist.min(axis=1)
    assert np.allclose(dist[np.arange(len(idx)), idx], best)
    assert all(i == np.flatnonzero(np.isclose(d, b))[0] for i, d, b in zip(idx, dist, best))
    keep, _ = resample_by_time(times, None)
    np.testing.assert_array_equal(keep, np.arange(len(times)))
    one, _ = resample_by_time(np.array([5.0]), 24.0)
    assert one.tolist() == [0]


@pytest.mark.slow
def test_stream_without_duration_is_read_by_timestamps(clip, tmp_path):
    """A WebM written to a pipe has no duration or frame count — what a browser's MediaRecorder
    uploads from the webcam. It must decode to its real length, not to a couple of frames."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is needed to write the live-style WebM")
    rec = tmp_path / "webcam.webm"
    with open(rec, "wb") as f:
        subprocess.run([ffmpeg, "-loglevel", "error", "-t", "3", "-i", str(clip["path"]), "-an", "-vf",
                        "scale=320:180", "-c:v", "libvpx", "-b:v", "400k", "-f", "webm", "pipe:1"],
                       stdout=f, check=True)
    info = probe(rec)
    assert info.num_frames >= 0                        # unknown (0), never a garbage negative count
    v = read_video(rec, fps=24.0, resize_short=90)
    ref = read_video(clip["path"], fps=24.0, resize_short=90, max_seconds=3.0, trim_long=True)
    assert v.backend == "opencv" and abs(v.num_frames - ref.num_frames) <= 1
    assert v.source_fps == pytest.approx(clip["fps"], rel=0.02)
    n = min(v.num_frames, ref.num_frames)
    assert np.abs(v.frames[:n].astype(int) - ref.frames[:n]).mean() < 12      # same content (lossy VP8)
    with pytest.raises(VideoError, match="longer than max_seconds"):
        read_video(rec, fps=24.0, max_seconds=1.0)
    short = read_video(rec, fps=24.0, max_seconds=1.0, trim_long=True)
    assert short.trimmed and abs(short.num_frames - 24) <= 1


def test_decord_failure_mid_decode_falls_back(clip, monkeypatch):
    class Broken:
        def __init__(self, vr):
            self.vr = vr

        def __getattr__(self, k):
            return getattr(self.vr, k)

        def __len__(self):
            return len(self.vr)

        def __getitem__(self, i):
            return self.vr[i]

        def get_batch(self, idx):
            raise RuntimeError("av_read_frame failed")
    real = V._open_decord
    monkeypatch.setattr(V, "_open_decord", lambda p, size=None: Broken(real(p, size)))
    v = read_video(clip["path"], fps=12.0, resize_short=90)
    assert v.backend == "opencv" and v.num_frames == int(clip["n_frames"] * 12.0 / v.source_fps + 0.5)


def test_max_seconds_raise_or_trim(clip):
    secs = 2.0
    with pytest.raises(VideoError, match="max_seconds"):
        read_video(clip["path"], max_seconds=secs)
    v = read_video(clip["path"], fps=24.0, max_seconds=secs, trim_long=True, resize_short=90)
    used = math.floor(secs * v.source_fps + 1e-6)
    assert v.trimmed and v.source_frames == used
    assert v.num_frames == int(used * 24.0 / v.source_fps + 0.5)
    assert v.duration <= secs
    b = read_video(clip["path"], fps=24.0, max_seconds=secs, trim_long=True, resize_short=90, backend="opencv")
    assert b.trimmed and b.num_frames == v.num_frames
    with pytest.raises(VideoError, match="max_seconds"):
        read_video(clip["path"], max_seconds=secs, backend="opencv")
    ok = read_video(clip["path"], max_seconds=1000, resize_short=90)
    assert not ok.trimmed


def test_bad_geometry_arguments(clip):
    with pytest.raises(VideoError, match="crop"):
        read_video(clip["path"], crop=(600, 0, 100, 100))
    with pytest.raises(VideoError, match="resize_short"):
        read_video(clip["path"], resize_short=0)
    with pytest.raises(ValueError, match="backend"):
        read_video(clip["path"], backend="ffmpeg")


# --- bad files -----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(VideoNotFoundError, match="not found"):
        read_video(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="no frame images"):    # a folder is read as frames
        read_video(tmp_path)
    with pytest.raises(VideoError, match="not a file"):
        probe(tmp_path)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    for fn in (read_video, probe):
        with pytest.raises(VideoError, match="empty file"):
            fn(p)


def test_text_file_renamed_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    for fn in (read_video, probe):
        with pytest.raises(VideoError, match="not a video or corrupt") as e:
            fn(p)
        assert "notes.mp4" in str(e.value)


def test_truncated_mp4(clip, tmp_path):
    data = clip["path"].read_bytes()
    cut = tmp_path / "cut.mp4"                     # moov at the end: index lost with the tail
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="not a video or corrupt"):
        read_video(cut)
    fast = tmp_path / "fast.mp4"                   # moov first: the stream just ends early
    _faststart(clip["path"], fast)
    whole = read_video(fast, fps=None, resize_short=90, backend="opencv")   # the decoder `part` uses
    assert whole.num_frames == clip["n_frames"]
    half = tmp_path / "fast_half.mp4"
    half.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    with pytest.raises(VideoError, match="truncated"):
        read_video(half)
    with pytest.warns(UserWarning, match="truncated"):
        part = read_video(half, fps=None, resize_short=90, allow_partial=True)
    assert part.truncated and 0 < part.num_frames < clip["n_frames"]
    np.testing.assert_array_equal(part.frames[:5], whole.frames[:5])


def test_audio_only_wav(tmp_path):
    wav = _wav(tmp_path / "tone.wav")
    renamed = tmp_path / "tone.mp4"
    shutil.copy(wav, renamed)
    for p in (wav, renamed):
        for fn in (read_video, probe):
            with pytest.raises(VideoError, match="audio-only"):
                fn(p)


def test_audio_only_in_video_container(tmp_path):
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed: cannot make an audio-only .mp4/.m4a")
    wav = _wav(tmp_path / "tone.wav")
    m4a = tmp_path / "tone_audio.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    with pytest.raises(VideoError, match="audio-only"):
        read_video(m4a)


def test_zero_frame_video_stream(tmp_path, monkeypatch):
    """A container whose video stream holds no frame (simulated: decoders report 0 frames)."""
    class Empty:
        def __len__(self):
            return 0

        def get_avg_fps(self):
            return 24.0
    p = tmp_path / "x.mp4"
    p.write_bytes(b"\0" * 64)
    monkeypatch.setattr(V, "_open_decord", lambda path: Empty())
    with pytest.raises(VideoError, match="zero frames"):
        read_video(p)
    with pytest.raises(VideoError, match="zero frames"):
        probe(p)


def test_folder_of_frames_reads_as_a_video(tmp_path):
    """PHOENIX-2014T / CSL-Daily ship frame folders: read them at their frame rate, resampled."""
    from PIL import Image
    import decord  # noqa: F401 — loaded first on purpose: it breaks cv2's PNG reader (see _imread_rgb)
    folder = tmp_path / "phoenix_sample"
    folder.mkdir()
    for i in range(50):
        img = np.zeros((26, 21, 3), np.uint8)
        img[:, :, 0] = i * 5            # red channel encodes the frame number
        Image.fromarray(img).save(folder / f"images{i + 1:04d}.png")
    v = read_video(folder, fps=24.0, folder_fps=25.0)
    assert v.backend == "frames" and v.source_fps == 25.0 and v.num_frames == 48
    assert v.frames.shape[1:] == (26, 21, 3)
    # RGB order and nearest-frame resampling: output frame k shows source frame round(k * 25 / 24)
    expected = [int(np.floor(k * 25 / 24 + 0.5)) * 5 for k in range(48)]
    assert v.frames[:, 0, 0, 0].tolist() == expected
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="no frame images"):
        read_video(empty)


# --- size limits (seds.extract.video.Budget) ---------------------------------------------------

@pytest.mark.parametrize("backend", ["decord", "opencv"])
def test_budget_downscales_never_upscales_and_refuses_oversized(clip, backend):
    import cv2
    w, h = 640, 360                                          # How2Sign-mini clips
    v = read_video(clip["path"], fps=8.0, backend=backend, budget=V.Budget(max_short_side=180))
    assert v.frame_size == (320, 180) and (v.width, v.height) == (w, h)
    full = read_video(clip["path"], fps=8.0, backend=backend)
    ref = np.stack([cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA) for f in full.frames])
    assert np.abs(ref.astype(int) - v.frames).mean() < 2.0   # same pictures (decoder-side scaling for decord)
    same = read_video(clip["path"], fps=8.0, backend=backend, budget=V.Budget(max_short_side=720))
    assert same.frame_size == (w, h)                         # a limit, not a target: never scaled up
    with pytest.raises(VideoError, match=f"frames of {w}x{h} are larger than the limit"):
        read_video(clip["path"], fps=8.0, backend=backend, budget=V.Budget(max_frame_pixels=w * h - 1))
    n = v.num_frames
    exact = V.Budget(max_short_side=180, max_pixels=n * 320 * 180)
    assert read_video(clip["path"], fps=8.0, backend=backend, budget=exact).num_frames == n
    with pytest.raises(VideoError, match="more than the budget of .* shorter or smaller video"):
        read_video(clip["path"], fps=8.0, backend=backend,
                   budget=V.Budget(max_short_side=180, max_pixels=n * 320 * 180 - 1))


def test_truncation_is_detected_when_max_seconds_is_set(clip, tmp_path):
    """A file cut short is reported as truncated even when max_seconds / trim_long are in use (the app's
    settings); a video trimmed at max_seconds is not 'truncated'."""
    fast = tmp_path / "fast.mp4"
    _faststart(clip["path"], fast)
    half = tmp_path / "fast_half.mp4"
    half.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    with pytest.raises(VideoError, match="truncated"):
        read_video(half, max_seconds=1000, trim_long=True)
    with pytest.warns(UserWarning, match="truncated"):
        part = read_video(half, fps=None, max_seconds=1000, trim_long=True, allow_partial=True, resize_short=90)
    assert part.truncated and part.reported_frames == clip["n_frames"]
    assert 0 < part.source_frames < clip["n_frames"] - 2
    short = read_video(half, fps=None, max_seconds=1.0, trim_long=True, allow_partial=True, resize_short=90)
    assert short.trimmed and not short.truncated
