"""seds.metrics against brute-force references written here with explicit loops over queries and
items: ranks under the three tie conventions (expected ranks also by exhaustive enumeration of
tie-breaking orders), both repeated-sentence protocols, and parity with the authors' metrics."""
from __future__ import annotations

import csv
import itertools
from collections import Counter
from fractions import Fraction
from math import comb
from pathlib import Path

import numpy as np
import pytest
import torch

from seds.metrics import format_table, group_labels, protocol_metrics, rank_counts, relevance_from_labels, retrieval_metrics
from tests.reference import load_official


def query_ranks(scores, relevance=None, *, queries="texts", ties="expected", **kw) -> np.ndarray:
    """Every query's rank of its best relevant item, from the library's tie counts."""
    return rank_counts(scores, relevance, queries=queries, **kw).ranks(ties)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KS = (1, 5, 10)


# --- brute-force reference ------------------------------------------------------------------------

def brute_query(cands: list[tuple[float, bool]], ties: str, ks=KS) -> tuple[Fraction, dict[int, Fraction]]:
    """(rank, {K: P(rank ≤ K)}) of one query from its (score, relevant) candidates, by loops.

    optimistic/pessimistic: sort with relevant items first/last among equal scores, the rank is the
    position of the first relevant item. expected: a = items above the best relevant score s*, and
    among the t + m items tied at s* (m relevant) the first relevant one sits at position p with
    probability C(t+m−p, m−1) / C(t+m, m); rank = a + p."""
    if ties in ("optimistic", "pessimistic"):
        order = sorted(cands, key=lambda c: (-c[0], (not c[1]) if ties == "optimistic" else c[1]))
        r = next(pos for pos, c in enumerate(order, start=1) if c[1])
        return Fraction(r), {k: Fraction(int(r <= k)) for k in ks}
    best = max(sc for sc, rel in cands if rel)
    a = sum(1 for sc, rel in cands if sc > best)
    t = sum(1 for sc, rel in cands if sc == best and not rel)
    m = sum(1 for sc, rel in cands if sc == best and rel)
    dist = {a + p: Fraction(comb(t + m - p, m - 1), comb(t + m, m)) for p in range(1, t + 2)}
    assert sum(dist.values()) == 1
    return sum(r * pr for r, pr in dist.items()), {k: sum(pr for r, pr in dist.items() if r <= k) for k in ks}


