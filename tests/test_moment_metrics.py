"""seds.moment_metrics against naive references: every tie order enumerated, frames labelled one by one.

Negative control (planted by hand once): breaking ties optimistically (``a + 1`` for the first hit) fails
``test_ties_are_expected_over_every_order``."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from seds.moment_metrics import (MAP_THRESHOLDS, alignment_metrics, expected_first_hit, iou_1d, moment_metrics)


def naive_first_hit(scores, hit):
    """Average over every order consistent with the scores (ties permuted)."""
    n = len(scores)
    tops, invs = [], []
    for perm in itertools.permutations(range(n)):
        s = [scores[i] for i in perm]
        if any(s[i] < s[i + 1] for i in range(n - 1)):
            continue
        ranks = [r + 1 for r, i in enumerate(perm) if hit[i]]
        tops.append(1.0 if ranks and ranks[0] == 1 else 0.0)
        invs.append(1.0 / ranks[0] if ranks else 0.0)
    return np.mean(tops), np.mean(invs)


@pytest.mark.parametrize("seed", range(12))
def test_ties_are_expected_over_every_order(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    scores = rng.integers(0, 3, n).astype(float)
    hit = rng.random(n) < 0.4
    assert expected_first_hit(scores, hit) == pytest.approx(naive_first_hit(scores, hit), abs=1e-12)


def test_moment_metrics_by_hand():
    gts = np.array([[10.0, 20.0], [0.0, 4.0]])
    preds = [np.array([[10.0, 20.0], [0.0, 1.0]]),          # exact at rank 1
             np.array([[5.0, 6.0], [0.0, 3.0]])]             # IoU 0.75 at rank 2
    scores = [np.array([0.9, 0.1]), np.array([0.5, 0.4])]
    m = moment_metrics(preds, scores, gts)
    assert m["R1@0.5"] == 50 and m["R1@0.7"] == 50
    ap2 = np.mean([0.5 if th <= 0.75 else 0.0 for th in MAP_THRESHOLDS])
    assert m["mAP"] == pytest.approx(100 * (1.0 + ap2) / 2)
    # a constant scorer over one hit among 4: R1 = 1/4, AP = E[1/rank] = (1 + 1/2 + 1/3 + 1/4) / 4
    m = moment_metrics([np.array([[0, 1], [2, 3], [10, 20], [4, 5]])], [np.zeros(4)], np.array([[10, 20]]))
    assert m["R1@0.5"] == pytest.approx(25.0) and m["mAP"] == pytest.approx(100 * (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert iou_1d(np.array([[0, 2]]), np.array([1, 3]))[0] == pytest.approx(1 / 3)


def test_alignment_metrics_match_a_frame_by_frame_reference():
    gts = np.array([[1.0, 3.0], [4.0, 6.5], [8.0, 9.0]])
    pred = np.array([[1.2, 3.1], [3.0, 5.0], [np.nan, np.nan]])
    scores = np.array([0.3, 0.6, 0.0])
    m = alignment_metrics(pred, scores, gts, duration_s=10.0, fps=10.0)
    ious = [iou_1d(pred[i][None], gts[i])[0] for i in range(2)]
    for th in (0.1, 0.25, 0.5):
        tp = sum(i >= th for i in ious)
        p, r = tp / 2, tp / 3
        assert m[f"F1@{th}"] == pytest.approx(100 * (2 * p * r / (p + r) if tp else 0.0))
    right = 0
    for f in range(100):
        t = (f + 0.5) / 10
        truth = next((i for i, (s, e) in enumerate(gts) if s <= t < e), -1)
        cover = [i for i in range(2) if pred[i, 0] <= t < pred[i, 1]]
        label = max(cover, key=lambda i: scores[i]) if cover else -1
        right += label == truth
    assert m["frame_acc"] == pytest.approx(right)
    assert m["start_offset_s"] == pytest.approx((0.2 + 1.0) / 2) and m["end_offset_s"] == pytest.approx((0.1 + 1.5) / 2)
