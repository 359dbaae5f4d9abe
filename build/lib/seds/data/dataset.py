"""Torch dataset over the feature store, and the batch collation.

Each item is one video of a manifest split: its keypoints in the requested
:class:`~seds.keypoints.KeypointLayout` (the 49 SEDS points of Sec. 3.1, plus face/mouth for the
keypoint ablation, selected from the 87-point store layout) normalized part by part
(:func:`seds.keypoints.normalize_parts`), its I3D window features, the window starts shared by both
streams, and the sentence. :func:`collate` pads a list of items into batch tensors with masks.
"""
from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from seds.data.features import RGB_DIM, STORE_LAYOUT, VideoFeatures
from seds.data.manifest import Manifest, ManifestError, load_manifest
from seds.data.store import FeatureStore, FeatureStoreError
from seds.keypoints import KeypointLayout, normalize_parts

log = logging.getLogger(__name__)


def layout_index(layout: KeypointLayout) -> np.ndarray:
    """Indices into the 87-point store layout giving ``layout``'s points in ``layout``'s order."""
    store = STORE_LAYOUT.part_slices()
    target = layout.part_slices()
    idx = np.concatenate([np.arange(store[p].start, store[p].stop) for p in target])
    # the layout's parts are contiguous in the same order, so the concatenation lands on them
    for p, sl in target.items():
        if not np.array_equal(idx[sl], np.arange(store[p].start, store[p].stop)):
            raise AssertionError(f"part {p} misplaced when selecting {layout} from the store layout")
    return idx


def layout_selector(layout: KeypointLayout) -> np.ndarray | slice:
    """:func:`layout_index` as a slice when the points are contiguous (the 49 SEDS points, all 87), so that
    ``keypoints[:, layout_selector(layout)]`` is a view instead of a copy."""
    idx = layout_index(layout)
    if np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def truncate_words(text: str, max_words: int | None) -> str:
    """First ``max_words`` whitespace-separated words (``None``: unchanged)."""
    if max_words is None:
        return text
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


class FeatureDataset(Dataset):
    """Videos of one manifest split, read from a :class:`FeatureStore`.

    Args:
        store_root: the feature store directory.
        manifest: a :class:`Manifest` or a manifest CSV path (see :func:`load_manifest`).
        split: keep only this split (``None``: every row of ``manifest``).
        layout: keypoint parts the model consumes (default: the 49 SEDS points).
        max_words: cut sentences to this many whitespace words (``None``: the tokenizer truncates).
        normalize: apply :func:`normalize_parts` (else raw pixel coordinates + confidence).
        require_text: drop unlabeled rows (no sentence); they are kept when False (e.g. distractors).
        preload: read (and normalize) everything once at construction instead of per item.
        missing: ``"error"`` (default) raises listing videos absent from the store; ``"skip"`` drops
            them with a warning.
    """

    def __init__(self, store_root: str | os.PathLike, manifest: Manifest | str | os.PathLike,
                 split: str | None = None, layout: KeypointLayout = KeypointLayout(),
                 max_words: int | None = None, normalize: bool = True, require_text: bool = True,
                 preload: bool = False, missing: str = "error", conf_threshold: float = 0.3):
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        if max_words is not None and max_words < 1:
            raise ValueError(f"max_words must be ≥ 1 or None, got {max_words}")
        self.store = FeatureStore(store_root)
        if not isinstance(manifest, Manifest):
            manifest = load_manifest(manifest)
        if split is not None:
            manifest = manifest.select(split)
        rows = list(manifest)
        if require_text:
            n0 = len(rows)
            rows = [r for r in rows if r.labeled]
            if len(rows) < n0:
                log.info("%s: dropped %d unlabeled rows (require_text=True)", manifest.source, n0 - len(rows))
            if not rows:
                raise ManifestError(f"{manifest.source}: no labeled rows (split={split!r}); "
                                    "use require_text=False to keep unlabeled videos")
        absent = [r.id for r in rows if not self.store.has(r.id)]
        if absent:
            msg = (f"{len(absent)} of {len(rows)} videos of {manifest.source} (split={split!r}) are not "
                   f"in the feature store {self.store.root}, e.g. {absent[:10]}; run python -m seds.extract")
            if missing == "error" or len(absent) == len(rows):
                raise FeatureStoreError(msg)
            warnings.warn(msg + " — skipping them", stacklevel=2)
            gone = set(absent)
            rows = [r for r in rows if r.id not in gone]
        self.rows = rows
        self.layout = layout
        self.max_words = max_words
        self.normalize = normalize
        self.conf_threshold = conf_threshold
        self._index = layout_selector(layout)
        self._cache: list[dict] | None = None
        if preload:
            self._cache = [self._load(i) for i in range(len(rows))]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rows]

    @property
    def texts(self) -> list[str]:
        return [truncate_words(r.text, self.max_words) for r in self.rows]

    def _load(self, i: int) -> dict:
        row = self.rows[i]
        feats: VideoFeatures = self.store[row.id]
        kp = feats.keypoints[:, self._index]
        if self.normalize:
            kp = normalize_parts(kp, self.layout, conf_threshold=self.conf_threshold)
        core = {"id": row.id, "video": row.video, "text": row.text, "split": row.split, "signer": row.signer}
        # manifest labels win; measured extraction facts beat the manifest's declared extras
        meta = {**row.extra, **feats.meta, **core, "fps": feats.fps, "num_frames": feats.num_frames}
        return {"id": row.id, "keypoints": np.ascontiguousarray(kp, dtype=np.float32), "rgb": feats.rgb,
                "clip_starts": feats.clip_starts, "text": truncate_words(row.text, self.max_words),
                "meta": meta}

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} videos")
        if self._cache is not None:
            return self._cache[i]
        return self._load(i)


