"""Video features and sentences → the model's per-stream features, outside training: the shared
encoding step of the retrieval index (:mod:`seds.retrieval`), the app (``demo/backend.py``) and any
other consumer of a trained model.

* :func:`encode_videos`: :class:`~seds.data.features.VideoFeatures` → per-stream clip features
  (pose-only, RGB-only, fused; Sec. 3.2), zero-padded and masked to the longest video;
* :func:`encode_sentences`: sentences → word features (Sec. 3.2's text encoder);
* :func:`word_labels` (the words the text encoder scores) labels the word axis of the clip × word similarity
  matrix E (Sec. 3.3; the clip axis: :func:`seds.clips.clip_times`).

Both model variants are served: the model's variant (:func:`seds.variants.variant_of`) turns the features into
its batch (``paper``: the store's keypoints normalised part by part; ``official``: the authors' batch layout made
by their preprocessing, exactly what training and evaluation read), says how many clip slots come out (the
official variant keeps the [CLS] token at index 0 and all 64 slots) and whether bf16 autocast applies.
"""
from __future__ import annotations

import torch

from seds.data.features import VideoFeatures
from seds.variants import variant_of
from seds.variants.base import VariantFeaturesError


class EncodeError(ValueError):
    """The features cannot be encoded by this model (e.g. more clips than ``model.max_clips``)."""


@torch.inference_mode()
def encode_videos(model, feats_list: list[VideoFeatures], batch_size: int = 16):
    """Per-stream clip features of several videos → (``{stream: (N, T, D)}`` float32 CPU, mask (N, T)),
    T the longest video's clip count (shorter ones zero-padded and masked); official variant: T = 1 +
    ``max_clips`` ([CLS] first), padded positions keep the model's features."""
    variant = variant_of(model)
    for f in feats_list:
        if f.num_clips > model.cfg.max_clips:
            raise EncodeError(f"video {f.meta.get('id', '')!r} has {f.num_clips} clips; this model takes at most "
                           f"{model.cfg.max_clips} (model.max_clips)")
    t = variant.clip_slots(model.cfg, feats_list)
    streams: dict[str, torch.Tensor] = {}
    mask = torch.zeros(len(feats_list), t, dtype=torch.bool)
    amp = model.device.type == "cuda" and variant.autocast
    for lo in range(0, len(feats_list), batch_size):
        chunk = feats_list[lo:lo + batch_size]
        try:
            batch = variant.video_batch(chunk, model.cfg)
        except VariantFeaturesError as e:
            raise EncodeError(str(e)) from None
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
    amp = model.device.type == "cuda" and variant_of(model).autocast
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
