"""The experiments' one report writer: per-seed results → mean ± std (:func:`aggregate`), markdown tables
(:func:`markdown_table`), paired comparisons between variants trained on the same seeds
(:func:`paired_interval`, :func:`verdict`, :func:`comparison_table`), the scale paragraph every table
carries (:func:`describe_scale`) and the command that reproduces it (:func:`command_line`);
:func:`write_report` writes ``<name>.md`` + ``<name>.json``.

Statistics. Variants of a study share seeds (seed s fixes initialisation and batch order of every
variant) and data, so two variants are compared per seed: d_s = R-sum(A, s) − R-sum(B, s), and the
95 % interval is the **paired t interval** mean(d) ± t_{0.975, n−1} · sd(d) / √n (sample sd, ddof 1).
Where the interval covers 0 the table says "no significant difference"; with one seed there is no
interval.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import math

import numpy as np
from scipy.special import stdtrit    # Student t quantile, = scipy.stats.t.ppf bit for bit (scipy.stats: ~1 s import)

from seds.config import Config

METRIC_COLS = [("t2v", "R@1"), ("t2v", "R@5"), ("t2v", "R@10"), ("t2v", "MedR"),
               ("v2t", "R@1"), ("v2t", "R@5"), ("v2t", "R@10"), ("v2t", "MedR")]


def primary_stream(result: dict) -> str:
    """The stream a variant is judged by: fused when both streams exist, else the single stream."""
    t = result["test"]
    return "fused" if "fused" in t else next(iter(t))


def aggregate(results: list[dict], split: str = "test") -> dict:
    """mean and sample std (ddof=1; 0 for one seed) over seeds of every metric of the primary stream."""
    out: dict = {"mean": {}, "std": {}, "n": len(results)}
    for d in ("t2v", "v2t"):
        for m in ("R@1", "R@5", "R@10", "MedR", "MeanR"):
            vals = np.array([r[split][primary_stream(r)][d][m] for r in results], dtype=float)
            out["mean"][f"{d}_{m}"] = float(vals.mean())
            out["std"][f"{d}_{m}"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    out["mean"]["rsum"] = sum(out["mean"][f"{d}_R@{k}"] for d in ("t2v", "v2t") for k in (1, 5, 10))
    rs = np.array(rsum_per_seed(results, split), dtype=float)
    out["std"]["rsum"] = float(rs.std(ddof=1)) if len(rs) > 1 else 0.0
    for k in ("best_epoch", "epochs_trained"):       # convergence: epochs to the val-selected checkpoint
        vals = [r.get(k) for r in results]
        if all(v is not None for v in vals):
            v = np.array(vals, dtype=float)
            out["mean"][k] = float(v.mean())
            out["std"][k] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out


def metrics_rsum(m: dict) -> float:
    """R-sum of one result's metrics of one stream: R@1 + R@5 + R@10, T2V and V2T."""
    return float(sum(m[d][f"R@{k}"] for d in ("t2v", "v2t") for k in (1, 5, 10)))


def rsum_per_seed(results: list[dict], split: str = "test") -> list[float]:
    """R-sum of the primary stream of every run (in the given seed order)."""
    return [metrics_rsum(r[split][primary_stream(r)]) for r in results]


