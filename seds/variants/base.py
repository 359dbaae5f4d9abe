"""What a model variant is, above the model: the interface :class:`Variant` that ``paper.py`` and
``official.py`` implement (see the package docstring). Every attribute is a fact the callers act on — train,
evaluate, index, encode, the retrieval engine — so none of them asks which variant it has."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seds.data.features import VideoFeatures


class VariantFeaturesError(ValueError):
    """Features that a variant cannot read (e.g. a store made for the paper variant, read by the official one)."""


@dataclass(frozen=True)
class LiveFrames:
    """Where a live query's windows sit in its video: ``times`` (s) of each window's centre, ``padded``: how many
    repeated frames filled the last window(s), ``kept_keypoints``: the keypoints of the frames the filter kept."""
    times: np.ndarray
    padded: int
    kept_keypoints: np.ndarray


class Variant:
    """One model variant's data, serving and live-query behaviour (subclasses fill every attribute)."""

    name: str = ""
    # serving: bf16 autocast on CUDA (else fp32, or the authors' fp16 towers: ``fp16_towers``)
    autocast: bool = True
    fp16_towers: bool = False                 # evaluation on CUDA halves the CLIP towers (the authors' precision)
    frames_key: str = "keypoints"             # the item key whose first axis counts frames (length bucketing)
    localises: bool = True                    # can be slid along a long recording (seds.retrieval.localise)
    recordings_refusal: str = ""              # why not, when it cannot
    store_extracts: bool = True               # plain ``python -m seds.extract`` makes features it reads
    store_hint: str = ""                      # how to make its features when it does not
    live_windows: str = "max_clips"           # how a live query's windows are chosen: "max_clips" (T ≤ the
                                              # engine's limit, equal spacing) or "authors" (their preprocessing)

    # -- data ----------------------------------------------------------------------------------------
    def dataset(self, cfg, root: Path, manifest: Path, split: str, missing: str):
        """The dataset of one split over a feature store (items for :meth:`collate`)."""
        raise NotImplementedError

    @staticmethod
    def collate(items: list[dict]) -> dict:
        """A batch of the variant's items (the layout ``SEDS.encode_batch_video`` reads)."""
        raise NotImplementedError

    def batch_meta(self, batch: dict) -> list[dict]:
        """Per video of a batch: its manifest meta (at least ``sentence_id`` where known)."""
        raise NotImplementedError

    def check_item(self, item: dict, model_cfg, split: str) -> str | None:
        """What makes a dataset item unreadable by a model of ``model_cfg`` (a sentence), or None."""
        raise NotImplementedError

    # -- serving: stored features → the model's batch -------------------------------------------------
    def video_item(self, feats: VideoFeatures, model_cfg, text: str = "") -> dict:
        """One video's features as a dataset item (for :meth:`collate`)."""
        raise NotImplementedError

    def video_batch(self, feats_list: list[VideoFeatures], model_cfg) -> dict:
        return self.collate([self.video_item(f, model_cfg) for f in feats_list])

    def clip_slots(self, model_cfg, feats_list: list[VideoFeatures]) -> int:
        """T of the encoded clip features of ``feats_list`` (the shorter videos padded and masked)."""
        raise NotImplementedError

    # -- live queries ----------------------------------------------------------------------------------
    def live_max_clips(self, requested: int, model_max: int) -> int:
        """The most windows a live query of this variant uses."""
        raise NotImplementedError

    def live_extractor(self, *, pose_backend: str, rgb_weights: str, device, pose, rgb, pose_stride: int,
                       max_clips: int, max_seconds: float, budget):
        """The extraction of one uploaded video (``extract(path, progress=...)`` → ``ExtractionResult``)."""
        raise NotImplementedError

    def live_frames(self, feats: VideoFeatures, keep: np.ndarray, n_frames: int) -> LiveFrames:
        """Window times, padding and kept keypoints of a live extraction (``keep``: the filter's mask over the
        decoded frames, ``n_frames``: the frames the pipeline returned)."""
        raise NotImplementedError
