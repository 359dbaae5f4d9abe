"""The SEDS authors' released file formats: read safely, write exactly.

Formats (``shared/reference/harness/FORMATS.md`` §1–3, How2Sign configuration):

* annotations ``data_h2/{train,test}.pkl``: a dict ``sentence_id → [video dict, ...]``, each video dict
  holding ``text`` (the sentence, the same for all videos of an id), ``new_video_name`` (file stem of
  the pose and I3D files), ``video_name`` and ``num_frames``. Insertion order is the dataset order.
  Repeated sentences come two ways: several videos under one id, and the same text under several
  ids (kept apart: each id is its own sentence).
* keypoints ``RTMpose/Pose_all_24rates/<new_video_name>.pkl``: ``{"keypoints": (T, 133, 3) x, y,
  score per COCO-WholeBody point, "img_list": [T frame names]}``; the frame number is the last
  ``_``-separated field of the name before its first dot.
* I3D features ``I3D_features/<split>/<new_video_name>.pkl``: ``{"name": str, "feature": (n, 1024)}``.

Every reader goes through :func:`seds.safe_pickle.load_numpy_pickle`, so a file that tries to construct
anything but numpy arrays and plain containers is refused (nothing in it runs), and every error names
the file. Writers produce exactly the structures above (plain ``pickle`` of numpy + containers).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seds.atomic import atomic_write_bytes
from seds.safe_pickle import load_numpy_pickle

N_WHOLEBODY = 133
RGB_DIM = 1024
POSE_SUBDIR = Path("RTMpose") / "Pose_all_24rates"     # under the dataset root (e.g. How2Sign/)
RGB_SUBDIR = Path("I3D_features")                       # + /<split>/
ANNOTATION_SUBDIR = Path("data_h2")                     # + /<split>.pkl


class OfficialFormatError(ValueError):
    """A file is not in the authors' format (wrong keys, shapes, frame names...); names the file."""


@dataclass(frozen=True)
class OfficialVideo:
    """One video of an annotation file, in dataset order."""

    sentence_id: str
    text: str                 # the sentence (the first video's text, as the authors' loader uses)
    new_video_name: str       # file stem of the pose and I3D pickles; our video id
    video_name: str = ""
    num_frames: int = -1


@dataclass
class OfficialPose:
    keypoints: np.ndarray     # (T, 133, 3) x, y, score (dtype as stored in the file)
    img_list: list[str]       # T frame names

    @property
    def frame_numbers(self) -> list[int]:
        return [frame_number(n) for n in self.img_list]


def frame_number(name: str) -> int:
    """The authors' frame-number rule: ``int(name.split('.')[0].split('_')[-1])``."""
    try:
        return int(name.split(".")[0].split("_")[-1])
    except (ValueError, AttributeError):
        raise OfficialFormatError(f"frame name {name!r} does not end in _<number> before its extension") from None


# --- annotations --------------------------------------------------------------------------------

def read_annotations(path: str | os.PathLike) -> list[OfficialVideo]:
    """All videos of a ``data_h2/<split>.pkl`` annotation file, in the file's order."""
    path = Path(path)
    obj = load_numpy_pickle(path, "SEDS annotation pickle")
    if not isinstance(obj, dict):
        raise OfficialFormatError(f"{path}: expected a dict sentence_id → list of videos, got {type(obj).__name__}")
    out: list[OfficialVideo] = []
    for sid, videos in obj.items():
        if not isinstance(videos, list) or not videos:
            raise OfficialFormatError(f"{path}: sentence id {sid!r} must map to a non-empty list of video dicts")
        text = None
        for v in videos:
            if not isinstance(v, dict) or "new_video_name" not in v or "text" not in v:
                raise OfficialFormatError(f"{path}: sentence id {sid!r}: each video must be a dict with "
                                          f"'text' and 'new_video_name', got {v!r:.200}")
            text = str(videos[0]["text"]) if text is None else text
            out.append(OfficialVideo(str(sid), text, str(v["new_video_name"]), str(v.get("video_name", "")),
                                     int(v.get("num_frames", -1))))
    if not out:
        raise OfficialFormatError(f"{path}: no videos")
    return out


def write_annotations(path: str | os.PathLike, videos: list[OfficialVideo]) -> Path:
    """Write videos grouped by sentence id (first appearance order) as an annotation pickle."""
    captions: dict[str, list[dict]] = {}
    for v in videos:
        captions.setdefault(v.sentence_id, []).append(
            {"text": v.text, "num_frames": int(v.num_frames), "video_name": v.video_name,
             "new_video_name": v.new_video_name})
    return _dump(path, captions)


# --- keypoints ------------------------------------------------------------------------------------

