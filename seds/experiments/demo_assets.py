"""``python -m seds.experiments.demo_assets``: (re)make the app's default checkpoint and example gallery.

What it makes (deterministic functions of ``configs/demo.yaml``'s ``assets`` section, for a given
torch version and thread count):

1. a feature store of a *small* synthetic signing benchmark (:mod:`seds.synthetic.signing`: generated
   keypoints + the **proxy** RGB encoder, not I3D) under ``runs/demo-assets/store`` (not committed);
2. ``checkpoints/demo/``: the ``small`` SEDS model with the hashed word encoder, trained on it
   (``seds.train``; selected on the validation split) and saved in float16 (≈ 24 MB);
3. ``examples/``: ``videos/`` — test-split sentences rendered as small VP9 WebM files (browser-playable,
   read back by decord/OpenCV) — and ``gallery/`` — a gallery (:mod:`seds.retrieval.gallery`) of those videos and of
   every test-split sentence, with a feature cache keyed by each video file's SHA-256, so that the app
   uses the generator's keypoints for them: MediaPipe cannot find a cartoon signer.

The checkpoint has seen synthetic data only: its retrieval results on real signing mean nothing, and
the app says so. ``--skip-train`` rebuilds ``examples/`` with the existing checkpoint.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import cv2
import torch

from seds.checkpoint import load_checkpoint, save_checkpoint
from seds.clips import pad_frames, select_clip_starts
from seds.config import ConfigError, from_dict, load_config, read_yaml_mapping
from seds.data.features import VideoFeatures
from seds.data.manifest import ManifestRow
from seds.data.store import FeatureStore
from seds.synthetic.signing import PROXY_RGB_NOTE, SPLITS, SyntheticConfig, SyntheticSignData
from seds.synthetic.store import write_chunk_manifests
from seds.evaluate import evaluate_model
from seds.extract.proxy_rgb import rgb_proxy_features
from seds.extract.video import probe
from seds.extract.writer import write_video
from seds.retrieval.gallery import build_gallery, checkpoint_fingerprint
from seds.train import train
from seds.variants import build_dataset

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
VIDEO_SUFFIX = ".webm"
VIDEO_FOURCC = "VP90"            # VP9 in WebM: plays in every browser, OpenCV's FFmpeg writes it


class DemoAssetsError(RuntimeError):
    """The demo assets cannot be made (the message says which step failed)."""


@dataclass
class AssetsConfig:
    """The ``assets`` section of ``configs/demo.yaml`` (see the comments there)."""
    synthetic: dict = field(default_factory=dict)
    max_clips: int = 32
    train_config: str = "configs/synthetic_cpu.yaml"
    train_overrides: tuple[str, ...] = ()
    gallery_videos: int = 24
    ui_examples: int = 8
    checkpoint_dtype: str = "float16"

    def __post_init__(self):
        self.train_overrides = tuple(self.train_overrides)
        if not 1 <= self.max_clips <= 64:
            raise ConfigError(f"max_clips: must be in [1, 64], got {self.max_clips}")
        if self.gallery_videos < 1 or not 0 <= self.ui_examples <= self.gallery_videos:
            raise ConfigError("gallery_videos/ui_examples: need 1 ≤ gallery_videos and 0 ≤ ui_examples ≤ "
                              f"gallery_videos, got {self.gallery_videos}/{self.ui_examples}")
        if self.checkpoint_dtype not in ("float16", "bfloat16", "float32"):
            raise ConfigError(f"checkpoint_dtype: {self.checkpoint_dtype!r} is not float16, bfloat16 or float32")


def read_demo_yaml(path: str | os.PathLike = DEMO_CONFIG) -> dict:
    return read_yaml_mapping(path, "demo config")


def load_assets_config(path: str | os.PathLike = DEMO_CONFIG) -> AssetsConfig:
    return from_dict(AssetsConfig, read_demo_yaml(path).get("assets") or {}, "assets")


def synthetic_config(assets: AssetsConfig):
    return from_dict(SyntheticConfig, dict(assets.synthetic), "assets.synthetic")


# --------------------------------------------------------------------------------------------------
# 1. the synthetic feature store (windows capped at assets.max_clips)
# --------------------------------------------------------------------------------------------------

def sentence_features(data, spec, max_clips: int, frames: np.ndarray | None = None) -> VideoFeatures:
    """:meth:`SyntheticSignData.make_features` with at most ``max_clips`` windows: generated keypoints,
    proxy RGB of the rendered frames (videos shorter than a window repeat their last frame)."""

    kp = data.keypoints(spec)
    frames = data.render(spec) if frames is None else frames
    pad = pad_frames(len(kp))
    if pad:
        kp = np.concatenate([kp, np.repeat(kp[-1:], pad, 0)])
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, 0)])
    starts = select_clip_starts(len(kp), max_clips)
    meta = {"id": spec.id, "text": spec.text, "split": spec.split, "signer": data.signers[spec.signer].id,
            "source": "synthetic", "rgb": "proxy", "pose_backend": "synthetic",
            "rgb_backend": "synthetic-proxy"}
    return VideoFeatures(keypoints=kp, rgb=rgb_proxy_features(frames, starts), clip_starts=starts,
                         fps=data.cfg.fps, meta=meta)


_DATA: dict = {}


def _data(cfg):
    key = repr(cfg)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = SyntheticSignData(cfg)
    return _DATA[key]


def _store_chunk(cfg, split: str, lo: int, hi: int, root: str, max_clips: int) -> list[dict]:

    cv2.setNumThreads(1)
    data = _data(cfg)
    store = FeatureStore(root, create=True)
    rows = []
    for spec in data.sentences(split)[lo:hi]:
        if not store.has(spec.id):
            store.save(spec.id, sentence_features(data, spec, max_clips))
        rows.append({"id": spec.id, "video": "", "text": spec.text, "split": split,
                     "signer": data.signers[spec.signer].id})
    return rows


def write_demo_store(out: str | os.PathLike, syn_cfg, max_clips: int, workers: int = 2,
                     chunk: int = 50) -> dict[str, Path]:
    """The demo's feature store + ``manifest_<split>.csv``; existing files are kept (resumable)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = _data(syn_cfg)
    jobs = [(s, lo, min(lo + chunk, len(data.sentences(s)))) for s in SPLITS
            for lo in range(0, len(data.sentences(s)), chunk)]
    if workers <= 1:
        results = [_store_chunk(syn_cfg, s, lo, hi, str(out), max_clips) for s, lo, hi in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            futs = [ex.submit(_store_chunk, syn_cfg, s, lo, hi, str(out), max_clips) for s, lo, hi in jobs]
            results = [f.result() for f in futs]
    return write_chunk_manifests(out, SPLITS, jobs, results)


# --------------------------------------------------------------------------------------------------
# 2. the demo checkpoint
# --------------------------------------------------------------------------------------------------

def train_config(assets: AssetsConfig, store: Path, work: Path):
    """The training Config: ``assets.train_config`` + ``assets.train_overrides`` + the demo store."""

    cfg = load_config(ROOT / assets.train_config if not Path(assets.train_config).is_absolute()
                      else assets.train_config,
                      list(assets.train_overrides) + [f"data.store={store}", f"train.out={work}",
                                                      "data.rgb_features=synthetic-proxy",
                                                      "data.pose_backend=synthetic", "data.dataset=synthetic"])
    cfg.data.synthetic = json.loads(json.dumps(asdict(synthetic_config(assets))))
    if cfg.model.max_clips < assets.max_clips:
        raise ConfigError(f"model.max_clips={cfg.model.max_clips} < assets.max_clips={assets.max_clips}")
    return cfg


def train_demo_checkpoint(assets: AssetsConfig, store: Path, work: Path, out: Path, progress: bool = True) -> dict:
    """Train on the demo store (best epoch on the validation split), evaluate on test, save ``out`` in
    ``assets.checkpoint_dtype``. Returns the checkpoint's info dict."""

    torch.manual_seed(0)
    cfg = train_config(assets, store, work)
    result = train(cfg, resume=True, progress=progress)
    model, loss, cfg, info = load_checkpoint(work / "best", "cpu")
    test = evaluate_model(model, build_dataset(cfg, cfg.data.test_split), cfg.model.tau, cfg.train.eval_batch_size)
    info = {**info, "kind": "demo",
            "note": ("Demo checkpoint: trained on the synthetic signing benchmark only (cartoon signers). "
                     + PROXY_RGB_NOTE + ". Results on real signing are not meaningful."),
            "made_by": "python -m seds.experiments.demo_assets", "best_val_rsum": result["best_val_rsum"],
            "test": _round(test)}
    for name in ("store",):          # paths inside the repository are recorded relative to it
        setattr(cfg.data, name, _rel(getattr(cfg.data, name)))
    cfg.train.out = _rel(cfg.train.out)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[assets.checkpoint_dtype]
    if out.exists():
        shutil.rmtree(out)
    save_checkpoint(out, model, cfg, loss, info=info, dtype=dtype)
    return info


def _rel(p: str) -> str:
    q = Path(p).resolve()
    return str(q.relative_to(ROOT)) if ROOT in q.parents else str(p)


def _round(x):
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return round(float(x), 2) if isinstance(x, float) else x


# --------------------------------------------------------------------------------------------------
# 3. examples/: rendered test videos + the default gallery
# --------------------------------------------------------------------------------------------------

def _fixed_track_uid(path: Path) -> None:
    """FFmpeg gives a WebM track a random 64-bit TrackUID (Matroska element 0x73C5, repeated as
    TagTrackUID 0x63C5 in the tags): set it to 1 so that the same frames give the same file."""
    data = bytearray(path.read_bytes())
    head_end = data.find(b"\x1f\x43\xb6\x75")          # the first Cluster: the header lies before it
    head_end = len(data) if head_end < 0 else head_end
    i = data.find(b"\x73\xc5\x88", 0, head_end)
    if i < 0:
        return
    uid = bytes(data[i + 3:i + 11])
    fixed = (1).to_bytes(8, "big")
    j = data.find(uid, 0, head_end)
    while j >= 0:
        data[j:j + 8] = fixed
        j = data.find(uid, j + 8, head_end)
    path.write_bytes(bytes(data))


def write_webm(frames: np.ndarray, path: Path, fps: float) -> Path:
    """RGB frames → VP9 WebM (deterministic bytes); checks that it decodes back to as many frames."""

    write_video(frames, path, fps, fourcc=VIDEO_FOURCC)
    _fixed_track_uid(path)
    info = probe(path)
    if abs(info.num_frames - len(frames)) > 1:
        raise DemoAssetsError(f"{path}: wrote {len(frames)} frames, the decoder reads {info.num_frames}")
    return path


def build_examples(assets: AssetsConfig, checkpoint: Path, store: Path, examples: Path) -> dict:
    """Render ``assets.gallery_videos`` test-split sentences to ``examples/videos`` and build
    ``examples/gallery`` (those videos with cached features + every test sentence)."""

    syn = synthetic_config(assets)
    data = _data(syn)
    model, _, cfg, _ = load_checkpoint(checkpoint, "cpu")
    if cfg.model.max_clips < assets.max_clips:
        raise DemoAssetsError(f"{checkpoint}: model.max_clips={cfg.model.max_clips} < assets.max_clips")
    fs = FeatureStore(store)
    specs = data.sentences("test")
    chosen = specs[:assets.gallery_videos]
    vdir = examples / "videos"
    if vdir.exists():
        shutil.rmtree(vdir)
    vdir.mkdir(parents=True)
    rows = []
    for spec in specs:
        video = ""
        if spec in chosen:
            video = str(write_webm(data.render(spec), vdir / f"{spec.id}{VIDEO_SUFFIX}", syn.fps))
        rows.append(ManifestRow(spec.id, video, spec.text, "test", data.signers[spec.signer].id))
    missing = [r.id for r in rows if r.video and not fs.has(r.id)]
    if missing:
        raise DemoAssetsError(f"the demo store {store} lacks {missing[:3]}: rerun without --skip-store")
    gallery = build_gallery(examples / "gallery", model, checkpoint_fingerprint(checkpoint), rows,
                            lambda r: fs[r.id] if r.video else None, cache=True, thumbnails=True,
                            info={"built_from": {"by": "python -m seds.experiments.demo_assets",
                                                 "note": "synthetic signing benchmark, test split"}})
    gallery.info["ui_examples"] = [r.id for r in rows if r.video][:assets.ui_examples]
    gallery.save()
    return {"videos": len(gallery.videos), "sentences": len(gallery.sentences), "cache": len(gallery.cache)}


# --------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seds.experiments.demo_assets", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(DEMO_CONFIG), help="demo config (its 'assets' section)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "demo-assets"), help="store + training runs (not committed)")
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "demo"))
    ap.add_argument("--examples", default=str(ROOT / "examples"))
    ap.add_argument("--skip-train", action="store_true", help="keep the checkpoint, rebuild examples/ only")
    ap.add_argument("--workers", type=int, default=2, help="processes that generate the synthetic store")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        assets = load_assets_config(args.config)
        work, ckpt, examples = Path(args.work), Path(args.checkpoint), Path(args.examples)
        store = work / "store"
        print(f"[1/3] synthetic store → {store}", flush=True)
        write_demo_store(store, synthetic_config(assets), assets.max_clips, workers=args.workers)
        print(f"      {time.perf_counter() - t0:.0f} s", flush=True)
        if not args.skip_train:
            print(f"[2/3] training the demo checkpoint → {ckpt}", flush=True)
            run = work / "train"     # an interrupted run resumes (same config: seds.train checks it)
            info = train_demo_checkpoint(assets, store, run, ckpt, progress=not args.no_progress)
            fused = info["test"].get("fused", {})
            print(f"      test (synthetic, proxy-RGB): T2V R@1 {fused.get('t2v', {}).get('R@1')}, "
                  f"V2T R@1 {fused.get('v2t', {}).get('R@1')}; {time.perf_counter() - t0:.0f} s", flush=True)
        elif not (ckpt / "model.safetensors").is_file():
            raise DemoAssetsError(f"--skip-train but {ckpt} holds no checkpoint")
        print(f"[3/3] examples → {examples}", flush=True)
        summary = build_examples(assets, ckpt, store, examples)
        print(f"      {summary}; done in {time.perf_counter() - t0:.0f} s", flush=True)
    except (ConfigError, DemoAssetsError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
