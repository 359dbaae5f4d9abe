"""``python -m seds.experiments.baselines --name sa-cm|sa-sr|sa-comb|cico|all [--config ...] [--seeds N] [key=value ...]``.

Trains the baseline(s) on the config's feature store (same splits, relevance and metrics as SEDS) for
seeds 0..N-1 and writes a results table (mean ± std on the test split) with the command that produced it:
``<results>/baselines.md|json`` for ``--name all`` (which also trains SEDS itself at the same scale as the
reference row), ``<results>/baselines_<name>.md|json`` otherwise.

Overrides: ``cm.<field>=`` (:class:`~seds.experiments.baselines.common.SACMConfig`), ``sr.<field>=``
(:class:`~seds.experiments.baselines.common.SASRConfig`); everything else goes to the SEDS config
(``data.*``, ``train.*`` and, for CiCo/SEDS, ``model.*``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from seds.config import Config, ConfigError, load_config, to_dict
from seds.experiments.baselines import sa_cm, sa_sr
from seds.experiments.baselines.cico import cico_config
from seds.experiments.baselines.common import BaselineError, baseline_configs, split_overrides
from seds.experiments.baselines.sa_cm import evaluate_sa_comb
from seds.experiments.report import aggregate, command_line, describe_scale, markdown_table, write_report
from seds.experiments.runs import METRICS, RUNS_DIR, SA_METRICS, cached_result, ensure_store, result_key, run_seds

NAMES = ("sa-sr", "sa-cm", "sa-comb", "cico", "all")
LABELS = {"sa-sr": "SA-SR (sign recognition, IoU)", "sa-cm": "SA-CM (cross-modal, NetVLAD text)",
          "sa-comb": "SA-COMB (½ SR + ½ CM)", "cico": "CiCo (RGB stream, fine-grained)",
          "seds": "SEDS (pose + RGB, CGAF)"}


def run_one(name: str, cfg: Config, cm, sr, runs: Path, progress: bool, seds_runs: Path | None = None) -> dict:
    """One baseline for one seed (``cfg.train.seed``), cached under ``runs`` (SEDS-code runs — CiCo and
    SEDS — under ``seds_runs``, by default the ablation cache, so they are shared with the studies)."""
    ensure_store(cfg)
    data = to_dict(cfg.data)
    seed = cfg.train.seed
    if name == "sa-sr":
        out = runs / f"sa-sr-{result_key(to_dict(sr), data, seed, cfg.model.window)}"
        return cached_result(out, lambda: sa_sr.train_sa_sr(cfg, sr, out, progress))
    if name == "sa-cm":
        out = runs / f"sa-cm-{result_key(to_dict(cm), data, seed)}"
        return cached_result(out, lambda: sa_cm.train_sa_cm(cfg, cm, out, progress))
    if name == "sa-comb":
        r_sr = run_one("sa-sr", cfg, cm, sr, runs, progress)
        r_cm = run_one("sa-cm", cfg, cm, sr, runs, progress)
        out = runs / f"sa-comb-{result_key(r_sr['out'], r_cm['out'])}"
        return cached_result(out, lambda: evaluate_sa_comb(cfg, Path(r_cm["out"]) / "best", Path(r_sr["out"]) / "best"))
    if name == "cico":
        return run_seds(cico_config(cfg), seds_runs or RUNS_DIR, progress)
    if name == "seds":
        return run_seds(cfg, seds_runs or RUNS_DIR, progress)
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(NAMES)}")


def train_length(c) -> str:
    """How long a SPOT-ALIGN baseline trains, as the table says it."""
    if c.patience:
        return f"until val stops improving (patience {c.patience} epochs, cap {c.epochs})"
    return f"{c.epochs} epochs"


def split_metrics(name: str, result: dict) -> dict:
    """The test metrics of a result in the form :func:`seds.experiments.ablate.aggregate` reads."""
    t = result["test"]
    if name in ("cico", "seds"):
        return {"test": t, "best_epoch": result["best_epoch"], "epochs_trained": result["epochs_trained"]}
    # SA-SR / SA-CM record their epochs in "history"; SA-COMB trains nothing (None: no epochs column)
    trained = len(result["history"]) if result.get("history") else None
    return {"test": {name: t}, "best_epoch": result.get("best_epoch"), "epochs_trained": trained}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seds.experiments.baselines", description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True, choices=NAMES)
    ap.add_argument("--config", default="configs/ablation_cpu.yaml")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--runs", default="runs/baselines", help="cache of the SPOT-ALIGN runs")
    ap.add_argument("--seds-runs", default="runs/ablations", help="cache of CiCo/SEDS runs (shared with seds.experiments.ablate)")
    ap.add_argument("--stem", default=None, help="output file stem (default baselines / baselines_<name>)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))

    rest, cm_o, sr_o = split_overrides(args.overrides)
    try:
        base = load_config(args.config, rest)
        cm, sr = baseline_configs(cm_o, sr_o)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("error: --seeds must be ≥ 1", file=sys.stderr)
        return 2
    names = ["sa-sr", "sa-cm", "sa-comb", "cico", "seds"] if args.name == "all" else [args.name]
    seeds = list(range(args.seeds))
    rows, records = [], []
    try:
        for name in names:
            results = []
            for s in seeds:
                cfg = load_config(args.config, rest + [f"train.seed={s}"])
                print(f"[baselines] {name} seed {s}", flush=True)
                results.append(run_one(name, cfg, cm, sr, Path(args.runs), args.progress, Path(args.seds_runs)))
            agg = aggregate([split_metrics(name, r) for r in results])
            rows.append((LABELS[name], agg))
            extra = {k: [r[k] for r in results] for k in ("recognition_test", "vocab_size") if k in results[0]}
            records.append({"method": name, "label": LABELS[name], **agg, **extra,
                            "per_seed": [split_metrics(name, r)["test"] for r in results]})
    except (BaselineError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    command = command_line("seds.experiments.baselines", argv, args.config)
    stem = args.stem or ("baselines" if args.name == "all" else f"baselines_{args.name}")
    res_dir = Path(args.results)
    res_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    md = ["# Baselines vs SEDS (SEDS Tab. 1 protocol)" if args.name == "all" else f"# Baseline {args.name}", "",
          f"Command: `{command}`", "", describe_scale(base, seeds), "",
          "Baselines: SA-SR / SA-CM / SA-COMB as in SPOT-ALIGN (Duarte et al. 2022) on the store's RGB window "
          f"features (SR: per-window classifier, threshold {sr.threshold}, IoU similarity, ties broken at random "
          f"with a fixed seed; CM: {cm.video_layers}-layer temporal encoder + NetVLAD({cm.clusters}) over "
          f"{cm.text_model} word embeddings, margin {cm.margin}, RAdam lr {cm.lr:g}, batch {cm.batch_size}, "
          f"{train_length(cm)}; SR: {train_length(sr)}), CiCo = SEDS with the RGB stream only; CiCo and SEDS train with "
          f"the SEDS recipe of the scale paragraph (until val R-sum stops improving: patience {base.train.patience}, cap "
          f"{base.train.epochs} epochs). All selected on validation; test "
          "split reported. Metrics: all video-text pairs, videos of the same sentence relevant, expected-rank "
          "ties (fractional ranks; seds.metrics).", "", table, ""]
    write_report(res_dir, stem, md, {"command": command, "seeds": seeds, "cm": to_dict(cm), "sr": to_dict(sr),
                                     "base_config": to_dict(base),
                                     "metrics": {"seds, cico": METRICS, "sa-sr, sa-cm, sa-comb": SA_METRICS},
                                     "methods": records})
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
