"""Cost of the gradient cache (``train.global_batch`` + ``train.chunk``, seds/grad_cache.py): peak memory and time
of one training step, plain (the whole global batch in one graph) vs gradient cache (chunks), same global batch.

    python benchmarks/bench_grad_cache.py --sizes tiny --batch 32 --chunk 4     # CPU (the committed table)
    python benchmarks/bench_grad_cache.py --device cuda --sizes official --batch 128 --chunk 16

``official-small`` (the authors' variant with 1-layer token towers; per-frame SignBERT encoder and the full CLIP
text tower) takes minutes per step and > 5 GiB on a 2-core CPU: measure it on a GPU (``benchmarks/gpu_suite.sh``
runs ``official-tiny`` in --cpu-tiny mode only to prove the entry works).

Every (size, mode) runs in a fresh process; the figure is the peak (CPU: resident set, VmHWM reset before the first
step; CUDA: max allocated) above what is held before the first step (model, optimizer state, gradients' absence,
batch) — activations, gradients and the gradient cache's features.
Writes benchmarks/results/grad_cache.md and .json (``--out`` chooses the stem).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seds.config import model_config  # noqa: E402
from seds.cpu_runtime import keep_freed_memory  # noqa: E402
from seds.grad_cache import GradientCache  # noqa: E402
from seds.losses import SEDSLoss  # noqa: E402
from seds.model import create_model  # noqa: E402

SMALL_TOWERS = [f"{t}_transformer.{k}={v}" for t in ("pose", "rgb") for k, v in (("width", 64), ("layers", 1),
                                                                                   ("heads", 2))]
SIZES = {   # model preset, overrides, clips T, words
    "tiny": ("tiny", [], 8, 8),
    "official-small": ("official", SMALL_TOWERS, 16, 32),     # the authors' variant with 1-layer token towers
    "official-tiny": ("official", SMALL_TOWERS, 4, 8),        # the same, 4 clips and 8 words (CI)
    "official": ("official", [], 64, 32),
}
VOCAB = "the a sign weather tomorrow rain north south wind cold warm sun cloud snow".split()


def synthetic_batch(cfg, b: int, t: int, words: int, device, seed: int = 0) -> dict:
    """A random batch in the variant's layout (seds.model.seds): t valid clips of 16 frames per video."""
    g = torch.Generator().manual_seed(seed)
    f = t * cfg.window
    texts = [" ".join(VOCAB[(i + j) % len(VOCAB)] for j in range(words)) for i in range(b)]
    if cfg.variant == "official":
        slots = cfg.max_clips
        starts = torch.full((b, slots), -1, dtype=torch.long)
        starts[:, :t] = torch.arange(t) * cfg.window
        rgb = torch.zeros(b, slots, cfg.rgb_dim)
        rgb[:, :t] = torch.randn(b, t, cfg.rgb_dim, generator=g)
        out = {"left": 128 + 40 * torch.randn(b, f, 21, 2, generator=g),
               "right": 128 + 40 * torch.randn(b, f, 21, 2, generator=g),
               "body": 128 + 40 * torch.randn(b, f, 7, 2, generator=g),
               "clip_starts": starts, "clip_mask": starts >= 0, "rgb": rgb}
    else:
        from seds.keypoints import KeypointLayout   # the paper variant's keypoint count
        kp = torch.randn(b, f, KeypointLayout().num_points, 3, generator=g)
        kp[..., 2] = 1.0
        out = {"keypoints": kp, "frame_mask": torch.ones(b, f, dtype=torch.bool),
               "clip_starts": (torch.arange(t) * cfg.window)[None].repeat(b, 1),
               "clip_mask": torch.ones(b, t, dtype=torch.bool), "rgb": torch.randn(b, t, cfg.rgb_dim, generator=g)}
    out = {k: v.to(device) for k, v in out.items()}
    out["text"] = texts
    return out


def split(batch: dict, n: int) -> list[dict]:
    """Chunk c = rows c, c + n, ... (as seds.train.split_chunks gives rank c's share)."""
    return [{k: (v[c::n] if torch.is_tensor(v) else v[c::n]) for k, v in batch.items()} for c in range(n)]


