"""A small served setup of the `official` variant for the app/index tests: a random-weight official checkpoint of
reduced size written in the authors' checkpoint layout and converted by ``python -m seds.convert official``, a
store imported from files in the authors' formats (``tests.official_synthetic``) and a gallery built from it
by ``python -m seds.index build``. Synthetic, random weights: no score here means anything about signing.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

import seds.convert
from seds.config import Config, LossConfig, model_config
from seds.data.official import import_official
from seds.data.official_format import OfficialPaths
from tests.official_synthetic import write_official_synthetic
from seds.index import main as index_main
from seds.model import SEDS
from tests.test_convert import official_layout

# the official architecture at reduced width/depth (1-layer 64-wide token towers; the CLIP text tower and the
# SignBERT pose encoder keep their size); max_clips stays 64: the official model needs exactly 64 clip slots
REDUCED = ["pose_transformer.width=64", "pose_transformer.layers=1", "pose_transformer.heads=2",
           "rgb_transformer.width=64", "rgb_transformer.layers=1", "rgb_transformer.heads=2",
           "fusion.heads=2", "fusion.ff=64", "dim=64"]
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
MINI = SHARED / "data" / "how2sign-mini" / "clips"


@dataclass
class OfficialApp:
    root: Path
    checkpoint: Path
    store: Path
    manifest: Path
    gallery: Path
    videos: dict            # gallery video id → video file (How2Sign-mini clips standing in for the videos)


def reduced_config() -> Config:
    cfg = Config(model=model_config("official", REDUCED), loss=LossConfig(alpha=1.0))
    cfg.data.dataset = "how2sign"
    return cfg


def official_app_assets(root: Path, monkeypatch, seed: int = 0, with_videos: bool = True) -> OfficialApp:
    root = Path(root)
    torch.manual_seed(seed)
    cfg = reduced_config()
    sd = official_layout(SEDS(cfg.model).eval())
    src = root / "h2s_random_official.bin"
    torch.save(sd, src)
    monkeypatch.setattr(seds.convert, "official_config", lambda dataset="how2sign": reduced_config())
    ckpt = root / "seds-official-random"
    assert seds.convert.main(["official", str(src), "--out", str(ckpt)]) == 0
    data = root / "How2Sign"
    write_official_synthetic(data, "test")
    paths = OfficialPaths.under(data, "test")
    store = root / "store"
    summary = import_official(data / "data_h2" / "test.pkl", paths.pose_dir, paths.rgb_dir, "test", store)
    assert not summary.failures, summary.failures
    manifest = store / "manifest_test.csv"
    videos = {}
    clips = sorted(MINI.glob("*.mp4")) if with_videos and MINI.is_dir() else []
    if clips:      # give each gallery video a playable file (its features stay the imported ones)
        with open(manifest, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for row, clip in zip(rows, clips):
            row["video"] = str(clip.resolve())
            videos[row["id"]] = clip.resolve()
        manifest = root / "manifest_test_videos.csv"
        with open(manifest, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    gallery = root / "gallery"
    assert index_main(["build", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--store", str(store),
                       "--out", str(gallery), "--cache", "--device", "cpu"]) == 0
    return OfficialApp(root, ckpt, store, manifest, gallery, videos)
