"""Where is a sentence signed in a long recording? Localisation with known boundaries on long synthetic
recordings (synthetic, proxy-RGB), its baselines, and the cost of localising in one hour / searching 100 hours.

    python benchmarks/bench_recordings.py            # demo checkpoint, seeds 0 1 2 → benchmarks/results/recordings.md

Data: for each seed, one validation recording (val split: unseen signers, held-out sentences) and two test
recordings (test split), each ≈ ``--minutes`` long, made by :func:`seds.synthetic.recordings.make_recording`:
held-out sentences signed one after another by one signer, each from and back to the rest pose, with pauses of
0.5–3 s; windows of 16 frames every 8 frames (the streaming extraction's default stride). The truth of a sentence
is its signing span (first sign start → last sign end). Every sentence of a recording is a query.

Methods (each per stream: pose, RGB, fused):

* **span grid** — :class:`seds.retrieval.localise.Localiser` with timeline scores: coarse pass on overlapping
  chunks, every span of 1–15 s scored by the fine-grained score from prefix sums, NMS (``rescore=0``);
* **span grid + exact re-score** — the same, the best 4 spans per stream re-scored by encoding each alone;
* **fixed-length sliding window** — the grid restricted to one span length, the length chosen per stream on the
  validation recordings (R1@0.5, then mAP) among 1.0–5.7 s;
* **oracle spans** — the candidate spans are the true spans of the recording's sentences, each encoded alone and
  scored exactly: only the choice is learned (an upper bound on what span proposals can give).

A real plumbing set (``--how2sign-mini``, skipped with the reason when ../shared is absent): the How2Sign-mini val
clips placed on their source video's timeline by the realigned CSVs, one recording per source, through streaming
extraction and the same localisation and metrics — a mini-set plumbing check with a synthetic-trained checkpoint,
not a result.

Rows are mean ± sample std over seeds; the paired comparison of R1@0.5 against *span grid (fused)* uses the paired
t interval over seeds (:func:`seds.experiments.report.paired_interval`). Ties: expected values under random
tie-breaking (:mod:`seds.moment_metrics`).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2  # noqa: F401 - OpenCV before decord (see demo/backend.py); resizes the How2Sign frames
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from seds.checkpoint import load_checkpoint  # noqa: E402
from seds.config import from_dict  # noqa: E402
from seds.synthetic.signing import SyntheticConfig, SyntheticSignData  # noqa: E402
from seds.synthetic.recordings import PlacedSentence, SyntheticRecording, make_recording  # noqa: E402
from seds.encode import encode_sentences, encode_videos  # noqa: E402
from seds.extract.factory import make_rgb_extractor  # noqa: E402
from seds.extract.recording import RecordingConfig, RecordingExtractor  # noqa: E402
from seds.extract.video import Budget, read_video  # noqa: E402
from seds.experiments.report import format_interval, paired_interval, verdict, write_report  # noqa: E402
from seds.moment_metrics import alignment_metrics, moment_metrics  # noqa: E402
from seds.retrieval.localise import (STREAMS, LocaliseConfig, Localiser, RecordingTimeline,  # noqa: E402
                                     span_features)
from seds.retrieval.recordings import RecordingArchive, RecordingIndexWriter  # noqa: E402
from seds.similarity import fine_grained_scores  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIXED_WINDOWS = (2, 4, 6, 8, 10, 13, 16)          # fixed span lengths in windows: 1.0 … 5.7 s at stride 8
MOMENT = ("R1@0.5", "R1@0.7", "mAP")
ALIGN = ("F1@0.1", "F1@0.25", "F1@0.5", "frame_acc", "start_offset_s", "end_offset_s")


def pick_sentences(specs, minutes: float, fps: float, rng) -> list:
    order = rng.permutation(len(specs))
    out, total = [], 0.0
    for i in order:
        if total >= minutes * 60:
            break
        out.append(specs[i])
        total += specs[i].num_frames / fps + 1.75
    return out


def make_recordings(data, seed: int, minutes: float, stride: int):
    rng = np.random.default_rng([seed, 2901])
    fps = data.cfg.fps
    val = data.sentences("val")
    test = data.sentences("test")
    vs = pick_sentences(val, minutes, fps, rng)
    ts = pick_sentences(test, 2 * minutes, fps, rng)
    half = len(ts) // 2
    sig_v = [s.index for s in data.split_signers("val")]
    sig_t = [s.index for s in data.split_signers("test")]
    recs = {"val": [make_recording(data, vs, signer=sig_v[seed % len(sig_v)], stride=stride, seed=seed,
                                   id=f"val{seed}")],
            "test": [make_recording(data, ts[:half], signer=sig_t[seed % len(sig_t)], stride=stride, seed=seed,
                                    id=f"test{seed}a"),
                     make_recording(data, ts[half:], signer=sig_t[(seed + 1) % len(sig_t)], stride=stride,
                                    seed=seed + 100, id=f"test{seed}b")]}
    return recs


def run_localiser(loc: Localiser, tl, rec, streams=STREAMS):
    """Per stream, per sentence: ranked (spans (k, 2), scores (k,)); and the rescoring time per query."""
    out = {s: [] for s in streams}
    t_rescore, t_refine = [], []
    for ps in rec.sentences:
        res = loc.localise(tl, ps.text, rec.features)
        t_rescore.append(res.timings.get("rescore", 0.0))
        t_refine.append(res.timings.get("refine", 0.0))
        for s in streams:
            sp = res.spans[s]
            out[s].append((np.array([[x.start_s, x.end_s] for x in sp]).reshape(-1, 2),
                           np.array([x.score for x in sp])))
    return out, t_rescore, t_refine


def oracle(model, rec, streams=STREAMS, k: int = 5):
    """Candidates = the true spans of the recording's sentences, each encoded alone; every sentence ranks them."""
    f = rec.features
    starts = f.clip_starts / f.fps
    ends = starts + 16 / f.fps
    wins = []
    for ps in rec.sentences:
        a = int(np.clip(np.searchsorted(starts, ps.start_s - 1e-9), 0, f.num_clips - 1))
        b = int(np.clip(np.searchsorted(ends, ps.end_s + 1e-9, side="right"), a + 1, f.num_clips))
        wins.append((a, b))
    emb, mask = encode_videos(model, [span_features(f, a, b, model.cfg.max_clips) for a, b in wins])
    words, wmask = encode_sentences(model, [ps.text for ps in rec.sentences])
    gts = np.array([[ps.start_s, ps.end_s] for ps in rec.sentences])
    out = {}
    for s in streams:
        sc = fine_grained_scores(emb[s], mask, words, wmask, tau=model.cfg.tau).mean.numpy()   # (spans, sentences)
        rows = []
        for j in range(len(rec.sentences)):
            order = np.argsort(-sc[:, j], kind="stable")[:k]
            rows.append((gts[order], sc[order, j]))
        out[s] = rows
    return out


