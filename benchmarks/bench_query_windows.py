"""How many 16-frame windows a live query needs: retrieval quality of one checkpoint when every video
of the test split is described by T = 8 / 16 / 32 / 64 windows (synthetic data, proxy RGB).

    python benchmarks/bench_query_windows.py                      # the demo checkpoint, test split

For each T the test videos of the checkpoint's synthetic benchmark (``configs/demo.yaml`` assets) are
re-made as the app makes a live query: generated keypoints, ``select_clip_starts(frames, T)`` windows,
proxy-RGB features of those windows (``seds.demo_assets.sentence_features``). The sentences are
unchanged. V2T is the live-query direction (a video asks for its sentence). T above the model's
``max_clips`` cannot be encoded (position embeddings) and is reported as such. Writes
benchmarks/results/query_windows.md (+ .json).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seds.checkpoint import load_checkpoint  # noqa: E402
from seds.data.manifest import Manifest, ManifestRow, write_manifest  # noqa: E402
from seds.data.store import FeatureStore  # noqa: E402
from seds.experiments.demo_assets import load_assets_config, sentence_features, synthetic_config  # noqa: E402
from seds.synthetic.signing import SyntheticSignData  # noqa: E402
from seds.evaluate import evaluate_model  # noqa: E402
from seds.variants import build_dataset, variant_of  # noqa: E402
from seds.experiments.runs import METRICS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/demo")
    ap.add_argument("--split", default="test")
    ap.add_argument("--windows", type=int, nargs="+", default=[8, 16, 32, 64])
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model, _, cfg, _ = load_checkpoint(args.checkpoint)
    data = SyntheticSignData(synthetic_config(load_assets_config()))
    specs = data.sentences(args.split)
    frames = {s.id: data.render(s) for s in specs}
    t0 = time.time()
    rows, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for t in args.windows:
            if t > cfg.model.max_clips:
                rows[t] = None
                continue
            store = FeatureStore(Path(tmp) / f"T{t}", create=True)
            man = []
            nwin = []
            for s in specs:
                f = sentence_features(data, s, t, frames[s.id])
                store.save(s.id, f)
                nwin.append(f.num_clips)
                man.append(ManifestRow(s.id, f"{s.id}.mp4", s.text, args.split, str(s.signer)))
            mpath = write_manifest(Manifest(man, "query_windows"), store.root / f"manifest_{args.split}.csv")
            ds = build_dataset(cfg, args.split, store=str(store.root), manifest=str(mpath))
            res = evaluate_model(model, ds, cfg.model.tau, 64, collate_fn=variant_of(cfg).collate, **METRICS)
            results[t] = res
            rows[t] = {"mean_windows": float(np.mean(nwin)), "fused": res["fused"]}
    cmd = "python benchmarks/bench_query_windows.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Windows per live query (synthetic data, proxy RGB)", "", f"Command: `{cmd.strip()}`  ",
             f"Checkpoint `{args.checkpoint}` (model.max_clips = {cfg.model.max_clips}), {len(specs)} {args.split} "
             f"videos of the demo's synthetic benchmark ({np.mean([s.num_frames for s in specs]):.0f} frames on "
             "average; a video has at most frames − 15 windows, so 'windows used' can be below T). Fused stream, "
             f"sentence_ids protocol, expected-rank ties (seds.evaluate defaults), R@k in %; chance R@1 = {100 / len(specs):.1f} %. {time.time() - t0:.0f} s.", "",
             "| T (max windows) | windows used (mean) | V2T R@1 | V2T R@5 | V2T R@10 | V2T MedR | T2V R@1 | T2V R@5 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t, r in rows.items():
        if r is None:
            lines.append(f"| {t} | – | n/a: above the model's max_clips = {cfg.model.max_clips} | | | | | |")
            continue
        v, w = r["fused"]["v2t"], r["fused"]["t2v"]
        lines.append(f"| {t} | {r['mean_windows']:.1f} | {v['R@1']:.1f} | {v['R@5']:.1f} | {v['R@10']:.1f} | "
                     f"{v['MedR']:.1f} | {w['R@1']:.1f} | {w['R@5']:.1f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "query_windows.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "query_windows.json").write_text(json.dumps({"command": cmd, "metrics": {**METRICS, "stream": "fused"},
                                                           "rows": {str(k): v for k, v in rows.items()}}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
