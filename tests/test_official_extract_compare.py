"""Our extraction in the authors' layout (``python -m seds.extract --format official``) read back by the
adapter identically, and ``python -m seds.data.compare_features`` on known perturbations."""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seds.data.compare_features import main as compare_main
from seds.data.manifest import load_manifest, write_manifest
from seds.data.official import OfficialDataset, main as official_main, official_collate
from seds.data.official_batch import official_sample
from seds.data.official_format import OfficialPaths, read_annotations, read_pose, read_rgb, write_pose, write_rgb
from tests.official_synthetic import write_official_synthetic
from seds.data.store import FeatureStore
from seds.extract.__main__ import main as extract_main
from seds.extract.official_export import OfficialExporter, wholebody133
from seds.extract.pose import MEDIAPIPE_HOLISTIC, PoseEstimator, PoseResult
from seds.keypoints import coco_wholebody_to_seds

H2S = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "how2sign-mini"


def _h2s_manifest(tmp_path, n=1):
    if not (H2S / "manifest.csv").is_file():
        pytest.skip(f"How2Sign-mini is not present ({H2S})")
    rows = [r for r in load_manifest(H2S / "manifest.csv", dataset="how2sign_mini") if r.labeled][:n]
    return rows, write_manifest(rows, tmp_path / "m.csv")


class FakeMediaPipe(PoseEstimator):
    """Deterministic MediaPipe-layout (75 points) keypoints with both hands visible."""

    name = "fake-mediapipe"
    layout = MEDIAPIPE_HOLISTIC

    def _estimate(self, frames, progress):
        n, h, w = frames.shape[:3]
        rs = np.random.RandomState(n)
        k = np.zeros((n, 75, 3), np.float32)
        k[..., 0] = rs.uniform(0.3 * w, 0.7 * w, (n, 75))
        k[..., 1] = rs.uniform(0.3 * h, 0.7 * h, (n, 75))
        k[..., 2] = rs.uniform(0.6, 1.0, (n, 75))
        return k


class FakeRGB:
    name = "fake-rgb"

    def features(self, frames, starts, window=16):
        return np.stack([np.full(1024, float(frames[s:s + window].mean()) + s, np.float32) for s in starts])


class FakeFactory:
    def __call__(self):
        return OfficialExporter(pose_estimator=FakeMediaPipe(), rgb_extractor=FakeRGB(), max_seconds=3.0)


def test_wholebody133_maps_mediapipe_into_the_used_slots():
    mp = np.random.RandomState(0).uniform(1, 2, (4, 75, 3)).astype(np.float32)
    wb = wholebody133(PoseResult(mp, MEDIAPIPE_HOLISTIC, (640, 360)))
    assert wb.shape == (4, 133, 3)
    np.testing.assert_array_equal(wb[:, [0, 5, 7, 9, 6, 8, 10]], mp[:, [0, 11, 13, 15, 12, 14, 16]])
    np.testing.assert_array_equal(wb[:, 91:112], mp[:, 33:54])
    np.testing.assert_array_equal(wb[:, 112:133], mp[:, 54:75])
    used = [0, 5, 7, 9, 6, 8, 10] + list(range(91, 133))
    assert (np.delete(wb, used, axis=1) == 0).all()