def score_runs(runs, recs):
    """runs: recording id → stream → per-sentence (spans, scores); → stream → metrics (moment over all queries,
    alignment averaged over recordings)."""
    out = {}
    for s in STREAMS:
        preds, scores, gts, aligns = [], [], [], []
        for rec in recs:
            rows = runs[rec.features.meta["id"]][s]
            g = np.array([[ps.start_s, ps.end_s] for ps in rec.sentences])
            preds += [r[0] for r in rows]
            scores += [r[1] for r in rows]
            gts.append(g)
            top = np.array([r[0][0] if len(r[0]) else [np.nan, np.nan] for r in rows])
            tops = np.array([r[1][0] if len(r[1]) else -np.inf for r in rows])
            aligns.append(alignment_metrics(top, tops, g, rec.duration_s, rec.features.fps))
        m = moment_metrics(preds, scores, np.concatenate(gts))
        for key in ALIGN:
            m[key] = float(np.mean([a[key] for a in aligns]))
        m["queries"] = len(preds)
        out[s] = m
    return out


def mean_std(vals):
    v = np.asarray(vals, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def tiled_timeline(tls: list[RecordingTimeline], minutes: float, rid: str, rng=None, noise: float = 0.0):
    """A long timeline made by repeating encoded recordings (for cost figures only)."""
    step = tls[0].step_s
    n = int(round(minutes * 60 / step))
    cat = {s: torch.cat([t.streams[s] for t in tls]) for s in STREAMS}
    sig = np.concatenate([t.signing for t in tls])
    reps = -(-n // len(sig))
    shift = int(rng.integers(len(sig))) if rng is not None else 0
    idx = (np.arange(n) + shift) % len(sig)
    streams = {}
    for s in STREAMS:
        x = cat[s][torch.from_numpy(idx)].float()
        if noise:
            x = torch.nn.functional.normalize(x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(
                int(rng.integers(2 ** 31)))), dim=-1)
        streams[s] = x.half()
    starts = np.arange(n) * step
    del reps
    return RecordingTimeline(rid, starts, starts + tls[0].window_s, sig[idx], streams, tls[0].fps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--minutes", type=float, default=2.5, help="length of each recording")
    ap.add_argument("--stride", type=int, default=8, help="window stride in frames")
    ap.add_argument("--hours", type=float, default=100.0, help="hours of (tiled) features in the search-cost index")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--stem", default="recordings")
    ap.add_argument("--only-how2sign-mini", action="store_true", help="run only the How2Sign-mini plumbing set and "
                    "write <out>/<stem>_how2sign_mini.md / .json")
    ap.add_argument("--how2sign-mini", default=str(SHARED), help="the shared data folder (how2sign-mini/ and "
                    "annotations/) for the real plumbing set; 'none' skips it")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    t_all = time.perf_counter()
    model, _, cfg, info = load_checkpoint(args.checkpoint, "cpu")
    sc = dataclasses.replace(from_dict(SyntheticConfig, cfg.data.synthetic), max_clips=model.cfg.max_clips)
    data = SyntheticSignData(sc)
    grid = Localiser(model, LocaliseConfig(rescore=0, top_k=5))
    exact = Localiser(model, LocaliseConfig(rescore=4, top_k=5))
    if args.only_how2sign_mini:
        return how2sign_mini_report(args, model, cfg, grid, exact)
    per_seed: dict[str, dict[int, dict]] = {}
    costs = {"coarse_windows": 0, "coarse_s": 0.0, "refine_s": [], "rescore_s": [], "minutes": []}
    fixed_choice = {}
    test_tls = []
    for seed in args.seeds:
        recs = make_recordings(data, seed, args.minutes, args.stride)
        tls = {}
        for split in ("val", "test"):
            for r in recs[split]:
                t0 = time.perf_counter()
                tls[r.features.meta["id"]] = grid.timeline(r.features)
                costs["coarse_s"] += time.perf_counter() - t0
                costs["coarse_windows"] += r.features.num_clips
                costs["minutes"].append(r.duration_s / 60)
        test_tls += [tls[r.features.meta["id"]] for r in recs["test"]]
        print(f"seed {seed}: recordings " + ", ".join(f"{r.features.meta['id']} {r.duration_s / 60:.1f} min "
              f"{len(r.sentences)} sentences" for sp in ("val", "test") for r in recs[sp]), flush=True)
        # fixed-length baseline: choose the length per stream on validation
        val_scores = {}
        for ell in FIXED_WINDOWS:
            tl = tls[recs["val"][0].features.meta["id"]]
            d = (ell - 1) * tl.step_s + tl.window_s
            loc = Localiser(model, LocaliseConfig(rescore=0, top_k=5, min_span_s=d, max_span_s=d))
            runs = {r.features.meta["id"]: run_localiser(loc, tls[r.features.meta["id"]], r)[0] for r in recs["val"]}
            val_scores[ell] = score_runs(runs, recs["val"])
        choice = {s: max(FIXED_WINDOWS, key=lambda e: (val_scores[e][s]["R1@0.5"], val_scores[e][s]["mAP"], -e))
                  for s in STREAMS}
        fixed_choice[seed] = {s: round((e - 1) * tls[recs["val"][0].features.meta["id"]].step_s + 16 / sc.fps, 2)
                              for s, e in choice.items()}
        methods = {}
        for name, loc, key, which in (("span grid", grid, "refine_s", 2), ("span grid + exact re-score", exact,
                                                                           "rescore_s", 1)):
            runs = {}
            for r in recs["test"]:
                rid = r.features.meta["id"]
                out = run_localiser(loc, tls[rid], r)
                runs[rid] = out[0]
                costs[key] += out[which]
            methods[name] = score_runs(runs, recs["test"])
        fixed = {}
        for s in STREAMS:
            tl0 = tls[recs["test"][0].features.meta["id"]]
            d = (choice[s] - 1) * tl0.step_s + tl0.window_s
            loc = Localiser(model, LocaliseConfig(rescore=0, top_k=5, min_span_s=d, max_span_s=d, streams=(s,)))
            runs = {r.features.meta["id"]: run_localiser(loc, tls[r.features.meta["id"]], r, streams=(s,))[0]
                    for r in recs["test"]}
            runs = {k: {**{x: v[s] for x in STREAMS}} for k, v in runs.items()}
            fixed[s] = score_runs(runs, recs["test"])[s]
        methods["fixed-length window (length chosen on val)"] = fixed
        runs = {r.features.meta["id"]: oracle(model, r) for r in recs["test"]}
        methods["oracle spans (choice only)"] = score_runs(runs, recs["test"])
        for name, m in methods.items():
            per_seed.setdefault(name, {})[seed] = m
        print(f"  seed {seed} fused R1@0.5: " + ", ".join(f"{k} {v['fused']['R1@0.5']:.1f}" for k, v in methods.items()),
              flush=True)
    bench_s = time.perf_counter() - t_all
    h2s = ({"skipped": "--how2sign-mini none"} if args.how2sign_mini == "none" else
           how2sign_mini_plumbing(model, cfg.data.rgb_features, grid, exact, Path(args.how2sign_mini)))

    # ---- cost: one hour, 100 hours -------------------------------------------------------------------------
    load = os.getloadavg()
    hour = tiled_timeline(test_tls, 60.0, "hour")
    sentences = [ps.text for ps in data.sentences("test")[:10]]
    t_loc = []
    for text in sentences:
        t0 = time.perf_counter()
        grid.localise(hour, text)
        t_loc.append(time.perf_counter() - t0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="seds-bench-rec-") as tmp:
        w = RecordingIndexWriter(Path(tmp) / "idx", "bench", model.cfg.dim, model.cfg.max_clips)
        t0 = time.perf_counter()
        for i in range(int(round(args.hours))):
            w.add(tiled_timeline(test_tls, 60.0, f"h{i:03d}", rng=rng, noise=0.02))
        w.close()
        t_write = time.perf_counter() - t0
        arc = RecordingArchive(Path(tmp) / "idx")
        mem = arc.memory_bytes()
        hours = arc.hours
        t_search = []
        for text in sentences:
            t0 = time.perf_counter()
            q, qm, *_ = grid.query_text(text)
            arc.search(q, qm, model.cfg.tau, k=10)
            t_search.append(time.perf_counter() - t0)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    coarse_per_hour = costs["coarse_s"] / costs["coarse_windows"] * (3600 / (args.stride / sc.fps))
    cost = {"load_avg": load, "coarse_pass_s_per_hour": coarse_per_hour,
            "coarse_windows_measured": costs["coarse_windows"],
            "refine_s_median_per_query_recording": float(np.median(costs["refine_s"])),
            "rescore_s_median_per_query": float(np.median(costs["rescore_s"])),
            "localise_60min_s": {"median": float(np.median(t_loc)), "max": float(np.max(t_loc))},
            "search_hours": hours, "search_s": {"median": float(np.median(t_search)), "max": float(np.max(t_search))},
            "index_resident_mb_per_hour": mem["resident"] / hours / 2 ** 20,
            "index_mapped_mb_per_hour": mem["mapped"] / hours / 2 ** 20,
            "index_write_s": t_write, "peak_rss_mb_process": rss_mb, "benchmark_s": bench_s}

    # ---- report --------------------------------------------------------------------------------------------
    cmd = "python benchmarks/bench_recordings.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                      " " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    agg = {name: {s: {k: mean_std([per_seed[name][sd][s][k] for sd in args.seeds]) for k in MOMENT + ALIGN}
                  for s in STREAMS} for name in per_seed}
    n_q = {sd: per_seed["span grid"][sd]["fused"]["queries"] for sd in args.seeds}
    md = ["# Localisation in long recordings (synthetic, proxy-RGB)", "",
          f"Command: `{cmd}`  ",
          f"Checkpoint: `{args.checkpoint}` ({info.get('kind', '')}: trained on the synthetic signing benchmark only; "
          "RGB features are the colour-histogram proxy, not I3D). Recordings: per seed one validation recording (val "
          "split) and two test recordings (test split: unseen signers, held-out sentences), each ≈ "
          f"{args.minutes:g} min, sentences signed in a row by one signer with 0.5–3 s pauses, 16-frame windows every "
          f"{args.stride} frames at {sc.fps:g} fps. Test queries per seed: {n_q}. Seeds {args.seeds}: mean ± sample std "
          "over seeds. Ties: expected values under random tie-breaking. **Synthetic data: compare rows with each other; "
          "these are not numbers on real signing.**", "",
          "Moment retrieval: R1@IoU θ = top span overlaps the truth with IoU ≥ θ; mAP over IoU 0.5:0.05:0.95. "
          "Alignment (every sentence placed by its top span): F1@θ, frame accuracy (every frame labelled with its "
          "sentence or background), mean |start| and |end| offsets in seconds.", "",
          "| Method | Stream | R1@0.5 | R1@0.7 | mAP | F1@0.1 | F1@0.25 | F1@0.5 | frame acc | start off (s) | end off (s) |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in per_seed:
        for s in ("fused", "pose", "rgb"):
            cells = []
            for k in MOMENT + ALIGN:
                m, sd = agg[name][s][k]
                cells.append(f"{m:.2f} ± {sd:.2f}" if k.endswith("_s") else f"{m:.1f} ± {sd:.1f}")
            md.append(f"| {name} | {s} | " + " | ".join(cells) + " |")
    md += ["", f"Fixed-length window: length chosen per seed and stream on the validation recording (s): {fixed_choice}.",
           "", "Paired comparison of test R1@0.5 with **span grid, fused** (same seeds and recordings; 95 % paired t "
           "interval over seeds):", "", "| Method | Stream | Δ R1@0.5 [95 % CI] | verdict for \"span grid fused ≥ row\" |",
           "|---|---|---:|---|"]
    ref = [per_seed["span grid"][sd]["fused"]["R1@0.5"] for sd in args.seeds]
    for name in per_seed:
        for s in ("fused", "pose", "rgb"):
            if name == "span grid" and s == "fused":
                continue
            vals = [per_seed[name][sd][s]["R1@0.5"] for sd in args.seeds]
            ci = paired_interval(ref, vals)
            md.append(f"| {name} | {s} | {format_interval({**ci, 'diff': -ci['diff'], 'low': -ci['high'], 'high': -ci['low']})} "
                      f"| {verdict(ci)} |")
    c = cost
    md += how2sign_mini_md(h2s, cfg.data.rgb_features)
    md += ["", "## Cost (2-core CPU, shared with other jobs; no GPU figure yet)", "",
           f"Load average during the cost runs: {', '.join(f'{x:.1f}' for x in c['load_avg'])} (2 cores): wall times "
           "are inflated by contention; counts and bytes are not.", "",
           "| What | Figure |", "|---|---:|",
           f"| coarse pass (index build), s per hour of video (measured on {c['coarse_windows_measured']} windows, "
           f"extrapolated) | {c['coarse_pass_s_per_hour']:.0f} |",
           f"| localise one sentence in one indexed **60-minute** recording (timeline scores, 3 streams), median / max "
           f"of 10 | {c['localise_60min_s']['median']:.2f} / {c['localise_60min_s']['max']:.2f} s |",
           f"| exact re-scoring of the 4 best spans per stream (≤ 12 span encodings), median per query | "
           f"{c['rescore_s_median_per_query']:.2f} s |",
           f"| search **{c['search_hours']:.0f} hours** of indexed recordings (text → top-10 spans, 3 streams), "
           f"median / max of 10 | {c['search_s']['median']:.2f} / {c['search_s']['max']:.2f} s |",
           f"| index memory per hour: resident (chunk vectors, times) | {c['index_resident_mb_per_hour']:.2f} MB |",
           f"| index memory per hour: memory-mapped window features (float16, 3 streams, read for candidate regions "
           f"only) | {c['index_mapped_mb_per_hour']:.1f} MB |",
           f"| peak RSS of this whole benchmark process | {c['peak_rss_mb_process']:.0f} MB |", "",
           f"The 60-minute and {c['search_hours']:.0f}-hour figures use timelines made by repeating the encoded test "
           "recordings (with a random shift and small noise per hour): the cost depends on the number of windows, not "
           "on their content. Benchmark wall time (quality part): "
           f"{c['benchmark_s'] / 60:.1f} min."]
    doc = {"command": cmd, "checkpoint": args.checkpoint, "synthetic": True, "rgb": "proxy",
           "metrics": {"ties": "expected", "moment": list(MOMENT), "alignment": list(ALIGN)},
           "seeds": args.seeds, "minutes": args.minutes, "stride": args.stride, "fixed_choice_s": fixed_choice,
           "per_seed": per_seed, "aggregate": agg, "cost": cost, "how2sign_mini_plumbing": h2s}
    path = write_report(args.out, args.stem, md, doc)
    print("\n".join(md))
    print(f"wrote {path}")



# ---- How2Sign-mini: real clips placed on their source video's timeline (a plumbing check) ---------------------

SHARED = ROOT.parent / "shared" / "data"


def how2sign_mini_groups(shared: Path = SHARED) -> tuple[dict[str, list[dict]], str]:
    """Clips of ../shared/data/how2sign-mini that have realigned start/end seconds, grouped by source video (≥ 2
    clips, in time order) — or ({}, the reason when there are none)."""
    man, ann = shared / "how2sign-mini" / "manifest.csv", shared / "annotations"
    csvs = sorted(ann.glob("how2sign_realigned_*.csv")) if ann.is_dir() else []
    if not man.is_file() or not csvs:
        return {}, f"{shared} is absent (the How2Sign-mini clips and the realigned CSVs are needed)"
    with open(man, newline="") as f:
        clips = {r["id"]: r for r in csv.DictReader(f)}
    groups: dict[str, list[dict]] = {}
    for path in csvs:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                c = clips.get(r["SENTENCE_NAME"])
                if c is not None and (man.parent / c["file"]).is_file():
                    groups.setdefault(r["VIDEO_ID"], []).append(
                        {"id": c["id"], "file": man.parent / c["file"], "text": r["SENTENCE"],
                         "start": float(r["START_REALIGNED"]), "end": float(r["END_REALIGNED"])})
    groups = {k: sorted(v, key=lambda x: (x["start"], x["id"])) for k, v in sorted(groups.items()) if len(v) >= 2}
    return groups, "" if groups else "no How2Sign-mini clips have realigned times"


def compose_recording(clips: list[dict], out: Path, fps: float = 24.0, size: tuple[int, int] = (640, 360),
                      tail_s: float = 1.0) -> list[PlacedSentence]:
    """One video of a source's clips on its original timeline: each clip's frames from its realigned start second,
    for the clip's own length, cut where the next clip starts; black frames (no signer) in between. Streamed to
    ``ffmpeg`` frame by frame (memory: one clip). Returns where each clip's frames lie (the truth)."""
    w, h = size
    proc = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                             f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "mpeg4", "-q:v", "3", str(out)],
                            stdin=subprocess.PIPE)
    black = np.zeros((h, w, 3), np.uint8).tobytes()
    placed, t = [], 0
    try:
        for i, c in enumerate(clips):
            a = max(t, int(round(c["start"] * fps)))
            stop = int(round(clips[i + 1]["start"] * fps)) if i + 1 < len(clips) else None
            frames = read_video(c["file"], fps=fps, budget=Budget(max_short_side=h)).frames
            frames = frames[:None if stop is None else max(0, stop - a)]
            if len(frames) == 0:
                continue
            if frames.shape[1:3] != (h, w):
                frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
            proc.stdin.write(black * (a - t))
            proc.stdin.write(np.ascontiguousarray(frames).tobytes())
            t = a + len(frames)
            placed.append(PlacedSentence(c["id"], c["text"], a / fps, t / fps, a / fps, t / fps))
        proc.stdin.write(black * int(round(tail_s * fps)))
    finally:
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg could not write {out}")
    return placed


