"""The authors' released model, served: a converted (random-weight, reduced-size) `official` checkpoint, a gallery
built by ``python -m seds.index build`` from a store imported from files in the authors' formats, and the engine
answering text and video queries with the official similarity; the extractor plan (RTMPose / BSL-1K I3D vs the
MediaPipe / Kinetics-400 substitutes). Synthetic features and random weights: only the plumbing is tested.
"""
from __future__ import annotations

import json

import cv2

import numpy as np
import pytest
import torch

from seds.checkpoint import load_checkpoint
from seds.config import Config, model_config
from seds.data.features import VideoFeatures
from seds.data.official import OfficialDataset, official_collate
from seds.data.official_batch import official_sample
from tests.official_synthetic import synthetic_keypoints
from seds.encode import EncodeError, encode_videos
from seds.variants.official import official_item
from seds.evaluate import encode_split, score_matrices
from seds.evaluate import main as evaluate_main
from seds.extract.factory import BSL1K, ExtractorPlan, plan_extractors
from seds.extract.official_export import OfficialExporter, OfficialQueryExtractor
from seds.extract.pose import COCO_WHOLEBODY, PoseEstimator
from seds.extract.video import read_video
from seds.index import main as index_main
from seds.retrieval.engine import NOTE_EXTRACTED, NOTE_SUBSTITUTES, EngineConfig, SearchEngine
from tests.official_app_assets import MINI

CONVERTED = {"converted_from": "authors' SEDS checkpoint", "source_file": "h2s_best_model.bin"}


def no_rtmpose(name):
    return None, "no RTMPose ONNX files here"


# --- the extractor plan (no model needed) -------------------------------------------------------------

def test_plan_for_the_authors_weights_names_the_substitutes():
    cfg = Config(model=model_config("official"))
    plan, est = plan_extractors(cfg, CONVERTED, "auto", None, probe=no_rtmpose)
    assert est is None and (plan.trained_pose, plan.trained_rgb) == ("rtmpose", BSL1K)
    assert (plan.pose_backend, plan.rgb_features) == ("mediapipe", "i3d-kinetics400")
    assert not plan.pose_matches and not plan.rgb_matches
    d = plan.describe()
    assert d["pose"].startswith("MediaPipe") and "substitute for RTMPose" in d["pose"] and "ONNX" in d["pose"]
    assert "substitute for I3D, BSL-1K weights" in d["rgb"] and "--i3d-weights" in d["rgb"]


def test_plan_uses_rtmpose_and_the_given_i3d_weights_when_available(tmp_path):
    cfg = Config(model=model_config("official"))
    sentinel = object()
    plan, est = plan_extractors(cfg, CONVERTED, "auto", str(tmp_path / "bsl1k.pth.tar"),
                                probe=lambda name: (sentinel, ""))
    assert est is sentinel and plan.pose_backend == "rtmpose" and plan.rgb_features == f"i3d:{tmp_path / 'bsl1k.pth.tar'}"
    assert plan.pose_matches and plan.rgb_matches
    assert all("matches the checkpoint's training features" in line for line in plan.describe().values())
    # an explicit backend is used as given, and said to be a substitute
    plan, _ = plan_extractors(cfg, CONVERTED, "mediapipe", None, probe=lambda n: pytest.fail("no probe"))
    assert plan.pose_backend == "mediapipe" and "--pose-backend" in plan.describe()["pose"]


def test_plan_of_a_project_checkpoint_follows_its_data_section():
    cfg = Config(model=model_config("tiny"))
    cfg.data.pose_backend, cfg.data.rgb_features = "mediapipe", "i3d-kinetics400"
    plan, _ = plan_extractors(cfg, {}, "auto", None, probe=lambda n: pytest.fail("no probe for mediapipe"))
    assert plan == ExtractorPlan("mediapipe", "i3d-kinetics400", "mediapipe", "i3d-kinetics400")
    assert plan.pose_matches and plan.rgb_matches
    cfg.data.pose_backend = "synthetic"
    plan, _ = plan_extractors(cfg, {}, "auto", None)
    assert plan.pose_backend == "mediapipe" and "training features: synthetic" in plan.describe()["pose"]


# --- served: index build, engine, live queries (a converted reduced official checkpoint) -------------------

@pytest.fixture(scope="module")
def served(official_app):
    a = official_app
    model, _, cfg, info = load_checkpoint(a.checkpoint)
    return a, model.eval(), cfg, info


