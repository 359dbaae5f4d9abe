"""NetVLAD (Arandjelović et al., CVPR 2016) over a masked set of local descriptors.

SPOT-ALIGN's cross-modal (CM) baseline (Duarte et al., CVPR 2022) aggregates the word embeddings of a
sentence with a NetVLAD layer of 20 clusters, as in the Collaborative-Experts text branch. For
descriptors ``x_i`` (D) and K learnable centroids ``c_k``:

    a_ik = softmax_k(w_k·x_i + b_k)                       (soft assignment; ghost clusters, if any,
                                                           take part in the softmax and are dropped)
    V_k  = Σ_i a_ik (x_i − c_k)                           (residual sums, padded descriptors excluded)
    V    = l2norm(flatten(l2norm_rows(V)))                (intra-normalisation, then global)

Output: ``(B, K·D)``. A sentence with no valid descriptor gives the zero vector.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class NetVLAD(nn.Module):
    def __init__(self, dim: int, clusters: int = 20, ghost_clusters: int = 0):
        super().__init__()
        if dim < 1 or clusters < 1 or ghost_clusters < 0:
            raise ValueError(f"NetVLAD needs dim ≥ 1, clusters ≥ 1, ghost_clusters ≥ 0; got {dim}, {clusters}, "
                             f"{ghost_clusters}")
        self.dim, self.clusters, self.ghost_clusters = dim, clusters, ghost_clusters
        self.assign = nn.Linear(dim, clusters + ghost_clusters)
        self.centroids = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))

    @property
    def out_dim(self) -> int:
        return self.clusters * self.dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D) descriptors, mask (B, N) bool of valid ones → (B, K·D)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"NetVLAD expects (B, N, {self.dim}) descriptors, got {tuple(x.shape)}")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match descriptors {tuple(x.shape[:2])}")
        m = mask.to(x.dtype)[..., None]
        a = torch.softmax(self.assign(x), dim=-1)[..., : self.clusters] * m      # (B, N, K)
        vlad = torch.einsum("bnk,bnd->bkd", a, x) - a.sum(1)[..., None] * self.centroids[None]
        vlad = F.normalize(vlad, dim=-1)                                          # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=-1)
