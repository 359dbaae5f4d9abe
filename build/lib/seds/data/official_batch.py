"""The authors' keypoint preprocessing and batching (How2Sign configuration), as plain functions.

:func:`official_sample` turns one video's keypoints (the 49 SEDS points with scores, in the frame
order of the pose file) and its I3D features into exactly the tensors the authors' eval loader
(``H2_DataLoader_pose`` + ``H2_pose_collate_fn``) feeds their model, following FORMATS.md §2–3:

1. more than ``max_frames`` (300) frames: keep every ``ceil(T/300)``-th frame from frame 0;
2. per frame and hand, a crop box: a hand with at least 10 of 21 scores > ``frames_threshold``
   (0.1) gets a square of side ``round(2.2 × extent)`` around its visible points, clipped to the
   image; otherwise a box from shoulder/elbow/wrist (all scores ≥ 0.5, wrist above ``H − 50``);
   otherwise the hand has no box. Frames where neither hand has a box are dropped;
3. hand points with score ≤ ``threshold`` (0.4) become (0, 0), the rest ``(p − box corner) /
   box size × crop_size`` with negatives → 0; the left hand is mirrored (``x → crop_size − x``) and
   any left-hand value ≥ 255 → 0. A hand without a box in a kept frame is 21 × (0, 0);
4. body points (nose, shoulders, elbows, wrists): ``p / image_size × crop_size``;
5. scores are not returned (the model takes x, y only);
6. 16-frame windows with stride 1 (shorter videos repeat their last frame up to 16), at most 64,
   chosen by ``np.linspace``; ``clip_starts`` is -1 past the last window.

One departure: the authors' loader raises ``ValueError`` when one hand has no box in any frame of a
video; here that hand is all zeros (the other hand still defines the kept frames).

Keys of :func:`seds.data.official.official_collate`'s batch (B videos, ``Tmax`` = longest ``T'``): ``left``, ``right``
``(B, Tmax, 21, 2)``, ``body`` ``(B, Tmax, 7, 2)`` float32 zero-padded in time; ``clip_starts``
``(B, 64)`` int64; ``clip_mask`` ``(B, 64)`` bool, True = valid (the authors' ``body_mask[:, 1:] == 0``);
``rgb`` ``(B, 64, 1024)`` float32 zero-padded (their ``RGB_feature[..., 0].transpose(1, 2)``); and the
lists ``ids``, ``sentence_ids``, ``text``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seds.data.official_format import N_WHOLEBODY, RGB_DIM, OfficialFormatError
from seds.keypoints import BODY, LEFT_HAND, N_SEDS, RIGHT_HAND, coco_wholebody_to_seds

# arm chains (shoulder, elbow, wrist) inside the 7 SEDS body points
_ARM = {"left": (1, 2, 3), "right": (4, 5, 6)}
_HAND = {"left": LEFT_HAND, "right": RIGHT_HAND}


@dataclass(frozen=True)
class OfficialPreprocess:
    """The flags of the authors' ``scripts/eval_h2s.sh``."""

    image_size: tuple[int, int] = (256, 256)     # --original_size_w / _h: the pixel frame of the keypoints
    crop_size: int = 256                         # --crop_size
    frames_threshold: float = 0.1                # --frames_threshold: visible point for hand detection
    threshold: float = 0.4                       # --threshold: hand points at or below → (0, 0)
    min_visible: int = 10                        # LEN_KPS
    arm_threshold: float = 0.5                   # THRE (elbow_hand)
    max_frames: int = 300                        # --max_length_frames
    window: int = 16                             # --slide_windows
    stride: int = 1                              # --windows_stride
    max_clips: int = 64                          # --feature_len


def as_seds49(keypoints: np.ndarray) -> np.ndarray:
    """(T, 133, 3) COCO-WholeBody or (T, K ≥ 49, 3) store-layout keypoints → (T, 49, 3) SEDS order."""
    k = np.asarray(keypoints)
    if k.ndim != 3 or k.shape[-1] != 3:
        raise OfficialFormatError(f"keypoints must be (frames, points, 3), got {k.shape}")
    if k.shape[1] == N_WHOLEBODY:
        return coco_wholebody_to_seds(k)
    if k.shape[1] < N_SEDS:
        raise OfficialFormatError(f"keypoints have {k.shape[1]} points; need 133 or the SEDS layout (≥ 49)")
    return k[:, :N_SEDS]


