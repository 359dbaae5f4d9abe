"""Pose encoder (SEDS Sec. 3.1, supp. Tab. 1).

Per frame: one ST-GCN shared by both hands (the left hand is mirrored during normalization, so one
set of weights sees both) and one ST-GCN for the upper body, each 4 layers with output widths
128, 128, 256, 512, pooled over joints and concatenated → 1536 per frame (+512 per optional part).
The per-frame features are then gathered into the T chosen 16-frame clips (the same windows as the
RGB stream) and aggregated by a 1-D temporal convolution inside each clip (depthwise k=3 + pointwise)
and a mean over the clip's frames → (B, T, 1536).

Keypoints arrive normalized (``seds.keypoints.normalize_parts``): (x, y, confidence), with missing or
low-confidence points already zero — they are masked by their zero confidence, never NaN.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from seds.config import PoseEncoderConfig
from seds.keypoints import KeypointLayout, part_adjacency
from seds.model.stgcn import STGCN


class ClipTemporalConv(nn.Module):
    """Aggregates the frames of each clip: depthwise temporal conv + pointwise conv + mean."""

    def __init__(self, dim: int, kernel: int = 3):
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.pointwise = nn.Conv1d(dim, dim, 1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, W, C) frames of N clips → (N, C)."""
        h = x.transpose(1, 2)
        h = self.pointwise(F.gelu(self.depthwise(h))).transpose(1, 2)
        return self.norm(h + x).mean(dim=1)


class PoseEncoder(nn.Module):
    def __init__(self, cfg: PoseEncoderConfig, window: int = 16):
        super().__init__()
        self.cfg = cfg
        self.window = window
        self.layout = KeypointLayout(extra=cfg.extra_parts)
        self.slices = self.layout.part_slices()
        mk = lambda part: STGCN(torch.from_numpy(part_adjacency(part)), cfg.in_channels, cfg.widths,
                                cfg.temporal_kernel, cfg.dropout)
        self.hand = mk("hand")
        self.body = mk("body")
        self.extra = nn.ModuleDict({p: mk(p) for p in cfg.extra_parts})
        self.out_dim = cfg.out_dim
        self.clip_conv = ClipTemporalConv(self.out_dim, cfg.clip_kernel)

    def frame_features(self, keypoints: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """keypoints (B, F, K, 3), frame_mask (B, F) → (B, F, out_dim)."""
        b, f, k, c = keypoints.shape
        if k != self.layout.num_points or c != self.cfg.in_channels:
            raise ValueError(f"pose encoder expects keypoints (B, F, {self.layout.num_points}, "
                             f"{self.cfg.in_channels}), got {tuple(keypoints.shape)}")
        left = keypoints[:, :, self.slices["left_hand"]]
        right = keypoints[:, :, self.slices["right_hand"]]
        hands = self.hand(torch.cat([left, right], 0), torch.cat([frame_mask, frame_mask], 0))
        parts = [hands[:b], hands[b:], self.body(keypoints[:, :, self.slices["body"]], frame_mask)]
        for name, net in self.extra.items():
            parts.append(net(keypoints[:, :, self.slices[name]], frame_mask))
        return torch.cat(parts, dim=-1)

    def forward(self, keypoints: torch.Tensor, frame_mask: torch.Tensor, clip_starts: torch.Tensor,
                clip_mask: torch.Tensor) -> torch.Tensor:
        """→ (B, T, out_dim) clip features; padded clips are zero."""
        feats = self.frame_features(keypoints, frame_mask)              # (B, F, C)
        b, f, c = feats.shape
        t = clip_starts.shape[1]
        idx = clip_starts[:, :, None] + torch.arange(self.window, device=feats.device)[None, None, :]
        if bool(((idx >= f) & clip_mask[:, :, None]).any()):
            raise ValueError("a clip window runs past the keypoint frames: pose and RGB clips must be "
                             "the same windows inside the video")
        idx = idx.clamp(max=f - 1)
        gathered = feats[torch.arange(b, device=feats.device)[:, None, None], idx]   # (B, T, W, C)
        clips = self.clip_conv(gathered.reshape(b * t, self.window, c)).reshape(b, t, c)
        return clips * clip_mask[:, :, None].to(clips.dtype)
