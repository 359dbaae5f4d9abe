"""A deterministic synthetic signing benchmark: proves the SEDS learning machinery works offline.

The paper's datasets (How2Sign, PHOENIX-2014T, CSL-Daily) are not available here, so this module
generates a small sign "language" with the properties retrieval needs and the biases the paper
discusses (Sec. 1 and 3.1: an RGB stream sees signer appearance, a pose stream sees the motion):

* **Vocabulary** (:attr:`SyntheticSignData.vocab`): ``vocab_size`` pronounceable pseudo-words in five
  word classes (noun, verb, adj, adv, time). Each word is a *sign*: a hand shape drawn from 18 finger
  configurations (per-finger joint flexion → 21 OpenPose hand points by forward kinematics), a
  location relative to the body (face, chest, neutral space, ...), a wrist trajectory through a few
  control points (Catmull-Rom, eased), a palm orientation, one or two hands (symmetric, alternating
  or dominant-on-base hand) and a mouthing pattern. Elbows follow from two-bone inverse kinematics.
* **Sentences** (:meth:`SyntheticSignData.sentences`): 3-12 words from a small grammar
  (``[time] (adj* noun verb [adv] [adj* noun])+``), signed as the concatenation of their signs with
  co-articulation (smooth interpolated transitions whose length grows with the distance travelled),
  per-signer and per-sentence speed and signing-space size, small body sway, Gaussian keypoint
  noise, detector-like confidences and occasional missing hands (runs of frames with confidence 0).
* **Signers** (:attr:`SyntheticSignData.signers`): body proportions (shoulder width, neck, arm and
  hand lengths, head size, position in the frame), a handedness tendency (left-dominant signers
  mirror their signs), signing speed/size, and skin, hair, clothing and background colours.
  :meth:`SyntheticSignData.render` rasterises RGB frames (background, clothing torso, head, sleeves,
  skin-coloured hands and finger lines) so an appearance stream sees who signs while
  :meth:`SyntheticSignData.keypoints` sees how.
* **Splits**: test (and val) signers never appear in train, and test (val) sentences contain a
  (subject, verb) combination that is held out of every other split, so no test sentence occurs in
  train and the model must compose seen words in unseen combinations.

Everything is a deterministic function of :attr:`SyntheticConfig.seed` (numpy ``Generator``s), and
the keypoint path is vectorised per sentence (no per-frame or per-keypoint Python loops), so the
keypoints of a few thousand sentences take seconds.

**RGB features are a proxy.** Running the real I3D over thousands of synthetic videos is too slow on
a CPU, so a fixed, deterministic, *non-learned* encoder of 16-frame windows stands in for it
(:mod:`seds.extract.proxy_rgb`; ``SyntheticConfig.rgb_proxy``):

* ``"histogram"`` (default, :func:`rgb_proxy_features`): colour histograms + a random projection of the
  low-resolution mean image + a weakly weighted random projection of the low-resolution temporal-difference
  image. **Can see:** who signs (skin, hair, clothing, background colours; 91 % of the feature variance is
  between videos), roughly where the arms are, coarse motion energy on a 14×14 grid. **Cannot see:** hand
  shape (everything is 28×28 or coarser), finger motion, the direction of a movement. Measured RGB-only /
  pose-only: 0.21 (test T2V R@1) before the learning-rate fix; after it 0.46 on val R-sum, 0.28 on test
  T2V R@1 (small runs, one seed, ``benchmarks/results/ablations/diagnosis_rgb.md``) — the paper's I3D is at
  ≈ 0.9–1.0 of pose.
* ``"conv"`` (:func:`rgb_conv_proxy_features`): a frozen random conv stack over 112×112 frames plus a
  frame-difference channel (colour weighted down), pooled on a 4×4 grid. **Can see:** where the hands are and
  how they move (37 % of the variance is within a video, 4× the histogram proxy's share), coarse hand shape
  at 4-pixel patches, and still the signer's appearance. **Cannot see:** anything a trained network would
  recognise — its filters are random. Measured RGB-only / pose-only: 0.60 on val R-sum, 0.28 on test T2V
  R@1 (one seed, 10 epochs; the ablation scale uses this proxy).

Numbers obtained with either proxy must be reported as "synthetic, proxy-RGB", never compared with the paper's
I3D numbers.

Typical use::

    cfg = SyntheticConfig(seed=0)
    data = SyntheticSignData(cfg)
    spec = data.sentences("train")[0]
    kp = data.keypoints(spec)          # (F, 87, 3) pixel x, y + confidence in STORE_LAYOUT
    frames = data.render(spec)         # (F, H, W, 3) uint8 RGB
    feats = data.make_features(spec)   # VideoFeatures with proxy RGB
    write_synthetic_store("stores/synthetic", cfg)   # one safetensors per video + manifests
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from seds.clips import pad_frames, select_clip_starts
from seds.data.features import STORE_LAYOUT, VideoFeatures
from seds.data.store import FeatureStore
from seds.extract.proxy_rgb import rgb_conv_proxy_features, rgb_proxy_features
from seds.keypoints import FACE68_SUBSET, N_FACE, N_HAND, N_MOUTH, N_SEDS

__all__ = [
    "SyntheticConfig", "SyntheticSignData", "SentenceSpec", "Signer", "Word", "SyntheticError",
    "rgb_proxy_features", "write_synthetic_store", "hand_local_points", "SPLITS", "WORD_CLASSES",
    "HANDSHAPES",
    "LOCATIONS", "PROXY_RGB_NOTE",
]

SPLITS = ("train", "val", "test")
WORD_CLASSES = ("noun", "verb", "adj", "adv", "time")
PROXY_RGB_NOTE = ("synthetic, proxy-RGB: RGB features come from seds.data.synthetic.rgb_proxy_features "
                  "(colour histograms + fixed random projections), not from I3D")


RGB_PROXIES = {"histogram": rgb_proxy_features, "conv": rgb_conv_proxy_features}


class SyntheticError(ValueError):
    """Bad synthetic-benchmark configuration or request."""


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticConfig:
    """All knobs of the synthetic benchmark; every output is a deterministic function of these.

    Sizes: ``n_signers`` and ``n_sentences`` are (train, val, test). ``noise`` is the keypoint noise
    std as a fraction of the signer's shoulder width; ``p_missing_hand`` the expected fraction of
    (hand, frame) pairs whose hand is missing (confidence 0, in runs of ``missing_run`` frames on
    average); ``p_holdout`` the fraction of (subject, verb) pairs reserved for val and for test each;
    ``p_left_handed`` the fraction of signers with a left-dominant tendency.
    """

    vocab_size: int = 300
    n_signers: tuple[int, int, int] = (8, 2, 3)
    n_sentences: tuple[int, int, int] = (2000, 300, 300)
    min_words: int = 3
    max_words: int = 12
    fps: float = 24.0
    height: int = 112
    width: int = 112
    noise: float = 0.012
    p_missing_hand: float = 0.04
    missing_run: float = 6.0
    p_holdout: float = 0.08
    p_left_handed: float = 0.25
    rgb_proxy: str = "histogram"     # "histogram" (rgb_proxy_features) or "conv" (rgb_conv_proxy_features)
    seed: int = 0

    def __post_init__(self):
        def bad(name, why):
            raise SyntheticError(f"SyntheticConfig.{name}={getattr(self, name)!r}: {why}")

        if not 20 <= self.vocab_size <= 20000:
            bad("vocab_size", "must be in [20, 20000] (every word class needs a few words)")
        for name in ("n_signers", "n_sentences"):
            v = getattr(self, name)
            if len(v) != 3 or any(int(x) != x or x < 0 for x in v):
                bad(name, "must be three non-negative integers (train, val, test)")
            object.__setattr__(self, name, tuple(int(x) for x in v))
        for i, split in enumerate(SPLITS):
            if self.n_sentences[i] > 0 and self.n_signers[i] < 1:
                bad("n_signers", f"split {split!r} has sentences but no signers")
        if not 2 <= self.min_words <= self.max_words <= 16:
            bad("max_words" if self.min_words >= 2 else "min_words",
                "need 2 ≤ min_words ≤ max_words ≤ 16 (the grammar's range)")
        if not 4 <= self.fps <= 120:
            bad("fps", "must be in [4, 120]")
        if self.height < 32 or self.width < 32:
            bad("height" if self.height < 32 else "width", "frames must be at least 32×32")
        if not 0 <= self.noise <= 0.2:
            bad("noise", "must be in [0, 0.2] (fraction of shoulder width)")
        if not 0 <= self.p_missing_hand < 0.9:
            bad("p_missing_hand", "must be in [0, 0.9)")
        if self.missing_run < 1:
            bad("missing_run", "must be ≥ 1 frame")
        if not 0 < self.p_holdout <= 0.3:
            bad("p_holdout", "must be in (0, 0.3]")
        if not 0 <= self.p_left_handed <= 1:
            bad("p_left_handed", "must be in [0, 1]")
        if self.rgb_proxy not in RGB_PROXIES:
            bad("rgb_proxy", f"must be one of {sorted(RGB_PROXIES)}")


# ------------------------------------------------------------------------------------------------
# typed records
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Word:
    """One vocabulary entry and a human-readable summary of its sign."""

    id: int
    text: str
    word_class: str
    handshape: str           # start hand shape (``HANDSHAPES`` key)
    end_handshape: str
    location: str            # ``LOCATIONS`` key
    movement: str            # hold, line, arc, circle, repeat, wiggle
    hands: str               # one, sym, alt, base
    base_frames: int         # duration at 24 fps before speed variation


@dataclass(frozen=True)
class Signer:
    """A synthetic signer: body proportions (in shoulder widths), habits and colours (RGB)."""

    index: int
    id: str
    split: str
    shoulder_px: float        # shoulder width in pixels
    origin: tuple[float, float]   # shoulder midpoint in pixels (x, y)
    neck: float               # nose height above the shoulder line
    upper_arm: float
    forearm: float
    hand: float               # wrist to middle finger tip
    head: float               # face radius
    p_left: float             # probability that a sentence is signed left-dominant
    speed: float              # duration multiplier (> 1 = slower)
    size: float               # signing-space (movement amplitude) multiplier
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    clothing: tuple[int, int, int]
    background: tuple[int, int, int]


@dataclass(frozen=True)
class SentenceSpec:
    """One sentence video: its words, signer and timing; rendering randomness comes from ``seed``.

    ``spans[i] = (start, end)`` are the frames (end exclusive) in which word ``i`` is signed; the
    frames before, between and after are rest holds and co-articulation transitions.
    """

    id: str
    split: str
    signer: int
    word_ids: tuple[int, ...]
    words: tuple[str, ...]
    dominant: str             # "right" or "left"
    speed: float
    size: float
    seed: int
    lead: int                 # rest frames before the first transition
    tail: int                 # rest frames after the last transition
    spans: tuple[tuple[int, int], ...]
    num_frames: int

    @property
    def text(self) -> str:
        return " ".join(self.words)


# ------------------------------------------------------------------------------------------------
# hand model: 18 finger configurations → 21 points by forward kinematics
# ------------------------------------------------------------------------------------------------
# Hand parameters (17): thumb abduction, thumb flexion ×3, finger spread, then index, middle, ring,
# little flexion ×3 (MCP, PIP, DIP), radians. Hand-local frame (right hand): origin at the wrist,
# unit = hand length, -y towards the fingers, +x towards the thumb, +z out of the palm.

_EXT = (0.0, 0.0, 0.0)
_CURL = (1.5, 1.6, 1.1)
_HALF = (0.55, 0.7, 0.4)
_BENT = (1.45, 0.1, 0.05)
_HOOK = (0.1, 1.5, 1.2)
_CLAW = (0.3, 1.2, 0.9)
_PINCH = (0.9, 0.95, 0.5)
_T_OUT = (1.0, 0.0, 0.0, 0.0)        # thumb: abduction, flexion ×3
_T_ACROSS = (0.25, 0.5, 0.6, 0.3)
_T_SIDE = (0.4, 0.1, 0.2, 0.1)
_T_OVER = (0.3, 0.8, 0.6, 0.4)
_T_OPP = (0.65, 0.45, 0.35, 0.25)
_T_PINCH = (0.55, 0.6, 0.5, 0.35)


def _shape(thumb, fingers, spread=0.0):
    return np.array(list(thumb) + [spread] + [a for f in fingers for a in f], dtype=np.float64)


HANDSHAPES: dict[str, np.ndarray] = {
    "B": _shape(_T_ACROSS, [_EXT] * 4),
    "5": _shape(_T_OUT, [_EXT] * 4, 1.0),
    "A": _shape(_T_SIDE, [_CURL] * 4),
    "S": _shape(_T_OVER, [_CURL] * 4),
    "1": _shape(_T_OVER, [_EXT, _CURL, _CURL, _CURL]),
    "V": _shape(_T_OVER, [_EXT, _EXT, _CURL, _CURL], 1.0),
    "W": _shape(_T_OVER, [_EXT, _EXT, _EXT, _CURL], 1.0),
    "Y": _shape(_T_OUT, [_CURL, _CURL, _CURL, _EXT], 1.0),
    "L": _shape(_T_OUT, [_EXT, _CURL, _CURL, _CURL]),
    "C": _shape(_T_OPP, [_HALF] * 4),
    "O": _shape(_T_PINCH, [_PINCH] * 4),
    "claw": _shape(_T_OUT, [_CLAW] * 4, 1.0),
    "bentB": _shape(_T_ACROSS, [_BENT] * 4),
    "I": _shape(_T_OVER, [_CURL, _CURL, _CURL, _EXT]),
    "horns": _shape(_T_OVER, [_EXT, _CURL, _CURL, _EXT], 0.6),
    "3": _shape(_T_OUT, [_EXT, _EXT, _CURL, _CURL], 1.0),
    "X": _shape(_T_OVER, [_HOOK, _CURL, _CURL, _CURL]),
    "F": _shape(_T_PINCH, [_PINCH, _EXT, _EXT, _EXT], 1.0),
}
_SHAPE_NAMES = tuple(HANDSHAPES)
_SHAPE_TABLE = np.stack([HANDSHAPES[k] for k in _SHAPE_NAMES])
_RELAXED = _shape((0.45, 0.2, 0.2, 0.1), [(0.3, 0.35, 0.2)] * 4, 0.2)
_BASE_SHAPES = ("B", "5", "S", "1", "C")      # non-dominant base hands

_FINGER_BASE = np.array([[0.10, -0.10, 0.0],    # thumb CMC
                         [0.13, -0.43, 0.0],    # index MCP
                         [0.03, -0.45, 0.0],    # middle MCP
                         [-0.06, -0.42, 0.0],   # ring MCP
                         [-0.14, -0.37, 0.0]])  # little MCP
_FINGER_LEN = np.array([[0.20, 0.15, 0.12], [0.22, 0.13, 0.10], [0.24, 0.15, 0.10],
                        [0.22, 0.14, 0.10], [0.17, 0.11, 0.09]])
_FINGER_ANGLE0 = np.array([0.0, 0.10, 0.0, -0.08, -0.18])   # in-plane angle from -y towards +x
_SPREAD_GAIN = np.array([0.0, 0.14, 0.0, -0.12, -0.24])


def hand_local_points(params: np.ndarray) -> np.ndarray:
    """Forward kinematics: ``(..., 17)`` hand parameters → ``(..., 21, 3)`` right-hand points.

    Each finger is a chain of three segments from its base (thumb CMC / finger MCP); joint ``k``
    bends the chain by the cumulative flexion ``θ_k`` out of the palm plane (towards +z, the palm
    side), so a segment is ``L_k (cos θ_k u + sin θ_k n)`` with ``u`` the finger's in-plane
    direction and ``n`` its flexion normal (the thumb flexes across the palm).
    """
    p = np.asarray(params, dtype=np.float64)
    lead = p.shape[:-1]
    flex = np.stack([p[..., 1:4], p[..., 5:8], p[..., 8:11], p[..., 11:14], p[..., 14:17]], axis=-2)
    angle = _FINGER_ANGLE0 + _SPREAD_GAIN * p[..., 4:5]                       # (..., 5)
    angle = np.concatenate([p[..., 0:1], angle[..., 1:]], axis=-1)
    s, c = np.sin(angle), np.cos(angle)
    zero = np.zeros_like(s)
    u = np.stack([s, -c, zero], axis=-1)                                       # (..., 5, 3)
    # flexion normals: +z for fingers; the thumb curls across the palm (towards -x, in plane ⊥ u)
    n = np.broadcast_to(np.array([0.0, 0.0, 1.0]), u.shape).copy()
    n[..., 0, :] = np.stack([-0.6 * c[..., 0], -0.6 * s[..., 0], 0.8 * np.ones_like(s[..., 0])], -1)
    theta = np.cumsum(flex, axis=-1)                                           # (..., 5, 3)
    seg = _FINGER_LEN[..., None] * (np.cos(theta)[..., None] * u[..., None, :]
                                    + np.sin(theta)[..., None] * n[..., None, :])   # (..., 5, 3, 3)
    chain = _FINGER_BASE[:, None, :] + np.cumsum(seg, axis=-2)
    fingers = np.concatenate([np.broadcast_to(_FINGER_BASE[:, None, :], chain.shape[:-2] + (1, 3)),
                              chain], axis=-2)                                 # (..., 5, 4, 3)
    out = np.zeros(lead + (N_HAND, 3))
    out[..., 1:, :] = fingers.reshape(lead + (20, 3))
    return out


# ------------------------------------------------------------------------------------------------
# sign locations (wrist targets of the dominant = right arm, in shoulder widths; origin at the
# shoulder midpoint, x to the image right, y down, z towards the camera)
# ------------------------------------------------------------------------------------------------

LOCATIONS: dict[str, tuple[tuple[float, float, float], bool]] = {   # (wrist target, head-anchored)
    "forehead": ((-0.10, -0.24, 0.35), True),     # wrist below the contact point: the fingers
    "temple": ((-0.30, -0.26, 0.25), True),       # reach up along the forearm
    "nose": ((-0.05, -0.12, 0.40), True),
    "chin": ((-0.05, 0.02, 0.40), True),
    "cheek": ((-0.25, -0.06, 0.30), True),
    "neck": ((-0.05, 0.15, 0.35), False),
    "chest": ((-0.05, 0.45, 0.35), False),
    "chest_side": ((-0.35, 0.45, 0.30), False),
    "shoulder": ((0.30, 0.25, 0.35), False),
    "stomach": ((-0.05, 0.85, 0.35), False),
    "front": ((-0.25, 0.55, 0.70), False),
    "high": ((-0.20, 0.05, 0.75), False),
    "side": ((-0.65, 0.60, 0.45), False),
    "low": ((-0.15, 0.90, 0.60), False),
}
_LOC_NAMES = tuple(LOCATIONS)
_REST = np.array([-0.45, 1.25, 0.20])        # canonical rest target; per signer: a near-straight arm
_REST_DIR = np.array([0.10, 0.85, 0.50]) / np.linalg.norm([0.10, 0.85, 0.50])
_CANON_NECK = 0.5
_MOVEMENTS = ("hold", "line", "arc", "circle", "repeat", "wiggle")
_HANDS = ("one", "sym", "alt", "base")

# per-arm state channels of the canonical sign table
# location, offset curve, hand parameters, orientation (roll, yaw, pitch), head anchor, rest weight
_LOC, _OFF, _HP, _ORI, _ANC, _RST = slice(0, 3), slice(3, 6), slice(6, 23), slice(23, 26), 26, 27
_ARM_CH = 28
_S = 32                      # canonical samples per sign

# face templates in face-radius units relative to the nose tip (iBUG-68 subset of seds.keypoints)
_FACE68_XY = {0: (-0.92, -0.30), 4: (-0.78, 0.35), 8: (0.0, 0.82), 12: (0.78, 0.35), 16: (0.92, -0.30),
              17: (-0.70, -0.62), 19: (-0.42, -0.72), 21: (-0.14, -0.62), 22: (0.14, -0.62),
              24: (0.42, -0.72), 26: (0.70, -0.62), 27: (0.0, -0.45), 30: (0.0, 0.0), 33: (0.0, 0.12),
              36: (-0.55, -0.40), 39: (-0.20, -0.40), 42: (0.20, -0.40), 45: (0.55, -0.40)}
_FACE_T = np.array([_FACE68_XY[i] for i in FACE68_SUBSET])
_MOUTH_Y, _MOUTH_W, _MOUTH_H, _MOUTH_IW = 0.42, 0.33, 0.10, 0.22
_th_up = np.linspace(0, np.pi, 7)                   # 48..54: left corner, upper lip, right corner
_th_lo = np.linspace(np.pi, 0, 7)[1:-1]             # 55..59: lower lip right → left
_ti_up = np.linspace(0, np.pi, 5)                   # 60..64
_ti_lo = np.linspace(np.pi, 0, 5)[1:-1]             # 65..67
_MOUTH_X = np.concatenate([-_MOUTH_W * np.cos(_th_up), -_MOUTH_W * np.cos(_th_lo),
                           -_MOUTH_IW * np.cos(_ti_up), -_MOUTH_IW * np.cos(_ti_lo)])
_MOUTH_Y0 = np.concatenate([-_MOUTH_H * np.sin(_th_up), _MOUTH_H * np.sin(_th_lo),
                            np.zeros(5), np.zeros(3)]) + _MOUTH_Y
_MOUTH_OPEN = np.concatenate([np.zeros(7), 0.7 * np.sin(_th_lo),          # lower lip drops
                              -0.2 * np.sin(_ti_up), 0.8 * np.sin(_ti_lo)]) * 0.25
_N_KP = STORE_LAYOUT.num_points      # 87
_PALM = np.array([0, 1, 5, 9, 13, 17])
_CHAINS = np.array([[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [0, 9, 10, 11, 12], [0, 13, 14, 15, 16],
                    [0, 17, 18, 19, 20]])
_FACE_SL = slice(N_SEDS, N_SEDS + N_FACE)
_MOUTH_SL = slice(N_SEDS + N_FACE, N_SEDS + N_FACE + N_MOUTH)

# pseudo-English word parts
_ONSETS = ("b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "dr", "fl", "gr", "kl", "pl", "pr", "sk", "sl", "sn", "st", "tr", "ch", "sh", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "oo", "ou", "ie")
_CODAS = ("", "", "", "n", "m", "l", "r", "s", "t", "k", "nd", "st", "rk", "ng")
_CLASS_FRAC = (0.40, 0.25, 0.15, 0.10, 0.10)
_SKIN = ((255, 224, 196), (234, 192, 134), (224, 172, 105), (198, 134, 66), (141, 85, 36),
         (255, 205, 148))
_HAIR = ((20, 20, 20), (70, 45, 25), (120, 80, 40), (200, 170, 110), (150, 150, 150))


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _catmull_rom(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples of the uniform Catmull-Rom spline through ``points`` (K, 3), eased in and out."""
    k = len(points)
    if k == 1:
        return np.repeat(points, n, axis=0)
    p = np.concatenate([points[:1], points, points[-1:]])
    u = _smoothstep(np.linspace(0, 1, n)) * (k - 1)
    i = np.minimum(u.astype(int), k - 2)
    t = (u - i)[:, None]
    p0, p1, p2, p3 = p[i], p[i + 1], p[i + 2], p[i + 3]
    return 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                  + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)


