"""The 49-point layout, mapping tables, graphs and Eq. (1) adjacency."""
import numpy as np
import pytest

from seds import keypoints as kp


def test_layout_sizes_and_body_indices():
    assert kp.N_SEDS == 49
    assert kp.COCO_WB_BODY == (0, 5, 7, 9, 6, 8, 10)
    assert kp.KeypointLayout().num_points == 49
    assert kp.KeypointLayout(extra=("face", "mouth")).num_points == 49 + 18 + 20
    with pytest.raises(ValueError, match="unknown"):
        kp.KeypointLayout(extra=("ears",))


def test_coco_wholebody_mapping_picks_the_right_points():
    x = np.arange(133, dtype=np.float32)[:, None].repeat(3, 1)
    s = kp.coco_wholebody_to_seds(x)
    assert s[:7, 0].tolist() == [0, 5, 7, 9, 6, 8, 10]
    assert s[7:28, 0].tolist() == list(range(91, 112))     # left hand
    assert s[28:49, 0].tolist() == list(range(112, 133))   # right hand
    sm = kp.coco_wholebody_to_seds(x, extra=("mouth",))
    assert sm[49:, 0].tolist() == [23 + i for i in range(48, 68)]
    with pytest.raises(ValueError):
        kp.coco_wholebody_to_seds(np.zeros((10, 3)))


def test_mediapipe_mapping():
    x = np.arange(75, dtype=np.float32)[:, None].repeat(3, 1)
    s = kp.mediapipe_to_seds(x)
    assert s[:7, 0].tolist() == [0, 11, 13, 15, 12, 14, 16]
    assert s[7:28, 0].tolist() == list(range(33, 54))
    assert s[28:, 0].tolist() == list(range(54, 75))
    with pytest.raises(ValueError, match="face"):
        kp.mediapipe_to_seds(x, extra=("face",))
    full = kp.mediapipe_to_seds(np.zeros((2, 543, 3)), extra=("face", "mouth"))
    assert full.shape == (2, 87, 3)


@pytest.mark.parametrize("part", ["hand", "body", "face", "mouth"])
def test_adjacency_is_symmetric_normalized(part):
    n, edges = kp.PART_GRAPHS[part]
    a = kp.adjacency(n, edges)
    norm = kp.part_adjacency(part)
    assert np.allclose(norm, norm.T)
    # explicit Λ^-1/2 (A+I) Λ^-1/2
    a_hat = a + np.eye(n)
    deg = a_hat.sum(1)
    ref = np.array([[a_hat[i, j] / np.sqrt(deg[i] * deg[j]) for j in range(n)] for i in range(n)])
    assert np.allclose(norm, ref, atol=1e-6)
    # largest eigenvalue of a symmetric-normalized adjacency with self loops is 1
    assert np.isclose(np.linalg.eigvalsh(norm).max(), 1.0, atol=1e-5)
    # connected graph: every node reachable from node 0
    reach = np.linalg.matrix_power(a_hat, n) [0] > 0
    assert reach.all()


def test_hand_graph_has_20_bones():
    assert len(kp.HAND_EDGES) == 20 and kp.adjacency(21, kp.HAND_EDGES).sum() == 40


def test_normalize_parts_masks_and_mirrors():
    rng = np.random.default_rng(0)
    F = 4
    x = np.zeros((F, 49, 3), np.float32)
    x[..., :2] = rng.uniform(100, 500, (F, 49, 2))
    x[..., 2] = 1.0
    x[1, kp.LEFT_HAND, 2] = 0.0          # a missing hand
    x[2, 5, :2] = np.nan                 # a NaN from a backend
    x[2, 5, 2] = 0.0
    out = kp.normalize_parts(x)
    assert np.isfinite(out).all()
    assert (out[1, kp.LEFT_HAND] == 0).all()
    rh = out[0, kp.RIGHT_HAND, :2]
    assert np.abs(rh).max() == pytest.approx(1.0, abs=1e-5)          # box scaled to [-1, 1]
    # mirroring: the left hand is the x-flip of the same shape placed as a right hand
    y = x.copy()
    y[:, kp.RIGHT_HAND] = x[:, kp.LEFT_HAND]
    out_y = kp.normalize_parts(y)
    assert np.allclose(out[0, kp.LEFT_HAND, 0], -out_y[0, kp.RIGHT_HAND, 0], atol=1e-5)
    # body: shoulders at ±0.5 around the shoulder centre
    xb = x.copy()
    xb[:, 1, :2] = [100, 200]
    xb[:, 4, :2] = [300, 200]
    ob = kp.normalize_parts(xb)
    assert np.allclose(ob[0, 1, :2], [-0.5, 0]) and np.allclose(ob[0, 4, :2], [0.5, 0])
    with pytest.raises(ValueError):
        kp.normalize_parts(np.zeros((3, 50, 3)))


