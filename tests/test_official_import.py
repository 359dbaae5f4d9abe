"""Importing the authors' processed features (synthetic files in their exact formats) into a feature
store: the store holds the files' keypoints and features, reads back as their batch, and the project's
evaluate / index build / train run on it."""
from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from seds.data.official import OfficialDataset, main as official_main, official_collate, official_keypoints
from seds.data.official_batch import OfficialPreprocess, official_sample
from seds.data.official_format import OfficialPaths, read_annotations, read_pose, read_rgb
from tests.official_synthetic import write_official_synthetic
from seds.data.store import FeatureStore
from seds.keypoints import coco_wholebody_to_seds


class OfficialFilesDataset:
    """The reference: the authors' files read in place (no store), in annotation order, items as
    :class:`OfficialDataset` gives them."""

    def __init__(self, annotations, pose_dir, rgb_dir, cfg: OfficialPreprocess = OfficialPreprocess()):
        self.videos = read_annotations(annotations)
        self.pose_dir, self.rgb_dir, self.cfg = Path(pose_dir), Path(rgb_dir), cfg
        self.ids = [v.new_video_name for v in self.videos]
        self.texts = [v.text for v in self.videos]
        self.sentence_ids = [v.sentence_id for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        v = self.videos[i]
        pose = read_pose(self.pose_dir / f"{v.new_video_name}.pkl")
        kp = pose.keypoints[np.argsort(pose.frame_numbers, kind="stable")]
        s = official_sample(kp, read_rgb(self.rgb_dir / f"{v.new_video_name}.pkl"), self.cfg, name=v.new_video_name)
        return {**s, "id": v.new_video_name, "sentence_id": v.sentence_id, "text": v.text}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _import(src, store, split="test", *extra):
    paths = OfficialPaths.under(src, split)
    return official_main(["import", "--annotations", str(src / "data_h2" / f"{split}.pkl"), "--pose-dir",
                          str(paths.pose_dir), "--rgb-dir", str(paths.rgb_dir), "--split", split, "--out",
                          str(store), *extra])


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    src = tmp_path_factory.mktemp("official_src")
    rows = write_official_synthetic(src, "test")
    store = tmp_path_factory.mktemp("official_store") / "store"
    assert _import(src, store) == 0
    return src, store, rows


def test_store_holds_the_files_keypoints_and_features(imported):
    src, store, rows = imported
    fs = FeatureStore(store)
    paths = OfficialPaths.under(src, "test")
    assert sorted(fs.ids()) == sorted(r.new_video_name for r in rows)
    for r in rows:
        f = fs[r.new_video_name]
        pose = read_pose(paths.pose(r.new_video_name))
        n = len(pose.keypoints)
        np.testing.assert_array_equal(official_keypoints(f), coco_wholebody_to_seds(pose.keypoints, ("face", "mouth")))
        assert f.meta["official_source_frames"] == n and f.num_frames == max(n, 16)
        if n < 16:    # padding repeats the last frame
            assert (f.keypoints[n:] == f.keypoints[n - 1]).all()
        np.testing.assert_array_equal(f.rgb, read_rgb(paths.rgb(r.new_video_name)))
        assert f.meta["sentence_id"] == r.sentence_id and f.meta["text"] == r.text
        assert len(f.clip_starts) == len(f.rgb) and (np.diff(f.clip_starts) >= 0).all()
    with open(store / "manifest_test.csv", newline="") as fh:
        man = list(csv.DictReader(fh))
    assert [m["id"] for m in man] == [r.new_video_name for r in rows]          # the authors' dataset order
    assert [m["sentence_id"] for m in man] == ["synA_0", "synA_0", "synB_3", "synC_1", "synD_2"]
    assert man[2]["text"] == man[3]["text"] == "Hi!"                           # same text, two ids


def test_store_reads_back_as_the_files_batch(imported):
    src, store, rows = imported
    ds = OfficialDataset(store, store / "manifest_test.csv", split="test")
    from_store = official_collate([ds[i] for i in range(len(ds))])
    paths = OfficialPaths.under(src, "test")
    in_place = official_collate([official_sample(read_pose(paths.pose(v.new_video_name)).keypoints,
                                                 read_rgb(paths.rgb(v.new_video_name)))
                                 for v in read_annotations(src / "data_h2" / "test.pkl")])
    files = OfficialFilesDataset(src / "data_h2" / "test.pkl", paths.pose_dir, paths.rgb_dir)
    from_files = official_collate([files[i] for i in range(len(files))])
    assert files.sentence_ids == ds.sentence_ids and files.ids == ds.ids and files.texts == ds.texts
    for k in ("left", "right", "body", "clip_starts", "clip_mask", "rgb"):
        assert torch.equal(from_store[k], in_place[k]) and torch.equal(from_files[k], in_place[k]), k
    assert from_store["sentence_ids"] == ds.sentence_ids == [r.sentence_id for r in rows]
    assert from_store["ids"] == ds.ids and from_store["text"] == [r.text for r in rows]


def test_unsafe_or_broken_files_fail_alone_with_clear_messages(tmp_path, capsys):
    src = tmp_path / "src"
    rows = write_official_synthetic(src, "test")
    paths = OfficialPaths.under(src, "test")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    paths.pose(rows[1].new_video_name).write_bytes(pickle.dumps({"keypoints": Evil(), "img_list": ["a_1.jpg"]}))
    paths.rgb(rows[3].new_video_name).unlink()
    rc = _import(src, tmp_path / "store")
    cap = capsys.readouterr()
    assert rc == 1 and not marker.exists()
    assert f"{rows[1].new_video_name}.pkl: refusing to load" in cap.err and "system" in cap.err
    assert "I3D feature pickle not found" in cap.err
    assert sorted(FeatureStore(tmp_path / "store").ids()) == sorted(r.new_video_name for i, r in enumerate(rows)
                                                                    if i not in (1, 3))
    with open(tmp_path / "store" / "failures_test.csv", newline="") as fh:
        assert [r["id"] for r in csv.DictReader(fh)] == [rows[1].new_video_name, rows[3].new_video_name]
    # an unsafe annotation file stops the run before anything is written
    (src / "data_h2" / "test.pkl").write_bytes(pickle.dumps({"s": Evil()}))
    assert _import(src, tmp_path / "store2") == 2 and not marker.exists()
    assert "test.pkl: refusing to load" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_and_index_build_run_on_the_imported_store(imported, tmp_path, capsys):
    """The paper-variant model (tiny, random init) on the imported store: the CLIs start and finish."""
    from seds.checkpoint import save_checkpoint
    from seds.config import load_config
    from seds.evaluate import main as evaluate_main
    from seds.index import Gallery, main as index_main
    from seds.losses import SEDSLoss
    from seds.model import SEDS

    src, store, rows = imported
    torch.manual_seed(0)
    cfg = load_config(None, ["model.preset=tiny", "model.max_clips=64", f"data.store={store}"])
    ck = save_checkpoint(tmp_path / "ck", SEDS(cfg.model).eval(), cfg, SEDSLoss(cfg.loss))
    res = evaluate_main(["--checkpoint", str(ck), "--split", "test", "--store", str(store),
                         "--out", str(tmp_path / "e.json"), "--device", "cpu"])
    assert 0 <= res["fused"]["t2v"]["R@1"] <= 100
    # the sentence_ids protocol groups by sentence id (4: one text recurs under two ids), distinct by text (3)
    assert "test: 5 videos, 4 sentence ids, 3 distinct sentences" in capsys.readouterr().out
    out = json.loads((tmp_path / "e.json").read_text())["results"]
    assert out["sentence_ids"]["fused"]["t2v"]["n_queries"] == 4 and out["distinct"]["fused"]["t2v"]["n_queries"] == 3
    assert index_main(["build", "--checkpoint", str(ck), "--manifest", str(store / "manifest_test.csv"),
                       "--store", str(store), "--out", str(tmp_path / "g"), "--no-thumbnails", "--device", "cpu"]) == 0
    g = Gallery.load(tmp_path / "g")
    assert g.videos.ids == [r.new_video_name for r in rows]


@pytest.mark.slow
def test_train_runs_on_an_imported_store(tmp_path):
    """The same files imported as train and val splits; one short epoch of the paper variant."""
    from seds.config import load_config
    from seds.train import train

    src, store = tmp_path / "src", tmp_path / "store"
    for split in ("train", "val"):
        write_official_synthetic(src, split)
        assert _import(src, store, split) == 0
    out = tmp_path / "run"
    tcfg = load_config(None, ["model.preset=tiny", "model.max_clips=64", f"data.store={store}",
                              "train.epochs=1", "train.batch_size=4", "train.eval_batch_size=8",
                              "train.warmup_epochs=0", f"train.out={out}", "train.seed=0"])
    result = train(tcfg, progress=False)
    assert len(result["history"]) == 1 and np.isfinite(result["history"][0]["loss"])


def test_frames_are_put_in_frame_number_order(tmp_path):
    """A pose file listing its frames out of order is stored (and read in place) sorted by frame number."""
    from seds.data.official_format import write_pose

    src = tmp_path / "src"
    rows = write_official_synthetic(src, "test")
    paths = OfficialPaths.under(src, "test")
    name = rows[0].new_video_name
    pose = read_pose(paths.pose(name))
    perm = np.random.RandomState(0).permutation(len(pose.img_list))
    write_pose(paths.pose(name), pose.keypoints[perm], [pose.img_list[i] for i in perm])
    assert _import(src, tmp_path / "store") == 0
    f = FeatureStore(tmp_path / "store")[name]
    np.testing.assert_array_equal(official_keypoints(f), coco_wholebody_to_seds(pose.keypoints, ("face", "mouth")))
    assert f.meta["reordered_frames"] is True
    files = OfficialFilesDataset(src / "data_h2" / "test.pkl", paths.pose_dir, paths.rgb_dir)
    ref = official_sample(pose.keypoints, read_rgb(paths.rgb(name)))
    for k in ("left", "right", "body", "clip_starts"):
        np.testing.assert_array_equal(files[0][k], ref[k])
