"""Peak memory of the app's back-end for one video → text query, by input resolution and length.

Each measurement runs in a fresh process: the default app (``checkpoints/demo`` + ``examples/gallery``,
MediaPipe pose; ``--rgb i3d`` puts a randomly initialised I3D in place of the proxy RGB extractor: the
memory of I3D does not depend on its weights) is loaded and its extractor built (*idle*: the server after
start-up), the kernel's high-water mark is reset (``/proc/self/clear_refs``), one upload is queried
exactly as ``demo/app.py`` does (:meth:`AppBackend.query_video`, preview included), and the peak RSS
(``VmHWM``) is read back. The inputs are made with ffmpeg at run time: a real How2Sign-mini clip
(``../shared/data``; the ffmpeg ``testsrc2`` pattern when it is absent — no signer, so the query ends with
"No signer found" after decoding and pose) looped to the length and scaled to the resolution, H.264.

    python benchmarks/bench_app_memory.py [--rgb proxy|i3d] [--sizes 360p 1080p 4k] [--seconds 5 20]
    python benchmarks/bench_app_memory.py --one VIDEO [--rgb proxy|i3d]   # one measurement, JSON on stdout

Writes ``benchmarks/results/app_memory.md`` (and ``.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from demo.backend import AppBackend, AppConfig, AppError  # noqa: E402
from seds.extract.i3d import I3DFeatureExtractor  # noqa: E402
from seds.extract.i3d_model import InceptionI3d  # noqa: E402
from seds.retrieval.engine import CPU_I3D_MEMORY_MB  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
SIZES = {"360p": (640, 360), "1080p": (1920, 1080), "4k": (3840, 2160)}


def status_mb(field: str) -> float:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def source_clip() -> Path | None:
    clips = sorted((SHARED / "how2sign-mini" / "clips").glob("*.mp4"))
    return clips[0] if clips else None


def make_input(path: Path, size: tuple[int, int], seconds: float, fps: int = 24) -> list[str]:
    """Write an H.264 input of ``size`` and ``seconds`` with ffmpeg; returns the command used."""
    src = source_clip()
    w, h = size
    if src is not None:
        inp = ["-stream_loop", "-1", "-i", str(src)]
    else:
        inp = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}"]
    cmd = ["ffmpeg", "-v", "error", "-y", *inp, "-t", f"{seconds:g}", "-vf", f"scale={w}:{h},fps={fps}",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "28", "-pix_fmt", "yuv420p", "-an", str(path)]
    subprocess.run(cmd, check=True)
    return cmd


def measure_one(video: str, rgb: str) -> dict:
    """Idle and peak RSS (MiB) of this process around one query of ``video``."""
    rgb_extractor = None
    if rgb == "i3d":
        rgb_extractor = I3DFeatureExtractor(model=InceptionI3d(), memory_budget_mb=CPU_I3D_MEMORY_MB)
    # no time limit: on a shared CPU a 20-s upload can take longer than the app's default (memory is measured)
    be = AppBackend(AppConfig(query_timeout_s=1e6), rgb_extractor=rgb_extractor, preload=True)
    try:
        idle = status_mb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")      # reset VmHWM to the current RSS
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            q = be.query_video(video)
            outcome, notes = f"{q.source}, {q.features.num_clips} windows", q.notes
        except AppError as e:
            outcome, notes = f"AppError: {e}", []
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = status_mb("VmHWM")
    finally:
        be.close()
    return {"idle_mb": round(idle, 1), "peak_mb": round(peak, 1), "delta_mb": round(peak - idle, 1),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "outcome": outcome, "notes": notes,
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_child(video: Path, rgb: str, timeout: float = 600) -> dict:
    """:func:`measure_one` in a fresh interpreter (so that earlier queries do not count)."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", str(video), "--rgb", rgb],
                         capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"measurement failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--one", help="measure one video in this process and print JSON")
    ap.add_argument("--rgb", choices=("proxy", "i3d"), default="i3d")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--seconds", nargs="+", type=float, default=[5.0, 20.0])
    ap.add_argument("--skip", nargs="*", default=[], help="SIZE:SECONDS pairs not to measure (CPU time)")
    ap.add_argument("--out", default=str(RESULTS / "app_memory.md"))
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.rgb)))
        return 0
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed to make the inputs")
    command = "python benchmarks/bench_app_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows, gen = [], None
    with tempfile.TemporaryDirectory(prefix="seds-mem-") as tmp:
        for name in args.sizes:
            for secs in args.seconds:
                if f"{name}:{secs:g}" in args.skip:
                    rows.append({"size": name, "seconds": secs, "skipped": True})
                    continue
                path = Path(tmp) / f"{name}-{secs:g}s.mp4"
                gen = make_input(path, SIZES[name], secs)
                r = run_child(path, args.rgb)
                r.update(size=name, seconds=secs, file_mb=round(path.stat().st_size / 2**20, 2))
                print(json.dumps(r), flush=True)
                rows.append(r)
    cfg = AppConfig()
    lines = [f"`{command.strip()}`", "",
             f"Peak RSS of the app's back-end process for one video → text query (default app, MediaPipe pose, "
             f"RGB: {'randomly initialised I3D' if args.rgb == 'i3d' else 'synthetic proxy'}; limits: "
             f"max_short_side={cfg.max_short_side}, max_seconds={cfg.max_seconds:g}, max_clips={cfg.max_clips}). "
             f"Idle = after loading the checkpoint, gallery, pose and RGB models; peak = VmHWM during the query "
             f"(its high-water mark reset first). Inputs: "
             + ("a How2Sign-mini clip" if source_clip() else "ffmpeg testsrc2 (no signer)")
             + " looped and scaled with ffmpeg, H.264 (`" + " ".join(gen or []).replace(str(ROOT.parent), "..")
             + "`, per size/length).", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), "
             f"{time.strftime('%Y-%m-%d %H:%M')}.", "",
             "| input | file MB | idle RSS MB | peak RSS MB | peak − idle MB | wall s | CPU s | outcome |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        label = f"{r['size']} × {r['seconds']:g} s"
        if r.get("skipped"):
            lines.append(f"| {label} | | | | | | | not measured (CPU budget of this run) |")
            continue
        lines.append(f"| {label} | {r['file_mb']} | {r['idle_mb']:.0f} | {r['peak_mb']:.0f} | "
                     f"**{r['delta_mb']:.0f}** | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['outcome'][:80]} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
