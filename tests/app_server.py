"""The app as users meet it: ``python demo/app.py`` in a child process on loopback, with its own temporary
folders (``TMPDIR`` for the previews, ``GRADIO_TEMP_DIR`` for Gradio's upload copies), driven through
``gradio_client`` (tests/test_app_hostile.py, tests/test_app_soak.py)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"Running on local URL:\s+(http://\S+)")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A ``VmRSS``/``VmHWM`` line of /proc/<pid>/status in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Reset the kernel's high-water mark of ``pid`` (VmHWM) to its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class AppServer:
    proc: subprocess.Popen
    url: str
    tmp: Path            # the child's TMPDIR (its previews: seds-app-*)
    gradio_tmp: Path     # the child's GRADIO_TEMP_DIR (upload copies)
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self):
        from gradio_client import Client
        return Client(self.url, verbose=False)

    def files_left(self) -> list[Path]:
        """Files under the app's temporary folders (previews and upload copies)."""
        out = [p for p in self.gradio_tmp.rglob("*") if p.is_file()]
        for d in self.tmp.glob("seds-app-*"):
            out += [p for p in d.rglob("*") if p.is_file()]
        return sorted(out)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode


def start_app(folder: Path, *args: str, env: dict | None = None, timeout: float = 180) -> AppServer:
    """Start ``demo/app.py ARGS`` (default demo assets unless ARGS say otherwise) and wait for its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp, gtmp, log = folder / "tmp", folder / "gradio", folder / "app.log"
    tmp.mkdir(exist_ok=True)
    gtmp.mkdir(exist_ok=True)
    child_env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(gtmp), "GRADIO_ANALYTICS_ENABLED": "False",
                 "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "demo" / "app.py"), "--host", "127.0.0.1", *args],
                                cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        m = URL.search(log.read_text(errors="replace"))
        if m:
            return AppServer(proc, m.group(1).rstrip("/") + "/", tmp, gtmp, log)
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the app did not start in {timeout:g} s:\n{log.read_text(errors='replace')[-3000:]}")