def reference_normalize_parts(kpts: np.ndarray, layout: kp.KeypointLayout = kp.KeypointLayout(),
                    conf_threshold: float = 0.3, mirror_left: bool = True) -> np.ndarray:
    """The first, straightforward ``normalize_parts`` (interleaved (F, K, 3) arrays, one hand at a time): the
    reference that the vectorised one must match bit for bit."""
    if kpts.ndim != 3 or kpts.shape[-1] != 3 or kpts.shape[1] != layout.num_points:
        raise ValueError(f"expected keypoints (frames, {layout.num_points}, 3), got {kpts.shape}")
    x = np.nan_to_num(kpts.astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    valid = x[..., 2] >= conf_threshold
    x[~valid] = 0.0
    out = np.zeros_like(x)
    out[..., 2] = np.where(valid, x[..., 2], 0.0)

    def box_norm(sl):
        xy, v = x[:, sl, :2], valid[:, sl]
        seen = v.any(axis=1)[:, None]                          # frames where the part has a point
        lo = np.where(seen, np.where(v[..., None], xy, np.inf).min(axis=1), 0.0)
        hi = np.where(seen, np.where(v[..., None], xy, -np.inf).max(axis=1), 0.0)
        centre = (lo + hi) / 2
        side = np.max(hi - lo, axis=-1)
        side = np.where(side > 1e-6, side, 1.0)
        return (xy - centre[:, None]) / (side[:, None, None] / 2), v

    for name, sl in layout.part_slices().items():
        if name in ("left_hand", "right_hand"):
            xy, v = box_norm(sl)
            if name == "left_hand" and mirror_left:
                xy[..., 0] = -xy[..., 0]
        else:
            ls, rs = x[:, 1, :2], x[:, 4, :2]
            shoulders = valid[:, 1] & valid[:, 4]
            centre = (ls + rs) / 2
            width = np.linalg.norm(ls - rs, axis=-1)
            ok = shoulders & (width > 1e-6)
            xy_box, v = box_norm(sl)
            xy = np.where(ok[:, None, None],
                          (x[:, sl, :2] - centre[:, None]) / np.where(ok, width, 1.0)[:, None, None],
                          xy_box)
        out[:, sl, :2] = np.where(v[..., None], xy, 0.0)
    return out


@pytest.mark.parametrize("extra", [(), ("face",), ("mouth",), ("face", "mouth")])
def test_normalize_parts_is_bitwise_the_reference(extra):
    """The vectorised normalize_parts (planes, both hands at once, NaN-masked boxes) against the straightforward
    reference on random keypoints with every edge case: low/negative confidence, missing hands and shoulders,
    NaN/inf, boxes of one repeated point, float64 input, threshold 0, no mirroring; also on several videos'
    frames at once (every frame is normalized on its own)."""
    layout = kp.KeypointLayout(extra=extra)
    rng = np.random.default_rng(len(extra))
    for trial in range(12):
        f = int(rng.integers(1, 120))
        x = np.zeros((f, layout.num_points, 3), np.float32)
        x[..., :2] = rng.uniform(-50, 700, (f, layout.num_points, 2))
        x[..., 2] = rng.uniform(0, 1, (f, layout.num_points))
        x[rng.random(f) < 0.2, kp.LEFT_HAND, 2] = 0
        x[rng.random(f) < 0.2, 1, 2] = 0                         # left shoulder missing
        x[rng.random(f) < 0.1, 4, :2] = x[0, 1, :2]              # shoulders on one point
        x[rng.random(f) < 0.1, kp.RIGHT_HAND, :2] = 123.0        # a hand box of zero size
        x[rng.random(x.shape) < 0.01] = np.nan
        x[rng.random(x.shape) < 0.005] = np.inf
        if trial % 4 == 1:
            x[..., 2] -= 0.5                                     # negative confidences
        if trial % 4 == 2:
            x = x.astype(np.float64)
        for thr, mirror in ((0.3, True), (0.0, False)):
            want = reference_normalize_parts(x, layout, thr, mirror)
            got = kp.normalize_parts(x, layout, thr, mirror)
            assert got.dtype == np.float32 and got.shape == want.shape
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (extra, trial, thr, mirror)
    a, b = x[:50], x[50:]
    both = kp.normalize_parts(np.concatenate([a, b]), layout)
    assert np.array_equal(both, np.concatenate([kp.normalize_parts(a, layout), kp.normalize_parts(b, layout)]))
