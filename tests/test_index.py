"""seds.retrieval.gallery_index.GalleryIndex: persistence, incremental adds, two-stage search vs exhaustive scoring."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from seds.retrieval.gallery_index import GalleryIndex, GalleryIndexError, IndexConfig
from seds.similarity import fine_grained_scores, pooled

D = 32


def random_items(n, t, seed, streams=("pose", "rgb", "fused"), d=D, min_valid=1):
    g = torch.Generator().manual_seed(seed)
    feats = {s: torch.randn(n, t, d, generator=g) for s in streams}
    lengths = torch.randint(min_valid, t + 1, (n,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return feats, mask


def structured(n_items, t, n_queries, seed, vocab=200, d=D, noise=0.3):
    """Items are sentences of 'word' vectors: clip i of an item shows word i*len/T plus noise; a
    query repeats a random subset of the item's words with other noise. Items share words (Zipf-like
    draw), so neighbours are meaningful."""
    g = torch.Generator().manual_seed(seed)
    words = torch.nn.functional.normalize(torch.randn(vocab, d, generator=g), dim=-1)
    probs = 1.0 / torch.arange(1, vocab + 1).float()
    sent = torch.multinomial(probs, n_items * 8, replacement=True, generator=g).view(n_items, 8)
    clip_word = sent[:, (torch.arange(t) * 8) // t]                                  # (N, T)
    video = words[clip_word] + noise * torch.randn(n_items, t, d, generator=g) / d ** 0.5
    target = torch.randint(0, n_items, (n_queries,), generator=g)
    keep = torch.rand(n_queries, 8, generator=g) < 0.8
    keep[:, 0] = True
    text = words[sent[target]] + noise * torch.randn(n_queries, 8, d, generator=g) / d ** 0.5
    return video, text, keep, target


def naive_scores(gallery_feats, gallery_mask, q, qm, kind):
    """Item-by-item fine-grained score with raw float32 features."""
    out = torch.empty(q.shape[0], gallery_feats.shape[0])
    for i in range(gallery_feats.shape[0]):
        g, gm = gallery_feats[i:i + 1].float(), gallery_mask[i:i + 1]
        if kind == "video":
            out[:, i] = fine_grained_scores(g, gm, q.float(), qm).mean[0]
        else:
            out[:, i] = fine_grained_scores(q.float(), qm, g, gm).mean[:, 0]
    return out


def build(n=60, t=10, seed=0, dtype="float32", **kw):
    feats, mask = random_items(n, t, seed)
    idx = GalleryIndex("video", dim=D, dtype=dtype, **kw)
    idx.add([f"v{i}" for i in range(n)], feats, mask, [{"row": i, "name": f"clip {i}"} for i in range(n)])
    return idx, feats, mask


def hit_ids(hits):
    return [[h.id for h in row] for row in hits]


def test_exhaustive_scores_match_naive_reference():
    idx, feats, mask = build(n=40, t=9)
    q, qm = random_items(6, 7, seed=5, streams=("q",))
    q = q["q"]
    for stream in idx.streams:
        got = idx.score_all(q, qm, stream, chunk_size=7)
        ref = naive_scores(feats[stream], mask, q, qm, "video")
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # float16 storage changes scores only at the fp16 rounding level
    idx16, _, _ = build(n=40, t=9, dtype="float16")
    torch.testing.assert_close(idx16.score_all(q, qm, "rgb"), naive_scores(feats["rgb"], mask, q, qm, "video"),
                               atol=3e-3, rtol=0)


def test_text_gallery_matches_naive_reference():
    feats, mask = random_items(30, 12, seed=2, streams=("text",))
    idx = GalleryIndex("text", dim=D, dtype="float32")
    idx.add(list(range(30)), feats["text"], mask)
    video, vmask = random_items(4, 16, seed=3, streams=("v",))
    got = idx.score_all(video["v"], vmask)
    torch.testing.assert_close(got, naive_scores(feats["text"], mask, video["v"], vmask, "text"), atol=1e-5, rtol=1e-5)
    hits = idx.search(video["v"][0], vmask[0], k=5, rerank=30)
    assert [h.index for h in hits] == torch.argsort(got[0], descending=True)[:5].tolist()
    assert [h.id for h in hits] == [h.index for h in hits]     # int ids kept


def test_coarse_stage_is_pooled_inner_product():
    idx, feats, mask = build(n=50)
    q, qm = random_items(3, 6, seed=9, streams=("q",))
    scores, rows = idx.coarse_search(q["q"], qm, "pose", m=8)
    gp = pooled(torch.nn.functional.normalize(feats["pose"], dim=-1), mask)
    qp = pooled(q["q"], qm)
    ref = qp @ gp.t()
    assert rows.tolist() == torch.topk(ref, 8, dim=1).indices.tolist()
    torch.testing.assert_close(scores, torch.topk(ref, 8, dim=1).values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["video", "text"])
def test_rerank_all_equals_exhaustive(kind):
    streams = ("pose", "rgb", "fused") if kind == "video" else ("text",)
    n = 80
    feats, mask = random_items(n, 12, seed=11, streams=streams)
    idx = GalleryIndex(kind, dim=D, dtype="float16")
    idx.add([f"x{i}" for i in range(n)], feats, mask)
    q, qm = random_items(5, 9, seed=12, streams=("q",))
    stream = streams[-1]
    full = idx.search_batch(q["q"], qm, stream, k=10, rerank=n)
    ref = idx.search_batch(q["q"], qm, stream, k=10, exhaustive=True)
    assert hit_ids(full) == hit_ids(ref)
    for a, b in zip(full, ref):
        assert [h.rank for h in a] == list(range(1, 11))
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
        assert all(h.coarse_score is not None for h in a) and all(h.coarse_score is None for h in b)
    # a smaller M re-ranks the faiss candidates by the fine-grained score
    part = idx.search_batch(q["q"], qm, stream, k=5, rerank=20)
    _, cand = idx.coarse_search(q["q"], qm, stream, m=20)
    scores = idx.score_all(q["q"], qm, stream)
    for b, hits in enumerate(part):
        cs = scores[b, cand[b]]
        assert [h.index for h in hits] == cand[b][torch.argsort(cs, descending=True, stable=True)[:5]].tolist()


def test_structured_gallery_two_stage_agrees_with_exhaustive():
    video, text, keep, target = structured(n_items=300, t=16, n_queries=40, seed=0)
    idx = GalleryIndex("video", dim=D, streams=("fused",))
    idx.add([f"v{i}" for i in range(300)], {"fused": video})
    exact = idx.search_batch(text, keep, k=10, exhaustive=True)
    fast = idx.search_batch(text, keep, k=10, rerank=50)
    top1 = np.mean([a[0].index == t for a, t in zip(exact, target.tolist())])
    assert top1 >= 0.9, f"the structured gallery should be easy for the exact score, top-1 = {top1:.2f}"
    agree = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(fast, exact)])
    assert agree >= 0.8, f"rerank=50 of 300 should mostly agree with exhaustive, got {agree:.2f}"
    coarse_only = idx.search_batch(text, keep, k=10, rerank=0)
    assert all(h.coarse_score == h.score for row in coarse_only for h in row)


def test_incremental_add_equals_one_shot():
    n, t = 45, 10
    feats, mask = random_items(n, t, seed=21)
    one = GalleryIndex("video", dim=D)
    one.add([f"v{i}" for i in range(n)], feats, mask, [{"i": i} for i in range(n)])
    inc = GalleryIndex("video", dim=D)
    # batches of different lengths: trailing fully-padded positions are cut off in the first batch
    for a, b, tb in ((0, 10, 10), (10, 30, 10), (30, 45, 10)):
        sub_len = int(mask[a:b].sum(1).max()) if a == 0 else tb
        inc.add([f"v{i}" for i in range(a, b)], {s: f[a:b, :sub_len] for s, f in feats.items()},
                mask[a:b, :sub_len], [{"i": i} for i in range(a, b)])
    assert len(inc) == len(one) == n and inc.ids == one.ids
    for s in one.streams:
        fo, mo = one.stream_data(s)
        fi, mi = inc.stream_data(s)
        assert torch.equal(mo, mi) and torch.equal(fo, fi)
        np.testing.assert_array_equal(one.pooled_vectors(s), inc.pooled_vectors(s))
    q, qm = random_items(4, 6, seed=22, streams=("q",))
    a = one.search_batch(q["q"], qm, "rgb", k=7, rerank=15)
    b = inc.search_batch(q["q"], qm, "rgb", k=7, rerank=15)
    assert hit_ids(a) == hit_ids(b)
    assert [[h.score for h in r] for r in a] == [[h.score for h in r] for r in b]
    assert inc.meta("v33") == {"i": 33}


def test_query_padding_does_not_change_results():
    idx, _, _ = build(n=30)
    q, qm = random_items(1, 5, seed=4, streams=("q",), min_valid=5)
    padded = torch.cat([q["q"][0], torch.randn(3, D)])
    pmask = torch.tensor([True] * 5 + [False] * 3)
    a = idx.search(q["q"][0], None, "fused", k=5, rerank=10)
    b = idx.search(padded, pmask, "fused", k=5, rerank=10)
    assert [h.id for h in a] == [h.id for h in b]
    np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)


def test_save_load_round_trip(tmp_path):
    idx, _, _ = build(n=50, t=8, dtype="float16")
    q, qm = random_items(3, 6, seed=8, streams=("q",))
    before = idx.search_batch(q["q"], qm, "pose", k=5, rerank=12)
    idx.save(tmp_path / "g", shard_bytes=20_000)           # forces several shards
    shards = sorted(p.name for p in (tmp_path / "g").glob("gallery-*.safetensors"))
    assert len(shards) > 1
    back = GalleryIndex.load(tmp_path / "g")
    assert back.config == idx.config and back.ids == idx.ids and len(back) == 50
    for s in idx.streams:
        fa, ma = idx.stream_data(s)
        fb, mb = back.stream_data(s)
        assert fb.dtype == torch.float16 and torch.equal(fa, fb) and torch.equal(ma, mb)
        np.testing.assert_array_equal(idx.pooled_vectors(s), back.pooled_vectors(s))
    after = back.search_batch(q["q"], qm, "pose", k=5, rerank=12)
    assert [[(h.id, h.score, h.meta) for h in r] for r in before] == [[(h.id, h.score, h.meta) for h in r] for r in after]
    # saving again with one shard removes the stale shard files
    back.save(tmp_path / "g")
    assert [p.name for p in (tmp_path / "g").glob("gallery-*.safetensors")] == ["gallery-00000.safetensors"]
    assert GalleryIndex.load(tmp_path / "g").ids == idx.ids
    # adding after load keeps working
    more, mmask = random_items(3, 8, seed=30)
    back.add(["n0", "n1", "n2"], more, mmask)
    assert len(back) == 53 and back.search(q["q"][0], qm[0], "rgb", k=53, rerank=53)[0].id in back


def test_empty_index_round_trip_and_errors(tmp_path):
    idx = GalleryIndex("text", dim=D)
    with pytest.raises(GalleryIndexError, match="empty"):
        idx.search(torch.randn(4, D))
    idx.save(tmp_path / "e")
    back = GalleryIndex.load(tmp_path / "e")
    assert len(back) == 0 and back.config == idx.config
    with pytest.raises(GalleryIndexError, match="empty"):
        back.search_batch(torch.randn(1, 4, D), exhaustive=True)


def test_add_errors():
    idx, feats, mask = build(n=5)
    f, m = random_items(2, 4, seed=1)
    with pytest.raises(GalleryIndexError, match="already in the index"):
        idx.add(["v0", "new"], f, m)
    with pytest.raises(GalleryIndexError, match="duplicate id"):
        idx.add(["a", "a"], f, m)
    with pytest.raises(GalleryIndexError, match="missing streams"):
        idx.add(["a", "b"], {"pose": f["pose"]}, m)
    with pytest.raises(GalleryIndexError, match="index dim"):
        idx.add(["a", "b"], {s: torch.randn(2, 4, D + 1) for s in idx.streams}, m)
    with pytest.raises(GalleryIndexError, match="expected shape"):
        idx.add(["a", "b", "c"], f, m)
    with pytest.raises(GalleryIndexError, match="masks.*shape"):
        idx.add(["a", "b"], f, m[:, :3])
    dead = m.clone()
    dead[1] = False
    with pytest.raises(GalleryIndexError, match="'b' has no valid position"):
        idx.add(["a", "b"], f, dead)
    bad = {s: v.clone() for s, v in f.items()}
    bad["rgb"][0, 0, 0] = float("nan")
    with pytest.raises(GalleryIndexError, match="NaN"):
        idx.add(["a", "b"], bad, m)
    with pytest.raises(GalleryIndexError, match="JSON"):
        idx.add(["a", "b"], f, m, [{"x": object()}, {}])
    with pytest.raises(GalleryIndexError, match="metadata_rows"):
        idx.add(["a", "b"], f, m, [{}])
    assert len(idx) == 5 and "a" not in idx          # failed adds leave the index unchanged
    with pytest.raises(GalleryIndexError, match="kind"):
        IndexConfig(kind="audio")
    with pytest.raises(GalleryIndexError, match="dtype"):
        GalleryIndex("video", dim=D, dtype="int8")


def test_search_errors():
    idx, _, _ = build(n=10)
    with pytest.raises(GalleryIndexError, match="query feature size"):
        idx.search(torch.randn(4, D + 2), stream="pose")
    with pytest.raises(GalleryIndexError, match=r"\(L, D\)"):
        idx.search(torch.randn(2, 4, D))
    with pytest.raises(GalleryIndexError, match="query_mask"):
        idx.search_batch(torch.randn(2, 4, D), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(GalleryIndexError, match="no valid position"):
        idx.search(torch.randn(4, D), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(GalleryIndexError, match="unknown stream"):
        idx.search(torch.randn(4, D), stream="depth")
    with pytest.raises(GalleryIndexError, match="k must be"):
        idx.search(torch.randn(4, D), k=0)
    assert len(idx.search(torch.randn(4, D), k=50)) == 10      # k is capped at the gallery size


def _tamper(path, fn):
    p = path / "config.json"
    cfg = json.loads(p.read_text())
    fn(cfg)
    p.write_text(json.dumps(cfg))


def test_load_validation(tmp_path):
    idx, _, _ = build(n=12, t=6, dtype="float16")
    d = tmp_path / "g"
    idx.save(d)
    with pytest.raises(GalleryIndexError, match="not a directory"):
        GalleryIndex.load(tmp_path / "nope")
    (d / "config.json").rename(d / "config.bak")
    with pytest.raises(GalleryIndexError, match="config.json: missing"):
        GalleryIndex.load(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(GalleryIndexError, match="invalid JSON"):
        GalleryIndex.load(d)
    (d / "config.bak").rename(d / "config.json")
    good = (d / "config.json").read_text()

    def case(fn, match):
        (d / "config.json").write_text(good)
        _tamper(d, fn)
        with pytest.raises(GalleryIndexError, match=match):
            GalleryIndex.load(d)

    case(lambda c: c.update(version=99), "version 99")
    case(lambda c: c.update(dim=16), r"expected \(12, 6, 16\)")
    case(lambda c: c.update(dtype="float32"), "float32")
    case(lambda c: c.pop("streams"), "missing field")
    case(lambda c: c.update(kind="audio"), "kind")
    case(lambda c: c.update(n_items=13), "13")
    case(lambda c: c["max_len"].update(rgb="6"), "max_len")
    case(lambda c: c["shards"][0].update(file="gallery-00009.safetensors"), "missing")
    (d / "config.json").write_text(good)
    shard = d / "gallery-00000.safetensors"
    tensors = load_file(str(shard))
    tensors["rgb.features"] = tensors["rgb.features"][:, :5].contiguous()
    save_file(tensors, str(shard))
    with pytest.raises(GalleryIndexError, match="'rgb.features'"):
        GalleryIndex.load(d)
    shard.write_bytes(b"garbage")
    with pytest.raises(GalleryIndexError, match="cannot read"):
        GalleryIndex.load(d)
