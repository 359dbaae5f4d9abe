"""seds.experiments.report: aggregation, paired intervals and verdicts against hand computations."""
import math

import pytest

from seds.experiments.report import (aggregate, comparison_table, markdown_table, paired_interval,
                                     rsum_per_seed, verdict)


def _run(r1, best_epoch=None, stream="fused"):
    m = {"R@1": r1, "R@5": 2 * r1, "R@10": 3 * r1, "MedR": 2.0, "MeanR": 3.0}
    out = {"test": {stream: {"t2v": dict(m), "v2t": dict(m)}}}
    if best_epoch is not None:
        out["best_epoch"], out["epochs_trained"] = best_epoch, best_epoch + 5
    return out


def test_paired_t_interval_matches_a_hand_computation():
    # d = [1, 3, 4]: mean 8/3, sample sd sqrt(7/3) = 1.5275, t(0.975, 2) = 4.302653
    ci = paired_interval([10, 12, 14], [9, 9, 10])
    half = 4.302653 * math.sqrt(7 / 3) / math.sqrt(3)
    assert ci["diff"] == pytest.approx(8 / 3)
    assert ci["low"] == pytest.approx(8 / 3 - half, abs=1e-5) and ci["high"] == pytest.approx(8 / 3 + half, abs=1e-5)
    assert ci["n"] == 3 and ci["method"] == "paired t"
    assert verdict(ci) == "no significant difference"
    # 5 seeds, a consistent gain: d = [2, 3, 2, 4, 3], mean 2.8, sd sqrt(0.7), t(0.975, 4) = 2.776445
    ci = paired_interval([12, 13, 12, 14, 13], [10] * 5)
    half = 2.776445 * math.sqrt(0.7) / math.sqrt(5)
    assert ci["low"] == pytest.approx(2.8 - half, abs=1e-5) and verdict(ci) == "holds"
    assert verdict(paired_interval([10] * 5, [12, 13, 12, 14, 13])) == "does not hold"


def test_pairing_is_what_makes_the_difference_visible():
    # large seed-to-seed spread, tiny consistent gain: unpaired std hides it, the paired interval does not
    a, b = [10.5, 30.5, 50.5, 70.5, 90.5], [10, 30, 50, 70, 90]
    ci = paired_interval(a, b)
    assert ci["low"] == pytest.approx(0.5) and ci["high"] == pytest.approx(0.5)   # zero spread of d
    one = paired_interval([3.0], [1.0])
    assert one["diff"] == 2.0 and math.isnan(one["low"]) and verdict(one) == "one seed: no interval"
    with pytest.raises(ValueError):
        paired_interval([1, 2], [1, 2, 3])


def test_aggregate_reports_rsum_spread_and_epochs_to_best():
    runs = [_run(10, 4), _run(20, 6), _run(30, 8)]
    agg = aggregate(runs)
    assert rsum_per_seed(runs) == [120.0, 240.0, 360.0]          # (1 + 2 + 3) · R@1 · 2 directions
    assert agg["mean"]["rsum"] == pytest.approx(240.0) and agg["std"]["rsum"] == pytest.approx(120.0)
    assert agg["mean"]["best_epoch"] == 6 and agg["std"]["best_epoch"] == pytest.approx(2.0)
    table = markdown_table([("x", agg)])
    assert "epochs to best" in table and "6.0 ± 2.0 (of 11)" in table and "240.0 ± 120.0" in table
    # runs cached before convergence tracking existed: no epochs column value, no crash
    assert "| – |" in markdown_table([("old", aggregate([_run(10), _run(12)]))])


def test_comparison_table_names_the_reference_and_says_no_significant_difference():
    rows = [("cgaf", [300.0, 310.0, 320.0]), ("add-mlp", [299.0, 312.0, 318.0]), ("none", [200.0, 205.0, 210.0])]
    t = comparison_table("cgaf", rows)
    lines = t.splitlines()
    add = next(l for l in lines if l.startswith("| add-mlp"))
    none = next(l for l in lines if l.startswith("| none"))
    assert "no significant difference" in add and "-0.3" in add      # add-mlp − cgaf = (−1 + 2 − 2)/3
    assert "holds" in none and "-105.0" in none
    assert "paired t" in t