@pytest.mark.slow
def test_extract_format_official_round_trips_through_the_adapter(tmp_path, capsys):
    rows, man = _h2s_manifest(tmp_path)
    out = tmp_path / "official"
    split = rows[0].split
    rc = extract_main(["--dataset", "manifest", "--annotations", str(man), "--split", split, "--out", str(out),
                       "--format", "official", "--no-progress"], extractor_factory=FakeFactory())
    assert rc == 0, capsys.readouterr().err
    paths = OfficialPaths.under(out, split)
    # what the exporter computes in memory == what the adapter reads back
    mem = FakeFactory()()(rows[0].video)
    pose = read_pose(paths.pose(rows[0].id))
    np.testing.assert_array_equal(pose.keypoints, mem["keypoints"])
    np.testing.assert_array_equal(read_rgb(paths.rgb(rows[0].id)), mem["rgb"])
    assert pose.keypoints.shape == (72, 133, 3) and pose.frame_numbers == list(range(72))   # 3 s at 24 fps
    assert pose.keypoints[..., :2].max() < 256                                              # 256 x 256 frame
    (v,) = read_annotations(out / "data_h2" / f"{split}.pkl")
    assert v.new_video_name == rows[0].id and v.text == rows[0].text
    # ... and imported into a store, it gives the same official batch
    assert official_main(["import", "--annotations", str(out / "data_h2" / f"{split}.pkl"), "--pose-dir",
                          str(paths.pose_dir), "--rgb-dir", str(paths.rgb_dir), "--split", split,
                          "--out", str(tmp_path / "store")]) == 0
    f = FeatureStore(tmp_path / "store")[rows[0].id]
    np.testing.assert_array_equal(f.keypoints, coco_wholebody_to_seds(mem["keypoints"], ("face", "mouth")))
    ds = OfficialDataset(tmp_path / "store", tmp_path / "store" / f"manifest_{split}.csv")
    a, b = official_collate([ds[0]]), official_collate([official_sample(mem["keypoints"], mem["rgb"])])
    for k in ("left", "right", "body", "clip_starts", "clip_mask", "rgb"):
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_real_extraction_mediapipe_i3d_round_trip(tmp_path):
    """MediaPipe + Kinetics-400 I3D (the backends available offline) on the first second of a real clip."""
    rows, _ = _h2s_manifest(tmp_path)
    ex = OfficialExporter("mediapipe", "kinetics400", "cpu", max_seconds=1.0)
    t0 = time.perf_counter()
    mem = ex(rows[0].video)
    paths = OfficialPaths.under(tmp_path, "val")
    write_pose(paths.pose("v"), mem["keypoints"])
    write_rgb(paths.rgb("v"), mem["rgb"])
    back = read_pose(paths.pose("v"))
    np.testing.assert_array_equal(back.keypoints, mem["keypoints"])
    np.testing.assert_array_equal(read_rgb(paths.rgb("v")), mem["rgb"])
    assert mem["pose_backend"] == "mediapipe" and mem["rgb"].shape[1] == 1024
    assert len(mem["rgb"]) == official_sample(back.keypoints, mem["rgb"])["n_clips"]
    assert (mem["keypoints"][:, 112:133, 2] > 0).any(), "no right hand found in a signing clip"
    print(f"real official-format extraction: {len(mem['keypoints'])} frames, {len(mem['rgb'])} windows, "
          f"{time.perf_counter() - t0:.1f} s")


def _givens(x: np.ndarray, theta: float) -> np.ndarray:
    """Rotate every (2k, 2k+1) coordinate pair by theta: cos(x, R x) = cos(theta) for any x."""
    y = x.astype(np.float64).copy()
    c, s = math.cos(theta), math.sin(theta)
    y[:, 0::2], y[:, 1::2] = c * x[:, 0::2] - s * x[:, 1::2], s * x[:, 0::2] + c * x[:, 1::2]
    return y.astype(np.float32)


def test_compare_reports_known_perturbations(tmp_path, capsys):
    a = tmp_path / "a"
    rows = write_official_synthetic(a, "test")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    pb = OfficialPaths.under(b, "test")
    for r in rows:
        pose = read_pose(pb.pose(r.new_video_name))
        kp = pose.keypoints.copy()
        kp[:, 91:112, 0] += 3.0                     # left hand 3 px to the right
        write_pose(pb.pose(r.new_video_name), kp, pose.img_list)
        write_rgb(pb.rgb(r.new_video_name), _givens(read_rgb(pb.rgb(r.new_video_name)), math.pi / 3))
    assert compare_main([str(a), str(b), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["summary"]["left_hand"] == pytest.approx(3.0, abs=1e-4)
    assert rep["summary"]["body"] == 0 and rep["summary"]["right_hand"] == 0
    assert rep["summary"]["cosine"] == pytest.approx(0.5, abs=1e-5)
    for v in rep["videos"].values():
        assert v["left_hand"]["px"] == pytest.approx(3.0, abs=1e-4) and v["cosine"] == pytest.approx(0.5, abs=1e-5)
    assert "left hand 3.00 px" in out and "I3D cosine 0.5000" in out and rows[0].new_video_name in out
    assert "body 0.00 px" in out and "right hand 0.00 px" in out
    # a set against itself, and the authors' files against their imported store: 0 px, cosine 1
    assert compare_main([str(a), str(a)]) == 0
    assert "body 0.00 px, left hand 0.00 px, right hand 0.00 px; I3D cosine 1.0000" in capsys.readouterr().out
    pa = OfficialPaths.under(a, "test")
    assert official_main(["import", "--annotations", str(a / "data_h2" / "test.pkl"), "--pose-dir", str(pa.pose_dir),
                          "--rgb-dir", str(pa.rgb_dir), "--split", "test", "--out", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    assert compare_main([str(tmp_path / "s"), str(a)]) == 0
    out = capsys.readouterr().out
    assert "left hand 0.00 px" in out and "I3D cosine 1.0000" in out and "0 with different frame counts" in out
    assert compare_main([str(a), str(tmp_path / "nothing")]) == 2
