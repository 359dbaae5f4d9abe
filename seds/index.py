"""``python -m seds.index build|add|search``: build, extend and search galleries (the library is
:mod:`seds.retrieval`: :class:`~seds.retrieval.gallery_index.GalleryIndex`, :class:`~seds.retrieval.gallery.Gallery`,
:class:`~seds.retrieval.engine.SearchEngine`)::

    python -m seds.index build  --checkpoint CKPT --manifest CSV [--store DIR [--extract]] --out GALLERY [--cache]
    python -m seds.index add    --checkpoint CKPT --manifest CSV [--store DIR [--extract]] --gallery GALLERY
    python -m seds.index build  ... --out GALLERY --shard i/N     # one shard of the videos (or RANK/WORLD_SIZE)
    python -m seds.index merge  ... --out GALLERY                 # the same arguments, after every shard
    python -m seds.index search --checkpoint CKPT --gallery GALLERY (--text "..." | --video FILE) [-k 5]

Recordings (long videos; :mod:`seds.retrieval.recordings`, :mod:`seds.retrieval.localise`)::

    python -m seds.index build  --recordings --checkpoint CKPT --store STORE [--manifest CSV] --out INDEX [--shard i/N]
    python -m seds.index search --checkpoint CKPT --recordings INDEX (--text "..." | --video FILE | --video-features F)
                                [--in RECORDING] [--store STORE [--rescore 4]] [-k 10]
"""
from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from seds.checkpoint import CheckpointError, load_checkpoint
from seds.config import ConfigError
from seds.data.manifest import Manifest, ManifestError, load_manifest
from seds.data.store import FeatureStore
from seds.encode import EncodeError
from seds.extract.factory import ExtractorFactory
from seds.extract.runner import ShardError, resolve_shard, run_extraction, select_shard
from seds.retrieval.engine import EngineConfig, SearchEngine
from seds.retrieval.inputs import QueryError
from seds.retrieval.gallery import Gallery, build_gallery, checkpoint_fingerprint
from seds.retrieval.gallery_index import GalleryIndexError
from seds.retrieval.gallery_shards import build_gallery_part, merge_gallery_parts
from seds.retrieval.localise import STREAMS, LocaliseConfig, LocaliseError, Localiser
from seds.retrieval.wording import note_text
from seds.retrieval.recordings import RecordingArchive, RecordingIndexError, build_recording_index, rescore_hits
from seds.variants import variant_of
from seds.data.store import load_features, read_metadata
from seds.extract.runner import shard_of
from seds.hub import resolve_checkpoint
from seds.progname import prog

def _load_rows(args):
    m = load_manifest(args.manifest, split=args.split or None, dataset=args.dataset or None)
    if args.labeled_only:
        m = m.labeled()
    if args.limit:
        m = m.head(args.limit)
    return m


def _feature_source(args, model_cfg, rows, device: str, shared_store: bool = False):
    """``features(row)`` over a feature store; missing videos are extracted into it first (the
    checkpoint's RGB extractor, ``--pose-backend``), failures reported and skipped. ``shared_store``: other
    shards extract into the same store at the same time."""
    root = args.store
    if not root:                       # a temporary store, removed when the command ends
        root = tempfile.mkdtemp(prefix="seds-index-")
        atexit.register(shutil.rmtree, root, True)
    store = FeatureStore(root, create=True)
    missing = [r for r in rows if not store.has(r.id)]
    variant = variant_of(model_cfg)
    if missing and not variant.store_extracts:
        raise GalleryIndexError(
            f"{len(missing)} of {len(rows)} videos are not in the feature store {args.store or '(none given)'} "
            f"(e.g. {missing[0].id!r}). {variant.store_hint}")
    if missing and args.store and not args.extract:
        raise GalleryIndexError(f"{len(missing)} of {len(rows)} videos are not in the feature store {args.store} "
                                f"(e.g. {missing[0].id!r}); pass --extract to extract them")
    if missing:
        pose = args.pose_backend or (model_cfg.data.pose_backend
                                     if model_cfg.data.pose_backend in ("mediapipe", "rtmpose", "mmpose")
                                     else "mediapipe")
        factory = ExtractorFactory(model_cfg.data.rgb_features, pose, device,
                                   min(args.max_clips, model_cfg.model.max_clips),
                                   max_seconds=args.max_seconds, trim_long=args.max_seconds is not None)
        print(f"extracting {len(missing)} video(s): pose {pose}, RGB {model_cfg.data.rgb_features}, "
              f"≤ {factory.max_clips} windows", file=sys.stderr)
        summary = run_extraction(Manifest(missing), store, factory, workers=args.workers, progress=True,
                                 shared_store=shared_store)
        for f in summary.failures:
            print(f"  skipped {f.id}: {f.error}", file=sys.stderr)

    def features(row):
        return store[row.id] if store.has(row.id) else None
    return features


