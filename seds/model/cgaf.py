"""Cross Gloss Attention Fusion, CGAF (SEDS Sec. 3.2, Eq. 2–3).

A sign (gloss) spans a few neighbouring clips, so each clip of one stream attends to a *local*,
learned neighbourhood of the other stream rather than to the whole video:

* query ``q_t = W_q LN(x_t)`` from one stream; N sampling positions per head
  ``s_tn = (t + P_n + O_tn) mod T_valid`` with constant reference offsets ``P`` centred on t
  (``P = n - (N-1)/2``) and learned offsets ``O = W_o q`` (Eq. 2);
* keys/values ``W_k y``, ``W_v y`` of the *other* stream are read at the fractional positions by
  linear interpolation between the two neighbouring clips (wrapping inside the valid length, so a
  padded clip is never read);
* ``softmax_n(q_t · k_{s_tn} / √d_h)`` weights the interpolated values; pre-LN residual block with a
  feed-forward layer. Pose→RGB and RGB→Pose run side by side for ``layers`` (2, supp. Tab. 5) layers,
  each reading the other stream's output of the previous layer;
* Eq. 3: ``f^v = MLP([f̂^p, f̂^r]) + f̂^p + f̂^r``.

Deviation from the reference code, on purpose: its reference offsets ``arange(-N//2, N - N//2)``
are off-centre (−3…1 for N=5) through an operator-precedence slip, it wraps at ``T_valid − 1`` and
samples with ``grid_sample(align_corners=False)`` against a ``(T − 1)`` normalisation; here the
window is centred, wraps at ``T_valid`` and interpolates exactly at clip positions.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from seds.config import FusionConfig


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe.to(dtype)


def reference_offsets(num_keys: int) -> torch.Tensor:
    """Constant positions P around t: centred window, e.g. (−2, −1, 0, 1, 2) for N = 5."""
    return torch.arange(num_keys, dtype=torch.float32) - (num_keys - 1) / 2


def interpolate_at(seq: torch.Tensor, pos: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``seq`` (B, H, T, d) at fractional ``pos`` (B, H, Q, N) already wrapped
    into [0, length); the upper neighbour wraps to 0 at the end of the valid length. → (B, H, Q, N, d)."""
    b, h, t, d = seq.shape
    q, n = pos.shape[2], pos.shape[3]
    i0 = pos.floor()
    w = (pos - i0)[..., None]
    i0 = i0.long()
    i1 = torch.remainder(i0 + 1, length.view(b, 1, 1, 1))
    i0 = i0.clamp(0, t - 1)
    flat = lambda i: i.reshape(b, h, q * n, 1).expand(b, h, q * n, d)
    s0 = seq.gather(2, flat(i0)).reshape(b, h, q, n, d)
    s1 = seq.gather(2, flat(i1)).reshape(b, h, q, n, d)
    return s0 * (1 - w) + s1 * w


class CrossGlossAttention(nn.Module):
    """Eq. 2: queries from one stream, N interpolated keys/values per head from the other."""

    def __init__(self, dim: int, heads: int, num_keys: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.dim, self.heads, self.num_keys = dim, heads, num_keys
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.offsets = nn.Linear(dim, heads * num_keys)     # O = W_o q
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("ref", reference_offsets(num_keys), persistent=False)
        nn.init.zeros_(self.offsets.weight)   # start as attention over the fixed local window
        nn.init.zeros_(self.offsets.bias)

    def sample_positions(self, q: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """q (B, T, D) projected queries → wrapped positions (B, H, T, N)."""
        b, t, _ = q.shape
        o = self.offsets(q).view(b, t, self.heads, self.num_keys).permute(0, 2, 1, 3)
        base = torch.arange(t, device=q.device, dtype=o.dtype)[None, None, :, None] + self.ref.to(o.dtype)
        return torch.remainder(base + o, length.view(b, 1, 1, 1).to(o.dtype))

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                return_weights: bool = False):
        """x: query stream (B, T, D), already layer-normed; y: other stream (B, T, D); mask (B, T)."""
        b, t, d = x.shape
        length = mask.sum(1).clamp(min=1)
        q = self.q(x)
        pos = self.sample_positions(q, length)
        split = lambda z: z.view(b, t, self.heads, self.head_dim).transpose(1, 2)     # (B, H, T, dh)
        k_s = interpolate_at(split(self.k(y)), pos, length)                          # (B, H, T, N, dh)
        v_s = interpolate_at(split(self.v(y)), pos, length)
        scores = (split(q)[:, :, :, None, :] * k_s).sum(-1) / math.sqrt(self.head_dim)
        low = scores.dtype in (torch.float16, torch.bfloat16)     # softmax in fp32 under autocast
        attn = self.drop(torch.softmax(scores.float() if low else scores, dim=-1).to(v_s.dtype))
        ctx = (attn[..., None] * v_s).sum(3).transpose(1, 2).reshape(b, t, d)
        out = self.out(ctx)
        return (out, attn, pos) if return_weights else out


class FeedForward(nn.Module):
    def __init__(self, dim: int, ff: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, dim),
                                 nn.Dropout(dropout))

    def forward(self, x):
        return x + self.net(self.norm(x))


class CGAFLayer(nn.Module):
    def __init__(self, dim, heads, num_keys, ff, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = CrossGlossAttention(dim, heads, num_keys, dropout)
        self.drop = nn.Dropout(dropout)
        self.ff = FeedForward(dim, ff, dropout)

    def forward(self, x, y, mask):
        h = x + self.drop(self.attn(self.norm(x), y, mask))
        return self.ff(h)


class FusionMLP(nn.Module):
    """Eq. 3: f^v = MLP([a, b]) + a + b (MLP 2D → 4D → 2D → D with QuickGELU, as the reference)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, 2 * dim)
        self.fc3 = nn.Linear(2 * dim, dim)

    @staticmethod
    def _act(x):
        return x * torch.sigmoid(1.702 * x)

    def forward(self, a, b):
        h = self.fc3(self._act(self.fc2(self._act(self.fc1(torch.cat([a, b], -1))))))
        return h + a + b


class CGAF(nn.Module):
    def __init__(self, dim: int, cfg: FusionConfig):
        super().__init__()
        keys = cfg.keys_per_layer()
        self.p2r = nn.ModuleList(CGAFLayer(dim, cfg.heads, n, cfg.ff, cfg.dropout) for n in keys)
        self.r2p = nn.ModuleList(CGAFLayer(dim, cfg.heads, n, cfg.ff, cfg.dropout) for n in keys)
        self.norm_p = nn.LayerNorm(dim)
        self.norm_r = nn.LayerNorm(dim)
        self.mlp = FusionMLP(dim)

    def forward(self, pose: torch.Tensor, rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = pose.shape
        pe = sinusoidal_positions(t, d, pose.device, pose.dtype)
        m = mask[:, :, None].to(pose.dtype)
        p, r = (pose + pe) * m, (rgb + pe) * m
        for lp, lr in zip(self.p2r, self.r2p):
            p, r = lp(p, r, mask) * m, lr(r, p, mask) * m
        p_hat, r_hat = self.norm_p(p), self.norm_r(r)
        return self.mlp(p_hat, r_hat) * m
