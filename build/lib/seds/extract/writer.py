"""Writing RGB frames to a browser-playable WebM file (VP8/VP9): the app's skeleton-overlay previews
and the demo's example videos."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np


class VideoWriteError(RuntimeError):
    """No encoder could write the video."""


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float, fourcc: str = "VP80") -> Path:
    """RGB uint8 ``(N, H, W, 3)`` → WebM (VP8 by default: quick to encode, plays in every browser).

    OpenCV's writer first; if it cannot open the codec (its bundled libvpx refuses to start when
    decord's FFmpeg was loaded into the process first), the ``ffmpeg`` program is used instead."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(frames)
    n, h, w = frames.shape[:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if writer.isOpened():
        try:
            for f in frames:       # the encoder takes one frame at a time
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    else:
        writer.release()
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise VideoWriteError(f"cannot write a {fourcc} video: OpenCV's encoder is unavailable in this process and "
                           "the ffmpeg program is not installed")
        codec = {"VP80": "libvpx", "VP90": "libvpx-vp9"}.get(fourcc, "libvpx")
        cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", f"{float(fps):g}", "-i", "-", "-an", "-c:v", codec, "-pix_fmt", "yuv420p", "-b:v", "0",
               "-crf", "32", "-deadline", "realtime", "-cpu-used", "8", str(path)]
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise VideoWriteError(f"ffmpeg could not write {path}: {proc.stderr.decode(errors='replace')[-300:]}")
    if not path.is_file() or path.stat().st_size == 0:
        raise VideoWriteError(f"no video was written to {path}")
    return path
