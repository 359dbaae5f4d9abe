"""seds.evaluate's protocols on a hand-made encoded split: which sentence ids and distinct sentences it
forms, which encoded text stands for each, and the metrics against loops over the full score matrix."""
import numpy as np
import pytest
import torch

from seds.evaluate import EncodedSplit, evaluate_protocols, normalise_sentence, score_matrices, sentence_id

TAU = 0.07


def make_split(seed=0):
    """8 videos; ids a(2 videos) b c(3) d e, where d has b's sentence (with other spacing) and e
    repeats the string of a — identical strings under different ids, as in How2Sign test."""
    g = torch.Generator().manual_seed(seed)
    sids = ["a", "a", "b", "c", "c", "c", "d", "e"]
    text = {"a": "the dog runs", "b": "hi  there", "c": "a cat sleeps", "d": "hi there", "e": "the dog runs"}
    n, t, length, dim = len(sids), 5, 4, 16
    words_of = {normalise_sentence(s): torch.randn(length, dim, generator=g) for s in set(text.values())}
    words = torch.stack([words_of[normalise_sentence(text[s])] for s in sids])   # same string → same encoding
    return EncodedSplit(video={"pose": torch.randn(n, t, dim, generator=g)},
                        video_mask=torch.ones(n, t, dtype=torch.bool), words=words,
                        word_mask=torch.ones(n, length, dtype=torch.bool), ids=[f"v{i}" for i in range(n)],
                        texts=[text[s] for s in sids], sentence_ids=sids,
                        sentences=[normalise_sentence(text[s]) for s in sids])


def loop_rank(cands):
    """Expected rank of the best relevant candidate (one relevant item at the top score here)."""
    best = max(sc for sc, rel in cands if rel)
    above = sum(1 for sc, rel in cands if sc > best)
    tied = sum(1 for sc, rel in cands if sc == best and not rel)
    m = sum(1 for sc, rel in cands if sc == best and rel)
    return 1 + above + tied / (m + 1)


def test_sentence_id_from_manifest_column_else_text():
    assert sentence_id({"sentence_id": "x_1"}, "Hi  there") == "x_1"
    assert sentence_id({"sentence_id": " "}, "Hi  there ") == sentence_id({}, "Hi there") == "text:Hi there"


def test_protocols_against_loops_over_the_full_matrix():
    enc = make_split()
    full = score_matrices(enc, TAU)["pose"]          # every video × every video's text
    sids, keys = enc.sentence_ids, enc.sentences
    ids = list(dict.fromkeys(sids))
    last = {s: max(i for i, x in enumerate(sids) if x == s) for s in ids}      # the id's text: its last video
    res = evaluate_protocols(enc, TAU)
    # sentence_ids V2T: each video's own id among all ids (d competes with b, e with a: identical encodings tie)
    v2t = [loop_rank([(float(full[v, last[j]]), j == sids[v]) for j in ids]) for v in range(len(sids))]
    assert res["sentence_ids"]["pose"]["v2t"]["MeanR"] == pytest.approx(np.mean(v2t))
    assert any(r % 1 for r in v2t)                   # the repeated strings give fractional ranks
    # sentence_ids T2V: each id's group (max over its videos) among all groups
    t2v = [loop_rank([(max(float(full[v, last[j]]) for v in range(len(sids)) if sids[v] == g), g == j)
                      for g in ids]) for j in ids]
    assert res["sentence_ids"]["pose"]["t2v"]["MeanR"] == pytest.approx(np.mean(t2v))
    assert res["sentence_ids"]["pose"]["t2v"]["n_queries"] == 5 and res["sentence_ids"]["pose"]["v2t"]["n_queries"] == 8
    # distinct: 3 sentences; T2V ranks videos (all videos of the sentence relevant), V2T ranks sentences
    dist = list(dict.fromkeys(keys))
    col = {k: max(i for i, x in enumerate(keys) if x == k) for k in dist}
    t2v_d = [loop_rank([(float(full[v, col[k]]), keys[v] == k) for v in range(len(keys))]) for k in dist]
    v2t_d = [loop_rank([(float(full[v, col[k]]), keys[v] == k) for k in dist]) for v in range(len(keys))]
    assert res["distinct"]["pose"]["t2v"]["MeanR"] == pytest.approx(np.mean(t2v_d))
    assert res["distinct"]["pose"]["v2t"]["MeanR"] == pytest.approx(np.mean(v2t_d))
    assert res["distinct"]["pose"]["t2v"]["n_queries"] == 3
    with pytest.raises(ValueError, match="protocol"):
        evaluate_protocols(enc, TAU, protocols=("paper",))
