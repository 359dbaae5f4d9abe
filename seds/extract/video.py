"""Video decoding for extraction (Sec. 3.1: videos are sampled at a fixed frame rate before pose
estimation and I3D).

:func:`read_video` decodes a sign video to RGB ``uint8`` frames resampled to a target frame rate by
nearest-frame index selection, decoding only the frames it needs (decord's ``get_batch``) in chunks so
memory stays bounded by the output size. OpenCV is the fallback when decord is missing or fails.
Every bad input ends in a :class:`VideoError` (a ``ValueError``) naming the file and the problem:
missing, empty, not a video / corrupt, audio only, no frames, longer than ``max_seconds``, larger
than the frame-size or pixel budget.

Header first: :func:`seds.extract.header.header_size` reads a file's frame size from its headers without decoding a frame
(Pillow's header parsers for still images, ``ffprobe -skip_frame all`` under an address-space limit for
containers), so :func:`probe` and :func:`read_video` refuse frames over ``max_frame_pixels`` before any
decoder opens the file (decord and OpenCV decode the first frame at full size when they open it: a
16000×16000 PNG of 800 KB costs 800 MB there). Without ``ffprobe`` on the PATH the decoders' size is used.

Memory: frames that must be downscaled (``max_short_side`` / ``resize_short`` without a crop) are
scaled *by the decoder* (decord's ``width``/``height``), so a 4K upload never exists at full size in
Python; full-size decode batches are bounded in bytes (``_CHUNK_BYTES``), and ``max_pixels`` refuses
a video whose *output* would exceed a pixel budget before any frame is decoded.

:class:`VideoStream` decodes a recording of any length piece by piece (the same frames as :func:`read_video`,
sequentially, into a caller's reusable buffer), for :mod:`seds.extract.recording`.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seds.extract.header import header_size

# Leading bytes of common audio-only containers, to name the problem when neither decoder opens a file.
_AUDIO_MAGIC = (b"RIFF", b"ID3", b"fLaC", b"OggS", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"FORM")
_CHUNK = 64   # frames decoded per decord batch
_CHUNK_BYTES = 128 * 2**20   # at most this many bytes of full-size source frames per decord batch


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and the reason."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The video path does not exist."""


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its video stream."""

    path: str
    fps: float          # source frame rate
    num_frames: int     # source frame count (as reported by the decoder)
    width: int
    height: int
    backend: str        # "decord" or "opencv"

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


@dataclass
class DecodedVideo:
    """Decoded RGB frames plus the source facts (``width``/``height`` are the *source* size; the
    output size is ``frames.shape[1:3]`` after ``crop``/``resize_short``)."""

    frames: np.ndarray            # (N, H, W, 3) uint8 RGB
    fps: float                    # output frame rate (after resampling)
    source_fps: float
    source_frames: int            # frames in the source stream (after trimming: frames used)
    duration: float               # seconds of source video covered by ``frames``
    width: int                    # source width
    height: int                   # source height
    backend: str = "decord"
    source_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    trimmed: bool = False         # the video was longer than max_seconds and was cut
    truncated: bool = False       # fewer frames decodable than the container reported
    reported_frames: int = 0      # frames the container reports (0: unknown)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the output frames (the pixel space of keypoints extracted from them)."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


# --- helpers --------------------------------------------------------------------------------------

def resample_indices(num_source: int, source_fps: float, fps: float | None) -> np.ndarray:
    """Source frame of each output frame at ``fps``: output frame k (time k/fps) takes the source frame
    nearest to it, ``floor(k * source_fps / fps + 0.5)``, for ``round(num_source * fps / source_fps)``
    output frames (at least one); ``fps=None`` keeps every source frame."""
    if num_source <= 0:
        raise ValueError("a video needs at least one frame")
    if fps is None:
        return np.arange(num_source, dtype=np.int64)
    if not (fps > 0 and source_fps > 0):
        raise ValueError(f"frame rates must be positive (fps={fps}, source_fps={source_fps})")
    ratio = source_fps / fps
    n_out = max(1, int(math.floor(num_source / ratio + 0.5)))
    idx = np.floor(np.arange(n_out, dtype=np.float64) * ratio + 0.5).astype(np.int64)
    return np.minimum(idx, num_source - 1)


MAX_NOMINAL_FPS = 240.0     # a container claiming more is reporting its time base, not a frame rate


def resample_by_time(times: np.ndarray, fps: float | None) -> tuple[np.ndarray, float]:
    """Like :func:`resample_indices` for a stream whose frame rate is unknown or variable (browser
    webcam recordings: WebM with no duration, ``r_frame_rate`` = the 1 kHz time base): output frame k
    takes the source frame whose timestamp is nearest to ``k / fps`` (ties: the earlier frame), for
    ``round(duration * fps)`` frames, duration = last timestamp + the mean frame interval.

    ``times``: presentation times in seconds of the decoded frames (any origin, non-decreasing).
    Returns (source indices, measured mean frame rate)."""
    t = np.asarray(times, dtype=np.float64)
    if t.size == 0:
        raise ValueError("a video needs at least one frame")
    t = t - t[0]
    interval = float(t[-1] / (t.size - 1)) if t.size > 1 and t[-1] > 0 else 1.0 / (fps or 24.0)
    src_fps = 1.0 / interval
    if fps is None:
        return np.arange(t.size, dtype=np.int64), src_fps
    n_out = max(1, int(math.floor((t[-1] + interval) * fps + 0.5)))
    want = np.arange(n_out, dtype=np.float64) / fps
    right = np.clip(np.searchsorted(t, want, side="left"), 0, t.size - 1)
    left = np.maximum(right - 1, 0)
    idx = np.where(np.abs(t[left] - want) <= np.abs(t[right] - want), left, right)
    return idx.astype(np.int64), src_fps


def _output_geometry(width: int, height: int, crop, resize_short, max_short_side=None):
    """Crop box (x, y, w, h) in source pixels (validated) and the final (w, h): ``resize_short``
    scales the shorter side to that size, ``max_short_side`` only ever scales it *down* to that."""
    if crop is None:
        box = (0, 0, width, height)
    else:
        if len(crop) != 4:
            raise VideoError(f"crop must be (x, y, width, height), got {crop!r}")
        x, y, w, h = (int(v) for v in crop)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
            raise VideoError(f"crop {crop!r} does not fit in the {width}x{height} video")
        box = (x, y, w, h)
    w, h = box[2], box[3]
    if resize_short is not None:
        if resize_short <= 0:
            raise VideoError(f"resize_short must be positive, got {resize_short}")
        s = resize_short / min(w, h)
        w, h = max(1, int(round(w * s))), max(1, int(round(h * s)))
    if max_short_side is not None:
        if max_short_side <= 0:
            raise VideoError(f"max_short_side must be positive, got {max_short_side}")
        if min(w, h) > max_short_side:
            s = max_short_side / min(w, h)
            w, h = max(1, int(round(w * s))), max(1, int(round(h * s)))
    return box, (w, h)


@dataclass(frozen=True)
class Budget:
    """Size limits checked before decoding (None: no limit).

    ``max_short_side``: frames whose shorter side is larger are scaled down to it (by the decoder);
    ``max_frame_pixels``: source frames larger than this (width × height) are refused;
    ``max_pixels``: the decoded output (frames × width × height, after scaling) may not exceed this."""

    max_short_side: int | None = None
    max_frame_pixels: int | None = None
    max_pixels: int | None = None


def _check_source_size(p, width: int, height: int, budget: Budget) -> None:
    if budget.max_frame_pixels is not None and width * height > budget.max_frame_pixels:
        raise VideoError(f"{p}: frames of {width}x{height} are larger than the limit of "
                         f"{budget.max_frame_pixels / 1e6:.3g} megapixels per frame")


def _check_output_size(p, n_out: int, size, budget: Budget) -> None:
    total = n_out * size[0] * size[1]
    if budget.max_pixels is not None and total > budget.max_pixels:
        raise VideoError(f"{p}: {n_out} frames of {size[0]}x{size[1]} = {total / 1e6:.3g} megapixels, more than "
                         f"the budget of {budget.max_pixels / 1e6:.3g} megapixels: use a shorter or smaller video")


def _postprocess(batch: np.ndarray, box, size) -> np.ndarray:
    """Crop then resize a (n, H, W, 3) batch."""
    x, y, w, h = box
    if (x, y, w, h) != (0, 0, batch.shape[2], batch.shape[1]):
        batch = batch[:, y:y + h, x:x + w]
    if size != (batch.shape[2], batch.shape[1]):
        import cv2
        interp = cv2.INTER_AREA if size[0] < batch.shape[2] else cv2.INTER_LINEAR
        batch = np.stack([cv2.resize(f, size, interpolation=interp) for f in batch])
    return batch


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FOLDER_FPS = 25.0   # PHOENIX-2014T's frame rate; CSL-Daily is 30: pass folder_fps


def _frame_files(p: Path) -> list[Path]:
    """Sorted image files of a frame folder (PHOENIX-2014T / CSL-Daily ship frames, not videos)."""
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoError(f"{p}: a folder, but it holds no frame images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _imread_rgb(f: Path) -> np.ndarray | None:
    # Pillow, not cv2.imread: once decord is loaded, OpenCV's bundled libpng fails on PNG
    # ("bad parameters to zlib") — a shared-library clash seen with decord 0.6 + opencv 4.11.
    from PIL import Image
    try:
        with Image.open(f) as im:
            return np.asarray(im.convert("RGB"))
    except Exception:  # noqa: BLE001 - any decode failure is reported by the caller
        return None


def _read_folder(p: Path, fps, folder_fps, max_seconds, resize_short, crop, trim_long,
                 budget: Budget) -> DecodedVideo:
    files = _frame_files(p)
    n_used, trimmed = _limit_frames(p, len(files), folder_fps, max_seconds, trim_long)
    idx = resample_indices(n_used, folder_fps, fps)
    first = _imread_rgb(files[0])
    if first is None:
        raise VideoError(f"{files[0]}: unreadable image")
    height, width = first.shape[:2]
    _check_source_size(files[0], width, height, budget)
    box, size = _output_geometry(width, height, crop, resize_short, budget.max_short_side)
    _check_output_size(p, len(idx), size, budget)
    out = np.empty((len(idx), size[1], size[0], 3), dtype=np.uint8)
    cache: dict[int, np.ndarray] = {}
    for k, i in enumerate(idx):
        if int(i) not in cache:
            img = _imread_rgb(files[int(i)])
            if img is None or img.shape[:2] != (height, width):
                raise VideoError(f"{files[int(i)]}: unreadable image or a size different from the first frame")
            cache = {int(i): _postprocess(img[None], box, size)[0]}
        out[k] = cache[int(i)]
    return DecodedVideo(out, float(fps or folder_fps), folder_fps, n_used, n_used / folder_fps, width, height,
                        "frames", idx, trimmed, False, len(files))


def _check_path(path) -> Path:
    p = Path(os.fspath(path))
    if not p.exists():
        raise VideoNotFoundError(f"video file not found: {p}")
    if not p.is_file():
        raise VideoError(f"not a file: {p}")
    if p.stat().st_size == 0:
        raise VideoError(f"empty file (0 bytes): {p}")
    return p


def _has_audio_stream(p: Path) -> bool:
    try:
        import decord
        decord.AudioReader(str(p))
        return True
    except Exception:  # noqa: BLE001 - any failure means "no readable audio either"
        pass
    with open(p, "rb") as f:
        head = f.read(12)
    return head.startswith(_AUDIO_MAGIC) and not head[8:12] == b"AVI "


def _unusable(p: Path, detail: str) -> VideoError:
    if _has_audio_stream(p):
        return VideoError(f"{p}: audio-only file, it has no video stream")
    return VideoError(f"{p}: not a video or corrupt ({detail})")


def _open_decord(p: Path, size: tuple[int, int] | None = None):
    """A decord reader; with ``size`` = (width, height) its frames come out scaled to that size."""
    import decord  # noqa: F401 - ImportError handled by the caller
    w, h = size if size is not None else (-1, -1)
    return decord.VideoReader(str(p), ctx=decord.cpu(0), num_threads=0, width=int(w), height=int(h))


def _open_cv2(p: Path):
    import cv2
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        return None
    return cap


def _header_size(p: Path) -> tuple[int, int] | None:
    try:
        return header_size(p)
    except TimeoutError as e:
        raise VideoError(f"{p}: {e}") from None


def probe(path, budget: Budget | None = None) -> VideoInfo:
    """Frame rate, frame count and size of a video's first video stream.

    Raises :class:`VideoError` for a missing/empty file, a non-video or corrupt file, an audio-only
    file or a stream without frames, and (``budget.max_frame_pixels``) for frames over the limit — read
    from the headers (:func:`seds.extract.header.header_size`) before any decoder opens the file.
    """
    p = _check_path(path)
    budget = budget or Budget()
    size = _header_size(p)
    if size is not None:
        _check_source_size(p, size[0], size[1], budget)
    info = _probe_decoders(p)
    if size is not None:
        info = VideoInfo(info.path, info.fps, info.num_frames, size[0], size[1], info.backend)
    _check_source_size(p, info.width, info.height, budget)
    return info


def _probe_decoders(p: Path) -> VideoInfo:
    errors = []
    try:
        vr = _open_decord(p)
        n, fps = len(vr), float(vr.get_avg_fps())
        h, w = vr[0].shape[:2] if n > 0 else (0, 0)
        del vr
        info = VideoInfo(str(p), fps, int(n), int(w), int(h), "decord")
        return _validate_info(p, info)
    except VideoError:
        raise
    except Exception as e:  # noqa: BLE001 - decord raises RuntimeError/DECORDError/ImportError
        errors.append(f"decord: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}")
    cap = _open_cv2(p)
    if cap is None:
        raise _unusable(p, "; ".join(errors + ["opencv could not open it"]))
    import cv2
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))   # < 0 for a stream without a duration: unknown
        info = VideoInfo(str(p), float(cap.get(cv2.CAP_PROP_FPS)), max(0, count),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                         "opencv")
    finally:
        cap.release()
    if info.width <= 0 or info.height <= 0:
        raise _unusable(p, "; ".join(errors + ["opencv found no video stream"]))
    return _validate_info(p, info, allow_unknown_count=True)


def _validate_info(p: Path, info: VideoInfo, allow_unknown_count: bool = False) -> VideoInfo:
    if not (info.fps > 0 and math.isfinite(info.fps)):
        raise VideoError(f"{p}: video stream reports no valid frame rate ({info.fps})")
    if info.num_frames <= 0 and not allow_unknown_count:
        raise VideoError(f"{p}: video stream has zero frames")
    return info


# --- decoding ------------------------------------------------------------------------------------

def read_video(path, fps: float | None = 24.0, max_seconds: float | None = None,
               resize_short: int | None = None, crop: tuple[int, int, int, int] | None = None,
               trim_long: bool = False, allow_partial: bool = False,
               backend: str = "auto", folder_fps: float = FOLDER_FPS,
               budget: Budget | None = None) -> DecodedVideo:
    """Decode ``path`` to RGB frames at ``fps`` (``None``: the source rate).

    * ``max_seconds``: videos longer than this raise :class:`VideoError`, or with ``trim_long=True``
      are cut to their first ``max_seconds``.
    * ``crop=(x, y, w, h)`` in source pixels is applied first, then ``resize_short`` scales the
      shorter side to that many pixels (aspect kept).
    * A file whose stream ends early (truncated download) raises unless ``allow_partial``, which keeps
      the frames that decode (``DecodedVideo.truncated`` is then set).
    * ``backend``: ``"auto"`` (decord, OpenCV on failure), ``"decord"`` or ``"opencv"``.
    * a *folder* of frame images (sorted by name) is read as a video at ``folder_fps``.
    * ``budget`` (:class:`Budget`): cap the output's shorter side (decoder-side downscaling), refuse
      over-large source frames and outputs over a pixel budget, before decoding them.
    """
    budget = budget or Budget()
    if backend not in ("auto", "decord", "opencv"):
        raise ValueError(f"backend must be 'auto', 'decord' or 'opencv', got {backend!r}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if Path(os.fspath(path)).is_dir():   # a folder of frames (PHOENIX-2014T, CSL-Daily)
        return _read_folder(Path(os.fspath(path)), fps, folder_fps, max_seconds, resize_short, crop, trim_long,
                            budget)
    p = _check_path(path)
    header = _header_size(p) if budget.max_frame_pixels is not None else None
    if header is not None:        # refused before any decoder opens the file
        _check_source_size(p, header[0], header[1], budget)
    errors = []
    if backend in ("auto", "decord"):
        try:
            return _read_decord(p, fps, max_seconds, resize_short, crop, trim_long, budget, header)
        except VideoError:
            raise
        except ImportError as e:
            errors.append(f"decord unavailable ({e})")
        except Exception as e:  # noqa: BLE001 - decord's own errors: try OpenCV next
            msg = str(e).strip().splitlines()
            errors.append(f"decord: {msg[-1][:200] if msg else type(e).__name__}")
        if backend == "decord":
            raise _unusable(p, "; ".join(errors))
    return _read_cv2(p, fps, max_seconds, resize_short, crop, trim_long, allow_partial, errors, budget)


def _too_long(p: Path, max_seconds: float) -> VideoError:
    return VideoError(f"{p}: video is longer than max_seconds={max_seconds:g} "
                      "(pass trim_long=True to keep only the beginning)")


def _limit_frames(p: Path, n: int, src_fps: float, max_seconds, trim_long) -> tuple[int, bool]:
    if max_seconds is None:
        return n, False
    limit = int(math.floor(max_seconds * src_fps + 1e-6))
    if n <= limit:
        return n, False
    if not trim_long:
        raise VideoError(f"{p}: video is {n / src_fps:.1f} s long, more than max_seconds={max_seconds:g} "
                         "(pass trim_long=True to keep only the beginning)")
    return max(1, limit), True


def _source_size(p: Path, vr, header: tuple[int, int] | None = None) -> tuple[int, int]:
    """(width, height) of the video stream: ``header`` (the file's headers) when known, else OpenCV's
    container header, else decord's first frame."""
    if header is not None:
        return header
    import cv2
    cap = cv2.VideoCapture(str(p))
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if w > 0 and h > 0:
        return w, h
    h, w = vr[0].shape[:2]
    return int(w), int(h)


def _scaled_reader(p: Path, vr, box, size, crop, width: int, height: int):
    """(reader, box): downscaling without a crop, a reader whose decoder scales frames to ``size``."""
    if crop is None and size[0] * size[1] < width * height:
        del vr
        vr = _open_decord(p, size)
        if tuple(vr[0].shape[:2]) != (size[1], size[0]):
            raise RuntimeError(f"decord returned {tuple(vr[0].shape)} for a {size[0]}x{size[1]} request")
        return vr, (0, 0, size[0], size[1])
    return vr, box


def _read_decord(p, fps, max_seconds, resize_short, crop, trim_long, budget: Budget,
                 header: tuple[int, int] | None = None) -> DecodedVideo:
    vr = _open_decord(p)
    n_src, src_fps = len(vr), float(vr.get_avg_fps())
    if n_src <= 0:
        raise VideoError(f"{p}: video stream has zero frames")
    if not (src_fps > 0 and math.isfinite(src_fps)):
        raise VideoError(f"{p}: video stream reports no valid frame rate ({src_fps})")
    width, height = _source_size(p, vr, header)
    _check_source_size(p, width, height, budget)
    box, size = _output_geometry(width, height, crop, resize_short, budget.max_short_side)
    n_used, trimmed = _limit_frames(p, n_src, src_fps, max_seconds, trim_long)
    idx = resample_indices(n_used, src_fps, fps)
    _check_output_size(p, len(idx), size, budget)
    vr, box = _scaled_reader(p, vr, box, size, crop, width, height)
    chunk_len = max(1, min(_CHUNK, _CHUNK_BYTES // (3 * box[2] * box[3]
                                                    if crop is None else 3 * width * height)))
    out = np.empty((len(idx), size[1], size[0], 3), dtype=np.uint8)
    for s in range(0, len(idx), chunk_len):
        chunk = idx[s:s + chunk_len]
        uniq, inv = np.unique(chunk, return_inverse=True)
        batch = vr.get_batch(uniq.tolist()).asnumpy()
        out[s:s + len(chunk)] = _postprocess(batch, box, size)[inv]
    return DecodedVideo(out, float(fps or src_fps), src_fps, n_used, n_used / src_fps, width, height,
                        "decord", idx, trimmed, False, n_src)


