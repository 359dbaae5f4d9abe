"""Skeleton overlays of store-layout keypoints (``(87, 3)`` per frame: 49 SEDS points, 18 face,
20 mouth; Sec. 3.1) for the app's preview and for checking extraction by eye.

Edges come from ``seds.keypoints``; lines are drawn with OpenCV (one ``polylines`` call per part and
frame), joints are stamped as discs for all frames at once with numpy indexing.
"""
from __future__ import annotations

import numpy as np

from seds.data.features import STORE_LAYOUT
from seds.keypoints import BODY_EDGES, FACE_EDGES, HAND_EDGES, MOUTH_EDGES

# (part, slice into the store layout, local edges, RGB colour)
PART_STYLE = (
    ("body", STORE_LAYOUT.part_slices()["body"], BODY_EDGES, (255, 220, 0)),
    ("left_hand", STORE_LAYOUT.part_slices()["left_hand"], HAND_EDGES, (255, 60, 60)),
    ("right_hand", STORE_LAYOUT.part_slices()["right_hand"], HAND_EDGES, (60, 120, 255)),
    ("face", STORE_LAYOUT.part_slices()["face"], FACE_EDGES, (230, 230, 230)),
    ("mouth", STORE_LAYOUT.part_slices()["mouth"], MOUTH_EDGES, (255, 120, 200)),
)
POINT_COLOUR = {name: colour for name, _, _, colour in PART_STYLE}


def _check(frames: np.ndarray, kpts: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    if kpts.ndim != 3 or kpts.shape[1:] != (STORE_LAYOUT.num_points, 3):
        raise ValueError(f"keypoints must be (N, {STORE_LAYOUT.num_points}, 3) in the store layout, "
                         f"got {kpts.shape}")
    if kpts.shape[0] != frames.shape[0]:
        raise ValueError(f"{frames.shape[0]} frames but keypoints for {kpts.shape[0]}")


def _stamp_points(out: np.ndarray, kpts: np.ndarray, valid: np.ndarray, radius: int,
                  parts: tuple[str, ...]) -> None:
    """Filled discs of ``radius`` at every valid joint of every frame, vectorised over frames."""
    n, h, w = out.shape[:3]
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    disc = dx * dx + dy * dy <= radius * radius + radius   # slightly round-ish for small radii
    dy, dx = dy[disc], dx[disc]
    for name, sl, _, colour in PART_STYLE:
        if name not in parts:
            continue
        f, j = np.nonzero(valid[:, sl])
        if len(f) == 0:
            continue
        xy = np.rint(kpts[:, sl, :2][f, j]).astype(np.int64)
        ys = xy[:, 1:2] + dy[None]
        xs = xy[:, 0:1] + dx[None]
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        ff = np.broadcast_to(f[:, None], ys.shape)
        out[ff[inside], ys[inside], xs[inside]] = colour


def overlay_video(frames: np.ndarray, kpts: np.ndarray, conf_threshold: float = 0.3,
                  parts: tuple[str, ...] = ("body", "left_hand", "right_hand", "face", "mouth"),
                  thickness: int | None = None) -> np.ndarray:
    """Copies of ``frames`` (uint8 ``(N, H, W, 3)`` RGB) with the skeleton of ``kpts`` (``(N, 87, 3)``
    pixel x, y, confidence) drawn on; joints/edges below ``conf_threshold`` are not drawn."""
    import cv2
    frames = np.asarray(frames)
    kpts = np.nan_to_num(np.asarray(kpts, dtype=np.float32))
    _check(frames, kpts)
    out = frames.copy()
    h, w = frames.shape[1:3]
    t = thickness or max(1, int(round(min(h, w) / 240)))
    valid = kpts[..., 2] >= conf_threshold
    for i in range(out.shape[0]):   # OpenCV draws one image at a time
        img = out[i]
        for name, sl, edges, colour in PART_STYLE:
            if name not in parts:
                continue
            e = np.asarray(edges)
            ok = valid[i, sl][e[:, 0]] & valid[i, sl][e[:, 1]]
            if not ok.any():
                continue
            pts = np.rint(kpts[i, sl, :2][e[ok]]).astype(np.int32)   # (E, 2 ends, 2)
            cv2.polylines(img, list(pts), False, colour, t, cv2.LINE_AA)
    _stamp_points(out, kpts, valid, t + 1, parts)
    return out
