"""Data loading throughput: FeatureDataset + collate from a feature store on disk (CPU).

    python benchmarks/bench_data.py                     # 1,024 How2Sign-sized videos, batch 128

Items are How2Sign-sized: ~170 frames (120–220) of 87 raw keypoints and 64 I3D windows, written with the
project's own store writer (seds.data.store.FeatureStore.save) to a temporary store. Measured: lazy reads
(one file per item, normalisation at read time, the ``data.preload=false`` path) and preloaded items
(``data.preload=true``, the training default), each followed by :func:`seds.data.dataset.collate` into
batches, with glibc's default allocator settings and with ``seds.cpu_runtime.keep_freed_memory`` (which
``seds.train`` applies: collate's fresh batch buffers are then not page-faulted in again), each setting in
fresh processes; medians of ``--repeats`` (lazy reads come from the OS page cache: the store was just written). Goal (issue 17): ≥ 2,000 videos/s on this machine's 2 cores.
``--baseline-rev REV`` also runs the workers of the code at git revision REV (exported to a temporary folder),
interleaved with this tree's in fresh processes on the same store, as a before/after comparison.
Writes benchmarks/results/data_cpu.md (+ .json).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tarfile
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seds.cpu_runtime import keep_freed_memory  # noqa: E402
from seds.data.dataset import FeatureDataset, collate  # noqa: E402
from seds.data.features import VideoFeatures  # noqa: E402
from seds.data.manifest import Manifest, ManifestRow  # noqa: E402
from seds.data.store import FeatureStore  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def write_store(root: Path, n: int, clips: int, seed: int = 0) -> Manifest:
    rng = np.random.default_rng(seed)
    st = FeatureStore(root, create=True)
    rows = []
    for i in range(n):
        f = int(rng.integers(120, 221))
        kp = np.empty((f, 87, 3), np.float32)
        kp[..., :2] = rng.uniform(0, 640, (f, 87, 2))
        kp[..., 2] = rng.uniform(0, 1, (f, 87))
        starts = np.linspace(0, f - 16, clips).round().astype(np.int64)
        st.save(f"video_{i:05d}", VideoFeatures(kp, rng.standard_normal((clips, 1024)).astype(np.float32),
                                                starts, fps=24.0, meta={"pose_backend": "bench"}))
        rows.append(ManifestRow(f"video_{i:05d}", f"/v/{i}.mp4", f"sentence {i} of the benchmark", "train", "s0"))
    return Manifest(rows, "bench")


def one_pass(ds: FeatureDataset, batch: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one pass over ``ds`` in batches."""
    t, c = time.perf_counter(), time.process_time()
    for lo in range(0, len(ds), batch):
        collate([ds[i] for i in range(lo, min(lo + batch, len(ds)))])
    return time.perf_counter() - t, time.process_time() - c


def worker(root: Path, keep: bool, batch: int) -> dict:
    keep_freed_memory(keep)
    man = Manifest([ManifestRow(i, f"/v/{i}.mp4", f"sentence of {i}", "train", "s0")
                    for i in FeatureStore(root).ids()], "bench")
    n = len(man.rows)
    lazy = FeatureDataset(root, man)
    w, c = one_pass(lazy, batch)
    out = {"lazy (read + normalise per item) + collate": [n / w, n / c]}
    t, c0 = time.perf_counter(), time.process_time()
    pre = FeatureDataset(root, man, preload=True)
    out["preload (once)"] = [n / (time.perf_counter() - t), n / (time.process_time() - c0)]
    one_pass(pre, batch)                         # first pass: the allocator grows
    w, c = one_pass(pre, batch)
    out["preloaded + collate"] = [n / w, n / c]
    return out


def export_revision(rev: str, dest: Path) -> Path:
    """The files of git revision ``rev`` of this repository, written to ``dest``."""
    repo = Path(__file__).resolve().parents[1]
    blob = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev], capture_output=True,
                          check=True).stdout
    dest.mkdir(parents=True)
    with tempfile.TemporaryFile() as f:
        f.write(blob)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(dest, filter="data")
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=1024)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--store", default=None, help="keep the store here (default: a temporary folder)")
    ap.add_argument("--baseline-rev", default=None, help="also measure the code of this git revision (before/after)")
    ap.add_argument("--worker", choices=["default", "keep"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(Path(args.store), args.worker == "keep", args.batch)), flush=True)
        return
    modes = {"default": "glibc default", "keep": "keep_freed_memory (as seds.train)"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.store or Path(tmp) / "store")
        trees = {"": Path(__file__).resolve().parents[1]}
        if args.baseline_rev:
            trees = {f"{args.baseline_rev} (before): ": export_revision(args.baseline_rev, Path(tmp) / "baseline"),
                     "this tree: ": trees[""]}
        t = time.perf_counter()
        write_store(root, args.videos, args.clips)
        write_s = time.perf_counter() - t
        load0 = os.getloadavg()
        res: dict[str, list[float]] = {}
        for _ in range(args.repeats):            # each allocator setting (and tree) in a fresh process, interleaved
            for tree_label, tree in trees.items():
                for mode, label in modes.items():
                    out = subprocess.run([sys.executable, str(tree / "benchmarks" / "bench_data.py"), "--store",
                                          str(root), "--batch", str(args.batch), "--worker", mode],
                                         capture_output=True, text=True, check=True).stdout
                    for k, v in json.loads(out.split("RESULT ", 1)[1]).items():
                        res.setdefault(f"{k}, {label}|{tree_label}", []).append(v)
        load1 = os.getloadavg()
    cmd = "python benchmarks/bench_data.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Data loading: FeatureDataset + collate (CPU, one process)", "", f"Command: `{cmd.strip()}`  ",
             f"{args.videos} videos of 120–220 frames × 87 keypoints + {args.clips} windows × 1024, store written "
             f"by FeatureStore.save in {write_s:.1f} s; batch {args.batch}; medians of {args.repeats} fresh "
             f"processes per allocator setting, interleaved; load average {load0[0]:.1f} before / {load1[0]:.1f} "
             f"after on {os.cpu_count()} CPUs (shared machine).", "",
             "Videos per CPU-second (one core busy) is the load-independent column; wall videos/s depends on how "
             "much of a core the shared machine gave the process.", "",
             "| path | videos / s wall | videos / CPU-s | goal 2,000/s (per CPU-s) |", "|---|---:|---:|---|"]
    order = list(trees)
    for key, v in sorted(res.items(), key=lambda kv: (kv[0].split("|")[0], order.index(kv[0].split("|")[1]))):
        path, tree_label = key.split("|")
        k = tree_label + path
        w, c = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
        goal = "" if path.startswith("preload (once)") else "met" if c >= 2000 else "missed"
        lines.append(f"| {k} | {w:,.0f} | {c:,.0f} | {goal} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data_cpu.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "data_cpu.json").write_text(json.dumps({"command": cmd, "load": [load0, load1], "videos_per_s": res,
                                                      "write_s": write_s}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