def _cmd_build(args, add: bool = False) -> int:
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        shard, count = resolve_shard(args.shard) if args.cmd == "build" else (0, 1)
    except ValueError as e:            # a bad --shard, RANK or WORLD_SIZE
        raise ShardError(str(e)) from None
    if count > 1 and args.sentences_only:
        raise GalleryIndexError("--sentences-only builds no video index: run it once, without shards")
    model, _, mcfg, _ = load_checkpoint(args.checkpoint, device)
    fp = checkpoint_fingerprint(args.checkpoint)
    manifest = _load_rows(args)
    info = {"built_from": {"manifest": str(args.manifest), "dataset": args.dataset or "manifest",
                           "split": args.split or "", "store": str(args.store or "")}}
    out = Path(args.out)
    if args.cmd == "merge":
        g, report = merge_gallery_parts(out, model, fp, manifest, sentences=not args.videos_only, info=info,
                                        keep_parts=args.keep_parts)
        print(report)
        print(f"wrote {g}")
        return 0
    if count > 1:
        mine = select_shard(manifest, shard, count)
        features = _feature_source(args, mcfg, list(mine), device, shared_store=True)
        part = build_gallery_part(out, model, fp, manifest, features, shard, count, cache=args.cache,
                                  thumbnails=not args.no_thumbnails, cards=args.cards, progress=True)
        print(f"shard {shard}/{count}: {len(mine)} video(s) → {part}; when every shard has finished, run the same "
              "command as merge (python -m seds.index merge ..., no --shard)")
        return 0
    rows = list(manifest)
    features = _feature_source(args, mcfg, rows, device)
    if add:
        g = Gallery.load(out)
        g.check_checkpoint(fp)
        nv = g.add_videos(model, rows, features, cache=args.cache, thumbnails=not args.no_thumbnails, cards=args.cards,
                          progress=True) if not args.sentences_only else 0
        ns = g.add_manifest_sentences(model, rows) if not args.videos_only else 0
        g.save()
        print(f"added {nv} video(s) and {ns} sentence(s) to {out}: {g}")
        return 0
    g = build_gallery(out, model, fp, rows, features, videos=not args.sentences_only,
                      sentences=not args.videos_only, cache=args.cache, thumbnails=not args.no_thumbnails, cards=args.cards,
                      progress=True, info=info)
    print(f"wrote {g}", file=sys.stdout)
    return 0


def _recording_ids(args, store: FeatureStore) -> list[str]:
    """The recordings to index: the manifest's ids, else every store entry whose meta kind is "recording"."""
    if args.manifest:
        ids = [r.id for r in _load_rows(args)]
        missing = [i for i in ids if not store.has(i)]
        if missing:
            raise RecordingIndexError(f"{len(missing)} recording(s) of the manifest are not in {args.store} "
                                      f"(e.g. {missing[0]!r}): extract them first (python -m seds.extract --recordings)")
        return ids
    ids = []
    for i in store.ids():
        meta = json.loads(read_metadata(store.path_for(i)).get("meta", "{}"))
        if meta.get("kind") == "recording":
            ids.append(i)
    if not ids:
        raise RecordingIndexError(f"no recordings (meta kind 'recording') in the feature store {args.store}")
    return ids


def _cmd_build_recordings(args) -> int:
    if not args.store:
        raise RecordingIndexError("--recordings reads the recordings' features from --store")
    shard, count = resolve_shard(args.shard)
    store = FeatureStore(args.store)
    ids = [i for i in _recording_ids(args, store) if count == 1 or shard_of(i, count) == shard]
    model, _, _, _ = load_checkpoint(args.checkpoint, "cpu" if args.device == "auto" and not torch.cuda.is_available()
                                     else ("cuda" if args.device == "auto" else args.device))
    out = Path(args.out) / "parts" / f"{shard}-of-{count}" if count > 1 else Path(args.out)
    hours = []

    def progress(rid, seconds):
        hours.append(seconds / 3600)
        print(f"  {rid}: {seconds / 60:.1f} min", file=sys.stderr)
    build_recording_index(out, model, checkpoint_fingerprint(args.checkpoint), (store[i] for i in ids),
                          info={"store": str(args.store)}, progress=progress)
    print(f"wrote {out}: {len(ids)} recording(s), {sum(hours):.2f} h")
    return 0


def _query_features(args, model, mcfg):
    """A video query's features: a feature file, or a video file extracted with the checkpoint's extractors."""
    if args.video_features:
        return load_features(args.video_features)
    pose = args.pose_backend or (mcfg.data.pose_backend if mcfg.data.pose_backend in ("mediapipe", "rtmpose", "mmpose")
                                 else "mediapipe")
    factory = ExtractorFactory(mcfg.data.rgb_features, pose, "cpu", min(args.max_clips, mcfg.model.max_clips),
                               max_seconds=30.0, trim_long=True)
    return factory()(args.video)