def brute_metrics(per_query: list[tuple[Fraction, dict[int, Fraction]]], median: str = "midpoint") -> dict[str, float]:
    """``median``: "midpoint" (mean of the two middle ranks for even n) or "lower" (the lower of them)."""
    n = len(per_query)
    ranks = sorted(float(r) for r, _ in per_query)
    out = {f"R@{k}": float(100 * sum(h[k] for _, h in per_query) / n) for k in KS}
    out["MedR"] = ranks[n // 2] if n % 2 else \
        ranks[n // 2 - 1] if median == "lower" else 0.5 * (ranks[n // 2 - 1] + ranks[n // 2])
    out["MeanR"] = float(sum(r for r, _ in per_query) / n)
    out["n_queries"] = n
    return out


def brute_rows(scores: np.ndarray, rel: np.ndarray, queries: str) -> list[list[tuple[float, bool]]]:
    if queries == "texts":
        scores, rel = scores.T, rel.T
    return [[(float(scores[q, i]), bool(rel[q, i])) for i in range(scores.shape[1])] for q in range(scores.shape[0])]


def assert_metrics(got: dict, ref: dict, what) -> None:
    assert set(got) == set(ref), what
    for key, val in ref.items():
        assert got[key] == pytest.approx(val, abs=1e-9), (what, key)


def check_against_brute(scores: np.ndarray, rel: np.ndarray | None, **kw) -> None:
    rel_dense = np.eye(*scores.shape, dtype=bool) if rel is None else rel
    for ties in ("expected", "pessimistic", "optimistic"):
        res = retrieval_metrics(scores, rel, ties=ties, **kw)
        for direction, queries in (("t2v", "texts"), ("v2t", "videos")):
            ref = [brute_query(c, ties) for c in brute_rows(scores, rel_dense, queries)]
            got_ranks = query_ranks(scores, rel, queries=queries, ties=ties, **kw)
            assert got_ranks.tolist() == pytest.approx([float(r) for r, _ in ref]), (ties, direction)
            assert_metrics(res[direction], brute_metrics(ref), (ties, direction))


def brute_protocol(scores: np.ndarray, video_to_text: list[int], protocol: str, ties: str) -> dict:
    """The two protocols by loops: sentence_ids T2V ranks id groups scored by the max over their videos; sentence_ids
    V2T MedR is the lower middle value for an even number of videos (the authors' torch.median)."""
    n_videos, n_texts = scores.shape
    v2t = [brute_query([(float(scores[v, j]), j == video_to_text[v]) for j in range(n_texts)], ties)
           for v in range(n_videos)]
    t2v = []
    for j in range(n_texts):
        if protocol == "sentence_ids":
            cands = [(max(float(scores[v, j]) for v in range(n_videos) if video_to_text[v] == g), g == j)
                     for g in range(n_texts)]
        else:
            cands = [(float(scores[v, j]), video_to_text[v] == j) for v in range(n_videos)]
        t2v.append(brute_query(cands, ties))
    return {"t2v": brute_metrics(t2v), "v2t": brute_metrics(v2t, "lower" if protocol == "sentence_ids" else "midpoint")}


def random_relevance(rng, nv, nt, p=0.15) -> np.ndarray:
    rel = rng.random((nv, nt)) < p
    rel[rng.integers(0, nv, nt), np.arange(nt)] = True     # every text has a video
    rel[np.arange(nv), rng.integers(0, nt, nv)] = True     # every video has a text
    return rel


def random_groups(rng, n_texts: int, max_per: int = 3) -> list[int]:
    """Each text gets 1..max_per videos, in a shuffled order."""
    v = [j for j in range(n_texts) for _ in range(int(rng.integers(1, max_per + 1)))]
    return [v[i] for i in rng.permutation(len(v))]


# --- ties -----------------------------------------------------------------------------------------

def test_constant_matrix_scores_at_chance():
    n = 50
    for dtype in (np.float32, np.float16, np.int64):
        res = retrieval_metrics(np.zeros((n, n), dtype=dtype))
        for d in ("t2v", "v2t"):
            assert res[d]["R@1"] == pytest.approx(100 / n) and res[d]["R@5"] == pytest.approx(500 / n)
            assert res[d]["R@10"] == pytest.approx(1000 / n)
            assert res[d]["MedR"] == res[d]["MeanR"] == (n + 1) / 2 and res[d]["n_queries"] == n
    pes = retrieval_metrics(np.zeros((n, n)), ties="pessimistic")
    assert pes["t2v"]["R@10"] == 0.0 and pes["t2v"]["MedR"] == n
    opt = retrieval_metrics(np.zeros((n, n)), ties="optimistic")     # only on request: rates it perfect
    assert opt["t2v"]["R@1"] == 100.0 and opt["t2v"]["MedR"] == 1
    check_against_brute(np.zeros((12, 12)), None)


def test_constant_matrix_chance_in_both_protocols():
    rng = np.random.default_rng(1)
    groups = random_groups(rng, 20)
    for protocol in ("sentence_ids", "distinct"):
        res = protocol_metrics(np.zeros((len(groups), 20)), groups, protocol=protocol)
        assert_metrics(res["t2v"], brute_protocol(np.zeros((len(groups), 20)), groups, protocol, "expected")["t2v"],
                       protocol)
        assert res["v2t"]["R@1"] == pytest.approx(100 / 20) and res["v2t"]["MedR"] == 10.5
    # official T2V: one gallery item per id → chance over ids
    assert protocol_metrics(np.zeros((len(groups), 20)), groups)["t2v"]["R@1"] == pytest.approx(5.0)


def test_expected_rank_equals_exhaustive_tie_breaking():
    """The definition itself: average over every order of the tied items (all permutations of the
    items, stably sorted by score) of the first relevant position, and of [position ≤ K]."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(2, 7))
        s = rng.integers(0, 2, size=(n, n)).astype(np.float32)
        rel = random_relevance(rng, n, n, p=0.3)
        counts = rank_counts(s, rel, queries="videos")
        for q in range(n):
            positions = []
            for perm in itertools.permutations(range(n)):
                order = sorted(perm, key=lambda i: -s[q, i])          # stable: perm breaks the ties
                positions.append(next(p for p, i in enumerate(order, start=1) if rel[q, i]))
            assert counts.ranks("expected")[q] == pytest.approx(np.mean(positions))
            for k in (1, 2, 3):
                assert counts.hit_probability(k)[q] == pytest.approx(np.mean([p <= k for p in positions]))


def test_fractional_ranks_and_r_at_k_is_a_probability():
    # text 0: its video ties with 3 others → expected rank 2.5, P(rank ≤ 1) = 1/4, P(≤ 2) = 1/2
    s = np.eye(6, dtype=np.float32)
    s[1:4, 0] = 1.0
    r = query_ranks(s)
    assert r.tolist() == [2.5, 1, 1, 1, 1, 1]
    res = retrieval_metrics(s, ks=(1, 2, 5))["t2v"]
    assert res["R@1"] == pytest.approx(100 * (5 + 1 / 4) / 6)
    assert res["R@2"] == pytest.approx(100 * (5 + 1 / 2) / 6)      # 'rank ≤ 2' on 2.5 would say 5/6
    assert res["R@5"] == 100.0


@pytest.mark.parametrize("seed", range(5))
def test_random_identity(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    check_against_brute(rng.normal(size=(n, n)).astype(np.float32), None)


@pytest.mark.parametrize("seed", range(5))
def test_partial_ties_multi_relevant_rectangular(seed):
    rng = np.random.default_rng(100 + seed)
    nv, nt = int(rng.integers(2, 30)), int(rng.integers(2, 30))
    rel = random_relevance(rng, nv, nt)
    check_against_brute(rng.normal(size=(nv, nt)), rel)
    # coarse integer scores: ties everywhere, several positives per query (some tied with each other)
    check_against_brute(rng.integers(0, 3, size=(nv, nt)).astype(np.float32), rel)


def test_block_ties():
    # 3 blocks of 4 videos/texts; inside a block every score is 1, outside 0
    blocks = np.repeat(np.arange(3), 4)
    s = (blocks[:, None] == blocks[None, :]).astype(np.float32)
    assert query_ranks(s, ties="pessimistic").tolist() == [4] * 12
    assert query_ranks(s).tolist() == [2.5] * 12
    exp = retrieval_metrics(s)
    assert exp["t2v"]["R@1"] == pytest.approx(25.0) and exp["t2v"]["R@5"] == 100.0
    check_against_brute(s, None)
    # with block relevance every query is correct at rank 1 under every convention
    rel = relevance_from_labels(blocks, blocks)
    assert retrieval_metrics(s, rel, ties="pessimistic")["v2t"]["R@1"] == 100.0
    check_against_brute(s, rel)


def test_denominator_is_number_of_queries_under_ties():
    """One query whose positive ties with 5 negatives must count once, not six times."""
    n = 10
    s = np.eye(n, dtype=np.float32) * 2.0
    s[1:6, 0] = 2.0        # text 0: videos 1..5 tie with its positive video 0
    exp = retrieval_metrics(s)["t2v"]
    pes = retrieval_metrics(s, ties="pessimistic")["t2v"]
    assert exp["n_queries"] == pes["n_queries"] == n
    assert exp["R@1"] == pytest.approx(100.0 * (n - 1 + 1 / 6) / n)
    assert pes["R@1"] == pytest.approx(100.0 * (n - 1) / n)     # 9 of 10 queries at rank 1
    assert query_ranks(s, ties="pessimistic")[0] == 6 and query_ranks(s)[0] == 3.5


# --- chunking, input types, precision -------------------------------------------------------------

def test_chunked_equals_unchunked_and_input_types_agree():
    rng = np.random.default_rng(7)
    nv, nt = 23, 31
    s = rng.integers(0, 4, size=(nv, nt)).astype(np.float16)
    rel = random_relevance(rng, nv, nt)
    for ties in ("expected", "pessimistic"):
        ref = retrieval_metrics(s, rel, ties=ties)
        assert retrieval_metrics(torch.from_numpy(s), torch.from_numpy(rel), chunk_size=3, ties=ties) == ref
        assert retrieval_metrics(s.astype(np.float64), rel.astype(np.int64), chunk_size=1, ties=ties) == ref
    check_against_brute(s.astype(np.float32), rel, chunk_size=4)
    groups = random_groups(rng, nt)
    sg = rng.integers(0, 4, size=(len(groups), nt)).astype(np.float32)
    for protocol in ("sentence_ids", "distinct"):
        ref = protocol_metrics(sg, groups, protocol=protocol)
        assert protocol_metrics(torch.from_numpy(sg), torch.tensor(groups), protocol=protocol, chunk_size=2) == ref


def test_float16_orders_like_float32():
    """Scores representable in float16 give the same ranks and ties in float16 and float32."""
    rng = np.random.default_rng(11)
    s16 = (rng.normal(size=(40, 40)) * 0.05).astype(np.float16)      # many exact float16 ties
    s32 = s16.astype(np.float32)
    assert len(np.unique(s16)) < s16.size
    for ties in ("expected", "pessimistic", "optimistic"):
        assert retrieval_metrics(s16, ties=ties) == retrieval_metrics(s32, ties=ties)
        assert retrieval_metrics(torch.from_numpy(s16).to(torch.bfloat16), ties=ties) == \
            retrieval_metrics(torch.from_numpy(s16).to(torch.bfloat16).float(), ties=ties)
    groups = random_groups(rng, 40, max_per=1)[:40]
    assert protocol_metrics(s16, groups) == protocol_metrics(s32, groups)


# --- repeated sentences: the two protocols ----------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("protocol", ["sentence_ids", "distinct"])
def test_protocols_against_brute(seed, protocol):
    rng = np.random.default_rng(200 + seed)
    n_texts = int(rng.integers(2, 15))
    groups = random_groups(rng, n_texts)
    for scores in (rng.normal(size=(len(groups), n_texts)),                          # tie-free
                   rng.integers(0, 3, size=(len(groups), n_texts)).astype(np.float32)):  # ties everywhere
        for ties in ("expected", "pessimistic", "optimistic"):
            got = protocol_metrics(scores, groups, protocol=protocol, ties=ties)
            ref = brute_protocol(scores, groups, protocol, ties)
            for d in ("t2v", "v2t"):
                assert_metrics(got[d], ref[d], (protocol, ties, d))


def test_the_former_protocol_name_is_the_same_protocol():
    rng = np.random.default_rng(7)
    groups = random_groups(rng, 6)
    s = rng.integers(0, 3, size=(len(groups), 6)).astype(np.float32)
    assert protocol_metrics(s, groups, protocol="official") == protocol_metrics(s, groups, protocol="sentence_ids")
    assert protocol_metrics(s, groups, protocol="official") != protocol_metrics(s, groups, protocol="distinct")
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocol_metrics(s, groups, protocol="authors")


def test_protocols_differ_where_they_should():
    # texts 0 and 1; videos 0, 1 show text 0, video 2 shows text 1
    groups = [0, 0, 1]
    s = np.array([[0.9, 0.1],
                  [0.2, 0.8],
                  [0.5, 0.3]])
    off, dis = protocol_metrics(s, groups), protocol_metrics(s, groups, protocol="distinct")
    # official T2V: text 1 ranks groups {0: max(0.1, 0.8) = 0.8, 1: 0.3} → its own group 2nd
    # distinct T2V: text 1 ranks videos (0.1, 0.8, 0.3) with video 2 relevant → 2nd as well; text 0:
    # best relevant 0.9 → 1st in both
    assert off["t2v"]["MeanR"] == dis["t2v"]["MeanR"] == 1.5
    # make two of text-0's videos beat text 1's video: official counts the group once, distinct twice
    s2 = np.array([[0.9, 0.6], [0.2, 0.7], [0.5, 0.3]])
    assert protocol_metrics(s2, groups)["t2v"]["MeanR"] == 1.5
    assert protocol_metrics(s2, groups, protocol="distinct")["t2v"]["MeanR"] == 2.0
    assert off["v2t"]["n_queries"] == dis["v2t"]["n_queries"] == 3 and off["t2v"]["n_queries"] == 2


def test_group_labels():
    g, first = group_labels(["b", "a", "b", "c", "a"], "first")
    assert g.tolist() == [0, 1, 0, 2, 1] and first.tolist() == [0, 1, 3]
    assert group_labels(["b", "a", "b", "c", "a"])[1].tolist() == [2, 4, 3]
    with pytest.raises(ValueError, match="representative"):
        group_labels(["a"], "middle")


def load_official_metrics():
    return load_official("metrics.py", "seds_official_metrics")


@pytest.mark.parametrize("seed", range(3))
def test_official_protocol_matches_the_authors_metrics(seed):
    """eval_epoch's reshaping (videos grouped by sentence id, padded with -inf to the longest group)
    fed to the authors' tensor_text_to_video_metrics (their 'Video-to-Text') and
    compute_metrics(tensor_video_to_text_sim(.)) (their 'Text-to-Video'), on tie-free scores."""
    off = load_official_metrics()
    rng = np.random.default_rng(300 + seed)
    n_ids = int(rng.integers(5, 60))
    sizes = rng.integers(1, 4, size=n_ids)
    groups = np.repeat(np.arange(n_ids), sizes)                  # eval_epoch: a sentence's videos are adjacent
    scores = rng.normal(size=(len(groups), n_ids))
    max_len = int(sizes.max())
    padded = np.full((n_ids, max_len, n_ids), -np.inf)
    cut = np.concatenate([[0], np.cumsum(sizes)])
    for g in range(n_ids):
        padded[g, : sizes[g]] = scores[cut[g]: cut[g + 1]]
    their_v2t = off.tensor_text_to_video_metrics(torch.tensor(padded))
    their_t2v = off.compute_metrics(off.tensor_video_to_text_sim(torch.tensor(padded)).numpy())
    ours = protocol_metrics(scores, groups)
    for theirs, d in ((their_v2t, "v2t"), (their_t2v, "t2v")):
        for k in KS:
            assert ours[d][f"R@{k}"] == pytest.approx(theirs[f"R{k}"]), (d, k)
        assert ours[d]["MedR"] == pytest.approx(theirs["MedianR"]) and ours[d]["MeanR"] == pytest.approx(theirs["MeanR"])
    assert ours["v2t"]["n_queries"] == len(groups) and ours["t2v"]["n_queries"] == n_ids


def their_metrics(off, scores: np.ndarray, groups: np.ndarray) -> tuple[dict, dict]:
    """eval_epoch's layout (videos grouped by sentence id, -inf padded) through the authors' V2T and T2V."""
    n_ids = scores.shape[1]
    sizes = np.bincount(groups, minlength=n_ids)
    padded = np.full((n_ids, int(sizes.max()), n_ids), -np.inf)
    for g in range(n_ids):
        padded[g, : sizes[g]] = scores[groups == g]
    return (off.tensor_text_to_video_metrics(torch.tensor(padded)),
            off.compute_metrics(off.tensor_video_to_text_sim(torch.tensor(padded)).numpy()))


@pytest.mark.parametrize("n_ids, per_id", [(4, 1), (5, 1), (6, 2), (7, 2), (10, 1), (11, 1), (9, 3)])
def test_official_median_rank_is_the_authors_on_even_and_odd_sizes(n_ids, per_id):
    """Issue 27: their V2T MedR is torch.median (the lower middle rank), their T2V MedR np.median (the mean of
    the two middle ranks). Even and odd numbers of videos (n_ids × per_id) and of ids; scores chosen so the two
    middle ranks differ. The midpoint stays available by name — and differs from theirs where it should."""
    off = load_official_metrics()
    rng = np.random.default_rng(n_ids * 10 + per_id)
    groups = np.repeat(np.arange(n_ids), per_id)
    for trial in range(20):
        scores = rng.normal(size=(len(groups), n_ids)) + 0.8 * (groups[:, None] == np.arange(n_ids)[None])
        their_v2t, their_t2v = their_metrics(off, scores, groups)
        ours = protocol_metrics(scores, groups)
        assert ours["v2t"]["MedR"] == their_v2t["MedianR"] and ours["t2v"]["MedR"] == their_t2v["MedianR"]
        mid = protocol_metrics(scores, groups, median="midpoint")["v2t"]["MedR"]
        if mid != their_v2t["MedianR"]:
            break
    if len(groups) % 2:     # odd: one middle value, every convention agrees
        assert mid == their_v2t["MedianR"]
    else:                   # even: some trial has two different middle ranks, where only "lower" is theirs
        assert mid > their_v2t["MedianR"]      # the old official MedR (np.median) would fail the check above
        assert protocol_metrics(scores, groups, median="lower")["v2t"]["MedR"] == their_v2t["MedianR"]


def test_official_median_on_a_four_video_store():
    """The issue's case: 4 videos, V2T ranks 1, 1, 2, 3 → MedR 1 (theirs), not 1.5 (the midpoint)."""
    s = np.array([[0.9, 0.1, 0.0, 0.0],      # video 0: rank 1
                  [0.2, 0.8, 0.1, 0.0],      # video 1: rank 1
                  [0.0, 0.5, 0.4, 0.1],      # video 2: rank 2
                  [0.3, 0.2, 0.1, 0.05]])    # video 3: rank 4
    s[3] = [0.3, 0.2, 0.0, 0.1]              # video 3: rank 3
    res = protocol_metrics(s, [0, 1, 2, 3])
    assert res["v2t"]["MedR"] == 1.0
    assert protocol_metrics(s, [0, 1, 2, 3], median="midpoint")["v2t"]["MedR"] == 1.5
    assert protocol_metrics(s, [0, 1, 2, 3], protocol="distinct")["v2t"]["MedR"] == 1.5
    with pytest.raises(ValueError, match="median must be"):
        protocol_metrics(s, [0, 1, 2, 3], median="mean")


H2S_TEST = SHARED / "data" / "annotations" / "how2sign_realigned_test.csv"


@pytest.mark.skipif(not H2S_TEST.is_file(), reason=f"real How2Sign annotations not found at {H2S_TEST}")
def test_how2sign_repeated_sentences_protocols():
    """The real How2Sign test rows: ids group recordings of one sentence, and the same string recurs
    under several ids ("Hi!"). An 'ideal' model scoring 1 for equal strings and 0 otherwise: the
    distinct protocol rates it perfect; the sentence_ids one shares credit between identical strings
    under different ids (they compete), exactly by the expected-rank rule."""
    with H2S_TEST.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [r["SENTENCE_ID"] for r in rows]
    sents = [r["SENTENCE"] for r in rows]
    id_of_video, id_rep = group_labels(ids)
    txt_of_video, txt_rep = group_labels(sents)
    assert len(id_rep) > len(txt_rep) and len(id_rep) < len(rows)
    # distinct: videos × distinct strings
    ideal_d = (txt_of_video[:, None] == np.arange(len(txt_rep))[None, :]).astype(np.float32)
    dis = protocol_metrics(ideal_d, txt_of_video, protocol="distinct")
    assert dis["t2v"]["R@1"] == dis["v2t"]["R@1"] == 100.0
    # official: videos × ids, score 1 where the id's string equals the video's
    id_text = np.array([sents[i] for i in id_rep], dtype=object)
    ideal_o = (np.array(sents, dtype=object)[:, None] == id_text[None, :]).astype(np.float32)
    off = protocol_metrics(ideal_o, id_of_video)
    n_ids_with_text = Counter(id_text)
    exp_v2t = np.mean([1 / n_ids_with_text[s] for s in sents])            # P(own id first among its copies)
    assert off["v2t"]["R@1"] == pytest.approx(100 * exp_v2t)
    assert off["t2v"]["R@1"] == pytest.approx(100 * np.mean([1 / n_ids_with_text[s] for s in id_text]))
    assert off["v2t"]["n_queries"] == len(rows) and off["t2v"]["n_queries"] == len(id_rep)


# --- errors and formatting ------------------------------------------------------------------------

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
    with pytest.raises(ValueError, match="protocol"):
        protocol_metrics(np.zeros((2, 2)), [0, 1], protocol="paper")
    with pytest.raises(ValueError, match="no video"):
        protocol_metrics(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="outside"):
        protocol_metrics(np.zeros((2, 2)), [0, 2])
    with pytest.raises(ValueError, match="integer text indices"):
        protocol_metrics(np.zeros((2, 2)), [0.0, 1.0])


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
