"""The feature store: one safetensors file per video holding its :class:`VideoFeatures`.

Extraction (MediaPipe/RTMPose keypoints + I3D windows, Sec. 3.1) is by far the slowest step, so it
runs once per dataset and writes here; training and evaluation only read. A file holds three
tensors, ``keypoints`` (F, 87, 3) float32 raw, ``rgb`` (T, 1024) float32 and ``clip_starts`` (T,)
int64, and the safetensors header metadata (str → str) holds ``fps``, the JSON-encoded ``meta`` dict,
the video id and a format tag.

Writes are atomic (temporary file in the same directory, ``fsync``, ``os.replace``), so a killed
extraction run never leaves a half-written ``.safetensors`` file, only ``*.tmp`` leftovers that
:meth:`FeatureStore.clean_partial` removes and every reader ignores.

A long recording (:mod:`seds.extract.recording`) is extracted chunk by chunk; its finished chunks wait in
``<root>/.partial/<stem>/`` (:meth:`FeatureStore.work_dir`, hidden from :meth:`FeatureStore.ids`) until the
whole recording is written as one ordinary feature file, so a killed run resumes at its last chunk.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from seds.atomic import atomic_write_bytes
from seds.data.features import VideoFeatures

FORMAT_TAG = "seds.video_features"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
TMP_SUFFIX = ".tmp"
WORK_DIR = ".partial"    # per-recording folders of finished chunks (resumable extraction of long recordings)
_TENSORS = ("keypoints", "rgb", "clip_starts")
_MAX_STEM = 180          # escaped ids longer than this are shortened and hashed (255-byte name limit)
_HASH_MARK = "~"         # never produced by the escaping itself, so it marks hashed names


class FeatureStoreError(ValueError):
    """A feature file is missing, corrupt or not in the SEDS feature format."""


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"meta value of type {type(o).__name__} is not JSON-serialisable")


def save_features(path: str | os.PathLike, feats: VideoFeatures, video_id: str | None = None) -> Path:
    """Write ``feats`` to ``path`` atomically (tmp file in the same directory, fsync, ``os.replace``)."""
    path = Path(path)
    feats.validate()
    try:
        meta_json = json.dumps(feats.meta, default=json_default, ensure_ascii=False)
    except TypeError as e:
        raise FeatureStoreError(f"cannot save {path}: {e}") from e
    metadata = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "fps": repr(float(feats.fps)),
                "meta": meta_json}
    if video_id is not None:
        metadata["id"] = str(video_id)
    blob = save({"keypoints": np.ascontiguousarray(feats.keypoints, dtype=np.float32),
                 "rgb": np.ascontiguousarray(feats.rgb, dtype=np.float32),
                 "clip_starts": np.ascontiguousarray(feats.clip_starts, dtype=np.int64)}, metadata)
    return atomic_write_bytes(path, blob, suffix=TMP_SUFFIX)


def _read_header(path: Path):
    """Open ``path`` with safetensors; return (handle context) or raise a FeatureStoreError."""
    try:
        return safe_open(str(path), framework="np")
    except Exception as e:  # SafetensorError and friends: truncated/garbage header
        if not path.is_file():      # checked only on failure: one stat less per item read
            raise FileNotFoundError(f"feature file not found: {path}") from None
        raise FeatureStoreError(f"{path} is not a readable safetensors file ({e})") from e


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The raw safetensors header metadata of a feature file (cheap: tensors are not read)."""
    path = Path(path)
    with _read_header(path) as f:
        return dict(f.metadata() or {})


