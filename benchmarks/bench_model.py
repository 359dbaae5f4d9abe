"""Forward + backward time and peak memory of SEDS at batch 128 (issue: model core benchmark).

    python benchmarks/bench_model.py                      # CPU: paper-size model, tiny T (T=2 clips)
    python benchmarks/bench_model.py --device cuda        # GPU: bf16 autocast, T=64 clips, 32 words

Writes benchmarks/results/model_<device>.json and appends a markdown line to benchmarks/results/model.md.
The paper-size model is the default (configs/model/paper.yaml); the text encoder is MiniLM-L6.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seds.config import model_config  # noqa: E402
from seds.losses import SEDSLoss  # noqa: E402
from seds.model import SEDS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_batch(B: int, T: int, window: int, words: int, device):
    F = T + window - 1
    g = torch.Generator().manual_seed(0)
    kp = torch.randn(B, F, 49, 3, generator=g)
    kp[..., 2] = 1.0
    batch = {
        "keypoints": kp.to(device),
        "frame_mask": torch.ones(B, F, dtype=torch.bool, device=device),
        "clip_starts": torch.arange(T, device=device)[None].repeat(B, 1),
        "clip_mask": torch.ones(B, T, dtype=torch.bool, device=device),
        "rgb": torch.randn(B, T, 1024, generator=g).to(device),
    }
    vocab = "the a sign weather tomorrow rain north south wind cold warm sun cloud snow".split()
    texts = [" ".join(vocab[(i + j) % len(vocab)] for j in range(words)) for i in range(B)]
    return batch, texts


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--clips", type=int, default=None, help="T (default: 2 on CPU, 64 on GPU)")
    ap.add_argument("--words", type=int, default=None, help="words per sentence (default: 8 CPU, 32 GPU)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--epoch-videos", type=int, default=31019,
                    help="videos per epoch for the seconds/epoch figure (How2Sign train: 31,019)")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    T = args.clips or (64 if gpu else 2)
    W = args.words or (32 if gpu else 8)
    cfg = model_config(args.preset)
    torch.manual_seed(0)
    model = SEDS(cfg).to(dev).train()
    crit = SEDSLoss(tau=cfg.tau).to(dev)
    opt = torch.optim.Adam(list(model.parameters()) + list(crit.parameters()), lr=1e-5)
    batch, texts = synthetic_batch(args.batch, T, cfg.window, W, dev)
    tokens = model.tokenize(texts)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.warmup + args.steps):
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=gpu):
            v = model.encode_video(batch["keypoints"], batch["frame_mask"], batch["clip_starts"],
                                   batch["clip_mask"], batch["rgb"])
            t = model.encode_text(tokens)
            loss = crit(v, t)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if gpu:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
        print(f"step {i}: {dt * 1000:.0f} ms (loss {float(loss):.3f})", flush=True)
    res = {
        "device": torch.cuda.get_device_name(dev) if gpu else f"cpu ({torch.get_num_threads()} threads)",
        "preset": args.preset, "batch": args.batch, "clips_T": T, "frames": T + cfg.window - 1, "words": W,
        "amp": "bf16" if gpu else "fp32", "ms_per_step_mean": 1000 * sum(times) / len(times),
        "ms_per_step_min": 1000 * min(times), "steps": len(times),
        "peak_memory_gb": (torch.cuda.max_memory_allocated(dev) / 2**30) if gpu
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if gpu else "process max RSS",
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "torch": torch.__version__,
    }
    steps = -(-args.epoch_videos // args.batch)
    res["seconds_per_epoch_estimate"] = steps * res["ms_per_step_mean"] / 1000
    res["epoch_estimate_note"] = (f"{steps} steps × mean step time for {args.epoch_videos} videos with features "
                                  "already in memory (synthetic tensors); excludes validation and data loading")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"model_{dev.type}.json").write_text(json.dumps(res, indent=2))
    line = (f"| {res['device']} | {args.preset} | {args.batch} | {T} | {W} | {res['amp']} | "
            f"{res['ms_per_step_mean']:.0f} | {res['peak_memory_gb']:.2f} ({res['peak_memory_kind']}) | "
            f"{res['seconds_per_epoch_estimate']:.0f} |")
    md = RESULTS / "model.md"
    if not md.exists():
        md.write_text("# SEDS forward+backward (+Adam step), `python benchmarks/bench_model.py`\n\n"
                      "| device | preset | batch | T | words | precision | ms/step | peak memory GB | s/epoch (How2Sign-size, est.) |\n"
                      "|---|---|---:|---:|---:|---|---:|---|---:|\n")
    with open(md, "a") as f:
        f.write(line + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
