"""Eyeball and time the synthetic signing benchmark (seds/synthetic/signing.py).

Writes, under ``out`` (default benchmarks/results/synthetic_sample/):

* ``sheet.png``: a contact sheet, one row per sentence (8 frames spread over the video) with the
  keypoints drawn on top (body red, hands green/blue, face/mouth yellow);
* ``<id>.mp4`` (and ``<id>.gif``): the first ``videos`` sentences, rendered frames with keypoints;
* ``synthetic_stats.json``: generation speed (CPU seconds) and the dataset sizes the config gives.

Usage (``key=value`` overrides of :class:`SyntheticConfig` fields, plus ``out``, ``rows``,
``videos``, ``scale`` and ``timing_n``)::

    python benchmarks/render_synthetic_sample.py
    python benchmarks/render_synthetic_sample.py seed=3 height=160 width=160 rows=4
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seds.synthetic.signing import SPLITS, SyntheticConfig, SyntheticSignData  # noqa: E402

OPTIONS = {"out": str(Path(__file__).resolve().parent / "results" / "synthetic_sample"),
           "rows": 6, "videos": 2, "scale": 3, "timing_n": 300}


def parse(argv: list[str]) -> tuple[SyntheticConfig, dict]:
    fields = {f.name: f for f in dataclasses.fields(SyntheticConfig)}
    cfg_kw, opts = {}, dict(OPTIONS)
    for arg in argv:
        key, sep, val = arg.partition("=")
        if not sep:
            raise SystemExit(f"expected key=value, got {arg!r}")
        if key in opts:
            opts[key] = type(opts[key])(val)
        elif key in fields:
            default = getattr(SyntheticConfig(), key)
            cfg_kw[key] = tuple(int(v) for v in val.split(",")) if isinstance(default, tuple) else type(default)(val)
        else:
            raise SystemExit(f"unknown key {key!r}; options {sorted(opts)}, config fields {sorted(fields)}")
    return SyntheticConfig(**cfg_kw), opts


def overlay(frame: np.ndarray, kp: np.ndarray, scale: int) -> np.ndarray:
    """Upscale an RGB frame and draw the keypoints with confidence > 0."""
    img = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    colours = [(230, 40, 40)] * 7 + [(40, 200, 40)] * 21 + [(40, 90, 230)] * 21 + [(230, 210, 40)] * 38
    for (x, y, c), col in zip(kp, colours):
        if c > 0:
            cv2.circle(img, (int(x * scale), int(y * scale)), 1, col, -1, cv2.LINE_AA)
    return img


def timings(data: SyntheticSignData, n: int) -> dict:
    specs = data.sentences("train")[:n]
    out = {"n": len(specs)}
    for name, fn in (("keypoints", data.keypoints), ("render", data.render),
                     ("make_features", data.make_features)):
        sub = specs if name == "keypoints" else specs[: max(1, n // 10)]
        t = time.process_time()
        for sp in sub:
            fn(sp)
        out[f"{name}_ms_per_video"] = 1000 * (time.process_time() - t) / len(sub)
    return out


def main(argv: list[str]) -> None:
    cfg, opts = parse(argv)
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    t = time.process_time()
    data = SyntheticSignData(cfg)
    specs = {s: data.sentences(s) for s in SPLITS}
    t_specs = time.process_time() - t

    rows = []
    for sp in specs["train"][: opts["rows"]]:
        kp, fr = data.keypoints(sp), data.render(sp)
        idx = np.linspace(0, sp.num_frames - 1, 8).round().astype(int)
        rows.append(np.concatenate([overlay(fr[i], kp[i], opts["scale"]) for i in idx], 1))
        print(f"{sp.id} signer={data.signers[sp.signer].id} dominant={sp.dominant} frames={sp.num_frames}: {sp.text}")
    cv2.imwrite(str(out / "sheet.png"), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))

    for sp in specs["train"][: opts["videos"]]:
        kp, fr = data.keypoints(sp), data.render(sp)
        frames = [overlay(f, k, opts["scale"]) for f, k in zip(fr, kp)]
        h, w = frames[0].shape[:2]
        vw = cv2.VideoWriter(str(out / f"{sp.id}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps, (w, h))
        for f in frames:
            vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        vw.release()
        try:
            from PIL import Image
            ims = [Image.fromarray(f) for f in frames[::2]]
            ims[0].save(out / f"{sp.id}.gif", save_all=True, append_images=ims[1:],
                        duration=int(2000 / cfg.fps), loop=0)
        except ImportError:
            pass

    frames = {s: np.array([sp.num_frames for sp in specs[s]]) for s in SPLITS}
    sizes = {s: {"sentences": len(specs[s]), "signers": cfg.n_signers[SPLITS.index(s)],
                 "frames": int(frames[s].sum()), "mean_frames": float(frames[s].mean()) if len(frames[s]) else 0.0,
                 "mean_seconds": float(frames[s].mean() / cfg.fps) if len(frames[s]) else 0.0,
                 "mean_words": float(np.mean([len(sp.word_ids) for sp in specs[s]])) if specs[s] else 0.0}
             for s in SPLITS}
    n_clips = sum(int(np.minimum(64, np.maximum(f, 16) - 15).sum()) for f in frames.values())
    n_frames = sum(int(f.sum()) for f in frames.values())
    stats = {"config": dataclasses.asdict(cfg), "specs_cpu_s": t_specs, "splits": sizes,
             "store_bytes_estimate": n_frames * 87 * 3 * 4 + n_clips * 1024 * 4 + n_clips * 8,
             "timing_cpu": timings(data, opts["timing_n"])}
    (out / "synthetic_stats.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps({k: stats[k] for k in ("specs_cpu_s", "splits", "store_bytes_estimate", "timing_cpu")},
                     indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
