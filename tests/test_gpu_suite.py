"""`bash benchmarks/gpu_suite.sh` in its CPU mode (tiny sizes): every section runs and lands in the table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_runs_in_cpu_tiny_mode(tmp_path, shared_data):
    out = tmp_path / "suite"
    p = subprocess.run(["bash", "benchmarks/gpu_suite.sh", "--cpu-tiny", "--out", str(out)], cwd=REPO,
                       env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    md = out.with_suffix(".md").read_text()
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["mode"] == "cpu-tiny" and "FAILED" not in md
    sec = doc["sections"]
    assert set(sec) == {"train step, eager", "train step, torch.compile", "I3D windows/s", "pose backend on GPU",
                        "app, 5-s clip end to end", "index query", "train step, official, one graph",
                        "train step, official, gradient cache"}
    assert sec["train step, eager"]["ms_per_step"] > 0
    assert sec["train step, official, one graph"]["ms_per_step"] > 0
    assert "in chunks of 2" in sec["train step, official, gradient cache"]["setting"]
    assert sec["I3D windows/s"]["windows_per_s"] > 0
    assert sec["app, 5-s clip end to end"]["seconds"] > 0
    assert "ms/query" in sec["index query"]["summary"]
    for name in sec:
        assert f"| {name} |" in md
    # the sub-benchmarks wrote beside the table, not over the committed CPU results
    assert out.with_name("suite_app_latency.json").is_file() and out.with_name("suite_index.json").is_file()
