"""Video features and sentences → the model's per-stream features, outside training: the shared
encoding step of the retrieval index (:mod:`seds.retrieval`), the app (``demo/backend.py``) and any
other consumer of a trained model.

* :func:`encode_videos`: :class:`~seds.data.features.VideoFeatures` → per-stream clip features
  (pose-only, RGB-only, fused; Sec. 3.2), zero-padded and masked to the longest video;
* :func:`encode_sentences`: sentences → word features (Sec. 3.2's text encoder);
* :func:`word_labels` (the words the text encoder scores) and :func:`clip_times` (window centres in
  seconds) label the axes of the clip × word similarity matrix E (Sec. 3.3).

Both model variants are served: the ``paper`` variant reads the store's keypoints normalised part by part
(:func:`features_to_item` + :func:`seds.data.dataset.collate`); the ``official`` variant (the authors' released
weights, ``python -m seds.convert official``) reads the authors' batch layout, made from the same
:class:`VideoFeatures` by their preprocessing (:func:`official_item`: hand crops, left-hand mirroring, 16-frame
windows at stride 1, ≤ 64 by linspace) — exactly what :class:`seds.data.official.OfficialDataset` gives training
and evaluation. Its clip features keep the [CLS] token at index 0 (mask index 0 valid) and its word features
every one of the 32 positions (padded ones too: the official similarity lets them into its softmaxes).
"""
from __future__ import annotations

import numpy as np
import torch

from seds.clips import WINDOW
from seds.data.dataset import collate, layout_selector
from seds.data.features import VideoFeatures
from seds.data.official import official_collate, official_keypoints
from seds.data.official_batch import OfficialPreprocess, official_sample
from seds.data.official_format import OfficialFormatError
from seds.keypoints import KeypointLayout, normalize_parts


class EncodeError(ValueError):
    """The features cannot be encoded by this model (e.g. more clips than ``model.max_clips``)."""


def features_to_item(feats: VideoFeatures, layout, conf_threshold: float = 0.3, text: str = "") -> dict:
    """A :class:`seds.data.dataset.FeatureDataset`-style item (keypoints of ``layout`` normalized part
    by part, RGB windows, clip starts) for :func:`seds.data.dataset.collate`."""
    kp = feats.keypoints[:, layout_selector(layout)]
    kp = normalize_parts(kp, layout, conf_threshold=conf_threshold)
    return {"id": str(feats.meta.get("id", "")), "keypoints": np.ascontiguousarray(kp, np.float32),
            "rgb": feats.rgb, "clip_starts": feats.clip_starts, "text": text, "meta": {}}


def is_official(model) -> bool:
    """Whether ``model`` reads the authors' batch layout (``model.variant: official``)."""
    return model.cfg.options.pose_encoder == "signbert"


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
        raise EncodeError(f"{e}. The official variant reads features in the authors' layout: import their files "
                          "(python -m seds.data.official import ...) or extract with python -m seds.extract "
                          "--format official and import that; a store made by plain seds.extract fits the "
                          "paper variant only") from None
    return {**s, "id": vid, "text": text}


@torch.inference_mode()
def encode_videos(model, feats_list: list[VideoFeatures], batch_size: int = 16):
    """Per-stream clip features of several videos → (``{stream: (N, T, D)}`` float32 CPU, mask (N, T)),
    T the longest video's clip count (shorter ones zero-padded and masked); official variant: T = 1 +
    ``max_clips`` ([CLS] first), padded positions keep the model's features."""
    layout = KeypointLayout(extra=model.cfg.pose.extra_parts)
    official = is_official(model)
    for f in feats_list:
        if f.num_clips > model.cfg.max_clips:
            raise EncodeError(f"video {f.meta.get('id', '')!r} has {f.num_clips} clips; this model takes at most "
                           f"{model.cfg.max_clips} (model.max_clips)")
    t = model.cfg.max_clips + 1 if official else max(f.num_clips for f in feats_list)
    streams: dict[str, torch.Tensor] = {}
    mask = torch.zeros(len(feats_list), t, dtype=torch.bool)
    amp = model.device.type == "cuda" and not official   # official: fp32, or the authors' fp16 towers
    for lo in range(0, len(feats_list), batch_size):
        chunk = feats_list[lo:lo + batch_size]
        batch = official_collate([official_item(f, max_clips=model.cfg.max_clips) for f in chunk]) if official \
            else collate([features_to_item(f, layout) for f in chunk])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            emb = model.encode_batch_video(batch)
        n, tb = emb.mask.shape
        for s, x in emb.streams.items():
            if s not in streams:
                streams[s] = torch.zeros(len(feats_list), t, x.shape[-1])
            streams[s][lo:lo + n, :tb] = x.float().cpu()
        mask[lo:lo + n, :tb] = emb.mask.cpu()
    return streams, mask


@torch.inference_mode()
def encode_sentences(model, texts: list[str], batch_size: int = 64):
    """Word features of sentences → (words (N, L, D) float32 CPU, mask (N, L))."""
    words, masks = [], []
    amp = model.device.type == "cuda" and not is_official(model)
    for lo in range(0, len(texts), batch_size):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            e = model.encode_text(list(texts[lo:lo + batch_size]))
        words.append(e.words.float().cpu())
        masks.append(e.mask.cpu())
    n = max(w.shape[1] for w in words)
    w_out = torch.zeros(len(texts), n, words[0].shape[-1])
    m_out = torch.zeros(len(texts), n, dtype=torch.bool)
    lo = 0
    for w, m in zip(words, masks):
        w_out[lo:lo + w.shape[0], :w.shape[1]] = w
        m_out[lo:lo + w.shape[0], :w.shape[1]] = m
        lo += w.shape[0]
    return w_out, m_out


def word_labels(model, text: str) -> list[str]:
    """The tokens the text encoder scores, in order (the heatmap's word axis): words for the hashed
    encoder, word pieces for Hugging Face tokenizers (special tokens left out)."""
    enc = model.text
    toks = enc.tokenize([text])
    if enc.kind == "openai-clip":     # SOT … EOT inclusive (the official word mask), BPE pieces
        ids = toks["input_ids"][0]
        n = int(ids.argmax()) + 1
        tok = enc.tokenizer.tok
        special = {"<|startoftext|>": "[SOT]", "<|endoftext|>": "[EOT]"}
        return [special.get(w, w) or "␣" for w in (tok.decode([i]).strip() for i in ids[:n].tolist())]
    mask = toks["word_mask"][0].bool()
    if enc.kind == "hash":
        return enc.tokenizer.words(text)[: int(mask.sum())]
    ids = toks["input_ids"][0][mask].tolist()
    return [t.replace("Ġ", "").replace("</w>", "") for t in enc.tokenizer.convert_ids_to_tokens(ids)]


def clip_times(clip_starts: np.ndarray, fps: float, frame_times: np.ndarray | None = None,
               window: int = WINDOW) -> np.ndarray:
    """Centre time (s) of each 16-frame window. ``frame_times``: time of each (kept) frame in the
    original video when frames were dropped by the filter; default ``index / fps``."""
    s = np.asarray(clip_starts, np.int64)
    if frame_times is None:
        return (s + (window - 1) / 2.0) / float(fps)
    ft = np.asarray(frame_times, np.float64)
    last = len(ft) - 1
    return 0.5 * (ft[np.minimum(s, last)] + ft[np.minimum(s + window - 1, last)])
