"""Checkpoints and galleries as Hugging Face Hub repos (``seds.hub``), offline.

The Hub itself is never contacted (``HF_HUB_OFFLINE=1``): a repo "on the Hub" is a snapshot placed in a temporary
Hub cache in ``huggingface_hub``'s own layout (``models--org--name/{blobs,snapshots/<commit>,refs/main}``), checked
by the library's own cache scanner (``scan_cache_dir``) before use; resolution then goes through
``huggingface_hub.snapshot_download`` exactly as it would after a download. The download and upload over the network
are not tested here (README "Checkpoints on the Hugging Face Hub").
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, constants, scan_cache_dir

from seds import hub
from seds.checkpoint import load_checkpoint
from seds.evaluate import main as evaluate_main
from seds.retrieval.engine import EngineConfig, SearchEngine
from tests.assets import tiny_assets, tiny_gallery

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_hub_cache(cache: Path, folder: Path, repo_id: str, repo_type: str = "model", commit: str = COMMIT) -> Path:
    """``folder``'s files as the snapshot ``commit`` of ``repo_id`` in a Hub cache, in huggingface_hub's layout:
    content-addressed blobs, the snapshot's files as relative symlinks to them, ``refs/main`` naming the commit."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snap


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("hub-assets"), n_videos=0, n_sentences=8)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    c = tmp_path / "hub-cache"
    c.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(c))      # read by snapshot_download at call time
    return c


