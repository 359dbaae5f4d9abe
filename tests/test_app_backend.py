"""demo/backend.py (over seds.retrieval.engine): the app's logic without a browser — cache and extraction paths, per-stream
results against naive references, the Why heatmaps, bad input, configuration, the default assets."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from demo.backend import ROOT, AppBackend, AppConfig, AppError, explanation_figure, load_app_config  # noqa: E402
from seds.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from seds.clips import clip_times  # noqa: E402
from seds.variants.paper import features_to_item  # noqa: E402
from seds.extract.factory import RGBFeaturesError, make_rgb_extractor, rgb_weights  # noqa: E402
from seds.extract.proxy_rgb import ProxyRGBExtractor  # noqa: E402
from seds.extract.writer import write_video  # noqa: E402
from tests.assets import tiny_assets, tiny_gallery  # noqa: E402
from seds.similarity import fine_grained_scores  # noqa: E402


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    a = tiny_assets(tmp_path_factory.mktemp("app"), n_videos=4, n_sentences=12)
    tiny_gallery(a)
    return a


class FakePose:
    """A pose estimator returning given store-layout keypoints (resampled to the frame count)."""
    name = "fake"

    def __init__(self, kpts):
        self.kpts = np.asarray(kpts, np.float32)

    def __call__(self, frames, progress=None):
        idx = np.minimum(np.arange(len(frames)), len(self.kpts) - 1)
        out = self.kpts[idx]

        class R:
            def to_store(self_inner):
                return out
        return R()


@pytest.fixture(scope="module")
def backend(assets):
    kp = assets.data.keypoints(assets.specs[-1])
    be = AppBackend(AppConfig(checkpoint=str(assets.checkpoint), gallery=str(assets.root / "gallery"), top_k=5,
                              max_clips=8, max_seconds=4.0), pose_estimator=FakePose(kp))
    yield be
    be.close()


def naive_video(be, feats):
    """Per-stream clip features through the model directly (one video, no padding)."""
    from seds.data.dataset import collate
    from seds.keypoints import KeypointLayout

    with torch.no_grad():
        e = be.model.encode_batch_video(collate([features_to_item(feats, KeypointLayout())]))
    return e


@pytest.mark.slow
def test_video_query_from_cache_matches_naive_ranking(backend, assets):
    q = backend.query_video(assets.videos[2], k=12)
    assert q.source == "cache" and any("gallery cache" in n for n in q.notes)
    assert q.gallery_id == assets.specs[2].id and q.true_text == assets.specs[2].text
    assert q.preview is not None and Path(q.preview).stat().st_size > 0
    e = naive_video(backend, q.features)
    texts = [backend.gallery.sentences.meta(i)["text"] for i in backend.gallery.sentences.ids]
    with torch.no_grad():
        t = backend.model.encode_text(texts)
    for s in ("pose", "rgb", "fused"):
        ref = fine_grained_scores(e[s], e.mask, t.words, t.mask, tau=backend.model.cfg.tau).mean[0]
        top = torch.topk(ref, len(q.hits[s]))
        assert [h.meta["text"] for h in q.hits[s]] == [texts[int(i)] for i in top.indices]
        np.testing.assert_allclose([h.score for h in q.hits[s]], top.values.numpy(), atol=3e-3)
    assert set(q.timings) >= {"hash", "embed", "search", "total"}
    np.testing.assert_allclose(q.clip_times, (q.features.clip_starts + 7.5) / q.features.fps)


@pytest.mark.slow
def test_text_query_and_explanation_match_naive(backend, assets):
    text = assets.specs[3].text
    q = backend.query_text(text, k=4)
    assert set(q.hits) == {"pose", "rgb", "fused"} and all(len(h) == 4 for h in q.hits.values())
    assert q.labels == text.lower().split()[:len(q.labels)]
    vid = q.hits["fused"][0].id
    ex = backend.explain_text_query(q, vid)
    # E = normalised clips · normalised words, from the model directly
    from seds.data.store import FeatureStore
    feats = FeatureStore(assets.store)[vid]
    e = naive_video(backend, feats)
    with torch.no_grad():
        t = backend.model.encode_text([text])
    for s in ("pose", "rgb", "fused"):
        ref = torch.nn.functional.normalize(e[s][0], dim=-1) @ torch.nn.functional.normalize(t.words[0], dim=-1).T
        assert ex.matrices[s].shape == (feats.num_clips, len(q.labels))
        np.testing.assert_allclose(ex.matrices[s], ref.numpy(), atol=3e-3)
        hit = next(h for h in q.hits[s] if h.id == vid) if any(h.id == vid for h in q.hits[s]) else None
        if hit is not None:
            assert abs(hit.score - ex.scores[s]) < 3e-3
    assert ex.words == q.labels
    np.testing.assert_allclose(ex.times, backend.gallery.videos.meta(vid)["clip_times"][:feats.num_clips])
    fig = explanation_figure(ex)
    heat = [d for d in fig.data if d.type == "heatmap"]
    assert len(heat) == 3 and np.asarray(heat[2].z).shape == ex.matrices["fused"].shape
    assert list(fig.layout.xaxis.ticktext) == q.labels
    # a video query explained against a gallery sentence
    vq = backend.query_video(assets.videos[0])
    sid = vq.hits["fused"][0].id
    ex2 = backend.explain_video_query(vq, sid)
    assert abs(ex2.scores["fused"] - vq.hits["fused"][0].score) < 3e-3


@pytest.mark.slow
def test_extraction_path_notes_and_trimming(backend, assets, tmp_path):
    """A file not in the cache goes through decode → (fake) pose → filter → proxy RGB; a long video is
    trimmed to max_seconds, and a missing hand is reported."""
    spec = assets.specs[-1]
    frames = assets.data.render(spec)
    long = np.concatenate([frames] * int(np.ceil(5.0 * 24 / len(frames))))     # > max_seconds = 4 s
    path = write_video(long, tmp_path / "long.webm", 24.0, fourcc="VP90")
    q = backend.query_video(path)
    assert q.source == "extracted" and q.gallery_id is None
    assert any("only its first 4 s" in n for n in q.notes)
    assert q.features.num_clips <= 8                           # the app's max_clips
    assert {"decode", "pose", "filter", "rgb", "embed", "search"} <= set(q.timings)
    assert q.features.meta["rgb_backend"] == "synthetic-proxy"
    # the pipeline's proxy RGB of the decoded frames equals the proxy encoder on those frames
    from seds.extract.video import read_video
    dec = read_video(path, fps=24.0, max_seconds=4.0, trim_long=True).frames
    keep = np.flatnonzero(backend.extractor().cfg.filter(FakePose(assets.data.keypoints(spec))(dec).to_store()))
    ref = ProxyRGBExtractor().features(dec[keep], q.features.clip_starts)
    np.testing.assert_allclose(q.features.rgb, ref, atol=1e-5)
    # one hand never visible → a note, results still come back
    kp = assets.data.keypoints(spec).copy()
    kp[:, 7:28, 2] = 0.0                                        # the subject's left hand
    be = AppBackend(backend.cfg, pose_estimator=FakePose(kp))
    try:
        q1 = be.query_video(write_video(frames, tmp_path / "onehand.webm", 24.0))
        assert any("left hand was found in 0%" in n for n in q1.notes)
        assert all(len(h) > 0 for h in q1.hits.values())
    finally:
        be.close()


@pytest.mark.slow
def test_pose_stride_reaches_the_live_extractor_and_the_header(backend):
    """SEDS_POSE_STRIDE / --pose-stride: live queries run the pose backend at that stride (the official path too,
    through the same estimator) and the header's pose line says so; stride 1 leaves the estimator as given."""
    from seds.extract.pose_stride import StridedPoseEstimator
    from tests.test_pose_stride import CountingPose

    assert "frame in" not in backend.describe()["pose"]
    pose = CountingPose()
    be = AppBackend(dataclasses.replace(backend.cfg, pose_stride=2), pose_estimator=pose)
    try:
        est = be.extractor().pose
        assert isinstance(est, StridedPoseEstimator) and est.stride == 2 and est.inner is pose
        assert "live queries: pose on 1 frame in 2" in be.describe()["pose"]
    finally:
        be.close()


