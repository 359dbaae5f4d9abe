"""Write the synthetic signing benchmark (:mod:`seds.synthetic.signing`) as a feature store.

One safetensors per video (:mod:`seds.data.store`) plus per-split manifests and ``synthetic_info.json``;
chunks of videos are shared out to spawned worker processes, and the output is identical for any worker count.

Typical use::

    write_synthetic_store("stores/synthetic", SyntheticConfig(seed=0))   # one safetensors per video + manifests
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from seds.data.store import FeatureStore
from seds.synthetic.signing import PROXY_RGB_NOTE, SPLITS, SyntheticConfig, SyntheticError, SyntheticSignData

__all__ = ["write_synthetic_store", "write_chunk_manifests"]


_WORKER_DATA: dict = {}


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)        # one process per core: no nested thread pools


def _worker_data(cfg: SyntheticConfig) -> SyntheticSignData:
    key = repr(cfg)
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[key] = SyntheticSignData(cfg)
    return _WORKER_DATA[key]


def _store_chunk(cfg: SyntheticConfig, split: str, lo: int, hi: int, root: str) -> list[dict]:
    data = _worker_data(cfg)
    store = FeatureStore(root, create=True)
    rows = []
    for spec in data.sentences(split)[lo:hi]:
        store.save(spec.id, data.make_features(spec))
        rows.append({"id": spec.id, "video": "", "text": spec.text, "split": split,
                     "signer": data.signers[spec.signer].id})
    return rows


def write_chunk_manifests(out: Path, splits, jobs: list, results: list) -> dict[str, Path]:
    """``manifest_<split>.csv`` (id, video, text, split, signer) of each split from the rows the store
    chunks returned; ``jobs[i] = (split, lo, hi)`` produced ``results[i]``. Returns split → path."""
    manifests = {}
    for s in splits:
        path = Path(out) / f"manifest_{s}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["id", "video", "text", "split", "signer"])
            w.writeheader()
            for (js, _, _), rows in zip(jobs, results):
                if js == s:
                    w.writerows(rows)
        manifests[s] = path
    return manifests


def write_synthetic_store(out_dir: str | os.PathLike, cfg: SyntheticConfig = SyntheticConfig(),
                          splits: Sequence[str] = SPLITS, workers: int | None = None,
                          chunk: int = 64) -> dict[str, Path]:
    """Write the benchmark as a feature store: one safetensors per video (``seds.data.store``) plus
    ``manifest_<split>.csv`` (``id, video, text, split, signer``; ``video`` is empty) and
    ``synthetic_info.json`` (config, vocabulary, signers, the proxy-RGB note).

    Returns ``{split: manifest path}``. ``workers`` processes (default: up to 2) share the work in
    chunks of ``chunk`` videos; output is identical for any worker count.
    """
    for s in splits:
        SyntheticSignData.check_split(s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _worker_data(cfg)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if workers < 1:
        raise SyntheticError(f"workers must be ≥ 1, got {workers}")
    jobs = [(s, lo, min(lo + chunk, len(data.sentences(s))))
            for s in splits for lo in range(0, len(data.sentences(s)), chunk)]
    if workers == 1:
        results = [_store_chunk(cfg, s, lo, hi, str(out)) for s, lo, hi in jobs]
    else:
        # spawn, not fork: the caller may hold torch/OpenCV thread pools that do not survive a fork
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_init) as ex:
            futs = [ex.submit(_store_chunk, cfg, s, lo, hi, str(out)) for s, lo, hi in jobs]
            results = [f.result() for f in futs]
    manifests = write_chunk_manifests(out, splits, jobs, results)
    info = {"note": PROXY_RGB_NOTE, "config": asdict(cfg),
            "vocab": [asdict(v) for v in data.vocab], "signers": [asdict(sg) for sg in data.signers]}
    (out / "synthetic_info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return manifests
