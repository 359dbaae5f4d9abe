"""The extraction run: fill a feature store from a manifest, in parallel worker processes, resumably.

Videos already in the store are skipped, and since every file is written atomically an interrupted run
leaves no half files (stray ``*.tmp`` files are removed at start). A resumable extractor (a long recording,
:class:`seds.extract.recording.RecordingExtractor`) gets the recording's chunk folder
(``FeatureStore.work_dir``): a rerun restarts it at its last finished chunk. Each worker process builds its
extractor once from a picklable *extractor factory* (a zero-argument callable returning
``extractor(video_path, meta=dict) -> VideoFeatures``: :class:`seds.extract.factory.ExtractorFactory`
for the real pipeline — pose + I3D over the shared 16-frame windows, Sec. 3.1 — or a fast fake one in
tests). A video that fails (missing, corrupt, too short, ...) — even one that crashes its worker process
— is reported as a failed :class:`Outcome` and skipped; it never stops the run. Failures are appended to
the failures file as they happen, so a killed run keeps them; worker processes end with the run's
process, however it ends (:mod:`seds.extract.lifetime`). The command line is
``python -m seds.extract`` (:mod:`seds.extract.__main__`).
"""
from __future__ import annotations

import csv
import hashlib
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from seds.data.manifest import MANIFEST_COLUMNS, Manifest, write_manifest
from seds.data.store import FeatureStore, FeatureStoreError, read_metadata, save_features
from seds.extract.lifetime import die_with_parent

log = logging.getLogger("seds.extract")

ExtractorFactoryFn = Callable[[], Callable]   # any picklable zero-argument factory


class ExtractorInitError(RuntimeError):
    """The extractor itself could not be built (bad backend/weights/device): nothing can run."""


@dataclass(frozen=True)
class Task:
    id: str
    video: str
    path: str            # output feature file
    meta: dict
    work_dir: str = ""   # where a resumable extractor keeps finished chunks (FeatureStore.work_dir)


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
    resumable = bool(getattr(extractor, "resumable", False) and task.work_dir)
    try:
        if resumable:   # a long recording: finished chunks survive a killed run (seds.extract.recording)
            feats = extractor(task.video, meta=dict(core), work_dir=task.work_dir)
        else:
            feats = extractor(task.video, meta=dict(core))
        feats.meta = {**extra, **(feats.meta or {}), **core, "id": task.id}
        save_features(task.path, feats, video_id=task.id)
    except Exception as e:  # noqa: BLE001 - a bad video must never stop the run
        msg = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
        return Outcome(task.id, task.video, False, msg, time.perf_counter() - t0)
    if resumable:       # stored whole: its chunks are no longer needed
        shutil.rmtree(task.work_dir, ignore_errors=True)
    return Outcome(task.id, task.video, True, "", time.perf_counter() - t0)


# --- worker processes -------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(factory: ExtractorFactoryFn, threads: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)     # a killed run must not leave its workers running and writing
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


def _run_pool(queue: deque, factory: ExtractorFactoryFn, workers: int,
              on_done: Callable[[Outcome], None]) -> list[Task]:
    """Drain ``queue`` through a pool of ``workers`` processes. If a worker process dies (segfault,
    OOM kill), the pool breaks: the tasks then in flight are returned as suspects, the rest stay queued."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(factory, threads, os.getpid()))
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


# --- shards (several machines filling one store) ------------------------------------------------------

class ShardError(ValueError):
    """A bad ``--shard i/N`` or RANK/WORLD_SIZE."""


def resolve_shard(spec: str | None = None, env: dict | None = None) -> tuple[int, int]:
    """``(index, count)`` of this process's shard: ``spec`` (``"i/N"``, 0-based), else torchrun's
    ``RANK``/``WORLD_SIZE``, else Slurm's ``SLURM_PROCID``/``SLURM_NTASKS``, else ``(0, 1)`` (everything)."""
    env = os.environ if env is None else env
    if spec:
        i, sep, n = spec.partition("/")
        if not sep or not i.strip().isdigit() or not n.strip().isdigit():
            raise ShardError(f"--shard expects i/N with 0 ≤ i < N (e.g. 0/4), got {spec!r}")
        index, count = int(i), int(n)
    elif "WORLD_SIZE" in env:
        index, count = int(env.get("RANK", "0")), int(env["WORLD_SIZE"])
    elif "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        index, count = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    else:
        return 0, 1
    if not 0 <= index < count:
        raise ShardError(f"shard {index}/{count}: need 0 ≤ index < count")
    return index, count


def shard_of(video_id: str, count: int) -> int:
    """The shard a video belongs to: a stable hash of its id (independent of manifest order and of
    which rows another shard's manifest holds)."""
    return int.from_bytes(hashlib.sha1(video_id.encode("utf-8")).digest()[:8], "big") % count


def select_shard(manifest: Manifest, index: int, count: int) -> Manifest:
    """The rows of ``manifest`` that shard ``index`` of ``count`` extracts."""
    if count == 1:
        return manifest
    return Manifest([r for r in manifest if shard_of(r.id, count) == index], manifest.source)


