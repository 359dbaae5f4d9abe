"""Pose backends (seds.extract.pose): MediaPipe Holistic on real How2Sign frames, RTMPose through
rtmlib's real code path with ONNX models built here, the mmpose adapter, the store-layout conversion
and the frame-quality filter (Sec. 3.1)."""
import csv
import sys
import types

import numpy as np
import pytest

from seds.extract import pose as P
from seds.extract.pose import (FrameFilter, NoSignerError, PoseBackendUnavailable, PoseError, PoseModelNotFound,
                               PoseResult, filter_frames, make_pose_estimator)
from seds.extract.video import read_video

# COCO-WholeBody index of each store-layout point, written out independently of seds.keypoints:
# body (nose, l/r shoulder-elbow-wrist), left hand 91-111, right hand 112-132, then face and mouth
# (COCO-WholeBody face = 23 + iBUG-68 index).
STORE_FROM_COCO = ([0, 5, 7, 9, 6, 8, 10] + list(range(91, 112)) + list(range(112, 133))
                   + [23 + i for i in (0, 4, 8, 12, 16, 17, 19, 21, 22, 24, 26, 27, 30, 33, 36, 39, 42, 45)]
                   + [23 + i for i in range(48, 68)])


# --- MediaPipe on real frames ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_frames(shared_data):
    """~10 evenly spaced frames from each of 5 clips of different source videos (signers)."""
    root = shared_data / "how2sign-mini"
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"{root}/manifest.csv not present")
    with open(root / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if 150 <= int(r["n_frames"]) <= 400]
    seen, picked = set(), []
    for r in rows:
        if r["video_id"] not in seen:
            seen.add(r["video_id"])
            picked.append(r)
        if len(picked) == 5:
            break
    out = []
    for r in picked:
        n, fps = int(r["n_frames"]), float(r["fps"])
        v = read_video(root / r["file"], fps=10 * fps / n)      # decodes only ~10 frames
        out.append((r["id"], v.frames))
    return out


@pytest.fixture(scope="module")
def mediapipe_results(real_frames):
    est = make_pose_estimator("mediapipe", model_complexity=1)
    res = [(cid, frames, est(frames)) for cid, frames in real_frames]
    again = est(real_frames[0][1])          # same frames again: tracking state must be reset
    est.close()
    return res, again


@pytest.mark.slow
def test_mediapipe_finds_signer_and_hands_on_real_frames(mediapipe_results):
    res, _ = mediapipe_results
    signer, left, right = [], [], []
    for cid, frames, r in res:
        assert r.layout == P.MEDIAPIPE_HOLISTIC and r.keypoints.shape == (len(frames), 543, 3)
        assert r.image_size == (640, 360)
        st = r.to_store()
        assert st.shape == (len(frames), 87, 3) and st.dtype == np.float32
        assert np.isfinite(st).all() and st[..., 2].min() >= 0 and st[..., 2].max() <= 1
        assert np.all(st[..., :2][st[..., 2] == 0] == 0)          # missing → (0, 0), never NaN
        signer.append((st[:, :7, 2] >= 0.5).sum(1) >= 5)
        left.append((st[:, 7:28, 2] > 0).all(1))
        right.append((st[:, 28:49, 2] > 0).all(1))
        # detected points lie in (or just around) the frame
        xy = st[..., :2][st[..., 2] > 0.5]
        assert (xy[:, 0] > -64).all() and (xy[:, 0] < 704).all() and (xy[:, 1] > -64).all() and (xy[:, 1] < 424).all()
    signer, left, right = (np.concatenate(a) for a in (signer, left, right))
    rates = {"signer": signer.mean(), "left": left.mean(), "right": right.mean(),
             "both": (left & right).mean(), "any": (left | right).mean()}
    print("mediapipe detection rates over", len(signer), "frames:", {k: round(float(v), 3) for k, v in rates.items()})
    assert rates["signer"] >= 0.95
    assert rates["any"] >= 0.9
    assert rates["both"] >= 0.6


@pytest.mark.slow
def test_mediapipe_left_is_the_subjects_left(mediapipe_results):
    """Non-mirrored front camera: the subject's left shoulder/hand appear on the image's right, and
    Holistic's left hand sits on the pose model's left wrist."""
    res, _ = mediapipe_results
    st = np.concatenate([r.to_store() for _, _, r in res])
    sh = (st[:, 1, 2] > 0.5) & (st[:, 4, 2] > 0.5)
    assert sh.sum() >= 20 and (st[sh, 1, 0] > st[sh, 4, 0]).all()      # left shoulder x > right shoulder x
    for hand, own, other in ((7, 3, 6), (28, 6, 3)):                   # hand wrist vs body wrists
        ok = (st[:, hand, 2] > 0) & (st[:, own, 2] > 0.5) & (st[:, other, 2] > 0.5)
        d_own = np.linalg.norm(st[ok, hand, :2] - st[ok, own, :2], axis=1)
        d_other = np.linalg.norm(st[ok, hand, :2] - st[ok, other, :2], axis=1)
        assert ok.sum() >= 10 and (d_own < d_other).mean() >= 0.9


