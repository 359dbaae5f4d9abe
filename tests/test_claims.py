"""seds.experiments.claims: the paper-claims table from study JSONs (paired intervals and verdicts)."""
import json

import pytest

from seds.experiments import ablate
from seds.experiments.claims import ALPHA, PAIRWISE, evaluate_claims, main


def _metrics(rsum):
    m = {"R@1": rsum / 6, "R@5": rsum / 6, "R@10": rsum / 6, "MedR": 1.0, "MeanR": 1.0}
    return {"t2v": dict(m), "v2t": dict(m)}


def _doc(study, per_variant):
    return {"study": study, "seeds": [0, 1, 2], "complete": True, "command": f"python -m seds.experiments.ablate --study {study}",
            "metrics": {"protocol": "sentence_ids", "ties": "expected"},
            "variants": [{"variant": v, "per_seed": [{"seed": s, "test": _metrics(x)} for s, x in enumerate(xs)]}
                         for v, xs in per_variant.items()]}


def test_claim_variants_exist_in_the_studies():
    for _, study, a, b in PAIRWISE:
        names = {v.name for v in ablate.STUDIES[study].variants}
        assert a in names and b in names, (study, a, b)
    assert ALPHA[2] in {v.name for v in ablate.STUDIES[ALPHA[1]].variants}


def test_verdicts_follow_the_paired_intervals(tmp_path):
    docs = {
        "streams": _doc("streams", {"pose + RGB (CGAF)": [300, 320, 340], "pose only": [299, 321, 338],
                                    "RGB only": [100, 110, 120]}),
        "fusion": _doc("fusion", {"cgaf": [300, 320, 340], "add-mlp": [310, 331, 349],
                                  "concat-mlp": [290, 330, 330], "concat-transformer": [300, 320, 340],
                                  "cross-attention": [200, 250, 260]}),
        "alpha": _doc("alpha", {"α=0.2": [200, 210, 220], "α=0.8": [296, 317, 337], "α=1.0": [300, 320, 340]}),
    }
    rows = {r["claim"]: r for r in evaluate_claims(docs)}
    assert rows["fused (pose + RGB) > pose only"]["verdict"] == "no significant difference"
    assert rows["fused (pose + RGB) > RGB only"]["verdict"] == "holds"
    r = rows["CGAF ≥ Add-MLP"]        # add-mlp better by 10, 11, 9 on the same seeds: significant
    assert r["verdict"] == "does not hold" and r["diff"] == pytest.approx(-10.0) and r["n"] == 3
    assert rows["CGAF ≥ Cross-Attention"]["verdict"] == "holds"
    assert rows["β = 0.4 ≥ β = 0 (Pose-RGB matching helps)"]["verdict"] == "not run"
    a = rows[ALPHA[0]]                # α=0.8 is 4, 3, 3 below α=1.0: a consistent gap → does not hold
    assert a["b"] == "α=1.0" and a["verdict"] == "does not hold"
    for name, doc in docs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    assert main(["--results", str(tmp_path)]) == 0
    md = (tmp_path / "claims.md").read_text()
    assert "paired t" in md and "no significant difference" in md and "not run (`alignment`)" in md
    assert json.loads((tmp_path / "claims.json").read_text())["claims"][0]["seeds"] == [0, 1, 2]


def test_no_results_is_a_clear_error(tmp_path, capsys):
    assert main(["--results", str(tmp_path)]) == 1
    assert "no study results" in capsys.readouterr().err


def test_a_stale_study_is_listed_but_not_judged(tmp_path):
    """A study JSON without ``metrics`` predates the honest metrics and the convergence recipe: its claims say
    so instead of a verdict, while fresh studies are judged."""
    fresh = _doc("streams", {"pose + RGB (CGAF)": [300, 320, 340], "pose only": [200, 210, 220],
                             "RGB only": [100, 110, 120]})
    stale = _doc("fusion", {"cgaf": [300, 320, 340], "add-mlp": [100, 100, 100], "concat-mlp": [1, 2, 3],
                            "concat-transformer": [1, 2, 3], "cross-attention": [1, 2, 3]})
    del stale["metrics"]
    (tmp_path / "streams.json").write_text(json.dumps(fresh))
    (tmp_path / "fusion.json").write_text(json.dumps(stale))
    assert main(["--results", str(tmp_path)]) == 0
    rows = {r["claim"]: r for r in json.loads((tmp_path / "claims.json").read_text())["claims"]}
    assert rows["fused (pose + RGB) > pose only"]["verdict"] == "holds"
    assert rows["CGAF ≥ Add-MLP"]["verdict"] == "stale" and "ci" not in rows["CGAF ≥ Add-MLP"]
    md = (tmp_path / "claims.md").read_text()
    assert "not judged: the table predates the honest metrics (`fusion`)" in md
