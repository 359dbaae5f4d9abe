"""Throughput of the RGB stream's I3D window features (seds.extract.i3d.I3DFeatureExtractor).

End to end as the extraction pipeline calls it: uint8 frames at How2Sign resolution (640×360) →
center crop + resize to 224² → batched 16-frame windows at stride 1 → Mixed_5c features. Kinetics-400
weights (the content of the frames does not change the cost, so they are random).

    python benchmarks/bench_i3d.py                    # CPU, 8 clips; CUDA too when available
    python benchmarks/bench_i3d.py --clips 256 --device cuda

Writes benchmarks/results/i3d_<device>.json and appends a markdown line to benchmarks/results/i3d.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seds.extract.i3d import I3DFeatureExtractor, load_i3d  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


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


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: CPU, plus CUDA when available")
    ap.add_argument("--clips", type=int, default=None, help="windows per run (default 8 CPU, 256 CUDA)")
    ap.add_argument("--batch", type=int, default=None, help="clips per forward (default: extractor's)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
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
