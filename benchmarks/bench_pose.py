"""Benchmark of extraction (Sec. 3.1): pose-backend throughput, and a 5-second sign clip → model
inputs stage by stage (decode → pose → filter/pad/windows → I3D).

* Pose: frames/s of every available backend on real How2Sign frames (640×360), CPU, and GPU where
  onnxruntime has the CUDA provider. RTMPose needs real ONNX models: pass ``rtm_pose=`` /
  ``rtm_det=`` paths, or have them in rtmlib's cache; without them only rtmlib's own pre/post-processing
  cost is measured, with a trivial ONNX model standing in (reported as ``rtmpose-synthetic``).
* Pipeline: one clip trimmed to ``seconds`` s, through :class:`seds.extract.pipeline.Extractor` with
  MediaPipe and the Kinetics-400 I3D (stage timings; best of ``repeats``).

    python benchmarks/bench_pose.py                              # defaults below
    python benchmarks/bench_pose.py frames=48 max_clips=64 repeats=3 rtm_pose=/m/rtmw.onnx rtm_det=/m/yolox.onnx

Options are ``key=value``: frames (pose frames per backend, 24), seconds (5), max_clips (64),
repeats (1), rtm_pose, rtm_det, out (benchmarks/results/pose_cpu.json).
Writes the JSON results file (and prints it).
"""
from __future__ import annotations

import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from seds.extract.pipeline import ExtractConfig, Extractor  # noqa: E402
from seds.extract.pose import available_pose_backends, make_pose_estimator  # noqa: E402
from seds.extract.video import read_video  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "how2sign-mini"
DEFAULTS = {"frames": 24, "seconds": 5.0, "max_clips": 64, "repeats": 1, "rtm_pose": None, "rtm_det": None,
            "out": str(REPO / "benchmarks" / "results" / "pose_cpu.json")}


def parse(argv: list[str]) -> dict:
    opts = dict(DEFAULTS)
    for a in argv:
        k, sep, v = a.partition("=")
        if not sep or k not in opts:
            raise SystemExit(f"expected key=value with key in {sorted(opts)}, got {a!r}")
        opts[k] = type(DEFAULTS[k])(v) if DEFAULTS[k] is not None else v
    return opts


def pick_clip(min_seconds: float) -> Path:
    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["n_frames"]) / float(r["fps"]) >= min_seconds]
    if not rows:
        raise SystemExit(f"no clip of at least {min_seconds} s in {DATA}")
    return DATA / rows[0]["file"]


def time_pose(est, frames: np.ndarray, repeats: int) -> float:
    est(frames[:2])                         # warm-up (graph/session start)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        est(frames)
        best = min(best, time.perf_counter() - t)
    return best


def rtmpose_estimators(opts: dict):
    """(label, device, kwargs, note) of the RTMPose runs to make."""
    import onnxruntime as ort
    devices = ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])
    if opts["rtm_pose"]:
        kw = {"pose_model": opts["rtm_pose"]}
        kw.update({"det_model": opts["rtm_det"]} if opts["rtm_det"] else {"use_detector": False})
        return [("rtmpose", d, kw, "local ONNX models") for d in devices]
    try:
        make_pose_estimator("rtmpose", allow_download=False)
        return [("rtmpose", d, {"allow_download": False}, "rtmlib default models (cache)") for d in devices]
    except Exception:  # noqa: BLE001 - no real models here: measure rtmlib's overhead only
        pass
    try:
        sys.path.insert(0, str(REPO / "tests"))
        from test_pose import CONF, fake_rtmpose, fake_yolox
    except Exception as e:  # noqa: BLE001 - onnx missing
        print(f"rtmpose skipped: no models and cannot build a stand-in ({e})")
        return []
    d = Path(tempfile.mkdtemp(prefix="bench_rtm_"))
    kw = {"pose_model": fake_rtmpose(d / "pose.onnx", CONF),
          "det_model": fake_yolox(d / "det.onnx", [[100, 0, 540, 360, 0.9]])}
    note = "trivial stand-in ONNX models: rtmlib detector+pose pre/post-processing cost only, not RTMPose"
    return [("rtmpose-synthetic", dev, kw, note) for dev in devices]


