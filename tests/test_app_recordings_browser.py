"""The "Find in a recording" tab in a real headless browser (Debian's chromium driven by playwright; no browser
download): with the default demo assets (checkpoints/demo + examples/recordings) the example recording is picked on
first visit; typing one of its sentences and pressing Find draws the timeline (one curve per stream, the top spans
as bands #1 …, the true span dashed), the span table, the span preview and its heatmap, and the sentence's spans in
every indexed recording; an audio-only upload gets its message and no timeline. The screenshot of the tab goes to
benchmarks/results/recordings_tab.png."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from test_app_browser import CHROME_ARGS, CHROMIUM, SVG_TEXT, free_port, load_demo_app

ROOT = Path(__file__).resolve().parents[1]
SHOT = ROOT / "benchmarks" / "results" / "recordings_tab.png"
EXAMPLE = json.loads((ROOT / "examples" / "recordings" / "recordings.json").read_text())["recordings"][0]
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")]
TIMEOUT = 120_000


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    from demo.backend import AppBackend, load_app_config

    demo_app = load_demo_app("seds_demo_app_recordings")
    cfg = load_app_config(ROOT / "configs" / "demo.yaml", {"port": free_port(), "host": "127.0.0.1", "share": False,
                                                          "checkpoint": str(ROOT / "checkpoints" / "demo"),
                                                          "gallery": str(ROOT / "examples" / "gallery")}, env={})
    be = AppBackend(cfg)
    app = demo_app.launch(be, cfg, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(TIMEOUT)
            pg.goto(f"http://127.0.0.1:{cfg.port}")
            pg.get_by_role("tab", name="Find in a recording").click()
            pg.wait_for_selector("#rec-text textarea")
            yield pg
            browser.close()
    finally:
        app.close()
        be.close()


def test_type_a_sentence_see_timeline_spans_preview_and_heatmap(page):
    assert "at most" in page.locator("#rec-limits").inner_text() and "min" in page.locator("#rec-limits").inner_text()
    sentence = EXAMPLE["sentences"][4]["text"]
    page.fill("#rec-text textarea", sentence)
    page.click("#rec-run")
    page.wait_for_selector("#rec-timeline .js-plotly-plot")
    page.wait_for_function("document.querySelectorAll('#rec-spans [role=row]').length >= 4")
    legend = page.eval_on_selector_all("#rec-timeline .legendtext", SVG_TEXT)
    assert "Pose only" in legend and "RGB only" in legend and "Fused" in legend and "no signer" in legend
    marks = page.eval_on_selector_all("#rec-timeline .annotation-text", SVG_TEXT)
    assert "#1" in marks and "true span" in marks
    assert page.locator("#rec-timeline .shapelayer path").count() >= 3      # spans, no-signer part, truth
    assert "spans of 1–15 s per stream" in page.locator("#rec-status").inner_text()
    page.wait_for_selector("#rec-preview video[src]")
    page.wait_for_selector("#rec-heatmap .js-plotly-plot .heatmaplayer")
    assert "clip × word similarity" in page.eval_on_selector_all("#rec-heatmap .gtitle", SVG_TEXT)
    page.wait_for_function("document.querySelectorAll('#rec-all [role=row]').length >= 2")
    assert EXAMPLE["title"] in page.locator("#rec-all").inner_text()
    page.locator("#rec-timeline").scroll_into_view_if_needed()
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOT), full_page=True)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is needed to make an audio-only file")
def test_audio_only_upload_gets_a_message(page, tmp_path):
    audio = tmp_path / "talk.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
                    "-c:a", "aac", str(audio)], check=True)
    page.set_input_files("#rec-upload input[type=file]", str(audio))
    page.wait_for_function("document.querySelector('#rec-status').innerText.includes('⚠️')")
    assert "audio" in page.locator("#rec-status").inner_text()
    assert "talk" not in page.locator("#rec-status").inner_text()