def _cmd_search_recordings(args) -> int:
    if sum(bool(x) for x in (args.text, args.video, args.video_features)) != 1:
        raise RecordingIndexError("give exactly one of --text, --video or --video-features")
    model, _, mcfg, _ = load_checkpoint(args.checkpoint, "cpu")
    archive = RecordingArchive(args.recordings, checkpoint_fingerprint(args.checkpoint))
    cfg = LocaliseConfig(top_k=args.k, min_span_s=args.min_span, max_span_s=args.max_span,
                         rescore=args.rescore if args.store else 0)
    loc = Localiser(model, cfg)
    query = None if args.text else _query_features(args, model, mcfg)
    result: dict = {}
    if args.within:                                   # one recording: the whole timeline, every span
        tl = archive.timeline(args.within)
        feats = FeatureStore(args.store)[args.within] if args.store else None
        res = loc.localise(tl, args.text, feats) if args.text else loc.localise_video(tl, query, feats)
        if res.notes:
            print("notes: " + ", ".join(res.notes))
        if res.status != "ok":
            print(f"no spans: {res.status}")
        for s, spans in res.spans.items():
            result[s] = [{"rank": i + 1, "recording": args.within, "start_s": sp.start_s, "end_s": sp.end_s,
                          "score": sp.score, "exact": sp.exact} for i, sp in enumerate(spans)]
        timings = res.timings
    else:
        t0 = time.perf_counter()
        q, qmask = loc.query_clips(query) if query is not None else loc.query_text(args.text)[:2]
        hits = archive.search(q, qmask, model.cfg.tau, k=args.k, cfg=cfg)
        timings = {"search": time.perf_counter() - t0}
        if args.store and cfg.rescore:
            t1 = time.perf_counter()
            store = FeatureStore(args.store)
            hits = rescore_hits(loc, hits, q, qmask, lambda rid: store[rid] if store.has(rid) else None, cfg.rescore)
            timings["rescore"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - t0
        for s, hs in hits.items():
            result[s] = [{"rank": h.rank, "recording": h.recording, "start_s": h.start_s, "end_s": h.end_s,
                          "score": h.score, "exact": h.exact} for h in hs]
    for s in STREAMS:
        print(f"\n{s}:")
        for h in result.get(s, []):
            print(f"  {h['rank']:2d}. {h['score']:7.4f}  {h['recording']}  {h['start_s']:9.2f}–{h['end_s']:.2f} s")
    print("\ntimings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in timings.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"hits": result, "timings": timings,
                                               "hours_indexed": archive.hours}, indent=2))
    return 0