def read_pose(path: str | os.PathLike) -> OfficialPose:
    """``{"keypoints": (T, 133, 3), "img_list": [T names]}`` (other keys are ignored)."""
    path = Path(path)
    obj = load_numpy_pickle(path, "RTMPose keypoint pickle")
    if not isinstance(obj, dict) or "keypoints" not in obj or "img_list" not in obj:
        keys = list(obj) if isinstance(obj, dict) else type(obj).__name__
        raise OfficialFormatError(f"{path}: expected a dict with 'keypoints' and 'img_list', got {keys}")
    kp, names = obj["keypoints"], obj["img_list"]
    if not isinstance(kp, np.ndarray) or kp.ndim != 3 or kp.shape[1:] != (N_WHOLEBODY, 3) or kp.shape[0] == 0:
        raise OfficialFormatError(f"{path}: 'keypoints' must be a (frames, {N_WHOLEBODY}, 3) array, got "
                                  f"{getattr(kp, 'shape', type(kp).__name__)}")
    if not np.issubdtype(kp.dtype, np.floating):
        raise OfficialFormatError(f"{path}: 'keypoints' must be floating point, got {kp.dtype}")
    if not isinstance(names, list) or len(names) != kp.shape[0] or not all(isinstance(n, str) for n in names):
        raise OfficialFormatError(f"{path}: 'img_list' must be a list of {kp.shape[0]} frame names")
    pose = OfficialPose(kp, names)
    try:
        nums = pose.frame_numbers
    except OfficialFormatError as e:
        raise OfficialFormatError(f"{path}: {e}") from None
    if len(set(nums)) != len(nums):
        raise OfficialFormatError(f"{path}: repeated frame numbers in 'img_list'")
    return pose


def img_list_for(stem: str, n: int) -> list[str]:
    """Frame names ``<stem>_000000.jpg ...`` (``frame_...`` when the stem has a dot, which the
    authors' frame-number rule cannot parse)."""
    prefix = stem if "." not in stem else "frame"
    return [f"{prefix}_{i:06d}.jpg" for i in range(n)]


def write_pose(path: str | os.PathLike, keypoints: np.ndarray, img_list: list[str] | None = None) -> Path:
    kp = np.asarray(keypoints)
    if kp.ndim != 3 or kp.shape[1:] != (N_WHOLEBODY, 3):
        raise OfficialFormatError(f"keypoints for {path} must be (frames, {N_WHOLEBODY}, 3), got {kp.shape}")
    names = list(img_list) if img_list is not None else img_list_for("frame", len(kp))
    if len(names) != len(kp):
        raise OfficialFormatError(f"{path}: {len(names)} frame names for {len(kp)} frames")
    return _dump(path, {"keypoints": kp, "img_list": names})


# --- I3D features ---------------------------------------------------------------------------------

def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """The ``feature`` array ``(n, 1024)`` of an I3D feature pickle."""
    path = Path(path)
    obj = load_numpy_pickle(path, "I3D feature pickle")
    if not isinstance(obj, dict) or "feature" not in obj:
        keys = list(obj) if isinstance(obj, dict) else type(obj).__name__
        raise OfficialFormatError(f"{path}: expected a dict with 'feature', got {keys}")
    f = obj["feature"]
    if not isinstance(f, np.ndarray) or f.ndim != 2 or f.shape[1] != RGB_DIM or f.shape[0] == 0:
        raise OfficialFormatError(f"{path}: 'feature' must be a (clips, {RGB_DIM}) array, got "
                                  f"{getattr(f, 'shape', type(f).__name__)}")
    return f


def write_rgb(path: str | os.PathLike, feature: np.ndarray, name: str | None = None) -> Path:
    f = np.asarray(feature, dtype=np.float32)
    if f.ndim != 2 or f.shape[1] != RGB_DIM:
        raise OfficialFormatError(f"feature for {path} must be (clips, {RGB_DIM}), got {f.shape}")
    return _dump(path, {"name": name if name is not None else Path(path).stem, "feature": f})


# --- layout of a dataset root -------------------------------------------------------------------

@dataclass(frozen=True)
class OfficialPaths:
    """Where the files of one video live: ``pose_dir/<stem>.pkl`` and ``rgb_dir/<stem>.pkl``."""

    pose_dir: Path
    rgb_dir: Path

    @classmethod
    def under(cls, root: str | os.PathLike, split: str) -> OfficialPaths:
        """The authors' layout below a dataset root (``How2Sign/``)."""
        root = Path(root)
        return cls(root / POSE_SUBDIR, root / RGB_SUBDIR / split)

    def pose(self, stem: str) -> Path:
        return self.pose_dir / f"{stem}.pkl"

    def rgb(self, stem: str) -> Path:
        return self.rgb_dir / f"{stem}.pkl"


def _dump(path: str | os.PathLike, obj) -> Path:
    return atomic_write_bytes(Path(path), pickle.dumps(obj, protocol=4), suffix=".tmp")
