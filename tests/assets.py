"""Test fixture: a seconds-fast miniature of the demo assets (``seds.experiments.demo_assets``) — a small
synthetic test split in a feature store, a few rendered WebM videos and a random-init ``tiny`` checkpoint."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from seds.checkpoint import load_checkpoint, save_checkpoint
from seds.config import load_config
from seds.data.manifest import ManifestRow, load_manifest, write_manifest
from seds.data.store import FeatureStore
from seds.synthetic.signing import SyntheticConfig, SyntheticSignData
from seds.experiments.demo_assets import ROOT, VIDEO_SUFFIX, sentence_features, write_webm
from seds.losses import SEDSLoss
from seds.model import SEDS
from seds.retrieval.gallery import build_gallery, checkpoint_fingerprint


@dataclass
class TinyAssets:
    root: Path
    checkpoint: Path            # tiny random-init model (synthetic-proxy RGB), max_clips 16
    store: Path                 # feature store with every test-split sentence
    manifest: Path              # manifest_test.csv; the first ``n_videos`` rows have a video file
    videos: list[Path]
    data: object                # the SyntheticSignData
    specs: list                 # the test-split SentenceSpecs


def tiny_assets(out: str | os.PathLike, n_videos: int = 4, n_sentences: int = 12, seed: int = 0,
                max_clips: int = 16) -> TinyAssets:
    """A seconds-fast miniature of the demo assets: a small synthetic test split in a feature store
    (+ manifest), ``n_videos`` of it rendered to WebM, and a random-init ``tiny`` checkpoint."""
    out = Path(out)
    syn = SyntheticConfig(vocab_size=40, n_signers=(1, 1, 2), n_sentences=(2, 2, n_sentences), min_words=3,
                          max_words=5, seed=seed)
    data = SyntheticSignData(syn)
    specs = data.sentences("test")
    fs = FeatureStore(out / "store", create=True)
    rows, videos = [], []
    for i, spec in enumerate(specs):
        frames = data.render(spec)
        fs.save(spec.id, sentence_features(data, spec, max_clips, frames))
        video = ""
        if i < n_videos:
            video = str(write_webm(frames, out / "videos" / f"{spec.id}{VIDEO_SUFFIX}", syn.fps))
            videos.append(Path(video))
        rows.append(ManifestRow(spec.id, video, spec.text, "test", data.signers[spec.signer].id))
    manifest = write_manifest(rows, out / "store" / "manifest_test.csv")
    torch.manual_seed(seed)
    cfg = load_config(ROOT / "configs" / "synthetic_cpu.yaml",
                      ["model.preset=tiny", f"model.max_clips={max_clips}", f"data.store={out / 'store'}"])
    model = SEDS(cfg.model).eval()
    ckpt = save_checkpoint(out / "ckpt", model, cfg, SEDSLoss(cfg.loss, tau=cfg.model.tau))
    return TinyAssets(out, ckpt, out / "store", manifest, videos, data, specs)


def tiny_gallery(a: TinyAssets, videos_only: bool = False) -> Path:
    """A gallery at ``<a.root>/gallery`` for ``a``'s checkpoint over its manifest (feature cache on): every
    stored sentence becomes a video item, or with ``videos_only`` only the rows that have a video file."""
    model = load_checkpoint(a.checkpoint)[0]
    fs = FeatureStore(a.store)
    build_gallery(a.root / "gallery", model, checkpoint_fingerprint(a.checkpoint), list(load_manifest(a.manifest)),
                  lambda r: fs[r.id] if r.video or not videos_only else None, cache=True)
    return a.root / "gallery"
