"""SEDS: the dual-stream video encoder, the text encoder and the fused clip features (Fig. 2).

``encode_video`` → per-stream clip features ``{"pose", "rgb", "fused"}`` (B×T×D) with the clip mask;
``encode_text`` → word features (B×L×D) with the word mask. Similarities and losses live in
``seds/similarity.py`` and ``seds/losses.py``.

``model.variant`` (``seds.config.VariantOptions``) selects between the paper's text (``paper``) and the
authors' released code (``official``: the variant their weights load into, ``python -m seds.convert``).
The official variant differs in its batch layout (the authors' dataloader, read by its pose stream,
:data:`POSE_STREAMS`; one encode path, ``encode_batch_video``, for both):

* ``left``, ``right`` float (B, F, 21, 2): hand keypoints (x, y) in the authors' 256-px hand-crop coordinates,
  the left hand mirrored, missing = (0, 0); ``body`` float (B, F, 7, 2): COCO-WholeBody 0, 5, 7, 9, 6, 8, 10 in
  256×256 frame pixels; frames zero-padded to the longest video;
* ``clip_starts`` int64 (B, T), T = ``max_clips`` (64) always: first frame of each 16-frame clip, −1 = no
  clip; ``clip_mask`` bool (B, T),
  True = valid (True exactly where ``clip_starts ≥ 0``); ``rgb`` float (B, T, 1024) I3D features, zero-padded.

Its video features are (B, T+1, D) with the [CLS] token at index 0 and the mask (B, T+1) (index 0 valid);
its text features keep all ``max_words`` positions (mask = positions ≤ EOT).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from seds.config import ModelConfig
from seds.model.fusion import build_fusion
from seds.model.interaction_transformer import InteractionTransformer
from seds.model.pose_encoder import PoseEncoder
from seds.model.signbert_gcn import SignBertPoseEncoder
from seds.model.text_encoder import TextEncoder
from seds.similarity import PairScores, fine_grained_scores, pooled


@dataclass
class VideoEmbedding:
    streams: dict[str, torch.Tensor]   # "pose" / "rgb" / "fused" → (B, T, D)
    mask: torch.Tensor                 # (B, T) bool

    def __getitem__(self, stream: str) -> torch.Tensor:
        if stream not in self.streams:
            raise KeyError(f"stream {stream!r} not computed; have {sorted(self.streams)}")
        return self.streams[stream]

    def pooled(self, stream: str = "fused") -> torch.Tensor:
        return pooled(self[stream], self.mask)


@dataclass
class TextEmbedding:
    words: torch.Tensor                # (B, L, D)
    mask: torch.Tensor                 # (B, L) bool

    def pooled(self) -> torch.Tensor:
        return pooled(self.words, self.mask)


SIGNBERT_DIM = 1536     # [left, right, body] × 512 of the authors' pose encoder


@dataclass(frozen=True)
class PoseStream:
    """A pose encoder as the model uses it (``VariantOptions.pose_encoder`` names one of :data:`POSE_STREAMS`):
    how to build it (→ module, token width), the batch keys it reads, and how to run it on them."""
    build: Callable
    keys: tuple[str, ...]
    run: Callable                  # (module, inputs by key, clip_starts, clip_mask) → clip tokens (B, T, width)
    missing: str                   # the error for a batch without its keys ({missing}: the keys)


def _run_stgcn(enc, x, clip_starts, clip_mask):
    if x["keypoints"].shape[0] != clip_mask.shape[0]:
        raise ValueError(f"keypoints batch {x['keypoints'].shape[0]} != clip batch {clip_mask.shape[0]}")
    return enc(x["keypoints"], x["frame_mask"].bool(), clip_starts, clip_mask)


def _run_signbert(enc, x, clip_starts, clip_mask):
    if not torch.equal(clip_starts >= 0, clip_mask):
        raise ValueError("clip_mask must be True exactly where clip_starts != -1")
    return enc(x["left"], x["right"], x["body"], clip_starts)


POSE_STREAMS = {
    # the paper's ST-GCN over the store's keypoints normalised part by part (Sec. 3.2)
    "stgcn": PoseStream(lambda cfg: (PoseEncoder(cfg.pose, cfg.window), cfg.pose.out_dim),
                        ("keypoints", "frame_mask"), _run_stgcn,
                        "this model has a pose stream: keypoints and frame_mask are required"),
    # the authors' per-frame SignBERT-style ST-GCN over their batch layout (module docstring)
    "signbert": PoseStream(lambda cfg: (SignBertPoseEncoder(), SIGNBERT_DIM), ("left", "right", "body"),
                           _run_signbert, "the official variant reads the authors' batch layout; missing key(s) "
                                          "{missing} (see seds.model.seds)"),
}


class SEDS(nn.Module):
    def __init__(self, cfg: ModelConfig, with_text: bool = True):
        super().__init__()
        self.cfg = cfg
        self.streams = cfg.streams
        self.opts = opts = cfg.options
        self.pose_stream = POSE_STREAMS[opts.pose_encoder]
        if "pose" in cfg.streams:
            self.pose_encoder, pose_dim = self.pose_stream.build(cfg)
            self.pose_transformer = InteractionTransformer(cfg.pose_transformer, pose_dim, cfg.dim,
                                                           cfg.max_clips, keep_cls=opts.keep_cls_token)
        if "rgb" in cfg.streams:
            self.rgb_transformer = InteractionTransformer(cfg.rgb_transformer, cfg.rgb_dim, cfg.dim, cfg.max_clips,
                                                          keep_cls=opts.keep_cls_token)
        if len(cfg.streams) == 2:
            self.fusion = build_fusion(cfg.dim, cfg.fusion, opts)
        self.text = TextEncoder(cfg.text, cfg.dim, opts.keep_padded_words) if with_text else None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- video -------------------------------------------------------------------------------------

    def encode_video(self, keypoints: torch.Tensor | None, frame_mask: torch.Tensor | None,
                     clip_starts: torch.Tensor, clip_mask: torch.Tensor,
                     rgb: torch.Tensor | None) -> VideoEmbedding:
        """The paper variant's batch given by parts: keypoints (B, F, K, 3) normalized, frame_mask (B, F),
        clip_starts (B, T) first frame of each 16-frame window, clip_mask (B, T), rgb (B, T, 1024) I3D features
        of the same windows (:meth:`encode_batch_video`)."""
        return self.encode_batch_video({"keypoints": keypoints, "frame_mask": frame_mask, "clip_starts": clip_starts,
                                        "clip_mask": clip_mask, "rgb": rgb})

    def encode_batch_video(self, batch: dict) -> VideoEmbedding:
        """A batch (the variant's layout: ``clip_starts``, ``clip_mask``, ``rgb`` and the pose encoder's keys,
        :data:`POSE_STREAMS`) → per-stream clip features (B, T, D) and their mask; with ``keep_cls_token`` the
        features are (B, T+1, D), [CLS] at index 0, mask (B, T+1) with index 0 valid."""
        dev = self.device
        get = lambda k: batch[k].to(dev, non_blocking=True) if batch.get(k) is not None else None
        clip_starts, clip_mask = get("clip_starts"), get("clip_mask").bool()
        b, t = clip_mask.shape
        out: dict[str, torch.Tensor] = {}
        if "pose" in self.streams:
            missing = [k for k in self.pose_stream.keys if batch.get(k) is None]
            if missing:
                raise ValueError(self.pose_stream.missing.format(missing=missing))
        if clip_starts.shape != (b, t):
            raise ValueError(f"clip_starts {tuple(clip_starts.shape)} must match clip_mask {(b, t)}")
        if t > self.cfg.max_clips:
            raise ValueError(f"{t} clips > model max_clips {self.cfg.max_clips}")
        if self.opts.softmax_over_padding and t != self.cfg.max_clips:   # padded tokens enter the softmaxes
            raise ValueError(f"this model needs exactly max_clips={self.cfg.max_clips} clip slots (padded ones enter "
                             f"its softmaxes), got {t}")
        if "pose" in self.streams:
            clips = self.pose_stream.run(self.pose_encoder, {k: get(k) for k in self.pose_stream.keys},
                                         clip_starts, clip_mask)
            out["pose"] = self.pose_transformer(clips, clip_mask)
        if "rgb" in self.streams:
            rgb = get("rgb")
            if rgb is None:
                raise ValueError("this model has an RGB stream: rgb features are required")
            if rgb.shape[:2] != (b, t):
                raise ValueError(f"RGB clips {tuple(rgb.shape[:2])} differ from the pose clips {(b, t)}: "
                                 "both streams must use the same windows")
            if rgb.shape[2] != self.cfg.rgb_dim:
                raise ValueError(f"RGB features have {rgb.shape[2]} dims, model expects {self.cfg.rgb_dim}")
            out["rgb"] = self.rgb_transformer(rgb, clip_mask)
        if self.opts.fp32_tokens_before_fusion:    # the towers may run in fp16 (half_clip_towers), CGAF in fp32
            out = {k: x.float() for k, x in out.items()}
        mask = clip_mask
        if self.opts.keep_cls_token:
            mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=clip_mask.device), clip_mask], 1)
        if len(self.streams) == 2:
            out["fused"] = self.fusion(out["pose"], out["rgb"], mask)
        else:
            out["fused"] = out[self.streams[0]]
        return VideoEmbedding(out, mask)

    # --- text ----------------------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.text is None:
            raise RuntimeError("model was built without a text encoder")
        return self.text.tokenize(texts, device=self.device)

    def encode_text(self, texts_or_tokens) -> TextEmbedding:
        if self.text is None:
            raise RuntimeError("model was built without a text encoder")
        tokens = self.tokenize(texts_or_tokens) if isinstance(texts_or_tokens, (list, tuple, str)) \
            else texts_or_tokens
        words, mask = self.text(tokens)
        return TextEmbedding(words, mask)

    # --- scores --------------------------------------------------------------------------------------

    def scores(self, video: VideoEmbedding, text: TextEmbedding, stream: str = "fused",
               chunk_size: int | None = None) -> PairScores:
        return fine_grained_scores(video[stream], video.mask, text.words, text.mask, tau=self.cfg.tau,
                                   chunk_size=chunk_size, softmax_over_padding=self.opts.softmax_over_padding)

    def half_clip_towers(self) -> "SEDS":
        """The authors' serving precision (their ``convert_weights``): the Linear / conv / attention weights and
        biases, ``proj`` and ``text_projection`` of the CLIP-initialised towers (pose and RGB token towers, CLIP
        text tower) in float16; LayerNorms compute in fp32, embeddings, the pose encoder and CGAF stay fp32."""
        towers = [getattr(self, n) for n in ("pose_transformer", "rgb_transformer") if hasattr(self, n)]
        if self.text is not None and self.text.kind == "openai-clip":
            towers.append(self.text.backbone)
        for tower in towers:
            for mod in tower.modules():
                if isinstance(mod, (nn.Linear, nn.Conv1d, nn.MultiheadAttention)):
                    for name, p in mod.named_parameters(recurse=False):
                        p.data = p.data.half()
            for name in ("proj", "text_projection"):
                if isinstance(getattr(tower, name, None), nn.Parameter):
                    getattr(tower, name).data = getattr(tower, name).data.half()
        return self

    # --- optimisation ------------------------------------------------------------------------------

    def pretrained_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the modules that start from pretrained weights: the interaction
        transformers with ``clip_init``, and the text encoder unless it is the hashed one (trained from
        scratch)."""
        out = []
        if "pose" in self.streams and self.cfg.pose_transformer.clip_init:
            out.append("pose_transformer.")
        if "rgb" in self.streams and self.cfg.rgb_transformer.clip_init:
            out.append("rgb_transformer.")
        if self.text is not None and self.text.kind != "hash":
            out.append("text.")
        return tuple(out)

    def param_groups(self, lr_pose: float, lr_transformer: float) -> list[dict]:
        """Paper (Sec. 4.1): 1e-4 for the pose encoder and CGAF, 1e-5 for the interaction transformers and
        the text encoder — which there start from CLIP / pretrained weights. The small rate is a fine-tuning
        rate, so here it applies to the modules that *are* pretrained (:meth:`pretrained_prefixes`); a module
        trained from scratch (an interaction transformer without ``clip_init``, the hashed text encoder)
        joins the ``lr_pose`` group. Departure from a literal reading of the paper, measured in
        ``benchmarks/results/ablations/diagnosis_rgb.md``: an RGB transformer from scratch at the fine-tuning
        rate barely learns in the epochs the encoder around it needs."""
        pre = self.pretrained_prefixes()
        fast, slow = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (slow if name.startswith(pre) else fast).append(p)
        groups = [{"params": fast, "lr": lr_pose, "name": "scratch"},
                  {"params": slow, "lr": lr_transformer, "name": "pretrained"}]
        return [g for g in groups if g["params"]]
