"""2-D whole-body pose estimation for extraction (Sec. 3.1) behind one interface, three backends.

A :class:`PoseEstimator` maps RGB frames ``uint8 (N, H, W, 3)`` to a :class:`PoseResult` in the
backend's own keypoint layout; :meth:`PoseResult.to_store` converts that to the store layout of
``seds.data.features.STORE_LAYOUT``: ``(N, 87, 3)`` float32 pixel x, y and confidence for the
49 SEDS points + 18 face + 20 mouth points. Missing people, hands or faces get confidence 0 and
coordinates 0 (never NaN).

Backends (:func:`make_pose_estimator`):

* ``"mediapipe"``: MediaPipe Holistic (legacy ``mp.solutions.holistic``, models inside the wheel),
  layout [33 pose | 21 left hand | 21 right hand | 468 face] = 543 points. "Left" is the *subject's*
  left in MediaPipe Holistic, as in COCO-WholeBody: in a non-mirrored front-camera video the subject's
  left hand is on the image's right side.
* ``"rtmpose"``: RTMPose / RTMW whole-body (133 COCO-WholeBody points) with a YOLOX person detector,
  run through ``rtmlib`` on onnxruntime, from local ONNX files or rtmlib's cache/download.
* ``"mmpose"``: ``MMPoseInferencer('wholebody')`` when the optional ``mmpose`` extra is installed.

The frame-quality filter of Sec. 3.1 (drop frames without a signer or without a visible hand) is
:func:`filter_frames`.
"""
from __future__ import annotations

import abc
import importlib.util
import inspect
import os
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from seds.data.features import STORE_LAYOUT
from seds.keypoints import N_BODY, N_HAND, coco_wholebody_to_seds, mediapipe_to_seds

COCO_WHOLEBODY = "coco_wholebody"          # 133 points
MEDIAPIPE_HOLISTIC = "mediapipe_holistic"  # 75 points, or 543 with the face mesh
STORE_EXTRA = STORE_LAYOUT.extra           # ("face", "mouth")
N_STORE = STORE_LAYOUT.num_points          # 87

Progress = Callable[[float], None]


class PoseError(ValueError):
    """Bad input to, or unusable output from, a pose estimator."""


class NoSignerError(PoseError):
    """No frame of a video shows a signer (or no frame shows a hand)."""


class PoseBackendUnavailable(ImportError):
    """A pose backend's optional dependency is not installed; the message says how to install it."""


class PoseModelNotFound(PoseError, FileNotFoundError):
    """A model file given as a local path does not exist (nothing is downloaded for local paths)."""


# --- result ------------------------------------------------------------------------------------

