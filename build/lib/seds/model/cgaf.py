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

``model.variant: paper`` (the text above) departs from the authors' code on purpose: its reference offsets
``arange(-N//2, N - N//2)`` are off-centre (−3…1 for N=5) through an operator-precedence slip, it wraps at
``T_valid − 1`` and samples with ``grid_sample(align_corners=False)`` against a ``(T − 1)`` normalisation.
``model.variant: official`` reproduces the authors' computation exactly, through the named switches of
:class:`seds.config.VariantOptions` (``cgaf_*``, ``fusion_output_ln_eps``):

* keys = ``W_k LN(own stream)``, queries = values = the *other* stream (``W_q y``, ``W_v y``), i.e. the layer
  calls its attention as ``attn(k=LN(x), v=y, q=y)``; the residual is the own stream;
* floor reference offsets (−3…1 / −2…0), wrap at (#valid positions − 1) — the number of valid clips when the
  [CLS] token counts as a valid position —, sampling = ``grid_sample`` = 0.5 × linear interpolation at
  ``loc·T/(T−1) − 0.5`` with zeros outside (:func:`grid_sample_at`); no padding mask anywhere; LayerNorm
  eps 1e-6; output ``LN(MLP([P̂,R̂]) + P̂ + R̂) + pose + rgb`` with a 1e-12-eps LayerNorm.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from seds.config import FusionConfig, VariantOptions


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe.to(dtype)


def reference_offsets(num_keys: int, floor: bool = False) -> torch.Tensor:
    """Constant positions P around t: centred window, e.g. (−2, −1, 0, 1, 2) for N = 5; with ``floor``
    the authors' ``arange(-N//2, N - N//2)`` (Python floors −N/2): (−3, …, 1) for N = 5, (−2, −1, 0) for 3."""
    if floor:
        left = -num_keys // 2
        return torch.arange(left, num_keys + left, dtype=torch.float32)
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


def grid_sample_at(seq: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """What ``grid_sample(align_corners=False, padding_mode="zeros")`` computes on the authors' (d, 1, T) map
    at grid x = pos/(T−1)·2−1, y = +1: y = +1 lands half-way between the only row and the zero padding, so
    the result is 0.5 × linear interpolation at pixel x = pos·T/(T−1) − 0.5, neighbours outside [0, T) = 0.
    seq (B, H, T, d), pos (B, H, Q, N) → (B, H, Q, N, d)."""
    b, h, t, d = seq.shape
    q, n = pos.shape[2], pos.shape[3]
    x = pos * (t / (t - 1)) - 0.5 if t > 1 else pos - 0.5
    i0 = x.floor()
    w = (x - i0)[..., None]
    i0 = i0.long()
    i1 = i0 + 1

    def take(i):
        inside = ((i >= 0) & (i < t))[..., None].to(seq.dtype)
        flat = i.clamp(0, t - 1).reshape(b, h, q * n, 1).expand(b, h, q * n, d)
        return seq.gather(2, flat).reshape(b, h, q, n, d) * inside

    return 0.5 * (take(i0) * (1 - w) + take(i1) * w)


class CrossGlossAttention(nn.Module):
    """Eq. 2: queries from one stream, N interpolated keys/values per head from the other."""

    def __init__(self, dim: int, heads: int, num_keys: int, dropout: float = 0.0,
                 opts: VariantOptions = VariantOptions()):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.dim, self.heads, self.num_keys = dim, heads, num_keys
        self.opts = opts
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.offsets = nn.Linear(dim, heads * num_keys)     # O = W_o q
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("ref", reference_offsets(num_keys, opts.cgaf_floor_reference), persistent=False)
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
        """x: own stream (B, T, D), already layer-normed; y: other stream (B, T, D); mask (B, T).

        Paper: queries from x, keys/values from y. With ``cgaf_keys_from_own_stream`` (authors' code): keys
        from x, queries and values from y."""
        b, t, d = x.shape
        o = self.opts
        length = mask.sum(1) - (1 if o.cgaf_wrap_minus_one else 0)
        length = length.clamp(min=1)
        q_in, k_in = (y, x) if o.cgaf_keys_from_own_stream else (x, y)
        q = self.q(q_in)
        pos = self.sample_positions(q, length)
        split = lambda z: z.view(b, t, self.heads, self.head_dim).transpose(1, 2)     # (B, H, T, dh)
        if o.cgaf_grid_sample:
            k_s, v_s = grid_sample_at(split(self.k(k_in)), pos), grid_sample_at(split(self.v(y)), pos)
        else:
            k_s = interpolate_at(split(self.k(k_in)), pos, length)                     # (B, H, T, N, dh)
            v_s = interpolate_at(split(self.v(y)), pos, length)
        scores = (split(q)[:, :, :, None, :] * k_s).sum(-1) / math.sqrt(self.head_dim)
        low = scores.dtype in (torch.float16, torch.bfloat16)     # softmax in fp32 under autocast
        attn = self.drop(torch.softmax(scores.float() if low else scores, dim=-1).to(v_s.dtype))
        ctx = (attn[..., None] * v_s).sum(3).transpose(1, 2).reshape(b, t, d)
        out = self.out(ctx)
        return (out, attn, pos) if return_weights else out


class FeedForward(nn.Module):
    def __init__(self, dim: int, ff: int, dropout: float = 0.0, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.net = nn.Sequential(nn.Linear(dim, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, dim),
                                 nn.Dropout(dropout))

    def forward(self, x):
        return x + self.net(self.norm(x))


class CGAFLayer(nn.Module):
    def __init__(self, dim, heads, num_keys, ff, dropout, opts: VariantOptions = VariantOptions()):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=opts.cgaf_ln_eps)
        self.attn = CrossGlossAttention(dim, heads, num_keys, dropout, opts)
        self.drop = nn.Dropout(dropout)
        self.ff = FeedForward(dim, ff, dropout, opts.cgaf_ln_eps)

    def forward(self, x, y, mask):
        h = x + self.drop(self.attn(self.norm(x), y, mask))
        return self.ff(h)


class FusionMLP(nn.Module):
    """Eq. 3: f^v = MLP([a, b]) + a + b (MLP 2D → 4D → 2D → D with QuickGELU, as the reference); with
    ``out_ln_eps`` (authors' code) followed by a LayerNorm of that eps."""

    def __init__(self, dim: int, out_ln_eps: float | None = None):
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, 2 * dim)
        self.fc3 = nn.Linear(2 * dim, dim)
        self.norm = nn.LayerNorm(dim, eps=out_ln_eps) if out_ln_eps is not None else None

    @staticmethod
    def _act(x):
        return x * torch.sigmoid(1.702 * x)

    def forward(self, a, b):
        h = self.fc3(self._act(self.fc2(self._act(self.fc1(torch.cat([a, b], -1)))))) + a + b
        return self.norm(h) if self.norm is not None else h


class CGAF(nn.Module):
    def __init__(self, dim: int, cfg: FusionConfig, opts: VariantOptions = VariantOptions()):
        super().__init__()
        keys = cfg.keys_per_layer()
        self.opts = opts
        self.p2r = nn.ModuleList(CGAFLayer(dim, cfg.heads, n, cfg.ff, cfg.dropout, opts) for n in keys)
        self.r2p = nn.ModuleList(CGAFLayer(dim, cfg.heads, n, cfg.ff, cfg.dropout, opts) for n in keys)
        self.norm_p = nn.LayerNorm(dim, eps=opts.cgaf_ln_eps)
        self.norm_r = nn.LayerNorm(dim, eps=opts.cgaf_ln_eps)
        self.mlp = FusionMLP(dim, opts.fusion_output_ln_eps)

    def forward(self, pose: torch.Tensor, rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = pose.shape
        pe = sinusoidal_positions(t, d, pose.device, pose.dtype)
        m = mask[:, :, None].to(pose.dtype) if self.opts.cgaf_mask_padding else 1.0
        p, r = (pose + pe) * m, (rgb + pe) * m
        for lp, lr in zip(self.p2r, self.r2p):
            p, r = lp(p, r, mask) * m, lr(r, p, mask) * m
        p_hat, r_hat = self.norm_p(p), self.norm_r(r)
        if self.opts.fusion_output_ln_eps is not None:      # authors' code: + the (PE-free) inputs
            return self.mlp(p_hat, r_hat) + pose + rgb
        return self.mlp(p_hat, r_hat) * m
