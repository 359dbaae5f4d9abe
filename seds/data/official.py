"""The authors' processed How2Sign features in this project: import into a feature store, read back
as their batches. ``python -m seds.data.official import ...``.

    python -m seds.data.official import --annotations How2Sign/data_h2/test.pkl \\
        --pose-dir How2Sign/RTMpose/Pose_all_24rates --rgb-dir How2Sign/I3D_features/test \\
        --split test --out features/h2s-official

writes one ``<new_video_name>.safetensors`` per video and ``manifest_<split>.csv`` into ``--out``, so
``python -m seds.evaluate|train|index build`` read it like any extracted store (failures, e.g. a
missing or unsafe pickle, go to ``failures_<split>.csv``; the run goes on). What a store file holds:

* ``keypoints`` (F, 87, 3): the pose file's keypoints, frames sorted by frame number, mapped from
  COCO-WholeBody 133 to the store layout (49 SEDS points + face + mouth, pixels of their 256 × 256
  frame, raw scores). Videos under 16 frames repeat their last frame up to 16 (as extraction does);
  ``meta["official_source_frames"]`` is the file's frame count, so the padding can be cut off;
* ``rgb`` (n, 1024): the I3D ``feature`` array unchanged (float32);
* ``clip_starts`` (n,): where the authors' n windows start, in the stored frame numbering (their
  windows run over the frames their hand filter keeps, so a stored window is the nearest span of
  raw frames, for this project's paper-variant model; the official batch recomputes its own).

The manifest keeps the annotation order (the authors' dataset order), ``id`` = ``new_video_name``,
``text`` = the sentence, and the extra column ``sentence_id`` (also in each file's meta): the official
evaluation protocol groups videos by it; the same text under two ids stays two sentences.

:class:`OfficialDataset` reads such a store back as :func:`~seds.data.official_batch.official_sample`
items (collate with :func:`official_collate`): exactly the authors' batch when the pose files hold
float32 keypoints. float64 files are rounded to float32 in the store, which moved hand coordinates by
at most 5e-5 px on synthetic files (and could flip a point whose score lies within float32 rounding
of a threshold); the files read in place are exact for both (the reference reader of
``tests/test_official_import.py``).
"""
from __future__ import annotations

import argparse
import csv
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from seds.data.dataset import FeatureDataset
from seds.data.features import VideoFeatures
from seds.data.manifest import Manifest, ManifestRow, write_manifest
from seds.data.official_batch import OfficialPreprocess, official_sample
from seds.data.official_format import OfficialFormatError, OfficialVideo, read_annotations, read_pose, read_rgb
from seds.data.store import FeatureStore
from seds.keypoints import coco_wholebody_to_seds

FORMAT = "seds-official"          # meta["source_format"] of imported files
STORE_EXTRA = ("face", "mouth")
FPS = 24.0                        # Pose_all_24rates


def store_features(keypoints: np.ndarray, frame_numbers: list[int] | None, rgb: np.ndarray,
                   cfg: OfficialPreprocess = OfficialPreprocess(), meta: dict | None = None,
                   name: str = "video") -> VideoFeatures:
    """One video in the authors' format → :class:`VideoFeatures` for the store (see the module doc)."""
    kp = np.asarray(keypoints)
    if frame_numbers is not None:
        order = np.argsort(np.asarray(frame_numbers), kind="stable")
        kp = kp[order]
    k87 = coco_wholebody_to_seds(kp, extra=STORE_EXTRA).astype(np.float32)
    if not np.isfinite(k87).all():
        raise OfficialFormatError(f"{name}: keypoints contain NaN/inf")
    sample = official_sample(k87, rgb, cfg, name=name)        # validates: hands found, n == windows
    n_src = len(k87)
    if n_src < cfg.window:
        k87 = np.concatenate([k87, np.repeat(k87[-1:], cfg.window - n_src, 0)])
    n = sample["n_clips"]
    starts = np.minimum(sample["frames"][sample["clip_starts"][:n]], len(k87) - cfg.window)
    info = {"source_format": FORMAT, "official_source_frames": int(n_src),
            "frame_width": int(cfg.image_size[0]), "frame_height": int(cfg.image_size[1]),   # the keypoints' pixel frame
            "official_kept_frames": int(len(sample["frames"])), "official_clips": int(n),
            "reordered_frames": bool(frame_numbers is not None and np.any(np.diff(frame_numbers) < 0))}
    return VideoFeatures(keypoints=k87, rgb=np.asarray(rgb, np.float32), clip_starts=starts, fps=FPS,
                         meta={**(meta or {}), **info})


def official_keypoints(feats: VideoFeatures) -> np.ndarray:
    """The stored keypoints without the padding added at import (store layout, (T, 87, 3))."""
    n = int(feats.meta.get("official_source_frames", feats.num_frames))
    return feats.keypoints[:n]


# --- import ---------------------------------------------------------------------------------------

@dataclass
class ImportSummary:
    split: str
    total: int
    imported: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)   # (id, error)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"split {self.split}: {self.total} videos — {self.imported} imported, {self.skipped} already "
                f"in the store, {len(self.failures)} failed; {self.seconds:.1f} s")


def manifest_rows(videos: list[OfficialVideo], split: str) -> list[ManifestRow]:
    return [ManifestRow(id=v.new_video_name, video="", text=v.text, split=split, signer="",
                        extra={"sentence_id": v.sentence_id, "video_name": v.video_name,
                               "num_frames": str(v.num_frames)}) for v in videos]


