"""How the app's process gives memory back to the operating system after a query.

glibc's allocator serves a large block (a decoded frame buffer, a window batch) with ``mmap`` only while the
block is above its *dynamic* mmap threshold, and raises that threshold, up to 32 MB, every time such a block is
freed. After the first live extraction, the next ones' frame buffers therefore come from the heap and its
per-thread arenas, whose freed pages mostly stay in the process's RSS: an idle app then sits a few hundred MB above
where it was, by an amount that depends on which thread served which query. A fixed threshold keeps every block
of 1 MB or more mmapped, so it goes back to the system as soon as the query that used it ends. The cost is one
``mmap``/``munmap`` pair per large block, which is negligible next to decoding a frame. After a live extraction
the app also asks glibc to hand back the free pages of every arena (``malloc_trim``): the many small blocks a
query's threads freed, which the threshold does not cover.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3          # mallopt parameter numbers from glibc's <malloc.h>
FIXED_MMAP_THRESHOLD = 1 << 20


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def give_back_freed_memory() -> bool:
    """``malloc_trim(0)``: free pages of every glibc arena back to the system; False where there is no glibc."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


def return_large_buffers_to_os() -> bool:
    """Fix glibc's mmap threshold at 1 MB; False (and nothing changed) where the C library is not glibc."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:                     # musl, macOS, Windows: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, FIXED_MMAP_THRESHOLD))