def collate(items: list[dict]) -> dict:
    """Pad a list of dataset items into a batch.

    Returns ``keypoints`` float32 (B, F, K, 3) zero-padded, ``frame_mask`` bool (B, F),
    ``clip_starts`` int64 (B, T) padded with 0, ``clip_mask`` bool (B, T), ``rgb`` float32
    (B, T, 1024) zero-padded, and the lists ``text``, ``ids``, ``meta``. F and T are the batch
    maxima. Buffers are preallocated (uninitialised) and filled by slice assignment, then only the padding is
    zeroed: a zero-filled buffer would be written twice.
    """
    if not items:
        raise ValueError("collate needs at least one item")
    n_frames = np.array([it["keypoints"].shape[0] for it in items])
    n_clips = np.array([it["clip_starts"].shape[0] for it in items])
    k = items[0]["keypoints"].shape[1:]
    for it in items:
        if it["keypoints"].shape[1:] != k:
            raise ValueError(f"item {it['id']!r} has keypoints {it['keypoints'].shape}, expected (*, {k})"
                             " — items come from datasets with different keypoint layouts")
        if it["rgb"].shape != (it["clip_starts"].shape[0], RGB_DIM):
            raise ValueError(f"item {it['id']!r}: rgb {it['rgb'].shape} does not match "
                             f"{it['clip_starts'].shape[0]} clips × {RGB_DIM}")
    b, f, t = len(items), int(n_frames.max()), int(n_clips.max())
    keypoints = np.empty((b, f, *k), dtype=np.float32)
    rgb = np.empty((b, t, RGB_DIM), dtype=np.float32)
    clip_starts = np.empty((b, t), dtype=np.int64)
    for i, it in enumerate(items):
        nf, nc = n_frames[i], n_clips[i]
        keypoints[i, :nf] = it["keypoints"]
        keypoints[i, nf:] = 0
        rgb[i, :nc] = it["rgb"]
        rgb[i, nc:] = 0
        clip_starts[i, :nc] = it["clip_starts"]
        clip_starts[i, nc:] = 0
    frame_mask = np.arange(f)[None, :] < n_frames[:, None]
    clip_mask = np.arange(t)[None, :] < n_clips[:, None]
    return {"keypoints": torch.from_numpy(keypoints), "frame_mask": torch.from_numpy(frame_mask),
            "clip_starts": torch.from_numpy(clip_starts), "clip_mask": torch.from_numpy(clip_mask),
            "rgb": torch.from_numpy(rgb), "text": [it["text"] for it in items],
            "ids": [it["id"] for it in items], "meta": [it["meta"] for it in items]}
