"""The experiments' one run cache. SEDS runs (ablation variants, CiCo, the SEDS row of the baselines) are
trained once per config — keyed by a hash of everything that can change the result
(:func:`run_key`; a pretrained hand file enters by its content, and ``CACHE_VERSION`` stands for the
training code) — and kept as ``<runs>/<key>/result.json``
with the validation-selected checkpoint's val/test metrics; other runs (SA-SR, SA-CM, SA-COMB) are kept
as ``result.json`` in a folder named by :func:`result_key` (:func:`cached_result`). Studies that share a
variant train it once, and an interrupted study resumes where it stopped: finished runs are reused, and a
run killed mid-training continues from its last saved state (:func:`interrupted_epoch`; bit-exact, as
``python -m seds.train --resume``).

Cached results carry the metrics they were computed with (``"metrics"``): those from before the
expected-rank ties (none recorded: optimistic ties) are not reused as they are — a SEDS run's kept
``best`` checkpoint is evaluated again (:func:`run_seds`), other results are recomputed
(:func:`cached_result`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch

from seds.checkpoint import load_checkpoint
from seds.config import Config, to_dict
from seds.evaluate import evaluate_model, rsum
from seds.metrics import canonical_protocol
from seds.model.hand_init import weights_path
from seds.train import STATE, TrainingError, check_resume_config, prepare_data, train
from seds.variants import build_dataset

RUNS_DIR = Path("runs/ablations")
METRICS = {"protocol": "sentence_ids", "ties": "expected"}    # how run_seds's val/test metrics are computed
SA_METRICS = {"pairs": "all, same-sentence videos relevant", "ties": "expected"}   # cached_result's (SA-*)
# Bumped whenever training itself changes (not its config): runs cached by older code are not reused.
# 2: from-scratch modules train at lr_pose (SEDS.param_groups), early stopping.
CACHE_VERSION = 2


_NOT_IN_KEY = {"train": ("out", "log_every", "eval_batch_size", "device", "save_every_steps"),
               "data": ("workers", "preload")}


def run_key(cfg: Config) -> str:
    """Hash of everything that can change a run's result (not output paths, logging, device); a
    pretrained hand file enters by its content."""
    d = to_dict(cfg)
    for section, keys in _NOT_IN_KEY.items():
        for k in keys:
            d[section].pop(k, None)
    sha = run_key_hand_sha(cfg)
    if sha:
        d["hand_init_sha1"] = sha
    d["cache_version"] = CACHE_VERSION
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _same_config(a: dict, b: dict) -> bool:
    """Equal on every key both sides have (a field added to or removed from the config classes since a
    run was cached does not invalidate it; a changed value does)."""
    for k in a.keys() & b.keys():
        if isinstance(a[k], dict) and isinstance(b[k], dict):
            if not _same_config(a[k], b[k]):
                return False
        elif a[k] != b[k]:
            return False
    return True


def find_cached(cfg: Config, runs_dir: Path) -> dict | None:
    """The cached result of ``cfg``: by :func:`run_key`, else by comparing stored configs (see
    :func:`_same_config`) — so runs survive new config fields with defaults."""
    f = Path(runs_dir) / run_key(cfg) / "result.json"
    if f.exists():
        return json.loads(f.read_text())
    want = to_dict(cfg)
    for section, keys in _NOT_IN_KEY.items():
        for k in keys:
            want[section].pop(k, None)
    for f in sorted(Path(runs_dir).glob("*/result.json")):
        res = json.loads(f.read_text())
        if res.get("cache_version", 1) != CACHE_VERSION or res.get("hand_init_sha1") != (run_key_hand_sha(cfg)):
            continue
        got = res.get("config", {})
        if _same_config(want, {s: {k: v for k, v in d.items() if k not in _NOT_IN_KEY.get(s, ())}
                               if isinstance(d, dict) else d for s, d in got.items()}):
            return res
    return None


def run_key_hand_sha(cfg: Config) -> str | None:
    init = cfg.model.pose.hand_init
    if not init:
        return None
    return hashlib.sha1(weights_path(init).read_bytes()).hexdigest()


def ensure_store(cfg: Config) -> None:
    """Generate the synthetic store on first use (as ``seds.train`` would)."""
    if cfg.data.dataset == "synthetic" and not (Path(cfg.data.store) / f"manifest_{cfg.data.train_split}.csv").exists():
        prepare_data(cfg)


def same_metrics(recorded) -> bool:
    """Whether a cached result's ``metrics`` are :data:`METRICS` (a protocol under its former name counts)."""
    if not isinstance(recorded, dict):
        return False
    return {**recorded, "protocol": canonical_protocol(str(recorded.get("protocol")))} == METRICS