@pytest.mark.slow
def test_mediapipe_face_and_mouth_parts(mediapipe_results):
    res, _ = mediapipe_results
    st = np.concatenate([r.to_store() for _, _, r in res])
    face = (st[:, 49:, 2] > 0).all(1)
    assert face.mean() >= 0.9
    f = st[face]
    nose, mouth = f[:, 0, :2], f[:, 67:87, :2]
    assert (mouth[..., 1].mean(1) > nose[:, 1]).all()                 # mouth below the nose
    assert (np.abs(mouth[..., 0].mean(1) - nose[:, 0]) < 30).all()    # and centred under it


@pytest.mark.slow
def test_mediapipe_resets_tracking_between_videos(mediapipe_results):
    res, again = mediapipe_results
    np.testing.assert_allclose(again.keypoints, res[0][2].keypoints, atol=1e-4)


@pytest.mark.slow
def test_mediapipe_blank_frames_have_no_signer():
    frames = np.full((3, 120, 160, 3), (90, 180, 90), np.uint8)      # empty green screen
    est = make_pose_estimator("mediapipe", face=False)
    r = est(frames)
    assert r.keypoints.shape == (3, 75, 3)
    st = r.to_store()
    assert st.shape == (3, 87, 3) and not st.any()
    with pytest.raises(NoSignerError, match="no signer found"):
        filter_frames(st)
    est.close()


# --- RTMPose through rtmlib with ONNX models built here -----------------------------------------------

def _onnx():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("rtmlib")
    return onnx


def _const(name, arr):
    from onnx import helper, numpy_helper
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(arr), name + "_v"))


