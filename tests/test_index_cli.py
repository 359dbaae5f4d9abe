"""``python -m seds.index build|add|search``: galleries from a feature store (synthetic) and from real
How2Sign clips through the extraction pipeline, checked against the training/evaluation path."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from seds.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from seds.data.dataset import FeatureDataset, collate  # noqa: E402
from seds.index import main  # noqa: E402
from seds.retrieval.gallery import Gallery, checkpoint_fingerprint  # noqa: E402
from tests.assets import tiny_assets  # noqa: E402
from seds.similarity import fine_grained_scores  # noqa: E402

SHARED = Path(__file__).parents[1].parent / "shared"
H2S = SHARED / "data" / "how2sign-mini"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_videos=3, n_sentences=10)


def reference_embeddings(ckpt, store, manifest):
    """Videos through the training path (FeatureDataset → collate → encode_batch_video) and their
    sentences through encode_text: the reference for what a gallery must hold."""
    model, _, cfg, _ = load_checkpoint(ckpt)
    ds = FeatureDataset(store, manifest, max_words=cfg.model.text.max_words)
    with torch.no_grad():
        v = model.encode_batch_video(collate([ds[i] for i in range(len(ds))]))
    return model, cfg, ds, v


def build(args, capsys=None):
    rc = main(args)
    out = capsys.readouterr() if capsys is not None else None
    return rc, out


@pytest.mark.slow
def test_build_matches_training_path_and_search_is_exact(tiny, tmp_path, capsys):
    out = tmp_path / "gallery"
    rc, _ = build(["build", "--checkpoint", str(tiny.checkpoint), "--manifest", str(tiny.manifest),
                   "--store", str(tiny.store), "--out", str(out), "--cache"], capsys)
    assert rc == 0
    g = Gallery.load(out)
    assert len(g.videos) == len(tiny.specs)
    texts = list(dict.fromkeys(s.text for s in tiny.specs))
    assert [g.sentences.meta(i)["text"] for i in g.sentences.ids] == texts
    assert g.info["checkpoint"] == checkpoint_fingerprint(tiny.checkpoint)
    assert len(g.cache) == 3                                  # only rows with a video file are cached
    for vid, video in zip(g.videos.ids[:3], tiny.videos):
        meta = g.videos.meta(vid)
        assert Path(g.video_path(vid)) == video.resolve()
        assert g.thumbnail_path(vid) is not None
        cached = g.cache.get(meta["sha256"])
        assert cached is not None and cached.num_clips == meta["n_clips"]
    assert g.videos.meta(g.videos.ids[5])["video"] == ""      # no file: indexed from the store only

    model, cfg, ds, v = reference_embeddings(tiny.checkpoint, tiny.store, tiny.manifest)
    for s in ("pose", "rgb", "fused"):
        feats, mask = g.videos.stream_data(s)
        ref = torch.nn.functional.normalize(v[s], dim=-1) * v.mask[..., None]
        assert torch.equal(mask.cpu(), v.mask)
        torch.testing.assert_close(feats.float(), ref, atol=2e-3, rtol=0)   # float16 storage

    # text → video: the CLI's ranking is the exhaustive fine-grained ranking of the reference
    query = tiny.specs[4].text
    rc, _ = build(["search", "--checkpoint", str(tiny.checkpoint), "--gallery", str(out), "--text", query,
                   "-k", str(len(ds)), "--json", str(tmp_path / "t2v.json")], capsys)
    assert rc == 0
    hits = json.loads((tmp_path / "t2v.json").read_text())["hits"]
    with torch.no_grad():
        t = model.encode_text([query])
    for s in ("pose", "rgb", "fused"):
        ref = fine_grained_scores(v[s], v.mask, t.words, t.mask, tau=cfg.model.tau).mean[:, 0]
        order = torch.argsort(ref, descending=True, stable=True)
        got = [h["score"] for h in hits[s]]
        np.testing.assert_allclose(got, ref[order].numpy(), atol=3e-3)
        assert hits[s][0]["id"] == ds.ids[int(order[0])]

    # video → text with a gallery video file: features come from the cache, scores match the reference
    rc, cap = build(["search", "--checkpoint", str(tiny.checkpoint), "--gallery", str(out), "--video",
                     str(tiny.videos[1]), "-k", "3", "--json", str(tmp_path / "v2t.json")], capsys)
    assert rc == 0 and "gallery cache" in cap.out
    hits = json.loads((tmp_path / "v2t.json").read_text())["hits"]
    with torch.no_grad():
        words = model.encode_text(texts)
    for s in ("pose", "rgb", "fused"):
        ref = fine_grained_scores(v[s][1:2], v.mask[1:2], words.words, words.mask, tau=cfg.model.tau).mean[0]
        top = torch.topk(ref, 3)
        assert [h["text"] for h in hits[s]] == [texts[int(i)] for i in top.indices]
        np.testing.assert_allclose([h["score"] for h in hits[s]], top.values.numpy(), atol=3e-3)


@pytest.mark.slow
def test_add_is_incremental_and_equals_a_full_build(tiny, tmp_path, capsys):
    common = ["--checkpoint", str(tiny.checkpoint), "--manifest", str(tiny.manifest), "--store", str(tiny.store)]
    assert build(["build", *common, "--out", str(tmp_path / "full")], capsys)[0] == 0
    assert build(["build", *common, "--out", str(tmp_path / "inc"), "--limit", "4"], capsys)[0] == 0
    g4 = Gallery.load(tmp_path / "inc")
    assert len(g4.videos) == 4 and len(g4.sentences) <= 4
    rc, cap = build(["add", *common, "--gallery", str(tmp_path / "inc")], capsys)
    assert rc == 0 and "added 6 video(s)" in cap.out
    rc, cap = build(["add", *common, "--gallery", str(tmp_path / "inc")], capsys)
    assert rc == 0 and "added 0 video(s) and 0 sentence(s)" in cap.out          # idempotent
    full, inc = Gallery.load(tmp_path / "full"), Gallery.load(tmp_path / "inc")
    assert full.videos.ids == inc.videos.ids
    videos_of = lambda g: {g.sentences.meta(i)["text"]: sorted(g.sentences.meta(i)["videos"])  # noqa: E731
                           for i in g.sentences.ids}
    assert videos_of(full) == videos_of(inc)          # sentences learn about videos added later
    assert sum(len(v) for v in videos_of(full).values()) == len(tiny.specs)
    # encoding 4 + 6 videos vs 10 at once pads batches differently: equal up to float16 storage rounding
    for s in full.videos.streams:
        torch.testing.assert_close(full.videos.stream_data(s)[0].float(), inc.videos.stream_data(s)[0].float(),
                                   atol=2e-3, rtol=0)
    q = torch.randn(5, full.videos.config.dim)
    for s in full.videos.streams:
        a = full.videos.search(q, stream=s, k=10)
        b = inc.videos.search(q, stream=s, k=10)
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=2e-3)
        assert {h.id for h in a[:3]} == {h.id for h in b[:3]} or \
            abs(a[2].score - a[3].score) < 2e-3


@pytest.mark.slow
def test_cli_errors_are_clear(tiny, tmp_path, capsys):
    empty_store = tmp_path / "empty-store"
    empty_store.mkdir()
    rc, cap = build(["build", "--checkpoint", str(tiny.checkpoint), "--manifest", str(tiny.manifest),
                     "--store", str(empty_store), "--out", str(tmp_path / "g")], capsys)
    assert rc == 1 and "not in the feature store" in cap.err and "--extract" in cap.err
    # a gallery queried with other weights is refused
    assert build(["build", "--checkpoint", str(tiny.checkpoint), "--manifest", str(tiny.manifest),
                  "--store", str(tiny.store), "--out", str(tmp_path / "g2"), "--limit", "2"], capsys)[0] == 0
    model, loss, cfg, _ = load_checkpoint(tiny.checkpoint)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_checkpoint(tmp_path / "other", model, cfg, loss)
    rc, cap = build(["search", "--checkpoint", str(tmp_path / "other"), "--gallery", str(tmp_path / "g2"),
                     "--text", "anything"], capsys)
    assert rc == 1 and "Rebuild it" in cap.err
    rc, cap = build(["search", "--checkpoint", str(tiny.checkpoint), "--gallery", str(tmp_path / "g2")], capsys)
    assert rc == 1 and "exactly one of --text or --video" in cap.err


@pytest.mark.slow
@pytest.mark.skipif(not (H2S / "manifest.csv").is_file(), reason=f"real How2Sign clips not found at {H2S}")
def test_build_from_real_how2sign_clips_with_extraction(tmp_path, capsys):
    """The real path: How2Sign-mini clips → MediaPipe + Kinetics-400 I3D (the checkpoint says
    i3d-kinetics400) → a gallery; first 1.5 s of 2 labeled clips, ≤ 2 windows each, to stay fast."""
    from seds.config import load_config
    from seds.data.manifest import load_manifest, write_manifest
    from seds.losses import SEDSLoss
    from seds.model import SEDS

    rows = [r for r in load_manifest(H2S / "manifest.csv", dataset="how2sign_mini") if r.labeled][:2]
    manifest = write_manifest(rows, tmp_path / "h2s.csv")
    torch.manual_seed(0)
    cfg = load_config(None, ["model.preset=tiny", "data.dataset=how2sign_mini", "data.rgb_features=i3d-kinetics400",
                             "data.pose_backend=mediapipe"])
    save_checkpoint(tmp_path / "ck", SEDS(cfg.model).eval(), cfg, SEDSLoss(cfg.loss))
    store = tmp_path / "store"
    rc, cap = build(["build", "--checkpoint", str(tmp_path / "ck"), "--manifest", str(manifest), "--store", str(store),
                     "--extract", "--max-seconds", "1.5", "--max-clips", "2", "--out", str(tmp_path / "g"), "--cache"],
                    capsys)
    assert rc == 0, cap.err
    assert "RGB i3d-kinetics400" in cap.err
    g = Gallery.load(tmp_path / "g")
    assert g.videos.ids == [r.id for r in rows]
    assert [g.sentences.meta(i)["text"] for i in g.sentences.ids] == [r.text.strip() for r in rows]
    from seds.data.store import FeatureStore
    fs = FeatureStore(store)
    for r in rows:
        f = fs[r.id]
        assert f.meta["rgb_backend"] == "i3d" and f.meta["pose_backend"] == "mediapipe"
        assert 1 <= f.num_clips <= 2 and f.meta["trimmed"] is True
        meta = g.videos.meta(r.id)
        assert meta["n_clips"] == f.num_clips and meta["sha256"] in g.cache
        assert Path(g.video_path(r.id)) == Path(r.video).resolve()
    model, _, _, v = reference_embeddings(tmp_path / "ck", store, manifest)
    feats, mask = g.videos.stream_data("fused")
    torch.testing.assert_close(feats.float(), torch.nn.functional.normalize(v["fused"], dim=-1) * v.mask[..., None],
                               atol=2e-3, rtol=0)
    # a text query over the real gallery, and a video query answered from the cache
    rc, cap = build(["search", "--checkpoint", str(tmp_path / "ck"), "--gallery", str(tmp_path / "g"),
                     "--text", rows[0].text, "-k", "2"], capsys)
    assert rc == 0 and rows[0].id in cap.out and rows[1].id in cap.out
    rc, cap = build(["search", "--checkpoint", str(tmp_path / "ck"), "--gallery", str(tmp_path / "g"),
                     "--video", rows[1].video, "-k", "2"], capsys)
    assert rc == 0 and "gallery cache" in cap.out


@pytest.mark.slow
def test_two_shards_and_merge_equal_one_build(tiny, tmp_path, capsys, monkeypatch):
    """``build --shard i/N`` on each machine + ``merge`` == one ``build``: same ids in the same order, same
    metadata, same stored features and pooled vectors, same sentence index; a missing shard, a part from
    another manifest and a mix of shard counts are refused with messages that say what to do."""
    from seds.data.manifest import load_manifest
    from seds.extract.runner import select_shard
    common = ["--checkpoint", str(tiny.checkpoint), "--manifest", str(tiny.manifest), "--store", str(tiny.store)]
    manifest = load_manifest(tiny.manifest)
    assert all(len(select_shard(manifest, i, 2)) for i in range(2))   # both shards have work
    assert build(["build", *common, "--out", str(tmp_path / "one")], capsys)[0] == 0
    out = tmp_path / "sharded"
    assert build(["build", *common, "--out", str(out), "--shard", "1/2"], capsys)[0] == 0
    rc, cap = build(["merge", *common, "--out", str(out)], capsys)
    assert rc == 1 and "1 of 2 shard part(s) missing (shard(s) [0])" in cap.err and "--shard i/2" in cap.err
    lost = [r.id for r in select_shard(manifest, 0, 2)]
    assert f"{len(lost)} video(s) not encoded (e.g. {lost[:3]})" in cap.err
    # a stale part of a 3-shard run is refused, as is a part built from a shorter manifest
    assert build(["build", *common, "--out", str(out), "--shard", "2/3"], capsys)[0] == 0
    rc, cap = build(["merge", *common, "--out", str(out)], capsys)
    assert rc == 1 and "different shard counts [2, 3]" in cap.err
    import shutil
    shutil.rmtree(out / "parts" / "part-00002-of-00003")
    assert build(["build", *common, "--out", str(out), "--shard", "0/2", "--limit", "3"], capsys)[0] == 0
    rc, cap = build(["merge", *common, "--out", str(out)], capsys)
    assert rc == 1 and "built from another manifest" in cap.err
    # shard 0 again, from torchrun's environment
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    rc, cap = build(["build", *common, "--out", str(out)], capsys)
    assert rc == 0 and "shard 0/2" in cap.out
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    from seds.retrieval.gallery_index import GalleryIndex
    parts = [GalleryIndex.load(out / "parts" / f"part-0000{i}-of-00002" / "videos") for i in range(2)]
    rc, cap = build(["merge", *common, "--out", str(out), "--keep-parts"], capsys)
    assert rc == 0 and f"merged 2 part(s): {len(manifest)} video(s)" in cap.out
    rc, cap = build(["merge", *common, "--out", str(out)], capsys)      # merging again gives the same gallery
    assert rc == 0 and not (out / "parts").exists()

    one, two = Gallery.load(tmp_path / "one"), Gallery.load(out)
    assert two.videos.ids == one.videos.ids == manifest.ids()
    assert [two.videos.meta(i) for i in two.videos.ids] == [one.videos.meta(i) for i in one.videos.ids]
    assert two.info["checkpoint"] == one.info["checkpoint"] and two.info["built_from"] == one.info["built_from"]
    for s in one.videos.streams:
        (f1, m1), (f2, m2) = one.videos.stream_data(s), two.videos.stream_data(s)
        assert torch.equal(m1, m2)
        for part in parts:           # the merge moves each part's stored features and pooled vectors bit for bit
            rows = torch.tensor([two.videos.row(v) for v in part.ids])
            pf = part.stream_data(s)[0]
            assert torch.equal(f2[rows, :pf.shape[1]], pf) and not f2[rows, pf.shape[1]:].any()
            assert np.array_equal(two.videos.pooled_vectors(s)[rows.numpy()], part.pooled_vectors(s))
        # vs one process: the shards batch other videos together, which moves the float32 encodings by ~1e-6
        # (as `add` does, see above); float16 storage then rounds a few values one step the other way
        step = f1.float().abs() * 2.0 ** -10 + 2.0 ** -24
        assert ((f1.float() - f2.float()).abs() <= step).all(), f"{s}: more than one float16 step apart"
        assert (f1 != f2).float().mean() < 0.01
        np.testing.assert_allclose(one.videos.pooled_vectors(s), two.videos.pooled_vectors(s), atol=1e-3)
    assert two.sentences.ids == one.sentences.ids
    assert [two.sentences.meta(i) for i in two.sentences.ids] == [one.sentences.meta(i) for i in one.sentences.ids]
    assert torch.equal(one.sentences.stream_data("text")[0], two.sentences.stream_data("text")[0])
    assert sorted(p.name for p in (out / "thumbnails").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one" / "thumbnails").iterdir())
