"""CPU process settings: glibc's allocator tuned for a training loop, or for a long-running app.

Training a batch allocates and frees many activation tensors of tens to hundreds of MB. glibc's
``malloc`` serves blocks above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns them
with ``munmap`` on free, so every step faults every page of every large activation in again: the
kernel zeroes ~16 GB of pages per step of the ``synthetic_cpu`` preset at batch 32 (4.0 M minor faults, half of
the step's CPU time in the kernel; the step takes 2.1× longer, ``benchmarks/results/train_step_cpu.md``).
:func:`keep_freed_memory` tells glibc to serve all blocks from its heap and not to trim it, so freed
activations are reused by the next step; the resident peak stays the same (the same tensors are live).

A long-running server wants the opposite: after a query its memory should go back to the system. glibc raises
its *dynamic* mmap threshold, up to 32 MB, every time an mmapped block is freed, so after the app's first live
extraction the next ones' frame buffers come from the heap and its per-thread arenas, whose freed pages mostly
stay in the process's RSS: an idle app then sits a few hundred MB above where it was, by an amount that depends on
which thread served which query. :func:`return_large_buffers_to_os` fixes the threshold at 1 MB, so every larger
block is unmapped as soon as the query that used it ends (one ``mmap``/``munmap`` pair per large block, negligible
next to decoding a frame); :func:`give_back_freed_memory` (``malloc_trim``) hands back the free pages of every
arena after a query: the many small blocks its threads freed, which the threshold does not cover.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3          # mallopt parameter numbers from glibc's <malloc.h>
_M_MMAP_MAX = -4
_GLIBC_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}
_KEEP = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2 ** 30}
FIXED_MMAP_THRESHOLD = 1 << 20


@functools.lru_cache(maxsize=None)
def _glibc_function(name: str, argtypes: tuple, restype):
    """glibc's ``name`` with its C signature, looked up once; None off Linux or where the C library lacks it
    (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = list(argtypes), restype
    return fn


def _mallopt():
    return _glibc_function("mallopt", (ctypes.c_int, ctypes.c_int), ctypes.c_int)


def keep_freed_memory(enable: bool = True) -> bool:
    """Make glibc malloc reuse freed large blocks instead of unmapping them (process-wide).

    ``enable=False`` puts glibc's default limits back (used by ``benchmarks/bench_train_step.py`` to
    compare both in one process). Returns True when applied; False off Linux/glibc (nothing to do
    there: macOS and Windows allocators already cache large blocks), or when the C library has no
    ``mallopt``.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return all(mallopt(k, v) == 1 for k, v in (_KEEP if enable else _GLIBC_DEFAULTS).items())


def return_large_buffers_to_os() -> bool:
    """Fix glibc's mmap threshold at 1 MB (process-wide); False, and nothing changed, where there is no glibc."""
    mallopt = _mallopt()
    return mallopt is not None and mallopt(_M_MMAP_THRESHOLD, FIXED_MMAP_THRESHOLD) == 1


def give_back_freed_memory() -> bool:
    """``malloc_trim(0)``: the free pages of every glibc arena back to the system; False where there is no glibc."""
    trim = _glibc_function("malloc_trim", (ctypes.c_size_t,), ctypes.c_int)
    return trim is not None and bool(trim(0))
