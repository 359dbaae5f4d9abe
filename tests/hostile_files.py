"""Crafted uploads made at test time: tiny files that announce enormous frames (a PNG and a one-frame H.264
of W×H pixels, a few hundred KB), for tests/test_app_hostile.py and tests/test_app_soak.py."""
from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, width: int = 16000, height: int = 16000, rgb: tuple[int, int, int] = (10, 20, 30)) -> Path:
    """A valid one-colour RGB PNG of ``width`` × ``height`` (16000²: < 1 MB on disk, 768 MB decoded), never held
    whole in memory: a block of rows is deflated once and repeated (a full flush makes the blocks independent),
    the zlib trailer's Adler-32 computed over the whole image."""
    rows = max(1, min(height, (4 << 20) // (3 * width + 1)))
    block = (b"\x00" + bytes(rgb) * width) * rows
    z = zlib.compressobj(9)
    first = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)          # with the 2-byte zlib header
    again = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(height, rows)
    adler = 1
    for _ in range(n):
        adler = zlib.adler32(block, adler)
    last = b""
    if rest:
        tail = block[: rest * (3 * width + 1)]
        last = z.compress(tail) + z.flush(zlib.Z_FULL_FLUSH)
        adler = zlib.adler32(tail, adler)
    idat = first + again * (n - 1) + last + b"\x03\x00" + struct.pack(">I", adler)   # empty final block
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def huge_h264(path: Path, width: int = 8000, height: int = 8000, colour: str = "gray") -> Path:
    """A one-frame H.264 MP4 of ``width`` × ``height`` (ffmpeg; needs ``shutil.which("ffmpeg")``)."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is needed to make an H.264 input")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={colour}:s={width}x{height}:r=25",
                    "-frames:v", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
                   check=True)
    return path