def _hsv_to_rgb(h, s, v) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


# ------------------------------------------------------------------------------------------------
# the generator
# ------------------------------------------------------------------------------------------------

class SyntheticSignData:
    """The synthetic benchmark defined by a :class:`SyntheticConfig` (see the module docstring)."""

    REST_ID = -1     # frame label of rest holds and transitions

    def __init__(self, cfg: SyntheticConfig = SyntheticConfig()):
        if not isinstance(cfg, SyntheticConfig):
            raise SyntheticError(f"cfg must be a SyntheticConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        root = np.random.SeedSequence(cfg.seed)
        s_vocab, s_signs, s_signers, s_hold, s_splits = root.spawn(5)
        self._split_seeds = dict(zip(SPLITS, s_splits.spawn(3)))
        self._make_vocab(np.random.default_rng(s_vocab))
        self._make_signs(np.random.default_rng(s_signs))
        self._make_signers(np.random.default_rng(s_signers))
        self._make_holdout(np.random.default_rng(s_hold))
        self._sentences: dict[str, list[SentenceSpec]] = {}

    # --- vocabulary -----------------------------------------------------------------------------
    def _make_vocab(self, rng: np.random.Generator) -> None:
        n = self.cfg.vocab_size
        words: list[str] = []
        seen: set[str] = set()
        while len(words) < n:
            n_syl = rng.choice(3, p=(0.3, 0.5, 0.2)) + 1
            parts = []
            for j in range(n_syl):
                coda = _CODAS[rng.integers(len(_CODAS))] if (j == n_syl - 1 or rng.random() < 0.3) else ""
                parts.append(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] + coda)
            w = "".join(parts)
            if 3 <= len(w) <= 10 and w not in seen:
                seen.add(w)
                words.append(w)
        counts = np.floor(np.array(_CLASS_FRAC) * n).astype(int)
        counts[0] += n - counts.sum()
        classes = np.repeat(np.arange(len(WORD_CLASSES)), counts)
        rng.shuffle(classes)
        self._words = words
        self._word_class = classes
        self._by_class = {c: np.flatnonzero(classes == i) for i, c in enumerate(WORD_CLASSES)}

    # --- signs: the canonical table (V + 1 rest entry, S samples, 2 arms, channels) -------------
    def _make_signs(self, rng: np.random.Generator) -> None:
        V = self.cfg.vocab_size
        arm = np.zeros((V + 1, _S, 2, _ARM_CH))
        mouth = np.zeros((V + 1, _S))
        u = np.linspace(0.0, 1.0, _S)
        shape_w = _smoothstep((u - 0.3) / 0.4)[:, None]
        ori_w = _smoothstep(u)[:, None]
        self._sign_info: list[tuple] = []
        base_len = np.zeros(V + 1, dtype=np.float64)
        for w in range(V):
            loc_name = _LOC_NAMES[rng.integers(len(_LOC_NAMES))]
            loc0, head = LOCATIONS[loc_name]
            loc = np.array(loc0) + rng.uniform(-0.06, 0.06, 3)
            move = _MOVEMENTS[rng.choice(len(_MOVEMENTS), p=(0.12, 0.22, 0.2, 0.14, 0.17, 0.15))]
            if head:
                hands = "sym" if rng.random() < 0.15 else "one"
            else:
                hands = _HANDS[rng.choice(4, p=(0.5, 0.2, 0.12, 0.18))]
            if hands in ("sym", "alt"):
                loc[0] = min(loc[0], -0.18)            # keep two symmetric hands apart
            amp = rng.uniform(0.12, 0.35)
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            e = np.cross(d, rng.normal(size=3))
            e /= np.linalg.norm(e)
            if move == "hold":
                ctrl = np.array([np.zeros(3), 0.08 * e, np.zeros(3), 0.08 * e, np.zeros(3)]) * 0.6
            elif move == "line":
                ctrl = np.array([-0.5 * d, 0.5 * d]) * amp
            elif move == "arc":
                ctrl = np.array([-0.5 * d, 0.35 * e, 0.5 * d]) * amp
            elif move == "circle":
                a = np.linspace(0, 2 * np.pi, 9) + rng.uniform(0, 2 * np.pi)
                ctrl = 0.5 * amp * (np.cos(a)[:, None] * d + np.sin(a)[:, None] * e)
            elif move == "repeat":
                ctrl = np.array([-d, d, -d, d]) * 0.35 * amp
            else:
                ctrl = rng.normal(size=(4, 3)) * 0.5 * amp
            off = _catmull_rom(ctrl, _S)
            off -= off.mean(0)
            s0 = rng.integers(len(_SHAPE_NAMES))
            s1 = s0 if rng.random() < 0.7 else rng.integers(len(_SHAPE_NAMES))
            hp = (1 - shape_w) * _SHAPE_TABLE[s0] + shape_w * _SHAPE_TABLE[s1]
            yaw0 = rng.choice([0.0, 0.0, 1.2, -1.2, np.pi - 0.3])
            o0 = np.array([rng.uniform(-0.5, 0.5), yaw0, rng.uniform(-0.4, 0.4)])
            o1 = o0 + (rng.uniform(-0.6, 0.6, 3) if rng.random() < 0.4 else 0.0)
            ori = (1 - ori_w) * o0 + ori_w * o1
            dom = arm[w, :, 0]
            dom[:, _LOC], dom[:, _OFF], dom[:, _HP], dom[:, _ORI], dom[:, _ANC] = loc, off, hp, ori, head
            nd = arm[w, :, 1]
            if hands == "one":
                nd[:, _LOC], nd[:, _HP], nd[:, _RST] = _REST, _RELAXED, 1.0
                nd[:, _ORI] = (0.0, 1.2, 0.0)
            elif hands in ("sym", "alt"):
                nd[:] = dom
                if hands == "alt":
                    nd[:, _OFF] = off[::-1]
            else:   # base: the non-dominant hand holds a base shape palm-up near the midline
                nd[:, _LOC] = (-0.12, 0.62, 0.5) + rng.uniform(-0.05, 0.05, 3)
                nd[:, _OFF] = 0.15 * off
                nd[:, _HP] = HANDSHAPES[_BASE_SHAPES[rng.integers(len(_BASE_SHAPES))]]
                nd[:, _ORI] = (rng.uniform(-0.3, 0.3), 0.0, -1.2)
                dom[:, _LOC] = (0.05, 0.45, 0.55) + rng.uniform(-0.05, 0.05, 3)
                dom[:, _ANC] = 0.0
            k = rng.integers(1, 4)
            mouth[w] = rng.uniform(0.0, 1.0) * np.abs(np.sin(np.pi * k * u))
            base_len[w] = rng.uniform(8, 16) + (3 if move in ("circle", "repeat") else 0)
            self._sign_info.append((_SHAPE_NAMES[s0], _SHAPE_NAMES[s1], loc_name, move, hands))
        rest = arm[V]
        rest[:, :, _LOC] = _REST
        rest[:, :, _HP] = _RELAXED
        rest[:, :, _ORI] = (0.0, 1.2, 0.0)
        rest[:, :, _RST] = 1.0
        self._arm_table = arm
        self._mouth_table = mouth
        self._base_len = base_len
        pos = arm[:, :, :, _LOC] + arm[:, :, :, _OFF]            # (V+1, S, 2, 3), size 1
        self._start_pos, self._end_pos = pos[:, 0], pos[:, -1]

    # --- signers ----------------------------------------------------------------------------------
    def _make_signers(self, rng: np.random.Generator) -> None:
        cfg = self.cfg
        out = []
        n_total = sum(cfg.n_signers)
        hues = (rng.permutation(n_total) + rng.uniform(0, 1, n_total)) / n_total   # spread clothing hues
        for i in range(n_total):
            split = SPLITS[int(np.searchsorted(np.cumsum(cfg.n_signers), i, side="right"))]
            sw = rng.uniform(0.29, 0.37) * cfg.width
            bg_h = (hues[i] + rng.uniform(0.3, 0.7)) % 1.0
            out.append(Signer(
                index=i, id=f"S{i:02d}", split=split, shoulder_px=float(sw),
                origin=(float(cfg.width * (0.5 + rng.uniform(-0.06, 0.06))),
                        float(cfg.height * rng.uniform(0.35, 0.41))),
                neck=float(rng.uniform(0.42, 0.58)), upper_arm=float(rng.uniform(0.78, 0.92)),
                forearm=float(rng.uniform(0.66, 0.78)), hand=float(rng.uniform(0.44, 0.54)),
                head=float(rng.uniform(0.19, 0.24)),
                p_left=0.85 if rng.random() < cfg.p_left_handed else 0.05,
                speed=float(rng.uniform(0.8, 1.15)), size=float(rng.uniform(0.85, 1.15)),
                skin=_SKIN[rng.integers(len(_SKIN))], hair=_HAIR[rng.integers(len(_HAIR))],
                clothing=_hsv_to_rgb(hues[i], rng.uniform(0.35, 0.85), rng.uniform(0.3, 0.85)),
                background=_hsv_to_rgb(bg_h, rng.uniform(0.1, 0.5), rng.uniform(0.45, 0.95)),
            ))
        self.signers: list[Signer] = out

    def split_signers(self, split: str) -> list[Signer]:
        self._check_split(split)
        return [s for s in self.signers if s.split == split]

    # --- held-out (subject, verb) combinations ------------------------------------------------------
    def _make_holdout(self, rng: np.random.Generator) -> None:
        nouns, verbs = self._by_class["noun"], self._by_class["verb"]
        r = rng.random((len(nouns), len(verbs)))
        p = self.cfg.p_holdout
        held = np.where(r < p, 1, np.where(r < 2 * p, 2, 0)).astype(np.int8)   # 1 = val, 2 = test
        self._held = held
        self._noun_pos = {int(w): i for i, w in enumerate(nouns)}
        self._verb_pos = {int(w): i for i, w in enumerate(verbs)}
        self._held_pairs = {k: np.argwhere(held == k) for k in (1, 2)}
        if any(len(v) == 0 for v in self._held_pairs.values()):
            raise SyntheticError("no held-out (subject, verb) pairs: raise vocab_size or p_holdout")

    def combination_split(self, subject: int, verb: int) -> str:
        """Which split owns the (subject noun, verb) word-id pair: 'val', 'test' or 'train' (free)."""
        k = self._held[self._noun_pos[subject], self._verb_pos[verb]]
        return ("train", "val", "test")[k]

    @property
    def vocab(self) -> list[Word]:
        return self._vocab

    @cached_property
    def _vocab(self) -> list[Word]:
        return [Word(id=i, text=w, word_class=WORD_CLASSES[self._word_class[i]], handshape=info[0],
                     end_handshape=info[1], location=info[2], movement=info[3], hands=info[4],
                     base_frames=int(round(self._base_len[i])))
                for i, (w, info) in enumerate(zip(self._words, self._sign_info))]

    # --- grammar ------------------------------------------------------------------------------------
    def _sentence_words(self, n_words: int, split_code: int, rng: np.random.Generator) -> list[int]:
        """``[time] (adj* noun verb [adv] [adj* noun])+`` with exactly ``n_words`` words.

        The first clause's (subject, verb) pair is a held-out pair of the split (val/test) or a free
        pair (train); later clauses never use another split's held-out pairs.
        """
        feasible = [c for c in (1, 2, 3) if 2 * c <= n_words <= 8 * c + 1]
        n_cl = feasible[0] if len(feasible) == 1 or rng.random() < 0.6 else feasible[1]
        # optional slots: per clause [obj, adj_subj, adj_obj, adv] + sentence time
        cap = np.zeros((n_cl, 4), dtype=int)
        used = np.zeros((n_cl, 4), dtype=int)
        cap[:] = (1, 2, 2, 1)
        time = 0
        weights = np.array([3.0, 1.0, 1.0, 0.8])
        for _ in range(n_words - 2 * n_cl):
            avail = (used < cap).astype(float) * weights
            avail[:, 2] *= used[:, 0] > 0                   # object adjectives need an object
            flat = np.append(avail.ravel(), 0.7 * (time == 0))
            k = rng.choice(len(flat), p=flat / flat.sum())
            if k == len(flat) - 1:
                time = 1
            else:
                used[k // 4, k % 4] += 1

        def pick(cls):
            ids = self._by_class[cls]
            return int(ids[rng.integers(len(ids))])

        def picks(cls, k):              # k distinct words (no "big big dog")
            ids = self._by_class[cls]
            return [int(i) for i in rng.choice(ids, size=k, replace=False)] if k else []

        nouns, verbs = self._by_class["noun"], self._by_class["verb"]
        out = [pick("time")] if time else []
        for c in range(n_cl):
            if c == 0 and split_code > 0:
                pairs = self._held_pairs[split_code]
                si, vi = pairs[rng.integers(len(pairs))]
                subj, verb = int(nouns[si]), int(verbs[vi])
            else:
                subj = pick("noun")
                si = self._noun_pos[subj]
                while True:
                    vi = rng.integers(len(verbs))
                    if self._held[si, vi] in (0, split_code):
                        break
                verb = int(verbs[vi])
            out += picks("adj", used[c, 1]) + [subj, verb] + picks("adv", used[c, 3])
            if used[c, 0]:
                obj = pick("noun")
                out += picks("adj", used[c, 2]) + [obj if obj != subj else pick("noun")]
        assert len(out) == n_words
        return out

    # --- specs ---------------------------------------------------------------------------------------
    def make_spec(self, word_ids: Sequence[int], signer: int, *, seed: int = 0,
                  dominant: str | None = None, split: str = "custom", id: str | None = None,
                  timing_rng: np.random.Generator | None = None) -> SentenceSpec:
        """A :class:`SentenceSpec` for any word sequence and signer (timing drawn from ``seed``).

        ``dominant`` forces the dominant hand ('right'/'left'); by default it follows the signer's
        handedness tendency.
        """
        ids = np.asarray(word_ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) == 0:
            raise SyntheticError("word_ids must be a non-empty sequence of word ids")
        if ids.min() < 0 or ids.max() >= self.cfg.vocab_size:
            raise SyntheticError(f"word ids must be in [0, {self.cfg.vocab_size}), got {ids.tolist()}")
        if not 0 <= signer < len(self.signers):
            raise SyntheticError(f"signer must be in [0, {len(self.signers)}), got {signer}")
        if dominant not in (None, "right", "left"):
            raise SyntheticError(f"dominant must be 'right', 'left' or None, got {dominant!r}")
        rng = timing_rng if timing_rng is not None else np.random.default_rng([seed, 7])
        sg = self.signers[signer]
        fscale = self.cfg.fps / 24.0
        speed = sg.speed * rng.uniform(0.9, 1.1)
        size = sg.size * rng.uniform(0.9, 1.1)
        dom = rng.random() < sg.p_left
        dominant = dominant or ("left" if dom else "right")
        n_sign = np.maximum(4, np.round(self._base_len[ids] * speed * fscale
                                        * rng.uniform(0.9, 1.1, len(ids)))).astype(int)
        seq = np.concatenate([[-1], ids, [-1]])          # -1 → rest entry (index V)
        seq = np.where(seq < 0, self.cfg.vocab_size, seq)
        gap = np.linalg.norm(self._start_pos[seq[1:]] - self._end_pos[seq[:-1]], axis=-1).max(-1) * size
        n_trans = np.maximum(2, np.round((2.0 + 3.0 * gap) * speed * fscale
                                         * rng.uniform(0.85, 1.15, len(gap)))).astype(int)
        lead, tail = np.maximum(1, np.round(rng.integers(3, 9, 2) * fscale)).astype(int)
        lengths = np.empty(2 * len(ids) + 1, dtype=int)
        lengths[0::2], lengths[1::2] = n_trans, n_sign
        ends = lead + np.cumsum(lengths)
        spans = tuple((int(ends[2 * i]), int(ends[2 * i + 1])) for i in range(len(ids)))
        seed_out = int(rng.integers(2 ** 62)) if timing_rng is not None else int(seed)
        return SentenceSpec(
            id=id or f"syn_{split}_{seed_out}", split=split, signer=int(signer),
            word_ids=tuple(int(i) for i in ids), words=tuple(self._words[i] for i in ids),
            dominant=dominant, speed=float(speed), size=float(size), seed=seed_out, lead=int(lead),
            spans=spans, tail=int(tail), num_frames=int(ends[-1] + tail))

    def sentences(self, split: str) -> list[SentenceSpec]:
        """The split's sentence specs (cached; deterministic from the seed)."""
        self._check_split(split)
        if split not in self._sentences:
            self._sentences[split] = self._make_split(split)
        return self._sentences[split]

    def _make_split(self, split: str) -> list[SentenceSpec]:
        code = SPLITS.index(split)
        n = self.cfg.n_sentences[code]
        rng = np.random.default_rng(self._split_seeds[split])
        signers = [s.index for s in self.split_signers(split)]
        order = rng.permutation(len(signers)) if signers else []
        seen: set[tuple[int, ...]] = set()
        out = []
        for i in range(n):
            for _attempt in range(200):
                n_words = int(rng.integers(self.cfg.min_words, self.cfg.max_words + 1))
                words = tuple(self._sentence_words(n_words, code, rng))
                if words not in seen:
                    break
            else:
                raise SyntheticError(f"could not draw {n} distinct {split} sentences; raise vocab_size "
                                     "or lower n_sentences")
            seen.add(words)
            signer = signers[order[i % len(signers)]]
            out.append(self.make_spec(words, signer, split=split, id=f"syn_{split}_{i:05d}",
                                      timing_rng=rng))
        return out

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise SyntheticError(f"split must be one of {SPLITS}, got {split!r}")

    # --- per-frame labels ------------------------------------------------------------------------------
    def frame_labels(self, spec: SentenceSpec) -> np.ndarray:
        """``(F,)`` int64: the word id signed in each frame, ``REST_ID`` (-1) in rests/transitions."""
        lab = np.full(spec.num_frames, self.REST_ID, dtype=np.int64)
        for (s, e), w in zip(spec.spans, spec.word_ids):
            lab[s:e] = w
        return lab

    # --- geometry --------------------------------------------------------------------------------------
    def _timeline(self, spec: SentenceSpec):
        """Per-frame (a, pos_a, b, pos_b, alpha): state = lerp(table[a, pos_a], table[b, pos_b], alpha).

        Segments: lead rest, transition, sign 1, transition, ..., sign k, transition, tail rest;
        a transition from sign i to sign i+1 blends the end of i into the start of i+1 with a
        smoothstep (co-articulation).
        """
        F, rest = spec.num_frames, self.cfg.vocab_size
        a = np.full(F, rest)
        b = np.full(F, rest)
        pa = np.zeros(F)
        pb = np.zeros(F)
        alpha = np.zeros(F)
        prev_end, prev_w = spec.lead, rest
        segs = list(zip(spec.spans, spec.word_ids)) + [((F - spec.tail, F), rest)]
        for (s, e), w in segs:          # ≤ 17 segments: a loop over words, not frames
            n = s - prev_end
            a[prev_end:s], b[prev_end:s] = prev_w, w
            pa[prev_end:s] = _S - 1
            alpha[prev_end:s] = _smoothstep(np.arange(1, n + 1) / (n + 1))
            a[s:e] = b[s:e] = w
            pa[s:e] = pb[s:e] = np.linspace(0, _S - 1, e - s)
            prev_end, prev_w = e, w
        return a, pa, b, pb, alpha

    def _state(self, spec: SentenceSpec):
        a, pa, b, pb, alpha = self._timeline(spec)

        def sample(ids, pos):
            p0 = np.floor(pos).astype(int)
            p1 = np.minimum(p0 + 1, _S - 1)
            f = (pos - p0)
            arm = self._arm_table[ids, p0] * (1 - f)[:, None, None] + self._arm_table[ids, p1] * f[:, None, None]
            mouth = self._mouth_table[ids, p0] * (1 - f) + self._mouth_table[ids, p1] * f
            return arm, mouth

        arm_a, mouth_a = sample(a, pa)
        arm_b, mouth_b = sample(b, pb)
        arm = arm_a + alpha[:, None, None] * (arm_b - arm_a)
        mouth = mouth_a + alpha * (mouth_b - mouth_a)
        return arm, mouth

    def _geometry(self, spec: SentenceSpec) -> np.ndarray:
        """Clean pixel coordinates ``(F, 87, 2)`` of every store-layout point (no noise, no drops)."""
        sg = self.signers[spec.signer]
        F = spec.num_frames
        rng = np.random.default_rng([spec.seed, 1])
        arm, mouth = self._state(spec)                                  # (F, 2, 27), (F,)
        t = np.arange(F) / self.cfg.fps
        ph = rng.uniform(0, 2 * np.pi, 4)
        fr = rng.uniform(0.15, 0.45, 4)
        sway = np.stack([0.02 * np.sin(2 * np.pi * fr[0] * t + ph[0]),
                         0.01 * np.sin(2 * np.pi * fr[1] * t + ph[1]), np.zeros(F)], -1)   # (F, 3)
        head = np.stack([0.03 * np.sin(2 * np.pi * fr[2] * t + ph[2]),
                         0.02 * np.sin(2 * np.pi * fr[3] * t + ph[3])], -1)

        # arm m ∈ {+1 anatomical right, -1 anatomical left}: every arm is solved as a right arm
        # in its own mirrored frame and mirrored back (x → m·x)
        m = np.array([1.0, -1.0]) if spec.dominant == "right" else np.array([-1.0, 1.0])
        shoulder = np.zeros((F, 2, 3))
        shoulder[..., 0] = -0.5 + m * sway[:, None, 0]
        shoulder[..., 1] = sway[:, None, 1]
        wrist = arm[..., _LOC] + spec.size * arm[..., _OFF]
        wrist[..., 1] -= arm[..., _ANC] * (sg.neck - _CANON_NECK)
        rest = np.array([-0.5, 0.0, 0.0]) + 0.96 * (sg.upper_arm + sg.forearm) * _REST_DIR
        wrist += arm[..., _RST, None] * (rest - _REST)
        elbow, wrist = _two_bone_ik(shoulder, wrist, sg.upper_arm, sg.forearm)
        fa = wrist - elbow
        roll = np.arctan2(fa[..., 0], -fa[..., 1]) + arm[..., _ORI][..., 0]
        local = hand_local_points(arm[..., _HP])                         # (F, 2, 21, 3)
        local = _rotate(local, roll, arm[..., _ORI][..., 1], arm[..., _ORI][..., 2])
        hand = wrist[..., None, :] + sg.hand * local
        hand[..., 0, :] = wrist
        # mirror back to the body frame
        mx = m[None, :, None]
        elbow, wrist = elbow.copy(), wrist.copy()
        elbow[..., 0] *= mx[..., 0]
        wrist[..., 0] *= mx[..., 0]
        hand[..., 0] *= mx
        shoulder[..., 0] *= mx[..., 0]
        left, right = (1, 0) if spec.dominant == "right" else (0, 1)

        nose = np.stack([head[:, 0], -sg.neck + head[:, 1] + sway[:, 1]], -1)   # (F, 2)
        pts = np.empty((F, _N_KP, 2))
        pts[:, 0] = nose
        pts[:, 1], pts[:, 2], pts[:, 3] = shoulder[:, left, :2], elbow[:, left, :2], wrist[:, left, :2]
        pts[:, 4], pts[:, 5], pts[:, 6] = shoulder[:, right, :2], elbow[:, right, :2], wrist[:, right, :2]
        pts[:, 7:7 + N_HAND] = hand[:, left, :, :2]
        pts[:, 7 + N_HAND:N_SEDS] = hand[:, right, :, :2]
        pts[:, _FACE_SL] = nose[:, None] + sg.head * _FACE_T
        mouth_xy = np.stack([np.broadcast_to(_MOUTH_X, (F, N_MOUTH)),
                             _MOUTH_Y0 + mouth[:, None] * _MOUTH_OPEN], -1)
        pts[:, _MOUTH_SL] = nose[:, None] + sg.head * mouth_xy
        return pts * sg.shoulder_px + np.array(sg.origin)

    # --- public outputs ----------------------------------------------------------------------------
    def keypoints(self, spec: SentenceSpec) -> np.ndarray:
        """``(F, 87, 3)`` float32 keypoints in ``STORE_LAYOUT``: pixel x, y and a confidence.

        Adds Gaussian noise (``cfg.noise`` shoulder widths), detector-like confidences (body
        0.85-1, hands 0.4-1, face 0.8-0.98) and missing hands: per hand a two-state Markov chain
        whose stationary missing probability is ``cfg.p_missing_hand`` (mean run ``cfg.missing_run``
        frames); a missing hand has x = y = confidence = 0. Points outside the frame (e.g. finger
        tips of hands resting low) are likewise zeroed, as a detector would not report them.
        """
        cfg = self.cfg
        sg = self.signers[spec.signer]
        xy = self._geometry(spec)
        F = spec.num_frames
        rng = np.random.default_rng([spec.seed, 2])
        xy += rng.standard_normal(xy.shape, dtype=np.float32) * (cfg.noise * sg.shoulder_px)
        conf = rng.random((F, _N_KP))
        conf[:, :7] = 0.85 + 0.15 * conf[:, :7]
        hand_c = 0.5 + 0.45 * rng.random((F, 2, 1)) + 0.16 * (conf[:, 7:N_SEDS].reshape(F, 2, N_HAND) - 0.5)
        conf[:, 7:N_SEDS] = np.clip(hand_c, 0.4, 1.0).reshape(F, 2 * N_HAND)
        conf[:, N_SEDS:] = 0.8 + 0.18 * conf[:, N_SEDS:]
        out = np.concatenate([xy, conf[..., None]], -1).astype(np.float32)
        outside = ((xy < 0) | (xy > (cfg.width - 1, cfg.height - 1))).any(-1)   # not detectable
        out[outside] = 0.0
        if cfg.p_missing_hand > 0:
            miss = _missing_runs(rng, F, 2, cfg.p_missing_hand, cfg.missing_run)   # (F, 2)
            for h, sl in enumerate((slice(7, 7 + N_HAND), slice(7 + N_HAND, N_SEDS))):
                out[miss[:, h], sl] = 0.0
        return out

    def render(self, spec: SentenceSpec) -> np.ndarray:
        """``(F, H, W, 3)`` uint8 RGB frames of the (noise-free) signer.

        A small rasteriser over OpenCV primitives: background colour, clothing torso polygon, neck,
        hair and face, mouth line, sleeves (upper arm, forearm), palms and skin-coloured finger lines.
        The loop is over frames (about ten C drawing calls each), not over keypoints.
        """
        import cv2

        cfg = self.cfg
        sg = self.signers[spec.signer]
        pts = self._geometry(spec)
        F, H, W = spec.num_frames, cfg.height, cfg.width
        frame0 = np.empty((H, W, 3), dtype=np.uint8)
        frame0[:] = sg.background
        frames = np.empty((F, H, W, 3), dtype=np.uint8)
        frames[:] = frame0                        # (a whole-frame broadcast is ~10× faster than per-pixel)
        SH = 4                                    # fixed-point bits for sub-pixel drawing
        one = 1 << SH
        P = np.round(pts * one).astype(np.int32)                         # (F, 87, 2)
        sw = sg.shoulder_px
        r = sg.head * sw
        sleeve = tuple(int(c * 0.78) for c in sg.clothing)
        sleeve2 = tuple(int(c * 0.66) for c in sg.clothing)
        skin_dark = tuple(int(c * 0.8) for c in sg.skin)
        t_upper, t_fore = max(2, int(round(0.22 * sw))), max(2, int(round(0.17 * sw)))
        t_finger = max(1, int(round(0.045 * sw)))
        lip = (150, 60, 60)
        # per-frame primitives, built for all frames at once
        ls, rs, nose = P[:, 1], P[:, 4], P[:, 0]
        dx = int(0.12 * sw * one)
        bottom = np.full(F, (H + 8) * one, np.int32)
        torso = np.stack([np.stack([rs[:, 0] - dx, rs[:, 1]], -1), np.stack([ls[:, 0] + dx, ls[:, 1]], -1),
                          np.stack([ls[:, 0] + dx // 2, bottom], -1),
                          np.stack([rs[:, 0] - dx // 2, bottom], -1)], 1)
        nw = int(0.55 * r * one)
        mid_y = (ls[:, 1] + rs[:, 1]) // 2
        neck = np.stack([np.stack([nose[:, 0] - nw, nose[:, 1]], -1), np.stack([nose[:, 0] + nw, nose[:, 1]], -1),
                         np.stack([nose[:, 0] + nw, mid_y], -1), np.stack([nose[:, 0] - nw, mid_y], -1)], 1)
        c_hair = (nose - np.array([0, int(0.62 * r * one)], np.int32)).tolist()
        c_face = (nose - np.array([0, int(0.2 * r * one)], np.int32)).tolist()
        ax_face = (int(0.95 * r * one), int(1.08 * r * one))
        ax_hair = (int(1.02 * r * one), int(0.9 * r * one))
        mouth = np.ascontiguousarray(P[:, _MOUTH_SL][:, :12])
        hands = P[:, 7:N_SEDS].reshape(F, 2, N_HAND, 2)                  # left, right
        palms = np.ascontiguousarray(hands[:, :, _PALM])                 # (F, 2, 6, 2)
        fingers = np.ascontiguousarray(hands[:, :, _CHAINS])             # (F, 2, 5, 5, 2)
        upper = np.ascontiguousarray(P[:, [[1, 2], [4, 5]]])             # (F, 2, 2, 2) left, right
        fore = np.ascontiguousarray(P[:, [[2, 3], [5, 6]]])
        order = (1, 0) if spec.dominant == "right" else (0, 1)           # non-dominant arm behind
        aa, l8 = cv2.LINE_AA, cv2.LINE_8       # anti-aliased edges; thick sleeves plain (3× cheaper)
        for f in range(F):       # a loop over frames: ~13 C drawing calls each, no per-point work
            img = frames[f]
            cv2.fillConvexPoly(img, torso[f], sg.clothing, aa, SH)
            cv2.fillConvexPoly(img, neck[f], skin_dark, aa, SH)
            cv2.ellipse(img, c_hair[f], ax_hair, 0, 0, 360, sg.hair, -1, aa, SH)
            cv2.ellipse(img, c_face[f], ax_face, 0, 0, 360, sg.skin, -1, aa, SH)
            cv2.polylines(img, mouth[f:f + 1], True, lip, 1, aa, SH)
            for h in order:
                cv2.polylines(img, upper[f, h:h + 1], False, sleeve, t_upper, l8, SH)
                cv2.polylines(img, fore[f, h:h + 1], False, sleeve2, t_fore, l8, SH)
                cv2.fillPoly(img, palms[f, h:h + 1], sg.skin, aa, SH)
                cv2.polylines(img, fingers[f, h], False, sg.skin, t_finger, aa, SH)
        return frames

    def make_features(self, spec: SentenceSpec) -> VideoFeatures:
        """Store-ready :class:`VideoFeatures`: keypoints, proxy RGB (see :func:`rgb_proxy_features`)
        of the windows chosen by :func:`seds.clips.select_clip_starts`, and the sentence meta.

        Videos shorter than one window are padded by repeating their last frame (keypoints and frames).
        """
        kp = self.keypoints(spec)
        frames = self.render(spec)
        pad = pad_frames(len(kp))
        if pad:
            kp = np.concatenate([kp, np.repeat(kp[-1:], pad, 0)])
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, 0)])
        starts = select_clip_starts(len(kp))
        rgb = RGB_PROXIES[self.cfg.rgb_proxy](frames, starts)
        meta = {"id": spec.id, "text": spec.text, "split": spec.split,
                "signer": self.signers[spec.signer].id, "words": " ".join(spec.words),
                "word_ids": ",".join(str(i) for i in spec.word_ids),
                "word_spans": " ".join(f"{s}:{e}" for s, e in spec.spans),
                "dominant": spec.dominant, "source": "synthetic",
                "rgb": "proxy" if self.cfg.rgb_proxy == "histogram" else f"proxy-{self.cfg.rgb_proxy}"}
        return VideoFeatures(keypoints=kp, rgb=rgb, clip_starts=starts, fps=self.cfg.fps, meta=meta)


# ------------------------------------------------------------------------------------------------
# numeric helpers
# ------------------------------------------------------------------------------------------------

_POLE = np.array([-0.3, 1.0, 0.3]) / np.linalg.norm([-0.3, 1.0, 0.3])   # right elbow: down, a bit out and forward


def _two_bone_ik(shoulder: np.ndarray, target: np.ndarray, l1: float, l2: float):
    """Elbow and (reachable) wrist of a right arm ``shoulder → target`` with bone lengths l1, l2.

    The elbow lies on the circle of solutions on the side of the pole vector (down, slightly out and
    forward; never near-parallel to a reachable arm direction, so the choice is stable).
    Unreachable targets are pulled towards the shoulder onto the reachable shell.
    """
    v = target - shoulder
    d = np.linalg.norm(v, axis=-1, keepdims=True)
    u = v / np.maximum(d, 1e-9)
    dc = np.clip(d, abs(l1 - l2) + 1e-3, l1 + l2 - 1e-3)
    cos_a = np.clip((l1 * l1 + dc * dc - l2 * l2) / (2 * l1 * dc), -1.0, 1.0)
    pv = _POLE - (u @ _POLE)[..., None] * u
    pn = np.linalg.norm(pv, axis=-1, keepdims=True)
    pv = np.where(pn > 1e-6, pv / np.maximum(pn, 1e-9), np.array([-1.0, 0.0, 0.0]))
    elbow = shoulder + l1 * (cos_a * u + np.sqrt(1 - cos_a * cos_a) * pv)
    return elbow, shoulder + u * dc


def _rotate(p: np.ndarray, roll, yaw, pitch) -> np.ndarray:
    """Apply ``Rz(roll) Ry(yaw) Rx(pitch)`` to points ``(..., N, 3)`` with angles ``(...)``."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    c, s = np.cos(pitch)[..., None], np.sin(pitch)[..., None]
    y, z = c * y - s * z, s * y + c * z
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    x, z = c * x + s * z, -s * x + c * z
    c, s = np.cos(roll)[..., None], np.sin(roll)[..., None]
    x, y = c * x - s * y, s * x + c * y
    return np.stack([x, y, z], -1)


def _missing_runs(rng: np.random.Generator, n_frames: int, n_tracks: int, p: float,
                  mean_run: float) -> np.ndarray:
    """``(n_frames, n_tracks)`` bool: a stationary two-state Markov chain per track, missing with
    probability ``p`` and mean missing-run length ``mean_run`` (alternating geometric run lengths)."""
    b = 1.0 / mean_run                       # leave-missing rate
    a = min(1.0, p * b / (1.0 - p))          # enter-missing rate
    n_runs = n_frames + 1                    # enough alternating runs to cover every frame
    present = rng.geometric(a, (n_tracks, n_runs))
    missing = rng.geometric(b, (n_tracks, n_runs))
    start_missing = rng.random(n_tracks) < p
    out = np.zeros((n_tracks, n_frames), dtype=bool)
    for k in range(n_tracks):      # tracks = the two hands
        first, second = (missing[k], present[k]) if start_missing[k] else (present[k], missing[k])
        lens = np.stack([first, second], 1).ravel()
        state = np.tile([start_missing[k], not start_missing[k]], n_runs)
        out[k] = np.repeat(state, lens)[:n_frames]
    return out.T


# ------------------------------------------------------------------------------------------------
# the feature store writer
# ------------------------------------------------------------------------------------------------

_WORKER_DATA: dict = {}


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)        # one process per core: no nested thread pools


def _worker_data(cfg: SyntheticConfig) -> SyntheticSignData:
    key = repr(cfg)
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[key] = SyntheticSignData(cfg)
    return _WORKER_DATA[key]


def _store_chunk(cfg: SyntheticConfig, split: str, lo: int, hi: int, root: str) -> list[dict]:
    data = _worker_data(cfg)
    store = FeatureStore(root, create=True)
    rows = []
    for spec in data.sentences(split)[lo:hi]:
        store.save(spec.id, data.make_features(spec))
        rows.append({"id": spec.id, "video": "", "text": spec.text, "split": split,
                     "signer": data.signers[spec.signer].id})
    return rows


def write_chunk_manifests(out: Path, splits, jobs: list, results: list) -> dict[str, Path]:
    """``manifest_<split>.csv`` (id, video, text, split, signer) of each split from the rows the store
    chunks returned; ``jobs[i] = (split, lo, hi)`` produced ``results[i]``. Returns split → path."""
    manifests = {}
    for s in splits:
        path = Path(out) / f"manifest_{s}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["id", "video", "text", "split", "signer"])
            w.writeheader()
            for (js, _, _), rows in zip(jobs, results):
                if js == s:
                    w.writerows(rows)
        manifests[s] = path
    return manifests


def write_synthetic_store(out_dir: str | os.PathLike, cfg: SyntheticConfig = SyntheticConfig(),
                          splits: Sequence[str] = SPLITS, workers: int | None = None,
                          chunk: int = 64) -> dict[str, Path]:
    """Write the benchmark as a feature store: one safetensors per video (``seds.data.store``) plus
    ``manifest_<split>.csv`` (``id, video, text, split, signer``; ``video`` is empty) and
    ``synthetic_info.json`` (config, vocabulary, signers, the proxy-RGB note).

    Returns ``{split: manifest path}``. ``workers`` processes (default: up to 2) share the work in
    chunks of ``chunk`` videos; output is identical for any worker count.
    """
    for s in splits:
        SyntheticSignData._check_split(s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _worker_data(cfg)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if workers < 1:
        raise SyntheticError(f"workers must be ≥ 1, got {workers}")
    jobs = [(s, lo, min(lo + chunk, len(data.sentences(s))))
            for s in splits for lo in range(0, len(data.sentences(s)), chunk)]
    if workers == 1:
        results = [_store_chunk(cfg, s, lo, hi, str(out)) for s, lo, hi in jobs]
    else:
        # spawn, not fork: the caller may hold torch/OpenCV thread pools that do not survive a fork
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_init) as ex:
            futs = [ex.submit(_store_chunk, cfg, s, lo, hi, str(out)) for s, lo, hi in jobs]
            results = [f.result() for f in futs]
    manifests = write_chunk_manifests(out, splits, jobs, results)
    info = {"note": PROXY_RGB_NOTE, "config": asdict(cfg),
            "vocab": [asdict(v) for v in data.vocab], "signers": [asdict(sg) for sg in data.signers]}
    (out / "synthetic_info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return manifests
