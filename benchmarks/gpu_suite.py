"""Everything that needs a GPU, in one call: ``bash benchmarks/gpu_suite.sh`` (this file does the work).

On a CUDA machine (goals of issue 17 for one H100/H200 in brackets):

1. training step of the paper-size model at batch 128, T = 64, 32 words, bf16 autocast, eager and
   ``torch.compile`` [≤ 100 ms]; training step of the official variant (the authors' model) at their global
   batch 128 in one graph, and with the gradient cache in chunks of 16 (their 8 GPUs × 16 on this one GPU,
   ``train.global_batch=128 train.chunk=16``; ``benchmarks/bench_grad_cache.py``), with the peak GPU memory;
2. I3D window features per second, exact per-window mode [≥ 2,000 windows/s];
3. pose backend frames/s where one runs on the GPU (MediaPipe is CPU-only in its Python wheel; RTMPose needs
   onnxruntime-gpu and local ONNX models — reported as not available otherwise);
4. the app's end-to-end latency for a 5-s clip at T = 64 (``benchmarks/bench_app_latency.py``) [≤ 0.5 s];
5. a gallery index query at 100k videos (``benchmarks/bench_index.py``) [≤ 20 ms].

Writes ``benchmarks/results/gpu.md`` (+ ``gpu.json`` and the sub-benchmarks' files next to it). Without CUDA, or
with ``--cpu-tiny``, the same code runs at tiny sizes on the CPU in a few minutes and writes
``benchmarks/results/gpu_suite_cpu_tiny.md`` instead (``--out`` chooses the stem), so CI proves the suite works.
A failing section is reported in the table and makes the exit status 1; the other sections still run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seds.config import model_config  # noqa: E402
from seds.losses import SEDSLoss  # noqa: E402
from seds.model import SEDS  # noqa: E402

SIZES = {  # gpu / cpu-tiny
    "gpu": {"amp": True, "preset": "paper", "batch": 128, "clips": 64, "words": 32, "steps": 10, "i3d_windows": 512,
            "official": "official", "official_batch": 128, "chunk": 16,
            "app": ["--clips", "64", "--repeats", "3"], "index": ["--sizes", "100000", "--queries", "50",
                                                                "--rerank", "100,1000"]},
    "cpu-tiny": {"amp": False, "preset": "tiny", "batch": 8, "clips": 4, "words": 8, "steps": 2, "i3d_windows": 2,
                 "official": "official-tiny", "official_batch": 4, "chunk": 2, "official_steps": 0,
                 "app": ["--clips", "4", "--repeats", "1", "--seconds", "2"],
                 "index": ["--sizes", "1000", "--queries", "5", "--rerank", "50", "--clips", "16"]},
}


def train_step(device: torch.device, s: dict, compile_: bool) -> dict:
    from bench_model import synthetic_batch
    cfg = model_config(s["preset"])
    torch.manual_seed(0)
    model = SEDS(cfg).to(device).train()
    crit = SEDSLoss(tau=cfg.tau).to(device)
    opt = torch.optim.Adam(list(model.parameters()) + list(crit.parameters()), lr=1e-5)
    batch, texts = synthetic_batch(s["batch"], s["clips"], cfg.window, s["words"], device)
    tokens = model.tokenize(texts)
    encode = torch.compile(model.encode_video) if compile_ else model.encode_video
    cuda = device.type == "cuda"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s["amp"]):
            v = encode(batch["keypoints"], batch["frame_mask"], batch["clip_starts"], batch["clip_mask"], batch["rgb"])
            loss = crit(v, model.encode_text(tokens))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return {**time_steps(step, s["steps"], cuda),
            "setting": f"{s['preset']} preset, batch {s['batch']}, T = {s['clips']}, {s['words']} words, "
                       + ("bf16 autocast" if s["amp"] else "fp32")}


def time_steps(step, steps: int, cuda: bool) -> dict:
    """Median ms of ``steps`` calls after one warm-up (and compilation) call; on CUDA the peak memory of the
    timed steps. ``steps`` 0 (the official sections in --cpu-tiny, whose CLIP-size text tower makes a CPU step
    seconds long): the warm-up step alone, reported as it is."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    if steps == 0:
        return {"ms_per_step": 1000 * first, "first_step_s": first, "timed": "the first step only (no warm-up)"}
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    out = {"ms_per_step": 1000 * statistics.median(times), "first_step_s": first}
    if cuda:
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def official_step(device: torch.device, s: dict, chunk: int) -> dict:
    """The official variant's training step at the global batch: one graph (chunk 0) or the gradient cache."""
    from bench_grad_cache import make_step
    step, setting = make_step(s["official"], device, s["official_batch"], chunk, s["amp"])
    return {**time_steps(step, s.get("official_steps", s["steps"]), device.type == "cuda"), "setting": setting}


def i3d(device: torch.device, s: dict) -> dict:
    from bench_i3d import bench
    r = bench(device.type, s["i3d_windows"], None, 16, 360, 640, 2)
    return {"windows_per_s": r["clips_per_s"], "setting": f"exact per-window, {r['dtype']}, batch {r['batch']}, "
                                                          f"{r['clips']} windows from 640×360 frames"}