def subsample(n_frames: int, max_frames: int) -> np.ndarray:
    """Step 1: indices of the frames kept from a video of ``n_frames``."""
    if n_frames > max_frames:
        return np.arange(0, n_frames, math.ceil(float(n_frames / max_frames)))
    return np.arange(n_frames)


def _fit(mid, side, size):
    """Place an interval of length ``side`` centred on ``mid`` inside ``[0, size - 1]``."""
    lo = round(max(0, mid - side / 2))
    hi = lo + side
    if hi > size - 1:
        shift = hi - (size - 1)
        hi, lo = hi - shift, lo - shift
    return lo, hi


def hand_box(points: np.ndarray, arm: np.ndarray, size: np.ndarray, cfg: OfficialPreprocess):
    """Step 2 for one hand in one frame: ``[u0, u1, v0, v1]`` (ints) or None.

    ``points`` (21, 3) the hand, ``arm`` (3, 3) shoulder/elbow/wrist, ``size`` float32 (w, h). The
    scalar arithmetic deliberately stays in numpy scalars / Python numbers, as in the authors' code,
    so rounding is the same under either numpy promotion rule."""
    usz, vsz = size[0], size[1]
    visible = points[:, 2] > cfg.frames_threshold
    if int(visible.sum()) >= cfg.min_visible:
        u, v = points[visible, 0], points[visible, 1]
        umin, umax, vmin, vmax = u.min(), u.max(), v.min(), v.max()
        side = round(2.2 * max(umax - umin, vmax - vmin))
        short = min(usz, vsz)
        umid, vmid = umin + (umax - umin) / 2, vmin + (vmax - vmin) / 2
        us, ue, vs, ve = 0, usz - 1, 0, vsz - 1
        if side < short - 1:
            us, ue = _fit(umid, side, usz)
            vs, ve = _fit(vmid, side, vsz)
        else:
            side = short - 1
            if usz == short:
                vs, ve = _fit(vmid, side, vsz)
            if vsz == short:
                us, ue = _fit(umid, side, usz)
        return [int(us), int(ue), int(vs), int(ve)]
    # fallback: a box beyond the wrist, sized by the forearm / upper arm
    if np.sum(arm[:, 2] < cfg.arm_threshold) != 0 or not arm[2, 1] < vsz - 50:
        return None
    (x1, y1), (x2, y2), (x3, y3) = arm[0, :2], arm[1, :2], arm[2, :2]
    x = x3 + 0.33 * (x3 - x2)
    y = y3 + 0.33 * (y3 - y2)
    forearm = math.sqrt((x3 - x2) ** 2 + (y3 - y2) ** 2)
    upper = math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
    width = 1.1 * max(forearm, 0.9 * upper)
    x -= width / 2
    y -= width / 2
    x, y = (0 if x < 0 else x), (0 if y < 0 else y)
    w_u = usz - x if x + width > usz else width
    w_v = vsz - y if y + width > vsz else width
    x, y, width = int(x), int(y), int(min(w_u, w_v))
    return [x, x + width, y, y + width]


def _hand_coords(points: np.ndarray, box, side: str, cfg: OfficialPreprocess) -> np.ndarray:
    """Step 3 for one hand in one frame: (21, 2) crop coordinates."""
    crop = np.array([[cfg.crop_size, cfg.crop_size]], dtype=np.float32)
    xy = points[:, :2].copy()
    conf = np.where(points[:, 2] > cfg.threshold, points[:, 2], 0.0)
    xy[conf < cfg.threshold] = 0
    b = np.asarray(box, dtype=np.float32)
    corner = np.array([[b[0], b[2]]], dtype=np.float32)
    extent = np.array([[b[1] - b[0], b[3] - b[2]]], dtype=np.float32)
    if not (extent[0, 0] > 0 and extent[0, 1] > 0):
        raise OfficialFormatError(f"degenerate {side}-hand crop box {list(box)} (zero width or height)")
    xy = (xy - corner) / extent * crop
    xy = np.where(xy > 0.0, xy, 0.0)
    if side == "left":
        xy[:, 0] = crop[0, 0] - xy[:, 0]
        xy = np.where(xy < 255.0, xy, 0.0)
    return xy.astype(np.float32)


