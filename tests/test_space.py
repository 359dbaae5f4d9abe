"""The app as a Hugging Face Space builds and runs it: a fresh virtual environment with ``pip install -r
requirements.txt`` and nothing else (no rtmlib, no ``pip install .``), then ``python demo/app.py`` from the
repository root with the environment a Space sets (``SPACE_ID``, ``SYSTEM=spaces``, ``GRADIO_SERVER_NAME=0.0.0.0``,
the port through ``GRADIO_SERVER_PORT``; no ``SEDS_*`` variable), driven in a real browser (Debian's chromium):
a sentence → videos per encoder, a real How2Sign clip → sentences (MediaPipe + the RGB extractor in that
environment). Then the ``spaces`` package (ZeroGPU's decorator) is installed into the same environment and the app
must still start on CPU and answer through its ``@spaces.GPU``-decorated handlers.

The environment is built fresh in a temporary folder (pip's cache makes it ~2 min on a quiet 2-core machine); set
``SEDS_SPACE_VENV=<folder>`` to build it there once and reuse it while iterating.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from tests.test_app_browser import CHROME_ARGS, CHROMIUM, free_port  # noqa: E402 - after the skip above

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")]
ARTIFACTS = ROOT / "test-artifacts" / "space"
TIMEOUT = 240_000                    # ms: a shared 2-core CPU can be slow
REAL_CLIP = "--8pSDeC-fg_7-5-rgb_front.mp4"      # 2 s of How2Sign-mini (../shared, not in the repository)


def clean_env(**extra) -> dict:
    """This process's environment without anything that would leak the test's venv or the app's own settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SEDS_", "PYTEST", "GRADIO_SERVER")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def pip(venv: Path, *args: str, timeout: float = 1200) -> None:
    p = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args], capture_output=True, text=True,
                       env=clean_env(), timeout=timeout)
    assert p.returncode == 0, f"pip {' '.join(args)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"


def has_module(venv: Path, name: str) -> bool:
    p = subprocess.run([str(venv / "bin" / "python"), "-c",
                        f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is None)"],
                       env=clean_env(), cwd="/")
    return p.returncode == 0


@pytest.fixture(scope="module")
def space_venv(tmp_path_factory) -> Path:
    given = os.environ.get("SEDS_SPACE_VENV")
    venv = Path(given) if given else tmp_path_factory.mktemp("space") / "venv"
    if not (venv / "bin" / "python").exists():
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        # what a Space runs, nothing else; --no-compile: pip does not byte-compile every installed module (the
        # app's imports compile the ones it uses when it starts)
        pip(venv, "install", "-q", "--no-compile", "-r", str(ROOT / "requirements.txt"))
        print(f"fresh venv from requirements.txt: {time.monotonic() - t0:.0f} s")
    elif has_module(venv, "spaces"):       # a reused venv: back to requirements.txt alone
        pip(venv, "uninstall", "-y", "-q", "spaces")
    return venv


def start_space(venv: Path, folder: Path, timeout: float = 300):
    """``python demo/app.py`` as a Space starts it; → (process, URL on loopback, log file)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    port = free_port()
    env = clean_env(SPACE_ID="seds-test/seds-space", SYSTEM="spaces", SPACE_HOST="seds-test-seds-space.hf.space",
                    GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
                    HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TMPDIR=str(folder / "tmp"), PYTHONUNBUFFERED="1")
    log = folder / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "python"), "demo/app.py"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        text = log.read_text(errors="replace")
        m = re.search(r"Running on local URL:\s+http://[^:/\s]+:(\d+)", text)
        if m:
            assert int(m.group(1)) == port, f"the app ignored GRADIO_SERVER_PORT={port}:\n{text[-2000:]}"
            return proc, f"http://127.0.0.1:{port}", log
        if proc.poll() is not None:
            pytest.fail(f"the Space's app exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"the Space's app did not start in {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def example_sentence() -> str:
    """The sentence of the default gallery's first UI example (the app offers it as an example too)."""
    gallery = ROOT / "examples" / "gallery"
    first = json.loads((gallery / "gallery.json").read_text())["ui_examples"][0]
    meta = json.loads((gallery / "videos" / "metadata.json").read_text())
    return meta["meta"][meta["ids"].index(first)]["text"]


