"""Galleries: a video index (text → video) + a sentence index (video → text) + metadata, thumbnails and a
feature cache, built from a manifest with a checkpoint (:func:`build_gallery`). The index itself is
:class:`seds.retrieval.gallery_index.GalleryIndex`; the command line over galleries is ``python -m seds.index``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm import tqdm

from seds.checkpoint import WEIGHTS, read_config
from seds.data.features import VideoFeatures
from seds.data.store import escape_id, json_default
from seds.clips import clip_times
from seds.encode import encode_sentences, encode_videos
from seds.retrieval.gallery_index import GalleryIndex, GalleryIndexError, read_json

GALLERY_FORMAT = "seds-gallery"
GALLERY_VERSION = 1
GALLERY_INFO = "gallery.json"
DATA_FOLDERS = ("videos", "sentences", "cache")      # the gallery's own data: never served
# what a confined gallery serves: media files only (a row naming gallery.json or a cache file is refused)
SERVED_SUFFIXES = {"video": (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".ogv", ".mpg", ".mpeg", ".wmv",
                             ".flv", ".3gp", ".ts", ".gif"),
                   "thumbnail": (".jpg", ".jpeg", ".png", ".webp", ".gif")}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (the feature cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class FeatureCache:
    """``<root>/<sha256>.safetensors``: the extracted :class:`~seds.data.features.VideoFeatures` of a
    video file, keyed by the SHA-256 of its bytes, stored in float16 (keypoints and RGB) to stay
    small. A gallery build can fill it; the app reads it before running the extraction pipeline."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, sha: str) -> Path:
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise GalleryIndexError(f"not a SHA-256 hex digest: {sha!r}")
        return self.root / f"{sha}.safetensors"

    def __contains__(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.safetensors")) if self.root.is_dir() else 0

    def put(self, sha: str, feats, dtype=np.float16) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"format": "seds-feature-cache/1", "fps": repr(float(feats.fps)),
                "meta": json.dumps(feats.meta, default=json_default, sort_keys=True)}
        p = self.path(sha)
        tmp = p.with_name(f".{p.name}.tmp")
        save_file({"keypoints": np.ascontiguousarray(feats.keypoints, dtype=dtype),
                   "rgb": np.ascontiguousarray(feats.rgb, dtype=dtype),
                   "clip_starts": np.ascontiguousarray(feats.clip_starts, dtype=np.int64)}, str(tmp), meta)
        tmp.replace(p)
        return p

    def get(self, sha: str):
        """The cached features (float32), or None when absent or unreadable (then: extract)."""
        p = self.path(sha)
        if not p.is_file():
            return None
        try:
            with safe_open(str(p), framework="np") as fh:
                md = fh.metadata() or {}
                t = {k: fh.get_tensor(k) for k in ("keypoints", "rgb", "clip_starts")}
            return VideoFeatures(keypoints=t["keypoints"], rgb=t["rgb"], clip_starts=t["clip_starts"],
                                 fps=float(md.get("fps", 24.0)), meta=json.loads(md.get("meta", "{}")))
        except Exception as e:  # noqa: BLE001 - a broken cache entry is skipped, never fatal
            logging.getLogger("seds.index").warning("feature cache entry %s is unreadable (%s)", p, e)
            return None


def checkpoint_fingerprint(folder: str | Path) -> dict:
    """What a gallery must agree on with the checkpoint that queries it: the weights' SHA-256 and the
    feature sources (a gallery encoded by another model is meaningless to this one)."""
    cfg, _ = read_config(folder)
    folder = Path(folder) if Path(folder).is_dir() else Path(folder).parent
    w = folder / WEIGHTS
    if not w.is_file():
        raise GalleryIndexError(f"{folder}: no {WEIGHTS}")
    m = cfg.model
    return {"sha256": file_sha256(w), "name": folder.name, "dataset": cfg.data.dataset,
            "rgb_features": cfg.data.rgb_features, "pose_backend": cfg.data.pose_backend,
            "streams": list(m.streams), "dim": m.dim, "text_model": m.text.model, "max_clips": m.max_clips,
            "variant": m.variant}