def how2sign_mini_plumbing(model, rgb_features: str, grid: Localiser, exact: Localiser, shared: Path = SHARED,
                           pose_stride: int = 2) -> dict:
    """Real How2Sign clips on their source's timeline → streaming extraction (MediaPipe, the checkpoint's RGB
    extractor) → coarse pass → localisation of every clip's sentence → the same metrics as the synthetic rows."""
    groups, reason = how2sign_mini_groups(shared)
    if not groups:
        return {"skipped": reason}
    ex = RecordingExtractor(RecordingConfig(pose_backend="mediapipe", pose_stride=pose_stride),
                            rgb_extractor=make_rgb_extractor(rgb_features, "cpu"))
    recs, runs, info = [], {"span grid": {}, "span grid + exact re-score": {}}, []
    with tempfile.TemporaryDirectory(prefix="seds-h2s-rec-") as tmp:
        for vid, clips in groups.items():
            path = Path(tmp) / f"{vid}.mp4"
            placed = compose_recording(clips, path)
            t0 = time.perf_counter()
            feats = ex.extract(path, meta={"id": vid})
            t_extract = time.perf_counter() - t0
            rec = SyntheticRecording(feats, placed)
            tl = grid.timeline(feats)
            for name, loc in (("span grid", grid), ("span grid + exact re-score", exact)):
                runs[name][vid] = run_localiser(loc, tl, rec)[0]
            recs.append(rec)
            covered = sum(p.end_s - p.start_s for p in placed) / rec.duration_s
            info.append({"video": vid, "clips": len(placed), "minutes": round(rec.duration_s / 60, 2),
                         "background_frame_acc": round(100 * (1 - covered), 1),
                         "windows": feats.num_clips, "signing_windows": int(feats.meta.get("signing_windows", 0)),
                         "extract_s": round(t_extract, 1)})
            print(f"  How2Sign-mini {vid}: {len(placed)} clips, {rec.duration_s:.0f} s, extraction {t_extract:.0f} s",
                  flush=True)
    return {"recordings": info, "metrics": {name: score_runs(r, recs) for name, r in runs.items()},
            "queries": sum(len(r.sentences) for r in recs), "pose_stride": pose_stride}


