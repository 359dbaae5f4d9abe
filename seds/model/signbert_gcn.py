"""Pose encoder of the ``official`` variant: the SignBERT-style ST-GCN of the authors' code (SEDS Sec. 3.2).

SEDS Sec. 3.2 describes the pose stream as a hand ST-GCN shared by both hands plus a body ST-GCN, then a
1-D temporal convolution inside each 16-frame clip. The released code (``modules/modeling_signbert.py``,
``modeling_gcn.py``, ``modeling_graph.py`` and ``CLIP4Clip.get_sign_output``) computes this differently from
the paper's text and from our ``paper`` variant (``seds.model.pose_encoder``); this module follows the code,
so that the released weights load and give the same numbers. Per part network (:class:`PartGCN`):

1. input (B, T, V, 2) — x, y only; every frame is a separate sample (no temporal edges: the graph has
   one frame). ``input_bn``: BatchNorm1d over the 2V channels ``v*2 + c`` with **eps 0.1** (the authors
   pass ``momentum`` positionally into ``eps``; momentum stays 0.1).
2. three graph blocks (:class:`GraphBlock`) on the joint graph, widths 2→128→128→256 (no residual / identity
   / 1×1 conv + BN). A block: 1×1 conv to K·C channels, ``Σ_k X_k A_k`` with K = 4 spatial partitions
   [self, centripetal, centrifugal, symmetric] (max hop 1), then BN → ReLU → Dropout(0.05) → 1×1 conv →
   BN → Dropout(0.05), plus the residual, ReLU.
   A_k are normalised by column degree (``A D⁻¹``); the degree counts every hop-≤1 neighbour, but a
   hop-1 edge between two joints at the same distance to the centre that is not a symmetric link is
   **dropped** from all partitions (only the body's pooled graph has one: left arm – nose).
3. part pooling: max over each joint group (hand: thumb, index, middle, ring, little, palm; body: left
   arm, right arm, nose), two graph blocks on the part graph (256→512 with conv residual, 512→512),
   max over parts, ``head`` = 1×1 conv + BN + ReLU + Dropout(0.25) → (B, T, 512).
4. two temporal blocks (:class:`TemporalBlock`) over the whole zero-padded sequence:
   ``ReLU(BN(conv1×1([ReLU(conv5(x)), ReLU(conv3b(ReLU(conv3a(x))))])))``.

:class:`SignBertPoseEncoder` runs the one hand network on the right hand, then on the left (separate
calls, so train-mode batch statistics are per hand, in the authors' order), the body network, and
concatenates **[left, right, body]** → (B, T, 1536). For every clip slot with start s ≠ −1 it takes frames
s … s+15; an empty slot (−1) is a window of **zeros**. A temporal block on 1536 channels (``clip_block``)
runs on every window, then the mean over the 16 frames → (B, n_clips, 1536). Empty slots therefore carry
f(0) ≠ 0; the model masks them later. In train mode every BatchNorm's statistics include the padded frames
and the empty windows, as in the authors' code.

The graph adjacencies ``A`` / ``A_pool`` are persistent buffers, as in the released checkpoints.

Loading (kept out of the constructors): :func:`map_official_signbert` maps the ``signbert.*`` subtree of a
released SEDS checkpoint (:func:`official_signbert_key_map`), asserting every key and shape (whole checkpoints
go through ``seds.convert``);
:func:`load_pretrain_signbert` reads the released ``pretrain_signbert.pth`` layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from seds.weights import read_state_dict

# --- graphs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkeletonGraph:
    """One skeleton: bones and symmetric links (0-based joint pairs), each joint's distance to the centre,
    and the joint groups that part pooling reduces (in pooling order)."""
    num_nodes: int
    bones: tuple[tuple[int, int], ...]
    symmetric: tuple[tuple[int, int], ...]
    depth: tuple[int, ...]
    parts: tuple[tuple[int, ...], ...] = ()

    def partitions(self) -> torch.Tensor:
        """(4, V, V) spatial partitions [self, centripetal, centrifugal, symmetric]; entry [k, src, dst]."""
        v = self.num_nodes
        link = torch.eye(v, dtype=torch.float64, device="cpu")   # also under a meta default device
        for i, j in self.bones + self.symmetric:
            link[i, j] = link[j, i] = 1.0
        norm = link / link.sum(0, keepdim=True)               # A D^-1, D = column degree
        sym = {(i, j) for i, j in self.symmetric} | {(j, i) for i, j in self.symmetric}
        out = torch.zeros(4, v, v, dtype=torch.float64, device="cpu")
        for src in range(v):
            out[0, src, src] = norm[src, src]
            for dst in range(v):
                if src == dst or link[src, dst] == 0:
                    continue
                if (src, dst) in sym:
                    k = 3
                elif self.depth[src] == self.depth[dst]:
                    continue                                   # dropped, as in the authors' graph
                else:
                    k = 1 if self.depth[src] > self.depth[dst] else 2
                out[k, src, dst] = norm[src, dst]
        return out.float()


def _hand_graph() -> SkeletonGraph:
    fingers = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]
    bones = []
    for f in fingers:
        chain = [0] + f
        bones += list(zip(chain[:-1], chain[1:]))
    # same joint of neighbouring fingers, little → thumb
    symmetric = [(fingers[a + 1][lvl], fingers[a][lvl]) for lvl in range(4) for a in (3, 2, 1, 0)]
    depth = [0] + [lvl + 1 for _ in fingers for lvl in range(4)]
    parts = tuple(tuple(f[1:]) for f in fingers) + ((0, 1, 5, 9, 13, 17),)
    return SkeletonGraph(21, tuple(bones), tuple(symmetric), tuple(depth), parts)


#: joints: nose, left shoulder/elbow/wrist, right shoulder/elbow/wrist (COCO-WholeBody 0, 5, 7, 9, 6, 8, 10)
BODY_GRAPH = SkeletonGraph(7, ((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6)), ((1, 4), (2, 5), (3, 6)),
                           (0, 1, 2, 3, 1, 2, 3), ((1, 2, 3), (4, 5, 6), (0,)))
HAND_GRAPH = _hand_graph()
#: graphs of the pooled parts: hand = five fingers around the palm (5); body = left arm (0), right arm (1),
#: nose (2), all at distance 0 from the centre, so the arm–nose edge is dropped.
HAND_PART_GRAPH = SkeletonGraph(6, tuple((i, 5) for i in range(5)), ((0, 1), (1, 2), (2, 3), (3, 4)),
                                (1, 1, 1, 1, 1, 0))
BODY_PART_GRAPH = SkeletonGraph(3, ((0, 2), (0, 1)), ((0, 1),), (0, 0, 0))


# --- modules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignBertGCNConfig:
    """Sizes of the authors' pose encoder (all fixed by the released checkpoints)."""
    in_channels: int = 2
    joint_widths: tuple[int, ...] = (128, 128, 256)
    part_width: int = 512          # pooled blocks, head and temporal blocks; output = 3 × part_width
    window: int = 16               # frames per clip
    gcn_dropout: float = 0.05
    head_dropout: float = 0.25
    input_bn_eps: float = 0.1

    @property
    def out_dim(self) -> int:
        return 3 * self.part_width


