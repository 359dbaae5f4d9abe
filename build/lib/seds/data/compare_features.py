"""``python -m seds.data.compare_features A B``: how far two feature sets of the same videos are apart.

``A`` and ``B`` are each a feature store (a folder of ``*.safetensors``, e.g. from ``python -m
seds.extract`` or ``python -m seds.data.official import``) or a folder in the SEDS authors' layout
(``RTMpose/Pose_all_24rates/*.pkl`` + ``I3D_features/<split>/*.pkl``, e.g. their release or ``python -m
seds.extract --format official``). Videos are matched by id (file stem).

Per video and in summary (mean over videos):

* keypoint error per part, ``body`` (7 points), ``left_hand``, ``right_hand`` (21 each): the mean
  Euclidean distance in pixels between the two sets' points, over frames 0..min(T_A, T_B)-1 and points
  whose score is above ``--min-score`` in both (pixels of each file's own frame: 256 × 256 for the
  authors' files, source pixels for an extracted store — compare like with like);
* ``visible``: the fraction of those (frame, point) pairs visible in both, and the frame counts;
* I3D feature cosine: the mean over windows 0..min(n_A, n_B)-1 of cos(f_A[i], f_B[i]).

Frame and window counts that differ are reported (``T``/``n`` columns): then the comparison covers
the common prefix, which is only meaningful if both sets start at the same frame.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import sys
from pathlib import Path

import numpy as np

from seds.data.official_format import POSE_SUBDIR, RGB_SUBDIR, read_pose, read_rgb
from seds.data.store import SUFFIX, FeatureStore, load_features
from seds.keypoints import BODY, LEFT_HAND, RIGHT_HAND, coco_wholebody_to_seds

PARTS = {"body": BODY, "left_hand": LEFT_HAND, "right_hand": RIGHT_HAND}


class FeatureSet:
    """Uniform read access to a store or an authors'-layout folder: id → (keypoints (T, 49, 3), rgb)."""

    def __init__(self, root: str | os.PathLike, split: str | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"feature set not found: {self.root}")
        pose_dir = self.root / POSE_SUBDIR
        if pose_dir.is_dir():
            self.kind = "official"
            self.pose_dir = pose_dir
            self.rgb_dir = self._rgb_dir(split)
            self._ids = sorted(p.stem for p in pose_dir.glob("*.pkl"))
        elif any(self.root.glob(f"*{SUFFIX}")):
            self.kind = "store"
            self.store = FeatureStore(self.root)
            self._ids = self.store.ids()
        else:
            raise FileNotFoundError(f"{self.root} is neither a feature store (*{SUFFIX}) nor a folder in the "
                                    f"authors' layout ({POSE_SUBDIR}/*.pkl)")

    def _rgb_dir(self, split: str | None) -> Path | None:
        base = self.root / RGB_SUBDIR
        if split is not None:
            return base / split
        subs = sorted(d for d in base.iterdir() if d.is_dir()) if base.is_dir() else []
        if len(subs) > 1:
            raise ValueError(f"{base} holds several splits {[d.name for d in subs]}; choose one with --split")
        return subs[0] if subs else None

    def ids(self) -> list[str]:
        return self._ids

    def get(self, vid: str) -> tuple[np.ndarray, np.ndarray | None]:
        if self.kind == "store":
            f = load_features(self.store.path_for(vid))
            n = int(f.meta.get("official_source_frames", f.num_frames))   # imported: drop the padding
            return f.keypoints[:n, :49], f.rgb
        pose = read_pose(self.pose_dir / f"{vid}.pkl")
        kp = pose.keypoints[np.argsort(pose.frame_numbers, kind="stable")]
        rgb_path = self.rgb_dir / f"{vid}.pkl" if self.rgb_dir is not None else None
        rgb = read_rgb(rgb_path) if rgb_path is not None and rgb_path.is_file() else None
        return coco_wholebody_to_seds(kp).astype(np.float32), rgb


def keypoint_errors(a: np.ndarray, b: np.ndarray, min_score: float = 0.0) -> dict[str, dict]:
    """Per part: mean pixel distance over (frame, point) pairs visible in both, and that fraction."""
    t = min(len(a), len(b))
    out = {}
    for name, sl in PARTS.items():
        pa, pb = a[:t, sl], b[:t, sl]
        both = (pa[..., 2] > min_score) & (pb[..., 2] > min_score)
        d = np.linalg.norm(pa[..., :2].astype(np.float64) - pb[..., :2], axis=-1)[both]
        out[name] = {"px": float(d.mean()) if d.size else math.nan, "visible": float(both.mean()) if both.size else 0.0}
    return out