def import_official(annotations: str | os.PathLike, pose_dir: str | os.PathLike, rgb_dir: str | os.PathLike,
                    split: str, out: str | os.PathLike, cfg: OfficialPreprocess = OfficialPreprocess(),
                    limit: int | None = None, overwrite: bool = False) -> ImportSummary:
    """Import the videos of one annotation file into the store ``out`` (see the module doc)."""
    t0 = time.perf_counter()
    videos = read_annotations(annotations)[:limit]
    rows = manifest_rows(videos, split)
    manifest = Manifest(rows, source=str(annotations))     # checks ids are unique
    store = FeatureStore(out, create=True)
    store.clean_partial()
    summary = ImportSummary(split, len(videos))
    pose_dir, rgb_dir = Path(pose_dir), Path(rgb_dir)
    for v, row in zip(videos, rows):
        if store.has(row.id) and not overwrite:
            summary.skipped += 1
            continue
        pose_path, rgb_path = pose_dir / f"{v.new_video_name}.pkl", rgb_dir / f"{v.new_video_name}.pkl"
        try:
            pose = read_pose(pose_path)
            feats = store_features(pose.keypoints, pose.frame_numbers, read_rgb(rgb_path), cfg,
                                   meta={**row.as_dict(), "pose_file": str(pose_path), "rgb_file": str(rgb_path)},
                                   name=v.new_video_name)
            store.save(row.id, feats)
            summary.imported += 1
        except (OfficialFormatError, FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
            summary.failures.append((row.id, f"{type(e).__name__}: {e}"))
    write_manifest(manifest, Path(out) / f"manifest_{split}.csv")
    with open(Path(out) / f"failures_{split}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "error"])
        w.writerows(summary.failures)
    summary.seconds = time.perf_counter() - t0
    return summary


# --- reading back ---------------------------------------------------------------------------------

class OfficialDataset(Dataset):
    """Videos of a store imported by :func:`import_official`, as the authors' per-video samples.

    Each item is :func:`official_sample`'s dict plus ``id``, ``sentence_id`` and ``text``; batch with
    :func:`official_collate`. Videos keep the manifest order."""

    def __init__(self, store_root: str | os.PathLike, manifest: Manifest | str | os.PathLike,
                 split: str | None = None, cfg: OfficialPreprocess = OfficialPreprocess(), missing: str = "error"):
        # the store/manifest handling (split selection, absent videos) is FeatureDataset's
        self.videos = FeatureDataset(store_root, manifest, split=split, normalize=False, missing=missing)
        self.store, self.rows, self.cfg = self.videos.store, self.videos.rows, cfg

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def ids(self) -> list[str]:
        return self.videos.ids

    @property
    def texts(self) -> list[str]:
        return self.videos.texts

    @property
    def sentence_ids(self) -> list[str]:
        """Per video; falls back to the text for stores without a ``sentence_id`` column."""
        return [r.extra.get("sentence_id") or r.text for r in self.rows]

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        feats = self.store[row.id]
        s = official_sample(official_keypoints(feats), feats.rgb, self.cfg, name=row.id)
        return {**s, "id": row.id, "sentence_id": row.extra.get("sentence_id") or row.text, "text": row.text}


def official_collate(items: list[dict]) -> dict:
    """Stack :func:`official_sample` outputs (plus optional ``id``/``sentence_id``/``text``), zero-padding
    poses in time to the longest video."""
    if not items:
        raise ValueError("official_collate needs at least one item")
    t_max = max(len(it["body"]) for it in items)
    batch = {}
    for k, n in (("left", 21), ("right", 21), ("body", 7)):
        x = np.zeros((len(items), t_max, n, 2), np.float32)
        for b, it in enumerate(items):
            x[b, :len(it[k])] = it[k]
        batch[k] = torch.from_numpy(x)
    for k in ("clip_starts", "clip_mask", "rgb"):
        batch[k] = torch.from_numpy(np.stack([it[k] for it in items]))
    batch["ids"] = [it.get("id", "") for it in items]
    batch["sentence_ids"] = [it.get("sentence_id", "") for it in items]
    batch["text"] = [it.get("text", "") for it in items]
    return batch


# --- command line -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seds.data.official",
                                description="Import the SEDS authors' processed features into a feature store.")
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("import", help="annotation pkl + RTMPose keypoint pkls + I3D feature pkls → a store")
    i.add_argument("--annotations", required=True, help="data_h2/<split>.pkl")
    i.add_argument("--pose-dir", required=True, help="RTMpose/Pose_all_24rates (one <new_video_name>.pkl each)")
    i.add_argument("--rgb-dir", required=True, help="I3D_features/<split> (one <new_video_name>.pkl each)")
    i.add_argument("--split", required=True, help="split name written to the manifest (e.g. test)")
    i.add_argument("--out", required=True, help="feature store directory")
    i.add_argument("--limit", type=int, default=None, help="only the first N videos")
    i.add_argument("--overwrite", action="store_true", help="re-import videos already in the store")
    return p


def main(argv: list[str] | None = None) -> int:
    """0: all imported; 1: some videos failed (listed); 2: bad arguments / unreadable annotations."""
    args = build_parser().parse_args(argv)
    try:
        summary = import_official(args.annotations, args.pose_dir, args.rgb_dir, args.split, args.out,
                                  limit=args.limit, overwrite=args.overwrite)
    except (OfficialFormatError, FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary)
    for vid, err in summary.failures[:10]:
        print(f"  failed {vid}: {err}", file=sys.stderr)
    if summary.failures:
        print(f"{len(summary.failures)} failure(s) listed in {Path(args.out) / f'failures_{args.split}.csv'}")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