class GraphBlock(nn.Module):
    """Spatial graph convolution with K partitions + pointwise conv + residual, on (N, C, 1, V)."""

    def __init__(self, c_in: int, c_out: int, partitions: int, dropout: float, residual: bool = True):
        super().__init__()
        self.partitions = partitions
        self.graph_conv = nn.Conv2d(c_in, c_out * partitions, 1)
        self.bn_in = nn.BatchNorm2d(c_out)
        self.drop_in = nn.Dropout(dropout)
        self.pointwise = nn.Conv2d(c_out, c_out, 1)
        self.bn_out = nn.BatchNorm2d(c_out)
        self.drop_out = nn.Dropout(dropout)
        self.residual = residual
        if residual and c_in != c_out:
            self.res_conv = nn.Conv2d(c_in, c_out, 1)
            self.res_bn = nn.BatchNorm2d(c_out)
        else:
            self.res_conv = None

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        n, _, h, v = x.shape
        y = self.graph_conv(x).view(n, self.partitions, -1, h, v)
        y = torch.einsum("nkchv,kvw->nchw", y, adjacency).contiguous()
        y = self.drop_in(F.relu(self.bn_in(y)))
        y = self.drop_out(self.bn_out(self.pointwise(y)))
        if self.res_conv is not None:
            y = y + self.res_bn(self.res_conv(x))
        elif self.residual:
            y = y + x
        return F.relu(y)


