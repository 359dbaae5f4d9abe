"""demo/recordings_tab.py without a browser: the example recording of examples/recordings finds a sentence signed in
it at the right time (its true span is known), the timeline figure carries one curve per stream and the top spans,
the heatmap is the chosen span's clip × word matrix, an upload of the example file is recognised by its SHA-256
(no extraction), and bad input gets a clear message naming nothing of the upload: over the limit, audio only,
truncated, empty text, a recording without a signer ("no signing found"), a sentence longer than any span.
The browser flow: tests/test_app_recordings_browser.py (slow)."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from demo.backend import AppBackend, load_app_config
from demo.recordings_tab import (DEFAULT_FOLDER, UPLOAD_LABEL, RecordingsService, span_choices, span_rows,
                                 status_text, timeline_figure)
from demo.backend import STREAM_TITLES
from seds.retrieval.engine import QueryError
from seds.retrieval.localise import NO_SIGNING, NOTE_AT_MAX_LENGTH, LocaliseConfig

from conftest import REPO
from test_localise import iou
from test_recording import StubPose, StubRGB, _wav, write_video

EXAMPLE = json.loads((DEFAULT_FOLDER / "recordings.json").read_text())["recordings"][0]
VIDEO = DEFAULT_FOLDER / EXAMPLE["video"]


@pytest.fixture(scope="module")
def be():
    cfg = load_app_config(REPO / "configs" / "demo.yaml", {"checkpoint": str(REPO / "checkpoints" / "demo"),
                                                            "gallery": str(REPO / "examples" / "gallery")}, env={})
    b = AppBackend(cfg)
    yield b
    b.close()


@pytest.fixture(scope="module")
def svc(be):
    return RecordingsService(be, folder=DEFAULT_FOLDER, max_minutes=1.0, pose_estimator=StubPose(),
                             rgb_extractor=StubRGB())


def test_example_recording_is_small_and_complete():
    size = sum(p.stat().st_size for p in DEFAULT_FOLDER.rglob("*") if p.is_file())
    assert size < 2 * 2**20, size
    assert {"index", "features", "videos", "recordings.json"} <= {p.name for p in DEFAULT_FOLDER.iterdir()}
    assert len(EXAMPLE["sentences"]) >= 5 and EXAMPLE["duration_s"] > 30


def test_sentence_found_at_its_time_with_timeline_and_heatmap(svc):
    rid = svc.choices()[0][1]
    rec = svc.gallery(rid)
    s = EXAMPLE["sentences"][4]
    loc = svc.find(rec, s["text"])
    best = loc.spans["fused"][0]
    assert loc.status == "ok" and best.exact
    assert iou(best.start_s, best.end_s, s["start_s"], s["end_s"]) >= 0.5, (best, s)
    fig = timeline_figure(loc, rec, s["text"])
    names = {t.name for t in fig.data}
    assert {STREAM_TITLES[x] for x in ("pose", "rgb", "fused")} <= names and "no signer" in names
    curves = [t for t in fig.data if t.name == STREAM_TITLES["fused"]][0]
    assert len(curves.x) == rec.timeline.num_windows and np.nanmax(np.asarray(curves.y, float)) >= best.score - 0.2
    bands = [sh for sh in fig.layout.shapes if sh.x0 == best.start_s and sh.x1 == best.end_s]
    assert bands and any(sh.x0 == s["start_s"] and sh.line.dash == "dash" for sh in fig.layout.shapes)  # truth
    rows = span_rows(loc, svc.be.streams)
    assert len(rows) == sum(len(v) for v in loc.spans.values()) and span_choices(loc, svc.be.streams)[0][1] == "fused:0"
    ex = svc.explanation(rec, s["text"], best.first, best.stop)
    n_words = len(s["text"].split())
    assert ex.matrices["fused"].shape[1] == n_words and ex.matrices["fused"].shape[0] >= 2
    assert ex.scores["fused"] == pytest.approx(best.score, abs=1e-4)      # the heatmap is the span's exact score
    assert ex.times[0] >= best.start_s and ex.times[-1] <= best.end_s
    everywhere = svc.search_all(s["text"])
    assert everywhere and everywhere[0][1] == EXAMPLE["title"]
    preview = svc.preview(rec, best.start_s, best.end_s)
    assert preview and preview.endswith(".webm")


def test_upload_of_the_example_file_uses_its_stored_features(svc, tmp_path):
    copy = tmp_path / "my holiday.webm"
    shutil.copy(VIDEO, copy)
    assert "gallery recordings" in svc.plan(copy)
    rec = svc.upload(copy)
    assert rec.key.startswith("gallery:") and rec.features is not None


def test_bad_input_gets_clear_messages(be, svc, tmp_path):
    short = RecordingsService(be, folder=DEFAULT_FOLDER, max_minutes=0.2, pose_estimator=StubPose(),
                              rgb_extractor=StubRGB())
    secret = tmp_path / "alice_private_interview.webm"
    shutil.copy(VIDEO, secret)
    with pytest.raises(QueryError, match=r"0.6 min long; recordings of at most 0.2 min") as e:
        short.plan(secret)
    with pytest.raises(QueryError, match=r"at most 0.2 min"):
        short.upload(secret)
    with pytest.raises(QueryError, match="audio-only") as e2:
        svc.upload(_wav(tmp_path / "alice_voice.wav", seconds=2.0))
    if shutil.which("ffmpeg"):
        full = write_video(tmp_path / "whole.avi", 96)
        mp4 = tmp_path / "alice_cut.mp4"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(full), "-c:v", "mpeg4", str(mp4)], check=True)
        data = mp4.read_bytes()
        mp4.write_bytes(data[:len(data) // 2])
        with pytest.raises(QueryError) as e3:
            svc.upload(mp4)
        assert "cannot be used as a video" in str(e3.value) and "alice" not in str(e3.value)
    for err in (e, e2):
        assert "alice" not in str(err.value)
    with pytest.raises(QueryError, match="Type a sentence"):
        svc.check_text("   ")
    with pytest.raises(QueryError, match="Upload a recording"):
        svc.upload(None)


def test_recording_without_a_signer_says_no_signing_found(svc, tmp_path):
    dark = write_video(tmp_path / "bob_empty_room.avi", 72, dark=set(range(72)))
    assert "New recording" in svc.plan(dark)
    rec = svc.upload(dark)
    assert rec.label == UPLOAD_LABEL and rec.features.meta["no_signer"] and "bob" not in json.dumps(rec.features.meta)
    loc = svc.find(rec, EXAMPLE["sentences"][0]["text"])
    assert loc.status == NO_SIGNING and not any(loc.spans.values())
    assert "No signing found" in status_text(loc, rec, svc.cfg)
    assert svc.upload(dark) is not rec and "a moment ago" in svc.plan(dark)     # extracted once, remembered


def test_sentence_longer_than_any_span_is_said(be):
    one = RecordingsService(be, folder=DEFAULT_FOLDER, cfg=LocaliseConfig(min_span_s=1.0, max_span_s=1.0, rescore=0))
    rec = one.gallery(one.choices()[0][1])
    loc = one.find(rec, EXAMPLE["sentences"][1]["text"])
    assert NOTE_AT_MAX_LENGTH in loc.notes
    assert "longer than any span" in status_text(loc, rec, one.cfg)
