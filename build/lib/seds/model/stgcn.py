"""Spatial-temporal graph convolution (ST-GCN, Yan et al. 2018) as used by the SEDS pose encoder.

One layer (SEDS Eq. 1): ``X' = σ(Â X W)`` over the joints of a frame, with the symmetric-normalized
adjacency ``Â = Λ^-1/2 (A + I) Λ^-1/2`` (``seds.keypoints.normalized_adjacency``), followed by a
temporal convolution over frames, batch norm and a residual connection.

Padding: frames outside ``frame_mask`` are zeroed after every layer, and batch statistics are taken
over valid frames only (:class:`MaskedBatchNorm`), so padding a sequence never changes the features
of its valid frames — in training or evaluation.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def masked_batch_norm(x: torch.Tensor, mask: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm,
                      reduce_dims: tuple[int, ...], mask_view: tuple[int, ...]) -> torch.Tensor:
    """Batch norm whose *training* statistics cover valid positions only.

    ``mask_view`` reshapes the (N, F) frame mask to broadcast against ``x``. Statistics come from two
    masked reductions; the normalisation is one fused ``x * a + c`` (a, c per channel), which keeps
    autograd through the batch statistics and is several times cheaper than the textbook expression.
    """
    if not bn.training or mask is None:
        return bn(x)
    m = mask.view(mask_view).to(x.dtype)
    xm = x * m
    count = (m.sum() * (x.numel() / (m.numel() * x.shape[1]))).clamp(min=1)
    mean = xm.sum(reduce_dims) / count
    var = ((xm * x).sum(reduce_dims) / count - mean * mean).clamp(min=0)
    with torch.no_grad():
        mom = bn.momentum if bn.momentum is not None else 0.1
        bn.running_mean.mul_(1 - mom).add_(mom * mean.detach())
        bn.running_var.mul_(1 - mom).add_(mom * (var * count / (count - 1).clamp(min=1)).detach())
        bn.num_batches_tracked.add_(1)
    a = bn.weight * torch.rsqrt(var + bn.eps)
    c = bn.bias - mean * a
    shape = [1] * x.dim()
    shape[1] = -1
    return torch.addcmul(c.view(shape), x, a.view(shape))


class MaskedBatchNorm(nn.BatchNorm2d):
    """BatchNorm over (N, C, F, V) whose training statistics ignore padded frames."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training:
            return super().forward(x)
        return masked_batch_norm(x, mask, _Plain(self), (0, 2, 3), (mask.shape[0], 1, mask.shape[1], 1))


class _Plain:
    """Exposes a BatchNorm's parameters and buffers without calling its forward (avoids recursion)."""

    def __init__(self, bn):
        self.__dict__["_bn"] = bn

    def __getattr__(self, k):
        return getattr(self._bn, k)


class STGCNLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, adjacency: torch.Tensor, temporal_kernel: int = 9,
                 dropout: float = 0.0):
        super().__init__()
        self.register_buffer("adjacency", adjacency.clone().float(), persistent=False)
        self.gcn = nn.Conv2d(c_in, c_out, kernel_size=1)              # X W (per joint, per frame)
        self.bn1 = MaskedBatchNorm(c_out)
        self.tcn = nn.Conv2d(c_out, c_out, kernel_size=(temporal_kernel, 1),
                             padding=(temporal_kernel // 2, 0))
        self.bn2 = MaskedBatchNorm(c_out)
        self.drop = nn.Dropout(dropout)
        if c_in == c_out:
            self.residual = None
        else:
            self.residual = nn.Conv2d(c_in, c_out, kernel_size=1)
            self.bn_res = MaskedBatchNorm(c_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (N, C, F, V); mask: (N, F) bool of valid frames."""
        m = mask[:, None, :, None].to(x.dtype)
        if self.residual is None:
            res = x
        else:
            res = self.bn_res(self.residual(x), mask)
        h = self.gcn(x)
        h = torch.einsum("ncfv,vw->ncfw", h, self.adjacency)          # Â X W (Â symmetric)
        h = F.relu(self.bn1(h, mask)) * m
        h = self.bn2(self.tcn(h), mask)
        h = self.drop(h)
        return F.relu(h + res) * m


class STGCN(nn.Module):
    """A stack of ST-GCN layers over one part graph, pooled over joints → (N, F, widths[-1])."""

    def __init__(self, adjacency: torch.Tensor, in_channels: int = 3, widths=(128, 128, 256, 512),
                 temporal_kernel: int = 9, dropout: float = 0.0):
        super().__init__()
        v = adjacency.shape[0]
        self.data_bn = nn.BatchNorm1d(in_channels * v)
        chans = (in_channels,) + tuple(widths)
        self.layers = nn.ModuleList(
            STGCNLayer(chans[i], chans[i + 1], adjacency, temporal_kernel, dropout) for i in range(len(widths)))
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (N, F, V, C) joints of one part; mask (N, F) → (N, F, out_dim)."""
        n, f, v, c = x.shape
        m = mask[:, :, None, None].to(x.dtype)
        x = x * m
        # data batch-norm over (V·C) channels, statistics over valid frames only
        flat = x.permute(0, 2, 3, 1).reshape(n, v * c, f)               # (N, V·C, F)
        flat = masked_batch_norm(flat, mask, self.data_bn, (0, 2), (n, 1, f))
        h = flat.reshape(n, v, c, f).permute(0, 2, 3, 1)                 # (N, C, F, V)
        h = h * mask[:, None, :, None].to(h.dtype)
        for layer in self.layers:
            h = layer(h, mask)
        return h.mean(dim=3).permute(0, 2, 1)                             # (N, F, C_out)
