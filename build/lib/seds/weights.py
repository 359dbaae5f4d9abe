"""Reading a weights file into a state dict without running code from it.

Every module that accepts weights from outside (hand-encoder / SignBERT checkpoints, CLIP, I3D, the
authors' released SEDS checkpoints) reads them here: ``.safetensors`` through safetensors, anything
else through ``torch.load(weights_only=True)``, which refuses to construct any object but tensors and
plain containers — an arbitrary pickle is never unpickled. Each failure (missing file, a file
``weights_only`` refuses or cannot parse, a file that holds no state dict of tensors) raises the
caller's exception type with a message naming the file and what went wrong.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net")


def _first_line(err: BaseException, limit: int = 200) -> str:
    lines = str(err).splitlines()
    return lines[0][:limit] if lines else ""


def read_state_dict(path: str | Path, *, what: str = "checkpoint", error: type[Exception] = ValueError,
                    missing_error: type[Exception] | None = None, unwrap: tuple[str, ...] = STATE_DICT_KEYS,
                    require_tensors: bool = True, hint: str = "") -> Any:
    """The state dict in ``path``.

    * ``.safetensors`` → :func:`safetensors.torch.load_file`; any other suffix →
      ``torch.load(map_location="cpu", weights_only=True)``.
    * ``unwrap``: the first of these keys whose value is a mapping replaces the loaded object (training
      checkpoints keep the weights under ``"state_dict"``, ``"model"``, ...); ``()`` returns the object
      as loaded.
    * ``require_tensors``: the result must be a mapping whose values are all tensors.

    Raises ``missing_error`` (default ``error``) when ``path`` is not a file, and ``error`` when the file
    cannot be read safely or holds no state dict of tensors; ``what`` names the file's role in the
    messages and ``hint`` (e.g. how to convert an unsupported format) is appended to the read error.
    """
    p = Path(path)
    if not p.is_file():
        raise (missing_error or error)(f"{what} {p} not found")
    if p.suffix.lower() == ".safetensors":
        try:
            obj: Any = load_file(str(p))
        except Exception as e:  # SafetensorError, OSError: a truncated or foreign file
            raise error(f"{p}: cannot be read as safetensors ({type(e).__name__}: {_first_line(e)})"
                        + (f". {hint}" if hint else "")) from None
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError (refused global), RuntimeError (TorchScript, not a zip, ...)
            raise error(f"{p}: cannot be read with torch.load(weights_only=True) ({type(e).__name__}: "
                        f"{_first_line(e)}); arbitrary pickles are never loaded"
                        + (f". {hint}" if hint else "")) from None
    if isinstance(obj, Mapping):
        for key in unwrap:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if require_tensors:
        check_tensor_dict(obj, p, error)
    return obj


def check_tensor_dict(obj: Any, source: str | Path, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``source`` unless ``obj`` is a mapping whose values are all tensors."""
    if isinstance(obj, Mapping) and all(torch.is_tensor(v) for v in obj.values()):
        return
    if isinstance(obj, Mapping):
        found = f"non-tensor entries {[str(k) for k, v in obj.items() if not torch.is_tensor(v)][:8]}"
    else:
        found = f"a {type(obj).__name__}"
    raise error(f"{source}: not a state dict of tensors (found {found})")
