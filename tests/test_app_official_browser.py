"""The app on the authors' model, in a headless browser (chromium via playwright, as tests/test_app_browser.py):
a converted random-weight `official` checkpoint of reduced size (`python -m seds.convert official`) and a gallery
built by `python -m seds.index build` from a store imported from files in the authors' formats
(tests/official_app_assets.py). Checks: the banner names the checkpoint (the authors' weights, official variant) and
says which extractors match its training features (RTMPose cannot run here → MediaPipe, no BSL-1K weights →
Kinetics-400 I3D: both substitutes); video → text and text → video give the three stream columns and the Why
heatmaps. Random weights and synthetic features: the rankings mean nothing. Screenshots: test-artifacts/app-official/.
"""
from __future__ import annotations

import os

import pytest

from tests.official_app_assets import MINI
from tests.test_app_browser import CHROMIUM, ROOT, SVG_TEXT, free_port, load_demo_app, text_query, video_query
from tests.test_app_browser import page, pw  # noqa: F401 - the browser fixtures, on this module's server

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
ARTIFACTS = ROOT / "test-artifacts" / "app-official"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")]


@pytest.fixture(scope="module")
def server(official_app):
    import seds.retrieval.engine

    demo_app = load_demo_app("seds_demo_app_official")
    from demo.backend import AppBackend, load_app_config

    a = official_app
    with pytest.MonkeyPatch.context() as mp:
        if not a.videos:
            pytest.skip("How2Sign-mini clips (../shared) are needed as the gallery's video files")
        # deterministic: whether rtmlib's ONNX files happen to be cached on this machine must not matter
        mp.setattr(seds.retrieval.engine, "probe_pose_backend", lambda name: (None, "no RTMPose ONNX files here"))
        cfg = load_app_config(ROOT / "configs" / "demo.yaml",
                              {"port": free_port(), "host": "127.0.0.1", "share": False, "device": "cpu",
                               "checkpoint": str(a.checkpoint), "gallery": str(a.gallery),
                               "media_root": str(MINI.resolve())}, env={})      # the gallery's video files
        assert cfg.pose_backend == "auto" and not cfg.i3d_weights
        be = AppBackend(cfg)
    app = demo_app.launch(be, cfg, prevent_thread_lock=True, quiet=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield f"http://127.0.0.1:{cfg.port}", be, a
    app.close()
    be.close()


def test_banner_names_the_checkpoint_and_which_extractors_match(page, server):
    _, be, a = server
    banner = page.locator("#seds-banner").inner_text()
    assert f"checkpoint: {a.checkpoint.name}" in banner
    assert "the authors' released weights" in banner and "official variant" in banner and "how2sign" in banner
    assert "pose: MediaPipe" in banner and "substitute for RTMPose" in banner
    assert "RGB: I3D, Kinetics-400" in banner and "substitute for I3D, BSL-1K" in banner
    assert "not meaningful" not in banner
    page.get_by_text("What is loaded", exact=True).first.click()
    details = page.locator("#seds-details").inner_text()
    assert "h2s_random_official.bin" in details and "model.variant official" in details
    assert "no BSL-1K weights given: --i3d-weights" in details and "ONNX" in details
    page.screenshot(path=str(ARTIFACTS / "0_banner.png"), full_page=True)


def test_video_to_text_three_columns_and_heatmaps(page, server):
    _, be, a = server
    video_query(page, be, next(iter(a.videos.values())))
    titles = page.eval_on_selector_all("#v2t-heatmap .annotation-text", SVG_TEXT)
    assert "Pose only" in titles and "RGB only" in titles and "Fused" in titles
    assert page.locator("#v2t-heatmap .js-plotly-plot .heatmaplayer").count() >= 3
    ticks = page.eval_on_selector_all("#v2t-heatmap .xtick", SVG_TEXT)
    assert "[SOT]" in ticks and "[EOT]" in ticks            # the CLIP BPE tokens the official text tower scores
    assert "gallery cache" in page.locator("#v2t-status").inner_text()
    page.screenshot(path=str(ARTIFACTS / "1_video_to_text.png"), full_page=True)


def test_text_to_video_three_columns_and_heatmaps(page, server):
    _, be, a = server
    text_query(page, be, be.gallery.videos.meta(next(iter(a.videos)))["text"])
    titles = page.eval_on_selector_all("#t2v-heatmap .annotation-text", SVG_TEXT)
    assert "Pose only" in titles and "RGB only" in titles and "Fused" in titles
    assert "#1" in page.locator("#t2v-fused").inner_text()
    page.screenshot(path=str(ARTIFACTS / "2_text_to_video.png"), full_page=True)
