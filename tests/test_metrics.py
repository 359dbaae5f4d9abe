"""seds.metrics against a brute-force reference that sorts every query's row in Python."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from seds.metrics import (format_table, metrics_from_ranks, query_ranks, relevance_from_labels,
                          retrieval_metrics)


def brute_ranks(scores: np.ndarray, rel: np.ndarray, queries: str, ties: str) -> list[int]:
    """For each query: sort its candidates by score (descending), placing relevant items first among
    equal scores (optimistic) or last (pessimistic); the rank is the 1-based position of the first
    relevant item. Everything before it is non-relevant, so this equals 1 + #non-relevant above (or
    tied with, pessimistic) the best relevant score."""
    if queries == "texts":
        scores, rel = scores.T, rel.T
    out = []
    for q in range(scores.shape[0]):
        cands = [(float(scores[q, i]), bool(rel[q, i])) for i in range(scores.shape[1])]
        if ties == "optimistic":
            cands.sort(key=lambda c: (-c[0], not c[1]))
        else:
            cands.sort(key=lambda c: (-c[0], c[1]))
        out.append(next(pos for pos, c in enumerate(cands, start=1) if c[1]))
    return out


def brute_metrics(ranks: list[int]) -> dict[str, float]:
    n = len(ranks)
    out = {f"R@{k}": 100.0 * sum(1 for r in ranks if r <= k) / n for k in (1, 5, 10)}
    srt = sorted(ranks)
    out["MedR"] = srt[n // 2] if n % 2 else 0.5 * (srt[n // 2 - 1] + srt[n // 2])
    out["MeanR"] = sum(ranks) / n
    return out


def check_against_brute(scores: np.ndarray, rel: np.ndarray | None, **kw) -> None:
    rel_dense = np.eye(*scores.shape, dtype=bool) if rel is None else rel
    for ties in ("optimistic", "pessimistic"):
        res = retrieval_metrics(scores, rel, ties=ties, **kw)
        for direction, queries in (("t2v", "texts"), ("v2t", "videos")):
            ref_ranks = brute_ranks(scores, rel_dense, queries, ties)
            got_ranks = query_ranks(scores, rel, queries=queries, ties=ties, **kw)
            assert got_ranks.tolist() == ref_ranks, (ties, direction)
            ref = brute_metrics(ref_ranks)
            for key, val in ref.items():
                assert res[direction][key] == pytest.approx(val), (ties, direction, key)
            assert res[direction]["n_queries"] == len(ref_ranks)


def random_relevance(rng, nv, nt, p=0.15) -> np.ndarray:
    rel = rng.random((nv, nt)) < p
    rel[rng.integers(0, nv, nt), np.arange(nt)] = True     # every text has a video
    rel[np.arange(nv), rng.integers(0, nt, nv)] = True     # every video has a text
    return rel


@pytest.mark.parametrize("seed", range(5))
def test_random_identity(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    check_against_brute(rng.normal(size=(n, n)).astype(np.float32), None)


@pytest.mark.parametrize("seed", range(5))
def test_random_multi_relevant_rectangular(seed):
    rng = np.random.default_rng(100 + seed)
    nv, nt = int(rng.integers(2, 30)), int(rng.integers(2, 30))
    rel = random_relevance(rng, nv, nt)
    check_against_brute(rng.normal(size=(nv, nt)), rel)
    # coarse integer scores: ties everywhere, several positives per query
    check_against_brute(rng.integers(0, 3, size=(nv, nt)).astype(np.float32), rel)


def test_chunking_and_input_types_agree():
    rng = np.random.default_rng(7)
    nv, nt = 23, 31
    s = rng.integers(0, 4, size=(nv, nt)).astype(np.float16)
    rel = random_relevance(rng, nv, nt)
    ref = retrieval_metrics(s, rel)
    assert retrieval_metrics(torch.from_numpy(s), torch.from_numpy(rel), chunk_size=3) == ref
    assert retrieval_metrics(s.astype(np.float64), rel.astype(np.int64), chunk_size=1) == ref
    check_against_brute(s.astype(np.float32), rel, chunk_size=4)


def test_all_equal_scores():
    n = 12
    s = np.zeros((n, n), dtype=np.float32)
    opt = retrieval_metrics(s)
    pes = retrieval_metrics(s, ties="pessimistic")
    for d in ("t2v", "v2t"):
        assert opt[d]["R@1"] == 100.0 and opt[d]["MedR"] == 1 and opt[d]["n_queries"] == n
        # pessimistic: all n-1 non-relevant items tie with the positive
        assert pes[d]["R@10"] == 0.0 and pes[d]["MedR"] == n and pes[d]["n_queries"] == n
    check_against_brute(s, None)


def test_block_ties():
    # 3 blocks of 4 videos/texts; inside a block every score is 1, outside 0
    blocks = np.repeat(np.arange(3), 4)
    s = (blocks[:, None] == blocks[None, :]).astype(np.float32)
    opt, pes = retrieval_metrics(s), retrieval_metrics(s, ties="pessimistic")
    assert query_ranks(s, ties="pessimistic").tolist() == [4] * 12
    assert opt["t2v"]["R@1"] == 100.0 and pes["t2v"]["R@1"] == 0.0 and pes["t2v"]["R@5"] == 100.0
    check_against_brute(s, None)
    # with block relevance every query is correct at rank 1 under both conventions
    rel = relevance_from_labels(blocks, blocks)
    assert retrieval_metrics(s, rel, ties="pessimistic")["v2t"]["R@1"] == 100.0
    check_against_brute(s, rel)


def test_denominator_is_number_of_queries_under_ties():
    """One query whose positive ties with 5 negatives must count once, not six times."""
    n = 10
    s = np.eye(n, dtype=np.float32) * 2.0
    s[1:6, 0] = 2.0        # text 0: videos 1..5 tie with its positive video 0
    opt = retrieval_metrics(s, ties="optimistic")["t2v"]
    pes = retrieval_metrics(s, ties="pessimistic")["t2v"]
    assert opt["n_queries"] == pes["n_queries"] == n
    assert opt["R@1"] == 100.0
    assert pes["R@1"] == pytest.approx(100.0 * (n - 1) / n)     # 9 of 10 queries at rank 1
    assert pes["R@5"] == pytest.approx(100.0 * (n - 1) / n)     # text 0 is at rank 6
    assert pes["R@10"] == 100.0
    assert query_ranks(s, ties="pessimistic")[0] == 6


def test_repeated_sentences_best_rank():
    # videos 0 and 2 carry the same sentence "a"; texts: "a", "b", "a"(repeat), "c"
    video_sent = ["a", "b", "a", "c"]
    text_sent = ["a", "b", "a", "c"]
    rel = relevance_from_labels(video_sent, text_sent)
    assert rel.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    s = np.array([[0.1, 0.0, 0.2, 0.0],
                  [0.5, 0.9, 0.0, 0.0],
                  [0.3, 0.0, 0.05, 0.0],
                  [0.0, 0.0, 0.0, 0.9]])
    # text 0 ("a"): best matching video is 2 (0.3) ranked after video 1 (0.5) → rank 2
    # text 2 ("a"): best matching video is 0 (0.2) → rank 1
    assert query_ranks(s, rel, queries="texts").tolist() == [2, 1, 1, 1]
    # video 0 ("a"): best text among {0, 2} is 2 (0.2) → rank 1; video 2: text 0 (0.3) → 1
    assert query_ranks(s, rel, queries="videos").tolist() == [1, 1, 1, 1]
    check_against_brute(s, rel)


def test_text_to_video_index_mapping_equals_dense():
    rng = np.random.default_rng(3)
    nv, per = 7, 3
    text_to_video = np.repeat(np.arange(nv), per)
    s = rng.normal(size=(nv, nv * per))
    dense = np.arange(nv)[:, None] == text_to_video[None, :]
    assert retrieval_metrics(s, text_to_video) == retrieval_metrics(s, dense)
    check_against_brute(s, dense)


def test_metrics_from_ranks_values():
    m = metrics_from_ranks([1, 2, 6, 11])
    assert (m["R@1"], m["R@5"], m["R@10"]) == (25.0, 50.0, 75.0)
    assert m["MedR"] == 4.0 and m["MeanR"] == 5.0 and m["n_queries"] == 4


def test_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        retrieval_metrics(np.zeros((2, 2)), np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(np.zeros(4))
    rel = np.array([[True, False], [True, False]])           # text 1 has no video
    with pytest.raises(ValueError, match="no relevant item"):
        retrieval_metrics(np.zeros((2, 2)), rel)
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="ties"):
        retrieval_metrics(np.zeros((2, 2)), ties="random")


def test_format_table():
    rng = np.random.default_rng(0)
    res = {name: retrieval_metrics(rng.normal(size=(8, 8)) + 3 * np.eye(8)) for name in ("rgb", "pose", "fused")}
    table = format_table(res)
    lines = table.splitlines()
    assert lines[0].startswith("| Stream | T2V R@1 | T2V R@5 | T2V R@10 | T2V MedR | V2T R@1")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["fused", "pose", "rgb"]
    cells = lines[2].split("|")[2:-1]
    assert len(cells) == 8 and float(cells[0]) == pytest.approx(res["fused"]["t2v"]["R@1"], abs=0.05)
    with pytest.raises(ValueError, match="lacks"):
        format_table({"fused": {"t2v": {}}})


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
H2S_TEST = SHARED / "data" / "annotations" / "how2sign_realigned_test.csv"


@pytest.mark.skipif(not H2S_TEST.is_file(), reason=f"real How2Sign annotations not found at {H2S_TEST}")
def test_how2sign_repeated_sentences_protocol():
    """On the real How2Sign test sentences (many repeated: "Hi!", "Cheers!", ...), the label-based
    relevance gives the best rank over all videos of a sentence; checked against the brute force on
    300 repeated-sentence rows plus 40 unique ones."""
    with H2S_TEST.open(newline="") as fh:
        sentences = [r["SENTENCE"] for r in csv.DictReader(fh)]
    counts = Counter(sentences)
    assert sum(c > 1 for c in counts.values()) > 100, "expected many repeated sentences in How2Sign test"
    rel_full = relevance_from_labels(sentences, sentences)
    assert rel_full.sum() == sum(c * c for c in counts.values())
    # "ideal" model: equal scores for equal sentences → every query at rank 1 under both conventions,
    # whereas the identity protocol penalises repeated sentences under pessimistic ties
    ideal = rel_full.astype(np.float32)
    assert retrieval_metrics(ideal, rel_full, ties="pessimistic")["t2v"]["R@1"] == 100.0
    ident = retrieval_metrics(ideal, ties="pessimistic")["t2v"]
    repeated_rows = sum(c for c in counts.values() if c > 1)
    assert ident["R@1"] == pytest.approx(100.0 * (len(sentences) - repeated_rows) / len(sentences))
    # brute force on a subset with random scores (coarsely quantised: ties too)
    keep = [i for i, s in enumerate(sentences) if counts[s] > 1][:300] + \
           [i for i, s in enumerate(sentences) if counts[s] == 1][:40]
    sub = [sentences[i] for i in keep]
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(len(sub), len(sub))), 1).astype(np.float32)
    check_against_brute(scores, relevance_from_labels(sub, sub))
