"""The experiments' one report writer: per-seed results → mean ± std (:func:`aggregate`), markdown tables
(:func:`markdown_table`), the scale paragraph every table carries (:func:`describe_scale`) and the
command that reproduces it (:func:`command_line`); :func:`write_report` writes ``<name>.md`` + ``<name>.json``.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np

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
    return out


def _pm(mean: float, std: float, n: int) -> str:
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def markdown_table(rows: list[tuple[str, dict]]) -> str:
    """rows: (name, :func:`aggregate` output) → markdown table of T2V/V2T R@1/5/10, MedR."""
    head = ["Variant"] + [f"{d.upper()} {m}" for d, m in METRIC_COLS] + ["R-sum"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, agg in rows:
        cells = [_pm(agg["mean"][f"{d}_{m}"], agg["std"][f"{d}_{m}"], agg["n"]) for d, m in METRIC_COLS]
        lines.append("| " + " | ".join([name] + cells + [f"{agg['mean']['rsum']:.1f}"]) + " |")
    return "\n".join(lines)


def describe_scale(cfg: Config, seeds: list[int]) -> str:
    """One paragraph stating data, model size, schedule and seeds (every table carries it)."""
    m, t = cfg.model, cfg.train
    if cfg.data.dataset == "synthetic":
        syn = cfg.data.synthetic or {}
        data = (f"synthetic signing benchmark (seds.data.synthetic; {cfg.data.rgb_features} RGB features — "
                f"\"synthetic, proxy-RGB\", not I3D; keypoints {cfg.data.pose_backend}); generator settings "
                f"{json.dumps(syn, sort_keys=True)} (train/val/test sentences; unseen signers and unseen "
                "subject-verb combinations in val/test)")
    else:
        data = f"dataset {cfg.data.dataset} from store {cfg.data.store}"
    return (f"**Scale.** Data: {data}. Model: D={m.dim}, pose ST-GCN widths {list(m.pose.widths)}, "
            f"interaction transformers {m.pose_transformer.layers}×{m.pose_transformer.width} (pose) / "
            f"{m.rgb_transformer.layers}×{m.rgb_transformer.width} (RGB), text {m.text.model} "
            f"({m.text.hash_layers}×{m.text.hash_width} if hashed), fusion {m.fusion.kind} × {m.fusion.layers}. "
            f"Training: {t.epochs} epochs, batch {t.batch_size}, lr {t.lr_pose:g} (pose/fusion) / "
            f"{t.lr_transformer:g} (transformers/text), α={cfg.loss.alpha:g}, β={cfg.loss.beta:g} unless varied. "
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
