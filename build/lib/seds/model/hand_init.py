"""Hand ST-GCN initialisation (SEDS supp. Tab. 3: the hand ST-GCN starts from SignBERT's hand-pose
encoder): the ``hand_stgcn.safetensors`` file format, strict loading into a model's hand ST-GCN
(:func:`load_pretrained_hands`, called by :func:`seds.model.factory.create_model`, never by a
constructor), and the explicit key table that maps a local SignBERT checkpoint onto our
:class:`~seds.model.stgcn.STGCN` (:func:`load_signbert`). The pretraining that writes such files —
the offline stand-in for SignBERT — is an experiment: :mod:`seds.experiments.pretrain_hands`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open

from seds.atomic import atomic_save_file
from seds.keypoints import part_adjacency
from seds.model.signbert_gcn import SignBertPoseEncoder, load_pretrain_signbert
from seds.model.stgcn import STGCN
from seds.weights import check_tensor_dict, read_state_dict

WEIGHTS = "hand_stgcn.safetensors"
INFO = "hand_stgcn.json"
FORMAT = "seds.hand_stgcn/1"


SIGNBERT_INIT = "signbert_init.safetensors"   # the official variant's pose-encoder init (seds.convert signbert)


class PretrainError(ValueError):
    """Bad input to hand pretraining or loading (missing data, shape/key mismatch, ...)."""


def hand_stgcn(widths, temporal_kernel: int = 9, in_channels: int = 3, dropout: float = 0.0) -> STGCN:
    """The pose encoder's hand ST-GCN (same construction as ``seds.model.pose_encoder.PoseEncoder``)."""
    return STGCN(torch.from_numpy(part_adjacency("hand")), in_channels, tuple(widths), temporal_kernel, dropout)


# --- saving / loading -------------------------------------------------------------------------------

def save_hand_encoder(folder: str | Path, encoder: STGCN, info: dict) -> Path:
    """``<folder>/hand_stgcn.safetensors`` (the STGCN state dict) + ``hand_stgcn.json`` (widths, ...)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    widths = [layer.tcn.out_channels for layer in encoder.layers]
    meta = {"format": FORMAT, "widths": json.dumps(widths),
            "temporal_kernel": str(encoder.layers[0].tcn.kernel_size[0])}
    atomic_save_file({k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()},
                     folder / WEIGHTS, meta)
    (folder / INFO).write_text(json.dumps({"format": FORMAT, "widths": widths,
                                           "temporal_kernel": int(meta["temporal_kernel"]), **info}, indent=1))
    return folder / WEIGHTS


def weights_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS
    if not p.is_file():
        raise PretrainError(f"pretrained hand weights {p} not found (a folder with {WEIGHTS} or the file)")
    return p


def load_hand_state(path: str | Path) -> dict[str, torch.Tensor]:
    p = weights_path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            if (f.metadata() or {}).get("format") != FORMAT:
                raise PretrainError(f"{p} is not a SEDS hand ST-GCN file (metadata format "
                                    f"{(f.metadata() or {}).get('format')!r}); SignBERT checkpoints go "
                                    "through `python -m seds.experiments.pretrain_hands signbert` first")
            return {k: f.get_tensor(k) for k in f.keys()}
    except PretrainError:
        raise
    except Exception as e:
        raise PretrainError(f"{p}: unreadable safetensors file ({e})") from None


def load_into_stgcn(encoder: STGCN, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Copy ``state`` into ``encoder`` after checking that keys and shapes match exactly."""
    want = encoder.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in want.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        lines = [f"pretrained hand ST-GCN {source} does not fit the model's hand ST-GCN "
                 "(pretrain with the same model.pose.widths / temporal_kernel):"]
        lines += [f"  missing: {k}" for k in missing[:10]] + [f"  unexpected: {k}" for k in extra[:10]]
        lines += [f"  shape: {s}" for s in shapes[:10]]
        raise PretrainError("\n".join(lines))
    encoder.load_state_dict({k: v.to(want[k].dtype) for k, v in state.items()})


def load_pretrained_hands(model: nn.Module, path: str | Path) -> nn.Module:
    """Initialise the hand ST-GCN of a SEDS model (``model.pose_encoder.hand``) — or of a bare
    ``PoseEncoder`` / ``STGCN`` — from ``path`` (folder or ``hand_stgcn.safetensors``)."""
    target = model
    if hasattr(target, "pose_encoder"):
        target = target.pose_encoder
    if hasattr(target, "hand") and isinstance(target.hand, STGCN):
        target = target.hand
    if not isinstance(target, STGCN):
        raise PretrainError(f"{type(model).__name__} has no hand ST-GCN (a pose stream is needed)")
    load_into_stgcn(target, load_hand_state(path), str(path))
    return model


# --- SignBERT checkpoints ----------------------------------------------------------------------------
# SignBERT's hand-pose encoder is a 4-block ST-GCN over the 21-point hand graph (Yan et al. layout):
# per block `gcn.conv` (1×1 conv, possibly with K spatial partitions stacked along the output channels),
# `tcn.0` batch norm, `tcn.2` temporal conv, `tcn.3` batch norm, `residual.0/1` conv + bn, and the
# input `data_bn`. The table maps those names (after stripping a module prefix) to our STGCN's; a
# K-partition gcn weight (K·C_out rows) is reduced to our single normalized-adjacency conv by summing
# the partitions (exact when the partitions' adjacencies sum to ours, an approximation otherwise — we
# say so). Prefixes tried: "", "module.", "encoder.", "gcn_encoder.", "hand_encoder.", "st_gcn.".

