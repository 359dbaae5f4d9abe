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