def _read_cv2(p, fps, max_seconds, resize_short, crop, trim_long, allow_partial, errors,
              budget: Budget) -> DecodedVideo:
    """Sequential OpenCV decode; keeps only the frames the resampling needs (streamed selection)."""
    import cv2
    cap = _open_cv2(p)
    if cap is None:
        raise _unusable(p, "; ".join(errors + ["opencv could not open it"]))
    try:
        src_fps = float(cap.get(cv2.CAP_PROP_FPS))
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            raise _unusable(p, "; ".join(errors + ["opencv found no video stream"]))
        _check_source_size(p, width, height, budget)
        box, size = _output_geometry(width, height, crop, resize_short, budget.max_short_side)
        if not (0 < src_fps <= MAX_NOMINAL_FPS) or reported <= 0:
            # no usable nominal rate or length (a live recording): select frames by their timestamps
            return _read_cv2_by_time(cap, p, fps, max_seconds, box, size, width, height, trim_long, budget)
        n_expect, _ = _limit_frames(p, reported, src_fps, max_seconds, trim_long)   # fail early if over-long
        _check_output_size(p, len(resample_indices(n_expect, src_fps, fps)), size, budget)
        limit = None if max_seconds is None else int(math.floor(max_seconds * src_fps + 1e-6))
        ratio = 1.0 if fps is None else src_fps / fps
        kept, kept_src, k, i = [], [], 0, 0
        while True:
            if limit is not None and i >= limit:
                if cap.grab():   # one more frame exists: the video is too long
                    if not trim_long:
                        raise _too_long(p, max_seconds)
                    trimmed = True
                else:
                    trimmed = False
                break
            ok, frame = cap.read()
            if not ok:
                trimmed = False
                break
            # emit this frame for every output index whose nearest source frame is i
            while math.floor(k * ratio + 0.5) == i:
                if not kept or kept_src[-1] != i:
                    frame_rgb = _postprocess(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)[None], box, size)[0]
                kept.append(frame_rgb)
                kept_src.append(i)
                k += 1
            i += 1
    finally:
        cap.release()
    n_used = i
    if n_used == 0:
        raise VideoError(f"{p}: no frame could be decoded (zero frames, or a corrupt stream)")
    # the stream ended well before the frames the container reports (or before max_seconds of them)
    expect = reported if limit is None else min(reported, limit)
    truncated = not trimmed and n_used < expect - max(2, int(0.05 * expect))
    if truncated and not allow_partial:
        raise VideoError(f"{p}: corrupt or truncated video: decoded {n_used} of the {expect} frames "
                         "the container reports (pass allow_partial=True to keep them)")
    if truncated:
        warnings.warn(f"{p}: truncated video, using the {n_used} of {expect} frames that decode")
    idx = resample_indices(n_used, src_fps, fps)
    # streamed selection covers idx exactly except for the clipped tail (repeat the last frame)
    sel = np.minimum(np.arange(len(idx)), len(kept) - 1)
    frames = np.stack([kept[j] for j in sel]) if kept else np.zeros((0, size[1], size[0], 3), np.uint8)
    return DecodedVideo(frames, float(fps or src_fps), src_fps, n_used, n_used / src_fps, width, height,
                        "opencv", idx, trimmed, truncated, reported)


