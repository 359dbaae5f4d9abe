"""Issue 15 — the app as an attacker or a careless user meets it: start-up errors, leftovers on disk."""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_app():
    spec = importlib.util.spec_from_file_location("seds_demo_app_security", ROOT / "demo" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyError("checkpoint"), OSError(28, "No space left")])
def test_app_start_up_errors_are_one_line_not_a_traceback(demo_app, monkeypatch, capsys, exc):
    def fail(cfg):
        raise exc
    monkeypatch.setattr(demo_app, "AppBackend", fail)
    assert demo_app.main(["--config", str(ROOT / "configs" / "demo.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and type(exc).__name__ in err and "Traceback" not in err


def test_previews_are_deleted_by_age_and_on_close(tmp_path):
    from demo.backend import AppBackend, AppConfig

    be = AppBackend(AppConfig())          # the default demo assets
    old, new = be.preview_dir / "preview-old.webm", be.preview_dir / "preview-new.webm"
    for f in (old, new):
        f.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert be.prune_previews(max_age_s=3600) == 1
    assert not old.exists() and new.exists()
    tmp = be.preview_dir
    be.close()
    assert not tmp.exists()
