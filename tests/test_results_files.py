"""The committed results files (issue 12): every JSON under ``benchmarks/results`` that holds retrieval metrics
says which tie convention computed them, and it is the honest one; no table is left marked stale."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
METRIC_KEYS = ('"R@1"', '_R@1"', '"rsum"')


def metric_files() -> list[Path]:
    return sorted(p for p in RESULTS.rglob("*.json") if any(k in p.read_text() for k in METRIC_KEYS))


def declared_ties(doc: dict) -> list[str]:
    """The tie conventions a results document declares: top-level ``ties``, ``metrics.ties``, or one
    ``ties`` per entry of ``metrics`` (files that mix evaluation protocols, e.g. the baselines)."""
    found = [doc["ties"]] if "ties" in doc else []
    m = doc.get("metrics")
    if isinstance(m, dict):
        if "ties" in m:
            found.append(m["ties"])
        found += [v["ties"] for v in m.values() if isinstance(v, dict) and "ties" in v]
    return found


def test_there_are_results_files_to_check():
    assert len(metric_files()) >= 10, [p.name for p in metric_files()]


@pytest.mark.parametrize("path", metric_files(), ids=lambda p: str(p.relative_to(RESULTS)))
def test_results_json_declares_honest_ties(path):
    ties = declared_ties(json.loads(path.read_text()))
    assert ties, f"{path} holds retrieval metrics but does not say which tie convention computed them"
    assert set(ties) <= {"expected", "pessimistic"}, f"{path}: computed with ties {ties}"


def test_declared_ties_reads_every_layout():
    assert declared_ties({"ties": "expected"}) == ["expected"]
    assert declared_ties({"metrics": {"protocol": "sentence_ids", "ties": "optimistic"}}) == ["optimistic"]
    assert declared_ties({"metrics": {"a": {"ties": "expected"}, "b": {"ties": "optimistic"}}}) == ["expected",
                                                                                                    "optimistic"]
    assert declared_ties({"command": "x", "rows": {}}) == []


def test_no_table_is_marked_stale():
    marks = ("Stale metrics", "**stale:")   # the banner put on old tables; claims.md's verdict for a stale study
    stale = [str(p.relative_to(RESULTS)) for p in RESULTS.rglob("*.md") if any(m in p.read_text() for m in marks)]
    assert not stale, f"tables still computed with the old metrics or recipe: {stale}"
