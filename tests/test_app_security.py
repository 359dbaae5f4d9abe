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


# --- what the app serves (item 2) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny assets with a gallery at <root>/gallery whose videos lie beside it in <root>/videos."""
    from seds.checkpoint import load_checkpoint
    from seds.data.manifest import load_manifest
    from seds.data.store import FeatureStore
    from seds.retrieval.gallery import build_gallery, checkpoint_fingerprint
    from tests.assets import tiny_assets

    a = tiny_assets(tmp_path_factory.mktemp("sec"), n_videos=3, n_sentences=6)
    model, _, _, _ = load_checkpoint(a.checkpoint)
    fs = FeatureStore(a.store)
    build_gallery(a.root / "gallery", model, checkpoint_fingerprint(a.checkpoint), list(load_manifest(a.manifest)),
                  lambda r: fs[r.id], cache=True)
    return a


def crafted_gallery(a, name: str, edit) -> Path:
    """A copy of the tiny gallery beside the original, with ``edit(meta_rows)`` applied to its video metadata."""
    import json
    import shutil
    g = a.root / name
    shutil.copytree(a.root / "gallery", g)
    f = g / "videos" / "metadata.json"
    doc = json.loads(f.read_text())
    edit(doc["meta"])
    f.write_text(json.dumps(doc))
    return g


def backend_for(a, gallery: Path, **kw):
    from demo.backend import AppBackend, AppConfig
    return AppBackend(AppConfig(checkpoint=str(a.checkpoint), gallery=str(gallery), **kw))


def test_a_correct_gallery_serves_exactly_its_videos_and_thumbnails(tiny):
    be = backend_for(tiny, tiny.root / "gallery")
    try:
        served = be.gallery.served_files()
        want = sorted({str(v.resolve()) for v in tiny.videos}
                      | {str(p.resolve()) for p in (tiny.root / "gallery" / "thumbnails").iterdir()})
        assert served == want and len(served) == 2 * len(tiny.videos)
        assert not any(s.endswith((".json", ".safetensors")) for s in served)   # no metadata, no feature cache
    finally:
        be.close()


@pytest.mark.parametrize("case", ["absolute", "dotdot", "symlink", "thumbnail"])
def test_a_gallery_row_pointing_outside_is_refused_at_start_up(tiny, tmp_path, case):
    """Issue 15: one crafted metadata.json row (video: "/etc/passwd") made /etc/shadow downloadable."""
    from demo.backend import AppError
    secret = tmp_path / "secret.txt"            # outside the gallery's media folder (tiny.root)
    secret.write_text("do not serve me\n")

    def edit(rows):
        if case == "absolute":
            rows[0]["video"] = str(secret)
        elif case == "dotdot":
            rows[1]["video"] = "../" * 12 + str(secret).lstrip("/")
        elif case == "thumbnail":
            rows[0]["thumbnail"] = "../videos/" + Path(rows[0]["video"]).name   # a file, but not the gallery's own
        elif case == "symlink":
            link = tiny.root / "videos" / f"link-{tmp_path.name}.webm"
            link.symlink_to(secret)
            rows[2]["video"] = "../videos/" + link.name
    g = crafted_gallery(tiny, f"g-{case}-{tmp_path.name}", edit)
    with pytest.raises(AppError, match=r"cannot serve the gallery .* resolves to .*, outside .*refusing"):
        backend_for(tiny, g)
    if case != "thumbnail":    # naming a media folder that holds the file is how to serve it on purpose
        common = Path(os.path.commonpath([secret.resolve(), tiny.root.resolve()]))
        be = backend_for(tiny, g, media_root=str(common))
        try:
            assert str(secret.resolve()) in be.gallery.served_files()
        finally:
            be.close()


def test_the_start_up_message_of_a_crafted_gallery_is_one_line(tiny, demo_app, capsys):
    g = crafted_gallery(tiny, "g-main", lambda rows: rows[0].update(video="/etc/passwd"))
    rc = demo_app.main(["--config", str(ROOT / "configs" / "demo.yaml"), "--checkpoint", str(tiny.checkpoint),
                        "--gallery", str(g)])
    err = capsys.readouterr().err
    assert rc == 1 and "'/etc/passwd'" in err and "outside" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_running_server_serves_gallery_videos_and_nothing_else_of_the_gallery(tiny, demo_app):
    """Over HTTP (Gradio's /gradio_api/file= route): a gallery video and thumbnail are served; the gallery's
    metadata, feature cache and any other file are not."""
    import httpx
    from demo.backend import AppBackend, AppConfig

    cfg = AppConfig(checkpoint=str(tiny.checkpoint), gallery=str(tiny.root / "gallery"), port=0, preview=False)
    be = AppBackend(cfg)
    app = demo_app.launch(be, cfg, prevent_thread_lock=True)
    try:
        def status(p) -> int:
            return httpx.get(f"{app.local_url}gradio_api/file={p}", timeout=30).status_code
        g = (tiny.root / "gallery").resolve()
        first = be.gallery.videos.ids[0]
        video, thumb = be.gallery.video_path(first), be.gallery.thumbnail_path(first)
        assert status(video) == 200 and status(thumb) == 200
        refused = [g / "gallery.json", g / "videos" / "metadata.json", next((g / "cache").iterdir()),
                   tiny.checkpoint.resolve() / "config.json", Path("/etc/passwd")]
        assert [status(p) for p in refused] == [403] * len(refused)
    finally:
        app.close()
        be.close()