def pose(device: torch.device) -> dict:
    try:
        import onnxruntime as ort
        providers = ort.get_available_providers()
    except ImportError:
        providers = []
    if device.type != "cuda" or "CUDAExecutionProvider" not in providers:
        return {"skipped": "no pose backend runs on the GPU here (MediaPipe's wheel is CPU-only; RTMPose needs "
                           "onnxruntime-gpu and local ONNX models); CPU figures: benchmarks/results/pose_cpu.json"}
    return {"skipped": "onnxruntime CUDA provider present: run `python benchmarks/bench_pose.py rtm_pose=... "
                       "rtm_det=...` with local RTMPose ONNX models (not shipped)"}


def sub(script: str, args: list[str], out_stem: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(out_stem)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr[-2000:]}")
    return json.loads(out_stem.with_suffix(".json").read_text())


def app_latency(device: torch.device, s: dict, stem: Path) -> dict:
    r = sub("bench_app_latency.py", ["--device", device.type, "--skip-demo", *s["app"]], stem)
    setup, res = next(iter(r["setups"].items()))
    return {"seconds": res["median"]["total"], "setting": f"{setup}: {res['clips']} windows, {res['frames']} frames",
            "stages": res["median"]}


def index(device: torch.device, s: dict, stem: Path) -> dict:
    r = sub("bench_index.py", ["--device", device.type, *s["index"]], stem)
    q = r["results"][-1]
    summary = "; ".join(f"M = {row['M']}: {row['total_ms']['median']:.1f} ms/query (agreement@10 with exhaustive "
                        f"{row['agreement@10']:.0f} %)" for row in q["rerank"])
    return {"summary": summary, "setting": f"{q['n_items']:,} videos, T = {q['clips']}, faiss + fine-grained re-rank of M"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-tiny", action="store_true", help="tiny sizes on the CPU (CI)")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                    help="torch.compile train step (auto: on with CUDA, off in --cpu-tiny)")
    ap.add_argument("--out", default=None, help="output stem (default benchmarks/results/gpu or gpu_suite_cpu_tiny)")
    args = ap.parse_args(argv)
    gpu = torch.cuda.is_available() and not args.cpu_tiny
    mode = "gpu" if gpu else "cpu-tiny"
    s = SIZES[mode]
    device = torch.device("cuda" if gpu else "cpu")
    stem = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / ("gpu" if gpu else "gpu_suite_cpu_tiny")
    stem.parent.mkdir(parents=True, exist_ok=True)
    compile_ = args.compile == "on" or (args.compile == "auto" and gpu)
    sections = {
        "train step, eager": lambda: train_step(device, s, False),
        "train step, torch.compile": (lambda: train_step(device, s, True)) if compile_ else
        (lambda: {"skipped": "--compile off (default in --cpu-tiny)"}),
        "train step, official, one graph": lambda: official_step(device, s, 0),
        "train step, official, gradient cache": lambda: official_step(device, s, s["chunk"]),
        "I3D windows/s": lambda: i3d(device, s),
        "pose backend on GPU": lambda: pose(device),
        "app, 5-s clip end to end": lambda: app_latency(device, s, stem.with_name(stem.name + "_app_latency")),
        "index query": lambda: index(device, s, stem.with_name(stem.name + "_index")),
    }
    res, failed = {}, False
    t_all = time.perf_counter()
    for name, fn in sections.items():
        t = time.perf_counter()
        print(f"[gpu_suite] {name} ...", flush=True)
        try:
            res[name] = fn()
        except Exception as e:      # one broken section must not hide the others' numbers
            failed = True
            res[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        res[name]["wall_s"] = round(time.perf_counter() - t, 1)
        print(f"[gpu_suite] {name}: {json.dumps({k: v for k, v in res[name].items() if k != 'trace'})[:300]}", flush=True)
    dev = torch.cuda.get_device_name() if gpu else f"CPU ({os.cpu_count()} cores), tiny sizes — proves the suite runs"
    cmd = "bash benchmarks/gpu_suite.sh " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# GPU suite ({mode})", "", f"Command: `{cmd.strip()}`  ", f"Device: {dev}; torch {torch.__version__}; "
             f"{time.strftime('%Y-%m-%d %H:%M')}; total {time.perf_counter() - t_all:.0f} s; load average "
             f"{os.getloadavg()[0]:.1f}.", "", "| section | result | goal (one H100/H200) | setting |", "|---|---|---|---|"]
    goals = {"train step, eager": "≤ 100 ms", "train step, torch.compile": "≤ 100 ms", "I3D windows/s": "≥ 2,000",
             "train step, official, one graph": "–", "train step, official, gradient cache": "–",
             "pose backend on GPU": "–", "app, 5-s clip end to end": "≤ 0.5 s", "index query": "≤ 20 ms"}
    for name, r in res.items():
        if "error" in r:
            val = f"FAILED: {r['error'][:200]}"
        elif "skipped" in r:
            val = f"skipped: {r['skipped']}"
        elif "ms_per_step" in r:
            val = (f"{r['ms_per_step']:.0f} ms, one step with its warm-up" if "timed" in r else
                   f"{r['ms_per_step']:.0f} ms/step (first step {r['first_step_s']:.1f} s)") + \
                (f", peak {r['peak_gib']:.1f} GiB" if "peak_gib" in r else "")
        elif "windows_per_s" in r:
            val = f"{r['windows_per_s']:.1f} windows/s"
        elif "seconds" in r:
            val = f"{r['seconds']:.2f} s"
        else:
            val = r["summary"]
        lines.append(f"| {name} | {val} | {goals[name]} | {r.get('setting', '')} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"mode": mode, "command": cmd, "sections": res}, indent=1))
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