def fake_rtmpose(path, conf, hw=(256, 192), split=2):
    """RTMPose's I/O contract: input (1, 3, H, W) → simcc_x (1, K, W·split), simcc_y (1, K, H·split).
    The fake puts every keypoint's peak at the brightest column/row of input channel 0 (ReLU of the
    normalised crop summed along the other axis), with height ``conf[k]`` (its decoded score)."""
    onnx = _onnx()
    from onnx import TensorProto, helper
    h, w = hw
    k = len(conf)
    nodes = [_const("ch", np.array(0, np.int64)), _const("ax1", np.array([1], np.int64)),
             _const("ax2", np.array([2], np.int64)), _const("eps", np.array(1e-6, np.float32)),
             _const("conf", np.asarray(conf, np.float32).reshape(1, k, 1)),
             helper.make_node("Gather", ["input", "ch"], ["g"], axis=1),
             helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("ReduceSum", ["r", "ax1"], ["px"], keepdims=0),     # (1, W)
             helper.make_node("ReduceSum", ["r", "ax2"], ["py"], keepdims=0)]     # (1, H)
    for a, n in (("px", w), ("py", h)):
        nodes += [_const(a + "_sh", np.array([1, n, split], np.int64)),
                  _const(a + "_rs", np.array([1, 1, n * split], np.int64)),
                  helper.make_node("Unsqueeze", [a, "ax2"], [a + "u"]),
                  helper.make_node("Expand", [a + "u", a + "_sh"], [a + "e"]),
                  helper.make_node("Reshape", [a + "e", a + "_rs"], [a + "s"]),
                  helper.make_node("ReduceMax", [a + "s"], [a + "m"], keepdims=1),
                  helper.make_node("Add", [a + "m", "eps"], [a + "me"]),
                  helper.make_node("Div", [a + "s", a + "me"], [a + "n"]),
                  helper.make_node("Mul", [a + "n", "conf"], ["simcc_" + a[1]])]
    graph = helper.make_graph(
        nodes, "fake_rtmpose", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, k, w * split]),
         helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, k, h * split])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def fake_yolox(path, dets, hw=(640, 640)):
    """YOLOX end-to-end (NMS inside) contract as rtmlib reads it: input (1, 3, H, W) → dets (1, N, 5)
    of x1, y1, x2, y2, score in the padded model-input frame; here constant boxes."""
    onnx = _onnx()
    from onnx import TensorProto, helper
    d = np.asarray(dets, np.float32).reshape(1, -1, 5)
    nodes = [_const("d", d), _const("zero", np.array(0, np.float32)),
             helper.make_node("ReduceMean", ["input"], ["mu"], keepdims=0),
             helper.make_node("Mul", ["mu", "zero"], ["z"]),
             helper.make_node("Add", ["d", "z"], ["dets"])]
    graph = helper.make_graph(nodes, "fake_yolox",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *hw])],
                              [helper.make_tensor_value_info("dets", TensorProto.FLOAT, list(d.shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


CONF = np.linspace(0.31, 0.99, 133).astype(np.float32)     # a distinct score per COCO-WholeBody point
BLOBS = [(330, 150), (262, 95), (401, 297)]


def blob_frames(points=BLOBS, size=(360, 640), channel=None, sigma=5.0):
    yy, xx = np.mgrid[:size[0], :size[1]]
    frames = []
    for px, py in points:
        g = (255 * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma ** 2))).astype(np.uint8)
        img = np.repeat(g[..., None], 3, -1) if channel is None else np.zeros((*size, 3), np.uint8)
        if channel is not None:
            img[..., channel] = g
        frames.append(img)
    return np.stack(frames)


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {
        "pose": fake_rtmpose(d / "pose.onnx", CONF),
        "pose_small": fake_rtmpose(d / "pose_small.onnx", CONF, hw=(128, 96)),
        # a large person box (lower score) and a small distractor (higher score), one below threshold
        "det": fake_yolox(d / "det.onnx", [[520, 10, 600, 60, 0.95], [200, 20, 450, 360, 0.8],
                                           [0, 0, 20, 20, 0.1]]),
        "det_none": fake_yolox(d / "det_none.onnx", [[200, 20, 450, 360, 0.05]]),
    }


@pytest.fixture()
def no_network(monkeypatch):
    import rtmlib.tools.file as f

    def boom(*a, **k):
        raise AssertionError("rtmlib tried to download a model")
    monkeypatch.setattr(f, "download_url_to_file", boom)
    monkeypatch.setattr(f, "urlopen", boom)


def test_rtmpose_decodes_the_fake_models_peaks(onnx_models, no_network):
    est = make_pose_estimator("rtmpose", pose_model=onnx_models["pose"], det_model=onnx_models["det"])
    r = est(blob_frames())
    assert r.layout == P.COCO_WHOLEBODY and r.keypoints.shape == (3, 133, 3)
    for i, (px, py) in enumerate(BLOBS):       # all points at the blob, through detector box + affine crop
        np.testing.assert_allclose(r.keypoints[i, :, 0], px, atol=2.0)
        np.testing.assert_allclose(r.keypoints[i, :, 1], py, atol=2.0)
    np.testing.assert_allclose(r.keypoints[..., 2], np.broadcast_to(CONF, (3, 133)), atol=1e-4)
    st = r.to_store()
    assert st.shape == (3, 87, 3)
    np.testing.assert_allclose(st[0, :, 2], CONF[STORE_FROM_COCO], atol=1e-4)   # which point went where


def test_rtmpose_reads_input_size_from_onnx(onnx_models, no_network):
    est = make_pose_estimator("rtmpose", pose_model=onnx_models["pose_small"], use_detector=False)
    r = est(blob_frames())
    for i, (px, py) in enumerate(BLOBS):       # whole frame as the box, 96x128 model input
        np.testing.assert_allclose(r.keypoints[i, :, :2], np.broadcast_to([px, py], (133, 2)), atol=4.0)


def test_rtmpose_feeds_rgb_to_the_pose_model(onnx_models, no_network):
    frames = blob_frames(channel=0)            # blob only in the red channel
    rgb = make_pose_estimator("rtmpose", pose_model=onnx_models["pose"], use_detector=False)(frames)
    np.testing.assert_allclose(rgb.keypoints[0, :, :2], np.broadcast_to(BLOBS[0], (133, 2)), atol=3.0)
    bgr = make_pose_estimator("rtmpose", pose_model=onnx_models["pose"], use_detector=False,
                              pose_channels="bgr")(frames)
    assert not bgr.to_store().any()            # channel 0 is blue then: nothing found → conf 0, (0, 0)


def test_rtmpose_no_detection(onnx_models, no_network):
    frames = blob_frames()
    empty = make_pose_estimator("rtmpose", pose_model=onnx_models["pose"], det_model=onnx_models["det_none"])
    st = empty(frames).to_store()
    assert not st.any()
    with pytest.raises(NoSignerError):
        filter_frames(st)
    full = make_pose_estimator("rtmpose", pose_model=onnx_models["pose"], det_model=onnx_models["det_none"],
                               no_detection="full_image")
    np.testing.assert_allclose(full(frames).keypoints[1, :, :2], np.broadcast_to(BLOBS[1], (133, 2)), atol=3.0)


def test_rtmpose_never_downloads_for_local_paths(onnx_models, no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))   # an empty rtmlib cache
    with pytest.raises(PoseModelNotFound, match="not found"):
        make_pose_estimator("rtmpose", pose_model=str(tmp_path / "missing.onnx"), use_detector=False)
    with pytest.raises(PoseModelNotFound, match="det_model"):       # local pose model: offline, no det download
        make_pose_estimator("rtmpose", pose_model=onnx_models["pose"])
    with pytest.raises(PoseModelNotFound, match="allow_download"):
        make_pose_estimator("rtmpose", allow_download=False)
    # rtmlib's cache is used when it holds the default model
    from rtmlib.tools.solution.wholebody import Wholebody
    url = Wholebody.MODE["balanced"]["pose"]
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    fake_rtmpose(cache / (url.rsplit("/", 1)[1].split(".")[0] + ".onnx"), CONF)
    est = make_pose_estimator("rtmpose", use_detector=False, allow_download=False)
    assert est(blob_frames()[:1]).keypoints[0, 0, 0] == pytest.approx(BLOBS[0][0], abs=2)


