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


@pytest.mark.slow
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
def tiny(tiny_app):
    """Tiny assets with a gallery at <root>/gallery whose videos lie beside it in <root>/videos (conftest)."""
    return tiny_app


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
    secret = tmp_path / "secret.mp4"            # outside the gallery's media folder (tiny.root); a media suffix
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


@pytest.mark.slow
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


# --- queries that don't queue behind each other (item 5) ---------------------------------------------

class BlockingPose:
    """A pose estimator that signals when it starts and then waits to be released (an extraction in flight)."""
    name = "blocking"

    def __init__(self, kpts):
        import threading
        self.kpts = kpts
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, frames, progress=None):
        import numpy as np
        self.started.set()
        assert self.release.wait(60), "never released"
        if progress is not None:
            progress(1.0)
        out = self.kpts[np.minimum(np.arange(len(frames)), len(self.kpts) - 1)]

        class R:
            def to_store(self_inner):
                return out
        return R()


def run_in_thread(fn):
    import threading
    box = {}

    def target():
        try:
            box["result"] = fn()
        except Exception as e:  # noqa: BLE001 - handed to the test
            box["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


@pytest.mark.slow
def test_cached_and_bad_queries_are_not_blocked_by_a_running_extraction(tiny, tmp_path):
    """Issue 15: the extraction lock also covered decoding and cached examples (a cached example waited
    8.3 s instead of 0.5 s under 10 users; a non-video file 24.8 s)."""
    from demo.backend import AppBackend, AppConfig, AppError
    from seds.extract.writer import write_video
    pose = BlockingPose(tiny.data.keypoints(tiny.specs[-1]))
    be = AppBackend(AppConfig(checkpoint=str(tiny.checkpoint), gallery=str(tiny.root / "gallery"), preview=False),
                    pose_estimator=pose)
    try:
        upload = write_video(tiny.data.render(tiny.specs[-1]), tmp_path / "upload.webm", 24.0)
        t, box = run_in_thread(lambda: be.query_video(upload))
        assert pose.started.wait(60), box
        t0 = time.perf_counter()
        q = be.query_video(tiny.videos[0])                          # a gallery video: cached features
        cached_s = time.perf_counter() - t0
        assert q.source == "cache" and all(len(h) > 0 for h in q.hits.values())
        bad = tmp_path / "notes.mp4"
        bad.write_text("not a video\n" * 100)
        t0 = time.perf_counter()
        with pytest.raises(AppError, match="cannot be used as a video"):
            be.query_video(bad)
        bad_s = time.perf_counter() - t0
        assert be.query_text(tiny.specs[0].text).hits
        assert t.is_alive()                                         # the extraction is still in flight
        assert cached_s < 5.0 and bad_s < 5.0, (cached_s, bad_s)
        pose.release.set()
        t.join(60)
        assert "result" in box and box["result"].source == "extracted", box
    finally:
        pose.release.set()
        be.close()


@pytest.mark.slow
def test_a_query_ends_at_its_time_limit(tiny, tmp_path):
    """A query waiting behind a long extraction, and the long extraction itself, end with a clear message
    once query_timeout_s has passed."""
    from demo.backend import AppBackend, AppConfig, AppError
    from seds.extract.writer import write_video
    pose = BlockingPose(tiny.data.keypoints(tiny.specs[-1]))
    be = AppBackend(AppConfig(checkpoint=str(tiny.checkpoint), gallery=str(tiny.root / "gallery"), preview=False,
                              query_timeout_s=2.0), pose_estimator=pose)
    try:
        frames = tiny.data.render(tiny.specs[-1])
        first, second = (write_video(frames[i:], tmp_path / f"u{i}.webm", 24.0) for i in (0, 1))
        t, box = run_in_thread(lambda: be.query_video(first))
        assert pose.started.wait(60)
        t0 = time.perf_counter()
        with pytest.raises(AppError, match=r"longer than the limit of 2 s"):
            be.query_video(second)                                  # waits for the extractor, then gives up
        assert 1.5 < time.perf_counter() - t0 < 10
        time.sleep(max(0.0, 2.2 - (time.perf_counter() - t0)))
        pose.release.set()
        t.join(60)
        assert isinstance(box.get("error"), AppError) and "longer than the limit" in str(box["error"])
        assert be.query_text(tiny.specs[0].text).hits               # still serving
    finally:
        pose.release.set()
        be.close()


@pytest.mark.slow
def test_gradio_queue_leaves_room_for_cached_queries_beside_extractions(tiny, demo_app):
    """Video queries run VIDEO_CONCURRENCY at a time, more than the uploads the backend extracts at once
    (max_live_queries): a cached gallery video always finds a free slot; text queries have their own."""
    from demo.backend import AppBackend, AppConfig
    be = AppBackend(AppConfig(checkpoint=str(tiny.checkpoint), gallery=str(tiny.root / "gallery")))
    try:
        app = demo_app.build_app(be)
        limits = {}
        for fn in app.fns.values():
            if fn.concurrency_id in ("video", "text"):
                limits.setdefault(fn.concurrency_id, set()).add(fn.concurrency_limit)
        assert limits == {"video": {demo_app.VIDEO_CONCURRENCY}, "text": {demo_app.TEXT_CONCURRENCY}}
        assert demo_app.VIDEO_CONCURRENCY > be.cfg.max_live_queries
    finally:
        be.close()


def test_a_timed_out_query_is_not_remembered_as_the_files_answer():
    """demo/live.py remembers user errors per file; a time-out says the server was busy, so it is not."""
    from demo.live import RecentQueries
    from seds.retrieval.engine import QueryTimeout
    r, calls = RecentQueries(4), []

    def busy():
        calls.append("busy")
        raise QueryTimeout("longer than the limit")
    for _ in range(2):
        with pytest.raises(QueryTimeout):
            r.get_or_run("k", busy)
    assert calls == ["busy", "busy"] and "k" not in r
    assert r.get_or_run("k", lambda: "answer") == ("answer", False)
