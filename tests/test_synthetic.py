"""The synthetic signing benchmark (seds/synthetic/signing.py): determinism, splits, geometry, biases."""
from __future__ import annotations

import csv
import json
import time

import cv2
import numpy as np
import pytest

from seds.clips import select_clip_starts
from seds.data.features import RGB_DIM, STORE_LAYOUT, VideoFeatures
from seds.extract.proxy_rgb import ProxyRGBError
from seds.synthetic.signing import (SPLITS, HANDSHAPES, SentenceSpec, SyntheticConfig, SyntheticError,
                                 SyntheticSignData, hand_local_points, rgb_proxy_features)
from seds.synthetic.store import write_synthetic_store
from seds.keypoints import KeypointLayout, normalize_parts

SMALL = SyntheticConfig(vocab_size=80, n_signers=(4, 2, 2), n_sentences=(60, 12, 12), seed=3)


@pytest.fixture(scope="module")
def data() -> SyntheticSignData:
    return SyntheticSignData(SyntheticConfig())          # the defaults the lead will train on


@pytest.fixture(scope="module")
def small() -> SyntheticSignData:
    return SyntheticSignData(SMALL)


# --- configuration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("vocab_size", 5), ("min_words", 1), ("max_words", 40),
                                         ("p_missing_hand", 1.5), ("n_signers", (0, 1, 1)),
                                         ("n_sentences", (10, -1, 2)), ("height", 8), ("noise", -1.0),
                                         ("max_clips", 0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(SyntheticError, match=field):
        SyntheticConfig(**{field: value})
    assert issubclass(SyntheticError, ValueError)


def test_bad_requests(small):
    with pytest.raises(SyntheticError, match="split"):
        small.sentences("dev")
    with pytest.raises(SyntheticError, match="word ids"):
        small.make_spec([0, 10_000], 0)
    with pytest.raises(SyntheticError, match="signer"):
        small.make_spec([1, 2], 99)
    with pytest.raises(ProxyRGBError, match="frames"):
        rgb_proxy_features(np.zeros((20, 32, 32, 3), np.float32), np.array([0]))
    with pytest.raises(ProxyRGBError, match="clip_starts"):
        rgb_proxy_features(np.zeros((20, 32, 32, 3), np.uint8), np.array([10]))


# --- determinism -----------------------------------------------------------------------------------

def test_same_seed_same_everything(small):
    other = SyntheticSignData(SMALL)
    assert [w.text for w in other.vocab] == [w.text for w in small.vocab]
    assert other.signers == small.signers
    for split in SPLITS:
        assert other.sentences(split) == small.sentences(split)
    spec = small.sentences("test")[3]
    np.testing.assert_array_equal(other.keypoints(spec), small.keypoints(spec))
    np.testing.assert_array_equal(other.render(spec), small.render(spec))
    a, b = other.make_features(spec), small.make_features(spec)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert a.meta == b.meta
    # repeated calls are pure functions of the spec
    np.testing.assert_array_equal(small.keypoints(spec), small.keypoints(spec))


def test_other_seed_differs(small):
    other = SyntheticSignData(SyntheticConfig(**{**SMALL.__dict__, "seed": 4}))
    assert [w.text for w in other.vocab] != [w.text for w in small.vocab]
    assert [s.word_ids for s in other.sentences("train")] != [s.word_ids for s in small.sentences("train")]


def test_sentence_prefix_stable():
    """Asking for more sentences keeps the first ones (timing and words) unchanged."""
    a = SyntheticSignData(SyntheticConfig(**{**SMALL.__dict__, "n_sentences": (20, 5, 5)}))
    b = SyntheticSignData(SyntheticConfig(**{**SMALL.__dict__, "n_sentences": (40, 5, 5)}))
    assert a.sentences("train") == b.sentences("train")[:20]


# --- splits ----------------------------------------------------------------------------------------

def test_splits_disjoint(data):
    cfg = data.cfg
    by_split = {s: data.sentences(s) for s in SPLITS}
    assert [len(by_split[s]) for s in SPLITS] == list(cfg.n_sentences)
    signers = {s: {sp.signer for sp in by_split[s]} for s in SPLITS}
    assert [len(signers[s]) for s in SPLITS] == list(cfg.n_signers)       # every signer is used
    assert not signers["train"] & signers["test"]
    assert not signers["train"] & signers["val"]
    assert not signers["val"] & signers["test"]
    for s in SPLITS:
        assert all(data.signers[i].split == s for i in signers[s])
    texts = {s: {sp.word_ids for sp in by_split[s]} for s in SPLITS}
    assert all(len(texts[s]) == len(by_split[s]) for s in SPLITS)           # unique within a split
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["val"]
    assert not texts["val"] & texts["test"]
    ids = [sp.id for s in SPLITS for sp in by_split[s]]
    assert len(set(ids)) == len(ids)
    # all val/test words are seen in training: only their combinations are new
    train_words = {w for sp in by_split["train"] for w in sp.word_ids}
    assert {w for s in ("val", "test") for sp in by_split[s] for w in sp.word_ids} <= train_words
    assert len(train_words) == cfg.vocab_size


def test_heldout_combinations(data):
    """Each test (val) sentence contains a (subject, verb) pair that no other split ever uses."""
    def pairs(sp):
        out = set()
        cls = [data.vocab[w].word_class for w in sp.word_ids]
        for i in range(len(cls) - 1):
            if cls[i] == "noun" and cls[i + 1] == "verb":      # subject directly precedes its verb
                out.add((sp.word_ids[i], sp.word_ids[i + 1]))
        return out

    used = {s: set().union(*(pairs(sp) for sp in data.sentences(s))) for s in SPLITS}
    for s in ("val", "test"):
        others = set().union(*(used[o] for o in SPLITS if o != s))
        assert all(pairs(sp) - others for sp in data.sentences(s)), s     # a pair of its own in every sentence
    assert used["val"] - used["train"] - used["test"] and used["test"] - used["train"] - used["val"]


def test_grammar_lengths_and_classes(data):
    lens = np.array([len(sp.word_ids) for sp in data.sentences("train")])
    assert lens.min() == data.cfg.min_words and lens.max() == data.cfg.max_words
    for sp in data.sentences("train")[:200]:
        cls = [data.vocab[w].word_class for w in sp.word_ids]
        assert "verb" in cls and "noun" in cls
        assert cls.count("time") <= 1 and (cls[0] == "time" or "time" not in cls)
        assert sp.text == " ".join(sp.words) and all(w == data.vocab[i].text for w, i in zip(sp.words, sp.word_ids))


# --- keypoints -------------------------------------------------------------------------------------

def test_keypoints_shapes_and_ranges(small):
    cfg = small.cfg
    for sp in small.sentences("train")[:10]:
        kp = small.keypoints(sp)
        assert kp.shape == (sp.num_frames, STORE_LAYOUT.num_points, 3) and kp.dtype == np.float32
        assert np.isfinite(kp).all()
        c = kp[..., 2]
        assert c.min() >= 0 and c.max() <= 1
        ok = c > 0
        assert (kp[..., 0][ok] >= 0).all() and (kp[..., 0][ok] <= cfg.width - 1).all()
        assert (kp[..., 1][ok] >= 0).all() and (kp[..., 1][ok] <= cfg.height - 1).all()
        assert (c[:, :7] > 0.8).all()                      # body always found
        assert (c[:, 49:] > 0.5).mean() > 0.9              # face/mouth mostly present
        starts = [s for s, _ in sp.spans]
        ends = [e for _, e in sp.spans]
        assert starts[0] > 0 and ends[-1] < sp.num_frames
        assert all(e > s for s, e in sp.spans) and all(s2 > e1 for e1, s2 in zip(ends, starts[1:]))


def frame_labels(spec) -> np.ndarray:
    """``(F,)``: the word id signed in each frame, -1 in rests and transitions."""
    lab = np.full(spec.num_frames, -1, dtype=np.int64)
    for (s, e), w in zip(spec.spans, spec.word_ids):
        lab[s:e] = w
    return lab


def test_signs_are_separated_by_rests_and_transitions(small):
    sp = small.sentences("val")[0]
    lab = frame_labels(sp)
    assert (lab == -1).sum() > 0 and set(lab[lab >= 0]) == set(sp.word_ids)


@pytest.mark.parametrize("p", [0.0, 0.15])
def test_missing_hand_rate(p):
    d = SyntheticSignData(SyntheticConfig(**{**SMALL.__dict__, "p_missing_hand": p, "n_sentences": (120, 1, 1)}))
    kp = np.concatenate([d.keypoints(sp) for sp in d.sentences("train")])
    hands = kp[:, 7:49].reshape(len(kp), 2, 21, 3)
    missing = (hands[..., 2] == 0).all(-1)
    assert abs(missing.mean() - p) < 0.03, missing.mean()
    assert (hands[missing] == 0).all()                     # a missing hand is all zeros
    if p > 0:   # in runs, not single frames
        starts = (missing[1:] & ~missing[:-1]).sum()
        assert missing.sum() / max(starts, 1) > 3


def test_noise_level(small):
    cfg = small.cfg
    clean = SyntheticSignData(SyntheticConfig(**{**SMALL.__dict__, "noise": 0.0, "p_missing_hand": 0.0}))
    sp = small.sentences("train")[5]
    a, b = small.keypoints(sp), clean.keypoints(sp)
    ok = (a[..., 2] > 0) & (b[..., 2] > 0)
    sigma = cfg.noise * small.signers[sp.signer].shoulder_px
    resid = (a[..., :2] - b[..., :2])[ok]
    assert abs(resid.std() - sigma) < 0.1 * sigma


def _word_traj(d, spec, w, n=24, normalize=False):
    kp = d.keypoints(spec)[:, :49]
    if normalize:
        kp = normalize_parts(kp, KeypointLayout())
    idx = np.flatnonzero(frame_labels(spec) == w)
    return kp[np.round(np.linspace(idx[0], idx[-1], n)).astype(int)]


def _traj_dist(a, b):
    v = (a[..., 2] > 0) & (b[..., 2] > 0)
    return float((np.linalg.norm(a[..., :2] - b[..., :2], axis=-1) * v).sum() / max(v.sum(), 1))


def test_different_words_move_differently(data):
    """Two words by one signer differ by far more than the keypoint noise."""
    rng = np.random.default_rng(0)
    sigma = data.cfg.noise * data.signers[0].shoulder_px
    words = rng.choice(data.cfg.vocab_size, 20, replace=False)
    dists = []
    for w1, w2 in zip(words[::2], words[1::2]):
        a = _word_traj(data, data.make_spec([int(w1)], 0, seed=1, dominant="right"), w1)
        b = _word_traj(data, data.make_spec([int(w2)], 0, seed=1, dominant="right"), w2)
        dists.append(_traj_dist(a, b))
    assert np.median(dists) > 10 * sigma, (np.median(dists), sigma)
    assert min(dists) > 3 * sigma


@pytest.fixture(scope="module")
def word_signer_grid(data):
    """8 words × 4 signers (two per split, right-dominant): normalized pose and mean proxy RGB."""
    rng = np.random.default_rng(5)
    words = rng.choice(data.cfg.vocab_size, 8, replace=False)
    signers = [0, 5, 8, 12]
    pose, rgb, y, s = [], [], [], []
    for w in words:
        for g in signers:
            spec = data.make_spec([int(w)], g, seed=int(w) * 31 + g, dominant="right")
            pose.append(_word_traj(data, spec, w, normalize=True))
            rgb.append(data.make_features(spec).rgb.mean(0))
            y.append(w)
            s.append(g)
    return np.array(pose), np.array(rgb), np.array(y), np.array(s)


def test_normalized_pose_is_signer_invariant(word_signer_grid):
    pose, _, y, s = word_signer_grid
    n = len(pose)
    d = np.array([[_traj_dist(pose[i], pose[j]) for j in range(n)] for i in range(n)])
    same_word = d[(y[:, None] == y[None]) & (s[:, None] != s[None])].mean()
    same_signer = d[(y[:, None] != y[None]) & (s[:, None] == s[None])].mean()
    assert same_word < 0.5 * same_signer, (same_word, same_signer)
    np.fill_diagonal(d, np.inf)
    nn = d.argmin(1)
    assert (y[nn] == y).mean() >= 0.8          # the same word by another signer is the nearest


def test_proxy_rgb_sees_signers_more_than_words(word_signer_grid):
    pose, rgb, y, s = word_signer_grid
    d = ((rgb[:, None] - rgb[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = d.argmin(1)
    signer_acc, word_acc = (s[nn] == s).mean(), (y[nn] == y).mean()
    assert signer_acc >= 0.95 and word_acc <= 0.3, (signer_acc, word_acc)
    # ... but motion is not absent: within one signer, different words have different features
    same_signer = d + np.where(s[:, None] != s[None], np.inf, 0)
    within = np.array([same_signer[i][np.isfinite(same_signer[i])].min() for i in range(len(d))])
    assert (within > 0).all()


# --- the proxy RGB encoder against a naive per-window reference -------------------------------------

def _proxy_reference(frames, starts):
    from seds.extract.proxy_rgb import _proxy_projections
    p_app, p_mot = _proxy_projections()
    out = []
    for s in starts:
        win = frames[s:s + 16]
        small = [cv2.resize(f, (28, 28), interpolation=cv2.INTER_AREA) for f in win]
        hist = np.zeros(512)
        for f in small:
            q = f.astype(int) // 32
            for r, g, b in q.reshape(-1, 3):
                hist[r * 64 + g * 8 + b] += 1
        hist /= 16 * 28 * 28
        smallf = [f.astype(np.float32) / 255 for f in small]
        app = np.mean([cv2.resize(f, (7, 7), interpolation=cv2.INTER_AREA).ravel() - 0.5 for f in smallf], 0)
        grey = [cv2.resize(f.mean(-1), (14, 14), interpolation=cv2.INTER_AREA).ravel() for f in smallf]
        mot = np.mean([np.abs(grey[t] - grey[t - 1]) for t in range(1, 16)], 0)
        out.append(np.concatenate([np.sqrt(hist), 0.35 * (app @ p_app), 0.35 * (mot * 10 @ p_mot)]))
    return np.array(out)


def test_proxy_rgb_matches_reference(small):
    spec = small.sentences("train")[1]
    frames = small.render(spec)[:40]
    starts = np.array([0, 3, 24])
    got = rgb_proxy_features(frames, starts)
    assert got.shape == (3, RGB_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, _proxy_reference(frames, starts), atol=2e-4)


# --- rendering and features ------------------------------------------------------------------------

def test_render(small):
    sp = small.sentences("train")[2]
    sg = small.signers[sp.signer]
    fr = small.render(sp)
    assert fr.shape == (sp.num_frames, small.cfg.height, small.cfg.width, 3) and fr.dtype == np.uint8
    assert tuple(fr[0, 0, 0]) == sg.background and tuple(fr[-1, 0, -1]) == sg.background
    kp = small.keypoints(sp)
    # the chest (between shoulders, a bit below) wears the clothing colour in most frames
    chest = ((kp[:, 1, :2] + kp[:, 4, :2]) / 2 + [0, 0.6 * sg.shoulder_px]).round().astype(int)
    colours = fr[np.arange(len(fr)), chest[:, 1], chest[:, 0]]
    assert (np.abs(colours.astype(int) - sg.clothing).max(-1) < 40).mean() > 0.5
    # frames change over time (the signer moves)
    assert np.abs(np.diff(fr.astype(np.int16), axis=0)).mean() > 0.1
    other = SyntheticSignData(SyntheticConfig(**{**SMALL.__dict__, "height": 64, "width": 96}))
    assert other.render(other.sentences("train")[0]).shape[1:] == (64, 96, 3)


def test_make_features(small):
    sp = small.sentences("test")[0]
    f = small.make_features(sp)
    assert isinstance(f, VideoFeatures)
    np.testing.assert_array_equal(f.clip_starts, select_clip_starts(sp.num_frames))
    assert f.rgb.shape == (len(f.clip_starts), RGB_DIM) and np.isfinite(f.rgb).all()
    assert f.fps == small.cfg.fps
    m = f.meta
    assert m["id"] == sp.id and m["text"] == sp.text and m["split"] == "test"
    assert m["signer"] == small.signers[sp.signer].id
    assert m["words"] == " ".join(sp.words)
    assert [int(i) for i in m["word_ids"].split(",")] == list(sp.word_ids)
    assert [tuple(int(x) for x in p.split(":")) for p in m["word_spans"].split()] == list(sp.spans)
    assert m["rgb"] == "proxy"


def test_max_clips_samples_windows_at_equal_intervals(small):
    """``max_clips`` = T: a long video keeps T windows (first and last included), the same windows
    ``select_clip_starts`` picks for a model with ``max_clips`` = T, and their proxy features are
    exactly the ones computed when every window is kept."""
    t = SyntheticSignData(SyntheticConfig(**{**SMALL.__dict__, "max_clips": 6}))
    every = SyntheticSignData(SyntheticConfig(**{**SMALL.__dict__, "max_clips": 4096}))   # every window
    sp = max(small.sentences("test"), key=lambda s: s.num_frames)
    full, cut = every.make_features(sp), t.make_features(sp)
    assert full.num_clips == sp.num_frames - 15
    assert full.num_clips > 6 and cut.num_clips == 6
    np.testing.assert_array_equal(cut.clip_starts, select_clip_starts(sp.num_frames, 6))
    assert cut.clip_starts[0] == 0 and cut.clip_starts[-1] == full.clip_starts[-1]
    rows = np.searchsorted(full.clip_starts, cut.clip_starts)
    np.testing.assert_array_equal(full.clip_starts[rows], cut.clip_starts)
    np.testing.assert_allclose(cut.rgb, full.rgb[rows], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(cut.keypoints, full.keypoints)


def test_short_video_is_padded(small):
    """A 1-word spec at high speed can be shorter than one window: padded by the last frame."""
    sp = small.make_spec([3], 0, seed=0)
    short = SentenceSpec(**{**sp.__dict__, "spans": ((3, 7),), "num_frames": 10, "lead": 1, "tail": 1})
    f = small.make_features(short)
    assert f.num_frames == 16 and f.num_clips == 1
    np.testing.assert_array_equal(f.keypoints[10:], np.repeat(f.keypoints[9:10], 6, 0))


# --- hand kinematics against a naive per-joint reference ------------------------------------------

def _fk_reference(params):
    from seds.synthetic.body import _FINGER_ANGLE0, _FINGER_BASE, _FINGER_LEN, _SPREAD_GAIN
    pts = [np.zeros(3)]
    for f in range(5):
        ang = params[0] if f == 0 else _FINGER_ANGLE0[f] + _SPREAD_GAIN[f] * params[4]
        u = np.array([np.sin(ang), -np.cos(ang), 0.0])
        n = np.array([-0.6 * np.cos(ang), -0.6 * np.sin(ang), 0.8]) if f == 0 else np.array([0, 0, 1.0])
        flex = params[1:4] if f == 0 else params[5 + 3 * (f - 1):8 + 3 * (f - 1)]
        p, theta = _FINGER_BASE[f].copy(), 0.0
        pts.append(p.copy())
        for k in range(3):
            theta += flex[k]
            p = p + _FINGER_LEN[f, k] * (np.cos(theta) * u + np.sin(theta) * n)
            pts.append(p.copy())
    return np.array(pts)


def test_hand_forward_kinematics():
    shapes = np.stack(list(HANDSHAPES.values()))
    got = hand_local_points(shapes)
    assert got.shape == (len(shapes), 21, 3)
    for s, g in zip(shapes, got):
        np.testing.assert_allclose(g, _fk_reference(s), atol=1e-12)
    flat, fist = hand_local_points(HANDSHAPES["B"]), hand_local_points(HANDSHAPES["S"])
    tips = [8, 12, 16, 20]
    assert np.linalg.norm(flat[12]) > 0.9                           # extended middle finger ≈ hand length
    assert (np.linalg.norm(fist[tips, :2], axis=-1) < 0.5).all()    # curled tips near the palm
    # hand shapes are distinguishable after hand-box normalisation
    xy = got[..., :2] - got[..., :2].mean(1, keepdims=True)
    xy /= np.abs(xy).max((1, 2), keepdims=True)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1).mean(-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 0.02


def test_left_dominant_mirrors_the_sign():
    cfg = SyntheticConfig(**{**SMALL.__dict__, "noise": 0.0, "p_missing_hand": 0.0})
    d = SyntheticSignData(cfg)
    r = d.keypoints(d.make_spec([5, 9, 14], 1, seed=2, dominant="right"))
    l_ = d.keypoints(d.make_spec([5, 9, 14], 1, seed=2, dominant="left"))
    ox = d.signers[1].origin[0]
    ok = (r[:, 6, 2] > 0) & (l_[:, 3, 2] > 0)
    np.testing.assert_allclose(l_[ok, 3, 0] - ox, -(r[ok, 6, 0] - ox), atol=1e-3)   # wrists mirrored
    np.testing.assert_allclose(l_[ok, 3, 1], r[ok, 6, 1], atol=1e-3)


# --- speed and the store ---------------------------------------------------------------------------

@pytest.mark.slow
def test_generation_speed(data):
    specs = data.sentences("train")[:300]
    t = time.process_time()
    frames = sum(len(data.keypoints(sp)) for sp in specs)
    dt = time.process_time() - t
    print(f"\nkeypoints of 300 sentences ({frames} frames): {dt:.2f} s CPU")
    assert dt < 6.0


@pytest.mark.slow
def test_write_store(tmp_path):
    from seds.data.store import FeatureStore

    cfg = SyntheticConfig(**{**SMALL.__dict__, "n_sentences": (5, 2, 3)})
    man = write_synthetic_store(tmp_path, cfg, workers=2, chunk=2)     # also: workers = in-process
    assert set(man) == set(SPLITS)
    d = SyntheticSignData(cfg)
    store = FeatureStore(tmp_path)
    assert len(store) == 10
    for split in SPLITS:
        with open(man[split], newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["id", "video", "text", "split", "signer"]
        assert [r["id"] for r in rows] == [sp.id for sp in d.sentences(split)]
        for r, sp in zip(rows, d.sentences(split)):
            assert r["text"] == sp.text and r["split"] == split and r["video"] == ""
            assert r["signer"] == d.signers[sp.signer].id
    sp = d.sentences("test")[2]
    f = store[sp.id]
    np.testing.assert_array_equal(f.keypoints, d.keypoints(sp))
    np.testing.assert_array_equal(f.rgb, d.make_features(sp).rgb)
    assert f.meta["word_ids"] == ",".join(map(str, sp.word_ids))
    info = json.loads((tmp_path / "synthetic_info.json").read_text())
    assert "proxy-RGB" in info["note"] and info["config"]["seed"] == cfg.seed
    assert len(info["vocab"]) == cfg.vocab_size


# --- the convolutional proxy ("synthetic-proxy-conv") ----------------------------------------------

def test_conv_proxy_is_deterministic_windowed_and_sees_motion(small):
    from seds.extract.factory import describe_rgb, make_rgb_extractor
    from seds.extract.proxy_rgb import ConvProxyRGBExtractor, rgb_conv_proxy_features
    spec = small.sentences("train")[1]
    frames = small.render(spec)[:40]
    starts = np.array([0, 3, 24])
    a = rgb_conv_proxy_features(frames, starts)
    assert a.shape == (3, RGB_DIM) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, rgb_conv_proxy_features(frames.copy(), starts))
    # a window's feature is the mean of per-frame features: the window starting at 3 differs from 0's
    assert np.abs(a[0] - a[1]).max() > 0
    # a still video: every window equal; the same video with a moving patch: windows differ
    still = np.repeat(frames[:1], 40, 0)
    s = rgb_conv_proxy_features(still, starts)
    np.testing.assert_allclose(s[0], s[2], rtol=1e-5, atol=1e-6)
    moving = still.copy()
    for t in range(40):
        moving[t, 50:60, 10 + t * 2:20 + t * 2] = 255
    m = rgb_conv_proxy_features(moving, starts)
    assert np.abs(m[0] - m[2]).max() > 1e-3
    with pytest.raises(ProxyRGBError):
        rgb_conv_proxy_features(frames, np.array([35]))
    assert isinstance(make_rgb_extractor("synthetic-proxy-conv"), ConvProxyRGBExtractor)
    assert "not I3D" in describe_rgb("synthetic-proxy-conv")
    with pytest.raises(SyntheticError, match="rgb_proxy"):
        SyntheticConfig(rgb_proxy="i3d")
