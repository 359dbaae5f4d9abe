"""Synthetic signing benchmark: does the learning machinery learn? (issue: training and evaluation)

    python benchmarks/bench_synthetic.py                  # 3 seeds, 2 runs at a time
    python benchmarks/bench_synthetic.py --seeds 1 --jobs 1

Trains four variants of the CPU ablation scale (``configs/ablation_cpu.yaml``) on the deterministic
synthetic signing data (``seds/synthetic/signing.py``) — pose only, RGB only, fused with CGAF, fused with
add-mlp — selects each checkpoint on the validation split, evaluates it on the test split (unseen
signers, unseen word combinations) and writes ``benchmarks/results/synthetic.md`` / ``.json``
(mean ± sample std over seeds). Runs go through :func:`seds.experiments.runs.run_seds` and its cache
(``runs/ablations``), so a run shared with an ablation study (e.g. the default fused-CGAF model) is
trained once and both tables report the same run.

These are synthetic-data numbers with the synthetic proxy RGB encoder, not I3D: they show that the code
learns and how the streams behave on data whose structure we control — nothing about How2Sign.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seds.experiments.ablate import (RUNS_DIR, Variant, aggregate, ensure_store, primary_stream, run_seds,  # noqa: E402
                         train_missing, variant_config)
from seds.config import load_config  # noqa: E402
from seds.experiments.runs import METRICS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = (
    Variant("pose only", ("model.streams=[pose]",)),
    Variant("RGB only (proxy RGB)", ("model.streams=[rgb]",)),
    Variant("fused, CGAF", ("model.streams=[pose,rgb]", "model.fusion.kind=cgaf")),
    Variant("fused, add-mlp", ("model.streams=[pose,rgb]", "model.fusion.kind=add-mlp")),
)
COLS = [(d, m) for d in ("t2v", "v2t") for m in ("R@1", "R@5", "R@10", "MedR")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (1 thread each)")
    ap.add_argument("--config", default="configs/ablation_cpu.yaml")
    ap.add_argument("--runs", default=str(RUNS_DIR))
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    base = load_config(args.config, args.overrides)
    runs_dir, seeds = Path(args.runs), list(range(args.seeds))
    ensure_store(base)
    cfgs = {(v.name, s): variant_config(base, v, s) for v in VARIANTS for s in seeds}
    train_missing(list(cfgs.values()), runs_dir, args.jobs, 1)
    rows = []
    for v in VARIANTS:
        runs = [run_seds(cfgs[v.name, s], runs_dir) for s in seeds]
        rows.append({"variant": v.name, "overrides": list(v.overrides), "stream": primary_stream(runs[0]),
                     "runs": [r["key"] for r in runs], "train_seconds": [r["train_seconds"] for r in runs],
                     "best_epochs": [r["best_epoch"] for r in runs],
                     "per_seed_test": [r["test"] for r in runs], **aggregate(runs)})
    write(rows, base, seeds, args, Path(args.results))
    return 0


def write(rows: list[dict], base, seeds: list[int], args, results: Path) -> None:
    syn = json.loads((Path(base.data.store) / "synthetic_info.json").read_text())["config"]
    n = syn["n_sentences"]
    cmd = "python benchmarks/bench_synthetic.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = ["# Synthetic signing benchmark (synthetic data, proxy-RGB — not How2Sign)", "",
             f"Command: `{cmd.strip()}`  ",
             f"Data: synthetic signing, {n[0]}/{n[1]}/{n[2]} train/val/test sentences of {syn['min_words']}–"
             f"{syn['max_words']} words, {syn['vocab_size']}-sign vocabulary, {syn['fps']:g} fps; val/test "
             "signers and subject–verb combinations unseen in training. RGB = the synthetic proxy encoder "
             f"(not I3D); T = {base.model.max_clips} windows of {base.model.window} frames per video.  ",
             f"Model/training: `{args.config}` (until val R-sum stops improving: patience {base.train.patience}, "
             f"cap {base.train.epochs} epochs; batch {base.train.batch_size}, one CPU thread per run); "
             "checkpoint chosen on val R-sum; test split "
             f"reported; chance R@1 = {100 / n[2]:.1f} %. Metrics: sentence_ids protocol (the authors' eval_epoch), expected-rank ties "
             "(fractional ranks; seds.metrics).  ",
             f"Seeds {seeds}: mean ± sample std. Runs are shared with `python -m seds.experiments.ablate` "
             "(benchmarks/results/ablations/), keys in synthetic.json.", "",
             "| model | " + " | ".join(f"{d.upper()} {m}" for d, m in COLS) + " |",
             "|---|" + "---:|" * len(COLS)]
    for r in rows:
        cells = [f"{r['mean'][f'{d}_{m}']:.1f} ± {r['std'][f'{d}_{m}']:.1f}" for d, m in COLS]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    times = ", ".join(f"{r['variant']} {sorted(r['train_seconds'])[len(seeds) // 2] / 60:.1f}" for r in rows)
    lines += ["", f"Training minutes per run (median over seeds; one thread per run, two runs at a time on a 2-core "
              f"CPU that other jobs shared, so only a rough guide): {times}."]
    results.mkdir(parents=True, exist_ok=True)
    (results / "synthetic.md").write_text("\n".join(lines) + "\n")
    (results / "synthetic.json").write_text(json.dumps({"command": cmd, "seeds": seeds, "config": args.config,
                                                        "synthetic": syn, "metrics": METRICS, "variants": rows},
                                                       indent=1))


if __name__ == "__main__":
    sys.exit(main())