def evaluated_checkpoint(assets, tmp_path) -> Path:
    """A copy of the tiny checkpoint with ``eval_test.json`` from a real ``seds.evaluate`` run in it."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(assets.checkpoint, ckpt)
    assert evaluate_main(["--checkpoint", str(ckpt), "--store", str(assets.store), "--split", "test",
                          "--device", "cpu"]) is not None
    (ckpt / "train_state.pt").write_bytes(b"optimizer state: stays local")
    return ckpt


def test_model_card_is_hub_metadata_and_the_evaluation_table(assets, tmp_path):
    ckpt = evaluated_checkpoint(assets, tmp_path)
    path = hub.write_model_card(ckpt, name="seds-tiny", license="apache-2.0")
    card = ModelCard.load(path)                      # the Hub library parses it
    meta = card.data.to_dict()
    assert meta["library_name"] == "seds" and meta["license"] == "apache-2.0"
    assert {"sign-language", "text-to-video-retrieval", "seds-paper"} <= set(meta["tags"])
    assert meta["seds_variant"] == "paper"
    assert (meta["seds_pose_features"], meta["seds_rgb_features"]) == ("synthetic", "synthetic-proxy")
    assert "datasets" not in meta                   # synthetic data is no Hub dataset, and the card says so
    assert "not on real signing" in card.text
    doc = json.loads((ckpt / "eval_test.json").read_text())
    res = doc["results"][doc["protocol"]]
    rows = [r for r in card.text.splitlines() if r.startswith("| test |")]
    assert len(rows) == 6                            # 3 streams × 2 directions
    fused_t2v = next(r for r in rows if "fused" in r and "text → video" in r).split("|")
    m = res["fused"]["t2v"]
    assert [float(x) for x in fused_t2v[4:7]] == [round(m["R@1"], 1), round(m["R@5"], 1), round(m["R@10"], 1)]


def test_model_card_names_a_real_dataset_and_the_authors_extractors(assets, tmp_path):
    ckpt = tmp_path / "official"
    shutil.copytree(assets.checkpoint, ckpt)
    doc = json.loads((ckpt / "config.json").read_text())
    doc["config"]["data"]["dataset"] = "how2sign"
    doc["config"]["model"]["variant"] = "official"
    doc["info"] = {"converted_from": "/somewhere/h2s_best_model.bin"}
    (ckpt / "config.json").write_text(json.dumps(doc))
    meta = ModelCard(hub.model_card(ckpt)).data.to_dict()
    assert meta["datasets"] == ["how2sign"] and meta["seds_variant"] == "official"
    assert (meta["seds_pose_features"], meta["seds_rgb_features"]) == ("rtmpose", "i3d-bsl1k")


def test_checkpoint_round_trip_through_the_hub_cache_offline(assets, tmp_path, cache, monkeypatch):
    ckpt = evaluated_checkpoint(assets, tmp_path)
    files = hub.push_to_hub(ckpt, "seds-test/seds-tiny", dry_run=True)   # writes the card, uploads nothing
    assert files == ["README.md", "config.json", "eval_test.json", "model.safetensors"]   # never train_state.pt
    put_in_hub_cache(cache, ckpt, "seds-test/seds-tiny")
    scanned = {r.repo_id: r for r in scan_cache_dir(cache).repos}
    assert {f.file_name for f in scanned["seds-test/seds-tiny"].refs["main"].files} == set(files) | {"train_state.pt"}

    for spec in ("seds-test/seds-tiny", "hf-hub:seds-test/seds-tiny", f"seds-test/seds-tiny@{COMMIT}"):
        got = hub.resolve_checkpoint(spec)
        assert got == cache / "models--seds-test--seds-tiny" / "snapshots" / COMMIT, spec
    a, b = load_checkpoint(assets.checkpoint)[0], load_checkpoint(got)[0]
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

    # evaluate by repo id: the same numbers as the local folder, written to the working directory (not the cache)
    cached_eval = (got / "eval_test.json").read_bytes()
    monkeypatch.chdir(tmp_path)
    res = evaluate_main(["--checkpoint", "seds-test/seds-tiny", "--store", str(assets.store), "--device", "cpu"])
    assert json.loads((tmp_path / "eval_test.json").read_text())["results"]["sentence_ids"] == res
    assert res == json.loads((ckpt / "eval_test.json").read_text())["results"]["sentence_ids"]
    assert (got / "eval_test.json").read_bytes() == cached_eval and (got / "eval_test.json").is_symlink()


def test_unresolvable_specs_say_why(tmp_path, cache, monkeypatch):
    with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE is set and it is not in the Hub cache"):
        hub.resolve_checkpoint("seds-test/not-cached")
    with pytest.raises(hub.HubError, match="not a Hub repository id"):
        hub.resolve_checkpoint("hf-hub:no slash here")
    # a local folder wins over a Hub id of the same spelling; a plain missing path stays a path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seds-test" / "local").mkdir(parents=True)
    assert hub.resolve_checkpoint("seds-test/local") == Path("seds-test/local")
    assert hub.resolve_checkpoint("runs/a/b/best") == Path("runs/a/b/best")
    assert hub.parse_spec("hf-hub:seds-test/x@v1") == ("seds-test/x", "v1")


def test_publishing_refuses_offline_and_bad_folders(assets, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.HfApi, "create_repo", lambda *a, **k: pytest.fail("no network call when offline"))
    with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE is set: publishing needs the network"):
        hub.push_to_hub(assets.checkpoint, "seds-test/seds-tiny")
    (tmp_path / "empty").mkdir()
    with pytest.raises(hub.HubError, match="neither a SEDS checkpoint"):
        hub.push_to_hub(tmp_path / "empty", "seds-test/x", dry_run=True)
    with pytest.raises(hub.HubError, match="not a Hub repository id"):
        hub.push_to_hub(assets.checkpoint, "no-org", dry_run=True)
    assert hub.main(["push", str(tmp_path / "empty"), "seds-test/x", "--dry-run"]) == 1


def test_gallery_from_the_hub_cache_answers_like_the_local_one(assets, tmp_path, cache):
    gallery = tiny_gallery(assets)
    files = hub.push_to_hub(gallery, "seds-test/tiny-gallery", dry_run=True)
    assert "README.md" in files and "gallery.json" in files
    put_in_hub_cache(cache, assets.checkpoint, "seds-test/seds-tiny")
    put_in_hub_cache(cache, gallery, "seds-test/tiny-gallery", repo_type="dataset")
    text = assets.specs[0].text
    local = SearchEngine(EngineConfig(checkpoint=str(assets.checkpoint), gallery=str(gallery), device="cpu"))
    remote = SearchEngine(EngineConfig(checkpoint="seds-test/seds-tiny", gallery="hf-hub:seds-test/tiny-gallery",
                                       device="cpu"))
    assert remote.gallery.root.parent.parent.name == "datasets--seds-test--tiny-gallery"
    assert remote.checkpoint_name == "seds-test/seds-tiny" and local.checkpoint_name == str(assets.checkpoint)
    ha, hb = local.query_text(text).hits, remote.query_text(text).hits
    assert ha.keys() == hb.keys() and ha["fused"]
    assert all([(h.id, h.score) for h in ha[s]] == [(h.id, h.score) for h in hb[s]] for s in ha)
