"""Worker processes that end with the process that started them.

A killed extraction run (SIGKILL, OOM killer, a closed terminal) must not leave its worker processes
decoding and writing on their own. :func:`die_with_parent`, called first thing in a worker, uses two
mechanisms:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker as soon as the thread that
  created it exits (the parent's main thread for the pools of :mod:`seds.extract`);
* everywhere, a daemon thread that polls the parent's pid and exits the worker when it changes (the
  worker was re-parented: its parent is gone) — the fallback where ``prctl`` is unavailable.

Either way the worker ends within about ``interval`` seconds; feature files are written atomically, so
nothing half-written is left behind.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1        # <linux/prctl.h>
EXIT_ORPHANED = 75          # exit status of a worker that outlived its parent


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux only).
    Returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent_pid: int, interval: float = 0.5) -> threading.Thread:
    """A daemon thread that ends this process (``os._exit``) once its parent is no longer ``parent_pid``."""
    def loop() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(EXIT_ORPHANED)

    t = threading.Thread(target=loop, name="seds-parent-watchdog", daemon=True)
    t.start()
    return t


def die_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Make this process end when ``parent_pid`` (its parent) dies: see the module docstring."""
    set_parent_death_signal()
    if os.getppid() != parent_pid:      # the parent died before the signal was armed
        os._exit(EXIT_ORPHANED)
    watch_parent(parent_pid, interval)
