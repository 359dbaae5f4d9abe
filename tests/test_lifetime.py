"""seds.extract.lifetime: a worker ends when the process that started it is killed (issue 15)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seds.extract.lifetime import EXIT_ORPHANED

REPO = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_dead(pids, seconds: float) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("how", ["die_with_parent", "watchdog_only"])
def test_child_ends_when_its_parent_is_killed(tmp_path, how):
    child = ("import os, sys, time; sys.path.insert(0, {repo!r})\n"
             "from seds.extract import lifetime as L\n"
             "ppid = int(sys.argv[1])\n"
             "L.die_with_parent(ppid, 0.1) if {how!r} == 'die_with_parent' else L.watch_parent(ppid, 0.1)\n"
             "open({ready!r} + str(os.getpid()), 'w').close()\n"
             "time.sleep(60)\n").format(repo=str(REPO), how=how, ready=str(tmp_path / "ready-"))
    parent = ("import os, subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())])\n"
              "time.sleep(60)\n").format(child=child)
    p = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not list(tmp_path.glob("ready-*")):
            time.sleep(0.05)
        ready = list(tmp_path.glob("ready-*"))
        assert ready, "the child never started"
        pid = int(ready[0].name.split("-")[1])
        assert alive(pid)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert wait_dead([pid], 5.0) == [], f"child {pid} outlived its parent ({how})"
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.skipif(os.getpid() == 1, reason="the child's parent would be pid 1 itself")
def test_an_orphan_exits_at_once():
    """die_with_parent in a process whose parent is not the given pid (it died) exits with EXIT_ORPHANED."""
    code = ("import sys; sys.path.insert(0, {repo!r})\n"
            "from seds.extract.lifetime import die_with_parent\n"
            "die_with_parent(1)\n"                        # pid 1 is not our parent
            "print('still here')\n").format(repo=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_ORPHANED and "still here" not in r.stdout
