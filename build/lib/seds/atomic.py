"""Atomic file writes: a temporary file in the same folder, fsync, ``os.replace``, fsync of the folder.

A reader (or a resumed run) sees either the old file or the complete new one, never a partial file,
whatever moment a process is killed at. Temporary files are named ``.<name>.<random><suffix>``.
The file gets the permissions of any newly created file (``0o666`` less the umask), not the ``0o600``
of :func:`tempfile.mkstemp`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(d: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where /proc tells it (Linux), else by a swap."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, suffix: str = ".tmp") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def atomic_save_file(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file of torch ``tensors``, written atomically."""
    from safetensors.torch import save  # torch: this module's other writers stay torch-free

    return atomic_write_bytes(path, save(tensors, metadata=metadata))
