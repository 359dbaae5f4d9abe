"""Synthetic signing benchmark: does the learning machinery learn? (issue: training and evaluation)

    python benchmarks/bench_synthetic.py                        # 3 seeds, the defaults below
    python benchmarks/bench_synthetic.py --seeds 1 --epochs 4   # quicker

Trains four variants of the CPU preset on the deterministic synthetic signing data
(``seds/data/synthetic.py``) — pose-only, RGB-only, fused with CGAF, fused with add-mlp — selects each
checkpoint on the validation split, evaluates it on the test split (unseen signers, unseen word
combinations), and writes ``benchmarks/results/synthetic.md`` / ``.json`` (mean ± std over seeds).
These are synthetic-data numbers with the synthetic proxy RGB encoder, not I3D: they show that the
code learns and how the streams behave on data whose structure we control — nothing about How2Sign.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from seds.checkpoint import load_checkpoint  # noqa: E402
from seds.config import load_config  # noqa: E402
from seds.evaluate import build_dataset, evaluate_model  # noqa: E402
from seds.train import train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "fused, CGAF": ["model.fusion.kind=cgaf"],
    "pose only": ["model.streams=[pose]"],
    "RGB only (proxy)": ["model.streams=[rgb]"],
    "fused, add-mlp": ["model.fusion.kind=add-mlp"],
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--config", default="configs/ablation_cpu.yaml",
                    help="base config (default: the 2-core CPU scale shared with seds.ablate)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--work", default="runs/bench-synthetic")
    ap.add_argument("--variants", default="|".join(VARIANTS), help="|-separated names")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    work = Path(args.work)
    base = [f"train.epochs={args.epochs}", f"train.batch_size={args.batch}", "train.log_every=50"]
    store = Path(load_config(args.config, base + args.overrides).data.store)
    results: dict[str, list[dict]] = {}
    t_start = time.time()
    for seed in range(args.seeds):          # seed-major: every variant has a number early
        for name in args.variants.split("|"):
            out = work / f"{name.replace(' ', '_').replace(',', '').replace('(', '').replace(')', '')}-s{seed}"
            cfg = load_config(args.config,
                              base + VARIANTS[name] + [f"train.seed={seed}", f"train.out={out}"] + args.overrides)
            t0 = time.time()
            state = out / "last" / "train_state.pt"
            done = state.exists() and (out / "best").exists() and \
                torch.load(state, map_location="cpu", weights_only=True)["epoch"] >= cfg.train.epochs
            if not done:                      # a finished run is evaluated again, not retrained
                train(cfg, progress=False)
            model, _, cfg_best, info = load_checkpoint(out / "best")
            test = build_dataset(cfg_best, cfg_best.data.test_split)
            res = evaluate_model(model, test, cfg_best.model.tau)
            stream = "fused" if "fused" in res else next(iter(res))
            rec = {"seed": seed, "stream": stream, "best_epoch": info.get("epoch"),
                   "train_minutes": round((time.time() - t0) / 60, 2), **{d: res[stream][d] for d in ("t2v", "v2t")},
                   "all_streams": res}
            results.setdefault(name, []).append(rec)
            print(f"{name} seed {seed}: T2V R@1 {rec['t2v']['R@1']:.1f}  V2T R@1 {rec['v2t']['R@1']:.1f} "
                  f"(best epoch {rec['best_epoch']}, {rec['train_minutes']} min)", flush=True)
            write(results, args, store, time.time() - t_start)


def _ms(vals):
    m = statistics.mean(vals)
    s = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{m:.1f} ± {s:.1f}"


def write(results, args, store, seconds):
    RESULTS.mkdir(exist_ok=True)
    syn = json.loads((store / "synthetic_info.json").read_text())["config"]   # what the store really holds
    n = syn["n_sentences"]
    cmd = "python benchmarks/bench_synthetic.py " + " ".join(sys.argv[1:])
    lines = ["# Synthetic signing benchmark (synthetic data, proxy-RGB — not How2Sign)", "",
             f"Command: `{cmd.strip()}`  ", f"Data: synthetic signing, {n[0]}/{n[1]}/{n[2]} train/val/test "
             f"sentences of {syn['min_words']}–{syn['max_words']} words, {syn['vocab_size']}-sign vocabulary, "
             f"{syn['fps']:g} fps (test signers and word combinations unseen in training); "
             f"config `{args.config}` (model preset there); {args.epochs} epochs, "
             f"batch {args.batch}; checkpoint chosen on val R-sum; test split reported; "
             f"chance R@1 = {100 / n[2]:.1f} %.  ",
             f"Seeds: {max(len(v) for v in results.values())}, mean ± std (± 0 with one seed). Training time "
             f"per run is in synthetic.json (a 2-core CPU shared with other jobs).", "",
             "| model | T2V R@1 | T2V R@5 | T2V R@10 | T2V MedR | V2T R@1 | V2T R@5 | V2T R@10 | V2T MedR |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, recs in results.items():
        cells = [_ms([r[d][m] for r in recs]) for d in ("t2v", "v2t") for m in ("R@1", "R@5", "R@10", "MedR")]
        lines.append(f"| {name} ({len(recs)} seeds) | " + " | ".join(cells) + " |")
    (RESULTS / "synthetic.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "synthetic.json").write_text(json.dumps({"command": cmd, "results": results}, indent=1))


if __name__ == "__main__":
    main()