def load_features(path: str | os.PathLike) -> VideoFeatures:
    """Read and validate one feature file; errors name the file."""
    path = Path(path)
    try:
        with _read_header(path) as f:
            md = dict(f.metadata() or {})
            if md.get("format") != FORMAT_TAG:
                raise FeatureStoreError(f"{path} is a safetensors file but not a SEDS feature file "
                                        f"(metadata format={md.get('format')!r}, expected {FORMAT_TAG!r})")
            if md.get("version") != FORMAT_VERSION:
                raise FeatureStoreError(f"{path}: feature format version {md.get('version')!r} is not "
                                        f"supported (expected {FORMAT_VERSION}); re-extract it")
            missing = [k for k in _TENSORS if k not in f.keys()]
            if missing:
                raise FeatureStoreError(f"{path} lacks tensor(s) {missing}")
            arrays = {k: f.get_tensor(k) for k in _TENSORS}
    except FeatureStoreError:
        raise
    except FileNotFoundError:
        raise
    except Exception as e:  # a header that parses but whose data is truncated
        raise FeatureStoreError(f"{path} is corrupt ({e})") from e
    try:
        fps = float(md["fps"])
        meta = json.loads(md.get("meta", "{}"))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except (KeyError, ValueError) as e:
        raise FeatureStoreError(f"{path}: bad metadata ({e})") from e
    if arrays["keypoints"].dtype != np.float32 or arrays["rgb"].dtype != np.float32 \
            or arrays["clip_starts"].dtype != np.int64:
        raise FeatureStoreError(f"{path}: unexpected dtypes "
                                f"{ {k: str(a.dtype) for k, a in arrays.items()} }")
    try:
        return VideoFeatures(fps=fps, meta=meta, **arrays)
    except ValueError as e:
        raise FeatureStoreError(f"{path}: invalid features: {e}") from e


def escape_id(video_id: str) -> str:
    """A stable, filesystem-safe file stem for a video id.

    Letters, digits, ``-``, ``_`` and ``.`` are kept, everything else (``/``, spaces, non-ASCII, ...)
    is percent-encoded (UTF-8), and a leading dot is encoded so no stem is hidden or ``..``. The
    mapping is reversible (:func:`unescape_id`) except for very long ids, which are cut and suffixed
    with ``~`` + a hash of the full id (the id itself is then recovered from the file's metadata).
    """
    if not isinstance(video_id, str) or not video_id:
        raise ValueError(f"video id must be a non-empty string, got {video_id!r}")
    stem = quote(video_id, safe="-_.").replace("~", "%7E")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha256(video_id.encode("utf-8")).hexdigest()[:16]
        stem = stem[:_MAX_STEM - 20] + _HASH_MARK + digest
    return stem


def unescape_id(stem: str) -> str | None:
    """Inverse of :func:`escape_id`; ``None`` for hashed (shortened) stems."""
    if _HASH_MARK in stem:
        return None
    return unquote(stem)


class FeatureStore:
    """A directory of per-video feature files, keyed by video id."""

    def __init__(self, root: str | os.PathLike, create: bool = False):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"feature store directory not found: {self.root}")

    def path_for(self, video_id: str) -> Path:
        return self.root / (escape_id(video_id) + SUFFIX)

    def work_dir(self, video_id: str) -> Path:
        """Where the finished chunks of a recording being extracted wait (not created here)."""
        return self.root / WORK_DIR / escape_id(video_id)

    def has(self, video_id: str) -> bool:
        return self.path_for(video_id).is_file()

    __contains__ = has

    def _files(self) -> list[os.DirEntry]:
        return [e for e in os.scandir(self.root)
                if e.name.endswith(SUFFIX) and not e.name.startswith(".") and e.is_file()]

    def ids(self) -> list[str]:
        """All stored ids, sorted (hashed long ids are read back from their metadata)."""
        out = []
        for e in self._files():
            vid = unescape_id(e.name[:-len(SUFFIX)])
            if vid is None:
                vid = read_metadata(e.path).get("id")
                if vid is None:
                    raise FeatureStoreError(f"{e.path}: shortened file name but no id in metadata")
            out.append(vid)
        return sorted(out)

    def __len__(self) -> int:
        return len(self._files())

    def __getitem__(self, video_id: str) -> VideoFeatures:
        path = self.path_for(video_id)
        try:
            return load_features(path)
        except FileNotFoundError:
            raise KeyError(f"video {video_id!r} is not in the feature store {self.root} "
                           f"(expected {path.name})") from None

    def save(self, video_id: str, feats: VideoFeatures) -> Path:
        return save_features(self.path_for(video_id), feats, video_id=video_id)

    def partial_files(self) -> list[Path]:
        """Leftover temporary files of interrupted writes."""
        return sorted(Path(e.path) for e in os.scandir(self.root)
                      if e.name.startswith(".") and e.name.endswith(TMP_SUFFIX))

    def clean_partial(self) -> int:
        """Delete leftovers of interrupted writes; only safe while no other writer uses the store."""
        n = 0
        for p in self.partial_files():
            try:
                p.unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"
