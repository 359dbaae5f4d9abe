"""The How2Sign-mini plumbing set of benchmarks/bench_recordings.py: consecutive val clips of one source video are
placed at their realigned start seconds (../shared/data/annotations), black frames without a signer between them,
the truth is where each clip's frames lie. Skips when ../shared is absent."""
from __future__ import annotations

import importlib.util

import pytest

from seds.extract.video import read_video

from conftest import REPO

spec = importlib.util.spec_from_file_location("bench_recordings", REPO / "benchmarks" / "bench_recordings.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
GROUPS, REASON = bench.how2sign_mini_groups()
pytestmark = pytest.mark.skipif(not GROUPS, reason=REASON or "no groups")


def test_groups_are_sources_with_realigned_times_in_order():
    assert all(len(g) >= 2 for g in GROUPS.values())
    for vid, g in GROUPS.items():
        starts = [c["start"] for c in g]
        assert starts == sorted(starts) and all(c["end"] > c["start"] and c["text"] for c in g)
        assert all(c["id"].startswith(vid + "_") and c["file"].is_file() for c in g)


@pytest.mark.slow
def test_clips_land_at_their_realigned_start_with_black_between(tmp_path):
    clips = min(GROUPS.values(), key=len)[:3]
    out = tmp_path / "rec.mp4"
    placed = bench.compose_recording(clips, out)
    v = read_video(out, fps=24.0)
    mean = v.frames.reshape(len(v.frames), -1).mean(1)
    assert len(placed) == 3
    for c, p in zip(clips, placed):
        assert p.start_s == pytest.approx(round(c["start"] * 24) / 24) and p.end_s > p.start_s
        a, b = int(round(p.start_s * 24)), int(round(p.end_s * 24))
        assert mean[a + 1:b - 1].min() > 20          # the clip's frames (a real signer on a lit background)
    for p, q in zip(placed, placed[1:]):
        assert p.end_s <= q.start_s + 1e-9
    first = int(round(placed[0].start_s * 24))
    assert first > 10 and mean[:first - 1].max() < 3   # before the first clip: black, nobody
    assert len(v.frames) == pytest.approx(round(placed[-1].end_s * 24) + 24, abs=2)