class Gallery:
    """A gallery folder::

        gallery.json          format, the checkpoint fingerprint, counts, how it was built
        videos/               GalleryIndex(kind="video"): pose / rgb / fused clip features (T2V)
        sentences/            GalleryIndex(kind="text"): word features of unique sentences (V2T)
        thumbnails/<id>.jpg   a middle frame of each video (when the video file exists)
        cache/<sha256>.safetensors   optional extracted features of the gallery's video files

    Video metadata: ``text, video`` (path relative to the gallery folder when the file lies beside
    it, else absolute), ``thumbnail, sha256, fps, n_clips, clip_times`` (window centres, seconds),
    ``duration_s, split, signer``. Sentence metadata: ``text, videos`` (ids of the videos with it).

    Serving (:meth:`confine`): an app that lets browsers fetch the gallery's files first confines it
    to a media folder; from then on :meth:`video_path` / :meth:`thumbnail_path` give only files that
    resolve (symbolic links followed) inside that folder / inside the gallery and are media files
    (``SERVED_SUFFIXES``; never the gallery's own ``gallery.json``, ``videos/``, ``sentences/``, ``cache/``),
    and :meth:`served_files` lists exactly those files.
    """

    def __init__(self, root: str | Path, videos: GalleryIndex | None, sentences: GalleryIndex | None,
                 info: dict):
        self.root = Path(root)
        self.videos = videos
        self.sentences = sentences
        self.info = info
        self.cache = FeatureCache(self.root / "cache")
        self.media_root: Path | None = None       # set by confine(): videos must resolve inside it
        self._text_ids = {}
        if sentences is not None:
            self._text_ids = {sentences.meta(i).get("text", ""): i for i in sentences.ids}

    def __repr__(self) -> str:
        return (f"Gallery({str(self.root)!r}, videos={len(self.videos) if self.videos else 0}, "
                f"sentences={len(self.sentences) if self.sentences else 0}, cache={len(self.cache)})")

    def sentence_id(self, text: str):
        return self._text_ids.get(text.strip())

    def _resolved(self, video_id, key: str) -> Path | None:
        """The resolved path a video's ``video``/``thumbnail`` metadata names (None when empty)."""
        if self.videos is None or video_id not in self.videos:
            return None
        v = self.videos.meta(video_id).get(key) or ""
        if not v:
            return None
        return (self.root / v).resolve()      # an absolute v stays itself; ``..`` and symlinks resolved

    def _allowed(self, p: Path | None, folder: Path | None, key: str) -> bool:
        return p is not None and (folder is None or (p.is_relative_to(folder.resolve()) and self._media(p, key)))

    def _media(self, p: Path, key: str) -> bool:
        """Whether ``p`` (resolved) may be served as a ``key`` file: a media suffix, not the gallery's own data."""
        root = self.root.resolve()
        own = p == root / GALLERY_INFO or any(p.is_relative_to(root / d) for d in DATA_FOLDERS)
        return not own and p.suffix.lower() in SERVED_SUFFIXES[key]

    def video_path(self, video_id) -> str | None:
        """The video file of ``video_id`` (None when absent, or, once confined, outside the media folder or not
        a media file)."""
        p = self._resolved(video_id, "video")
        return str(p) if self._allowed(p, self.media_root, "video") and p.is_file() else None

    def thumbnail_path(self, video_id) -> str | None:
        """Its thumbnail (None when absent, or, once confined, not an image inside the gallery folder)."""
        p = self._resolved(video_id, "thumbnail")
        inside = self.root if self.media_root is not None else None
        return str(p) if self._allowed(p, inside, "thumbnail") and p.is_file() else None

    def confine(self, media_root: str | Path | None = None) -> None:
        """Check that every video row points inside ``media_root`` (default: the folder holding the
        gallery, where :meth:`add_videos` records videos "beside" it) and every thumbnail inside the
        gallery, all symbolic links resolved; raise :class:`GalleryIndexError` naming the first row
        that does not, or that names a file that is not a media file (the gallery's own ``gallery.json``,
        metadata or feature cache, anything without a video / image suffix). Afterwards only such files are
        returned (see the class docstring)."""
        root = Path(media_root if media_root is not None else self.root.resolve().parent).resolve()
        if not root.is_dir():
            raise GalleryIndexError(f"media folder {root} does not exist")
        meta_file = self.root / "videos" / "metadata.json"
        for vid in (self.videos.ids if self.videos is not None else []):
            for key, folder in (("video", root), ("thumbnail", self.root.resolve())):
                p = self._resolved(vid, key)
                if p is not None and not p.is_relative_to(folder):
                    raw = self.videos.meta(vid).get(key)
                    raise GalleryIndexError(
                        f"{meta_file}: the {key} of {vid!r} is {raw!r}, which resolves to {p}, outside {folder} — "
                        + ("the only folder the app serves videos from (set the media folder — SEDS_MEDIA_ROOT, "
                           "--media-root — to the folder that holds the gallery's videos)" if key == "video"
                           else "thumbnails must lie inside the gallery folder") + "; refusing to serve this gallery")
                if p is not None and not self._media(p, key):
                    raise GalleryIndexError(
                        f"{meta_file}: the {key} of {vid!r} is {self.videos.meta(vid).get(key)!r}, which resolves to "
                        f"{p}: not a {'video' if key == 'video' else 'thumbnail image'} file ("
                        f"{', '.join(SERVED_SUFFIXES[key])}) or one of the gallery's own data files; refusing to "
                        "serve this gallery")
        self.media_root = root

    def served_files(self) -> list[str]:
        """Every video and thumbnail file of a confined gallery: exactly what an app may let browsers fetch."""
        if self.media_root is None:
            raise GalleryIndexError("served_files() needs a confined gallery: call confine() first")
        out = set()
        for vid in (self.videos.ids if self.videos is not None else []):
            out.update(p for p in (self.video_path(vid), self.thumbnail_path(vid)) if p)
        return sorted(out)

    def check_checkpoint(self, fingerprint: dict) -> None:
        """Raise when the gallery was encoded by other weights than ``fingerprint``'s."""
        mine = self.info.get("checkpoint", {})
        if mine.get("sha256") != fingerprint.get("sha256"):
            raise GalleryIndexError(
                f"{self.root} was built with checkpoint {mine.get('name', '?')} (weights sha256 "
                f"{str(mine.get('sha256'))[:12]}…), not with the loaded one ({fingerprint.get('name')}, "
                f"{str(fingerprint.get('sha256'))[:12]}…): its features mean nothing to this model. Rebuild it: "
                f"python -m seds.index build --checkpoint <this checkpoint> --manifest ... --out {self.root}")

    # -- persistence ------------------------------------------------------------------------------
    def save(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.videos is not None:
            self.videos.save(self.root / "videos")
        if self.sentences is not None:
            self.sentences.save(self.root / "sentences")
        self.info.update({"format": GALLERY_FORMAT, "version": GALLERY_VERSION,
                          "n_videos": len(self.videos) if self.videos is not None else 0,
                          "n_sentences": len(self.sentences) if self.sentences is not None else 0})
        (self.root / GALLERY_INFO).write_text(json.dumps(self.info, indent=2, sort_keys=True))
        return self.root

    @classmethod
    def load(cls, root: str | Path, device: str | torch.device = "cpu") -> "Gallery":
        root = Path(root)
        if not (root / GALLERY_INFO).is_file():
            raise GalleryIndexError(f"{root}: no {GALLERY_INFO} — not a gallery folder (build one with "
                                    "python -m seds.index build)")
        info = read_json(root / GALLERY_INFO)
        if not isinstance(info, dict) or info.get("format") != GALLERY_FORMAT:
            raise GalleryIndexError(f"{root / GALLERY_INFO}: not a {GALLERY_FORMAT} file")
        if info.get("version") != GALLERY_VERSION:
            raise GalleryIndexError(f"{root / GALLERY_INFO}: version {info.get('version')!r} is not supported")
        videos = GalleryIndex.load(root / "videos", device=device) if (root / "videos").is_dir() else None
        sentences = GalleryIndex.load(root / "sentences", device=device) if (root / "sentences").is_dir() else None
        if videos is None and sentences is None:
            raise GalleryIndexError(f"{root}: holds neither videos/ nor sentences/")
        return cls(root, videos, sentences, info)

    # -- adding ------------------------------------------------------------------------------------
    def add_videos(self, model, rows, features, *, cache: bool = False, thumbnails: bool = True, cards: bool = False,
                   batch_size: int = 16, progress: bool = False) -> int:
        """Encode and add the manifest ``rows`` (``seds.data.manifest.ManifestRow``) whose ids are new;
        ``features(row)`` gives their :class:`VideoFeatures` (None: skipped). Returns how many were added."""
        if self.videos is None:
            streams = tuple(model.cfg.streams) + (("fused",) if len(model.cfg.streams) == 2 else ())
            self.videos = GalleryIndex("video", dim=model.cfg.dim, streams=streams, tau=model.cfg.tau,
                                       softmax_over_padding=model.cfg.options.softmax_over_padding)
        todo = [r for r in rows if r.id not in self.videos]
        added = 0
        bar = None
        if progress:
            bar = tqdm(total=len(todo), unit="video", desc="encode videos")
        for lo in range(0, len(todo), batch_size):
            batch_rows, feats = [], []
            for r in todo[lo:lo + batch_size]:
                f = features(r)
                if f is not None:
                    batch_rows.append(r)
                    feats.append(f)
            if bar is not None:
                bar.update(len(todo[lo:lo + batch_size]))
            if not feats:
                continue
            streams, mask = encode_videos(model, feats, batch_size)
            metas = []
            for r, f in zip(batch_rows, feats):
                metas.append(self._video_meta(r, f, clip_times(f.clip_starts, f.fps), cache, thumbnails, cards))
            self.videos.add([r.id for r in batch_rows], {s: streams[s] for s in self.videos.streams}, mask, metas)
            added += len(batch_rows)
        if bar is not None:
            bar.close()
        return added

    def _video_meta(self, row, feats, times, cache: bool, thumbnails: bool, cards: bool = False) -> dict:
        meta = {"text": row.text, "video": "", "thumbnail": "", "sha256": "", "fps": float(feats.fps),
                "n_clips": int(feats.num_clips), "clip_times": [round(float(t), 3) for t in times],
                "duration_s": round(float(feats.meta.get("duration_s", feats.num_frames / feats.fps)), 3),
                "split": row.split, "signer": row.signer}
        video = Path(row.video) if row.video else None
        if (video is None or not video.is_file()) and cards:   # e.g. a store of the authors' features
            meta["thumbnail"] = str(_write_card(self.root / "thumbnails", row.id, row.text).relative_to(self.root))
        if video is not None and video.is_file():
            v_abs, parent = video.resolve(), self.root.resolve().parent
            meta["video"] = os.path.relpath(v_abs, self.root.resolve()) if parent in v_abs.parents else str(v_abs)
            meta["sha256"] = file_sha256(video)
            if cache:
                self.cache.put(meta["sha256"], feats)
            if thumbnails:
                thumb = _write_thumbnail(video, self.root / "thumbnails", row.id)
                if thumb is not None:
                    meta["thumbnail"] = str(thumb.relative_to(self.root))
        return meta

    def add_manifest_sentences(self, model, rows) -> int:
        """Add every distinct sentence of the manifest ``rows``, each linked to the ids of its rows' videos
        that are in the gallery (to all of them when it has no video index)."""
        present = set(self.videos.ids) if self.videos is not None else None
        videos_of: dict = {}
        for r in rows:
            if r.text.strip() and (present is None or r.id in present):
                videos_of.setdefault(r.text.strip(), []).append(r.id)
        return self.add_sentences(model, [r.text for r in rows], videos_of)

    def add_sentences(self, model, texts, videos_of: dict | None = None, batch_size: int = 64) -> int:
        """Encode and add the sentences of ``texts`` not yet in the gallery (duplicates merged)."""
        if self.sentences is None:
            self.sentences = GalleryIndex("text", dim=model.cfg.dim, tau=model.cfg.tau,
                                          softmax_over_padding=model.cfg.options.softmax_over_padding)
        new = []
        for t in texts:
            t = (t or "").strip()
            if t and t not in self._text_ids and t not in new:
                new.append(t)
        videos_of = videos_of or {}
        for t, i in self._text_ids.items():      # existing sentences learn about newly added videos
            meta = self.sentences.meta(i)
            extra = [v for v in videos_of.get(t, []) if v not in meta.get("videos", [])]
            if extra:
                self.sentences.set_meta(i, {**meta, "videos": meta.get("videos", []) + extra})
        if not new:
            return 0
        start = len(self.sentences)
        ids = [f"s{start + j:06d}" for j in range(len(new))]
        for lo in range(0, len(new), batch_size):
            words, mask = encode_sentences(model, new[lo:lo + batch_size], batch_size)
            chunk_ids = ids[lo:lo + batch_size]
            metas = [{"text": t, "videos": list(videos_of.get(t, []))} for t in new[lo:lo + batch_size]]
            self.sentences.add(chunk_ids, words, mask, metas)
        self._text_ids.update(dict(zip(new, ids)))
        return len(new)


def _write_thumbnail(video: Path, folder: Path, video_id: str, height: int = 120) -> Path | None:
    """JPEG of the middle frame of ``video`` (None if it cannot be decoded)."""
    cap = cv2.VideoCapture(str(video))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n > 1:
            cap.set(cv2.CAP_PROP_POS_FRAMES, n // 2)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        return None
    h, w = frame.shape[:2]
    if h > height:
        frame = cv2.resize(frame, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{escape_id(str(video_id))}.jpg"
    cv2.imwrite(str(out), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return out


def _write_card(folder: Path, video_id: str, text: str, size: tuple[int, int] = (320, 180)) -> Path:
    """A JPEG card with the id and sentence of a gallery video that has no video file (features only), so that
    text → video results still show something to look at."""
    img = np.full((size[1], size[0], 3), 40, np.uint8)
    ascii_ = lambda t: t.encode("ascii", "replace").decode()          # noqa: E731 - cv2 draws ASCII only
    lines, line = [], ""
    for word in ascii_(text or "").split():
        if line and len(line) + len(word) + 1 > 30:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    cv2.putText(img, ascii_(str(video_id))[:40], (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (170, 170, 170), 1, cv2.LINE_AA)
    cv2.putText(img, "no video file: features only", (8, size[1] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (140, 140, 140), 1, cv2.LINE_AA)
    for i, t in enumerate(lines[:5]):
        cv2.putText(img, t, (8, 52 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (235, 235, 235), 1, cv2.LINE_AA)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{escape_id(str(video_id))}.jpg"
    cv2.imwrite(str(out), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return out


def build_gallery(out: str | Path, model, fingerprint: dict, rows, features, *, videos: bool = True,
                  sentences: bool = True, cache: bool = False, thumbnails: bool = True, cards: bool = False,
                  batch_size: int = 16, progress: bool = False, info: dict | None = None) -> Gallery:
    """A new gallery at ``out`` from manifest ``rows``: every row with features becomes a video item
    (labeled or not: unlabeled ones are distractors); every distinct sentence of a row becomes a
    sentence item. ``features(row)`` returns a :class:`VideoFeatures` or None (row skipped)."""
    out = Path(out)
    if (out / GALLERY_INFO).exists() or (out / "videos").exists():
        for sub in ("videos", "sentences", "thumbnails", "cache"):
            shutil.rmtree(out / sub, ignore_errors=True)
    g = Gallery(out, None, None, {"checkpoint": fingerprint, **(info or {})})
    rows = list(rows)
    if videos:
        g.add_videos(model, rows, features, cache=cache, thumbnails=thumbnails, cards=cards, batch_size=batch_size,
                     progress=progress)
        if g.videos is None or len(g.videos) == 0:
            raise GalleryIndexError("no video could be encoded: the gallery would be empty")
    if sentences:
        g.add_manifest_sentences(model, rows)
    g.save()
    return g