class CompiledRGB:
    """Stands in for a compiled I3D: records the windows it is asked for."""
    name, compiled = "fake-compiled-i3d", True

    def __init__(self):
        self.calls = []

    def features(self, frames, clip_starts, window=16):
        self.calls.append((np.asarray(frames).shape, list(clip_starts)))
        return np.zeros((len(clip_starts), 1024), np.float32)


@pytest.mark.slow
def test_warm_up_compiles_i3d_once_before_any_query(backend, monkeypatch):
    """i3d_compile (SEDS_I3D_COMPILE / --i3d-compile): warm_up builds the extractor and runs one blank window
    through a compiled RGB extractor (so the first user query does not compile); without i3d_compile, or for an
    uncompiled extractor, warm_up only builds the models. The setting reaches it from the environment."""
    rgb = CompiledRGB()
    be = AppBackend(dataclasses.replace(backend.cfg, i3d_compile=True), pose_estimator=backend.engine._pose,
                    rgb_extractor=rgb)
    try:
        assert be.warm_up() >= 0
        assert rgb.calls == [((16, 224, 224, 3), [0])]
    finally:
        be.close()
    rgb2 = CompiledRGB()
    be = AppBackend(backend.cfg, pose_estimator=backend.engine._pose, rgb_extractor=rgb2)
    try:
        be.warm_up()
        assert rgb2.calls == [] and be.extractor().rgb is rgb2
    finally:
        be.close()
    monkeypatch.setenv("SEDS_I3D_COMPILE", "0")
    assert load_app_config().i3d_compile is False
    monkeypatch.setenv("SEDS_I3D_COMPILE", "1")
    assert load_app_config().i3d_compile is True
    monkeypatch.delenv("SEDS_I3D_COMPILE")
    cfg = load_app_config()
    assert cfg.i3d_compile is True and cfg.max_clips == 64 and cfg.pose_stride == 2     # configs/demo.yaml


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["none", "missing", "empty", "text", "corrupt", "nosigner", "emptytext",
                                  "bigframes", "toomanypixels"])