@pytest.mark.slow
def test_gallery_scores_are_the_official_scores(served):
    a, model, cfg, info = served
    assert cfg.model.variant == "official" and info["converted_from"]
    ds = OfficialDataset(a.store, a.store / "manifest_test.csv", split="test")
    enc = encode_split(model, ds, batch_size=8, collate_fn=official_collate)
    ref = score_matrices(enc, cfg.model.tau, softmax_over_padding=True)      # (videos, texts per video)
    eng = SearchEngine(EngineConfig(checkpoint=str(a.checkpoint), gallery=str(a.gallery), device="cpu",
                                    pose_backend="mediapipe", top_k=5))
    for j, text in enumerate(enc.texts):
        q = eng.query_text(text, k=len(ds))
        for s in ("pose", "rgb", "fused"):
            got = {h.id: h.score for h in q.hits[s]}
            want = {vid: float(ref[s][i, j]) for i, vid in enumerate(enc.ids)}
            assert got.keys() == want.keys()
            for vid in want:                       # the gallery stores float16 features
                assert got[vid] == pytest.approx(want[vid], abs=2e-3), (s, text, vid)
            # the similarity is the official one: the paper variant's masked softmax gives other numbers
    masked = score_matrices(enc, cfg.model.tau, softmax_over_padding=False)
    assert (masked["fused"] - ref["fused"]).abs().max() > 1e-2


@pytest.mark.slow
def test_gallery_video_query_gives_the_official_scores_and_why(served):
    a, model, cfg, _ = served
    if not a.videos:
        pytest.skip(f"How2Sign-mini clips are not present ({MINI}): they stand in for the gallery's video files")
    ds = OfficialDataset(a.store, a.store / "manifest_test.csv", split="test")
    enc = encode_split(model, ds, batch_size=8, collate_fn=official_collate)
    ref = score_matrices(enc, cfg.model.tau, softmax_over_padding=True)
    eng = SearchEngine(EngineConfig(checkpoint=str(a.checkpoint), gallery=str(a.gallery), device="cpu",
                                    pose_backend="mediapipe", top_k=5))
    # video → text from the gallery cache: the video's own features, the same scores
    vid, path = next(iter(a.videos.items()))
    vq = eng.query_video(str(path), k=10)
    i = enc.ids.index(vid)
    assert vq.source == "cache" and vq.gallery_id == vid
    for h in vq.hits["fused"]:
        j = enc.texts.index(h.meta["text"])
        assert h.score == pytest.approx(float(ref["fused"][i, j]), abs=2e-3)
    # Why: [CLS] counts in the score but only clip rows are drawn, words are BPE pieces SOT … EOT
    ex = eng.explain_video_query(vq, vq.hits["fused"][0].id)
    n = int(vq.clip_mask.sum()) - 1
    assert ex.matrices["fused"].shape == (n, len(ex.words)) and len(ex.times) == n
    assert ex.words[0] == "[SOT]" and ex.words[-1] == "[EOT]"
    assert ex.scores["fused"] == pytest.approx(vq.hits["fused"][0].score, abs=2e-3)


@pytest.mark.slow
def test_paper_layout_features_are_refused_with_what_to_do(served):
    _, model, _, _ = served
    rs = np.random.RandomState(0)
    feats = VideoFeatures(keypoints=rs.uniform(0, 1, (40, 87, 3)), rgb=rs.normal(size=(3, 1024)),
                          clip_starts=np.array([0, 10, 20]), meta={"id": "extracted-by-seds.extract"})
    with pytest.raises(EncodeError, match="authors' layout.*seds.data.official import"):
        encode_videos(model, [feats])


@pytest.mark.slow
def test_index_build_extract_is_refused_for_official_checkpoints(served, tmp_path, capsys):
    a, *_ = served
    rc = index_main(["build", "--checkpoint", str(a.checkpoint), "--manifest", str(a.manifest), "--store",
                     str(tmp_path / "empty"), "--extract", "--out", str(tmp_path / "g")])
    assert rc == 1 and "authors' layout" in capsys.readouterr().err


class FakeWholeBody(PoseEstimator):
    """RTMPose-like COCO-WholeBody keypoints (the synthetic generator's signer, scaled to the frame)."""

    name = "fake-rtmpose"
    layout = COCO_WHOLEBODY

    def _estimate(self, frames, progress):
        n, h, w = frames.shape[:3]
        k = synthetic_keypoints(np.random.RandomState(n), n)
        k[..., 0] *= w / 256
        k[..., 1] *= h / 256
        return k


class FakeRGB:
    name = "fake-rgb"

    def features(self, frames, starts, window=16):
        return np.stack([np.full(1024, float(frames[s:s + window].mean()) / 255 + 0.01 * s, np.float32) for s in starts])