def _read_cv2_by_time(cap, p, fps, max_seconds, box, size, width, height, trim_long,
                      budget: Budget) -> DecodedVideo:
    """Two passes over a stream without a trustworthy frame rate: timestamps first (``grab``), then
    decode only the frames :func:`resample_by_time` selects."""
    import cv2
    times, trimmed = [], False
    while cap.grab():
        times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
        if max_seconds is not None and times[-1] - times[0] >= max_seconds:
            if not trim_long:
                raise _too_long(p, max_seconds)
            times.pop()
            trimmed = True
            break
    if not times:
        raise VideoError(f"{p}: no frame could be decoded (zero frames, or a corrupt stream)")
    idx, src_fps = resample_by_time(np.array(times), fps)
    _check_output_size(p, len(idx), size, budget)
    again = _open_cv2(p)            # a fresh reader: streams without cues may not seek back to 0
    if again is None:
        raise _unusable(p, "opencv could not reopen it")
    wanted, frames, i = set(idx.tolist()), {}, 0
    try:
        while i <= idx.max():
            ok, frame = again.read()
            if not ok:
                break
            if i in wanted:
                frames[i] = _postprocess(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)[None], box, size)[0]
            i += 1
    finally:
        again.release()
    if not frames:
        raise VideoError(f"{p}: no frame could be decoded (zero frames, or a corrupt stream)")
    # a selected frame that did not decode the second time: the latest earlier one that did
    got = sorted(frames)
    out = np.stack([frames[j] if j in frames else frames[got[max(0, np.searchsorted(got, j) - 1)]]
                    for j in idx.tolist()])
    n_used = len(times)
    return DecodedVideo(out, float(fps or src_fps), src_fps, n_used, n_used / src_fps, width, height,
                        "opencv", idx, trimmed, False)