def sanitize_keypoints(kpts: np.ndarray) -> np.ndarray:
    """float32 copy with NaN/inf → 0, confidence clipped to [0, 1], and (0, 0) where confidence is 0."""
    k = np.nan_to_num(np.asarray(kpts, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    k[..., 2] = np.clip(k[..., 2], 0.0, 1.0)
    k[..., :2] *= (k[..., 2:3] > 0)
    return k


@dataclass
class PoseResult:
    """Keypoints in the backend's own layout: ``(N, K, 3)`` pixel x, y, confidence."""

    keypoints: np.ndarray
    layout: str                     # COCO_WHOLEBODY or MEDIAPIPE_HOLISTIC
    image_size: tuple[int, int]     # (width, height) of the frames the pixels refer to
    backend: str = ""

    def __post_init__(self):
        k = self.keypoints
        if k.ndim != 3 or k.shape[-1] != 3:
            raise PoseError(f"pose keypoints must be (frames, points, 3), got {k.shape}")
        expected = {COCO_WHOLEBODY: (133,), MEDIAPIPE_HOLISTIC: (75, 543)}
        if self.layout not in expected:
            raise PoseError(f"unknown keypoint layout {self.layout!r}; choose from {tuple(expected)}")
        if k.shape[1] not in expected[self.layout]:
            raise PoseError(f"layout {self.layout} has {expected[self.layout]} points, got {k.shape[1]}")

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    def to_store(self) -> np.ndarray:
        """``(N, 87, 3)`` float32 in ``STORE_LAYOUT`` (49 SEDS + 18 face + 20 mouth points)."""
        k = self.keypoints
        if self.layout == COCO_WHOLEBODY:
            out = coco_wholebody_to_seds(k, extra=STORE_EXTRA)
        elif k.shape[1] == 543:
            out = mediapipe_to_seds(k, extra=STORE_EXTRA)
        else:   # no face mesh: face and mouth parts are missing
            body = mediapipe_to_seds(k)
            out = np.concatenate([body, np.zeros((k.shape[0], N_STORE - body.shape[1], 3), k.dtype)], 1)
        return sanitize_keypoints(out)


# --- interface -----------------------------------------------------------------------------------

def check_frames(frames) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise PoseError(f"frames must be a uint8 numpy array, got "
                        f"{type(frames).__name__} {getattr(frames, 'dtype', '')}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise PoseError(f"frames must be (N, H, W, 3) RGB, got shape {frames.shape}")
    if frames.shape[0] == 0:
        raise PoseError("no frames to estimate pose on")
    return frames


class PoseEstimator(abc.ABC):
    """Frames ``uint8 (N, H, W, 3)`` RGB → :class:`PoseResult`.

    One call is one video: tracking backends reset their state at the start of each call, except with
    ``continue_tracking=True``, which continues the previous call's video (a long recording fed in chunks:
    the chunks together give what one call on all frames gives). ``progress`` (optional) receives the
    fraction of frames done, in [0, 1].
    """

    name: str = "pose"
    layout: str = ""
    continue_tracking: bool = False   # set for the duration of a call; tracking backends read it

    def __call__(self, frames: np.ndarray, progress: Progress | None = None, *,
                 continue_tracking: bool = False) -> PoseResult:
        frames = check_frames(frames)
        self.continue_tracking = bool(continue_tracking)
        try:
            kpts = self._estimate(frames, progress)
        finally:
            self.continue_tracking = False
        if progress is not None:
            progress(1.0)
        return PoseResult(sanitize_keypoints(kpts), self.layout, (frames.shape[2], frames.shape[1]),
                          self.name)

    def store_keypoints(self, frames: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Shortcut: ``self(frames).to_store()``."""
        return self(frames, progress).to_store()

    @abc.abstractmethod
    def _estimate(self, frames: np.ndarray, progress: Progress | None) -> np.ndarray:
        """``(N, K, 3)`` keypoints in this backend's layout (pixels, confidence)."""

    def close(self) -> None:
        """Release backend resources (optional)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _report(progress: Progress | None, i: int, n: int) -> None:
    step = max(1, n // 20)
    if progress is not None and (i + 1) % step == 0:
        progress((i + 1) / n)


# --- MediaPipe Holistic --------------------------------------------------------------------------

class MediaPipeEstimator(PoseEstimator):
    """MediaPipe Holistic (mediapipe 0.10.x legacy solution).

    Output layout [33 pose | 21 left hand | 21 right hand (| 468 face)] in pixels. Confidence: the pose
    landmark ``visibility``; ``hand_confidence`` for every point of a detected hand (0 when absent);
    ``face_confidence`` for a detected face mesh. Left/right are the subject's.
    """

    name = "mediapipe"
    layout = MEDIAPIPE_HOLISTIC

    def __init__(self, model_complexity: int = 1, static_image_mode: bool = False,
                 smooth_landmarks: bool = True, refine_face_landmarks: bool = False,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 hand_confidence: float = 1.0, face_confidence: float = 1.0, face: bool = True,
                 allow_download: bool = True):
        if model_complexity not in (0, 1, 2):
            raise PoseError(f"model_complexity must be 0, 1 or 2, got {model_complexity}")
        for nm, v in (("hand_confidence", hand_confidence), ("face_confidence", face_confidence)):
            if not 0.0 < v <= 1.0:
                raise PoseError(f"{nm} must be in (0, 1], got {v}")
        try:
            import mediapipe
            from mediapipe.python.solutions import holistic as mp_holistic
        except ImportError as e:   # pragma: no cover - mediapipe is a core requirement
            raise PoseBackendUnavailable("the 'mediapipe' pose backend needs mediapipe==0.10.21 "
                                         "(pip install mediapipe==0.10.21)") from e
        # the wheel ships the full (complexity 1) pose model; lite (0) and heavy (2) are downloaded
        # by MediaPipe on first use, which needs internet
        if model_complexity != 1:
            name = "pose_landmark_lite.tflite" if model_complexity == 0 else "pose_landmark_heavy.tflite"
            model_file = os.path.join(os.path.dirname(mediapipe.__file__), "modules", "pose_landmark", name)
            if not os.path.exists(model_file) and not allow_download:
                raise PoseModelNotFound(f"mediapipe model_complexity={model_complexity} needs {name}, which is "
                                        "not in the mediapipe wheel; use model_complexity=1 (offline) or "
                                        "allow_download=True with internet")
        self._opts = dict(static_image_mode=static_image_mode, model_complexity=model_complexity,
                          smooth_landmarks=smooth_landmarks, refine_face_landmarks=refine_face_landmarks,
                          min_detection_confidence=min_detection_confidence,
                          min_tracking_confidence=min_tracking_confidence)
        self._cls = mp_holistic.Holistic
        self._holistic = None
        self.hand_confidence = float(hand_confidence)
        self.face_confidence = float(face_confidence)
        self.face = bool(face)

    @property
    def num_points(self) -> int:
        return 543 if self.face else 75

        self._holistic = self._new_graph()   # built now, so that a missing model fails here

    def _new_graph(self):
        try:
            return self._cls(**self._opts)
        except (OSError, ConnectionError) as e:   # urllib's URLError is an OSError
            raise PoseModelNotFound(f"mediapipe could not fetch the pose model for model_complexity="
                                    f"{self._opts['model_complexity']} ({e}); use model_complexity=1, which "
                                    "ships inside the mediapipe wheel") from e

    def _graph(self):
        if self._holistic is None:
            self._holistic = self._new_graph()
        elif not self.continue_tracking:
            self._holistic.reset()   # a new video: forget the tracking state
        return self._holistic

    def _estimate(self, frames, progress):
        n, h, w = frames.shape[:3]
        out = np.zeros((n, self.num_points, 3), np.float32)
        graph = self._graph()
        scale = np.array([w, h], np.float32)
        for i in range(n):
            r = graph.process(np.ascontiguousarray(frames[i]))
            if r.pose_landmarks is not None:
                out[i, :33] = [(p.x, p.y, p.visibility) for p in r.pose_landmarks.landmark]
            for lms, start in ((r.left_hand_landmarks, 33), (r.right_hand_landmarks, 54)):
                if lms is not None:
                    out[i, start:start + 21, :2] = [(p.x, p.y) for p in lms.landmark]
                    out[i, start:start + 21, 2] = self.hand_confidence
            if self.face and r.face_landmarks is not None:
                out[i, 75:, :2] = [(p.x, p.y) for p in r.face_landmarks.landmark[:468]]
                out[i, 75:, 2] = self.face_confidence
            _report(progress, i, n)
        out[..., :2] *= scale
        return out

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None


# --- RTMPose through rtmlib -----------------------------------------------------------------------

def _rtmlib_cached_onnx(url: str) -> str | None:
    """Where rtmlib keeps the ONNX file of ``url`` once downloaded, if it is there."""
    try:
        from rtmlib.tools.file import _get_rtmhub_dir
    except ImportError:   # pragma: no cover - rtmlib layout changed
        return None
    name = os.path.basename(url).split(".")[0] + ".onnx"
    path = os.path.join(_get_rtmhub_dir(), "checkpoints", name)
    return path if os.path.exists(path) else None


def _static_hw(session) -> tuple[int, int] | None:
    shape = session.get_inputs()[0].shape
    if len(shape) == 4 and all(isinstance(s, int) and s > 0 for s in shape[2:]):
        return int(shape[2]), int(shape[3])
    return None


class RTMPoseEstimator(PoseEstimator):
    """RTMPose / RTMW whole-body (COCO-WholeBody, 133 points) with a YOLOX person detector, via rtmlib.

    ``pose_model`` / ``det_model``: local ONNX paths (must exist; never downloaded) or ``None`` for
    rtmlib's default models of ``mode`` ("performance", "balanced", "lightweight"), taken from
    rtmlib's cache, or downloaded by rtmlib when ``allow_download`` (online use only).
    Model input sizes are read from static ONNX input shapes (else ``pose_input_size`` /
    ``det_input_size`` as (width, height)). The detector gets BGR frames (YOLOX/mmdet convention),
    the pose model RGB ones (mmpose ``bgr_to_rgb=True``; set ``pose_channels="bgr"`` to feed BGR).
    Per frame the largest detected person is the signer; with no detection the frame's keypoints get
    confidence 0 (``no_detection="empty"``) or the whole frame is used (``"full_image"``);
    ``use_detector=False`` always uses the whole frame.
    """

    name = "rtmpose"
    layout = COCO_WHOLEBODY

    def __init__(self, pose_model: str | None = None, det_model: str | None = None,
                 mode: str = "balanced", pose_input_size: tuple[int, int] | None = None,
                 det_input_size: tuple[int, int] | None = None, device: str = "cpu",
                 use_detector: bool = True, no_detection: str = "empty", det_score_thr: float = 0.5,
                 det_nms_thr: float = 0.45, pose_channels: str = "rgb", allow_download: bool = True):
        try:
            import onnxruntime as ort
            from rtmlib import YOLOX, RTMPose
            from rtmlib.tools.solution.wholebody import Wholebody
        except ImportError as e:
            raise PoseBackendUnavailable(
                "the 'rtmpose' pose backend needs onnxruntime and rtmlib: pip install onnxruntime "
                "(or onnxruntime-gpu) and pip install --no-deps rtmlib") from e
        if mode not in Wholebody.MODE:
            raise PoseError(f"rtmpose mode must be one of {tuple(Wholebody.MODE)}, got {mode!r}")
        if no_detection not in ("empty", "full_image"):
            raise PoseError(f"no_detection must be 'empty' or 'full_image', got {no_detection!r}")
        if pose_channels not in ("rgb", "bgr"):
            raise PoseError(f"pose_channels must be 'rgb' or 'bgr', got {pose_channels!r}")
        device = str(device)
        if device.startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise PoseError(f"device={device!r} needs onnxruntime-gpu (CUDAExecutionProvider); available "
                            f"providers: {ort.get_available_providers()}")
        if not (device == "cpu" or device.startswith("cuda")):
            raise PoseError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        self.allow_download = allow_download
        self.device = device
        self.no_detection = no_detection
        self.pose_channels = pose_channels
        defaults = Wholebody.MODE[mode]
        # a local model path means offline use: never download the other model either
        self._offline = any(m is not None and not os.fspath(m).startswith(("http://", "https://"))
                            for m in (pose_model, det_model))
        pose_src = self._resolve(pose_model, defaults["pose"], "pose_model")
        size = tuple(pose_input_size or defaults["pose_input_size"])
        self._pose = self._load(RTMPose, pose_src, "pose_model", model_input_size=size)
        hw = _static_hw(self._pose.session)
        if hw is not None:
            self._pose.model_input_size = (hw[1], hw[0])
        self._det = None
        if use_detector:
            det_src = self._resolve(det_model, defaults["det"], "det_model")
            # rtmlib's YOLOX takes (height, width); ours is (width, height) like the pose model's
            dsize = tuple(det_input_size[::-1]) if det_input_size else tuple(defaults["det_input_size"])
            self._det = self._load(YOLOX, det_src, "det_model", model_input_size=dsize,
                                   score_thr=det_score_thr, nms_thr=det_nms_thr)
            hw = _static_hw(self._det.session)
            if hw is not None:
                self._det.model_input_size = hw   # rtmlib's YOLOX indexes (height, width)
        self.model_names = {"pose": os.path.basename(str(pose_src)),
                            "det": os.path.basename(str(det_src)) if use_detector else None}

    def _load(self, cls, src: str, field: str, **kw):
        try:
            return cls(src, backend="onnxruntime", device=self.device, **kw)
        except (OSError, ConnectionError) as e:   # a failed download (URLError is an OSError)
            if os.path.isfile(src):
                raise
            raise PoseModelNotFound(f"rtmpose {field}: could not download {src} ({e}); pass a local ONNX "
                                    "path instead") from e

    def _resolve(self, path: str | None, default_url: str, field: str) -> str:
        if path is not None:
            path = os.fspath(path)
            if path.startswith(("http://", "https://")):
                url = path
            else:
                if not os.path.isfile(path):
                    raise PoseModelNotFound(f"rtmpose {field}: ONNX file not found: {path}")
                return path
        else:
            url = default_url
        cached = _rtmlib_cached_onnx(url)
        if cached is not None:
            return cached
        if not self.allow_download or self._offline:
            why = "other model given as a local file (offline use)" if self._offline else "allow_download=False"
            hint = "use_detector=False or " if field == "det_model" else ""
            raise PoseModelNotFound(
                f"rtmpose {field}: no local ONNX file given and {os.path.basename(url)} is not in rtmlib's "
                f"cache ({why}); pass {hint}{field}=<path to .onnx>, or allow_download=True with internet")
        return url   # rtmlib downloads it (online use only)

    def _person_box(self, bgr: np.ndarray, w: int, h: int):
        full = np.array([0, 0, w, h], np.float32)
        if self._det is None:
            return full
        boxes = np.asarray(self._det(bgr), dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return full if self.no_detection == "full_image" else None
        area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
        return boxes[int(np.argmax(area))]

    def _estimate(self, frames, progress):
        import cv2
        n, h, w = frames.shape[:3]
        out = np.zeros((n, 133, 3), np.float32)
        for i in range(n):
            rgb = np.ascontiguousarray(frames[i])
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            box = self._person_box(bgr, w, h)
            if box is not None:
                kp, sc = self._pose(rgb if self.pose_channels == "rgb" else bgr, bboxes=[box.tolist()])
                out[i, :, :2] = kp[0]
                out[i, :, 2] = sc[0]
            _report(progress, i, n)
        return out


# --- MMPose (optional extra) ---------------------------------------------------------------------

MMPOSE_INSTALL = ("the 'mmpose' pose backend needs the optional mmpose extra: pip install -U openmim && "
                  "mim install mmengine 'mmcv>=2.0.1,<2.2.0' 'mmdet>=3.1.0' 'mmpose>=1.1.0' "
                  "(or use pose_backend='mediapipe' / 'rtmpose')")


class MMPoseEstimator(PoseEstimator):
    """``MMPoseInferencer(model)`` (default ``'wholebody'``: COCO-WholeBody 133 points). Per frame the
    instance with the largest box is the signer."""

    name = "mmpose"
    layout = COCO_WHOLEBODY

    def __init__(self, model: str = "wholebody", device: str = "cpu", **inferencer_kwargs):
        try:
            from mmpose.apis import MMPoseInferencer
        except Exception as e:   # ImportError, or mmcv's own errors when its ops are missing
            raise PoseBackendUnavailable(f"{MMPOSE_INSTALL}; import failed with: {e}") from e
        self._inferencer = MMPoseInferencer(model, device=device, **inferencer_kwargs)

    def _estimate(self, frames, progress):
        n = frames.shape[0]
        out = np.zeros((n, 133, 3), np.float32)
        for i in range(n):
            bgr = np.ascontiguousarray(frames[i, ..., ::-1])   # mmcv reads arrays as BGR
            res = next(self._inferencer(bgr, return_vis=False))
            insts = res["predictions"][0] if res["predictions"] else []
            if insts:
                def area(inst):
                    b = np.asarray(inst.get("bbox", [[0, 0, 0, 0]])).reshape(-1)[:4]
                    return float(max(b[2] - b[0], 0) * max(b[3] - b[1], 0))
                best = max(insts, key=area)
                k = np.asarray(best["keypoints"], np.float32).reshape(-1, 2)
                if k.shape[0] != 133:
                    raise PoseError(f"mmpose model gave {k.shape[0]} keypoints; a COCO-WholeBody (133 point) "
                                    "model is needed, e.g. model='wholebody'")
                out[i, :, :2] = k
                out[i, :, 2] = np.asarray(best["keypoint_scores"], np.float32).reshape(-1)
            _report(progress, i, n)
        return out


# --- factory -------------------------------------------------------------------------------------

POSE_BACKENDS: dict[str, type[PoseEstimator]] = {
    "mediapipe": MediaPipeEstimator,
    "rtmpose": RTMPoseEstimator,
    "mmpose": MMPoseEstimator,
}
_BACKEND_MODULES = {"mediapipe": ("mediapipe",), "rtmpose": ("onnxruntime", "rtmlib"), "mmpose": ("mmpose",)}


def available_pose_backends() -> list[str]:
    """Backends whose Python dependencies are installed (models may still be missing)."""
    return [name for name, mods in _BACKEND_MODULES.items()
            if all(importlib.util.find_spec(m) is not None for m in mods)]


def make_pose_estimator(name: str, **opts) -> PoseEstimator:
    """Build a backend by name: ``"mediapipe"``, ``"rtmpose"`` or ``"mmpose"``, with its options."""
    if name not in POSE_BACKENDS:
        raise PoseError(f"unknown pose backend {name!r}; choose from {tuple(POSE_BACKENDS)}")
    cls = POSE_BACKENDS[name]
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        bad = sorted(set(opts) - set(params) - {"self"})
        if bad:
            raise PoseError(f"unknown option(s) {bad} for pose backend {name!r}; valid: "
                            f"{[p for p in params if p != 'self']}")
    return cls(**opts)


# --- frame-quality filter (Sec. 3.1) -------------------------------------------------------------

@dataclass(frozen=True)
class FrameFilter:
    """Which frames to keep (Sec. 3.1): drop frames without a signer and, optionally, frames in which
    neither hand is visible.

    A frame has a *signer* when at least ``min_body_points`` of the 7 upper-body points reach ``conf``;
    a *hand is visible* when at least ``min_hand_points`` of its 21 points reach ``conf``.
    """

    require_signer: bool = True
    require_hand: bool = True
    conf: float = 0.3
    min_body_points: int = 3
    min_hand_points: int = 10

    def __call__(self, raw_kpts: np.ndarray) -> np.ndarray:
        return filter_frames(raw_kpts, **asdict(self))


def filter_frames(raw_kpts: np.ndarray, require_signer: bool = True, require_hand: bool = True,
                  conf: float = 0.3, min_body_points: int = 3, min_hand_points: int = 10) -> np.ndarray:
    """Keep mask ``(N,)`` over store-layout keypoints ``(N, 87, 3)`` (or any layout starting with the
    49 SEDS points). Raises :class:`NoSignerError` when no frame remains."""
    k = np.asarray(raw_kpts)
    if k.ndim != 3 or k.shape[-1] != 3 or k.shape[1] < N_BODY + 2 * N_HAND:
        raise PoseError(f"expected keypoints (frames, >=49, 3), got {k.shape}")
    if k.shape[0] == 0:
        raise NoSignerError("no frames to filter")
    if not 1 <= min_body_points <= N_BODY:
        raise PoseError(f"min_body_points must be in 1..{N_BODY}, got {min_body_points}")
    if not 1 <= min_hand_points <= N_HAND:
        raise PoseError(f"min_hand_points must be in 1..{N_HAND}, got {min_hand_points}")
    signer, hand = frame_presence(k, conf, min_body_points, min_hand_points)
    keep = np.ones(k.shape[0], bool)
    if require_signer:
        keep &= signer
        if not keep.any():
            raise NoSignerError(f"no signer found in any of the {k.shape[0]} frames (no frame has "
                                f"{min_body_points} upper-body keypoints with confidence >= {conf})")
    if require_hand:
        keep &= hand
        if not keep.any():
            raise NoSignerError(f"no signer found: none of the {k.shape[0]} frames shows a hand "
                                f"({min_hand_points} hand keypoints with confidence >= {conf})")
    return keep


def frame_presence(k: np.ndarray, conf: float = 0.3, min_body_points: int = 3,
                   min_hand_points: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of store-layout keypoints ``(N, >=49, 3)``: (a signer is there, a hand is visible), both
    ``(N,)`` bool, by :class:`FrameFilter`'s test; never raises for frames without anyone."""
    ok = np.nan_to_num(k[..., 2]) >= conf
    signer = ok[:, :N_BODY].sum(1) >= min_body_points
    left = ok[:, N_BODY:N_BODY + N_HAND].sum(1) >= min_hand_points
    right = ok[:, N_BODY + N_HAND:N_BODY + 2 * N_HAND].sum(1) >= min_hand_points
    return signer, left | right
