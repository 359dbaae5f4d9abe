"""Throughput of the RGB stream's I3D window features (seds.extract.i3d.I3DFeatureExtractor).

End to end as the extraction pipeline calls it: uint8 frames at How2Sign resolution (640×360) →
center crop + resize to 224² → batched 16-frame windows at stride 1 → Mixed_5c features. Kinetics-400
weights (the content of the frames does not change the cost, so they are random).

    python benchmarks/bench_i3d.py                    # CPU, 8 clips; CUDA too when available
    python benchmarks/bench_i3d.py --clips 256 --device cuda
    python benchmarks/bench_i3d.py --options          # CPU options of the exact features (below)

Writes benchmarks/results/i3d_<device>.json and appends a markdown line to benchmarks/results/i3d.md.

``--options``: the CPU settings issue 17 asks about, each against the fp32 reference — bf16 autocast (the
default on CPUs with native bf16) with and without channels-last-3d, windows per forward 4/8/16/32, 1 vs 2
torch threads, and ``torch.compile`` (Inductor, C++ codegen). ``--windows`` overlapping windows (stride 2) of a
How2Sign-mini clip; every variant runs in a fresh process (warm-up on one batch — for torch.compile, the
compilation —, then one timed pass), variants interleaved over ``--repeats``; CPU seconds per window (user + system
of that process) are the load-independent column; cosine is the minimum over windows to the plain fp32 model
(BN unfolded, contiguous). A variant is usable only at cosine ≥ 0.999. Rewrites the "CPU options" section of
benchmarks/results/i3d.md and benchmarks/results/i3d_options_cpu.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seds.extract.i3d import I3DFeatureExtractor  # noqa: E402
from seds.extract.i3d_convert import load_i3d  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "how2sign-mini" / "clips"
OPTIONS_HEADING = "## CPU options (exact per-window features)"
# name → (dtype, channels_last, windows per forward, torch threads, torch.compile: False / "default" / "freezing"
# (Inductor's inference mode: weights constant-folded and prepacked for oneDNN))
OPTIONS = {
    "fp32 reference (BN unfolded, contiguous), batch 8, 1 thread": ("ref", False, 8, 1, False),
    "bf16 autocast + channels-last-3d, batch 8, 1 thread (default)": ("bf16", True, 8, 1, False),
    "bf16 autocast, contiguous (no channels-last), batch 8, 1 thread": ("bf16", False, 8, 1, False),
    "bf16 autocast + channels-last-3d, batch 4, 1 thread": ("bf16", True, 4, 1, False),
    "bf16 autocast + channels-last-3d, batch 16, 1 thread": ("bf16", True, 16, 1, False),
    "bf16 autocast + channels-last-3d, batch 32, 1 thread": ("bf16", True, 32, 1, False),
    "bf16 autocast + channels-last-3d, batch 8, 2 threads": ("bf16", True, 8, 2, False),
    "bf16 autocast + channels-last-3d + torch.compile (Inductor), batch 8, 1 thread": ("bf16", True, 8, 1, "default"),
    "bf16 autocast + channels-last-3d + torch.compile (Inductor, freezing), batch 8, 1 thread":
        ("bf16", True, 8, 1, "freezing"),
}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> float:
    try:
        import os
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def bench(device: str, clips: int, batch: int | None, window: int, height: int, width: int,
          repeats: int) -> dict:
    model = load_i3d("kinetics400")
    ex = I3DFeatureExtractor(model=model, device=device, batch_size=batch)
    bsz = ex.clips_per_batch(window)
    frames = np.random.default_rng(0).integers(0, 256, (clips + window - 1, height, width, 3), np.uint8)
    starts = np.arange(clips)
    ex.features(frames, starts[:bsz], window)            # warm-up (oneDNN / cuDNN algorithm choice)
    times, cpu_times = [], []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        feats = ex.features(frames, starts, window)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    assert feats.shape == (clips, 1024) and np.isfinite(feats).all()
    best = min(times)
    name = torch.cuda.get_device_name() if device == "cuda" else _cpu_name()
    return {
        "bench": "i3d_features", "device": device, "device_name": name,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "dtype": str(ex.dtype).replace("torch.", ""), "channels_last": ex.channels_last,
        "clips": clips, "batch": bsz, "window": window, "frame_hw": [height, width], "input": "224x224",
        "repeats": repeats, "seconds": round(best, 3), "clips_per_s": round(clips / best, 3),
        "ms_per_clip": round(1000 * best / clips, 1),
        # CPU seconds of this process per clip: less sensitive than wall time to a shared machine
        "cpu_s_per_clip": round(min(cpu_times) / clips, 3),
        "loadavg_1min": round(_loadavg(), 2),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown(r: dict) -> str:
    return (f"| I3D features | {r['device']} ({r['device_name']}, {r['threads']} threads) | {r['dtype']} | "
            f"batch {r['batch']} | {r['window']}×224² from {r['frame_hw'][1]}×{r['frame_hw'][0]} | "
            f"**{r['clips_per_s']:.2f} clips/s** ({r['ms_per_clip']:.0f} ms/clip, "
            f"{r['cpu_s_per_clip']:.2f} CPU-s/clip, load {r['loadavg_1min']}) | {r['date']} |")


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def option_worker(name: str, windows: int, out: Path) -> None:
    """One variant of OPTIONS in this (fresh) process: warm-up on one batch, then one timed pass over all
    windows; writes {cpu_s, wall_s, threads, batch, compile_s, error} to ``out`` and the features beside it."""
    from seds.extract.video import read_video
    dtype, channels_last, batch, threads, compiled = OPTIONS[name]
    torch.set_num_threads(threads)
    clip = sorted(CLIPS.glob("*.mp4"))[0]
    frames = np.asarray(read_video(clip).frames[:2 * windows + 15])
    starts = np.arange(windows) * 2                         # overlapping windows, as a live query has
    model = load_i3d("kinetics400").eval()
    ex = I3DFeatureExtractor(model=model, dtype="fp32" if dtype == "ref" else dtype, batch_size=batch,
                             channels_last=channels_last, memory_budget_mb=1 << 16, compile=compiled == "freezing")
    if dtype == "ref":
        ex.model = copy.deepcopy(model).eval()              # undo the BN folding: the plain fp32 model
    res = {"name": name, "threads": torch.get_num_threads(), "batch": ex.clips_per_batch(16), "clip": clip.name,
           "compile_s": None, "error": None}
    try:
        if compiled == "default":           # plain Inductor (the extractor's compile=True adds freezing)
            ex.model.extract_features = torch.compile(ex.model.extract_features, dynamic=False)
        t = time.perf_counter()
        ex.features(frames, starts[:batch])                 # warm-up (and, for torch.compile, compilation)
        if compiled:
            res["compile_s"] = round(time.perf_counter() - t, 1)
        t, c = time.perf_counter(), _cpu_seconds()
        feats = ex.features(frames, starts)
        res["wall_s"], res["cpu_s"] = time.perf_counter() - t, _cpu_seconds() - c
        np.save(out.with_suffix(".npy"), feats)
    except Exception as e:  # noqa: BLE001 - a variant that fails (e.g. torch.compile) is recorded, not fatal
        res["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    out.write_text(json.dumps(res))


def options(argv, windows: int, repeats: int, timeout: float) -> None:
    """Every OPTIONS variant in fresh processes, interleaved; writes the section of i3d.md and the json."""
    rows: dict[str, dict] = {k: {"cpu": [], "wall": [], "cos": None, "error": None} for k in OPTIONS}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        feats: dict[str, np.ndarray] = {}
        for rep in range(repeats):
            for name in OPTIONS:
                if rep and name.startswith("fp32 reference"):      # the reference is needed once
                    continue
                if OPTIONS[name][2] > windows:
                    rows[name]["error"] = f"needs --windows ≥ {OPTIONS[name][2]}"
                    continue
                if rows[name]["error"]:
                    continue
                out = Path(tmp) / f"r{rep}-{list(OPTIONS).index(name)}.json"
                env = {**os.environ, "OMP_NUM_THREADS": str(OPTIONS[name][3]), "TORCHINDUCTOR_COMPILE_THREADS": "1"}
                try:
                    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--option-worker", name,
                                    "--windows", str(windows), "--worker-out", str(out)], env=env, timeout=timeout,
                                   check=True, capture_output=True, text=True)
                except subprocess.TimeoutExpired:
                    rows[name]["error"] = f"did not finish within {timeout:.0f} s (warm-up/compile included)"
                    continue
                except subprocess.CalledProcessError as e:
                    rows[name]["error"] = f"worker failed: {e.stderr.strip().splitlines()[-1][:300]}"
                    continue
                r = json.loads(out.read_text())
                if r["error"]:
                    rows[name]["error"] = r["error"]
                    continue
                rows[name].update({k: r[k] for k in ("threads", "batch", "compile_s", "clip")})
                rows[name]["cpu"].append(r["cpu_s"] / windows)
                rows[name]["wall"].append(r["wall_s"] / windows)
                feats.setdefault(name, np.load(out.with_suffix(".npy")))
    load1 = os.getloadavg()
    ref_name = next(iter(OPTIONS))
    if ref_name not in feats:
        raise SystemExit(f"the fp32 reference failed: {rows[ref_name]['error']}")
    ref = feats[ref_name]
    for name, f in feats.items():
        cos = (f * ref).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(ref, axis=1)
        rows[name]["cos"] = float(cos.min())
    default = "bf16 autocast + channels-last-3d, batch 8, 1 thread (default)"
    base = statistics.median(rows[default]["cpu"]) if rows[default]["cpu"] else float("nan")
    cmd = "python benchmarks/bench_i3d.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [OPTIONS_HEADING, "", f"Command: `{cmd.strip()}`  ",
             f"{windows} overlapping 16-frame windows (stride 2) of How2Sign-mini `{rows[ref_name].get('clip', '?')}` "
             f"(640×360 → 224²), Kinetics-400 weights, torch {torch.__version__}, {_cpu_name()}; each variant in a "
             f"fresh process (warm-up on one batch, then one timed pass), medians of {repeats} interleaved repeats "
             f"(the reference: one run); load average {load0[0]:.1f} before / {load1[0]:.1f} after "
             f"on {os.cpu_count()} CPUs shared with other jobs, so CPU-s / window (user + system of the process) is the comparable column. "
             "Cosine: minimum over windows to the fp32 reference; usable at ≥ 0.999. compile: wall seconds of the "
             "warm-up pass, with Inductor's on-disk kernel cache as it was (a cold first compile takes longer).", "",
             "| variant | CPU s / window | wall s / window | CPU vs default | min cosine | usable |",
             "|---|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        if r["error"]:
            why = r["error"] if r["error"].startswith("needs") else f"failed: {r['error']}"
            lines.append(f"| {name} | — | — | — | — | {why.replace('|', '/')} |")
            continue
        c, w = statistics.median(r["cpu"]), statistics.median(r["wall"])
        note = f"; compile {r['compile_s']} s" if r.get("compile_s") is not None else ""
        lines.append(f"| {name} | {c:.3f} | {w:.3f} | {base / c:.2f}× | {r['cos']:.6f} | "
                     f"{'yes' if r['cos'] >= 0.999 else 'no'}{note} |")
    md = RESULTS / "i3d.md"
    old = md.read_text() if md.is_file() else ""
    head, _, _ = old.partition(OPTIONS_HEADING)
    md.write_text(head.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")
    (RESULTS / "i3d_options_cpu.json").write_text(json.dumps({"command": cmd, "windows": windows,
                                                              "load": [load0, load1], "rows": rows}, indent=1))
    print("\n".join(lines))


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: CPU, plus CUDA when available")
    ap.add_argument("--clips", type=int, default=None, help="windows per run (default 8 CPU, 256 CUDA)")
    ap.add_argument("--batch", type=int, default=None, help="clips per forward (default: extractor's)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--options", action="store_true", help="measure the CPU options (see the module docstring)")
    ap.add_argument("--windows", type=int, default=32, help="--options: windows per timed pass")
    ap.add_argument("--timeout", type=float, default=600, help="--options: seconds per variant process")
    ap.add_argument("--option-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.option_worker:
        option_worker(args.option_worker, args.windows, Path(args.worker_out))
        return []
    if args.options:
        options(argv, args.windows, args.repeats, args.timeout)
        return []
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
               "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        ap.error("--device cuda but CUDA is not available")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = []
    for dev in devices:
        clips = args.clips or (256 if dev == "cuda" else 8)
        r = bench(dev, clips, args.batch, 16, 360, 640, args.repeats)
        (RESULTS / f"i3d_{dev}.json").write_text(json.dumps(r, indent=2) + "\n")
        line = markdown(r)
        with open(RESULTS / "i3d.md", "a") as fh:
            fh.write(line + "\n")
        print(json.dumps(r))
        print(line)
        out.append(r)
    return out


if __name__ == "__main__":
    main()
