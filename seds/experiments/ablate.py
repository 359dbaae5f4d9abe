"""Ablation studies of SEDS, one command each: ``python -m seds.experiments.ablate --study <name> [--seeds N] [key=value ...]``.

Studies (paper table in brackets):

* ``fusion``       [Tab. 5]         fusion module: cgaf, add-mlp, concat-mlp, concat-transformer, cross-attention
* ``alignment``    [Tab. 6]         Pose-RGB alignment L_p-r on (β = 0.4) / off (β = 0)
* ``streams``      [Tab. 4]         pose only, RGB only, pose + RGB
* ``keypoints``    [supp. Tab. 4]   hand, hand+body, +face, +mouth, +face+mouth
* ``cgaf-layers``  [supp. Tab. 5]   0–4 cross gloss attention layers
* ``batch-size``   [supp. Tab. 6]   16, 32, 64, 128 at fixed epochs
* ``batch-size-steps`` [supp. Tab. 6] the same with epochs scaled by batch / base batch: equal optimisation steps
* ``hand-init``    [supp. Tab. 3]   hand ST-GCN from scratch vs. pretrained (``seds.experiments.pretrain_hands``)
* ``alpha``/``beta`` [Fig. 5]       loss weights α and β (line plots)

Every variant is trained with :func:`seds.train.train` for each seed until the validation R-sum stops
improving (early stopping, ``train.patience`` of the base config, ``train.epochs`` as the cap), the
checkpoint is chosen on the validation split, and the test split is reported as mean ± std over seeds
(5 seeds by default for the headline studies fusion, streams and alignment, 3 for the others) with the
epochs to the best checkpoint, and every variant is compared with the study's reference variant per
seed (95 % paired t interval, :mod:`seds.experiments.report`; "no significant difference" where it
covers 0). ``python -m seds.experiments.claims`` turns the headline tables into the paper-claims table. Runs are cached by a hash
of their full config under ``--runs`` (default ``runs/ablations``): variants shared between studies
(the default model appears in almost all of them) are trained once, and an interrupted study resumes
where it stopped. Each study writes ``<results>/<study>.md`` and ``<results>/<study>.json`` (and
``<study>.png`` for α/β), headed by the exact scale, seeds and the command that produced them.

"hand only" cannot be expressed by the model config (the pose encoder always has a body ST-GCN), so
that variant reads a derived feature store whose body keypoints are removed (confidence 0): the body
ST-GCN then sees no input and contributes a constant.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

from seds.config import Config, ConfigError, deep_merge, from_dict, load_config, parse_overrides, to_dict
from seds.data.features import STORE_LAYOUT
from seds.data.store import FeatureStore, load_features, save_features
from seds.experiments.report import (aggregate, command_line, comparison_table, describe_scale,  # noqa: F401
                                     markdown_table, primary_stream, rsum_per_seed, write_report)
from seds.experiments.runs import CACHE_VERSION, RUNS_DIR, ensure_store, find_cached, run_key, run_seds  # noqa: F401
from seds.train import TrainingError

DEFAULT_CONFIG = "configs/ablation_cpu.yaml"
RESULTS_DIR = Path("benchmarks/results/ablations")
class AblationError(ValueError):
    """Unknown study/variant or a run that cannot be done; the message says which."""


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...] = ()
    drop_parts: tuple[str, ...] = ()     # keypoint parts removed from the store (e.g. "body")
    value: float | None = None           # x position in sweep plots
    match_steps: bool = False            # scale epochs, warm-up, eval interval by batch / base batch


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    paper: str
    variants: tuple[Variant, ...]
    plot_x: str | None = None            # α / β sweeps: x-axis label of the line plot
    note: str = ""
    reference: str | None = None         # the paper's/default variant every other one is compared with
    seeds: int = 3                       # default number of seeds (5 for the headline studies)


def _cgaf_keys(n: int) -> str:
    return "[" + ",".join(["5"] + ["3"] * max(0, n - 1)) + "]"


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("fusion", "Fusion module", "SEDS Tab. 5",
          tuple(Variant(k, (f"model.fusion.kind={k}",)) for k in
                ("add-mlp", "concat-mlp", "concat-transformer", "cross-attention", "cgaf")),
          reference="cgaf", seeds=5),
    Study("alignment", "Pose-RGB alignment (L_p-r)", "SEDS Tab. 6",
          (Variant("w/o L_p-r (β=0)", ("loss.beta=0",)), Variant("w/ L_p-r (β=0.4)", ("loss.beta=0.4",))),
          reference="w/ L_p-r (β=0.4)", seeds=5),
    Study("streams", "Streams", "SEDS Tab. 4",
          (Variant("pose only", ("model.streams=[pose]",)), Variant("RGB only", ("model.streams=[rgb]",)),
           Variant("pose + RGB (CGAF)", ("model.streams=[pose,rgb]",))),
          reference="pose + RGB (CGAF)", seeds=5),
    Study("keypoints", "Keypoint parts", "SEDS supp. Tab. 4",
          (Variant("hand", ("model.pose.extra_parts=[]",), drop_parts=("body",)),
           Variant("hand + body", ("model.pose.extra_parts=[]",)),
           Variant("hand + body + face", ("model.pose.extra_parts=[face]",)),
           Variant("hand + body + mouth", ("model.pose.extra_parts=[mouth]",)),
           Variant("hand + body + face + mouth", ("model.pose.extra_parts=[face,mouth]",))),
          note="'hand' reads a derived store with the 7 body keypoints removed (confidence 0).",
          reference="hand + body"),
    Study("cgaf-layers", "Number of cross gloss attention layers", "SEDS supp. Tab. 5",
          tuple(Variant(str(n), (f"model.fusion.layers={n}", f"model.fusion.num_keys={_cgaf_keys(n)}"),
                        value=float(n)) for n in range(5)),
          note="sampled keys per layer: 5 in the first layer, 3 in the others (reference code: 5, 3).",
          reference="2"),
    Study("batch-size", "Batch size", "SEDS supp. Tab. 6",
          tuple(Variant(str(b), (f"train.batch_size={b}",), value=float(b)) for b in (16, 32, 64, 128)),
          note="epochs and learning rates fixed, so larger batches take fewer steps "
               "(see batch-size-steps for the steps-matched version).", reference="32"),
    Study("batch-size-steps", "Batch size at an equal number of steps", "SEDS supp. Tab. 6",
          tuple(Variant(str(b), (f"train.batch_size={b}",), value=float(b), match_steps=True)
                for b in (16, 32, 64, 128)),
          note="epochs, warm-up and validation interval scaled by batch / the base config's batch, so "
               "every variant takes about the same number of optimisation steps (a partial last batch per epoch is "
               "kept); larger batches then also see more epochs. Learning rates fixed.", reference="32"),
    Study("hand-init", "Hand ST-GCN initialisation", "SEDS supp. Tab. 3 (SignBERT there; masked hand-pose "
          "pretraining from seds.experiments.pretrain_hands here)",
          (Variant("pose only, random init", ("model.streams=[pose]",)),
           Variant("pose only, pretrained hands", ("model.streams=[pose]", "model.pose.hand_init={hand_init}")),
           Variant("pose + RGB, random init", ("model.streams=[pose,rgb]",)),
           Variant("pose + RGB, pretrained hands", ("model.streams=[pose,rgb]", "model.pose.hand_init={hand_init}"))),
          note="pretrained hands: `--hand-init` (default runs/hands-ablation), written by "
               "`python -m seds.experiments.pretrain_hands train`.", reference="pose + RGB, pretrained hands"),
    Study("alpha", "Loss weight α (Eq. 4)", "SEDS Fig. 5 (left)",
          tuple(Variant(f"α={a}", (f"loss.alpha={a}",), value=a) for a in (0.2, 0.4, 0.6, 0.8, 1.0)),
          plot_x="α", reference="α=0.8"),
    Study("beta", "Loss weight β (Eq. 7)", "SEDS Fig. 5 (right)",
          tuple(Variant(f"β={b}", (f"loss.beta={b}",), value=b) for b in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
          plot_x="β", reference="β=0.4"),
)}


# --- configs and the run cache ------------------------------------------------------------------

DEFAULT_HAND_INIT = "runs/hands-ablation"


def variant_config(base: Config, variant: Variant, seed: int, store_root: Path | None = None,
                   hand_init: str = DEFAULT_HAND_INIT) -> Config:
    """``base`` + the variant's overrides + ``train.seed``; a store with dropped parts when asked.
    ``{hand_init}`` in an override stands for the pretrained hand weights. ``match_steps`` scales epochs,
    warm-up and validation interval by the variant's batch over ``base``'s, keeping the step count."""
    overrides = [o.replace("{hand_init}", str(hand_init)) for o in variant.overrides]
    d = deep_merge(to_dict(base), parse_overrides(overrides + [f"train.seed={seed}"]))
    if variant.match_steps:
        t = d["train"]
        k = t["batch_size"] / base.train.batch_size
        t["epochs"] = max(1, round(t["epochs"] * k))
        t["warmup_epochs"] = t["warmup_epochs"] * k
        t["eval_every"] = max(1, round(t["eval_every"] * k))
    try:
        cfg = from_dict(Config, d)
    except ConfigError as e:
        raise AblationError(f"variant {variant.name!r}: {e}") from None
    if variant.drop_parts:
        cfg.data.store = str(derived_store(Path(base.data.store), variant.drop_parts, store_root))
    return cfg


def derived_store(src: Path, drop_parts: tuple[str, ...], root: Path | None = None) -> Path:
    """A copy of feature store ``src`` whose keypoints of ``drop_parts`` (store-layout part names, e.g.
    "body") have confidence 0 and coordinates 0 — as if the detector never saw them. Built once."""
    slices = STORE_LAYOUT.part_slices()
    bad = [p for p in drop_parts if p not in slices]
    if bad:
        raise AblationError(f"cannot drop keypoint part(s) {bad}; store parts are {sorted(slices)}")
    dst = (root or src.parent) / f"{src.name}-no-{'-'.join(drop_parts)}"
    done = dst / ".complete"
    if done.exists():
        return dst
    if not src.is_dir():
        raise AblationError(f"feature store {src} not found")
    dst.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(src)
    for f in sorted(src.glob("*.csv")) + sorted(src.glob("*.json")):
        shutil.copy2(f, dst / f.name)
    for vid in store.ids():
        feats = load_features(store.path_for(vid))
        for p in drop_parts:
            feats.keypoints[:, slices[p]] = 0.0
        save_features(FeatureStore(dst).path_for(vid), feats, vid)
    done.write_text(json.dumps({"source": str(src), "dropped": list(drop_parts)}))
    return dst


# --- aggregation and tables ------------------------------------------------------------------------

def plot_sweep(study: Study, rows: list[tuple[Variant, dict]], path: Path) -> None:
    """R@1 (T2V and V2T) against the swept value with ±std error bars, like SEDS Fig. 5."""
    import matplotlib  # optional plotting dependency, only for the α/β sweeps
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first

    x = [v.value for v, _ in rows]
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for d, label, mk in (("t2v", "T2V R@1", "o-"), ("v2t", "V2T R@1", "s--")):
        y = [a["mean"][f"{d}_R@1"] for _, a in rows]
        e = [a["std"][f"{d}_R@1"] for _, a in rows]
        ax.errorbar(x, y, yerr=e, fmt=mk, capsize=3, label=label)
    ax.set_xlabel(study.plot_x)
    ax.set_ylabel("R@1 (%)")
    ax.set_title(f"{study.title} ({rows[0][1]['n']} seed{'s' if rows[0][1]['n'] > 1 else ''})", fontsize=9)
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def hand_init_note(path: str) -> str:
    """What a pretrained hand file was trained on (from its ``hand_stgcn.json``)."""
    info_file = Path(path) / "hand_stgcn.json"
    if not info_file.exists():
        return f"pretrained hands: `{path}`."
    info = json.loads(info_file.read_text())
    c = info.get("config", {})
    return (f"pretrained hands: `{path}` — {info.get('source', 'seds.experiments.pretrain_hands masked hand-pose pretraining')}; "
            f"{c.get('steps', '?')} steps × batch {c.get('batch_size', '?')}; data (feature stores: train split, "
            f"labels unused) {json.dumps(info.get('sources', {}))}.")


def write_study(study: Study, rows: list, records: list, base: Config, seeds: list[int], results_dir: Path,
                command: str, complete: bool, extra_note: str = "") -> dict:
    """``<study>.md`` / ``.json`` (+ ``.png`` for sweeps) from the variants done so far."""
    results_dir.mkdir(parents=True, exist_ok=True)
    scale = describe_scale(base, seeds)
    table = markdown_table([(v.name, a) for v, a in rows])
    md = [f"# {study.title} ({study.paper})", "", f"Command: `{command}`" if command else "", "", scale, ""]
    if not complete:
        md += [f"**Partial: {len(rows)} of the study's {len(study.variants)} variants done so far.**", ""]
    if study.note:
        md += [f"Note: {study.note}", ""]
    if extra_note:
        md += [extra_note, ""]
    md += ["Test split, primary stream of each variant (fused for two streams). R@K in %, MedR in ranks; "
           "sentence_ids protocol (the authors' eval_epoch), expected-rank ties (fractional ranks; seds.metrics); "
           "R-sum mean ± std over seeds; epochs to best = epoch of the val-selected checkpoint (of the epochs trained before early "
           "stopping).", "", table, ""]
    names = [r["variant"] for r in records]
    if study.reference in names and len(records) > 1:
        md += [comparison_table(study.reference, [(r["variant"], r["test_rsum_per_seed"]) for r in records]), ""]
    doc = {"study": study.name, "title": study.title, "paper": study.paper, "command": command, "seeds": seeds,
           "metrics": {"protocol": "sentence_ids", "ties": "expected"},
           "complete": complete, "scale": scale, "base_config": to_dict(base), "variants": records}
    if study.plot_x:                      # partial sweeps too: the plot shows the points done so far
        png = results_dir / f"{study.name}.png"
        plot_sweep(study, rows, png)
        md += [f"![{study.title}]({png.name})", ""]
        doc["plot"] = png.name
    write_report(results_dir, study.name, md, doc)
    return doc


def run_study(name: str, base: Config, seeds: list[int], results_dir: Path = RESULTS_DIR,
              runs_dir: Path = RUNS_DIR, only: list[str] | None = None, command: str = "",
              progress: bool = False, hand_init: str = DEFAULT_HAND_INIT) -> dict:
    """Train every (variant, seed) of study ``name`` (cached), write ``<name>.md/.json`` (+ ``.png``)."""
    if name not in STUDIES:
        raise AblationError(f"unknown study {name!r}; choose from {', '.join(STUDIES)}")
    study = STUDIES[name]
    variants = list(study.variants)
    n_all = len(variants)
    if only:
        known = {v.name for v in variants}
        missing = [o for o in only if o not in known]
        if missing:
            raise AblationError(f"study {name}: no variant(s) {missing}; variants are {sorted(known)}")
        variants = [v for v in variants if v.name in only]
    ensure_store(base)
    rows, records = [], []
    doc: dict = {}
    for i, v in enumerate(variants):
        runs = []
        for s in seeds:
            cfg = variant_config(base, v, s, runs_dir / "stores", hand_init)
            print(f"[{name}] {v.name} seed {s} (run {run_key(cfg)})", flush=True)
            runs.append(run_seds(cfg, runs_dir, progress))
        agg = aggregate(runs)
        rows.append((v, agg))
        records.append({"variant": v.name, "overrides": list(v.overrides), "drop_parts": list(v.drop_parts),
                        "value": v.value, "stream": primary_stream(runs[0]), "runs": [r["key"] for r in runs],
                        "test_rsum_per_seed": rsum_per_seed(runs),
                        "per_seed": [{"seed": s, "best_epoch": r["best_epoch"], "epochs_trained": r.get("epochs_trained"),
                                      "stopped_early": r.get("stopped_early"), "test": r["test"][primary_stream(r)],
                                      "val_rsum": r.get("val_rsum"), "train_seconds": r["train_seconds"]}
                                     for s, r in zip(seeds, runs)],
                        **agg})
        # the table is rewritten after every variant, so a long study shows its progress
        doc = write_study(study, rows, records, base, seeds, results_dir, command,
                          complete=i + 1 == len(variants) == n_all,     # --only some variants: partial
                          extra_note=hand_init_note(hand_init) if name == "hand-init" else "")
    table = markdown_table([(v.name, a) for v, a in rows])
    print(table, flush=True)
    return doc


def study_seeds(name: str, n: int | None = None) -> list[int]:
    """Seeds 0..n−1; without ``n`` the study's default (5 for fusion, streams, alignment; else 3)."""
    return list(range(n if n is not None else STUDIES[name].seeds))