class TemporalBlock(nn.Module):
    """Two temporal branches (k=5; k=3 → k=3) merged by a 1×1 conv, BN, ReLU, on (N, C, T)."""

    def __init__(self, dim: int):
        super().__init__()
        self.branch5 = nn.Conv1d(dim, dim, 5, padding=2)
        self.branch3a = nn.Conv1d(dim, dim, 3, padding=1)
        self.branch3b = nn.Conv1d(dim, dim, 3, padding=1)
        self.merge = nn.Conv1d(2 * dim, dim, 1)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = F.relu(self.branch5(x))
        deep = F.relu(self.branch3b(F.relu(self.branch3a(x))))
        return F.relu(self.bn(self.merge(torch.cat([wide, deep], dim=1))))


class PartGCN(nn.Module):
    """One part network (hand or body): per-frame ST-GCN + part pooling + head, then temporal blocks."""

    def __init__(self, graph: SkeletonGraph, part_graph: SkeletonGraph, cfg: SignBertGCNConfig):
        super().__init__()
        self.parts = graph.parts
        self.num_nodes = graph.num_nodes
        self.in_channels = cfg.in_channels
        self.register_buffer("A", graph.partitions())
        self.register_buffer("A_pool", part_graph.partitions())
        k, k_pool = self.A.shape[0], self.A_pool.shape[0]
        self.input_bn = nn.BatchNorm1d(cfg.in_channels * graph.num_nodes, eps=cfg.input_bn_eps)
        widths = (cfg.in_channels,) + tuple(cfg.joint_widths)
        self.joint_blocks = nn.ModuleList(
            GraphBlock(widths[i], widths[i + 1], k, cfg.gcn_dropout, residual=i > 0)
            for i in range(len(cfg.joint_widths)))
        self.part_blocks = nn.ModuleList([GraphBlock(widths[-1], cfg.part_width, k_pool, cfg.gcn_dropout),
                                          GraphBlock(cfg.part_width, cfg.part_width, k_pool, cfg.gcn_dropout)])
        self.head_conv = nn.Conv2d(cfg.part_width, cfg.part_width, 1)
        self.head_bn = nn.BatchNorm2d(cfg.part_width)
        self.head_drop = nn.Dropout(cfg.head_dropout)
        self.temporal = nn.ModuleList([TemporalBlock(cfg.part_width), TemporalBlock(cfg.part_width)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, V, C) → (B, T, part_width)."""
        b, t, v, c = x.shape
        if v != self.num_nodes or c != self.in_channels:
            raise ValueError(f"expected joints (B, T, {self.num_nodes}, {self.in_channels}), got {tuple(x.shape)}")
        # memory layouts below follow the authors' (same kernels → the same rounding, so near-tied maxima
        # pick the same joint and gradients agree too)
        h = self.input_bn(x.reshape(b * t, v * c, 1))                        # channel v*C + c
        h = h.view(b * t, v, c).permute(0, 2, 1).unsqueeze(2).contiguous()   # (N, C, 1, V)
        for block in self.joint_blocks:
            h = block(h, self.A)
        h = torch.cat([h[..., list(p)].max(dim=-1, keepdim=True).values for p in self.parts], dim=-1)
        for block in self.part_blocks:
            h = block(h, self.A_pool)
        h = h.max(dim=-1, keepdim=True).values                               # (N, C, 1, 1)
        h = self.head_drop(F.relu(self.head_bn(self.head_conv(h))))
        h = h.view(b, t, -1).transpose(1, 2)                                 # (B, C, T), strided as theirs
        for block in self.temporal:
            h = block(h)
        return h.transpose(1, 2)


class SignBertPoseEncoder(nn.Module):
    """The authors' pose encoder (SEDS Sec. 3.2, as their code computes it; see the module docstring).

    ``forward(left (B,T,21,2), right (B,T,21,2), body (B,T,7,2), clip_starts (B,n) int64, −1 = empty)``
    → (B, n, 1536). The left hand arrives already mirrored (as the authors' dataloader does)."""

    def __init__(self, cfg: SignBertGCNConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SignBertGCNConfig()
        self.window = cfg.window
        self.out_dim = cfg.out_dim
        self.hand = PartGCN(HAND_GRAPH, HAND_PART_GRAPH, cfg)     # shared by both hands
        self.body = PartGCN(BODY_GRAPH, BODY_PART_GRAPH, cfg)
        self.clip_block = TemporalBlock(cfg.out_dim)

    def frame_features(self, left: torch.Tensor, right: torch.Tensor, body: torch.Tensor) -> torch.Tensor:
        """(B, T, 1536) per-frame features [left, right, body]."""
        if not (left.shape[:2] == right.shape[:2] == body.shape[:2]):
            raise ValueError(f"left {tuple(left.shape)}, right {tuple(right.shape)} and body {tuple(body.shape)} "
                             "must share (B, T)")
        r = self.hand(right)          # right first: the order of the authors' batch-norm updates
        lh = self.hand(left)
        return torch.cat([lh, r, self.body(body)], dim=-1)

    def clip_windows(self, feats: torch.Tensor, clip_starts: torch.Tensor) -> torch.Tensor:
        """(B, T, C) frames, (B, n) starts → (B, n, window, C); empty slots (−1) are zeros."""
        b, t, c = feats.shape
        if clip_starts.dim() != 2 or clip_starts.shape[0] != b:
            raise ValueError(f"clip_starts must be (B={b}, n_clips), got {tuple(clip_starts.shape)}")
        starts = clip_starts.long()
        valid = starts >= 0
        if bool((starts < -1).any()) or bool((valid & (starts + self.window > t)).any()):
            raise ValueError(f"clip starts must be -1 (empty) or in [0, T - {self.window}] with T = {t}; got "
                             f"min {int(starts.min())}, max {int(starts.max())}")
        idx = starts.clamp(min=0)[:, :, None] + torch.arange(self.window, device=feats.device)
        windows = feats[torch.arange(b, device=feats.device)[:, None, None], idx]
        return torch.where(valid[:, :, None, None], windows, windows.new_zeros(()))

    def forward(self, left: torch.Tensor, right: torch.Tensor, body: torch.Tensor,
                clip_starts: torch.Tensor) -> torch.Tensor:
        windows = self.clip_windows(self.frame_features(left, right, body), clip_starts)
        b, n, w, c = windows.shape
        out = self.clip_block(windows.reshape(b * n, w, c).transpose(1, 2))  # (B·n, C, W)
        return out.transpose(1, 2).reshape(b, n, w, c).mean(dim=2)


# --- loading the authors' weights -----------------------------------------------------------------

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_WB = ("weight", "bias")


def _pairs(src: str, dst: str, names) -> dict[str, str]:
    return {f"{src}.{n}": f"{dst}.{n}" for n in names}


def _graph_block_map(src: str, dst: str, block: GraphBlock) -> dict[str, str]:
    m = {**_pairs(f"{src}.gcn.conv", f"{dst}.graph_conv", _WB), **_pairs(f"{src}.tcn.0", f"{dst}.bn_in", _BN),
         **_pairs(f"{src}.tcn.3", f"{dst}.pointwise", _WB), **_pairs(f"{src}.tcn.4", f"{dst}.bn_out", _BN)}
    if block.res_conv is not None:
        m.update(_pairs(f"{src}.residual.0", f"{dst}.res_conv", _WB))
        m.update(_pairs(f"{src}.residual.1", f"{dst}.res_bn", _BN))
    return m


def _temporal_map(src: str, dst: str) -> dict[str, str]:
    return {**_pairs(f"{src}.conv1d_5.0", f"{dst}.branch5", _WB), **_pairs(f"{src}.conv1d_3_1.0", f"{dst}.branch3a", _WB),
            **_pairs(f"{src}.conv1d_3_2.0", f"{dst}.branch3b", _WB), **_pairs(f"{src}.conv1x1", f"{dst}.merge", _WB),
            **_pairs(f"{src}.bn", f"{dst}.bn", _BN)}


def _part_map(src: str, dst: str, net: PartGCN) -> dict[str, str]:
    m = {f"{src}.A": f"{dst}.A", f"{src}.A_pool": f"{dst}.A_pool", **_pairs(f"{src}.data_bn", f"{dst}.input_bn", _BN)}
    for i, blk in enumerate(net.joint_blocks):
        m.update(_graph_block_map(f"{src}.st_gcn_networks.{i}", f"{dst}.joint_blocks.{i}", blk))
    for i, blk in enumerate(net.part_blocks):
        m.update(_graph_block_map(f"{src}.st_gcn_pool.{i}", f"{dst}.part_blocks.{i}", blk))
    m.update(_pairs(f"{src}.conv4.0", f"{dst}.head_conv", _WB))
    m.update(_pairs(f"{src}.conv4.1", f"{dst}.head_bn", _BN))
    for i in range(len(net.temporal)):
        m.update(_temporal_map(f"{src}.tcn_full_b{i + 1}", f"{dst}.temporal.{i}"))
    return m


#: the sub-networks of the authors' ``Sign_Bert`` (keys without the ``signbert.`` prefix) → ours
OFFICIAL_GROUPS = {"embed.st_gcn_hand": "hand", "embed.st_gcn_body": "body", "GCN_Conv": "clip_block"}


def official_signbert_key_map(cfg: SignBertGCNConfig | None = None, prefix: str = "signbert.") -> dict[str, str]:
    """Every key of the authors' ``Sign_Bert`` state dict (with ``prefix``; 261 keys at the released sizes)
    → the key of :class:`SignBertPoseEncoder` that receives it."""
    with torch.device("meta"):
        ref = SignBertPoseEncoder(cfg)
    m = {**_part_map("embed.st_gcn_hand", "hand", ref.hand), **_part_map("embed.st_gcn_body", "body", ref.body),
         **_temporal_map("GCN_Conv", "clip_block")}
    return {prefix + k: v for k, v in m.items()}


def map_official_signbert(module: SignBertPoseEncoder, state_dict: dict[str, torch.Tensor],
                          prefix: str = "signbert.", groups: tuple[str, ...] = tuple(OFFICIAL_GROUPS)
                          ) -> dict[str, torch.Tensor]:
    """Our state dict entries from the authors' keys under ``prefix`` (other keys are not looked at).

    Raises ValueError naming the key for a missing key of the ``groups`` sub-networks, an unexpected
    key under ``prefix``, or a shape mismatch. Values are cast to our dtype (int64 counters stay int64)."""
    full = official_signbert_key_map(module.cfg, prefix)
    wanted = {k: v for k, v in full.items() if k[len(prefix):].startswith(tuple(g + "." for g in groups))}
    own = module.state_dict()
    if set(full.values()) != set(own):     # guards the table against a change of the module
        raise ValueError(f"key map out of date for {sorted(set(own) ^ set(full.values()))[:5]}")
    unexpected = sorted(k for k in state_dict if k.startswith(prefix) and k not in full)
    if unexpected:
        raise ValueError(f"unexpected key(s) in the SignBERT weights: {', '.join(unexpected[:10])}"
                         f"{' …' if len(unexpected) > 10 else ''}")
    missing = sorted(k for k in wanted if k not in state_dict)
    if missing:
        raise ValueError(f"missing key(s) in the SignBERT weights: {', '.join(missing[:10])}"
                         f"{' …' if len(missing) > 10 else ''}")
    out = {}
    for src, dst in wanted.items():
        value, target = state_dict[src], own[dst]
        if not torch.is_tensor(value) or tuple(value.shape) != tuple(target.shape):
            shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise ValueError(f"shape mismatch for {src}: checkpoint {shape}, model {tuple(target.shape)} ({dst})")
        out[dst] = value.to(target.dtype)
    return out


# --- the released pretrain_signbert.pth -----------------------------------------------------------


def pretrain_signbert_state(obj) -> dict[str, torch.Tensor]:
    """The GCN state dict inside a loaded ``pretrain_signbert.pth``: ``obj['state_dict']['GCN_Transform']`` if
    that key exists, else ``obj['state_dict']`` (the authors' ``init_sign_model``)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise ValueError("not a SignBERT pretraining checkpoint: expected a dict with a 'state_dict' entry, got "
                         f"{type(obj).__name__} with keys {sorted(obj)[:8] if isinstance(obj, dict) else '-'}")
    sd = obj["state_dict"]
    if "GCN_Transform" in sd:
        sd = sd["GCN_Transform"]
    if not isinstance(sd, dict):
        raise ValueError(f"state_dict['GCN_Transform'] is a {type(sd).__name__}, not a state dict")
    return sd


def read_pretrain_signbert(path: str | Path) -> dict[str, torch.Tensor]:
    """Read ``pretrain_signbert.pth`` without running pickled code (``torch.load(weights_only=True)``)."""
    return pretrain_signbert_state(read_state_dict(path, what="SignBERT checkpoint", missing_error=FileNotFoundError,
                                                   unwrap=(), require_tensors=False))


def load_pretrain_signbert(module: SignBertPoseEncoder, source) -> dict[str, list[str]]:
    """Initialise ``module`` from the released ``pretrain_signbert.pth`` (a path, the loaded object, or its
    GCN state dict). Keys carry no ``signbert.`` prefix (``embed.st_gcn_hand.…``, ``GCN_Conv.…``).

    * The hand network (``embed.st_gcn_hand.*``) must be complete. The body network
      (``embed.st_gcn_body.*``) and the clip block (``GCN_Conv.*``) are each loaded completely or, when
      the file has none of their keys, left at their initialisation (the authors load non-strictly, which
      does the same) and reported. A partial sub-network, an unknown key inside these three prefixes, or
      a wrong shape raises ValueError naming the key.
    * Keys outside ``embed.*`` and ``GCN_Conv.*`` (SignBERT's pretraining-only parts — e.g. its
      transformer ``blocks.*`` / ``norm.*``, prediction heads, optimizer-side entries) are not part of the
      authors' ``Sign_Bert``; they are ignored and returned under ``"ignored"``.
    * A ``module.`` prefix on every key (a DDP save) is stripped.
    * Missing ``num_batches_tracked`` counters keep the module's value (they do not change any output).

    Returns ``{"loaded": [...], "left_at_init": [...], "ignored": [...]}`` (group names / ignored keys)."""
    if isinstance(source, (str, Path)):
        sd = read_pretrain_signbert(source)
    elif isinstance(source, dict) and "state_dict" in source:
        sd = pretrain_signbert_state(source)
    else:
        sd = source
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    ignored = sorted(k for k in sd if not k.startswith(("embed.", "GCN_Conv.")))
    present = [g for g in OFFICIAL_GROUPS if any(k.startswith(g + ".") for k in sd)]
    if "embed.st_gcn_hand" not in present:
        raise ValueError("no hand network in the SignBERT weights (no key starts with 'embed.st_gcn_hand.'); "
                         f"top-level names: {sorted({k.split('.')[0] for k in sd})[:10]}")
    sd = dict(sd)
    key_map = official_signbert_key_map(module.cfg, prefix="")
    own = module.state_dict()
    for src, dst in key_map.items():
        if src.endswith("num_batches_tracked") and src not in sd and src.startswith(tuple(present)):
            sd[src] = own[dst]
    sd_used = {k: v for k, v in sd.items() if k.startswith(("embed.", "GCN_Conv."))}
    mapped = map_official_signbert(module, sd_used, prefix="", groups=tuple(present))
    module.load_state_dict({**own, **mapped}, strict=True)
    return {"loaded": [OFFICIAL_GROUPS[g] for g in present],
            "left_at_init": [OFFICIAL_GROUPS[g] for g in OFFICIAL_GROUPS if g not in present], "ignored": ignored}
