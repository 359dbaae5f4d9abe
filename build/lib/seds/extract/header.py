"""A video's (or still image's) frame size from the file's headers, without decoding a frame.

decord and OpenCV decode the first frame at full size when they open a file (FFmpeg's stream probing), so
a 16000×16000 PNG of 800 KB costs 800 MB there before anyone can refuse it. :func:`header_size` asks
Pillow's header parser for still images (PNG, JPEG, GIF, BMP, WebP, TIFF: FFmpeg opens them as one-frame
videos) and ``ffprobe -skip_frame all`` for containers (the decoder parses parameter sets, e.g. an H.264
SPS, and decodes no frame; the child runs under an address-space limit, reading local files only).
:mod:`seds.extract.video` refuses frames over the size limit with it before any decoder opens the file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

FFPROBE_MEMORY_MB = 512      # address-space limit of the ffprobe child (its libraries need ≈ 300 MB of it)
FFPROBE_TIMEOUT_S = 10.0
# leading bytes of still-image formats FFmpeg opens as one-frame videos → Pillow's format name
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
                (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _image_format(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _IMAGE_MAGIC if head.startswith(magic)), None)


def _image_size(p: Path, fmt: str) -> tuple[int, int] | None:
    """An image's (width, height) from its header by Pillow's parser for ``fmt`` (constructing the image
    object reads the header only; ``Image.open``'s decompression-bomb check would refuse to say the size)."""
    from PIL import Image
    Image.init()
    try:
        with open(p, "rb") as f:
            w, h = Image.OPEN[fmt][0](f, str(p)).size
        return int(w), int(h)
    except Exception:  # noqa: BLE001 - not parseable as that format: let the decoders say what it is
        return None


def _ffprobe_size(p: Path) -> tuple[int, int] | None:
    """(width, height) of the first video stream as ``ffprobe`` reads it from the container and stream headers
    (``-skip_frame all``: the decoder parses parameter sets, e.g. an H.264 SPS, and decodes no frame), in a
    child limited to ``FFPROBE_MEMORY_MB`` of address space and local files. None: no ffprobe here, or it finds
    no video stream (the decoders then say what the file is)."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = ["sh", "-c", f'ulimit -v {FFPROBE_MEMORY_MB * 1024}; exec "$0" "$@"', exe, "-v", "error",
           "-protocol_whitelist", "file", "-threads", "1", "-skip_frame", "all", "-select_streams", "v:0",
           "-show_entries", "stream=width,height", "-of", "csv=p=0:s=x", f"file:{p.resolve()}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=FFPROBE_TIMEOUT_S,
                             stdin=subprocess.DEVNULL).stdout
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"its header could not be read in {FFPROBE_TIMEOUT_S:g} s") from None
    for line in out.splitlines():
        parts = line.strip().split("x")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() and int(parts[0]) > 0 and int(parts[1]) > 0:
            return int(parts[0]), int(parts[1])
    return None


def header_size(path) -> tuple[int, int] | None:
    """(width, height) of a video's frames (or a still image's) from the file's headers, no frame decoded;
    None when the headers cannot tell (no ffprobe here, no video stream: then only a decoder can).
    Raises ``TimeoutError`` when ffprobe takes longer than ``FFPROBE_TIMEOUT_S``."""
    p = Path(os.fspath(path))
    with open(p, "rb") as f:
        head = f.read(16)
    fmt = _image_format(head)
    return (_image_size(p, fmt) if fmt is not None else None) or _ffprobe_size(p)