def how2sign_mini_report(args, model, cfg, grid: Localiser, exact: Localiser) -> None:
    """``--only-how2sign-mini``: the plumbing set alone, in its own results file."""
    h2s = how2sign_mini_plumbing(model, cfg.data.rgb_features, grid, exact, Path(args.how2sign_mini))
    cmd = "python benchmarks/bench_recordings.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    md = ["# Localisation in long recordings: How2Sign-mini plumbing set", "", f"Command: `{cmd}`  ",
          f"Checkpoint: `{args.checkpoint}`. Load average at the end: "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + " (2-core CPU shared with other jobs; no GPU figure yet). "
          "Ties: expected values under random tie-breaking."]
    md += how2sign_mini_md(h2s, cfg.data.rgb_features)
    path = write_report(args.out, f"{args.stem}_how2sign_mini", md,
                        {"command": cmd, "checkpoint": args.checkpoint, "synthetic_checkpoint": True,
                         "metrics": {"ties": "expected", "moment": list(MOMENT), "alignment": list(ALIGN)},
                         "how2sign_mini_plumbing": h2s})
    print("\n".join(md))
    print(f"wrote {path}")


def how2sign_mini_md(h2s: dict, rgb_features: str) -> list[str]:
    md = ["", "## How2Sign-mini on its original timeline (a mini-set plumbing check, not a result)", ""]
    if "skipped" in h2s:
        return md + [f"Skipped: {h2s['skipped']}."]
    recs = ", ".join(f"{r['video']} ({r['clips']} clips, {r['minutes']:.1f} min, {r['signing_windows']} of "
                     f"{r['windows']} windows with a signer, extraction {r['extract_s']:.0f} s)" for r in h2s["recordings"])
    md += [f"The val clips of ../shared/data/how2sign-mini that the realigned CSVs (../shared/data/annotations) place "
           f"in their source video, each source made into one recording: every clip's frames from its realigned start "
           f"second for the clip's own length (cut where the next clip starts), black frames without a signer between "
           f"them. Recordings: {recs}. Streaming extraction (MediaPipe Holistic, pose on 1 frame in "
           f"{h2s['pose_stride']}, RGB: {rgb_features}), then the same localisation and metrics as the synthetic recordings of recordings.md; the truth of "
           f"a sentence is where its clip's frames lie. {h2s['queries']} queries, one run. **The checkpoint was trained "
           "on synthetic cartoon signing with proxy RGB only: these numbers say that real recordings go through "
           "extraction, the coarse pass, localisation and scoring end to end — not how well real signing is "
           "localised.** For scale: labelling every frame as background gives a frame accuracy of "
           + " and ".join(f"{r['background_frame_acc']:.1f} %" for r in h2s["recordings"]) + ".", "",
           "| Method | Stream | R1@0.5 | R1@0.7 | mAP | F1@0.1 | F1@0.25 | F1@0.5 | frame acc | start off (s) | end off (s) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in h2s["metrics"].items():
        for s in ("fused", "pose", "rgb"):
            md.append(f"| {name} | {s} | " + " | ".join(f"{m[s][k]:.2f}" if k.endswith("_s") else f"{m[s][k]:.1f}"
                                                        for k in MOMENT + ALIGN) + " |")
    return md


if __name__ == "__main__":
    main()
