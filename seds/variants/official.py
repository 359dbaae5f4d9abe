"""The ``official`` variant: exactly what the authors' released code computes (the variant their weights load
into, ``python -m seds.convert official``). Items are the authors' batch layout made from the store by their
preprocessing (:class:`seds.data.official.OfficialDataset`, :func:`seds.data.official.official_collate`: hand
crops, left-hand mirroring, 16-frame windows at stride 1, ≤ 64 by linspace), always ``max_clips`` (64) clip
slots; a live query is extracted in their layout (:class:`seds.extract.official_export.OfficialQueryExtractor`).
Its clip features keep the [CLS] token at index 0 and its word features every position (the official
similarity lets padded ones into its softmaxes)."""
from __future__ import annotations

import numpy as np

from seds.clips import WINDOW
from seds.data.features import VideoFeatures
from seds.data.official import OfficialDataset, official_collate, official_keypoints
from seds.data.official_batch import OfficialPreprocess, official_sample
from seds.data.official_format import OfficialFormatError
from seds.clips import clip_times
from seds.extract.official_export import OfficialExporter, OfficialQueryExtractor
from seds.variants.base import LiveFrames, Variant, VariantFeaturesError

FEATURES_HINT = ("import their files (python -m seds.data.official import ...) or extract with python -m seds.extract "
                 "--format official and import that")


def official_item(feats: VideoFeatures, text: str = "", max_clips: int = 64) -> dict:
    """The authors' per-video sample (:func:`seds.data.official_batch.official_sample`) of features in their
    layout: a store imported by ``python -m seds.data.official import`` or a live query extracted with
    :class:`seds.extract.official_export.OfficialQueryExtractor` (keypoints in the 256 × 256 frame, one I3D
    feature per window the authors' preprocessing chooses)."""
    vid = str(feats.meta.get("id", ""))
    try:
        s = official_sample(official_keypoints(feats), feats.rgb, OfficialPreprocess(max_clips=max_clips),
                            name=vid or "video")
    except OfficialFormatError as e:
        raise VariantFeaturesError(f"{e}. The official variant reads features in the authors' layout: "
                                   f"{FEATURES_HINT}; a store made by plain seds.extract fits the paper variant "
                                   "only") from None
    return {**s, "id": vid, "text": text}


class OfficialVariant(Variant):
    name = "official"
    autocast = False                      # fp32, or the authors' fp16 towers
    fp16_towers = True
    frames_key = "body"
    localises = False
    recordings_refusal = ("localisation in recordings needs a paper-variant checkpoint: the official variant "
                          "reads the authors' 64-slot layout of one trimmed clip")
    store_extracts = False
    store_hint = ("An official-variant checkpoint reads features in the authors' layout: import their files "
                  "(python -m seds.data.official import ... --out STORE) or extract with "
                  "python -m seds.extract ... --format official and import that, then pass --store STORE")
    live_windows = "authors"

    def dataset(self, cfg, root, manifest, split, missing):
        return OfficialDataset(root, manifest, split=split, missing=missing)

    collate = staticmethod(official_collate)

    def batch_meta(self, batch):
        return [{"sentence_id": sid} for sid in batch["sentence_ids"]]     # the authors' batch has no meta

    def check_item(self, item, model_cfg, split):
        m = model_cfg       # the authors' batch layout: 64 clip slots of 1024-d I3D features
        if item["rgb"].shape != (m.max_clips, m.rgb_dim):
            return (f"{split} RGB features are {tuple(item['rgb'].shape)}, the official variant needs "
                    f"({m.max_clips}, {m.rgb_dim})")
        return None

    def video_item(self, feats, model_cfg, text=""):
        return official_item(feats, text, max_clips=model_cfg.max_clips)

    def clip_slots(self, model_cfg, feats_list):
        return model_cfg.max_clips + 1          # [CLS] + every slot

    def live_max_clips(self, requested, model_max):
        return model_max         # the authors' windows (≤ max_clips = 64, their preprocessing chooses them)

    def live_extractor(self, *, pose_backend, rgb_weights, device, pose, rgb, pose_stride, max_clips, max_seconds,
                       budget):
        # the authors' layout: COCO-WholeBody 133 in a 256² frame, their windows (≤ 64)
        exporter = OfficialExporter(pose_backend, rgb_weights, str(device), pose_estimator=pose, rgb_extractor=rgb,
                                    pose_stride=pose_stride)
        return OfficialQueryExtractor(exporter, max_seconds, budget=budget)

    def live_frames(self, feats, keep, n_frames):
        kept = np.flatnonzero(keep)     # keypoints of every decoded frame; windows start at decoded frame numbers
        return LiveFrames(clip_times(feats.clip_starts, feats.fps), max(WINDOW - len(kept), 0), feats.keypoints[kept])