def test_bad_input_gives_a_clear_message_and_the_backend_keeps_working(backend, assets, tmp_path, kind):
    msgs = {"none": "Upload a video", "missing": "was not found", "empty": r"empty \(0 bytes\)",
            "text": "cannot be used as a video", "corrupt": "cannot be used as a video",
            "nosigner": "No signer found", "emptytext": "Type a sentence",
            "bigframes": r"frames of 112x112 are larger than the limit of 0\.0125 megapixels",
            "toomanypixels": r"more than the budget of 0\.1 megapixels: use a shorter or smaller video"}
    be = backend
    if kind == "none":
        call = lambda: be.query_video(None)                            # noqa: E731
    elif kind == "missing":
        call = lambda: be.query_video(tmp_path / "nope.mp4")          # noqa: E731
    elif kind == "empty":
        (tmp_path / "e.mp4").write_bytes(b"")
        call = lambda: be.query_video(tmp_path / "e.mp4")             # noqa: E731
    elif kind == "text":
        (tmp_path / "t.mp4").write_text("this is not a video\n" * 50)
        call = lambda: be.query_video(tmp_path / "t.mp4")             # noqa: E731
    elif kind == "corrupt":
        good = assets.videos[0].read_bytes()
        (tmp_path / "c.webm").write_bytes(good[:200] + bytes(np.random.default_rng(0).integers(0, 256, 4000,
                                                                                               dtype=np.uint8)))
        call = lambda: be.query_video(tmp_path / "c.webm")            # noqa: E731
    elif kind == "nosigner":
        be = AppBackend(backend.cfg, pose_estimator=FakePose(np.zeros((4, 87, 3), np.float32)))
        frames = assets.data.render(assets.specs[-2])
        p = write_video(frames, tmp_path / "ns.webm", 24.0)
        call = lambda: be.query_video(p)                              # noqa: E731
    elif kind in ("bigframes", "toomanypixels"):                     # the upload size limits
        limit = {"bigframes": {"max_frame_pixels": 112 * 112 - 1}, "toomanypixels": {"max_pixels": 100_000}}
        be = AppBackend(dataclasses.replace(backend.cfg, **limit[kind]),
                        pose_estimator=FakePose(assets.data.keypoints(assets.specs[-1])))
        p = write_video(assets.data.render(assets.specs[-1]), tmp_path / "big.webm", 24.0)
        call = lambda: be.query_video(p)                              # noqa: E731
    else:
        call = lambda: be.query_text("   ")                           # noqa: E731
    with pytest.raises(AppError, match=msgs[kind]):
        call()
    assert len(be.query_text(assets.specs[0].text).hits["fused"]) > 0    # still serving


