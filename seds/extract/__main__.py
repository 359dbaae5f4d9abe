"""``python -m seds.extract``: build a dataset's manifest and fill its feature store.

    python -m seds.extract --dataset how2sign_mini --annotations ../shared/data/how2sign-mini/manifest.csv \\
        --split val --out features/h2s-mini [--workers 2] [--pose mediapipe] [--i3d kinetics400] \\
        [--device cpu] [--limit N] [--opt key=value ...]

Writes ``<out>/manifest_<split>.csv`` and one ``<id>.safetensors`` per video (:mod:`seds.data.store`).
The run is resumable: videos already in the store are skipped, and since every file is written
atomically an interrupted run leaves no half files (stray ``*.tmp`` files are removed at start).
Videos are extracted in parallel worker processes, each building its extractor once
(:class:`seds.extract.pipeline.Extractor`: pose + I3D over the shared 16-frame windows, Sec. 3.1).
A video that fails (missing, corrupt, too short, ...) — even one that crashes its worker process —
is reported in ``<out>/failures_<split>.csv`` with the error and skipped; it never stops the run.

Library use: :func:`run_extraction` with any picklable *extractor factory* (a zero-argument callable
returning ``extractor(video_path, meta=dict) -> VideoFeatures``), e.g. a fast fake one in tests.
"""
from __future__ import annotations

import argparse
import csv
import logging
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from seds.data.manifest import (MANIFEST_COLUMNS, Manifest, adapter_names, get_adapter, load_manifest,
                                write_manifest)
from seds.data.store import FeatureStore, save_features
from seds.extract.official_export import OfficialExporterFactory, export_manifest

log = logging.getLogger("seds.extract")

ExtractorFactory = Callable[[], Callable]


class ExtractorInitError(RuntimeError):
    """The extractor itself could not be built (bad backend/weights/device): nothing can run."""


@dataclass(frozen=True)
class PipelineFactory:
    """Builds the real :class:`seds.extract.pipeline.Extractor` (imported lazily, in the worker)."""

    pose_backend: str = "mediapipe"
    i3d_weights: str = "kinetics400"
    device: str = "cpu"
    max_clips: int = 64

    def __call__(self):
        from seds.extract.pipeline import ExtractConfig, Extractor
        return Extractor(ExtractConfig(pose_backend=self.pose_backend, i3d_weights=self.i3d_weights,
                                       device=self.device, max_clips=self.max_clips))


@dataclass(frozen=True)
class Task:
    id: str
    video: str
    path: str            # output feature file
    meta: dict


@dataclass(frozen=True)
class Outcome:
    id: str
    video: str
    ok: bool
    error: str = ""
    seconds: float = 0.0
    fatal: bool = False  # the extractor could not be built: abort


@dataclass
class Summary:
    split: str
    total: int                     # rows in the manifest
    skipped: int = 0               # already in the store
    extracted: int = 0
    failures: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def __str__(self) -> str:
        rate = self.extracted / self.seconds if self.seconds > 0 else 0.0
        s = (f"split {self.split}: {self.total} videos — {self.extracted} extracted, "
             f"{self.skipped} already in the store, {len(self.failures)} failed; "
             f"{self.seconds:.1f} s ({rate:.2f} videos/s)")
        if self.interrupted:
            s += f"; INTERRUPTED ({self.total - self.skipped - self.extracted - len(self.failures)} left)"
        return s


# --- one video ------------------------------------------------------------------------------------

def extract_one(extractor: Callable, task: Task) -> Outcome:
    """Extract and store one video; any exception becomes a failed :class:`Outcome`.

    Stored meta precedence: the manifest's core fields (id, video, text, split, signer) win, then
    what the extractor measured (fps, frame counts, backends), then the manifest's extra columns
    (e.g. a declared ``n_frames`` or ``fps`` never overwrites the measured one)."""
    t0 = time.perf_counter()
    core = {k: task.meta.get(k, "") for k in MANIFEST_COLUMNS}
    extra = {k: v for k, v in task.meta.items() if k not in core}
    try:
        feats = extractor(task.video, meta=dict(core))
        feats.meta = {**extra, **(feats.meta or {}), **core, "id": task.id}
        save_features(task.path, feats, video_id=task.id)
    except Exception as e:  # noqa: BLE001 - a bad video must never stop the run
        msg = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
        return Outcome(task.id, task.video, False, msg, time.perf_counter() - t0)
    return Outcome(task.id, task.video, True, "", time.perf_counter() - t0)