SIGNBERT_BLOCK_MAP = {
    "gcn.conv.weight": "gcn.weight", "gcn.conv.bias": "gcn.bias",
    "tcn.0.weight": "bn1.weight", "tcn.0.bias": "bn1.bias",
    "tcn.0.running_mean": "bn1.running_mean", "tcn.0.running_var": "bn1.running_var",
    "tcn.2.weight": "tcn.weight", "tcn.2.bias": "tcn.bias",
    "tcn.3.weight": "bn2.weight", "tcn.3.bias": "bn2.bias",
    "tcn.3.running_mean": "bn2.running_mean", "tcn.3.running_var": "bn2.running_var",
    "residual.0.weight": "residual.weight", "residual.0.bias": "residual.bias",
    "residual.1.weight": "bn_res.weight", "residual.1.bias": "bn_res.bias",
    "residual.1.running_mean": "bn_res.running_mean", "residual.1.running_var": "bn_res.running_var",
}
SIGNBERT_TOP_MAP = {"data_bn.weight": "data_bn.weight", "data_bn.bias": "data_bn.bias",
                    "data_bn.running_mean": "data_bn.running_mean", "data_bn.running_var": "data_bn.running_var"}
SIGNBERT_BLOCK_PREFIXES = ("st_gcn_networks.", "layers.", "blocks.")
SIGNBERT_PREFIXES = ("", "module.", "encoder.", "gcn_encoder.", "hand_encoder.", "st_gcn.", "model.")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file loaded with ``weights_only=True`` (no code runs)."""
    obj = read_state_dict(path, error=PretrainError, require_tensors=False)
    if isinstance(obj, dict) and ("GCN_Transform" in obj or any(str(k).startswith("embed.st_gcn_hand.") for k in obj)):
        raise PretrainError(f"{path}: this is the authors' released pretrain_signbert.pth (their per-frame SignBERT "
                            "GCN, 4 spatial partitions): it initialises the official variant's pose encoder, not "
                            "this ST-GCN. Run `python -m seds.convert signbert <file> --out DIR` and train with "
                            "model.variant official (configs/how2sign.yaml) and model.pose.hand_init=DIR")
    check_tensor_dict(obj, path, PretrainError)
    return obj


def map_signbert_state(state: dict[str, torch.Tensor], n_layers: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """SignBERT GCN keys → our STGCN keys with the explicit tables above. Returns (state, notes)."""
    notes: list[str] = []
    for prefix in SIGNBERT_PREFIXES:
        for bp in SIGNBERT_BLOCK_PREFIXES:
            if f"{prefix}{bp}0.tcn.2.weight" in state:
                break
        else:
            continue
        break
    else:
        raise PretrainError("no SignBERT ST-GCN blocks found (looked for '<prefix>st_gcn_networks.0.tcn.2.weight' "
                            f"with prefixes {SIGNBERT_PREFIXES}); keys start with "
                            f"{sorted({k.split('.')[0] for k in state})[:8]}")
    out = {}
    for src, dst in SIGNBERT_TOP_MAP.items():
        if f"{prefix}{src}" in state:
            out[dst] = state[f"{prefix}{src}"]
    for i in range(n_layers):
        for src, dst in SIGNBERT_BLOCK_MAP.items():
            k = f"{prefix}{bp}{i}.{src}"
            if k in state:
                out[f"layers.{i}.{dst}"] = state[k]
    for i in range(n_layers):
        w = out.get(f"layers.{i}.gcn.weight")
        t = out.get(f"layers.{i}.tcn.weight")
        if w is not None and t is not None and w.shape[0] != t.shape[0]:
            k = w.shape[0] // t.shape[0]
            if k * t.shape[0] != w.shape[0]:
                raise PretrainError(f"block {i}: gcn weight {tuple(w.shape)} is not K × {t.shape[0]} output channels")
            out[f"layers.{i}.gcn.weight"] = w.view(k, t.shape[0], *w.shape[1:]).sum(0)
            b = out.get(f"layers.{i}.gcn.bias")
            if b is not None:
                out[f"layers.{i}.gcn.bias"] = b.view(k, t.shape[0]).sum(0)
            notes.append(f"block {i}: {k} spatial partitions summed into one graph convolution (approximation)")
    return out, notes


def load_signbert(path: str | Path, widths, temporal_kernel: int = 9) -> tuple[STGCN, list[str]]:
    """A hand ST-GCN of ``widths`` initialised from a local SignBERT checkpoint (every key and shape
    asserted; ``num_batches_tracked`` counters are filled in when absent)."""
    enc = hand_stgcn(widths, temporal_kernel)
    state, notes = map_signbert_state(read_checkpoint(path), len(enc.layers))
    for k, v in enc.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v.clone()
    load_into_stgcn(enc, state, str(path))
    return enc, notes


# --- the official variant: the authors' released pretrain_signbert.pth ------------------------------

def read_signbert_init(path: str | Path) -> dict[str, torch.Tensor]:
    """The SignBERT init written by ``python -m seds.convert signbert`` (a folder or the file itself)."""
    p = Path(path)
    p = p / SIGNBERT_INIT if p.is_dir() else p
    if not p.is_file() or p.suffix != ".safetensors":
        raise PretrainError(f"model.pose.hand_init: {p} is not a {SIGNBERT_INIT} written by "
                            "`python -m seds.convert signbert pretrain_signbert.pth --out DIR`")
    return read_state_dict(p, error=PretrainError)


def load_signbert_init(encoder: SignBertPoseEncoder, path: str | Path) -> dict[str, list[str]]:
    """Initialise the official variant's pose encoder from a converted ``pretrain_signbert.pth`` (every key
    and shape checked by :func:`seds.model.signbert_gcn.load_pretrain_signbert`)."""
    return load_pretrain_signbert(encoder, read_signbert_init(path))