@pytest.mark.slow
def test_gallery_of_another_checkpoint_is_refused(assets, tmp_path):
    model, loss, cfg, _ = load_checkpoint(assets.checkpoint)
    with torch.no_grad():
        next(model.parameters()).mul_(2.0)
    save_checkpoint(tmp_path / "other", model, cfg, loss)
    with pytest.raises(AppError, match="Rebuild it"):
        AppBackend(AppConfig(checkpoint=str(tmp_path / "other"), gallery=str(assets.root / "gallery")))
    with pytest.raises(AppError, match="cannot load the checkpoint"):
        AppBackend(AppConfig(checkpoint=str(tmp_path / "nothing"), gallery=str(assets.root / "gallery")))


def test_config_precedence_and_rgb_extractor_choice(tmp_path):
    y = tmp_path / "demo.yaml"
    y.write_text("app: {checkpoint: a, port: 1234, share: false, top_k: 3}\n")
    cfg = load_app_config(y, {"top_k": 7, "gallery": None}, env={"SEDS_PORT": "4321", "SEDS_SHARE": "true",
                                                                  "SEDS_CHECKPOINT": "b"})
    assert (cfg.checkpoint, cfg.port, cfg.share, cfg.top_k, cfg.gallery) == ("b", 4321, True, 7, "examples/gallery")
    with pytest.raises(ValueError, match="SEDS_PORT"):
        load_app_config(y, env={"SEDS_PORT": "eighty"})
    with pytest.raises(ValueError, match="top_k"):
        load_app_config(y, {"top_k": 0}, env={})
    assert rgb_weights("i3d-kinetics400") == "kinetics400" and rgb_weights("i3d:/w/bsl.pt") == "/w/bsl.pt"
    assert rgb_weights("synthetic-proxy") is None
    with pytest.raises(RGBFeaturesError, match="rgb_features"):
        rgb_weights("resnet")
    assert isinstance(make_rgb_extractor("synthetic-proxy"), ProxyRGBExtractor)
    np.testing.assert_allclose(clip_times(np.array([0, 10]), 24.0), [7.5 / 24, 17.5 / 24])
    np.testing.assert_allclose(clip_times(np.array([0]), 24.0, frame_times=np.arange(20) * 0.5), [0.5 * (0 + 7.5)])


DEMO_CKPT, DEMO_GALLERY = ROOT / "checkpoints" / "demo", ROOT / "examples" / "gallery"


@pytest.mark.skipif(not (DEMO_CKPT / "model.safetensors").is_file() or not (DEMO_GALLERY / "gallery.json").is_file(),
                    reason="the default demo assets are not built (python -m seds.experiments.demo_assets)")
