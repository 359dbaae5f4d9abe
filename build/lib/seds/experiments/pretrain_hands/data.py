"""Hand-pose sequences for masked hand-pose pretraining: from feature stores and from real video folders
(MediaPipe keypoints), split by source video (see :mod:`seds.experiments.pretrain_hands`)."""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from seds.data.store import FeatureStore
from seds.extract.pose import make_pose_estimator
from seds.extract.video import read_video
from seds.keypoints import KeypointLayout, normalize_parts
from seds.model.hand_init import PretrainError


def hand_sequences(keypoints: np.ndarray, conf_threshold: float = 0.3, min_frames: int = 8,
                   min_present: float = 0.5) -> list[np.ndarray]:
    """Both hands of one video as normalized sequences ``(F, 21, 3)`` (x, y, confidence), the left
    mirrored, exactly as the pose encoder receives them. ``keypoints`` is raw ``(F, ≥49, 3)`` in the store
    layout (the first 49 points are the SEDS layout). Hands visible in fewer than ``min_present`` of the
    frames, or videos shorter than ``min_frames``, are skipped."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1] < 49 or kp.shape[2] != 3:
        raise PretrainError(f"keypoints must be (frames, ≥49, 3) in the store layout, got {kp.shape}")
    if len(kp) < min_frames:
        return []
    norm = normalize_parts(kp[:, :49], KeypointLayout(), conf_threshold=conf_threshold)
    sl = KeypointLayout().part_slices()
    out = []
    for part in ("left_hand", "right_hand"):
        h = norm[:, sl[part]]
        if (h[..., 2] > 0).any(1).mean() >= min_present:
            out.append(np.ascontiguousarray(h))
    return out


def sequences_from_store(store: str | Path, split: str | None = "train", limit: int | None = None) -> list[np.ndarray]:
    """Hand sequences of every video of a feature store split (labels are not used)."""

    root = Path(store)
    fs = FeatureStore(root)
    man = root / f"manifest_{split}.csv" if split else None
    if man is not None and man.exists():
        with open(man, newline="", encoding="utf-8") as f:
            ids = [r["id"] for r in csv.DictReader(f)]
    else:
        ids = fs.ids()
    out = []
    for vid in ids[:limit]:
        out += hand_sequences(fs[vid].keypoints)
    return out


def extract_pose_folder(videos: str | Path, out: str | Path, fps: float = 12.0, max_seconds: float = 6.0,
                        limit: int | None = None, progress: bool = True) -> list[dict]:
    """MediaPipe keypoints (store layout, raw pixels) of the videos of a folder — pose only, no RGB
    features. ``videos``: a folder with ``manifest.csv`` (``id, file, video_id, ...``; How2Sign-mini)
    or just video files. Writes ``<out>/<id>.npy`` + ``<out>/index.csv``; resumable (existing clips are
    skipped). Each clip is decoded at ``fps`` and cut after ``max_seconds``."""

    videos, out = Path(videos), Path(out)
    if not videos.is_dir():
        raise PretrainError(f"video folder {videos} not found")
    man = videos / "manifest.csv"
    if man.exists():
        with open(man, newline="", encoding="utf-8") as f:
            rows = [{"id": r["id"], "file": str(videos / r["file"]), "group": r.get("video_id") or r["id"]}
                    for r in csv.DictReader(f)]
    else:
        files = sorted(p for p in videos.rglob("*") if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm"))
        rows = [{"id": p.stem, "file": str(p), "group": p.stem} for p in files]
    if not rows:
        raise PretrainError(f"no videos in {videos}")
    rows = rows[:limit]
    out.mkdir(parents=True, exist_ok=True)
    est = None
    index = []
    t0 = time.time()
    for i, r in enumerate(rows):
        dst = out / f"{r['id']}.npy"
        if not dst.exists():
            est = est or make_pose_estimator("mediapipe")
            try:
                v = read_video(r["file"], fps=fps, max_seconds=max_seconds, trim_long=True)
            except Exception as e:          # a broken clip is skipped, never stops the run
                print(f"skip {r['id']}: {e}", file=sys.stderr)
                continue
            kp = est.store_keypoints(v.frames)
            np.save(dst.with_suffix(".tmp.npy"), kp)
            dst.with_suffix(".tmp.npy").replace(dst)
            if progress:
                print(f"[{i + 1}/{len(rows)}] {r['id']}: {len(kp)} frames ({time.time() - t0:.0f}s)", flush=True)
        index.append({"id": r["id"], "group": r["group"], "file": dst.name})
    with open(out / "index.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "group", "file"])
        w.writeheader()
        w.writerows(index)
    (out / "extract_info.json").write_text(json.dumps({"source": str(videos), "fps": fps,
                                                       "max_seconds": max_seconds, "pose": "mediapipe",
                                                       "clips": len(index)}, indent=1))
    if est is not None:
        est.close()
    return index


def real_split(pose_dir: str | Path, held_out: float = 0.2, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split extracted real clips into (pretraining, held-out) by source video (signer), so no held-out
    clip shares a source video with a pretraining clip."""
    pose_dir = Path(pose_dir)
    idx = pose_dir / "index.csv"
    if not idx.exists():
        raise PretrainError(f"{idx} not found: run `python -m seds.experiments.pretrain_hands extract` first")
    with open(idx, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    groups = sorted({r["group"] for r in rows})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(groups, max(1, int(round(held_out * len(groups)))), replace=False).tolist())
    return [r for r in rows if r["group"] not in held], [r for r in rows if r["group"] in held]


def sequences_from_rows(pose_dir: str | Path, rows: list[dict]) -> list[np.ndarray]:
    out = []
    for r in rows:
        out += hand_sequences(np.load(Path(pose_dir) / r["file"]))
    return out
