"""Issue 25 — the public app under hostile uploads: frames refused from the headers before any decoding, no
uploader's name in another session's answer, bounded text and figures, a clean SIGTERM, gallery rows naming the
gallery's own files, non-object checkpoint configs, honest start-up lines. Every crafted file is made here
(tests/hostile_files.py)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from demo.backend import AppBackend, AppConfig, AppError, explanation_figure  # noqa: E402
from demo.live import LiveQueries, plan_text  # noqa: E402
from seds.checkpoint import CheckpointError, read_config  # noqa: E402
from seds.extract import video as V  # noqa: E402
from seds.extract.header import header_size  # noqa: E402
from seds.extract.writer import write_video  # noqa: E402
from tests.hostile_files import huge_h264, huge_png  # noqa: E402
from tests.test_app_backend import FakePose  # noqa: E402
from tests.test_app_security import crafted_gallery  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 4096 * 2304                          # EngineConfig.max_frame_pixels
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg/ffprobe make and read the H.264 input")


@pytest.fixture(scope="module")
def tiny(tiny_app):
    return tiny_app


@pytest.fixture(scope="module")
def backend(tiny):
    be = AppBackend(AppConfig(checkpoint=str(tiny.checkpoint), gallery=str(tiny.root / "gallery"), preview=False,
                              max_clips=8, max_seconds=4.0), pose_estimator=FakePose(tiny.data.keypoints(tiny.specs[-1])))
    yield be
    be.close()


def crafted(kind: str, folder: Path, name: str = "") -> Path:
    if kind == "png":
        return huge_png(folder / (name or "huge.png"), 16000, 16000)
    return huge_h264(folder / (name or "huge.mp4"), 8000, 8000)


# --- 1. oversized frames: refused from the headers, nothing decoded ----------------------------------------

@pytest.fixture
def no_decoder(monkeypatch):
    """Any decoder opening a file fails the test (decord and OpenCV decode the first frame when they open it)."""
    import cv2

    def decoded(*a, **k):
        raise AssertionError("a decoder opened the file")
    monkeypatch.setattr(V, "_open_decord", decoded)
    monkeypatch.setattr(V, "_open_cv2", decoded)
    monkeypatch.setattr(cv2, "VideoCapture", decoded)


@pytest.mark.parametrize("kind", ["png", pytest.param("h264", marks=[needs_ffmpeg, pytest.mark.slow])])
def test_huge_frames_are_refused_from_the_header_before_any_decoding(tmp_path, no_decoder, kind):
    """Issue 25.1: probe() read vr[0].shape — a 746 KB 16000² PNG cost +733 MB and 13.8 s before its refusal."""
    f = crafted(kind, tmp_path)
    assert f.stat().st_size < 1_000_000
    size = "16000x16000" if kind == "png" else "8000x8000"
    for call in (lambda: V.probe(f, V.Budget(max_frame_pixels=LIMIT)),
                 lambda: V.read_video(f, budget=V.Budget(480, LIMIT, 250_000_000))):
        t0 = time.perf_counter()
        with pytest.raises(V.VideoError, match=f"frames of {size} are larger than the limit"):
            call()
        assert time.perf_counter() - t0 < 2.0
    assert header_size(f) == tuple(int(x) for x in size.split("x"))


@needs_ffmpeg
def test_header_size_agrees_with_the_decoders_on_ordinary_videos(tmp_path):
    import subprocess
    import numpy as np
    webm = write_video(np.zeros((6, 90, 160, 3), np.uint8), tmp_path / "v.webm", 24.0)
    mp4 = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=160x90:r=24:d=0.5", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(mp4)], check=True)
    for f in (webm, mp4):
        assert header_size(f) == (160, 90) == (V.probe(f).width, V.probe(f).height)
    text = tmp_path / "t.mp4"
    text.write_text("not a video")
    assert header_size(text) is None


@pytest.mark.slow
def test_the_plan_refuses_oversized_frames_instead_of_promising_a_time(backend, tmp_path, no_decoder):
    """Issue 25 minor: the plan for an 8000² upload promised '≈ 1 s' before Search refused it."""
    live = LiveQueries(backend)
    f = crafted("png", tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(AppError, match="frames of 16000x16000 are larger than the limit of 9.44 megapixels"):
        live.plan(f)
    with pytest.raises(AppError, match="larger than the limit"):
        live.query_video(f)
    assert time.perf_counter() - t0 < 4.0


# --- 2. nothing of one uploader reaches another session ----------------------------------------------------

@pytest.mark.slow
def test_no_uploader_name_reaches_another_session(backend, tiny, tmp_path):
    """Issue 25.2: B, uploading A's bytes as bob2.mp4, read '(alice_secret_diagnosis_video.mp4): frames of …', or
    was told the file was 'already searched in this session'."""
    live = LiveQueries(backend)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # a failing file
    bad_a = tmp_path / "a" / "alice_secret_diagnosis_video.mp4"
    bad_a.write_bytes(b"not a video at all\n" * 50)
    bad_b = tmp_path / "b" / "bob2.mp4"
    shutil.copy(bad_a, bad_b)
    with pytest.raises(AppError) as ea:
        live.query_video(bad_a, session="alice")
    with pytest.raises(AppError) as eb:
        live.query_video(bad_b, session="bob")
    for e in (ea, eb):
        assert "cannot be used as a video" in str(e.value)
        assert "alice" not in str(e.value) and "diagnosis" not in str(e.value) and str(tmp_path) not in str(e.value)
    # a file that works
    frames = tiny.data.render(tiny.specs[1])
    ok_a = write_video(frames, tmp_path / "a" / "alice_secret_diagnosis_video.webm", 24.0)
    ok_b = tmp_path / "b" / "bob2.webm"
    shutil.copy(ok_a, ok_b)
    qa = live.query_video(ok_a, session="alice")
    assert live.plan(ok_b, session="bob").kind == "live"                  # nothing says someone searched it
    qb = live.query_video(ok_b, session="bob")
    said = json.dumps([qb.notes, qb.preview, qb.features.meta, plan_text(live.plan(ok_b, session="carol"))],
                      default=str)
    assert "alice" not in said and "diagnosis" not in said and str(tmp_path) not in said
    assert not qb.recent and not any("before" in n or "session" in n or "cache" in n for n in qb.notes), qb.notes
    assert [h.id for h in qb.hits["fused"]] == [h.id for h in qa.hits["fused"]]   # the same answer
    # only the session's own repeat is called one
    assert live.plan(ok_a, session="alice").kind == "recent"
    again = live.query_video(ok_a, session="alice")
    assert again.recent and "you searched this file before" in again.notes[0]


# --- 3. bounded text ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_1mb_text_is_refused_at_once_and_long_words_make_small_figures(backend):
    """Issue 25.3: run_text('x' * 1_000_000) took ~2 minutes and a 100 MB plot JSON."""
    from seds.retrieval.inputs import MAX_LABEL_CHARS, MAX_TEXT_CHARS
    t0 = time.perf_counter()
    with pytest.raises(AppError, match=r"1,000,000 characters long; at most 1,000 .*first \d+ words"):
        backend.query_text("x" * 1_000_000)
    assert time.perf_counter() - t0 < 2.0
    q = backend.query_text("y" * MAX_TEXT_CHARS)                           # the longest accepted: one 1000-char word
    assert all(len(w) <= MAX_LABEL_CHARS for w in q.labels)
    vid = q.hits["fused"][0].id
    fig = explanation_figure(backend.explain_text_query(q, vid))
    assert len(fig.to_json()) < 100_000


# --- 5. the gallery's own files; non-object checkpoint configs --------------------------------------------

@pytest.mark.parametrize("key,target", [("video", "gallery.json"), ("video", "videos/metadata.json"),
                                        ("video", "cache"), ("thumbnail", "gallery.json"),
                                        ("thumbnail", "cache")])
def test_crafted_rows_naming_the_gallerys_own_files_are_refused(tiny, tmp_path, key, target):
    """Issue 25.5: rows naming gallery.json, cache/*.safetensors or videos/metadata.json were served (200)."""
    name = f"g-own-{key}-{target.replace('/', '-')}-{tmp_path.name}"
    g_dir = tiny.root / name

    def edit(rows):
        own = target if target != "cache" else "cache/" + next((tiny.root / "gallery" / "cache").iterdir()).name
        rows[0][key] = (f"../{name}/{own}" if key == "video" else own)
    g = crafted_gallery(tiny, name, edit)
    assert g == g_dir
    with pytest.raises(AppError, match=r"not a (video|thumbnail image) file .*gallery's own data files; refusing"):
        AppBackend(AppConfig(checkpoint=str(tiny.checkpoint), gallery=str(g)))


@pytest.mark.parametrize("doc", ["[1, 2, 3]", "null", '"config"', '{"format": "seds-checkpoint/1", "config": [1]}'])
def test_a_non_object_checkpoint_config_names_the_file(tiny, tmp_path, doc):
    """Issue 25.5: config.json = [1,2,3] or null gave AttributeError: 'list' object has no attribute 'get'."""
    ck = tmp_path / "ck"
    shutil.copytree(tiny.checkpoint, ck)
    (ck / "config.json").write_text(doc)
    with pytest.raises(CheckpointError, match=str(ck / "config.json")):
        read_config(ck)
    with pytest.raises(AppError, match="config.json"):
        AppBackend(AppConfig(checkpoint=str(ck), gallery=str(tiny.root / "gallery")))


# --- minor: start-up lines ----------------------------------------------------------------------------------

def test_missing_i3d_weights_are_refused_at_start_up(tiny, tmp_path):
    """Issue 25 minor: with I3D weights missing the app started and every upload got a server path."""
    ck = tmp_path / "ck"
    shutil.copytree(tiny.checkpoint, ck)
    doc = json.loads((ck / "config.json").read_text())
    doc["config"]["data"]["rgb_features"] = f"i3d:{tmp_path / 'missing' / 'i3d.pt'}"
    (ck / "config.json").write_text(json.dumps(doc))
    with pytest.raises(AppError, match="I3D weights .*missing.* do not exist"):
        AppBackend(AppConfig(checkpoint=str(ck), gallery=str(tiny.root / "gallery")))


@pytest.mark.slow
def test_the_start_up_line_says_i3d_compiled_only_when_it_is(capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("seds_demo_app_hostile", ROOT / "demo" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)

    class Be:
        def __init__(self, compiled):
            self.rgb_compiled = compiled

        def warm_up(self):
            return 3.0
    app.warm_up(Be(False))
    app.warm_up(Be(True))
    out = capsys.readouterr().out.splitlines()
    assert out == ["extraction models ready in 3 s", "extraction models ready (I3D compiled) in 3 s"]


# --- over HTTP: the running app (slow) -----------------------------------------------------------------------

def run_threads(fns):
    out = [None] * len(fns)

    def run(i):
        t0 = time.perf_counter()
        try:
            out[i] = (fns[i](), None, time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - reported by the test
            out[i] = (None, e, time.perf_counter() - t0)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    return out


@pytest.mark.slow
@needs_ffmpeg
def test_four_concurrent_16000px_uploads_and_a_1mb_text_over_http(tmp_path):
    """Issue 25 must-show: 4 concurrent 16000² uploads (two PNG, two H.264; distinct bytes, 4 sessions) cost
    ≤ 2.5 GB above idle and are refused in < 2 s each; a 1 MB text is answered or refused in < 2 s with a
    response under 1 MB. Writes benchmarks/results/hostile_uploads.md."""
    import subprocess
    from gradio_client import handle_file
    from tests.app_server import reset_peak, rss_mb, start_app
    files = [huge_png(tmp_path / "a.png", rgb=(1, 2, 3)), huge_png(tmp_path / "b.png", rgb=(4, 5, 6)),
             huge_h264(tmp_path / "c.mp4", 16000, 16000)]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(files[2]), "-c", "copy", "-metadata", "comment=other",
                    str(tmp_path / "d.mp4")], check=True)              # the same frame, other bytes
    files.append(tmp_path / "d.mp4")
    server = start_app(tmp_path / "app")
    try:
        clients = [server.client() for _ in files]
        time.sleep(3.0)                                            # let start-up work (warm-up thread) settle
        idle = rss_mb(server.pid)
        reset_peak(server.pid)
        res = run_threads([lambda c=c, f=f: c.predict(handle_file(str(f)), 5, api_name="/run_video")
                           for c, f in zip(clients, files)])
        peak = rss_mb(server.pid, "VmHWM")
        for (out, err, secs), f in zip(res, files):
            assert err is None, err
            assert "larger than the limit" in out[1] and "16000x16000" in out[1], out[1]
            assert f.name not in json.dumps(out, default=str)
        times = [r[2] for r in res]
        t0 = time.perf_counter()
        text_out = clients[0].predict("x" * 1_000_000, api_name="/run_text")
        text_s = time.perf_counter() - t0
        text_bytes = len(json.dumps(text_out, default=str).encode())
        assert "at most 1,000" in text_out[0]
        assert server.proc.poll() is None
    finally:
        server.stop()
    delta = peak - idle
    lines = ["# Hostile uploads against the running app (loopback, gradio_client)", "",
             "Command: `python -m pytest -m slow tests/test_app_hostile.py -k four_concurrent`", "",
             f"Machine: {os.cpu_count()}-core CPU, shared with other jobs; load average at the end "
             f"{os.getloadavg()[0]:.2f}. Server: the default demo (`python demo/app.py`).", "",
             "| what | measured |", "|---|---:|",
             f"| server RSS idle | {idle:.0f} MB |",
             f"| peak RSS above idle, 4 concurrent 16000×16000 uploads (2 PNG ≈ 0.8 MB, 2 H.264 ≈ 0.75 MB) | "
             f"**{delta:.0f} MB** |",
             f"| time to each refusal (client side, all 4 at once) | {', '.join(f'{t:.2f} s' for t in times)} |",
             f"| 1 MB text (one word): time to the refusal | {text_s:.2f} s |",
             f"| 1 MB text: response size | {text_bytes:,} bytes |", ""]
    (ROOT / "benchmarks" / "results" / "hostile_uploads.md").write_text("\n".join(lines))
    assert delta <= 2500, (idle, peak)
    assert max(times) < 2.0, times
    assert text_s < 2.0 and text_bytes < 1_000_000


@pytest.mark.slow
def test_sigterm_leaves_no_upload_and_no_preview(tmp_path):
    """Issue 25.4: Ctrl-C cleaned up, `kill -TERM` left /tmp/seds-app-*/preview-* and Gradio's upload copies."""
    from gradio_client import handle_file
    from tests.app_server import start_app
    server = start_app(tmp_path / "app")
    try:
        c = server.client()
        example = ROOT / "examples" / "videos" / "syn_test_00000.webm"
        upload = tmp_path / "my_upload.webm"
        shutil.copy(example, upload)
        out = c.predict(handle_file(str(upload)), 5, api_name="/run_video")      # cached features + a preview
        assert out[0] and "gallery feature cache" in out[1], out[1]
        c.predict(handle_file(str(upload)), api_name="/new_video")
        left = server.files_left()
        assert any(p.name.startswith("preview-") for p in left) and any(p.name == upload.name for p in left), left
    finally:
        rc = server.stop(signal.SIGTERM)
    assert rc == 0, server.log.read_text()[-2000:]
    assert server.files_left() == [] and not list(server.tmp.glob("seds-app-*"))