@pytest.mark.slow
def test_default_demo_assets_work_out_of_the_box():
    """checkpoints/demo + examples/gallery load with no arguments, say they are synthetic, and find the
    example videos' own sentences (the demo model was trained on this synthetic benchmark)."""
    cfg = load_app_config(ROOT / "configs" / "demo.yaml", env={})
    assert sum(p.stat().st_size for p in DEMO_CKPT.iterdir()) <= 25 * 2**20
    be = AppBackend(cfg)
    try:
        d = be.describe()
        assert be.is_synthetic and "not meaningful" in d["checkpoint"] and "not I3D" in d["rgb"]
        ids = be.gallery.info["ui_examples"]
        assert len(ids) >= 4
        ranks = []
        for vid in ids:
            q = be.query_video(be.video_path(vid), k=10)
            assert q.source == "cache" and q.true_text
            texts = [h.meta["text"] for h in q.hits["fused"]]
            ranks.append(texts.index(q.true_text) + 1 if q.true_text in texts else 99)
            tq = be.query_text(q.true_text, k=5)
            assert all(len(h) == 5 for h in tq.hits.values())
        # among the 200 test sentences every example video finds its own sentence in the fused top 10,
        # most of them at rank 1 (test split of the synthetic benchmark: fused V2T R@1 83.5 %)
        assert all(r <= 10 for r in ranks) and sum(r == 1 for r in ranks) >= len(ranks) // 2, ranks
    finally:
        be.close()


# ---------------------------------------------------------------------------------------------------
# demo/live.py: one extraction per upload, recent-queries cache, estimates, the real-signing note
# ---------------------------------------------------------------------------------------------------

def test_recent_queries_lru_and_errors():
    from demo.live import RecentQueries

    r, calls = RecentQueries(2), []

    def run(v):
        calls.append(v)
        return v

    assert r.get_or_run("a", lambda: run(1)) == (1, False)
    assert r.get_or_run("b", lambda: run(2)) == (2, False)
    assert r.get_or_run("a", lambda: run(99)) == (1, True)       # hit; "a" is now the most recent
    r.get_or_run("c", lambda: run(3))                             # evicts "b", the least recent
    assert "b" not in r and "a" in r and "c" in r and calls == [1, 2, 3]

    # a request for a key being computed waits for that computation instead of starting another
    import threading
    started, go, out = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        go.wait(10)
        calls.append("slow")
        return "v"
    first = threading.Thread(target=lambda: out.append(r.get_or_run("k", slow)))
    first.start()
    assert started.wait(10)                                       # the first request is computing "k"
    second = threading.Thread(target=lambda: out.append(r.get_or_run("k", lambda: run("again"))))
    second.start()
    second.join(0.3)
    assert second.is_alive()                                      # waiting, not computing
    go.set()
    first.join()
    second.join()
    assert sorted(out, key=lambda o: o[1]) == [("v", False), ("v", True)] and "again" not in calls

    def bad():
        calls.append("bad")
        raise AppError("no signer")
    for _ in range(2):                                            # a user error is remembered, not recomputed
        with pytest.raises(AppError, match="no signer"):
            r.get_or_run("x", bad)
    assert calls.count("bad") == 1


@pytest.mark.slow
def test_live_query_extracts_once_then_answers_from_memory(backend, assets, tmp_path):
    from demo.live import LiveQueries, progress_text, real_signing_note
    from seds.extract.video import read_video

    live = LiveQueries(backend, size=2)
    path = write_video(assets.data.render(assets.specs[1]), tmp_path / "new.webm", 24.0)
    plan = live.plan(path)
    n_dec = len(read_video(path, fps=24.0, max_seconds=4.0, trim_long=True).frames)
    assert plan.kind == "live" and plan.frames == n_dec and plan.basis.startswith("rough")
    assert plan.estimate_s == pytest.approx(live.costs.estimate(n_dec, plan.windows))
    n0, stages = backend.extractions, []
    q1 = live.query_video(path, progress=lambda st, f, el, est: stages.append(st), estimate_s=plan.estimate_s)
    assert backend.extractions == n0 + 1 and q1.source == "extracted" and not q1.recent
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == ["decode", "pose", "RGB", "embed",
                                                                                 "search"]
    assert q1.features.num_clips == plan.windows
    # the cost model now holds this machine's measurement: it predicts this query's time exactly
    assert live.costs.measured == 1 and "last 1 live query" in live.costs.basis
    t = q1.timings
    assert live.costs.estimate(n_dec, plan.windows) == pytest.approx(
        sum(t[k] for k in ("hash", "decode", "pose", "filter", "rgb", "embed", "search", "preview")), rel=1e-6)
    assert real_signing_note(backend, q1).count("python -m seds.convert official") == 1 and backend.is_synthetic
    # again, with another top-k: no extraction, the same ranking, well under a second
    assert live.plan(path).kind == "recent"
    q2 = live.query_video(path, k=3)
    assert backend.extractions == n0 + 1 and q2.recent and q2.timings["total"] < 1.0
    assert "recent-queries cache" in q2.notes[0] and q2.source == "extracted"
    for s in ("pose", "rgb", "fused"):
        assert [h.id for h in q2.hits[s]] == [h.id for h in q1.hits[s]][:3]
        assert len(q1.hits[s]) == 5                                # the first answer was not modified
    assert backend.explain_video_query(q2, q2.hits["fused"][0].id).scores == \
        backend.explain_video_query(q1, q2.hits["fused"][0].id).scores
    # a gallery video: no extraction, no real-signing note; the LRU (size 2) then forgets the first file
    qg = live.query_video(assets.videos[0])
    assert qg.source == "cache" and real_signing_note(backend, qg) == "" and live.plan(assets.videos[0]).kind == "recent"
    live.query_video(assets.videos[1])
    assert live.plan(path).kind == "live" and backend.extractions == n0 + 1
    assert progress_text("pose", 3.14, 9.2) == "decode → [pose] → RGB → embed → search · 3.1 s of ≈ 9 s"