def clip_starts(n_frames: int, cfg: OfficialPreprocess) -> np.ndarray:
    """Step 6: the start frame of each chosen window (at most ``max_clips``)."""
    n_clips = max(math.ceil((n_frames - cfg.window) / cfg.stride) + 1, 1)
    starts = []
    for j in range(n_clips):
        if min(cfg.window, n_frames - j * cfg.stride) == cfg.window:
            starts.append(j * cfg.stride)
        else:
            starts.append(max(n_frames - cfg.window, 0))
    chosen = np.arange(n_clips)
    if n_clips > cfg.max_clips:
        chosen = np.sort(np.linspace(0, n_clips - 1, cfg.max_clips, dtype=int))
    return np.asarray(starts, dtype=np.int64)[chosen]


def select_frames(kp49: np.ndarray, cfg: OfficialPreprocess = OfficialPreprocess()):
    """Steps 1–2: (kept frame indices into ``kp49``, {side: [box or None per kept frame]})."""
    size = np.array(cfg.image_size, dtype=np.float32)
    idx = subsample(len(kp49), cfg.max_frames)
    boxes = {s: [hand_box(kp49[i, _HAND[s]], kp49[i, BODY][list(_ARM[s])], size, cfg) for i in idx]
             for s in ("right", "left")}
    keep = [j for j in range(len(idx)) if boxes["right"][j] is not None or boxes["left"][j] is not None]
    if not keep:
        raise OfficialFormatError("no frame has a detectable hand (the authors' loader fails on such a video)")
    return idx[keep], {s: [b[j] for j in keep] for s, b in boxes.items()}


def official_sample(keypoints: np.ndarray, rgb: np.ndarray, cfg: OfficialPreprocess = OfficialPreprocess(),
                    name: str = "video") -> dict:
    """One video → ``left``, ``right`` (T', 21, 2), ``body`` (T', 7, 2) float32, ``clip_starts`` (64,)
    int64 (-1 = none), ``clip_mask`` (64,) bool, ``rgb`` (64, 1024) float32, plus ``frames``: the
    indices (into ``keypoints``) of the T' kept frames before padding short videos, and ``n_clips``.

    ``keypoints``: (T, 133, 3) as in the pose file, or the store's (T, 87, 3) layout, frames in
    frame-number order; ``rgb``: the (n, 1024) I3D features, n must equal the window count."""
    try:
        kp = as_seds49(keypoints)
        frames, boxes = select_frames(kp, cfg)
        size = np.array(cfg.image_size, dtype=np.float32)
        crop = np.array([[cfg.crop_size, cfg.crop_size]], dtype=np.float32)
        out = {}
        for side in ("left", "right"):
            hand = np.zeros((len(frames), 21, 2), np.float32)
            for j, (i, box) in enumerate(zip(frames, boxes[side])):
                if box is not None:
                    hand[j] = _hand_coords(kp[i, _HAND[side]], box, side, cfg)
            out[side] = hand
        out["body"] = (kp[frames][:, BODY, :2] / size * crop).astype(np.float32)
        if len(frames) < cfg.window:     # repeat the last frame up to one window
            pad = cfg.window - len(frames)
            for k in ("left", "right", "body"):
                out[k] = np.concatenate([out[k], np.repeat(out[k][-1:], pad, 0)])
        starts = clip_starts(len(frames), cfg)
        n = len(starts)
        feat = np.asarray(rgb)
        if feat.ndim != 2 or feat.shape[1] != RGB_DIM:
            raise OfficialFormatError(f"I3D features must be (clips, {RGB_DIM}), got {feat.shape}")
        if feat.shape[0] != n:
            raise OfficialFormatError(f"{feat.shape[0]} I3D features but {n} pose windows (the authors' loader "
                                      f"asserts they are equal; {len(frames)} frames kept)")
    except OfficialFormatError as e:
        raise OfficialFormatError(f"{name}: {e}") from None
    out["clip_starts"] = np.full(cfg.max_clips, -1, np.int64)
    out["clip_starts"][:n] = starts
    out["clip_mask"] = np.arange(cfg.max_clips) < n
    out["rgb"] = np.zeros((cfg.max_clips, RGB_DIM), np.float32)
    out["rgb"][:n] = feat
    out["frames"] = frames
    out["n_clips"] = n
    return out