def study_configs(names: list[str], base: Config, seeds: list[int] | None, runs_dir: Path = RUNS_DIR,
                  hand_init: str = DEFAULT_HAND_INIT) -> list[Config]:
    """Every (variant, seed) config of the studies ``names``, in study/variant/seed order, each distinct
    run once (the default model is shared by most studies). ``seeds`` None: each study's default."""
    out, seen = [], set()
    for name in names:
        for v in STUDIES[name].variants:
            for s in (seeds if seeds is not None else study_seeds(name)):
                cfg = variant_config(base, v, s, runs_dir / "stores", hand_init)
                key = run_key(cfg)
                if key not in seen:
                    seen.add(key)
                    out.append(cfg)
    return out


def _worker_init(threads: int) -> None:
    torch.set_num_threads(max(1, threads))


def _train_one(cfg: Config, runs_dir: str) -> tuple[str, float]:
    res = run_seds(cfg, Path(runs_dir))
    return res["key"], res["train_seconds"]


def train_missing(cfgs: list[Config], runs_dir: Path = RUNS_DIR, jobs: int = 1, threads: int = 1) -> int:
    """Train the configs that are not cached yet, ``jobs`` runs at a time (separate processes with
    ``threads`` torch threads each: on a small CPU, two 1-thread runs finish sooner than one 2-thread run).
    Returns the number trained. Runs are independent, so the results equal sequential training."""
    todo = [c for c in cfgs if find_cached(c, runs_dir) is None]
    if jobs <= 1 or len(todo) <= 1:
        for i, c in enumerate(todo):
            print(f"[train {i + 1}/{len(todo)}] run {run_key(c)}", flush=True)
            run_seds(c, runs_dir)
        return len(todo)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futs = {pool.submit(_train_one, c, str(runs_dir)): run_key(c) for c in todo}
        for i, f in enumerate(as_completed(futs)):
            key, sec = f.result()
            print(f"[train {i + 1}/{len(todo)}] run {key} done in {sec:.0f} s", flush=True)
    return len(todo)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seds.experiments.ablate", description="Run SEDS ablation studies.")
    ap.add_argument("--study", required=True,
                    help=f"a study, a comma-separated list, or 'all' ({', '.join(STUDIES)})")
    ap.add_argument("--jobs", type=int, default=1,
                    help="train this many runs at once (processes of --threads threads each) before writing tables")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"base config (default {DEFAULT_CONFIG})")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds 0..N-1 (default: 5 for the headline studies fusion, streams, alignment; 3 for the others)")
    ap.add_argument("--only", default=None, help="comma-separated variant names to run (default: all)")
    ap.add_argument("--results", default=str(RESULTS_DIR), help="folder for <study>.md/.json/.png")
    ap.add_argument("--runs", default=str(RUNS_DIR), help="run cache folder")
    ap.add_argument("--hand-init", default=DEFAULT_HAND_INIT,
                    help=f"pretrained hand ST-GCN for the hand-init study (default {DEFAULT_HAND_INIT})")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the base config")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.seeds is not None and args.seeds < 1:
        print("error: --seeds must be ≥ 1", file=sys.stderr)
        return 2
    try:
        base = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    command = command_line("seds.experiments.ablate", argv, args.config)
    only = [o.strip() for o in args.only.split(",")] if args.only else None
    names = list(STUDIES) if args.study == "all" else [n.strip() for n in args.study.split(",") if n.strip()]
    unknown = [n for n in names if n not in STUDIES]
    if unknown or not names:
        print(f"error: unknown study {unknown or args.study!r}; choose from {', '.join(STUDIES)} or 'all'",
              file=sys.stderr)
        return 2
    if only and len(names) > 1:
        print("error: --only needs a single --study", file=sys.stderr)
        return 2
    seeds = list(range(args.seeds)) if args.seeds is not None else None
    try:
        if args.jobs > 1 and not only:
            ensure_store(base)
            train_missing(study_configs(names, base, seeds, Path(args.runs), args.hand_init), Path(args.runs),
                          args.jobs, args.threads)
        for name in names:
            run_study(name, base, study_seeds(name, args.seeds), Path(args.results), Path(args.runs), only, command,
                      args.progress, args.hand_init)
    except (AblationError, FileNotFoundError, ValueError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