def text_and_video_queries(pw, url: str, clip: Path | None, shot: str) -> dict:
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(TIMEOUT)
        page.goto(url)
        page.wait_for_selector("#video-in")
        banner = page.locator("#seds-banner").inner_text()
        # a sentence → videos per encoder (the first example sentence of the default gallery)
        page.get_by_role("tab", name="Text → video").click()
        sentence = example_sentence()
        page.fill("#text-in textarea", sentence)
        t0 = time.monotonic()
        page.click("#t2v-run")
        page.wait_for_selector("#t2v-heatmap .js-plotly-plot")
        page.wait_for_function("document.querySelectorAll('#t2v-fused video, #t2v-fused img').length >= 1")
        text_s = time.monotonic() - t0
        captions = page.locator("#t2v-fused").inner_text()
        out = {"banner": banner, "sentence": sentence, "text_s": text_s, "captions": captions}
        if clip is not None:       # a real clip → sentences: decode, MediaPipe, RGB, embed, search in this venv
            page.get_by_role("tab", name="Video → text").click()
            page.set_input_files("#video-in input[type=file]", str(clip))
            page.wait_for_function("/New video|searched this file before/.test("
                                   "document.querySelector('#v2t-status').innerText)")
            t0 = time.monotonic()
            page.click("#v2t-run")
            page.wait_for_selector("#v2t-heatmap .js-plotly-plot")
            page.wait_for_function("document.querySelectorAll('#v2t-fused [role=row]').length >= 2")
            out["video_s"] = time.monotonic() - t0
            out["v2t_status"] = page.locator("#v2t-status").inner_text()
            out["v2t_rows"] = page.locator("#v2t-fused [role=row]").count() - 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
        return out
    finally:
        browser.close()


def test_space_from_requirements_alone_answers_in_a_browser_with_and_without_spaces(space_venv, tmp_path):
    from playwright.sync_api import sync_playwright

    venv = space_venv
    assert not has_module(venv, "rtmlib") and not has_module(venv, "spaces") and not has_module(venv, "seds")
    clip = ROOT.parent / "shared" / "data" / "how2sign-mini" / "clips" / REAL_CLIP
    clip = clip if clip.is_file() else None           # without ../shared: the text query only
    with sync_playwright() as pw:
        for phase in ("requirements_only", "with_spaces_package"):
            if phase == "with_spaces_package":      # ZeroGPU's package: on CPU its decorator must let the app
                pip(venv, "install", "-q", "--no-compile", "spaces")   # start and its decorated handlers answer
                assert has_module(venv, "spaces")
            proc, url, log = start_space(venv, tmp_path / phase)
            try:
                got = text_and_video_queries(pw, url, clip, f"space_{phase}")
            finally:
                stop(proc)
            text = log.read_text(errors="replace")
            # Gradio on a Space starts a hot-reload watcher thread that needs `spaces` (which Spaces preinstall):
            # without it that thread alone fails at start and the server serves on. With `spaces`, event loops of
            # that watcher are garbage-collected with closed pipes ("Exception ignored in: ... BaseEventLoop.__del__",
            # printed, not raised). Any other traceback is a failure.
            watcher = text.count("`spaces` package is required to run hot-reloading in Spaces")
            ignored = text.count("Exception ignored in: <function BaseEventLoop.__del__")
            assert watcher == (phase == "requirements_only"), text[-3000:]
            assert text.count("Traceback") == watcher + ignored, text[-3000:]
            assert "mediapipe" in got["banner"].lower(), got["banner"]      # no rtmlib: MediaPipe for live queries
            assert "#1" in got["captions"], got["captions"]
            if clip is not None:
                assert got["v2t_rows"] >= 1 and "⚠️" not in got["v2t_status"], got
            print(f"Space ({phase}): text query {got['text_s']:.1f} s"
                  + (f", real clip {got['video_s']:.1f} s" if clip is not None else ", no real clip (../shared absent)"))