# --- the run --------------------------------------------------------------------------------------------

def run_extraction(manifest: Manifest, store: FeatureStore, factory: ExtractorFactoryFn, workers: int = 1,
                   split: str = "all", progress: bool = True,
                   failures_path: str | os.PathLike | None = None, shared_store: bool = False) -> Summary:
    """Extract every manifest video not yet in ``store``; returns a :class:`Summary` (failures
    included; ``interrupted`` set after Ctrl-C). ``workers <= 1`` runs in this process; more uses
    that many spawned processes. Raises :class:`ExtractorInitError` if no extractor can be built.
    ``failures_path``: a CSV (``id, video, error``) started afresh and appended to as each failure
    happens (flushed), so that a run killed midway keeps the failures it saw. ``shared_store``: other shards
    write into ``store`` at the same time, so leftover ``*.tmp`` files (possibly theirs, in flight) are not
    removed; the CLI's verify step cleans them."""
    t0 = time.perf_counter()
    summary = Summary(split=split, total=len(manifest))
    removed = 0 if shared_store else store.clean_partial()
    if removed:
        log.info("removed %d partial file(s) left by an interrupted run", removed)
    todo: list[Task] = []
    for r in manifest:
        if store.has(r.id):
            summary.skipped += 1
        elif not os.path.exists(r.video):
            summary.failures.append(Outcome(r.id, r.video, False, f"video not found: {r.video}"))
        else:
            todo.append(Task(r.id, r.video, str(store.path_for(r.id)), r.as_dict(), str(store.work_dir(r.id))))
    failure_log = FailureLog(failures_path, summary.failures) if failures_path is not None else None
    bar = tqdm(total=len(todo), unit="video", desc=f"extract {split}", disable=not progress, file=sys.stderr)

    def on_done(out: Outcome) -> None:
        if out.ok:
            summary.extracted += 1
        else:
            summary.failures.append(out)
            if failure_log is not None:
                failure_log.append(out)
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
        if failure_log is not None:
            failure_log.close()
        # workers terminated mid-write (a sibling crashed and broke the pool, or Ctrl-C) leave tmp files
        if not shared_store:
            store.clean_partial()
        summary.seconds = time.perf_counter() - t0
    return summary


FAILURE_COLUMNS = ("id", "video", "error")


class FailureLog:
    """The failures CSV written as failures happen: header and ``initial`` rows at once, then one
    flushed row per :meth:`append` (a killed run keeps every row it got to write)."""

    def __init__(self, path: str | os.PathLike, initial: list[Outcome] = ()):
        self.path = Path(path)
        self._f = open(self.path, "w", newline="", encoding="utf-8")
        self._w = csv.writer(self._f)
        self._w.writerow(FAILURE_COLUMNS)
        for o in initial:
            self._w.writerow([o.id, o.video, o.error])
        self._f.flush()

    def append(self, o: Outcome) -> None:
        self._w.writerow([o.id, o.video, o.error])
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def write_failures(failures: list[Outcome], path: str | os.PathLike) -> Path:
    """``id, video, error`` of each failed video (header only when none failed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(FAILURE_COLUMNS)
        w.writerows([o.id, o.video, o.error] for o in failures)
    os.replace(tmp, path)
    return path


@dataclass
class Verification:
    total: int
    present: int
    missing: list[Outcome]          # not in the store, with the error a shard reported (if any)
    unreadable: list[Outcome]       # in the store but not a readable feature file

    def __str__(self) -> str:
        failed = sum(1 for o in self.missing if not o.error.startswith("not extracted"))
        return (f"{self.present} of {self.total} videos in the store; {len(self.missing)} missing "
                f"({failed} failed during extraction, {len(self.missing) - failed} never extracted), "
                f"{len(self.unreadable)} unreadable")


def verify_extraction(manifest: Manifest, store: FeatureStore, split: str) -> Verification:
    """After every shard has finished: which manifest videos are in ``store`` (their headers readable), which
    are missing and why (the shards' ``failures_<split>*.csv``). Removes leftover ``*.tmp`` files and writes the
    merged ``manifest_<split>.csv`` (all rows) and ``failures_<split>.csv`` (missing + unreadable videos)."""
    store.clean_partial()
    reported: dict[str, str] = {}
    for f in sorted(store.root.glob(f"failures_{split}*.csv")):
        with open(f, newline="", encoding="utf-8") as fh:
            reported.update({r["id"]: r["error"] for r in csv.DictReader(fh)})
    missing, unreadable, present = [], [], 0
    for r in manifest:
        if not store.has(r.id):
            missing.append(Outcome(r.id, r.video, False, reported.get(r.id, "not extracted (no shard reported it)")))
            continue
        try:
            read_metadata(store.path_for(r.id))
            present += 1
        except (FeatureStoreError, OSError) as e:
            unreadable.append(Outcome(r.id, r.video, False, f"unreadable feature file: {e}"))
    write_manifest(manifest, store.root / f"manifest_{split}.csv")
    write_failures(missing + unreadable, store.root / f"failures_{split}.csv")
    return Verification(len(manifest), present, missing, unreadable)