def test_rtmpose_bad_options(onnx_models):
    _onnx()
    with pytest.raises(PoseError, match="mode"):
        make_pose_estimator("rtmpose", mode="fastest")
    with pytest.raises(PoseError, match="no_detection"):
        make_pose_estimator("rtmpose", pose_model=onnx_models["pose"], no_detection="skip")
    with pytest.raises(PoseError, match="onnxruntime-gpu|CUDA|device"):
        make_pose_estimator("rtmpose", pose_model=onnx_models["pose"], device="cuda:0")


# --- mmpose ------------------------------------------------------------------------------------------

def test_mmpose_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "mmpose", None)             # import mmpose → ImportError
    monkeypatch.setitem(sys.modules, "mmpose.apis", None)
    with pytest.raises(PoseBackendUnavailable, match="mim install"):
        make_pose_estimator("mmpose")


def test_mmpose_adapter_with_a_stand_in_inferencer(monkeypatch):
    seen = {}

    class FakeInferencer:
        def __init__(self, model, device="cpu"):
            seen["model"], seen["device"] = model, device

        def __call__(self, img, return_vis=False):
            seen.setdefault("channel_means", []).append(img.reshape(-1, 3).mean(0))
            small = {"bbox": [[0, 0, 10, 10]], "keypoints": np.full((133, 2), 5.0),
                     "keypoint_scores": np.full(133, 0.9)}
            big = {"bbox": [[10, 10, 200, 300]], "keypoints": np.tile([[50.0, 60.0]], (133, 1)),
                   "keypoint_scores": CONF}
            yield {"predictions": [[small, big]]}

    apis = types.ModuleType("mmpose.apis")
    apis.MMPoseInferencer = FakeInferencer
    monkeypatch.setitem(sys.modules, "mmpose", types.ModuleType("mmpose"))
    monkeypatch.setitem(sys.modules, "mmpose.apis", apis)
    est = make_pose_estimator("mmpose", device="cpu")
    frames = np.zeros((2, 32, 48, 3), np.uint8)
    frames[..., 0] = 200                                           # red in RGB
    r = est(frames)
    assert seen["model"] == "wholebody" and r.layout == P.COCO_WHOLEBODY
    np.testing.assert_allclose(r.keypoints[:, :, :2], 0 * r.keypoints[:, :, :2] + [50.0, 60.0])
    np.testing.assert_allclose(r.to_store()[0, :, 2], CONF[STORE_FROM_COCO], atol=1e-6)
    np.testing.assert_allclose(seen["channel_means"][0], [0, 0, 200])   # handed over as BGR


# --- factory, result conversion, input checks -----------------------------------------------------

def test_mediapipe_models_outside_the_wheel_are_not_fetched_offline():
    import os

    import mediapipe
    lite = os.path.join(os.path.dirname(mediapipe.__file__), "modules", "pose_landmark", "pose_landmark_lite.tflite")
    if os.path.exists(lite):
        pytest.skip("the lite pose model is installed here")
    with pytest.raises(PoseModelNotFound, match="model_complexity=1"):
        make_pose_estimator("mediapipe", model_complexity=0, allow_download=False)


