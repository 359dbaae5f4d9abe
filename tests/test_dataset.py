"""FeatureDataset (part selection, normalization, missing items) and collate (exact padding/masks)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from seds.data.dataset import FeatureDataset, collate, layout_index, truncate_words
from seds.data.features import VideoFeatures
from seds.data.manifest import Manifest, ManifestRow, write_manifest
from seds.data.store import FeatureStore, FeatureStoreError
from seds.keypoints import KeypointLayout, normalize_parts

LENGTHS = [(40, 5), (16, 1), (75, 60), (23, 8)]   # (frames, clips)


def make_feats(frames, clips, seed):
    rng = np.random.default_rng(seed)
    kp = np.empty((frames, 87, 3), np.float32)
    kp[..., :2] = rng.uniform(0, 640, (frames, 87, 2))
    kp[..., 2] = rng.uniform(0, 1, (frames, 87))
    starts = np.linspace(0, frames - 16, clips).round().astype(np.int64)
    return VideoFeatures(kp, rng.standard_normal((clips, 1024)).astype(np.float32), starts, fps=25.0,
                         meta={"pose_backend": "fake"})


@pytest.fixture()
def store(tmp_path):
    st = FeatureStore(tmp_path / "store", create=True)
    rows = []
    for i, (f, t) in enumerate(LENGTHS):
        vid = f"vid/{i}"
        st.save(vid, make_feats(f, t, i))
        rows.append(ManifestRow(vid, f"/v/{i}.mp4", f"sentence number {i} with words", "test", f"s{i % 2}"))
    rows.append(ManifestRow("unlabeled", "/v/u.mp4", "", "test", ""))
    st.save("unlabeled", make_feats(30, 3, 99))
    rows.append(ManifestRow("other", "/v/o.mp4", "train text", "train", ""))
    st.save("other", make_feats(20, 2, 98))
    return st, Manifest(rows, "synthetic")


def test_layout_index_against_naive_names():
    # store layout: 0-48 SEDS points, 49-66 face (18), 67-86 mouth (20)
    assert np.array_equal(layout_index(KeypointLayout()), np.arange(49))
    assert np.array_equal(layout_index(KeypointLayout(("mouth",))), np.r_[0:49, 67:87])
    assert np.array_equal(layout_index(KeypointLayout(("mouth", "face"))), np.r_[0:49, 67:87, 49:67])
    assert np.array_equal(layout_index(KeypointLayout(("face", "mouth"))), np.arange(87))


@pytest.mark.parametrize("extra", [(), ("face",), ("mouth", "face")])
def test_items_select_and_normalize(store, extra):
    st, man = store
    layout = KeypointLayout(extra)
    raw = FeatureDataset(st.root, man, split="test", layout=layout, normalize=False)
    norm = FeatureDataset(st.root, man, split="test", layout=layout)
    assert len(raw) == len(LENGTHS)                      # unlabeled and other-split rows dropped
    idx = layout_index(layout)
    for i, (f, t) in enumerate(LENGTHS):
        feats = make_feats(f, t, i)
        it = raw[i]
        assert it["id"] == f"vid/{i}" and it["keypoints"].shape == (f, layout.num_points, 3)
        assert np.array_equal(it["keypoints"], feats.keypoints[:, idx])
        assert np.array_equal(norm[i]["keypoints"], normalize_parts(feats.keypoints[:, idx], layout))
        assert np.array_equal(it["rgb"], feats.rgb) and np.array_equal(it["clip_starts"], feats.clip_starts)
        assert it["meta"]["pose_backend"] == "fake" and it["meta"]["signer"] == f"s{i % 2}"
        assert it["meta"]["num_frames"] == f and it["text"] == f"sentence number {i} with words"


def test_require_text_preload_max_words_and_manifest_path(store, tmp_path):
    st, man = store
    ds = FeatureDataset(st.root, man, split="test", require_text=False)
    assert ds.ids == [f"vid/{i}" for i in range(4)] + ["unlabeled"]
    pre = FeatureDataset(st.root, man, preload=True, max_words=2)
    lazy = FeatureDataset(st.root, write_manifest(man, tmp_path / "m.csv"), max_words=2)
    assert len(pre) == len(lazy) == 5
    for a, b in zip(pre, [lazy[i] for i in range(len(lazy))]):
        assert a["id"] == b["id"] and np.array_equal(a["keypoints"], b["keypoints"])
        assert a["text"] == b["text"]
    assert pre[0]["text"] == "sentence number" and pre.texts[-1] == "train text"
    assert truncate_words("a b  c", 5) == "a b  c" and truncate_words("a b c", 1) == "a"
    with pytest.raises(IndexError):
        pre[5]


def test_missing_items_error_or_skip(store):
    st, man = store
    rows = list(man) + [ManifestRow(f"gone{i}", "/v/g.mp4", "t", "test", "") for i in range(3)]
    man2 = Manifest(rows)
    with pytest.raises(FeatureStoreError, match=r"3 of 7 videos.*gone0"):
        FeatureDataset(st.root, man2, split="test")
    with pytest.warns(UserWarning, match="3 of 7"):
        ds = FeatureDataset(st.root, man2, split="test", missing="skip")
    assert len(ds) == 4 and not any(i.startswith("gone") for i in ds.ids)
    with pytest.raises(FeatureStoreError):                # nothing left: error even with skip
        FeatureDataset(st.root, Manifest(rows[-3:]), missing="skip")


def naive_collate_reference(items):
    """Per-element loops: the obvious (slow) definition of the padded batch."""
    B = len(items)
    F = max(len(it["keypoints"]) for it in items)
    T = max(len(it["clip_starts"]) for it in items)
    K = items[0]["keypoints"].shape[1]
    kp = torch.zeros(B, F, K, 3)
    fm = torch.zeros(B, F, dtype=torch.bool)
    cs = torch.zeros(B, T, dtype=torch.int64)
    cm = torch.zeros(B, T, dtype=torch.bool)
    rgb = torch.zeros(B, T, 1024)
    for b, it in enumerate(items):
        for f in range(len(it["keypoints"])):
            kp[b, f] = torch.from_numpy(it["keypoints"][f])
            fm[b, f] = True
        for t in range(len(it["clip_starts"])):
            cs[b, t] = int(it["clip_starts"][t])
            cm[b, t] = True
            rgb[b, t] = torch.from_numpy(it["rgb"][t])
    return kp, fm, cs, cm, rgb


def test_collate_exact(store):
    st, man = store
    ds = FeatureDataset(st.root, man, split="test", layout=KeypointLayout(("mouth",)))
    items = [ds[i] for i in (2, 0, 1, 3)]
    batch = collate(items)
    kp, fm, cs, cm, rgb = naive_collate_reference(items)
    assert batch["keypoints"].dtype == torch.float32 and batch["keypoints"].shape == (4, 75, 69, 3)
    assert batch["frame_mask"].dtype == torch.bool and batch["clip_mask"].dtype == torch.bool
    assert batch["clip_starts"].dtype == torch.int64 and batch["rgb"].dtype == torch.float32
    assert torch.equal(batch["keypoints"], kp) and torch.equal(batch["frame_mask"], fm)
    assert torch.equal(batch["clip_starts"], cs) and torch.equal(batch["clip_mask"], cm)
    assert torch.equal(batch["rgb"], rgb)
    assert batch["frame_mask"].sum(1).tolist() == [75, 40, 16, 23]
    assert batch["clip_mask"].sum(1).tolist() == [60, 5, 1, 8]
    assert batch["ids"] == ["vid/2", "vid/0", "vid/1", "vid/3"]
    assert batch["text"] == [it["text"] for it in items] and batch["meta"][1]["id"] == "vid/0"
    # padding is exactly zero
    assert not batch["keypoints"][~batch["frame_mask"]].any()
    assert not batch["rgb"][~batch["clip_mask"]].any() and not batch["clip_starts"][~batch["clip_mask"]].any()


def test_collate_errors_and_dataloader(store):
    st, man = store
    a = FeatureDataset(st.root, man, split="test")
    b = FeatureDataset(st.root, man, split="test", layout=KeypointLayout(("face",)))
    with pytest.raises(ValueError, match="different keypoint layouts"):
        collate([a[0], b[1]])
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    batches = list(DataLoader(a, batch_size=3, collate_fn=collate))
    assert [len(x["ids"]) for x in batches] == [3, 1]
    assert batches[0]["keypoints"].shape == (3, 75, 49, 3)


def test_lazy_items_are_the_reference_items(store):
    """The fast lazy read (a view of contiguous layout points, the vectorised normalize_parts, no extra stat)
    gives bit for bit the items of the straightforward path (the reference normalizer on the selected raw
    points) and of preloading; collate's uninitialised buffers still pad with exact zeros when the allocator
    hands back memory full of NaN."""
    from tests.test_keypoints import reference_normalize_parts
    st, man = store
    for extra in [(), ("mouth",)]:
        layout = KeypointLayout(extra)
        lazy = FeatureDataset(st.root, man, split="test", layout=layout)
        pre = FeatureDataset(st.root, man, split="test", layout=layout, preload=True)
        for i in range(len(lazy)):
            a, b = lazy[i], pre[i]
            raw = st[a["id"]].keypoints[:, layout_index(layout)]
            want = reference_normalize_parts(raw, layout)
            assert a["keypoints"].flags.c_contiguous and a["keypoints"].dtype == np.float32
            assert np.array_equal(a["keypoints"].view(np.uint32), want.view(np.uint32))
            for k in ("keypoints", "rgb", "clip_starts"):
                assert np.array_equal(a[k], b[k])
            assert a["meta"] == b["meta"] and a["text"] == b["text"]
    items = [lazy[i] for i in range(len(lazy))]
    for _ in range(3):
        dirty = [np.full((len(items), 80, 69, 3), np.nan, np.float32),
                 np.full((len(items), 64, 1024), np.nan, np.float32)]
        del dirty
        batch = collate(items)
        assert not batch["keypoints"][~batch["frame_mask"]].any() and not batch["rgb"][~batch["clip_mask"]].any()
        assert not batch["clip_starts"][~batch["clip_mask"]].any()
        assert torch.isfinite(batch["keypoints"]).all() and torch.isfinite(batch["rgb"]).all()