@pytest.mark.slow
def test_live_video_query_uses_the_authors_layout(served):
    a, model, _, _ = served
    clips = sorted(MINI.glob("*.mp4")) if MINI.is_dir() else []
    new = [c for c in clips if c.resolve() not in set(a.videos.values())]
    if not new:
        pytest.skip(f"How2Sign-mini clips are not present ({MINI})")
    exporter = OfficialExporter(pose_estimator=FakeWholeBody(), rgb_extractor=FakeRGB())
    res = OfficialQueryExtractor(exporter, max_seconds=4.0).extract(new[0])
    f = res.features
    assert f.meta["source_format"] == "seds-official" and len(res.frames) == len(res.keep) == f.meta["n_frames"]
    assert res.frames.shape[1:3] == (256, 256)
    # exactly the batch of the authors' loader for the same keypoint and I3D files
    r = exporter.extract_frames(read_video(new[0], fps=24.0, max_seconds=4.0, trim_long=True).frames)
    want, got = official_sample(r["keypoints"], r["rgb"]), official_item(f)
    for k in ("left", "right", "body", "clip_starts", "clip_mask", "rgb"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # through the engine: injected extractors, three streams of hits, notes name the substitutes
    eng = SearchEngine(EngineConfig(checkpoint=str(a.checkpoint), gallery=str(a.gallery), device="cpu",
                                    max_seconds=4.0), pose_estimator=FakeWholeBody(), rgb_extractor=FakeRGB())
    q = eng.query_video(str(new[0]))
    assert q.source == "extracted" and set(q.hits) == {"pose", "rgb", "fused"}
    assert q.clip_mask.shape == (65,) and bool(q.clip_mask[0])
    assert len(q.clip_times) == f.num_clips == int(q.clip_mask.sum()) - 1
    notes = {n.code: n.values for n in q.notes}          # data: the app words them (demo/backend.py)
    assert notes[NOTE_EXTRACTED]["window_rule"] == "authors" and notes[NOTE_EXTRACTED]["windows"] == f.num_clips
    assert any("substitute" in line for line in notes[NOTE_SUBSTITUTES]["lines"])
    with torch.no_grad():
        streams, mask = encode_videos(model, [q.features])
    torch.testing.assert_close(streams["fused"][0], q.clips["fused"])


@pytest.mark.slow
def test_live_queries_of_an_official_checkpoint_run_pose_at_the_configured_stride(served):
    """pose_stride reaches the authors'-layout extractor too (the exporter must not unwrap the strided estimator)."""
    from seds.extract.pose_stride import StridedPoseEstimator

    a = served[0]
    given = FakeWholeBody()
    eng = SearchEngine(EngineConfig(checkpoint=str(a.checkpoint), gallery=str(a.gallery), device="cpu", pose_stride=2),
                       pose_estimator=given, rgb_extractor=FakeRGB())
    pose = eng.extractor().exporter.pose
    assert isinstance(pose, StridedPoseEstimator) and pose.stride == 2 and pose.inner is given


# --- python -m seds.evaluate on an official checkpoint: the authors' protocol --------------------------------

@pytest.mark.slow
def test_evaluate_cli_on_an_official_checkpoint(served, tmp_path, capsys):
    a, *_ = served
    out = tmp_path / "eval.json"
    res = evaluate_main(["--checkpoint", str(a.checkpoint), "--store", str(a.store), "--split", "test",
                         "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "test: 5 videos, 4 sentence ids, 3 distinct sentences" in printed     # "Hi!" under two ids
    assert set(res) == {"pose", "rgb", "fused"}
    assert res["fused"]["v2t"]["n_queries"] == 5 and res["fused"]["t2v"]["n_queries"] == 4
    assert json.loads(out.read_text())["protocol"] == "sentence_ids"


@pytest.mark.slow
def test_gallery_of_features_without_video_files_shows_cards(served, tmp_path):
    a, *_ = served
    out = tmp_path / "g"
    assert index_main(["build", "--checkpoint", str(a.checkpoint), "--manifest", str(a.store / "manifest_test.csv"),
                       "--store", str(a.store), "--out", str(out), "--limit", "1", "--device", "cpu", "--cards"]) == 0
    eng = SearchEngine(EngineConfig(checkpoint=str(a.checkpoint), gallery=str(out), device="cpu", pose_backend="mediapipe"))
    vid = eng.gallery.videos.ids[0]
    assert eng.video_path(vid) is None
    card = eng.gallery.thumbnail_path(vid)
    assert card is not None and cv2.imread(card).shape == (180, 320, 3)
