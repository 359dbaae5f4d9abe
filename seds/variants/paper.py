"""The ``paper`` variant: the architecture as the paper's text describes it (:class:`seds.config.VariantOptions`
defaults). Items are the store's keypoints normalised part by part (:class:`seds.data.dataset.FeatureDataset`,
:func:`seds.data.dataset.collate`); a live query is extracted by :class:`seds.extract.pipeline.Extractor` with at
most the engine's ``max_clips`` windows at equal intervals (Sec. 3.1)."""
from __future__ import annotations

import numpy as np

from seds.data.dataset import FeatureDataset, collate, layout_selector
from seds.data.features import VideoFeatures
from seds.clips import clip_times
from seds.extract.pipeline import ExtractConfig, Extractor
from seds.keypoints import KeypointLayout, normalize_parts
from seds.variants.base import LiveFrames, Variant


def features_to_item(feats: VideoFeatures, layout, conf_threshold: float = 0.3, text: str = "") -> dict:
    """A :class:`seds.data.dataset.FeatureDataset`-style item (keypoints of ``layout`` normalized part
    by part, RGB windows, clip starts) for :func:`seds.data.dataset.collate`."""
    kp = feats.keypoints[:, layout_selector(layout)]
    kp = normalize_parts(kp, layout, conf_threshold=conf_threshold)
    return {"id": str(feats.meta.get("id", "")), "keypoints": np.ascontiguousarray(kp, np.float32),
            "rgb": feats.rgb, "clip_starts": feats.clip_starts, "text": text, "meta": {}}


class PaperVariant(Variant):
    name = "paper"

    def dataset(self, cfg, root, manifest, split, missing):
        return FeatureDataset(root, manifest, split=split, layout=KeypointLayout(extra=cfg.model.pose.extra_parts),
                              max_words=cfg.model.text.max_words, preload=cfg.data.preload, missing=missing)

    collate = staticmethod(collate)

    def batch_meta(self, batch):
        return batch.get("meta") or [{} for _ in batch["text"]]

    def check_item(self, item, model_cfg, split):
        m = model_cfg
        k = item["keypoints"].shape[1]
        want = KeypointLayout(extra=m.pose.extra_parts).num_points
        if k != want:
            return f"{split} features have {k} keypoints per frame, model.pose.extra_parts={m.pose.extra_parts} needs {want}"
        if item["rgb"].shape[1] != m.rgb_dim:
            return f"{split} RGB features are {item['rgb'].shape[1]}-d, model.rgb_dim={m.rgb_dim}"
        if item["rgb"].shape[0] > m.max_clips:
            return (f"{split} video {item['id']} has {item['rgb'].shape[0]} clips > model.max_clips="
                    f"{m.max_clips}; re-extract with --max-clips {m.max_clips} or raise model.max_clips")
        return None

    def video_item(self, feats, model_cfg, text=""):
        return features_to_item(feats, KeypointLayout(extra=model_cfg.pose.extra_parts), text=text)

    def clip_slots(self, model_cfg, feats_list):
        return max(f.num_clips for f in feats_list)

    def live_max_clips(self, requested, model_max):
        return min(requested, model_max)

    def live_extractor(self, *, pose_backend, rgb_weights, device, pose, rgb, pose_stride, max_clips, max_seconds,
                       budget):
        xcfg = ExtractConfig(pose_backend=pose_backend, pose_stride=pose_stride, device=str(device),
                             max_clips=max_clips, max_seconds=max_seconds, trim_long=True, allow_partial=True,
                             max_short_side=budget.max_short_side, max_frame_pixels=budget.max_frame_pixels,
                             max_pixels=budget.max_pixels)
        return Extractor(xcfg, pose_estimator=pose, rgb_extractor=rgb)

    def live_frames(self, feats, keep, n_frames):
        kept = np.flatnonzero(keep)
        frame_times = kept / feats.fps            # the filter drops frames: windows sit on the kept ones
        pad = n_frames - len(kept)
        if pad > 0:
            frame_times = np.concatenate([frame_times, np.full(pad, frame_times[-1])])
        return LiveFrames(clip_times(feats.clip_starts, feats.fps, frame_times), pad, feats.keypoints[:len(kept)])
