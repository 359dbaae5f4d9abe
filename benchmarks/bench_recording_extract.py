"""Peak memory of streaming extraction of long recordings (issue 29): ``python -m seds.extract --recordings``
on 720p recordings of 1 to 60 minutes (and 3 hours), peak RSS and throughput per run.

    python benchmarks/bench_recording_extract.py                        # 1, 5, 15, 60 min; MediaPipe stride 24 + proxy RGB
    python benchmarks/bench_recording_extract.py --minutes 2 --pose-stride 1 --rgb i3d-kinetics400 --tag i3d
    python benchmarks/bench_recording_extract.py --minutes 180 --pose-stride 24 --tag 3h

Recordings: How2Sign-mini clips (``../shared/data/how2sign-mini``, 640×360) concatenated, scaled to 1280×720
at 24000/1001 fps (H.264, ffmpeg ``-preset ultrafast``) into one ~4.7-minute segment, looped (stream copy) and cut
to each length — made by this script with the ``ffmpeg`` program (cached in ``--work``). Each length runs the
real CLI in its own process (one worker, ``OMP_NUM_THREADS=1``), into a fresh store; peak RSS is that process's
``ru_maxrss`` (``os.wait4`` on that process: its own peak, not the benchmark's). Throughput = recording seconds per wall second. A full hour through MediaPipe
on every frame and I3D on every window takes hours on a 2-core CPU, so the long runs use the pose backend on
every ``--pose-stride``-th frame and the synthetic proxy RGB; a short run with every frame + I3D gives the
memory of the full pipeline (its chunk holds the same frames, so its peak does not grow with length either).
Writes ``<out>.json`` and ``<out>.md`` (default ``benchmarks/results/recording_extract[_<tag>]``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "how2sign-mini"


def make_segment(work: Path, clips: int = 40) -> Path:
    seg = work / "seg720.mp4"
    if seg.is_file():
        return seg
    files = sorted((DATA / "clips").glob("*.mp4"))[:clips]
    lst = work / "clips.txt"
    lst.write_text("".join(f"file '{f}'\n" for f in files))
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(lst), "-vf",
                    "scale=1280:720,fps=24000/1001", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-g", "48",
                    "-an", str(seg)], check=True)
    return seg


def make_recording(work: Path, minutes: float) -> Path:
    out = work / f"rec_{minutes:g}min.mp4"
    if out.is_file():
        return out
    seg = make_segment(work)
    loops = work / "loops.txt"
    seg_s = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                  str(seg)], capture_output=True, text=True, check=True).stdout)
    loops.write_text(f"file '{seg}'\n" * (int(minutes * 60 // seg_s) + 1))
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(loops), "-c", "copy",
                    "-t", str(minutes * 60), str(out)], check=True)
    return out


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def watch(pid: int, store: Path, log: Path, interval: float = 0.5) -> list[float]:
    """The extraction's RSS (MB) each time a chunk is finished (its file appears in the store's work folder),
    sampled every ``interval`` s until the process exits (left for ``os.wait4`` to reap); also appended to
    ``log`` as it goes, so a run cut short still shows its timeline."""
    per_chunk, seen = [], 0
    with open(log, "w") as fh:
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            n = sum(1 for _ in store.rglob("chunk_*.safetensors")) if store.is_dir() else 0
            rss = _rss_mb(pid)
            if n > seen and rss is not None:
                per_chunk.extend([round(rss, 1)] * (n - seen))
                seen = n
                fh.write(json.dumps({"chunks": n, "rss_mb": round(rss, 1)}) + "\n")
                fh.flush()
            time.sleep(interval)
    return per_chunk


def growth(per_chunk: list[float], chunk_s: float, skip_s: float = 120.0) -> float | None:
    """Least-squares slope of RSS over recording time (MB per recording minute) after the first ``skip_s``
    seconds (the backends' warm-up); None with fewer than 4 chunks there."""
    k0 = int(skip_s // chunk_s)
    y = np.asarray(per_chunk[k0:], np.float64)
    if len(y) < 4:
        return None
    x = (np.arange(len(y)) + k0) * chunk_s / 60.0
    return float(np.polyfit(x, y, 1)[0])


def run_one(rec: Path, work: Path, args) -> dict:
    store = work / f"store_{rec.stem}_{args.tag or 'default'}"
    shutil.rmtree(store, ignore_errors=True)
    csv = work / f"{rec.stem}.csv"
    csv.write_text(f"id,file\n{rec.stem},{rec}\n")
    cmd = [sys.executable, "-m", "seds.extract", "--recordings", "--dataset", "folder", "--annotations", str(csv),
           "--opt", "text_col=", "--opt", "split_col=", "--out", str(store), "--rgb-features", args.rgb,
           "--pose-stride", str(args.pose_stride), "--window-stride", str(args.window_stride),
           "--max-short-side", str(args.max_short_side), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    log = work / f"{rec.stem}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        chunk_rss = watch(proc.pid, store, work / f"{rec.stem}.rss.jsonl")
        _, status, ru = os.wait4(proc.pid, 0)     # this process's own peak RSS and CPU time
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"extraction failed ({proc.returncode}): {log.read_text()[-2000:]}")
    sys.path.insert(0, str(REPO))
    from seds.data.store import FeatureStore   # noqa: E402 - after the path is set
    feats = FeatureStore(store)[rec.stem]
    m = feats.meta
    size = sum(f.stat().st_size for f in store.glob("*.safetensors"))
    row = {"minutes": round(m["duration_s"] / 60, 2), "frames": m["n_frames"], "windows": feats.num_clips,
           "frame_size": f"{m['frame_width']}x{m['frame_height']}", "chunk_frames": m["chunk_frames"],
           "chunks": m["chunks"], "peak_rss_mb": round(ru.ru_maxrss / 1024, 1), "wall_s": round(wall, 1),
           "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
           "x_realtime": round(m["duration_s"] / wall, 2), "store_mb": round(size / 2**20, 1),
           "stage_s": m["timings_s"], "signing_windows": m["signing_windows"], "load_end": os.getloadavg()[0],
           "rss_per_chunk_mb": chunk_rss,
           "growth_mb_per_min": growth(chunk_rss, m["chunk_frames"] / m["fps"])}
    shutil.rmtree(store, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 15, 60])
    ap.add_argument("--pose-stride", type=int, default=24)
    ap.add_argument("--window-stride", type=int, default=8)
    ap.add_argument("--rgb", default="synthetic-proxy")
    ap.add_argument("--max-short-side", type=int, default=360, help="0: decode at full resolution")
    ap.add_argument("--tag", default="")
    ap.add_argument("--work", default="/tmp/seds_bench_recordings")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out or REPO / "benchmarks" / "results" / ("recording_extract" + (f"_{args.tag}" if args.tag else "")))
    command = "python benchmarks/bench_recording_extract.py " + " ".join(sys.argv[1:])
    load0 = os.getloadavg()[0]
    rows = []
    for minutes in args.minutes:
        rec = make_recording(work, minutes)
        rows.append(run_one(rec, work, args))
        print(json.dumps(rows[-1]), flush=True)
    result = {"command": command.strip(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, no GPU; shared with other jobs",
              "load_start": load0, "pose": f"mediapipe, pose stride {args.pose_stride}", "rgb": args.rgb,
              "window_stride": args.window_stride, "max_short_side": args.max_short_side, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Streaming extraction of long 720p recordings: peak RSS\n",
             f"`{result['command']}` · {result['date']} · {result['machine']}; load average {load0:.2f} at the start.\n",
             f"`python -m seds.extract --recordings`, one worker, OMP_NUM_THREADS=1; pose: {result['pose']} (the others "
             f"interpolated); RGB: {args.rgb}; windows of 16 frames every {args.window_stride} frames; frames decoded "
             + (f"with the shorter side scaled to {args.max_short_side} px by the decoder" if args.max_short_side
                else "at full resolution") + ". Recordings: How2Sign-mini clips scaled to 1280×720, looped (made by "
             "the script with ffmpeg).\n",
             "| minutes | frames (24 fps) | windows | chunk frames | chunks | peak RSS (MB) | RSS at first / last chunk (MB) "
             "| RSS growth after 2 min (MB per recording minute) | wall (s) | CPU (s) | × real time | store (MB) | load at end |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["rss_per_chunk_mb"]
        g = r["growth_mb_per_min"]
        lines.append(f"| {r['minutes']:g} | {r['frames']:,} | {r['windows']:,} | {r['chunk_frames']} | {r['chunks']} | "
                     f"{r['peak_rss_mb']:,.0f} | " + (f"{c[0]:,.0f} / {c[-1]:,.0f}" if c else "–") + " | "
                     + ("–" if g is None else f"{g:+.1f}") + f" | {r['wall_s']:,.0f} | {r['cpu_s']:,.0f} | "
                     f"{r['x_realtime']:.2f} | {r['store_mb']:.1f} | {r['load_end']:.2f} |")
    lines.append("\nStage seconds per run (decode / pose / rgb / write): " + "; ".join(
        f"{r['minutes']:g} min: " + " / ".join(f"{r['stage_s'].get(k, 0):.0f}" for k in ("decode", "pose", "rgb", "write"))
        for r in rows) + ". Wall times are on a 2-core machine shared with other jobs; RSS is not distorted by that.")
    lines.append("\nRSS per chunk: the extraction process's resident memory each time a chunk's file appears in the store's "
                 "work folder (sampled every 0.5 s; `rss_per_chunk_mb` in the JSON). Growth: least-squares slope of those "
                 "samples against recording time, after the first 2 minutes (the backends' warm-up).")
    longest = max(rows, key=lambda r: r["minutes"])
    if longest["minutes"] < 60 and longest["growth_mb_per_min"] is not None:
        est = longest["peak_rss_mb"] + max(0.0, longest["growth_mb_per_min"]) * (60 - longest["minutes"])
        lines.append(f"\n**60 minutes: not measured.** Extrapolated from the {longest['minutes']:g}-minute run (its peak "
                     f"plus its growth rate, if positive, over the remaining {60 - longest['minutes']:g} minutes): "
                     f"≈ {est:,.0f} MB (goal ≤ 2,500 MB).")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