def feature_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine between matching rows of two (n, D) feature arrays (common prefix)."""
    n = min(len(a), len(b))
    if n == 0:
        return math.nan
    x, y = a[:n].astype(np.float64), b[:n].astype(np.float64)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    return float(np.mean(np.sum(x * y, axis=1) / np.maximum(den, 1e-12)))


def compare(a: FeatureSet, b: FeatureSet, min_score: float = 0.0) -> dict:
    common = sorted(set(a.ids()) & set(b.ids()))
    videos = {}
    for vid in common:
        ka, ra = a.get(vid)
        kb, rb = b.get(vid)
        row = {"T": [len(ka), len(kb)], **{p: e for p, e in keypoint_errors(ka, kb, min_score).items()}}
        if ra is not None and rb is not None:
            row["n"] = [len(ra), len(rb)]
            row["cosine"] = feature_cosine(ra, rb)
        videos[vid] = row
    summary = {}
    for p in PARTS:
        vals = [v[p]["px"] for v in videos.values() if not math.isnan(v[p]["px"])]
        summary[p] = float(np.mean(vals)) if vals else math.nan
    cos = [v["cosine"] for v in videos.values() if "cosine" in v and not math.isnan(v["cosine"])]
    summary["cosine"] = float(np.mean(cos)) if cos else math.nan
    summary["videos"] = len(common)
    summary["frame_count_differs"] = sum(v["T"][0] != v["T"][1] for v in videos.values())
    return {"a": str(a.root), "b": str(b.root), "videos": videos, "summary": summary,
            "only_in_a": sorted(set(a.ids()) - set(b.ids())), "only_in_b": sorted(set(b.ids()) - set(a.ids()))}


def format_report(r: dict) -> str:
    def f(x):
        return "   n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:6.2f}"

    lines = [f"A = {r['a']}", f"B = {r['b']}",
             f"{'video':40s} {'T_A/T_B':>11s} {'body px':>8s} {'left px':>8s} {'right px':>8s} "
             f"{'n_A/n_B':>9s} {'cosine':>7s}"]
    for vid, v in r["videos"].items():
        n = f"{v['n'][0]}/{v['n'][1]}" if "n" in v else "-"
        cos = f"{v['cosine']:7.4f}" if "cosine" in v else "    n/a"
        lines.append(f"{vid[:40]:40s} {v['T'][0]:>5d}/{v['T'][1]:<5d} {f(v['body']['px']):>8s} "
                     f"{f(v['left_hand']['px']):>8s} {f(v['right_hand']['px']):>8s} {n:>9s} {cos}")
    s = r["summary"]
    cos = "n/a" if math.isnan(s["cosine"]) else f"{s['cosine']:.4f}"
    lines.append(f"summary over {s['videos']} videos: keypoint error body {f(s['body']).strip()} px, left hand "
                 f"{f(s['left_hand']).strip()} px, right hand {f(s['right_hand']).strip()} px; I3D cosine {cos}; "
                 f"{s['frame_count_differs']} with different frame counts")
    for side in ("a", "b"):
        if r[f"only_in_{side}"]:
            only = r[f"only_in_{side}"]
            lines.append(f"{len(only)} video(s) only in {side.upper()}, e.g. {only[:3]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seds.data.compare_features", description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="feature store or folder in the authors' layout")
    ap.add_argument("b", help="feature store or folder in the authors' layout")
    ap.add_argument("--split", default=None, help="I3D_features/<split> of authors'-layout folders")
    ap.add_argument("--min-score", type=float, default=0.0, help="points at or below this score are not compared")
    ap.add_argument("--json", default=None, help="also write the per-video report here")
    args = ap.parse_args(argv)
    try:
        r = compare(FeatureSet(args.a, args.split), FeatureSet(args.b, args.split), args.min_score)
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not r["videos"]:
        print(f"error: no video id is in both {args.a} and {args.b}", file=sys.stderr)
        return 2
    print(format_report(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
