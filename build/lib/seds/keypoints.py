"""The SEDS keypoint layout (Sec. 3.1 and supp. Sec. A) and the graphs built on it.

SEDS feeds 49 2-D keypoints per frame to its pose encoder:

* 7 upper-body points, taken from COCO-WholeBody indices ``0, 5, 7, 9, 6, 8, 10``
  (nose, left shoulder, left elbow, left wrist, right shoulder, right elbow, right wrist);
* 21 left-hand points and 21 right-hand points in the usual OpenPose / COCO-WholeBody hand order
  (wrist, then thumb, index, middle, ring and little finger from base to tip).

Optional extra parts for the keypoint ablation (supp. Tab. 4) are appended after the 49 points:
``face`` (a sparse 18-point face contour/brows/nose/eyes subset of the 68-point face) and ``mouth``
(the 20 mouth points of the 68-point face).

Everything here is plain numpy so that extraction code can use it without torch.
The normalized adjacency of Eq. (1), ``Λ^-1/2 (A + I) Λ^-1/2``, is :func:`normalized_adjacency`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- the 49-point layout -----------------------------------------------------------------------

BODY_NAMES = ("nose", "left_shoulder", "left_elbow", "left_wrist",
              "right_shoulder", "right_elbow", "right_wrist")
HAND_NAMES = ("wrist",
              "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
              "index_mcp", "index_pip", "index_dip", "index_tip",
              "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
              "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
              "little_mcp", "little_pip", "little_dip", "little_tip")

N_BODY = len(BODY_NAMES)  # 7
N_HAND = len(HAND_NAMES)  # 21
N_SEDS = N_BODY + 2 * N_HAND  # 49

BODY = slice(0, N_BODY)
LEFT_HAND = slice(N_BODY, N_BODY + N_HAND)
RIGHT_HAND = slice(N_BODY + N_HAND, N_SEDS)

# Optional parts (indices into the 68-point face of COCO-WholeBody / iBUG-68).
FACE68_SUBSET = (0, 4, 8, 12, 16,          # jaw contour (sparse)
                 17, 19, 21, 22, 24, 26,   # brows
                 27, 30, 33,               # nose bridge / tip / base
                 36, 39, 42, 45)           # eye corners
MOUTH68_SUBSET = tuple(range(48, 68))
N_FACE = len(FACE68_SUBSET)    # 18
N_MOUTH = len(MOUTH68_SUBSET)  # 20
EXTRA_PARTS = ("face", "mouth")

# --- skeleton edges (local indices within each part) --------------------------------------------

HAND_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4),
              (0, 5), (5, 6), (6, 7), (7, 8),
              (0, 9), (9, 10), (10, 11), (11, 12),
              (0, 13), (13, 14), (14, 15), (15, 16),
              (0, 17), (17, 18), (18, 19), (19, 20))
BODY_EDGES = ((0, 1), (0, 4), (1, 4),      # nose-shoulders, shoulder line
              (1, 2), (2, 3),              # left arm
              (4, 5), (5, 6))              # right arm
FACE_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4),            # jaw
              (5, 6), (6, 7), (8, 9), (9, 10),           # brows
              (11, 12), (12, 13),                        # nose
              (14, 15), (16, 17), (7, 11), (8, 11),      # eyes, brows to nose
              (0, 5), (4, 10), (6, 14), (9, 17), (15, 11), (16, 11))   # jaw-brow, brow-eye, eye-nose
MOUTH_EDGES = tuple((i, i + 1) for i in range(0, 11)) + ((11, 0),) + \
    tuple((i, i + 1) for i in range(12, 19)) + ((19, 12),) + ((0, 12), (6, 16))   # outer/inner lips joined

# --- mapping tables ----------------------------------------------------------------------------
# COCO-WholeBody-133: 0-16 body, 17-22 feet, 23-90 face (68), 91-111 left hand, 112-132 right hand.
COCO_WB_BODY = (0, 5, 7, 9, 6, 8, 10)
COCO_WB_LEFT_HAND = tuple(range(91, 112))
COCO_WB_RIGHT_HAND = tuple(range(112, 133))
COCO_WB_FACE0 = 23
COCO_WHOLEBODY_TO_SEDS = COCO_WB_BODY + COCO_WB_LEFT_HAND + COCO_WB_RIGHT_HAND

# MediaPipe Holistic concatenated as [33 pose | 21 left hand | 21 right hand] (+ optional 468 face).
# Pose: 0 nose, 11/12 shoulders, 13/14 elbows, 15/16 wrists (subject's left/right).
MP_POSE, MP_HAND = 33, 21
MP_BODY = (0, 11, 13, 15, 12, 14, 16)
MEDIAPIPE_TO_SEDS = MP_BODY + tuple(range(MP_POSE, MP_POSE + MP_HAND)) + \
    tuple(range(MP_POSE + MP_HAND, MP_POSE + 2 * MP_HAND))
# iBUG-68 → MediaPipe face-mesh (468) correspondences for the points used by the optional parts.
MP_FACE_FROM_68 = {
    0: 127, 4: 132, 8: 152, 12: 361, 16: 356,
    17: 70, 19: 105, 21: 107, 22: 336, 24: 334, 26: 300,
    27: 168, 30: 4, 33: 2,
    36: 33, 39: 133, 42: 362, 45: 263,
    48: 61, 49: 40, 50: 37, 51: 0, 52: 267, 53: 270, 54: 291, 55: 321, 56: 314, 57: 17,
    58: 84, 59: 91, 60: 78, 61: 81, 62: 13, 63: 311, 64: 308, 65: 402, 66: 14, 67: 178,
}


@dataclass(frozen=True)
class KeypointLayout:
    """Which parts a model consumes. ``parts`` always starts with body, left hand, right hand."""

    extra: tuple[str, ...] = ()

    def __post_init__(self):
        for p in self.extra:
            if p not in EXTRA_PARTS:
                raise ValueError(f"keypoint part {p!r} unknown; choose from {EXTRA_PARTS}")
        if len(set(self.extra)) != len(self.extra):
            raise ValueError(f"keypoint parts repeated: {self.extra}")

    @property
    def num_points(self) -> int:
        return N_SEDS + sum(N_FACE if p == "face" else N_MOUTH for p in self.extra)

    def part_slices(self) -> dict[str, slice]:
        out = {"body": BODY, "left_hand": LEFT_HAND, "right_hand": RIGHT_HAND}
        start = N_SEDS
        for p in self.extra:
            n = N_FACE if p == "face" else N_MOUTH
            out[p] = slice(start, start + n)
            start += n
        return out


def coco_wholebody_to_seds(kpts: np.ndarray, extra: tuple[str, ...] = ()) -> np.ndarray:
    """Select the SEDS points from ``(..., 133, C)`` COCO-WholeBody keypoints (C = x, y[, score])."""
    if kpts.shape[-2] != 133:
        raise ValueError(f"expected 133 COCO-WholeBody points, got shape {kpts.shape}")
    idx = list(COCO_WHOLEBODY_TO_SEDS)
    for p in extra:
        sub = FACE68_SUBSET if p == "face" else MOUTH68_SUBSET
        idx += [COCO_WB_FACE0 + i for i in sub]
    return kpts[..., idx, :]


def mediapipe_to_seds(kpts: np.ndarray, extra: tuple[str, ...] = ()) -> np.ndarray:
    """Select the SEDS points from MediaPipe Holistic points ``(..., 75 or 543, C)``.

    The input is the concatenation [33 pose | 21 left hand | 21 right hand | 468 face (optional)].
    """
    n = kpts.shape[-2]
    if n not in (75, 543):
        raise ValueError(f"expected 75 (or 543 with face) MediaPipe Holistic points, got shape {kpts.shape}")
    idx = list(MEDIAPIPE_TO_SEDS)
    if extra and n != 543:
        raise ValueError("face/mouth parts need the 468 face-mesh points (543 points in all)")
    for p in extra:
        sub = FACE68_SUBSET if p == "face" else MOUTH68_SUBSET
        idx += [75 + MP_FACE_FROM_68[i] for i in sub]
    return kpts[..., idx, :]


def adjacency(num_nodes: int, edges) -> np.ndarray:
    """Symmetric 0/1 adjacency A of an undirected skeleton graph (no self loops)."""
    a = np.zeros((num_nodes, num_nodes), dtype=np.float32)
    for i, j in edges:
        if not (0 <= i < num_nodes and 0 <= j < num_nodes):
            raise ValueError(f"edge ({i}, {j}) outside a graph of {num_nodes} nodes")
        a[i, j] = a[j, i] = 1.0
    return a


def normalized_adjacency(a: np.ndarray) -> np.ndarray:
    """Eq. (1): ``Λ^-1/2 (A + I) Λ^-1/2`` with Λ the degree matrix of ``A + I``."""
    a_hat = a + np.eye(a.shape[0], dtype=a.dtype)
    d = a_hat.sum(1)
    d_inv_sqrt = 1.0 / np.sqrt(d)
    return (d_inv_sqrt[:, None] * a_hat * d_inv_sqrt[None, :]).astype(np.float32)


PART_GRAPHS = {
    "hand": (N_HAND, HAND_EDGES),
    "body": (N_BODY, BODY_EDGES),
    "face": (N_FACE, FACE_EDGES),
    "mouth": (N_MOUTH, MOUTH_EDGES),
}


def part_adjacency(part: str) -> np.ndarray:
    """Normalized adjacency for one part graph: ``hand``, ``body``, ``face`` or ``mouth``."""
    n, edges = PART_GRAPHS[part]
    return normalized_adjacency(adjacency(n, edges))


# --- normalization (Sec. 3.1: per-part crops, left hand mirrored) -------------------------------

def normalize_parts(kpts: np.ndarray, layout: KeypointLayout = KeypointLayout(),
                    conf_threshold: float = 0.3, mirror_left: bool = True) -> np.ndarray:
    """Normalize SEDS keypoints ``(F, K, 3)`` (x, y in pixels, confidence) part by part.

    * Each hand is cropped to its own box over the frame's confident points, centred and scaled to
      [-1, 1] by the longer box side; the left hand is mirrored in x so both hands share one ST-GCN.
    * Body (and the optional face/mouth parts) are centred on the shoulder midpoint and scaled by the
      shoulder width of each frame (falling back to the part's own box when shoulders are missing).
    * Points below ``conf_threshold`` become (0, 0) with confidence 0: the model masks them, no NaN
      ever leaves this function.
    Returns a new float32 array of the same shape. Every frame is normalized on its own.

    Computed on (x, y, confidence) planes of shape ``(K, F)``, so that each box is a reduction over
    points that numpy vectorises along frames, with invalid points as NaN (skipped by ``fmin``/``fmax``,
    zeroed at the end) and both hands in one pass: the data loader runs this per video, and written over
    the interleaved ``(F, K, 3)`` array it cost more than reading the file (same results, bit for bit;
    ``tests/test_keypoints.py`` keeps that version as the reference).
    """
    if kpts.ndim != 3 or kpts.shape[-1] != 3 or kpts.shape[1] != layout.num_points:
        raise ValueError(f"expected keypoints (frames, {layout.num_points}, 3), got {kpts.shape}")
    planes = np.array(kpts.transpose(2, 1, 0), dtype=np.float32, order="C")      # (3, K, F), a copy
    if not np.isfinite(planes).all():
        np.nan_to_num(planes, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    valid = planes[2] >= conf_threshold                                          # (K, F)
    invalid = ~valid
    one_or_nan = valid.astype(np.float32)
    with np.errstate(invalid="ignore"):
        one_or_nan /= one_or_nan                                                 # 1 where valid, NaN (0/0) where not
    xy = planes[:2] * one_or_nan                                                 # (2, K, F): invalid points NaN
    np.putmask(planes[2], invalid, 0.0)

    def box_norm(pts, axis):
        """``pts`` (2, ..., n, F) centred on each frame's box of its valid (non-NaN) points along ``axis``,
        scaled by the box's longer side / 2 (frames without a point: centre 0, scale 1)."""
        lo = np.fmin.reduce(pts, axis=axis, keepdims=True)
        hi = np.fmax.reduce(pts, axis=axis, keepdims=True)
        unseen = np.isnan(lo)                                   # no valid point in the frame
        np.putmask(lo, unseen, 0.0)
        np.putmask(hi, unseen, 0.0)
        side = np.maximum(hi[0] - lo[0], hi[1] - lo[1])
        np.putmask(side, side <= 1e-6, 1.0)
        return (pts - (lo + hi) / 2) / (side / 2)

    f = planes.shape[2]
    out = np.empty_like(xy)
    hands = slice(LEFT_HAND.start, RIGHT_HAND.stop)                  # left then right, contiguous
    nh = box_norm(xy[:, hands].reshape(2, 2, N_HAND, f), axis=2)     # (coord, hand, point, F)
    if mirror_left:
        nh[0, 0] = -nh[0, 0]
    out[:, hands] = nh.reshape(2, 2 * N_HAND, f)
    ls, rs = planes[:2, 1:2], planes[:2, 4:5]                        # (2, 1, F) shoulders
    centre = (ls + rs) / 2
    d = ls - rs
    width = np.sqrt(d[0] * d[0] + d[1] * d[1])                       # = np.linalg.norm over (x, y)
    ok = valid[1:2] & valid[4:5] & (width > 1e-6)
    np.putmask(width, ~ok, 1.0)
    for name, sl in layout.part_slices().items():
        if name not in ("left_hand", "right_hand"):
            part = box_norm(xy[:, sl], axis=1)
            np.copyto(part, (xy[:, sl] - centre) / width, where=ok)
            out[:, sl] = part
    result = np.empty(kpts.shape, np.float32)
    for c in range(2):
        np.putmask(out[c], invalid, 0.0)                 # the NaNs of invalid points
        result[..., c] = out[c].T
    result[..., 2] = planes[2].T
    return result