@pytest.mark.slow
def test_identical_concurrent_queries_extract_once(backend, assets, tmp_path):
    """Two requests for the same new file at once (an impatient double click, two users): one extraction."""
    import threading
    from demo.live import LiveQueries

    live = LiveQueries(backend)
    path = write_video(assets.data.render(assets.specs[2]), tmp_path / "twice.webm", 24.0)
    n0, out = backend.extractions, []
    threads = [threading.Thread(target=lambda: out.append(live.query_video(path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.extractions == n0 + 1 and sorted(q.recent for q in out) == [False, True]
    assert [h.id for h in out[0].hits["fused"]] == [h.id for h in out[1].hits["fused"]]
    # a file that is not a video fails at once the second time, without another attempt
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n" * 50)
    for _ in range(2):
        with pytest.raises(AppError, match="cannot be used as a video"):
            live.query_video(bad)
    assert backend.extractions == n0 + 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is needed to write an MP4")
def test_truncated_upload_gives_results_and_a_note(backend, assets, tmp_path):
    """An MP4 cut in half (moov first, as streaming encoders write it) is decoded as far as it goes and
    the user is told; before, truncation went unnoticed whenever max_seconds was set (always, in the app)."""
    frames = assets.data.render(assets.specs[-1])
    src = write_video(np.concatenate([frames] * 2)[:90], tmp_path / "src.webm", 24.0)   # 3.75 s < max_seconds
    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(whole)], check=True)
    half = tmp_path / "half.mp4"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    q = backend.query_video(half)
    note = [n for n in q.notes if "truncated" in n]
    assert len(note) == 1 and "of the 90 frames" in note[0], q.notes
    assert q.features.meta["truncated"] and 0 < q.features.meta["source_frames"] < 88
    assert all(len(h) > 0 for h in q.hits.values())
    assert not any("truncated" in n for n in backend.query_video(whole).notes)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is needed to make a 4K input")
def test_4k_upload_keeps_the_server_memory_bounded(tmp_path):
    """Issue 15: a 4K upload took the server to 11 GB. The default app (MediaPipe, an I3D of the real
    size) in a fresh process must stay within 2.5 GB above its idle RSS for a 2-s 4K clip (measured:
    see benchmarks/results/app_memory.md for longer ones)."""
    bench = ROOT / "benchmarks" / "bench_app_memory.py"
    video = tmp_path / "4k.mp4"
    sys.path.insert(0, str(bench.parent))
    try:
        import bench_app_memory as B
    finally:
        sys.path.remove(str(bench.parent))
    B.make_input(video, (3840, 2160), 2.0)
    r = B.run_child(video, "i3d")
    assert r["delta_mb"] < 2500, r
    assert r["idle_mb"] > 100 and r["peak_mb"] >= r["idle_mb"]          # the measurement itself is sane
