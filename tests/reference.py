"""Test helper: import a file of the authors' code (../shared/reference/seds-official) at test time,
skipping the test with a clear reason when ../shared is absent. Never copied into the project."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "seds-official"


def load_official(relpath: str, name: str):
    """The module at ``OFFICIAL / relpath``, imported under ``name`` (pytest.skip if it is not there)."""
    path = OFFICIAL / relpath
    if not path.is_file():
        pytest.skip(f"the authors' {relpath} is not at {path} (../shared beside the repo)")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
