"""seds.retrieval.recordings: an index of recordings built whole and in 2 shards answers identically; search finds
a sentence in the right recording at the right time; a recording's timeline read back from the index equals the
coarse pass; the span search over candidate regions equals exhaustive localisation on every recording; the CLI
(build --recordings / search --recordings --text / --video-features).

Float scores rarely tie, so the 1 = 2 shards comparison is repeated on an index of one recording under three ids
(every chunk score ties three ways), where an order that depended on how recordings are split into shards would
differ (this negative control was not run by hand)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seds.data.store import FeatureStore, save_features
from seds.synthetic.recordings import make_recording
from seds.index import main as index_main
from seds.retrieval.gallery import checkpoint_fingerprint
from seds.similarity import pooled
from seds.encode import encode_videos
from seds.retrieval.localise import LocaliseConfig, Localiser, encode_recording, span_features
from seds.retrieval.recordings import (RecordingArchive, RecordingIndexError, RecordingIndexWriter,
                                       build_recording_index, rescore_hits)
from seds.similarity import fine_grained_scores

from conftest import REPO
from test_localise import demo, iou

CKPT = REPO / "checkpoints" / "demo"


def recordings():
    model, data = demo()
    test = data.sentences("test")
    return [make_recording(data, test[i:i + 3], seed=i, id=f"rec{i}") for i in (0, 3, 6)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model, _ = demo()
    recs = recordings()
    root = tmp_path_factory.mktemp("recidx")
    fp = checkpoint_fingerprint(CKPT)
    build_recording_index(root / "whole", model, fp, (r.features for r in recs))
    for i, part in enumerate(([recs[0], recs[2]], [recs[1]])):
        build_recording_index(root / "sharded" / "parts" / f"{i}-of-2", model, fp, (r.features for r in part))
    return model, recs, root, fp


def test_two_shards_answer_as_one(built):
    model, recs, root, fp = built
    one, two = RecordingArchive(root / "whole", fp), RecordingArchive(root / "sharded", fp)
    assert one.recording_ids == two.recording_ids == ["rec0", "rec3", "rec6"]
    loc = Localiser(model)
    for ps in (recs[1].sentences[0], recs[2].sentences[2]):
        q, qmask, *_ = loc.query_text(ps.text)
        a = one.search(q, qmask, model.cfg.tau, k=5, candidates=8)
        b = two.search(q, qmask, model.cfg.tau, k=5, candidates=8)
        assert a == b and len(a["fused"]) == 5
    with pytest.raises(RecordingIndexError, match="another checkpoint"):
        RecordingArchive(root / "whole", "not-this-one")


def test_ties_do_not_depend_on_sharding(tmp_path):
    """The same recording under three ids: every chunk score ties three ways; the order must still be the same."""
    model, _ = demo()
    rec = recordings()[0].features
    tl = encode_recording(model, rec)
    fp = "x"
    w = RecordingIndexWriter(tmp_path / "one", fp, model.cfg.dim, 32)
    for name in ("b", "a", "c"):
        tl.id = name
        w.add(tl)
    w.close()
    for i, names in enumerate((["c", "a"], ["b"])):
        w = RecordingIndexWriter(tmp_path / "two" / "parts" / f"{i}-of-2", fp, model.cfg.dim, 32)
        for name in names:
            tl.id = name
            w.add(tl)
        w.close()
    loc = Localiser(model)
    q, qmask, *_ = loc.query_text("a b c")
    a = RecordingArchive(tmp_path / "one").search(q, qmask, model.cfg.tau, k=6, candidates=3)
    b = RecordingArchive(tmp_path / "two").search(q, qmask, model.cfg.tau, k=6, candidates=3)
    assert a == b and [h.recording for h in a["pose"][:3]] == ["a", "b", "c"]


def test_search_finds_the_sentence_and_equals_exhaustive_localisation(built):
    model, recs, root, fp = built
    arc = RecordingArchive(root / "whole", fp)
    loc = Localiser(model, LocaliseConfig(rescore=0, top_k=1))
    tl = arc.timeline("rec3")
    direct = encode_recording(model, recs[1].features)
    assert torch.equal(tl.streams["fused"], direct.streams["fused"]) and np.array_equal(tl.signing, direct.signing)
    ps = recs[1].sentences[0]
    q, qmask, *_ = loc.query_text(ps.text)
    hits = arc.search(q, qmask, model.cfg.tau, k=1, candidates=10_000)      # every chunk: exhaustive
    best = max(((r, loc.localise(arc.timeline(r), ps.text).spans["fused"][0]) for r in arc.recording_ids),
               key=lambda x: x[1].score)
    h = hits["fused"][0]
    assert (h.recording, h.start_s, h.end_s) == (best[0], best[1].start_s, best[1].end_s)
    assert h.score == pytest.approx(best[1].score, abs=1e-6)     # float32 products of other shapes
    assert h.recording == "rec3" and iou(h.start_s, h.end_s, ps.start_s, ps.end_s) >= 0.5


def test_memory_and_layout(built):
    model, recs, root, fp = built
    arc = RecordingArchive(root / "whole", fp)
    n = sum(r.features.num_clips for r in recs)
    mem = arc.memory_bytes()
    part = arc.parts[0]
    tl = arc.timeline("rec0")
    for ci in (0, 1, len(part.chunk_windows) - 1):       # chunk vectors = pooled() of their windows
        a, b = part.chunk_windows[ci]
        if b <= tl.num_windows:
            want = pooled(tl.streams["rgb"][a:b].float()[None], torch.ones(1, b - a, dtype=torch.bool))[0]
            assert torch.allclose(part.chunks["rgb"][ci], want, atol=1e-6)
    assert mem["mapped"] == n * model.cfg.dim * 2 * 3
    assert 0 < arc.hours * 3600 == pytest.approx(sum(r.features.num_frames / 24.0 for r in recs))
    with pytest.raises(RecordingIndexError, match="already holds"):
        RecordingIndexWriter(root / "whole", fp, model.cfg.dim, 32)
    (root / "half" / "parts" / "0-of-2").mkdir(parents=True)
    (root / "half" / "parts" / "0-of-2" / "index.json").write_text((root / "whole" / "index.json").read_text())
    with pytest.raises(RecordingIndexError, match="incomplete"):
        RecordingArchive(root / "half")


def test_index_wide_exact_rescoring(built):
    """The best n hits of each stream get the fine-grained score of their span encoded alone (checked against
    encoding each span here), come first by that score; hits of a recording without features keep their timeline
    score (the negative control: with no features nothing changes)."""
    model, recs, root, fp = built
    arc = RecordingArchive(root / "whole", fp)
    loc = Localiser(model, LocaliseConfig(rescore=0))
    feats = {r.features.meta["id"]: r.features for r in recs}
    q, qmask, *_ = loc.query_text(recs[1].sentences[1].text)
    hits = arc.search(q, qmask, model.cfg.tau, k=6)
    same = rescore_hits(loc, hits, q, qmask, lambda rid: None, n=3)
    assert same == {s: list(hs) for s, hs in hits.items()}
    out = rescore_hits(loc, hits, q, qmask, lambda rid: feats.get(rid) if rid != "rec6" else None, n=3)
    for s, hs in out.items():
        assert [h.rank for h in hs] == list(range(1, len(hs) + 1)) and len(hs) == len(hits[s])
        ex = [h for h in hs if h.exact]
        want = [h for h in hits[s][:3] if h.recording != "rec6"]
        assert len(ex) == len(want) and hs[:len(ex)] == ex
        assert [h.score for h in ex] == sorted((h.score for h in ex), reverse=True)
        for h in ex:
            f = feats[h.recording]
            assert (f.clip_starts[h.first] / f.fps, (f.clip_starts[h.stop - 1] + 16) / f.fps) == \
                pytest.approx((h.start_s, h.end_s))
            emb, mask = encode_videos(model, [span_features(f, h.first, h.stop, model.cfg.max_clips)])
            ref = fine_grained_scores(emb[s], mask, q[s][None], qmask[None], tau=model.cfg.tau).mean[0, 0]
            assert h.score == pytest.approx(float(ref), abs=1e-5) and h.coarse != h.score
        assert all(not h.exact and h.score == h.coarse for h in hs[len(ex):])


@pytest.mark.slow
def test_cli_build_and_search(tmp_path, capsys):
    model, data = demo()
    store = FeatureStore(tmp_path / "store", create=True)
    recs = recordings()[:2]
    for r in recs:
        store.save(r.features.meta["id"], r.features)
    query = data.make_features(data.sentences("test")[4])            # sentence 4 is signed in rec3 (2nd of 3)
    save_features(tmp_path / "q.safetensors", query, "q")
    args = ["--checkpoint", str(CKPT), "--store", str(tmp_path / "store")]
    assert index_main(["build", "--recordings", *args, "--out", str(tmp_path / "idx")]) == 0
    assert index_main(["search", "--checkpoint", str(CKPT), "--recordings", str(tmp_path / "idx"), "--text",
                       recs[1].sentences[0].text, "-k", "3", "--json", str(tmp_path / "t.json")]) == 0
    doc = json.loads((tmp_path / "t.json").read_text())
    top = doc["hits"]["fused"][0]
    ps = recs[1].sentences[0]
    assert top["recording"] == "rec3" and iou(top["start_s"], top["end_s"], ps.start_s, ps.end_s) >= 0.5
    assert not top["exact"] and "rescore" not in doc["timings"]
    assert index_main(["search", *args, "--recordings", str(tmp_path / "idx"), "--text", ps.text, "-k", "3",
                       "--rescore", "2", "--json", str(tmp_path / "e.json")]) == 0     # --store: exact re-scoring
    doc = json.loads((tmp_path / "e.json").read_text())
    assert [h["exact"] for h in doc["hits"]["fused"]] == [True, True, False] and "rescore" in doc["timings"]
    assert index_main(["search", "--checkpoint", str(CKPT), "--recordings", str(tmp_path / "idx"),
                       "--video-features", str(tmp_path / "q.safetensors"), "-k", "3",
                       "--json", str(tmp_path / "v.json")]) == 0
    doc = json.loads((tmp_path / "v.json").read_text())
    assert set(doc["hits"]) == {"pose", "rgb", "fused"} and len(doc["hits"]["pose"]) == 3
    assert doc["hits"]["fused"][0]["recording"] == "rec3"        # the query clip's sentence is signed there
    out = capsys.readouterr().out
    assert "rec3" in out
    assert index_main(["search", "--checkpoint", str(CKPT), "--recordings", str(tmp_path / "nothing"),
                       "--text", "x"]) == 1
    assert "no recordings index" in capsys.readouterr().err