def test_factory_errors():
    with pytest.raises(PoseError, match="unknown pose backend"):
        make_pose_estimator("openpose")
    with pytest.raises(PoseError, match="unknown option"):
        make_pose_estimator("mediapipe", complexity=2)
    assert "mediapipe" in P.available_pose_backends()


def test_pose_result_to_store_mediapipe_without_face_and_sanitising():
    k = np.random.default_rng(0).uniform(1, 100, (4, 75, 3)).astype(np.float32)
    k[..., 2] = 0.8
    k[1, 33:54, 2] = 0.0           # left hand missing in frame 1
    k[2, 0, 0] = np.nan
    st = PoseResult(P.sanitize_keypoints(k), P.MEDIAPIPE_HOLISTIC, (640, 360)).to_store()
    assert st.shape == (4, 87, 3) and np.isfinite(st).all()
    np.testing.assert_array_equal(st[0, :7, :2], k[0, [0, 11, 13, 15, 12, 14, 16], :2])
    np.testing.assert_array_equal(st[0, 7:28, :2], k[0, 33:54, :2])
    np.testing.assert_array_equal(st[0, 28:49, :2], k[0, 54:75, :2])
    assert not st[:, 49:].any()                                    # no face mesh → face/mouth missing
    assert not st[1, 7:28].any()
    assert st[2, 0, 0] == 0
    with pytest.raises(PoseError, match="points"):
        PoseResult(np.zeros((2, 100, 3), np.float32), P.COCO_WHOLEBODY, (1, 1))
    with pytest.raises(PoseError, match="layout"):
        PoseResult(np.zeros((2, 133, 3), np.float32), "openpose", (1, 1))


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                                 np.zeros((0, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 4), np.uint8), [1, 2]])
def test_bad_frames_are_rejected(bad):
    class Dummy(P.PoseEstimator):
        layout = P.MEDIAPIPE_HOLISTIC

        def _estimate(self, frames, progress):
            return np.zeros((len(frames), 75, 3), np.float32)
    with pytest.raises(PoseError, match="frames"):
        Dummy()(bad)


# --- frame-quality filter (Sec. 3.1) ------------------------------------------------------------------

def _naive_keep(k, require_signer, require_hand, conf, min_body, min_hand):
    keep = []
    for f in k:
        body = sum(1 for j in range(7) if f[j, 2] >= conf)
        lh = sum(1 for j in range(7, 28) if f[j, 2] >= conf)
        rh = sum(1 for j in range(28, 49) if f[j, 2] >= conf)
        ok = (body >= min_body or not require_signer) and (lh >= min_hand or rh >= min_hand or not require_hand)
        keep.append(ok)
    return np.array(keep)


@pytest.mark.parametrize("req_signer,req_hand", [(True, True), (True, False), (False, True), (False, False)])
def test_filter_frames_matches_a_naive_loop(req_signer, req_hand):
    rng = np.random.default_rng(1)
    k = rng.uniform(0, 1, (200, 87, 3)).astype(np.float32)
    # make parts all-or-nothing-ish so every case appears
    k[:, :7, 2] *= rng.uniform(0, 1.6, (200, 1)) > 0.5
    k[:, 7:28, 2] *= rng.uniform(0, 1, (200, 1)) > 0.5
    k[:, 28:49, 2] *= rng.uniform(0, 1, (200, 1)) > 0.5
    k[0, :49, 2] = 1.0                                    # at least one good frame
    for conf, mb, mh in [(0.3, 3, 10), (0.5, 1, 1), (0.1, 7, 21)]:
        got = filter_frames(k, req_signer, req_hand, conf, mb, mh)
        np.testing.assert_array_equal(got, _naive_keep(k, req_signer, req_hand, conf, mb, mh))
    assert FrameFilter(req_signer, req_hand)(k).dtype == bool


def test_filter_frames_errors():
    k = np.zeros((5, 87, 3), np.float32)
    with pytest.raises(NoSignerError, match="no signer found in any of the 5 frames"):
        filter_frames(k)
    k[:, :7, 2] = 0.9                                     # a body, but no hand
    with pytest.raises(NoSignerError, match="shows a hand"):
        filter_frames(k)
    np.testing.assert_array_equal(filter_frames(k, require_hand=False), np.ones(5, bool))
    assert issubclass(NoSignerError, ValueError)
    with pytest.raises(PoseError):
        filter_frames(np.zeros((5, 20, 3)))
    with pytest.raises(PoseError):
        filter_frames(k, min_hand_points=0)