def bench_pose(opts: dict, frames: np.ndarray) -> list[dict]:
    runs = []
    backends = available_pose_backends()
    if "mediapipe" in backends:
        for c in (0, 1, 2):
            try:
                est = make_pose_estimator("mediapipe", model_complexity=c, allow_download=False)
            except Exception as e:  # noqa: BLE001 - lite/heavy models are not in the wheel
                runs.append({"backend": f"mediapipe(c={c})", "device": "cpu", "skipped": str(e)[:200]})
                continue
            s = time_pose(est, frames, opts["repeats"])
            runs.append({"backend": f"mediapipe(c={c})", "device": "cpu", "frames": len(frames),
                         "seconds": round(s, 3), "fps": round(len(frames) / s, 2)})
            est.close()
    if "rtmpose" in backends:
        for label, dev, kw, note in rtmpose_estimators(opts):
            est = make_pose_estimator("rtmpose", device=dev, **kw)
            s = time_pose(est, frames, opts["repeats"])
            runs.append({"backend": label, "device": dev, "frames": len(frames), "seconds": round(s, 3),
                         "fps": round(len(frames) / s, 2), "note": note})
    if "mmpose" in backends:
        est = make_pose_estimator("mmpose")
        s = time_pose(est, frames, opts["repeats"])
        runs.append({"backend": "mmpose", "device": "cpu", "frames": len(frames), "seconds": round(s, 3),
                     "fps": round(len(frames) / s, 2)})
    else:
        runs.append({"backend": "mmpose", "skipped": "mmpose not installed (optional extra)"})
    return runs


def bench_pipeline(opts: dict, clip: Path) -> dict:
    cfg = ExtractConfig(max_seconds=opts["seconds"], trim_long=True, max_clips=opts["max_clips"])
    try:
        from seds.extract.i3d import I3DFeatureExtractor
        rgb = I3DFeatureExtractor(weights=cfg.i3d_weights, device="cpu")
        rgb_note = "Kinetics-400 I3D (CPU)"
    except Exception as e:  # noqa: BLE001 - no I3D weights: pose-only numbers
        return {"skipped": f"I3D unavailable: {e}"}
    ex = Extractor(cfg, rgb_extractor=rgb)
    warm = np.zeros((16, 360, 640, 3), np.uint8)   # warm-up: graph start, first I3D batch
    ex.pose(warm[:2])
    rgb.features(warm, np.zeros(1, np.int64))
    best = None
    for _ in range(opts["repeats"]):
        f = ex(clip)
        if best is None or f.meta["timings_s"]["total"] < best.meta["timings_s"]["total"]:
            best = f
    m = best.meta
    return {"clip": clip.name, "seconds_of_video": m["duration_s"], "frames_at_24fps": m["n_frames"],
            "kept_frames": m["kept_frames"], "clips": best.num_clips,
            "i3d_seconds_per_clip": round(m["timings_s"]["rgb"] / best.num_clips, 3),
            "pose_backend": m["pose_backend"], "rgb": rgb_note,
            "stage_seconds": m["timings_s"],
            "realtime_factor": round(m["timings_s"]["total"] / m["duration_s"], 2)}


def main(argv: list[str] | None = None) -> dict:
    opts = parse(sys.argv[1:] if argv is None else argv)
    clip = pick_clip(opts["seconds"])
    v = read_video(clip, fps=24.0)
    idx = np.linspace(0, v.num_frames - 1, opts["frames"]).round().astype(int)
    frames = v.frames[idx]
    import onnxruntime
    import torch
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
                    "ort_providers": onnxruntime.get_available_providers()},
        "pose_frames": {"clip": clip.name, "size": [int(frames.shape[2]), int(frames.shape[1])],
                        "count": int(len(frames))},
        "pose": bench_pose(opts, frames),
        "pipeline": bench_pipeline(opts, clip),
        "options": opts,
    }
    out = Path(opts["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