def _reevaluate(cached: dict, cfg: Config, runs_dir: Path) -> dict | None:
    """A cached run whose metrics predate :data:`METRICS`: evaluate its kept ``best`` checkpoint again
    (its epoch selection stays what it was, recorded as ``selection_ties``); None if it is gone."""
    best = Path(runs_dir) / str(cached.get("key", "")) / "best"
    if not (best / "model.safetensors").is_file():
        return None
    ensure_store(cfg)
    model, _, _, info = load_checkpoint(best)
    bs = cfg.train.eval_batch_size
    val = evaluate_model(model, build_dataset(cfg, cfg.data.val_split), cfg.model.tau, bs)
    test = evaluate_model(model, build_dataset(cfg, cfg.data.test_split), cfg.model.tau, bs)
    result = {**cached, "val_rsum": rsum(val), "val": val, "test": test, "metrics": METRICS,
              "selection_ties": info.get("selection_ties", "optimistic")}
    (best.parent / "result.json").write_text(json.dumps(result, indent=1))
    return result


def interrupted_epoch(out: Path, cfg: Config) -> int | None:
    """The epoch an interrupted run of ``cfg`` in ``out`` stopped after (its ``last`` training state), or
    None when there is nothing to resume: no state, or one written for another model/loss config, which is
    then removed so that the run starts over."""
    state = out / "last" / STATE
    if not state.is_file():
        return None
    try:
        check_resume_config(out, cfg)
        return int(torch.load(state, map_location="cpu", weights_only=True)["epoch"])
    except (TrainingError, OSError, KeyError, RuntimeError, ValueError):
        shutil.rmtree(out / "last", ignore_errors=True)
        return None


def epoch_records(out: Path) -> list[dict]:
    """The epoch records of ``out/log.jsonl``, one per epoch (a resumed run appends to the log; an epoch
    logged twice keeps its last record)."""
    f = out / "log.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []
    by_epoch = {r["epoch"]: r for r in rows if r.get("kind") == "epoch"}
    return [by_epoch[e] for e in sorted(by_epoch)]


def run_seds(cfg: Config, runs_dir: Path = RUNS_DIR, progress: bool = False, keep_last: bool = False) -> dict:
    """Train one SEDS config (cached by :func:`run_key`), pick the best epoch on val, evaluate test.

    Returns ``{"key", "config", "best_epoch", "epochs_trained", "stopped_early", "val", "test",
    "train_seconds", ...}`` where ``val``/``test`` are :func:`seds.evaluate.evaluate_model` results (per
    stream) of the selected checkpoint. A cached run evaluated before the expected-rank ties is evaluated
    again (retrained if its checkpoint is gone)."""
    cfg = copy.deepcopy(cfg)
    cached = find_cached(cfg, runs_dir)
    if cached is not None:
        if same_metrics(cached.get("metrics")):
            return cached
        again = _reevaluate(cached, cfg, runs_dir)
        if again is not None:
            return again
    key = run_key(cfg)
    out = Path(runs_dir) / key
    res_file = out / "result.json"
    ensure_store(cfg)
    cfg.train.out = str(out)
    resumed_at = interrupted_epoch(out, cfg)
    t0 = time.time()
    log = train(cfg, resume=resumed_at is not None, progress=progress)
    seconds = time.time() - t0
    history = epoch_records(out)      # the whole run's epochs, also those of an interrupted first attempt
    if resumed_at:     # the interrupted attempt's training time (its epochs; its validations are not counted)
        seconds += sum(r.get("seconds", 0.0) for r in history[:resumed_at])
    model, _, _, info = load_checkpoint(out / "best")
    bs = cfg.train.eval_batch_size
    val = evaluate_model(model, build_dataset(cfg, cfg.data.val_split), cfg.model.tau, bs)
    test = evaluate_model(model, build_dataset(cfg, cfg.data.test_split), cfg.model.tau, bs)
    result = {"key": key, "cache_version": CACHE_VERSION, "config": to_dict(cfg), "hand_init_sha1": run_key_hand_sha(cfg),
              "best_epoch": info.get("epoch"), "epochs_trained": len(history),
              "stopped_early": bool(log.get("stopped_early")), "val_rsum": rsum(val),
              "val": val, "test": test, "metrics": METRICS, "selection_ties": "expected",
              "train_seconds": round(seconds, 1), "resumed_at_epoch": resumed_at,
              "epochs": [{k: v for k, v in r.items() if k in ("epoch", "loss", "val_rsum", "seconds")}
                         for r in history]}
    res_file.write_text(json.dumps(result, indent=1))
    if not keep_last:
        shutil.rmtree(out / "last", ignore_errors=True)
    return result


def result_key(*parts) -> str:
    """A short hash of JSON-able ``parts`` (names a cached run folder)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_result(folder: Path, fn) -> dict:
    """``<folder>/result.json`` if it exists and was computed under :data:`SA_METRICS`, else ``fn()``
    written there."""
    f = folder / "result.json"
    if f.exists():
        res = json.loads(f.read_text())
        if res.get("metrics") == SA_METRICS:
            return res
    res = {**fn(), "metrics": SA_METRICS}
    folder.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(res, indent=1))
    return res
