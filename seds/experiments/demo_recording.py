"""The app's example recording: ``python -m seds.experiments.demo_recording`` → ``examples/recordings/``.

One long synthetic recording (:func:`seds.synthetic.recordings.make_recording`): a few seconds without a
signer, then held-out sentences of the demo's synthetic benchmark (test split, a test signer) signed one after
another with pauses. Written as

* ``videos/<id>.webm`` — the rendered frames (112×112, 24 fps, VP9, deterministic bytes);
* ``features/`` — a feature store with the recording's features (the generator's keypoints and the proxy RGB
  windows every 8 frames, as streaming extraction lays them out): MediaPipe cannot find a cartoon signer, so an
  upload of this very file is answered from here (looked up by its SHA-256), and the app re-scores spans with them;
* ``index/`` — a recordings index (:func:`seds.retrieval.recordings.build_recording_index`) encoded by the demo
  checkpoint: what "Find in a recording" searches;
* ``recordings.json`` — each recording's title, video file, SHA-256, duration and its sentences with their true
  signing spans.

Deterministic and quick (seconds). The settings are the demo's (``configs/demo.yaml``, section ``assets``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from seds.checkpoint import load_checkpoint
from seds.data.store import FeatureStore
from seds.synthetic.signing import SyntheticSignData
from seds.synthetic.recordings import make_recording
from seds.experiments.demo_assets import DEMO_CONFIG, ROOT, load_assets_config, synthetic_config, write_webm
from seds.retrieval.gallery import checkpoint_fingerprint, file_sha256
from seds.retrieval.recordings import build_recording_index

FORMAT = "seds-demo-recordings/1"
MANIFEST = "recordings.json"
RECORDING_ID = "demo_recording"
TITLE = "Example recording (synthetic signer, 6 sentences)"


def build_example_recording(checkpoint: Path, out: Path, n_sentences: int = 6, seed: int = 0,
                            config: Path = DEMO_CONFIG) -> dict:
    """Write ``out`` (see the module docstring) and return its manifest."""
    assets = load_assets_config(config)
    data = SyntheticSignData(synthetic_config(assets))
    test = data.sentences("test")
    rng = np.random.default_rng([seed, 2903])
    # sentences the app's example gallery does not show as videos, so the recording is new material
    pool = test[assets.gallery_videos:]
    specs = [pool[i] for i in sorted(rng.choice(len(pool), n_sentences, replace=False))]
    signer = data.split_signers("test")[0].index
    rec = make_recording(data, specs, signer=signer, pause_s=(0.6, 1.6), seed=seed, gap_without_signer_s=2.0,
                         id=RECORDING_ID, keep_frames=True)
    if out.exists():
        shutil.rmtree(out)
    video = write_webm(rec.frames, out / "videos" / f"{RECORDING_ID}.webm", data.cfg.fps)
    rec.features.meta.update(video=video.name, title=TITLE)
    store = FeatureStore(out / "features", create=True)
    store.save(RECORDING_ID, rec.features)
    model, _, _, _ = load_checkpoint(checkpoint, "cpu")
    build_recording_index(out / "index", model, checkpoint_fingerprint(checkpoint), [rec.features],
                          info={"built_from": {"by": "python -m seds.experiments.demo_recording"}})
    doc = {"format": FORMAT, "made_by": "python -m seds.experiments.demo_recording",
           "note": "synthetic signing (cartoon signer, pseudo-words), test split: not a sign language",
           "recordings": [{"id": RECORDING_ID, "title": TITLE, "video": f"videos/{video.name}",
                           "sha256": file_sha256(video), "duration_s": round(rec.duration_s, 3),
                           "sentences": [{"text": s.text, "start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3)}
                                         for s in rec.sentences]}]}
    (out / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seds.experiments.demo_recording", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "demo"))
    ap.add_argument("--out", default=str(ROOT / "examples" / "recordings"))
    ap.add_argument("--sentences", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        doc = build_example_recording(Path(args.checkpoint), Path(args.out), args.sentences, args.seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    r = doc["recordings"][0]
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    print(f"wrote {args.out}: {r['id']}, {r['duration_s']:.1f} s, {len(r['sentences'])} sentences, "
          f"{size / 2**20:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
