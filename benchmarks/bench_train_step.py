"""One training step on CPU, A/B: glibc's default large-block handling vs
``seds.cpu_runtime.keep_freed_memory`` (and 1 vs 2 torch threads).

    python benchmarks/bench_train_step.py                      # configs/synthetic_cpu.yaml, batch 64
    python benchmarks/bench_train_step.py --config configs/quickstart_cpu.yaml --batch-size 32

Each variant runs in a fresh process (allocator settings cannot be undone in-process: a heap grown under
one setting keeps serving the other), the processes interleaved ``--repeats`` times; each steps the same
batch (the first ``--batch-size`` training videos) once to warm up and twice timed. The table gives medians of wall, user and system CPU seconds and minor page faults per step, with the
load average before and after (the machine may be shared: compare variants, not absolute numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seds.config import load_config  # noqa: E402
from seds.cpu_runtime import keep_freed_memory  # noqa: E402
from seds.losses import SEDSLoss  # noqa: E402
from seds.variants import variant_of  # noqa: E402
from seds.model import create_model  # noqa: E402
from seds.train import prepare_data  # noqa: E402

VARIANTS = {  # name: (keep freed memory, torch threads)
    "glibc default, 2 threads": (False, 2),
    "keep_freed_memory, 2 threads": (True, 2),
    "keep_freed_memory, 1 thread": (True, 1),
}


def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime, r.ru_stime, r.ru_minflt


def worker(cfg, name: str, batch_size: int) -> dict:
    keep, threads = VARIANTS[name]
    keep_freed_memory(keep)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg.data.preload = False
    train_ds, _ = prepare_data(cfg)
    batch = variant_of(cfg).collate([train_ds[i] for i in range(batch_size)])
    model, crit = create_model(cfg.model), SEDSLoss(cfg.loss, tau=cfg.model.tau, opts=cfg.model.options)
    opt = torch.optim.Adam(list(model.parameters()) + list(crit.parameters()), lr=1e-5)

    def step():
        terms = crit(model.encode_batch_video(batch), model.encode_text(batch["text"]))
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()

    step()                                   # warm-up: first touch of weights and optimizer state
    a = usage()
    step()
    step()
    b = usage()
    return {"name": name, "per_step": [(y - x) / 2 for x, y in zip(a, b)],
            "shape": list(batch["keypoints"].shape), "windows": int(batch["rgb"].shape[1])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/synthetic_cpu.yaml")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/train_step_cpu")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.worker:
        print("RESULT " + json.dumps(worker(cfg, args.worker, args.batch_size)), flush=True)
        return
    prepare_data(cfg)                        # generate synthetic data once, before the workers
    load0 = os.getloadavg()
    rows = {name: [] for name in VARIANTS}
    info = {}
    base = [sys.executable, str(Path(__file__).resolve()), "--config", args.config, "--batch-size",
            str(args.batch_size), *args.overrides]
    for r in range(args.repeats):
        for name in VARIANTS:
            out = subprocess.run(base + ["--worker", name], capture_output=True, text=True, check=True).stdout
            info = json.loads(out.split("RESULT ", 1)[1])
            rows[name].append(info["per_step"])
            w, u, sy, f = info["per_step"]
            print(f"repeat {r} {name}: wall {w:.1f}s user {u:.1f}s sys {sy:.1f}s faults {f:.0f}", flush=True)
    load1 = os.getloadavg()
    med = {n: [statistics.median(v[i] for v in vals) for i in range(4)] for n, vals in rows.items()}
    cmd = "python benchmarks/bench_train_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# One CPU training step: allocator and threads (synthetic data)", "",
             f"Command: `{cmd.strip()}`  ",
             f"Config `{args.config}` {' '.join(args.overrides)}, batch {args.batch_size} (keypoints "
             f"{tuple(info['shape'])}, {info['windows']} windows), forward + backward + Adam, per step; medians of "
             f"{args.repeats} interleaved fresh processes per variant; {os.cpu_count()} CPUs, load average "
             f"{load0[0]:.1f} before / {load1[0]:.1f} after (a shared machine: compare rows, not absolute seconds).",
             "", "| variant | wall s | user CPU s | system CPU s | minor page faults |", "|---|---:|---:|---:|---:|"]
    for n, (w, u, sy, f) in med.items():
        lines.append(f"| {n} | {w:.1f} | {u:.1f} | {sy:.1f} | {f / 1e6:.2f} M |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": cmd, "load": [load0, load1], "runs": rows,
                                                    "median": med}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
