"""Pose at lower cost (issue 17): the keypoint error of running the pose backend on every 2nd / 3rd frame and
interpolating the others (:mod:`seds.extract.pose_stride`), against running it on every frame, next to
MediaPipe's own frame-to-frame jitter, on real How2Sign-mini clips.

    python benchmarks/bench_pose_stride.py                       # 8 clips, ≤ 5 s each, strides 2 and 3
    python benchmarks/bench_pose_stride.py --clips 16 --seconds 10 --strides 2 3 4

Clips: the first clip of each of the first ``--clips`` source videos of ``manifest.csv`` (different signers and
sessions), decoded at 24 fps and trimmed to ``--seconds``. Per clip MediaPipe Holistic runs once on every frame
(the reference) and once per stride on the subsampled sequence (its tracking runs across that sequence, as in
the app). Keypoints are compared in the store layout (``seds.keypoints``: body 7, hands 21 each, face 18,
mouth 20 points), in pixels of the decoded frames:

* **error**: per point, |strided − reference| over the point-frames where both have the point (confidence > 0);
  split into the frames the backend ran on (``processed``: differences come only from the different tracking
  history) and the interpolated ones;
* **detection agreement** (hands): fraction of frames where the reference has the hand (``FrameFilter``'s rule:
  ≥ 10 of 21 points at confidence ≥ 0.3) and the strided run does not, and vice versa;
* **jitter** of the reference: the mean step |p_t − p_{t−1}| (motion + jitter) and, with motion at constant
  velocity removed, the midpoint residual |p_t − (p_{t−1} + p_{t+1})/2| (jitter + acceleration: an upper bound
  of jitter, and exactly what stride 2 would cost if the processed frames matched the reference);
* **speed**: wall and CPU seconds of the pose stage per video frame (CPU time counts MediaPipe's own threads).

Decision rule (issue 17): the app uses stride 2 only if each hand's mean stride-2 error ≤ that hand's mean
midpoint-residual jitter. Writes ``<out>.json`` and ``<out>.md`` (default ``benchmarks/results/pose_stride``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from seds.data.features import STORE_LAYOUT  # noqa: E402
from seds.extract.pose import FrameFilter, make_pose_estimator  # noqa: E402
from seds.extract.pose_stride import stride_indices, with_stride  # noqa: E402
from seds.extract.video import read_video  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "how2sign-mini"
PARTS = STORE_LAYOUT.part_slices()          # body, left_hand, right_hand, face, mouth
HANDS = ("left_hand", "right_hand")


def pick_clips(n: int, data: Path = DATA) -> list[Path]:
    """The first clip of each of the first ``n`` source videos in the manifest."""
    seen, out = set(), []
    with open(data / "manifest.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["video_id"] not in seen:
                seen.add(row["video_id"])
                out.append(data / row["file"])
            if len(out) == n:
                break
    return out


def point_errors(ref: np.ndarray, est: np.ndarray, sl: slice, frames: np.ndarray) -> np.ndarray:
    """Pixel distances of the points of part ``sl`` on ``frames`` (bool mask) where both have the point."""
    r, e = ref[:, sl], est[:, sl]
    ok = (r[..., 2] > 0) & (e[..., 2] > 0) & frames[:, None]
    return np.linalg.norm(r[..., :2] - e[..., :2], axis=-1)[ok]


def jitters(ref: np.ndarray, sl: slice) -> tuple[np.ndarray, np.ndarray]:
    """(steps |p_t − p_{t−1}|, midpoint residuals |p_t − (p_{t−1}+p_{t+1})/2|) of part ``sl``, where defined."""
    p = ref[:, sl]
    ok, xy = p[..., 2] > 0, p[..., :2]
    step = np.linalg.norm(xy[1:] - xy[:-1], axis=-1)[ok[1:] & ok[:-1]]
    mid = np.linalg.norm(xy[1:-1] - (xy[:-2] + xy[2:]) / 2, axis=-1)[ok[1:-1] & ok[:-2] & ok[2:]]
    return step, mid


def hand_present(k: np.ndarray, sl: slice, rule: FrameFilter = FrameFilter()) -> np.ndarray:
    return (k[:, sl, 2] >= rule.conf).sum(1) >= rule.min_hand_points


def stats(d: np.ndarray) -> dict:
    if len(d) == 0:
        return {"mean": None, "median": None, "p90": None, "n": 0}
    return {"mean": round(float(d.mean()), 3), "median": round(float(np.median(d)), 3),
            "p90": round(float(np.percentile(d, 90)), 3), "n": int(len(d))}


def timed(est, frames: np.ndarray) -> tuple[np.ndarray, float, float]:
    w, c = time.perf_counter(), time.process_time()
    k = est(frames).to_store()
    return k, time.perf_counter() - w, time.process_time() - c


def run(clips: list[Path], seconds: float, strides: list[int]) -> dict:
    base = make_pose_estimator("mediapipe")
    runs = {s: with_stride(base, s) for s in [1] + strides}
    errs = {s: {p: {"all": [], "processed": [], "interpolated": []} for p in PARTS} for s in strides}
    miss = {s: {h: [0, 0, 0, 0] for h in HANDS} for s in strides}   # ref-only, est-only, ref frames, est frames
    jit = {p: ([], []) for p in PARTS}
    speed = {s: {"video_frames": 0, "backend_frames": 0, "wall_s": 0.0, "cpu_s": 0.0} for s in runs}
    hand_sizes, per_clip = [], []
    sizes = set()
    for i, clip in enumerate(clips):
        v = read_video(clip, fps=24.0, max_seconds=seconds, trim_long=True)
        frames = v.frames
        if i == 0:
            base(frames[:2])                                    # warm-up: graph start
        n = len(frames)
        sizes.add((int(frames.shape[2]), int(frames.shape[1])))
        out = {}
        for s, est in runs.items():
            out[s], wall, cpu = timed(est, frames)
            sp = speed[s]
            sp["video_frames"] += n
            sp["backend_frames"] += len(stride_indices(n, s))
            sp["wall_s"] += wall
            sp["cpu_s"] += cpu
        ref = out[1]
        for p, sl in PARTS.items():
            a, b = jitters(ref, sl)
            jit[p][0].append(a)
            jit[p][1].append(b)
        for h in HANDS:
            xy, ok = ref[:, PARTS[h], :2], hand_present(ref, PARTS[h])
            if ok.any():
                ext = xy[ok].max(1) - xy[ok].min(1)
                hand_sizes.append(np.linalg.norm(ext, axis=-1))
        clip_row = {"clip": clip.stem, "frames": n}
        for s in strides:
            grid = np.zeros(n, bool)
            grid[stride_indices(n, s)] = True
            for p, sl in PARTS.items():
                for name, mask in (("all", np.ones(n, bool)), ("processed", grid), ("interpolated", ~grid)):
                    errs[s][p][name].append(point_errors(ref, out[s], sl, mask))
            for h in HANDS:
                r, e = hand_present(ref, PARTS[h]), hand_present(out[s], PARTS[h])
                m = miss[s][h]
                m[0] += int((r & ~e).sum())
                m[1] += int((e & ~r).sum())
                m[2] += int(r.sum())
                m[3] += int(e.sum())
            clip_row[f"stride{s}_hand_error_mean"] = {h: stats(errs[s][h]["all"][-1])["mean"] for h in HANDS}
        per_clip.append(clip_row)
        print(f"{clip.stem}: {n} frames, " + ", ".join(
            f"stride {s} {speed[s]['wall_s']:.1f} s" for s in runs), file=sys.stderr, flush=True)
    base.close()
    cat = np.concatenate
    res = {
        "frame_sizes": sorted(sizes),
        "error_px": {str(s): {p: {k: stats(cat(v)) for k, v in d.items()} for p, d in errs[s].items()}
                     for s in strides},
        "hand_detection": {str(s): {h: {"ref_frames": m[2], "strided_frames": m[3],
                                        "ref_only": round(m[0] / max(m[2], 1), 4),
                                        "strided_only": round(m[1] / max(m[3], 1), 4)}
                                    for h, m in miss[s].items()} for s in strides},
        "jitter_px": {p: {"step": stats(cat(a)), "midpoint": stats(cat(b))} for p, (a, b) in jit.items()},
        "hand_size_px": stats(cat(hand_sizes)) if hand_sizes else None,
        "speed": {str(s): {**sp, "wall_s": round(sp["wall_s"], 2), "cpu_s": round(sp["cpu_s"], 2),
                           "video_frames_per_s": round(sp["video_frames"] / sp["wall_s"], 1),
                           "cpu_s_per_video_frame": round(sp["cpu_s"] / sp["video_frames"], 4)}
                  for s, sp in speed.items()},
        "per_clip": per_clip,
    }
    res["decision"] = decide(res, strides)
    return res


def decide(res: dict, strides: list[int]) -> dict:
    """Stride 2 in the app only if each hand's mean stride-2 error (all frames) ≤ its mean midpoint-residual
    jitter; the interpolated frames alone and the hand-detection loss are reported beside it."""
    if 2 not in strides:
        return {"app_stride": 1, "adopted": False, "why": "stride 2 not measured"}
    err, jit, det = res["error_px"]["2"], res["jitter_px"], res["hand_detection"]["2"]
    rows = {h: (err[h]["all"]["mean"], err[h]["interpolated"]["mean"], jit[h]["midpoint"]["mean"]) for h in HANDS}
    ok = all(None not in (e, j) and e <= j for e, _, j in rows.values())

    def cmp(a, b):
        return "≤" if a <= b else ">"
    why = "; ".join(f"{h.replace('_', ' ')}: stride-2 error {e:.2f} px {cmp(e, j)} jitter {j:.2f} px (interpolated "
                    f"frames alone {i:.2f} px {cmp(i, j)} jitter; hand lost on {100 * det[h]['ref_only']:.1f} % of "
                    "the frames that have it every frame)" for h, (e, i, j) in rows.items() if None not in (e, i, j))
    return {"app_stride": 2 if ok else 1, "adopted": ok, "why": why}


def fmt(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def markdown(res: dict, meta: dict) -> str:
    strides = [int(s) for s in res["error_px"]]
    lines = ["# Pose stride: keypoint error of pose on every s-th frame + interpolation vs every frame",
             "", f"`{meta['command']}` · {meta['date']} · {meta['platform']}, {meta['cpus']} CPUs, "
             f"OMP_NUM_THREADS={meta['omp_threads']}; load average {meta['load_start']} at the start, "
             f"{meta['load_end']} at the end.", "",
             f"**How2Sign-mini, {meta['clips']} clips (≤ {meta['seconds']:g} s each, {meta['frames']} frames at "
             f"24 fps, {' / '.join(f'{w}×{h}' for w, h in res['frame_sizes'])}), MediaPipe {meta['mediapipe']} "
             "Holistic, CPU, machine shared with a background benchmark.** Pixels of the decoded frames; the median "
             f"hand box diagonal is {fmt(res['hand_size_px']['median'], 1) if res['hand_size_px'] else '–'} px.", "",
             "## Error against pose on every frame (px; point-frames where both have the point)", "",
             "| stride | part | mean | median | p90 | mean, processed frames | mean, interpolated frames | n |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in strides:
        for p, d in res["error_px"][str(s)].items():
            a = d["all"]
            lines.append(f"| {s} | {p} | {fmt(a['mean'])} | {fmt(a['median'])} | {fmt(a['p90'])} | "
                         f"{fmt(d['processed']['mean'])} | {fmt(d['interpolated']['mean'])} | {a['n']:,} |")
    lines += ["", "## MediaPipe's own frame-to-frame jitter (every-frame run, px)", "",
              "| part | step mean | step median | midpoint residual mean | midpoint residual median |",
              "|---|---:|---:|---:|---:|"]
    for p, d in res["jitter_px"].items():
        lines.append(f"| {p} | {fmt(d['step']['mean'])} | {fmt(d['step']['median'])} | "
                     f"{fmt(d['midpoint']['mean'])} | {fmt(d['midpoint']['median'])} |")
    lines += ["", "Step: |p_t − p_{t−1}| (motion + jitter). Midpoint residual: |p_t − (p_{t−1} + p_{t+1})/2| — "
              "constant-velocity motion removed; what is left is jitter plus real acceleration, so it is an upper "
              "bound of the jitter.", "",
              "## Hand detection agreement", "",
              "| stride | hand | reference frames with the hand | strided frames with it | "
              "reference has it, strided not | strided has it, reference not |", "|---:|---|---:|---:|---:|---:|"]
    for s in strides:
        for h, d in res["hand_detection"][str(s)].items():
            lines.append(f"| {s} | {h} | {d['ref_frames']} | {d['strided_frames']} | {100 * d['ref_only']:.1f} % | "
                         f"{100 * d['strided_only']:.1f} % |")
    lines += ["", "(fractions of the reference's / the strided run's frames with the hand; FrameFilter's rule: "
              "≥ 10 of 21 points at confidence ≥ 0.3)", "", "## Speed of the pose stage", "",
              "| stride | video frames | backend frames | wall s | video frames/s | CPU s | CPU-s per video frame |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for s, d in res["speed"].items():
        lines.append(f"| {s} | {d['video_frames']} | {d['backend_frames']} | {d['wall_s']:.1f} | "
                     f"{d['video_frames_per_s']:.1f} | {d['cpu_s']:.1f} | {d['cpu_s_per_video_frame']:.4f} |")
    dec = res["decision"]
    lines += ["", "## Decision", "",
              f"Rule (issue 17): use stride 2 in the app only if each hand's mean stride-2 error ≤ its mean midpoint "
              f"residual jitter. {dec['why']} → **app default pose stride {dec['app_stride']}**"
              + (" (adopted)." if dec.get("adopted") else " (not adopted)."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=8, help="number of clips (one per source video)")
    ap.add_argument("--seconds", type=float, default=5.0, help="trim each clip to this")
    ap.add_argument("--strides", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--data", default=str(DATA), help="How2Sign-mini folder (manifest.csv + clips/)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pose_stride"), help="output stem")
    args = ap.parse_args(argv)
    if any(s < 2 for s in args.strides):
        ap.error("--strides: each stride must be ≥ 2 (stride 1 is the reference)")
    data = Path(args.data)
    if not (data / "manifest.csv").is_file():
        raise SystemExit(f"How2Sign-mini not found: {data}/manifest.csv")
    clips = pick_clips(args.clips, data)
    import mediapipe
    load0 = round(os.getloadavg()[0], 2)
    res = run(clips, args.seconds, sorted(set(args.strides)))
    meta = {"command": "python benchmarks/bench_pose_stride.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "platform": platform.platform(),
            "cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            "mediapipe": mediapipe.__version__, "clips": len(clips), "seconds": args.seconds,
            "frames": res["speed"]["1"]["video_frames"], "load_start": load0,
            "load_end": round(os.getloadavg()[0], 2)}
    meta["command"] = meta["command"].rstrip()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, **res}, indent=2) + "\n")
    md = markdown(res, meta)
    out.with_suffix(".md").write_text(md)
    print(md)
    return res


if __name__ == "__main__":
    main()