def make_step(size: str, device: torch.device, batch_size: int, chunk: int, amp: bool):
    """One optimizer step of ``size`` at global batch ``batch_size``: plain (chunk 0) or gradient cache."""
    preset, over, t, words = SIZES[size]
    cfg = model_config(preset, over)
    torch.manual_seed(0)
    model = create_model(cfg).to(device).train()
    crit = SEDSLoss(tau=cfg.tau, opts=cfg.options).to(device)
    params = list(model.parameters()) + list(crit.parameters())
    opt = torch.optim.Adam(params, lr=1e-5)
    for p in params:        # the optimizer's state exists before any measurement (a zero gradient moves nothing)
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)
    batch = synthetic_batch(cfg, batch_size, t, words, device)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)     # noqa: E731
    encode = lambda b: (model.encode_batch_video(b), model.encode_text(b["text"]))          # noqa: E731
    gc = GradientCache(encode, crit, model, batch_size // chunk, 0, device, autocast) if chunk else None
    parts = split(batch, batch_size // chunk) if chunk else None

    def step():
        if gc is not None:
            gc.forward(parts)
            opt.zero_grad(set_to_none=True)
            gc.backward()
        else:
            with autocast():
                loss = crit(*encode(batch))["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
    setting = f"{size}: global batch {batch_size}" + (f" in chunks of {chunk}" if chunk else " in one graph") + \
        f", T = {t}, {words} words, " + ("bf16 autocast" if amp else "fp32")
    return step, setting


def rss_mib(field: str = "VmRSS") -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak since the last :func:`reset_peak`) from /proc, in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:       # Linux ≥ 4.0: VmHWM restarts from the current RSS
        f.write("5")


def measure(size: str, device: torch.device, batch_size: int, chunk: int, amp: bool, steps: int) -> dict:
    """ms/step (median) and the step's peak memory above what is held before it (MiB)."""
    if device.type == "cpu":
        keep_freed_memory()
    step, setting = make_step(size, device, batch_size, chunk, amp)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated() / 2**20
    else:
        reset_peak()
        held = rss_mib()
    step()                                   # warm-up (inside the peak: freed blocks stay mapped for reuse)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mib("VmHWM")
    return {"ms_per_step": 1000 * statistics.median(times), "step_peak_mib": peak - held, "held_mib": held,
            "setting": setting}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="tiny")
    ap.add_argument("--batch", type=int, default=32, help="global batch")
    ap.add_argument("--chunk", type=int, default=4, help="gradient cache chunk (per-GPU batch it reproduces)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one", nargs=2, metavar=("SIZE", "CHUNK"), help=argparse.SUPPRESS)   # child process
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "grad_cache"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    if args.one:
        print(json.dumps(measure(args.one[0], device, args.batch, int(args.one[1]), amp, args.steps)))
        return 0
    rows = []
    for size in args.sizes.split(","):
        for chunk in (0, args.chunk):
            cmd = [sys.executable, __file__, "--device", args.device, "--batch", str(args.batch), "--chunk",
                   str(args.chunk), "--steps", str(args.steps), "--one", size, str(chunk)]
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if p.returncode:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            rows.append({"size": size, "chunk": chunk, **r})
            print(rows[-1], flush=True)
    dev = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"{os.cpu_count()}-core CPU, {torch.get_num_threads()} threads"
    cmd = "python benchmarks/bench_grad_cache.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Gradient cache: memory and time per step", "", f"Command: `{cmd.strip()}`  ",
             f"Device: {dev}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}; load average "
             f"{os.getloadavg()[0]:.1f} (the machine was shared with other jobs: wall times are indicative, the "
             "memory figures are not affected).", "",
             "| size | mode | step peak above held (MiB) | held before the step (MiB) | ms/step | setting |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        mode = f"gradient cache, chunk {r['chunk']}" if r["chunk"] else "plain"
        lines.append(f"| {r['size']} | {mode} | {r['step_peak_mib']:.0f} | {r['held_mib']:.0f} | "
                     f"{r['ms_per_step']:.0f} | {r['setting']} |")
    stem = Path(args.out)
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"command": cmd, "device": dev, "rows": rows}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
