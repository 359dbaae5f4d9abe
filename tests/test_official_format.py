"""The authors' file formats and preprocessing: safe reading, exact writing, and batch parity with their
``H2_DataLoader_pose`` + ``H2_pose_collate_fn`` (imported from ../shared/reference/seds-official at test time)."""
from __future__ import annotations

import importlib.util
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from seds.data.official import official_collate
from seds.data.official_batch import OfficialPreprocess, official_sample
from seds.data.official_format import (OfficialFormatError, OfficialPaths, frame_number, read_annotations,
                                       read_pose, read_rgb, write_pose)
from tests.official_synthetic import DEFAULT_VIDEOS, SyntheticVideo, write_official_synthetic
from seds.safe_pickle import UnsafePickleError, load_numpy_pickle

OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "seds-official"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    rows = write_official_synthetic(root, "test")
    return root, rows


def _official_loader_module():
    path = OFFICIAL / "dataloaders" / "dataloader_H2_retrieval_pose.py"
    if not path.is_file():
        pytest.skip(f"the authors' code is not present ({path})")
    spec = importlib.util.spec_from_file_location("seds_official_h2_eval_loader", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _NoTokenizer:
    """Text tokenization is not compared here (another module's job): every word is id 1."""

    def tokenize(self, text):
        return text.split()

    def convert_tokens_to_ids(self, tokens):
        return [1] * len(tokens)


def official_batch(root: Path, split: str = "test"):
    mod = _official_loader_module()
    args = types.SimpleNamespace(original_size_w=256, original_size_h=256, threshold=0.4, frames_threshold=0.1,
                                 crop_size=256)
    ds = mod.H2_DataLoader_pose(split, str(root / "data_h2"), str(root / "RTMpose" / "Pose_all_24rates") + "/",
                                str(root / "I3D_features") + "/", _NoTokenizer(), max_words=32, feature_len=64,
                                max_length_frames=300, slide_windows=16, windows_stride=1, args=args)
    return ds, mod.H2_pose_collate_fn([ds[i] for i in range(len(ds))])


def our_batch(root: Path, split: str = "test"):
    paths = OfficialPaths.under(root, split)
    items = []
    for v in read_annotations(root / "data_h2" / f"{split}.pkl"):
        s = official_sample(read_pose(paths.pose(v.new_video_name)).keypoints, read_rgb(paths.rgb(v.new_video_name)))
        items.append({**s, "id": v.new_video_name, "sentence_id": v.sentence_id, "text": v.text})
    return items, official_collate(items)


def test_batch_equals_the_authors_loader_exactly(synth):
    root, rows = synth
    ds, theirs = official_batch(root)
    items, ours = our_batch(root)
    assert theirs["right_pose"].shape[0] == len(rows) == 5
    for a, b in (("left", "left_pose"), ("right", "right_pose"), ("body", "body_pose"),
                 ("clip_starts", "body_clips_start")):
        assert ours[a].dtype == theirs[b].dtype, a
        assert torch.equal(ours[a], theirs[b]), a
    assert torch.equal(ours["clip_mask"], theirs["body_mask"][:, 1:] == 0)
    assert torch.equal(ours["rgb"], theirs["RGB_feature"][..., 0].transpose(1, 2))
    assert ours["clip_mask"].dtype == torch.bool and ours["rgb"].dtype == torch.float32
    # the data really exercises the branches: a >300-frame video (64 windows by linspace), a <16-frame
    # one (1 window, last frame repeated), dropped frames, missing hands, arm-box fallbacks
    n_clips = [it["n_clips"] for it in items]
    assert n_clips[2] == 64 and n_clips[3] == 1 and len(items[3]["body"]) == 16
    assert len(items[0]["frames"]) < 40 and items[4]["frames"][0] > 0             # frames dropped
    assert (items[0]["left"][10:12] == 0).all() and (items[1]["right"][-3:] == 0).all()
    # repeated sentences: two videos under one id, and one text under two ids
    assert [v.sentence_id for v in read_annotations(root / "data_h2" / "test.pkl")][:2] == ["synA_0"] * 2
    assert ds.sentences_dict["synB_3"] == ds.sentences_dict["synC_1"] == "Hi!"
    assert ours["sentence_ids"] == [r.sentence_id for r in rows]


def test_reader_refuses_code_and_names_the_file(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "video.pkl"
    bad.write_bytes(pickle.dumps({"keypoints": Evil(), "img_list": []}))
    with pytest.raises(UnsafePickleError, match=r"video\.pkl.*refusing to load (posix|os|nt)\.system"):
        read_pose(bad)
    assert not marker.exists()
    for reader in (read_rgb, read_annotations):
        with pytest.raises(UnsafePickleError, match="video.pkl"):
            reader(bad)
    assert not marker.exists()
    # numpy arrays, numpy scalars and containers load (protocol 2 and 5 too)
    ok = {"a": np.arange(3, dtype=np.float32), "s": np.float32(2.5), "t": (1, [2.0, "x"])}
    for proto in (2, 4, 5):
        back = load_numpy_pickle(pickle.dumps(ok, protocol=proto))
        assert np.array_equal(back["a"], ok["a"]) and back["s"] == 2.5 and back["t"] == (1, [2.0, "x"])


def test_format_errors_are_clear(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps({"keypoints": np.zeros((4, 17, 3)), "img_list": ["a_1.jpg"] * 4}))
    with pytest.raises(OfficialFormatError, match=r"x\.pkl.*\(frames, 133, 3\)"):
        read_pose(p)
    write_pose(p, np.zeros((2, 133, 3), np.float32), ["f_3.jpg", "f_3.jpg"])
    with pytest.raises(OfficialFormatError, match="repeated frame numbers"):
        read_pose(p)
    p.write_bytes(b"not a pickle")
    with pytest.raises(pickle.UnpicklingError, match="x.pkl"):
        read_rgb(p)
    assert frame_number("abc_0-1-rgb_front_000123.jpg") == 123
    with pytest.raises(OfficialFormatError):
        frame_number("nonumber.jpg")


def test_rgb_count_must_match_windows_and_missing_hand_departure(tmp_path):
    rows = write_official_synthetic(tmp_path, "test", (SyntheticVideo("s", "t", "v", 30, "plain"),))
    paths = OfficialPaths.under(tmp_path, "test")
    kp = read_pose(paths.pose("v")).keypoints
    rgb = read_rgb(paths.rgb("v"))
    assert rows[0].num_frames == 30 and len(rgb) == 15
    with pytest.raises(OfficialFormatError, match="v: 14 I3D features but 15 pose windows"):
        official_sample(kp, rgb[:14], name="v")
    # the left hand never detectable (the authors' loader raises): ours gives zeros for it
    kp = kp.copy()
    kp[:, 91:112, 2] = 0.05
    kp[:, 9, 2] = 0.1
    s = official_sample(kp, rgb)
    assert (s["left"] == 0).all() and (s["right"] != 0).any()
    kp[:, 112:133, 2] = 0.05
    kp[:, 10, 2] = 0.1
    with pytest.raises(OfficialFormatError, match="no frame has a detectable hand"):
        official_sample(kp, rgb)


def test_cfg_defaults_match_the_eval_script():
    script = (OFFICIAL / "scripts" / "eval_h2s.sh")
    if not script.is_file():
        pytest.skip("the authors' scripts are not present")
    txt = script.read_text()
    c = OfficialPreprocess()
    for flag, val in (("--max_length_frames", c.max_frames), ("--slide_windows", c.window),
                      ("--windows_stride", c.stride), ("--original_size_w", c.image_size[0]),
                      ("--crop_size", c.crop_size), ("--frames_threshold", c.frames_threshold),
                      ("--threshold", c.threshold), ("--feature_len", c.max_clips)):
        assert f"{flag} {val} " in txt + " ", flag


def test_default_synthetic_covers_long_and_short():
    assert max(v.frames for v in DEFAULT_VIDEOS) > 300 and min(v.frames for v in DEFAULT_VIDEOS) < 16
    assert sys.modules.get("tests.official_synthetic") is not None
