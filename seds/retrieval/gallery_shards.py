"""A gallery built across machines: each process encodes one shard of a manifest's videos into a *part*, and
a merge step assembles the parts into the gallery a one-process :func:`seds.retrieval.gallery.build_gallery`
would have written.

Videos are assigned to shards as in sharded extraction (:func:`seds.extract.runner.shard_of`, a hash of the
id), so the same ``i/N`` covers the same videos in both steps. Shard ``i`` of ``N`` writes::

    <gallery>/parts/part-IIIII-of-NNNNN/part.json   shard, count, checkpoint fingerprint, the ids assigned to it,
                                                     the ids it skipped (no features)
    <gallery>/parts/part-IIIII-of-NNNNN/videos/     a GalleryIndex of its videos
    <gallery>/thumbnails/<id>.jpg, <gallery>/cache/<sha256>.safetensors   (one file per video: no clash)

A part appears atomically (written under a temporary name, then renamed), so a killed shard leaves none.
:func:`merge_gallery_parts` checks that every shard's part is there, built by the same checkpoint from the
same manifest, and that no video is in two parts; then it adds the videos in manifest order (the order of a
one-process build), encodes the sentences (cheap: one process) and saves the gallery.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seds.data.manifest import Manifest
from seds.extract.runner import select_shard, shard_of
from seds.retrieval.gallery import GALLERY_INFO, Gallery
from seds.retrieval.gallery_index import DTYPES, GalleryIndex, GalleryIndexError, read_json

PARTS = "parts"
PART_FORMAT = "seds-gallery-part"
PART_VERSION = 1
PART_INFO = "part.json"
_PART_NAME = re.compile(r"part-(\d{5})-of-(\d{5})")


def part_dir(gallery: str | Path, index: int, count: int) -> Path:
    return Path(gallery) / PARTS / f"part-{index:05d}-of-{count:05d}"


def build_gallery_part(out: str | Path, model, fingerprint: dict, rows: Manifest, features, index: int, count: int,
                       *, cache: bool = False, thumbnails: bool = True, cards: bool = False, batch_size: int = 16,
                       progress: bool = False) -> Path:
    """Encode the videos of shard ``index`` of ``count`` of ``rows`` (``features(row)`` → VideoFeatures or None:
    skipped) into the part folder of gallery ``out``; returns that folder."""
    mine = select_shard(rows, index, count)
    g = Gallery(out, None, None, {})
    g.add_videos(model, mine, features, cache=cache, thumbnails=thumbnails, cards=cards, batch_size=batch_size,
                 progress=progress)
    final = part_dir(out, index, count)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    g.videos.save(tmp / "videos")
    encoded = set(g.videos.ids)
    info = {"format": PART_FORMAT, "version": PART_VERSION, "shard": index, "count": count,
            "checkpoint": fingerprint, "assigned": [r.id for r in mine],
            "skipped": [r.id for r in mine if r.id not in encoded]}
    (tmp / PART_INFO).write_text(json.dumps(info, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


@dataclass
class MergeReport:
    shards: int
    videos: int = 0
    sentences: int = 0
    skipped: list = field(default_factory=list)     # ids without features (a one-process build skips them too)

    def __str__(self) -> str:
        s = f"merged {self.shards} part(s): {self.videos} video(s), {self.sentences} sentence(s)"
        if self.skipped:
            s += f"; {len(self.skipped)} video(s) skipped for lack of features (e.g. {self.skipped[:3]})"
        return s


def _read_parts(out: Path) -> tuple[int, dict[int, tuple[Path, dict]]]:
    """(shard count, {index: (folder, part.json)}) of the parts under ``out``; refuses a mix of counts."""
    root = out / PARTS
    found: dict[int, dict[int, tuple[Path, dict]]] = {}
    for d in sorted(root.glob("part-*-of-*")) if root.is_dir() else []:
        m = _PART_NAME.fullmatch(d.name)
        if not m or not d.is_dir():
            continue
        info = read_json(d / PART_INFO)
        i, n = int(m.group(1)), int(m.group(2))
        if not isinstance(info, dict) or info.get("format") != PART_FORMAT or info.get("version") != PART_VERSION \
                or info.get("shard") != i or info.get("count") != n or not isinstance(info.get("assigned"), list) \
                or not isinstance(info.get("skipped"), list):
            raise GalleryIndexError(f"{d / PART_INFO}: not a {PART_FORMAT} v{PART_VERSION} file for shard {i}/{n}")
        found.setdefault(n, {})[i] = (d, info)
    if not found:
        raise GalleryIndexError(f"{root}: no gallery parts — build them first with python -m seds.index build ... "
                                f"--out {out} --shard i/N (or under torchrun / a Slurm array)")
    if len(found) > 1:
        raise GalleryIndexError(f"{root}: parts of different shard counts {sorted(found)} — remove the stale ones "
                                f"(part-*-of-NNNNN) and merge again")
    (count, parts), = found.items()
    return count, parts


def merge_gallery_parts(out: str | Path, model, fingerprint: dict, rows: Manifest, *, sentences: bool = True,
                        info: dict | None = None, keep_parts: bool = False) -> tuple[Gallery, MergeReport]:
    """Assemble the parts of gallery ``out`` (built from the same ``rows`` and checkpoint) into the gallery a
    one-process build writes: same ids in manifest order, same stored features. Raises
    :class:`GalleryIndexError` naming missing shards (and their videos), parts built from another manifest, shard
    count or checkpoint, and a part holding a video that is not its own (which another part may hold too). The
    parts are removed afterwards unless ``keep_parts``."""
    out = Path(out)
    count, parts = _read_parts(out)
    missing = [i for i in range(count) if i not in parts]
    if missing:
        lost = [r.id for r in rows if shard_of(r.id, count) in missing]
        raise GalleryIndexError(
            f"{out / PARTS}: {len(missing)} of {count} shard part(s) missing (shard(s) {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}): {len(lost)} video(s) not encoded (e.g. {lost[:3]}). Run "
            f"python -m seds.index build ... --out {out} --shard i/{count} for each, then merge again")
    owner: dict[str, int] = {}
    indexes: dict[int, GalleryIndex] = {}
    skipped: set[str] = set()
    for i, (d, pinfo) in sorted(parts.items()):
        if pinfo.get("checkpoint", {}).get("sha256") != fingerprint.get("sha256"):
            raise GalleryIndexError(f"{d}: encoded by checkpoint {pinfo.get('checkpoint', {}).get('name', '?')}, "
                                    f"not the given one ({fingerprint.get('name')}): rebuild this shard")
        expected = {r.id for r in select_shard(rows, i, count)}
        if set(pinfo["assigned"]) != expected:       # (the order does not matter: the merge follows ``rows``)
            extra = sorted(set(pinfo["assigned"]) - expected)
            lack = sorted(expected - set(pinfo["assigned"]))
            raise GalleryIndexError(f"{d}: built from another manifest than the one given ({len(lack)} of its "
                                    f"videos absent from the part, e.g. {lack[:3]}; {len(extra)} not in the "
                                    f"manifest's shard, e.g. {extra[:3]}): rebuild this shard or pass its manifest")
        idx = GalleryIndex.load(d / "videos")
        # the shards' id sets are disjoint (a hash of the id picks one), so a video in no part's assigned list is
        # the only way to be in two parts
        unassigned = sorted(set(idx.ids) - expected)
        if unassigned:
            raise GalleryIndexError(f"{d}: holds video(s) not assigned to shard {i} (so possibly in two parts), "
                                    f"e.g. {unassigned[:3]}: rebuild this shard")
        owner.update(dict.fromkeys(idx.ids, i))
        indexes[i] = idx
        skipped.update(pinfo["skipped"])
    order = [r.id for r in rows if r.id in owner]
    g = Gallery(out, _concatenate(order, owner, indexes), None, {"checkpoint": fingerprint, **(info or {})})
    report = MergeReport(count, len(order), skipped=[r.id for r in rows if r.id in skipped])
    if sentences:
        report.sentences = g.add_manifest_sentences(model, rows)
    if (out / GALLERY_INFO).exists():          # a previous gallery here: its sentence index is stale
        shutil.rmtree(out / "sentences", ignore_errors=True)
    g.save()
    if not keep_parts:
        shutil.rmtree(out / PARTS, ignore_errors=True)
    return g, report


def _concatenate(order: list[str], owner: dict[str, int], indexes: dict[int, GalleryIndex]) -> GalleryIndex:
    """One index of the items ``order`` (ids) taken from the part indexes, in that order. Stored features are
    already normalised and rounded to the index dtype, so ``add`` stores them bit for bit again (re-normalising
    changes a value by far less than half a float16 step) and computes the same pooled vectors."""
    if not order:
        raise GalleryIndexError("no video could be encoded in any part: the gallery would be empty")
    first = indexes[owner[order[0]]]
    config = first.config
    for i, idx in indexes.items():
        if len(idx) and idx.config != config:
            raise GalleryIndexError(f"part {i}: index config {idx.config} differs from {config}")
    merged = GalleryIndex(config=config)
    src: dict[int, list[int]] = {}
    dst: dict[int, list[int]] = {}
    for j, v in enumerate(order):
        src.setdefault(owner[v], []).append(indexes[owner[v]].row(v))
        dst.setdefault(owner[v], []).append(j)
    rows = {i: torch.tensor(r, dtype=torch.long) for i, r in src.items()}
    where = {i: torch.tensor(r, dtype=torch.long) for i, r in dst.items()}
    feats, masks = {}, {}
    for s in config.streams:
        data = {i: indexes[i].stream_data(s) for i in rows}
        t = max(f.shape[1] for f, _ in data.values())
        feats[s] = torch.zeros((len(order), t, config.dim), dtype=DTYPES[config.dtype])
        masks[s] = torch.zeros((len(order), t), dtype=torch.bool)
        for i, (f, m) in data.items():
            feats[s][where[i], :f.shape[1]] = f.index_select(0, rows[i]).cpu()
            masks[s][where[i], :m.shape[1]] = m.index_select(0, rows[i]).cpu()
    merged.add(order, feats, masks, [indexes[owner[v]].meta(v) for v in order])
    return merged
