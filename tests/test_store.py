"""Feature store: bit-exact round trip, safe file names, atomic writes, clear errors on bad files."""
import json
import os
import stat

import numpy as np
import pytest
from safetensors.numpy import save_file

from seds.data import store as store_mod
from seds.data.features import VideoFeatures
from seds.data.store import (FeatureStore, FeatureStoreError, escape_id, load_features, read_metadata,
                             save_features, unescape_id)


def make_feats(frames=40, clips=5, seed=0, meta=None) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    kp = rng.standard_normal((frames, 87, 3)).astype(np.float32) * 300
    kp[..., 2] = rng.random((frames, 87))
    kp[0, 0, 0] = -0.0                       # signed zero must survive bit-exactly
    kp[1, 1, 1] = np.float32(1e-40)          # a subnormal too
    rgb = rng.standard_normal((clips, 1024)).astype(np.float32)
    starts = np.linspace(0, frames - 16, clips).round().astype(np.int64)
    return VideoFeatures(kp, rgb, starts, fps=23.976,
                         meta=meta if meta is not None else {"id": "v", "text": "hällo, wörld",
                                                            "nested": {"a": [1, 2.5, None]}})


def test_round_trip_bit_exact(tmp_path):
    f = make_feats()
    path = save_features(tmp_path / "a.safetensors", f)
    g = load_features(path)
    for name in ("keypoints", "rgb", "clip_starts"):
        a, b = getattr(f, name), getattr(g, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), name
    assert g.fps == f.fps                     # repr round-trips floats exactly
    assert g.meta == f.meta


def test_meta_numpy_values_are_json_encoded(tmp_path):
    f = make_feats(meta={"fps": np.float32(25.0), "n": np.int64(7), "arr": np.arange(3)})
    g = load_features(save_features(tmp_path / "m.safetensors", f))
    assert g.meta == {"fps": 25.0, "n": 7, "arr": [0, 1, 2]}
    md = read_metadata(tmp_path / "m.safetensors")
    assert md["format"] == store_mod.FORMAT_TAG and json.loads(md["meta"]) == g.meta


def test_unserialisable_meta_is_a_clear_error(tmp_path):
    f = make_feats(meta={"bad": object()})
    with pytest.raises(FeatureStoreError, match="not JSON-serialisable"):
        save_features(tmp_path / "x.safetensors", f)
    assert list(tmp_path.iterdir()) == []


TRICKY_IDS = ["plain_id-1.0", "a/b/c", "../escape", ".hidden", "..", "with space", "ümlaut",
              "pct%2Fliteral", "tilde~x", "colon:star*?", "UPPER", "x" * 400, "y" * 400, "汉字手语" * 60]


def test_escape_is_safe_unique_and_reversible(tmp_path):
    stems = [escape_id(i) for i in TRICKY_IDS]
    assert len(set(stems)) == len(stems)
    for vid, stem in zip(TRICKY_IDS, stems):
        assert "/" not in stem and "\\" not in stem and not stem.startswith(".")
        assert len((stem + ".safetensors").encode()) <= 255
        assert stem == escape_id(vid)                       # stable
        back = unescape_id(stem)
        assert back is None or back == vid
    assert unescape_id(escape_id("x" * 400)) is None        # hashed: id kept in metadata instead
    with pytest.raises(ValueError):
        escape_id("")


def test_store_ids_has_getitem(tmp_path):
    st = FeatureStore(tmp_path / "s", create=True)
    for k, vid in enumerate(TRICKY_IDS):
        p = st.save(vid, make_feats(seed=k, meta={"k": k}))
        assert p.parent == st.root                          # never escapes the store directory
    assert st.ids() == sorted(TRICKY_IDS)
    assert len(st) == len(TRICKY_IDS)
    for k, vid in enumerate(TRICKY_IDS):
        assert st.has(vid) and vid in st
        assert st[vid].meta == {"k": k}
        assert np.array_equal(st[vid].rgb, make_feats(seed=k).rgb)
    assert not st.has("absent")
    with pytest.raises(KeyError, match="absent"):
        st["absent"]
    with pytest.raises(FileNotFoundError):
        FeatureStore(tmp_path / "nope")


def test_partial_files_are_ignored_and_cleaned(tmp_path):
    st = FeatureStore(tmp_path, create=True)
    st.save("done", make_feats())
    junk = tmp_path / ".half.safetensors.abc123.tmp"
    junk.write_bytes(b"\x00" * 100)
    assert st.ids() == ["done"] and len(st) == 1
    assert st.partial_files() == [junk]
    assert st.clean_partial() == 1 and not junk.exists()
    assert st.ids() == ["done"]


def test_failed_write_leaves_old_file_and_no_tmp(tmp_path, monkeypatch):
    path = tmp_path / "v.safetensors"
    save_features(path, make_feats(seed=1))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        save_features(path, make_feats(seed=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.safetensors"]


def test_corrupt_files_raise_naming_the_file(tmp_path):
    good = save_features(tmp_path / "good.safetensors", make_feats())
    data = good.read_bytes()
    cases = {"truncated": data[: len(data) // 2], "garbage": b"this is not a safetensors file at all",
             "empty": b""}
    for name, blob in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(blob)
        with pytest.raises(FeatureStoreError) as ei:
            load_features(p)
        assert str(p) in str(ei.value), name

    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": np.zeros((2, 2), np.float32)}, str(foreign))
    with pytest.raises(FeatureStoreError, match="not a SEDS feature file"):
        load_features(foreign)

    f = make_feats()
    bad_shape = tmp_path / "shape.safetensors"
    save_file({"keypoints": f.keypoints[:, :49].copy(), "rgb": f.rgb, "clip_starts": f.clip_starts},
              str(bad_shape), metadata={"format": store_mod.FORMAT_TAG, "version": "1", "fps": "25.0",
                                        "meta": "{}"})
    with pytest.raises(FeatureStoreError, match="shape.safetensors.*keypoints must be"):
        load_features(bad_shape)

    missing = tmp_path / "missing.safetensors"
    save_file({"keypoints": f.keypoints, "rgb": f.rgb}, str(missing),
              metadata={"format": store_mod.FORMAT_TAG, "version": "1", "fps": "25.0", "meta": "{}"})
    with pytest.raises(FeatureStoreError, match="lacks tensor.*clip_starts"):
        load_features(missing)

    with pytest.raises(FileNotFoundError, match="nothere"):
        load_features(tmp_path / "nothere.safetensors")
    assert os.path.exists(good)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask(tmp_path, mask):
    """Issue 15: feature files were created 0600 (mkstemp's mode) whatever the umask."""
    old = os.umask(mask)
    try:
        p = FeatureStore(tmp_path / "s", create=True).save("a", make_feats())
        mode = stat.S_IMODE(p.stat().st_mode)
    finally:
        os.umask(old)
    assert mode == 0o666 & ~mask
