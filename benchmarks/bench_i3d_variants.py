"""I3D window features: speed of each exact-feature variant against the plain fp32 model, with the
per-window cosine to it (must stay ≥ 0.999). CPU, one process, variants interleaved.

    python benchmarks/bench_i3d_variants.py                 # 8 windows of a How2Sign-mini clip, 3 repeats

Variants: plain fp32 (BatchNorm unfolded, contiguous), BN folded, BN folded + channels-last-3d (the
fp32 reference path of I3DFeatureExtractor), bf16 autocast on top (the default where the CPU has native
bf16, seds.extract.i3d.default_dtype), ONNX Runtime fp32 (BN-folded graph exported at a fixed batch).
One torch/ORT thread, so that CPU seconds per window measure the work even on a shared machine.
Writes benchmarks/results/i3d_variants.md (+ .json).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seds.extract.i3d import I3DFeatureExtractor, default_dtype, preprocess_frames  # noqa: E402
from seds.extract.i3d_convert import load_i3d  # noqa: E402
from seds.extract.video import read_video  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "how2sign-mini" / "clips"


class _Features(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.extract_features(x)


class OnnxRuntimeI3D:
    """The BN-folded trunk exported to ONNX at a fixed (batch, 3, 16, 224, 224) input."""

    def __init__(self, fast: I3DFeatureExtractor, batch: int, path: Path):
        import onnxruntime as ort
        net = _Features(copy.deepcopy(fast.model).to(memory_format=torch.contiguous_format)).eval()
        torch.onnx.export(net, (torch.zeros(batch, 3, 16, 224, 224),), str(path), input_names=["x"],
                          output_names=["f"], opset_version=17, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = torch.get_num_threads()
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.batch = batch

    def features(self, frames, starts):
        x = preprocess_frames(torch.from_numpy(np.ascontiguousarray(frames)))
        idx = torch.from_numpy(np.asarray(starts)[:, None] + np.arange(16))
        clips = x[idx].permute(0, 2, 1, 3, 4).contiguous().numpy()
        out = [self.sess.run(None, {"x": clips[i:i + self.batch]})[0] for i in range(0, len(clips), self.batch)]
        return np.concatenate(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-onnx", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clip = sorted(CLIPS.glob("*.mp4"))[0]
    n = args.windows
    frames = np.asarray(read_video(clip).frames[:2 * n + 15])
    starts = np.arange(n) * 2                                  # overlapping windows, as a live query has
    model = load_i3d("kinetics400").eval()
    plain = I3DFeatureExtractor(model=model, channels_last=False, dtype="fp32", batch_size=n)
    plain.model = copy.deepcopy(model).eval()                  # undo the BN folding: the plain model
    variants = {
        "plain fp32 (BN unfolded, contiguous)": plain,
        "BN folded, fp32": I3DFeatureExtractor(model=model, channels_last=False, dtype="fp32", batch_size=n),
        "BN folded + channels-last-3d, fp32 (previous default)": I3DFeatureExtractor(model=model, dtype="fp32",
                                                                                   batch_size=n),
        "BN folded + channels-last-3d, bf16 autocast (new default with native bf16)": I3DFeatureExtractor(model=model, dtype="bf16", batch_size=n),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_onnx:
            variants["ONNX Runtime fp32 (BN folded)"] = OnnxRuntimeI3D(variants["BN folded, fp32"], n,
                                                                       Path(tmp) / "i3d.onnx")
        ref = plain.features(frames, starts)
        rows = {k: {"wall": [], "cpu": [], "cos": None} for k in variants}
        load0 = os.getloadavg()
        for k, ex in variants.items():                         # warm-up + agreement
            f = ex.features(frames, starts)
            cos = (f * ref).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(ref, axis=1)
            rows[k]["cos"] = float(cos.min())
        for _ in range(args.repeats):
            for k, ex in variants.items():
                t, c = time.perf_counter(), time.process_time()
                ex.features(frames, starts)
                rows[k]["wall"].append((time.perf_counter() - t) / n)
                rows[k]["cpu"].append((time.process_time() - c) / n)
        load1 = os.getloadavg()
    base = statistics.median(rows["BN folded + channels-last-3d, fp32 (previous default)"]["cpu"])
    cmd = "python benchmarks/bench_i3d_variants.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# I3D window features: exact variants (CPU)", "", f"Command: `{cmd.strip()}`  ",
             f"{n} overlapping 16-frame windows (stride 2) of How2Sign-mini `{clip.name}` (640×360 → 224²), "
             f"Kinetics-400 weights, batch {n}, {args.threads} thread(s); medians of {args.repeats} interleaved "
             f"repeats; load average {load0[0]:.1f} before / {load1[0]:.1f} after on {os.cpu_count()} CPUs "
             "(shared machine: CPU-s/window is the comparable column). Cosine: minimum over windows vs the plain "
             f"fp32 model. Default on this CPU: {str(default_dtype(torch.device('cpu'))).replace('torch.', '')}.",
             "", "| variant | CPU s / window | wall s / window | CPU vs previous default | min cosine |",
             "|---|---:|---:|---:|---:|"]
    for k, r in rows.items():
        c, w = statistics.median(r["cpu"]), statistics.median(r["wall"])
        lines.append(f"| {k} | {c:.3f} | {w:.3f} | {base / c:.2f}× | {r['cos']:.6f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "i3d_variants.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "i3d_variants.json").write_text(json.dumps({"command": cmd, "load": [load0, load1], "rows": rows},
                                                         indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
