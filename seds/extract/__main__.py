"""``python -m seds.extract``: build a dataset's manifest and fill its feature store.

    python -m seds.extract --dataset how2sign_mini --annotations ../shared/data/how2sign-mini/manifest.csv \\
        --split val --out features/h2s-mini [--workers 2] [--pose mediapipe] [--i3d kinetics400] \\
        [--device cpu] [--pose-stride 1] [--limit N] [--opt key=value ...]

    python -m seds.extract --recordings --dataset folder --annotations recordings.csv --opt text_col= \\
        --opt split_col= --out features/recordings [--window-stride 8] [--chunk-seconds 32] [--max-minutes M]

Writes ``<out>/manifest_<split>.csv`` and one ``<id>.safetensors`` per video (:mod:`seds.data.store`).
``--recordings``: each video is a long recording of any length, streamed in chunks with bounded memory,
windows every ``--window-stride`` frames along its whole timeline (:mod:`seds.extract.recording`); a killed
run resumes each recording at its last finished chunk.
The run is resumable and parallel (:func:`seds.extract.runner.run_extraction`); a video that fails is
reported in ``<out>/failures_<split>.csv`` with the error and skipped. This module only parses arguments:
the extractor comes from :class:`seds.extract.factory.ExtractorFactory`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from seds.data.manifest import adapter_names, get_adapter, load_manifest, write_manifest
from seds.data.store import FeatureStore
from seds.extract.factory import ExtractorFactory, RecordingExtractorFactory, i3d_rgb_features
from seds.extract.official_export import OfficialExporterFactory, export_manifest
from seds.extract.pose import PoseError
from seds.extract.pose_stride import check_stride
from seds.extract.recording import DEFAULT_WINDOW_STRIDE
from seds.extract.runner import (ExtractorFactoryFn, ExtractorInitError, ShardError, resolve_shard, run_extraction,
                                select_shard, verify_extraction, write_failures)
from seds.progname import prog

# --- command line -----------------------------------------------------------------------------------

def _parse_opts(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise SystemExit(f"--opt expects key=value, got {it!r}")
        out[key.strip()] = value
    return out


def _stride(text: str) -> int:
    try:
        return check_stride(int(text))
    except (ValueError, PoseError) as e:   # PoseError is a ValueError; int() raises one too
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {text!r}") from e


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog("seds.extract", "seds-extract"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="datasets:\n" + "\n".join(f"  {n}: {get_adapter(n).files}"
                                                                for n in adapter_names()))
    p.add_argument("--dataset", default="manifest", choices=adapter_names(), help="annotation adapter")
    p.add_argument("--annotations", required=True, help="the dataset's annotation file")
    p.add_argument("--videos", default=None, help="folder the video paths are relative to")
    p.add_argument("--split", default=None, help="split to extract (default: all rows)")
    p.add_argument("--out", required=True, help="feature store directory")
    p.add_argument("--workers", type=int, default=1, help="parallel extraction processes")
    p.add_argument("--pose", default="mediapipe", help="pose backend")
    p.add_argument("--pose-stride", type=_stride, default=1, metavar="S",
                   help="run the pose backend on every S-th frame (and the last) and interpolate the others "
                        "(default 1: every frame; benchmarks/results/pose_stride.md measures the error)")
    p.add_argument("--i3d", default="kinetics400", help="I3D weights")
    p.add_argument("--i3d-compile", action="store_true", help="run I3D through torch.compile with Inductor freezing: "
                   "~1.8x less CPU per window after a one-off compilation per worker (benchmarks/results/i3d.md)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-clips", type=int, default=64, help="at most this many 16-frame windows")
    p.add_argument("--limit", type=int, default=None, help="only the first N videos of the split")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="adapter option")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="extract only shard I of N (0-based; videos hashed by id) into the shared --out store; "
                        "default: torchrun's RANK/WORLD_SIZE or Slurm's SLURM_PROCID/SLURM_NTASKS when set")
    p.add_argument("--verify", action="store_true",
                   help="after all shards: report missing/failed/unreadable videos, write the merged "
                        "manifest_<split>.csv and failures_<split>.csv (exit 1 if any video is missing)")
    p.add_argument("--recordings", action="store_true",
                   help="the videos are long recordings: stream them in chunks (bounded memory, any length), keep "
                        "every frame and a window every --window-stride frames, resume at the last finished chunk")
    p.add_argument("--window-stride", type=_stride, default=DEFAULT_WINDOW_STRIDE, metavar="S",
                   help=f"--recordings: frames between window starts (default {DEFAULT_WINDOW_STRIDE} = 1/3 s at 24 fps)")
    p.add_argument("--chunk-seconds", type=float, default=32.0,
                   help="--recordings: seconds decoded at a time (fewer when a chunk's frames would exceed 256 MiB)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="--recordings: refuse recordings longer than this (default: no limit)")
    p.add_argument("--max-short-side", type=int, default=360,
                   help="--recordings: the decoder scales frames down to this shorter side (default 360, the "
                        "How2Sign-mini training resolution; 0: full resolution)")
    p.add_argument("--rgb-features", default=None, metavar="NAME",
                   help="RGB extractor by name instead of --i3d: i3d-kinetics400, i3d:<path>, synthetic-proxy, "
                        "synthetic-proxy-conv")
    p.add_argument("--format", choices=("store", "official"), default="store", help="official: the SEDS "
                   "authors' keypoint/I3D pickles + annotation pkl (see seds.extract.official_export)")
    return p


def main(argv: list[str] | None = None, extractor_factory: ExtractorFactoryFn | None = None) -> int:
    """CLI entry; ``extractor_factory`` replaces the real pipeline (tests). Returns the exit code:
    0 all done, 1 some videos failed, 2 bad arguments/extractor, 130 interrupted."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    split = args.split or "all"
    if args.videos is None and get_adapter(args.dataset).default_root(Path(args.annotations)) is None:
        print(f"error: --videos (the folder holding the videos) is required for --dataset {args.dataset}",
              file=sys.stderr)
        return 2
    try:
        manifest = load_manifest(args.annotations, args.split, args.videos, dataset=args.dataset,
                                 **_parse_opts(args.opt))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.limit is not None:
        manifest = manifest.head(args.limit)
    if args.format == "official":
        s = export_manifest(manifest, args.out, split, extractor_factory or OfficialExporterFactory(
            args.pose, args.i3d, args.device, pose_stride=args.pose_stride), progress=not args.no_progress)
        print(f"split {split}: {s['exported']} of {len(manifest)} videos written in the authors' layout to "
              f"{args.out}; {len(s['failures'])} failed (failures_{split}.csv)")
        return 1 if s["failures"] else 0
    out = Path(args.out)
    store = FeatureStore(out, create=True)
    if args.verify:
        report = verify_extraction(manifest, store, split)
        print(f"split {split}: {report}; merged lists in {out}/manifest_{split}.csv and failures_{split}.csv")
        return 0 if not report.missing and not report.unreadable else 1
    try:
        index, count = resolve_shard(args.shard)
    except (ShardError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rgb_features = args.rgb_features or i3d_rgb_features(args.i3d)
    if args.recordings:
        if args.chunk_seconds <= 0 or (args.max_minutes is not None and args.max_minutes <= 0):
            print("error: --chunk-seconds and --max-minutes must be positive", file=sys.stderr)
            return 2
        factory = extractor_factory or RecordingExtractorFactory(
            rgb_features, args.pose, args.device, args.window_stride, args.chunk_seconds,
            None if args.max_minutes is None else 60.0 * args.max_minutes, args.pose_stride, args.i3d_compile,
            args.max_short_side or None)
    else:
        factory = extractor_factory or ExtractorFactory(rgb_features, args.pose, args.device, args.max_clips,
                                                        pose_stride=args.pose_stride, i3d_compile=args.i3d_compile)
    if count == 1:
        write_manifest(manifest, out / f"manifest_{split}.csv")
        failures_path = out / f"failures_{split}.csv"
    else:   # shards share the store: each writes only its own videos and failure list
        manifest = select_shard(manifest, index, count)
        failures_path = out / f"failures_{split}.shard{index}of{count}.csv"
    try:
        summary = run_extraction(manifest, store, factory, args.workers,
                                 split if count == 1 else f"{split} shard {index}/{count}",
                                 progress=not args.no_progress, failures_path=failures_path,
                                 shared_store=count > 1)
    except ExtractorInitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_failures(summary.failures, failures_path)
    print(summary)
    if count > 1:
        print("when every shard has finished, run the same command with --verify (no --shard) to merge and check")
    if summary.failures:
        print(f"{len(summary.failures)} failure(s) listed in {failures_path}")
        if len(summary.failures) == summary.total and all(f.error.startswith("video not found")
                                                          for f in summary.failures):
            print(f"no video was found — is --videos right? first expected: {summary.failures[0].video}",
                  file=sys.stderr)
    if summary.interrupted:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