def _cmd_search(args) -> int:
    if args.recordings:
        return _cmd_search_recordings(args)
    if not args.gallery:
        raise GalleryIndexError("give --gallery (clips) or --recordings (an index of recordings)")
    if bool(args.text) == bool(args.video):
        raise GalleryIndexError("give exactly one of --text or --video")
    cfg = EngineConfig(checkpoint=args.checkpoint, gallery=args.gallery, device=args.device, top_k=args.k,
                       rerank=args.rerank, pose_backend=args.pose_backend or "auto", i3d_weights=args.i3d_weights or "",
                       max_clips=args.max_clips, preview=False)
    be = SearchEngine(cfg)
    try:
        q = be.query_text(args.text) if args.text else be.query_video(args.video)
    finally:
        be.close()
    for note in getattr(q, "notes", []):
        print(f"note: {note_text(note)}")
    result = {}
    for s, hits in q.hits.items():
        print(f"\n{s}:")
        for h in hits:
            print(f"  {h.rank:2d}. {h.score:7.4f}  {h.id}  {h.meta.get('text', '')}")
        result[s] = [{"rank": h.rank, "score": h.score, "id": h.id, "text": h.meta.get("text", "")} for h in hits]
    print("\ntimings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in q.timings.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"hits": result, "timings": q.timings}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seds.index build|add|search`` (see ``--help`` of each)."""
    ap = argparse.ArgumentParser(prog=prog("seds.index", "seds-index"),
                                 description="Build, extend and search SEDS galleries.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("build", "encode a manifest's videos and sentences into a new gallery folder"),
                        ("add", "add a manifest's new videos and sentences to an existing gallery"),
                        ("merge", "assemble the parts of a sharded build (build --shard i/N) into the gallery; "
                                  "takes the build's arguments")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + config.json) or a "
                       "Hub model repo org/name[@revision]")
        p.add_argument("--manifest", required=name != "build", default=None,
                       help="manifest CSV, or a dataset's annotations with --dataset (build --recordings: optional, "
                       "default every recording in --store)")
        p.add_argument("--dataset", default=None, help="annotation adapter (how2sign, how2sign_mini, ...); "
                                                       "default: this project's manifest format")
        p.add_argument("--split", default=None, help="keep one split of the manifest")
        p.add_argument("--store", default=None, help="feature store with the videos' features (see --extract)")
        p.add_argument("--extract", action="store_true", help="extract videos missing from --store into it "
                       "(without --store, everything is extracted into a temporary store)")
        p.add_argument("--gallery" if name == "add" else "--out", dest="out", required=True, help="gallery folder")
        if name == "build":
            p.add_argument("--recordings", action="store_true", help="index long recordings (features in --store, "
                           "meta kind 'recording') for search in time: python -m seds.index search --recordings OUT")
            p.add_argument("--shard", default=None, metavar="I/N", help="encode only shard I of N (0-based; videos "
                           "hashed by id, as in python -m seds.extract) into a part of --out, for a later merge; "
                           "default: torchrun's RANK/WORLD_SIZE or Slurm's SLURM_PROCID/SLURM_NTASKS when set")
        if name == "merge":
            p.add_argument("--keep-parts", action="store_true", help="keep <out>/parts after merging")
        p.add_argument("--pose-backend", default=None, help="pose backend for extraction (default: the "
                       "checkpoint's data.pose_backend, else mediapipe)")
        p.add_argument("--max-clips", type=int, default=64, help="windows per extracted video (≤ model max_clips)")
        p.add_argument("--max-seconds", type=float, default=None, help="extract only the first N seconds of "
                       "each video (default: whole videos)")
        p.add_argument("--device", default="auto")
        p.add_argument("--workers", type=int, default=1, help="extraction processes")
        p.add_argument("--limit", type=int, default=0, help="use the first N rows only")
        p.add_argument("--labeled-only", action="store_true", help="skip rows without a sentence")
        p.add_argument("--cache", action="store_true", help="also store each video file's features in "
                       "<gallery>/cache (keyed by its SHA-256) so the app needs no extraction for them")
        p.add_argument("--no-thumbnails", action="store_true")
        p.add_argument("--cards", action="store_true", help="a card (id + sentence) as the thumbnail of videos "
                       "without a file, e.g. a store of the authors' features, so text → video results show them")
        only = p.add_mutually_exclusive_group()
        only.add_argument("--videos-only", action="store_true", help="no sentence index")
        only.add_argument("--sentences-only", action="store_true", help="no video index")
    p = sub.add_parser("search", help="query a gallery with a sentence (→ videos) or a video file (→ sentences)")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or Hub model repo org/name[@revision]")
    p.add_argument("--gallery", default=None, help="gallery folder or Hub dataset repo org/name[@revision]")
    p.add_argument("--recordings", default=None, help="an index of recordings (build --recordings) instead of "
                   "--gallery: hits are (recording, start_s, end_s, score)")
    p.add_argument("--text", default=None)
    p.add_argument("--video", default=None)
    p.add_argument("--video-features", default=None, help="with --recordings: a query clip's feature file "
                   "(.safetensors from python -m seds.extract) instead of --video")
    p.add_argument("--in", dest="within", default=None, metavar="RECORDING", help="with --recordings: localise "
                   "in this recording only (its whole timeline)")
    p.add_argument("--store", default=None, help="with --recordings: the feature store of the recordings, for the "
                   "exact re-scoring of the best spans (with --in, or over the whole index)")
    p.add_argument("--rescore", type=int, default=LocaliseConfig().rescore, help="spans per stream re-scored "
                   "exactly (needs --store)")
    p.add_argument("--min-span", type=float, default=LocaliseConfig().min_span_s, help="shortest span (s)")
    p.add_argument("--max-span", type=float, default=LocaliseConfig().max_span_s, help="longest span (s)")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--rerank", type=int, default=100)
    p.add_argument("--pose-backend", default=None, help="default auto: the checkpoint's training backend when it "
                   "runs here, else mediapipe")
    p.add_argument("--i3d-weights", default=None, help="I3D checkpoint for models trained on BSL-1K features "
                   "(the authors'); without it the Kinetics-400 I3D substitutes")
    p.add_argument("--max-clips", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the hits to this JSON file")
    args = ap.parse_args(argv)
    try:
        args.checkpoint = str(resolve_checkpoint(args.checkpoint))     # a local folder or a Hub repo's cached snapshot
        if args.cmd == "search":
            return _cmd_search(args)
        if args.cmd == "build" and args.recordings:
            return _cmd_build_recordings(args)
        if not args.manifest:
            raise GalleryIndexError("--manifest is required (except for build --recordings)")
        return _cmd_build(args, add=args.cmd == "add")
    except (GalleryIndexError, CheckpointError, ManifestError, QueryError, EncodeError, ConfigError,
            FileNotFoundError, ShardError, RecordingIndexError, LocaliseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