# --- streamed decoding (recordings of any length) ---------------------------------------------------

def _span(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds < 120 else f"{seconds / 60:.4g} min"


class VideoStream:
    """A video decoded piece by piece: output frames ``[lo, hi)`` at ``fps`` on demand (:meth:`read`), never
    the whole video. Frame ``k`` is the same source frame as ``read_video(path, fps, ...).frames[k]``
    (nearest-frame resampling, :func:`resample_indices`), scaled by the decoder as there. Consecutive reads
    continue the decoder without seeking; a read elsewhere (a resumed run) seeks. decord only (it knows the
    frame count up front). A truncated file (fewer frames than the container declares, or frames that do not
    decode) raises :class:`VideoError` (``allow_partial``: the frames there are used); ``max_seconds``: longer
    videos are refused before any decoding, and so are frames over ``budget.max_frame_pixels``, read from the
    file's headers (:func:`seds.extract.header.header_size`) before a decoder opens it."""

    def __init__(self, path, fps: float | None = 24.0, max_seconds: float | None = None,
                 resize_short: int | None = None, crop: tuple[int, int, int, int] | None = None,
                 budget: Budget | None = None, allow_partial: bool = False):
        budget = budget or Budget()
        p = _check_path(path)
        self.path = p
        header = _header_size(p)      # frames over the limit are refused before any decoder opens the file
        if header is not None:
            _check_source_size(p, header[0], header[1], budget)
        try:
            vr = _open_decord(p)
            n_src, src_fps = len(vr), float(vr.get_avg_fps())
        except Exception as e:  # noqa: BLE001 - decord's errors: name the problem (audio only, corrupt, truncated)
            detail = (str(e).strip().splitlines() or [repr(e)])[-1][:200]
            raise _unusable(p, f"or truncated: decord: {detail}") from None
        if n_src <= 0:
            raise VideoError(f"{p}: video stream has zero frames")
        if not (src_fps > 0 and math.isfinite(src_fps)):
            raise VideoError(f"{p}: video stream reports no valid frame rate ({src_fps})")
        cap = _open_cv2(p)    # the frame count the container declares: more than decord finds = truncated
        self.reported_frames = max(0, int(cap.get(7))) if cap is not None else 0   # 7: CAP_PROP_FRAME_COUNT
        if cap is not None:
            cap.release()
        if not allow_partial and n_src < self.reported_frames - max(2, int(0.05 * self.reported_frames)):
            raise VideoError(f"{p}: corrupt or truncated video: {n_src} of the {self.reported_frames} frames the "
                             "container declares are there (allow_partial keeps them)")
        if max_seconds is not None and n_src / src_fps > max_seconds + 1e-6:
            raise VideoError(f"{p}: the video is {_span(n_src / src_fps)} long, more than the limit of {_span(max_seconds)}")
        self.width, self.height = _source_size(p, vr, header)
        _check_source_size(p, self.width, self.height, budget)
        box, self.size = _output_geometry(self.width, self.height, crop, resize_short, budget.max_short_side)
        self._vr, self._box = _scaled_reader(p, vr, box, self.size, crop, self.width, self.height)
        self._pos, self._keys = 0, None    # the source frame the reader's next() returns (None: unknown)
        self._drop_read_ahead()            # what the size checks above decoded
        self.source_fps, self.source_frames = src_fps, n_src
        self.fps = float(fps or src_fps)
        self.indices = resample_indices(n_src, src_fps, fps)   # source frame of every output frame

    @property
    def num_frames(self) -> int:
        """Output frames at ``fps``."""
        return int(len(self.indices))

    @property
    def duration(self) -> float:
        return self.source_frames / self.source_fps

    def _key_before(self, i: int) -> int:
        """The last key frame at or before source frame ``i``."""
        if self._keys is None:
            self._keys = np.asarray(self._vr.get_key_indices(), np.int64)
        keys = self._keys
        return int(keys[max(0, np.searchsorted(keys, i, side="right") - 1)]) if len(keys) else 0

    def _goto(self, i: int) -> None:
        """Position the reader so that its next frame is source frame ``i`` (decord's ``seek_accurate`` can land
        one frame off: seek to the key frame at or before ``i``, then skip forward)."""
        if i == self._pos:
            return
        if self._pos is None or not self._pos < i <= self._pos + 2 * _CHUNK:
            self._pos = self._key_before(i)
            self._vr.seek(self._pos)
        if i > self._pos:
            self._vr.skip_frames(i - self._pos)
        self._pos = i

    def _drop_read_ahead(self) -> None:
        """Discard what decord's decoder thread holds beyond the last frame returned. Its ``next()`` queues one
        more packet whenever no decoded frame is ready yet, and a frame is never taken without queueing one, so
        the backlog only grows — by however far the decoder thread fell behind (a busy CPU) — and all of it is
        decoded into full frames while the caller works on the chunk it read (≈ 1 GB after 5 minutes of 720p
        under MediaPipe). A seek stops that thread and empties its queues; the next read skips forward from
        the key frame at or before its first frame (less than one GOP decoded again)."""
        if self._pos is None:
            return
        try:
            key = self._key_before(self._pos)
            self._vr.seek(key)
            self._pos = key
        except Exception:  # noqa: BLE001 - decord's errors: the next read seeks afresh (or names the problem)
            self._pos = None

    def read(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Output frames ``[lo, hi)`` as uint8 ``(hi - lo, H, W, 3)`` RGB, decoded one by one (``next``: decord's
        ``get_batch`` keeps ~1 MB per 720p frame it ever returned). ``out``: a buffer of at least ``hi - lo``
        frames to fill (its first ``hi - lo`` are returned) — reusing one buffer keeps the process's memory
        flat, where a fresh 100 MB array per chunk fragments the heap and grows it."""
        lo, hi = max(0, int(lo)), min(int(hi), self.num_frames)
        shape = (max(0, hi - lo), self.size[1], self.size[0], 3)
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        elif out.dtype != np.uint8 or out.shape[1:] != shape[1:] or len(out) < shape[0]:
            raise ValueError(f"out must be uint8 ({shape[0]}+, {shape[1]}, {shape[2]}, 3), got {out.dtype} {out.shape}")
        out = out[:shape[0]]
        last = -1
        try:
            for k, i in enumerate(self.indices[lo:hi].tolist()):
                if i != last:
                    self._goto(i)
                    frame = _postprocess(self._vr.next().asnumpy()[None], self._box, self.size)[0]
                    self._pos, last = i + 1, i
                out[k] = frame
        except Exception as e:  # noqa: BLE001 - decord raises StopIteration / its own errors mid-stream
            msg = (str(e).strip().splitlines() or [type(e).__name__])[-1][:160]
            raise VideoError(f"{self.path}: corrupt or truncated video: frame {lo + k} (of {self.num_frames} the "
                             f"container reports) does not decode ({msg})") from None
        self._drop_read_ahead()     # memory flat with length: nothing is decoded while the caller works
        return out

    def close(self) -> None:
        self._vr = None
