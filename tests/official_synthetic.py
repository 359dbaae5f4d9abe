"""Small synthetic datasets written in the SEDS authors' on-disk formats (tests, demos, docs).

:func:`write_official_synthetic` writes, below a root folder, the files the authors' How2Sign loader
reads (``data_h2/<split>.pkl``, ``RTMpose/Pose_all_24rates/<name>.pkl``, ``I3D_features/<split>/<name>.pkl``)
for a handful of videos that exercise every branch of their preprocessing: hands below the
detection threshold (arm-box fallback, missing hands, dropped frames at the start, middle and end),
low keypoint scores, hands larger than the frame and near its border, a video longer than 300
frames, one shorter than 16 frames, several videos under one sentence id and one text under two
ids. The I3D features are random, one per pose window, so the authors' loader accepts them.
Synthetic: no number computed on these files says anything about real signing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seds.data.official_batch import OfficialPreprocess, as_seds49, clip_starts, select_frames
from seds.data.official_format import (ANNOTATION_SUBDIR, OfficialPaths, OfficialVideo, img_list_for,
                                       write_annotations, write_pose, write_rgb)

_BODY = {0: (128, 60), 5: (160, 100), 6: (96, 100), 7: (178, 140), 8: (78, 140), 9: (180, 175), 10: (76, 175)}
LEFT, RIGHT = slice(91, 112), slice(112, 133)


@dataclass(frozen=True)
class SyntheticVideo:
    sentence_id: str
    text: str
    name: str
    frames: int
    scenario: str = "plain"


DEFAULT_VIDEOS = (
    SyntheticVideo("synA_0", "Hello there, how are you today?", "synA_0-1-rgb_front", 40, "gaps"),
    SyntheticVideo("synA_0", "Hello there, how are you today?", "synA_0-5-rgb_front", 25, "right_missing_at_end"),
    SyntheticVideo("synB_3", "Hi!", "synB_3-1-rgb_front", 640, "plain"),
    SyntheticVideo("synC_1", "Hi!", "synC_1-1-rgb_front", 10, "plain"),
    SyntheticVideo("synD_2", "We will walk along the path to the garden.", "synD_2-1-rgb_front", 30, "big_and_border"),
)


def synthetic_keypoints(rs: np.random.RandomState, n: int, scenario: str = "plain") -> np.ndarray:
    """(n, 133, 3) float32 RTMPose-style keypoints (pixels of a 256 × 256 frame, scores in [0, 1])."""
    kp = np.zeros((n, 133, 3), np.float32)
    kp[..., :2] = rs.uniform(10, 246, (n, 133, 2))
    kp[..., 2] = rs.uniform(0, 1, (n, 133))
    for j, (x, y) in _BODY.items():
        kp[:, j, :2] = np.array([x, y]) + rs.normal(0, 2, (n, 2))
        kp[:, j, 2] = rs.uniform(0.55, 1.0, n)
    for sl, wrist in ((LEFT, 9), (RIGHT, 10)):
        centre = kp[:, wrist, :2] + np.array([0, 14]) + np.cumsum(rs.normal(0, 0.8, (n, 2)), 0)
        kp[:, sl, :2] = centre[:, None] + rs.normal(0, 9, (n, 21, 2))
        kp[:, sl, 2] = rs.uniform(0.05, 1.0, (n, 21))
    lost = lambda sl, frames: rs.uniform(0, 0.09, (len(frames), 21))          # noqa: E731
    if scenario == "gaps":
        f = np.arange(5, 9)
        kp[f, RIGHT, 2] = lost(RIGHT, f)                     # right hand lost: arm box fallback,
        kp[f[:, None], np.arange(112, 118), 2] = 0.8         # with 6 confident points kept in that box
        f = np.arange(10, 12)
        kp[f, LEFT, 2] = lost(LEFT, f)
        kp[f[:, None], [5, 7, 9], 2] = 0.3                   # ... and no left arm: left missing
        f = np.arange(20, 23)
        kp[f, LEFT, 2], kp[f, RIGHT, 2] = lost(LEFT, f), lost(RIGHT, f)
        kp[f[:, None], [5, 6, 7, 8, 9, 10], 2] = 0.2         # nothing: frames dropped
    elif scenario == "right_missing_at_end":
        f = np.arange(n - 3, n)
        kp[f, RIGHT, 2] = lost(RIGHT, f)
        kp[f, 10, 1] = 240                                   # wrist near the bottom: no arm box either
    elif scenario == "big_and_border":
        f = np.arange(0, 3)
        kp[f, LEFT, 2], kp[f, RIGHT, 2] = lost(LEFT, f), lost(RIGHT, f)
        kp[f[:, None], [8, 9, 10], 1] = 250                  # wrists low: no arm boxes → dropped
        f = np.arange(5, 9)
        kp[f, RIGHT, :2] = rs.uniform(-4, 259, (len(f), 21, 2))   # hand wider than the frame
        kp[f, RIGHT, 2] = rs.uniform(0.3, 1.0, (len(f), 21))
        f = np.arange(12, 16)
        kp[f, LEFT, 0] = rs.uniform(235, 256, (len(f), 21))       # at the right border
        kp[f, LEFT, 1] = rs.uniform(1, 30, (len(f), 21))          # ... and the top
        kp[f, LEFT, 2] = rs.uniform(0.5, 1.0, (len(f), 21))
    elif scenario != "plain":
        raise ValueError(f"unknown scenario {scenario!r}")
    return kp


def write_official_synthetic(root: str | os.PathLike, split: str = "test",
                             videos: tuple[SyntheticVideo, ...] = DEFAULT_VIDEOS, seed: int = 0,
                             cfg: OfficialPreprocess = OfficialPreprocess()) -> list[OfficialVideo]:
    """Write the authors' file layout for ``videos`` below ``root``; returns the annotation rows."""
    root = Path(root)
    rs = np.random.RandomState(seed)
    paths = OfficialPaths.under(root, split)
    rows = []
    for v in videos:
        kp = synthetic_keypoints(rs, v.frames, v.scenario)
        write_pose(paths.pose(v.name), kp, img_list_for(v.name, v.frames))
        frames, _ = select_frames(as_seds49(kp), cfg)
        n = len(clip_starts(len(frames), cfg))
        write_rgb(paths.rgb(v.name), rs.normal(0, 1, (n, 1024)).astype(np.float32), v.name)
        rows.append(OfficialVideo(v.sentence_id, v.text, v.name, v.name.replace("_", "-") + "_clip", v.frames))
    write_annotations(root / ANNOTATION_SUBDIR / f"{split}.pkl", rows)
    return rows