def paired_interval(a, b, conf: float = 0.95) -> dict:
    """Paired t interval of mean(a − b) over seeds (``a[i]``, ``b[i]``: the same seed).

    → ``{"diff", "low", "high", "n", "method"}``; ``low``/``high`` are NaN for fewer than 2 seeds."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired comparison needs two equal-length, non-empty series, got {a.shape} and {b.shape}")
    d = a - b
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return {"diff": mean, "low": math.nan, "high": math.nan, "n": n, "method": "paired t"}
    half = float(stdtrit(n - 1, 0.5 + conf / 2) * d.std(ddof=1) / math.sqrt(n))
    return {"diff": mean, "low": mean - half, "high": mean + half, "n": n, "method": "paired t"}


def verdict(ci: dict) -> str:
    """The claim "A ≥ B" (``ci`` of A − B): holds / does not hold / no significant difference."""
    if not (ci["low"] == ci["low"]):           # NaN: a single seed
        return "one seed: no interval"
    if ci["low"] > 0:
        return "holds"
    if ci["high"] < 0:
        return "does not hold"
    return "no significant difference"


def format_interval(ci: dict) -> str:
    if not (ci["low"] == ci["low"]):
        return f"{ci['diff']:+.1f}"
    return f"{ci['diff']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]"


def comparison_table(reference: str, rows: list[tuple[str, list[float]]]) -> str:
    """Markdown: every variant against ``reference`` (one of ``rows``: (name, per-seed test R-sums))."""
    ref = dict(rows)[reference]
    lines = [f"Paired comparison with **{reference}** (same seeds and data; test R-sum difference, "
             "95 % paired t interval over seeds):", "",
             f"| Variant | Δ R-sum vs {reference} [95 % CI] | verdict for \"{reference} ≥ variant\" |",
             "|---|---:|---|"]
    for name, vals in rows:
        if name == reference:
            continue
        ci = paired_interval(ref, vals)
        lines.append(f"| {name} | {format_interval({**ci, 'diff': -ci['diff'], 'low': -ci['high'], 'high': -ci['low']})} "
                     f"| {verdict(ci)} |")
    return "\n".join(lines)


def _pm(mean: float, std: float, n: int) -> str:
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def markdown_table(rows: list[tuple[str, dict]]) -> str:
    """rows: (name, :func:`aggregate` output) → markdown table of T2V/V2T R@1/5/10, MedR."""
    head = ["Variant"] + [f"{d.upper()} {m}" for d, m in METRIC_COLS] + ["R-sum", "epochs to best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, agg in rows:
        cells = [_pm(agg["mean"][f"{d}_{m}"], agg["std"][f"{d}_{m}"], agg["n"]) for d, m in METRIC_COLS]
        cells.append(_pm(agg["mean"]["rsum"], agg["std"].get("rsum", 0.0), agg["n"]))
        ep = "–"
        if "best_epoch" in agg["mean"]:
            ep = _pm(agg["mean"]["best_epoch"], agg["std"]["best_epoch"], agg["n"])
            if "epochs_trained" in agg["mean"]:
                ep += f" (of {agg['mean']['epochs_trained']:.0f})"
        lines.append("| " + " | ".join([name] + cells + [ep]) + " |")
    return "\n".join(lines)


def _schedule(t) -> str:
    if t.patience:
        return (f"until val R-sum stops improving (early stopping: patience {t.patience} validations, "
                f"min gain {t.min_delta:g}; cap {t.epochs} epochs, cosine schedule over the cap)")
    return f"{t.epochs} epochs (fixed)"


def describe_scale(cfg: Config, seeds: list[int]) -> str:
    """One paragraph stating data, model size, schedule and seeds (every table carries it)."""
    m, t = cfg.model, cfg.train
    if cfg.data.dataset == "synthetic":
        syn = cfg.data.synthetic or {}
        data = (f"synthetic signing benchmark (seds.synthetic.signing; {cfg.data.rgb_features} RGB features — "
                f"\"synthetic, proxy-RGB\", not I3D; keypoints {cfg.data.pose_backend}); generator settings "
                f"{json.dumps(syn, sort_keys=True)} (train/val/test sentences; unseen signers and unseen "
                "subject-verb combinations in val/test)")
    else:
        data = f"dataset {cfg.data.dataset} from store {cfg.data.store}"
    return (f"**Scale.** Data: {data}. Model: D={m.dim}, pose ST-GCN widths {list(m.pose.widths)}, "
            f"interaction transformers {m.pose_transformer.layers}×{m.pose_transformer.width} (pose) / "
            f"{m.rgb_transformer.layers}×{m.rgb_transformer.width} (RGB), text {m.text.model} "
            f"({m.text.hash_layers}×{m.text.hash_width} if hashed), fusion {m.fusion.kind} × {m.fusion.layers}, "
            f"T = {m.max_clips} windows of {m.window} frames. "
            f"Training: {_schedule(t)}, batch {t.batch_size}, lr {t.lr_pose:g} (modules trained from scratch) / "
            f"{t.lr_transformer:g} (pretrained-initialised modules), α={cfg.loss.alpha:g}, β={cfg.loss.beta:g} unless varied. "
            f"Checkpoint chosen on val R-sum, test split reported; seeds {seeds} "
            f"({'mean ± sample std' if len(seeds) > 1 else 'one seed'}). CPU-scale proxy of the paper's setting: "
            "compare rows with each other, not with the paper's numbers.")


def command_line(module: str, argv, config: str) -> str:
    """The command that reproduces a table: ``python -m <module> <args>`` with ``--config`` spelled out."""
    argl = list(argv if argv is not None else sys.argv[1:])
    if "--config" not in argl:
        argl += ["--config", config]
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in argl)


def write_report(results_dir: str | Path, stem: str, md: list[str], doc: dict) -> Path:
    """``<results_dir>/<stem>.md`` (the lines ``md``) and ``<stem>.json`` (``doc``); returns the .md path."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.md").write_text("\n".join(md))
    (results_dir / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    return results_dir / f"{stem}.md"