# --- worker processes -------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(factory: ExtractorFactory, threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        _WORKER["extractor"] = factory()
    except Exception as e:  # noqa: BLE001 - reported once to the parent, which aborts
        _WORKER["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


def _worker_task(task: Task) -> Outcome:
    if "error" in _WORKER:
        return Outcome(task.id, task.video, False, _WORKER["error"], fatal=True)
    return extract_one(_WORKER["extractor"], task)


def _run_pool(queue: deque, factory: ExtractorFactory, workers: int,
              on_done: Callable[[Outcome], None]) -> list[Task]:
    """Drain ``queue`` through a pool of ``workers`` processes. If a worker process dies (segfault,
    OOM kill), the pool breaks: the tasks then in flight are returned as suspects, the rest stay queued."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(factory, threads))
    inflight: dict = {}
    suspects: list[Task] = []
    clean_exit = False
    try:
        while queue or inflight:
            while queue and len(inflight) < 2 * workers:
                task = queue.popleft()
                try:
                    inflight[ex.submit(_worker_task, task)] = task
                except BrokenProcessPool:
                    queue.appendleft(task)
                    clean_exit = True
                    return suspects + list(inflight.values())
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                task = inflight.pop(fut)
                try:
                    out = fut.result()
                except BrokenProcessPool:
                    suspects.append(task)
                    broken = True
                    continue
                if out.fatal:
                    raise ExtractorInitError(f"the extractor could not be built: {out.error}")
                on_done(out)
            if broken:
                clean_exit = True
                return suspects + list(inflight.values())
        clean_exit = True
        return suspects
    finally:
        # on an error or Ctrl-C do not wait for running videos: their files are written atomically
        ex.shutdown(wait=clean_exit, cancel_futures=True)


# --- the run --------------------------------------------------------------------------------------------

def run_extraction(manifest: Manifest, store: FeatureStore, factory: ExtractorFactory, workers: int = 1,
                   split: str = "all", progress: bool = True) -> Summary:
    """Extract every manifest video not yet in ``store``; returns a :class:`Summary` (failures
    included; ``interrupted`` set after Ctrl-C). ``workers <= 1`` runs in this process; more uses
    that many spawned processes. Raises :class:`ExtractorInitError` if no extractor can be built."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    summary = Summary(split=split, total=len(manifest))
    removed = store.clean_partial()
    if removed:
        log.info("removed %d partial file(s) left by an interrupted run", removed)
    todo: list[Task] = []
    for r in manifest:
        if store.has(r.id):
            summary.skipped += 1
        elif not os.path.exists(r.video):
            summary.failures.append(Outcome(r.id, r.video, False, f"video not found: {r.video}"))
        else:
            todo.append(Task(r.id, r.video, str(store.path_for(r.id)), r.as_dict()))
    bar = tqdm(total=len(todo), unit="video", desc=f"extract {split}", disable=not progress, file=sys.stderr)

    def on_done(out: Outcome) -> None:
        if out.ok:
            summary.extracted += 1
        else:
            summary.failures.append(out)
            log.warning("failed %s: %s", out.id, out.error)
        bar.update(1)
        bar.set_postfix(failed=len(summary.failures), refresh=False)

    try:
        if workers <= 1:
            try:
                extractor = factory()
            except Exception as e:
                raise ExtractorInitError(f"the extractor could not be built: {type(e).__name__}: {e}") from e
            for task in todo:
                on_done(extract_one(extractor, task))
        else:
            queue = deque(todo)
            crashes_in_a_row = 0
            while queue:
                for task in _run_pool(queue, factory, workers, on_done):
                    # a worker died with this video in flight: retry it alone to find the culprit
                    if not _run_pool(deque([task]), factory, 1, on_done):
                        crashes_in_a_row = 0
                        continue
                    on_done(Outcome(task.id, task.video, False,
                                    "the extraction process crashed on this video (segfault or killed)"))
                    crashes_in_a_row += 1
                    if crashes_in_a_row >= 3 and summary.extracted == 0:
                        raise ExtractorInitError(
                            "worker processes die on every video (3 in a row, none extracted): the "
                            "extractor or its environment is broken, not the videos")
    except KeyboardInterrupt:
        summary.interrupted = True      # what is stored stays stored; rerun to resume
    finally:
        bar.close()
        # workers terminated mid-write (a sibling crashed and broke the pool, or Ctrl-C) leave tmp files
        store.clean_partial()
        summary.seconds = time.perf_counter() - t0
    return summary


def write_failures(failures: list[Outcome], path: str | os.PathLike) -> Path:
    """``id, video, error`` of each failed video (header only when none failed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "video", "error"])
        w.writerows([o.id, o.video, o.error] for o in failures)
    os.replace(tmp, path)
    return path


# --- command line -----------------------------------------------------------------------------------

def _parse_opts(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise SystemExit(f"--opt expects key=value, got {it!r}")
        out[key.strip()] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seds.extract", description=__doc__.split("\n\n")[0],
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
    p.add_argument("--i3d", default="kinetics400", help="I3D weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-clips", type=int, default=64, help="at most this many 16-frame windows")
    p.add_argument("--limit", type=int, default=None, help="only the first N videos of the split")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="adapter option")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--format", choices=("store", "official"), default="store", help="official: the SEDS "
                   "authors' keypoint/I3D pickles + annotation pkl (see seds.extract.official_export)")
    return p


def main(argv: list[str] | None = None, extractor_factory: ExtractorFactory | None = None) -> int:
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
            args.pose, args.i3d, args.device), progress=not args.no_progress)
        print(f"split {split}: {s['exported']} of {len(manifest)} videos written in the authors' layout to "
              f"{args.out}; {len(s['failures'])} failed (failures_{split}.csv)")
        return 1 if s["failures"] else 0
    out = Path(args.out)
    store = FeatureStore(out, create=True)
    write_manifest(manifest, out / f"manifest_{split}.csv")
    factory = extractor_factory or PipelineFactory(args.pose, args.i3d, args.device, args.max_clips)
    failures_path = out / f"failures_{split}.csv"
    try:
        summary = run_extraction(manifest, store, factory, args.workers, split, progress=not args.no_progress)
    except ExtractorInitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_failures(summary.failures, failures_path)
    print(summary)
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
    # Run the copy of this module imported under its package name: spawned workers unpickle the
    # worker functions by module name, and multiprocessing never re-imports a package's __main__.
    from seds.extract.__main__ import main as _main
    sys.exit(_main())
