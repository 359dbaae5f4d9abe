"""CPU process settings for training and evaluation loops.

Training a batch allocates and frees many activation tensors of tens to hundreds of MB. glibc's
``malloc`` serves blocks above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns them
with ``munmap`` on free, so every step faults every page of every large activation in again: the
kernel zeroes ~16 GB of pages per step of the ``synthetic_cpu`` preset at batch 32 (4.0 M minor faults, half of
the step's CPU time in the kernel; the step takes 2.1× longer, ``benchmarks/results/train_step_cpu.md``).
:func:`keep_freed_memory` tells glibc to serve all blocks from its heap and not to trim it, so freed
activations are reused by the next step; the resident peak stays the same (the same tensors are live).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_GLIBC_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}
_KEEP = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2 ** 30}


def keep_freed_memory(enable: bool = True) -> bool:
    """Make glibc malloc reuse freed large blocks instead of unmapping them (process-wide).

    ``enable=False`` puts glibc's default limits back (used by ``benchmarks/bench_train_step.py`` to
    compare both in one process). Returns True when applied; False off Linux/glibc (nothing to do
    there: macOS and Windows allocators already cache large blocks), or when the C library has no
    ``mallopt``.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):     # musl and other C libraries without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(k, v) == 1 for k, v in (_KEEP if enable else _GLIBC_DEFAULTS).items())
