"""Checkpoints: ``model.safetensors`` (weights) + ``config.json`` (the full Config) in one folder.

Optimizer / scheduler / RNG state for resuming lives in a separate ``train_state.pt`` written by the
trainer (tensors and plain containers only, loaded with ``weights_only=True``). Nothing here ever
unpickles an untrusted file.

A frozen text backbone that comes from a named offline source (``text.model = "minilm"``) can be left
out of the weights file (``skip_frozen_text=True``) — it is rebuilt from that source on load; this is
how the demo checkpoint stays small.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from seds.atomic import atomic_save_file, atomic_write_bytes  # noqa: F401 - atomic_save_file re-exported

from seds.config import Config, ConfigError, from_dict, to_dict
from seds.losses import SEDSLoss
from seds.model import SEDS

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "seds-checkpoint/1"


class CheckpointError(ValueError):
    """The file or folder is not a usable SEDS checkpoint (the message says why)."""


def state_tensors(model: torch.nn.Module, loss: torch.nn.Module | None = None,
                  skip_frozen_text: bool = False, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        if skip_frozen_text and k.startswith("text.backbone."):
            continue
        v = v.detach().contiguous().cpu()
        out[f"model.{k}"] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    if loss is not None:
        for k, v in loss.state_dict().items():
            out[f"loss.{k}"] = v.detach().contiguous().cpu()
    return out


def save_checkpoint(folder: str | Path, model, cfg: Config, loss=None, info: dict | None = None,
                    skip_frozen_text: bool = False, dtype: torch.dtype | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json``. ``dtype=torch.float16`` halves the file (weights are
    cast back to the model's dtype on load) — used for the small demo checkpoint."""
    skip = bool(skip_frozen_text and cfg.model.text.freeze and cfg.model.text.model in ("minilm",))
    return write_checkpoint(folder, state_tensors(model, loss, skip, dtype), cfg, info, skip)


def write_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], cfg: Config, info: dict | None = None,
                     text_backbone_external: bool = False) -> Path:
    """Write already-named tensors (``model.<key>`` / ``loss.<key>``) + ``config.json`` (used by converters)."""
    folder = Path(folder)
    meta = {"format": FORMAT, "text_backbone_external": str(text_backbone_external)}
    atomic_save_file(tensors, folder / WEIGHTS, meta)
    doc = {"format": FORMAT, "config": to_dict(cfg), "info": info or {}, "text_backbone_external": text_backbone_external}
    atomic_write_bytes(folder / CONFIG, json.dumps(doc, indent=2).encode())
    return folder


def read_config(folder: str | Path) -> tuple[Config, dict]:
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    p = folder / CONFIG
    if not p.exists():
        raise CheckpointError(f"{folder}: no {CONFIG} — not a SEDS checkpoint folder")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{p}: expected a JSON object with format, config and info, got "
                              f"{type(doc).__name__ if doc is not None else 'null'} — not a SEDS checkpoint config")
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{p}: format {doc.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(doc.get("config"), dict):
        raise CheckpointError(f"{p}: its \"config\" is {type(doc.get('config')).__name__}, not an object of settings")
    if not isinstance(doc.get("info", {}), dict):
        raise CheckpointError(f"{p}: its \"info\" is {type(doc.get('info')).__name__}, not an object")
    try:
        cfg = from_dict(Config, doc["config"])
    except ConfigError as e:
        raise CheckpointError(f"{p}: bad config: {e}") from None
    return cfg, doc


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu", with_text: bool = True):
    """→ (model in eval mode, loss module, Config, info). Every key and shape is checked."""
    cfg, doc = read_config(folder)
    folder = Path(folder) if Path(folder).is_dir() else Path(folder).parent
    wpath = folder / WEIGHTS
    if not wpath.exists():
        raise CheckpointError(f"{folder}: no {WEIGHTS}")
    try:
        with safe_open(str(wpath), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{wpath}: unreadable safetensors file ({e})") from None
    model = SEDS(cfg.model, with_text=with_text)
    loss = SEDSLoss(cfg.loss, tau=cfg.model.tau, opts=cfg.model.options)
    external = bool(doc.get("text_backbone_external"))
    for prefix, module in (("model.", model), ("loss.", loss)):
        expect = module.state_dict()
        given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        skip = lambda k: (external and k.startswith("text.backbone.")) or (not with_text and k.startswith("text."))
        missing = [k for k in expect if k not in given and not skip(k)]
        unexpected = [k for k in given if k not in expect and not skip(k)]
        shapes = [f"{k}: file {tuple(given[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expect.items() if k in given and tuple(given[k].shape) != tuple(v.shape)]
        if missing or unexpected or shapes:
            lines = [f"{wpath} does not match its config:"]
            lines += [f"  missing: {k}" for k in missing[:20]] + [f"  unexpected: {k}" for k in unexpected[:20]]
            lines += [f"  shape: {s}" for s in shapes[:20]]
            raise CheckpointError("\n".join(lines))
        module.load_state_dict({k: v for k, v in given.items() if k in expect}, strict=False)
    model.to(device).eval()
    loss.to(device).eval()
    return model, loss, cfg, doc.get("info", {})
