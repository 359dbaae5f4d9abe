"""The body model and constant tables of the synthetic signing benchmark (:mod:`seds.synthetic.signing`).

The hand model (18 finger configurations → 21 OpenPose hand points by forward kinematics), the sign
locations, the per-arm channel layout of the canonical sign table, the face and mouth templates, the
word-part and colour tables, and the numeric helpers (easing, Catmull-Rom splines, HSV colours,
two-bone inverse kinematics, rotations, missing-hand runs) that :class:`~seds.synthetic.signing.SyntheticSignData`
uses. Pure numpy; no state.
"""
from __future__ import annotations

import numpy as np

from seds.data.features import STORE_LAYOUT
from seds.keypoints import FACE68_SUBSET, N_FACE, N_HAND, N_MOUTH, N_SEDS

__all__ = [
    "ANC",
    "ARM_CH",
    "BASE_SHAPES",
    "CANON_NECK",
    "CHAINS",
    "CLASS_FRAC",
    "CODAS",
    "FACE_SL",
    "FACE_T",
    "HAIR",
    "HANDS",
    "HANDSHAPES",
    "HP",
    "LOC",
    "LOCATIONS",
    "LOC_NAMES",
    "MOUTH_OPEN",
    "MOUTH_SL",
    "MOUTH_X",
    "MOUTH_Y0",
    "MOVEMENTS",
    "N_KP",
    "OFF",
    "ONSETS",
    "ORI",
    "PALM",
    "RELAXED",
    "REST",
    "REST_DIR",
    "RST",
    "S",
    "SHAPE_NAMES",
    "SHAPE_TABLE",
    "SKIN",
    "VOWELS",
    "catmull_rom",
    "hand_local_points",
    "hsv_to_rgb",
    "missing_runs",
    "rotate",
    "smoothstep",
    "two_bone_ik",
]


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
SHAPE_NAMES = tuple(HANDSHAPES)
SHAPE_TABLE = np.stack([HANDSHAPES[k] for k in SHAPE_NAMES])
RELAXED = _shape((0.45, 0.2, 0.2, 0.1), [(0.3, 0.35, 0.2)] * 4, 0.2)
BASE_SHAPES = ("B", "5", "S", "1", "C")      # non-dominant base hands

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
LOC_NAMES = tuple(LOCATIONS)
REST = np.array([-0.45, 1.25, 0.20])        # canonical rest target; per signer: a near-straight arm
REST_DIR = np.array([0.10, 0.85, 0.50]) / np.linalg.norm([0.10, 0.85, 0.50])
CANON_NECK = 0.5
MOVEMENTS = ("hold", "line", "arc", "circle", "repeat", "wiggle")
HANDS = ("one", "sym", "alt", "base")

# per-arm state channels of the canonical sign table
# location, offset curve, hand parameters, orientation (roll, yaw, pitch), head anchor, rest weight
LOC, OFF, HP, ORI, ANC, RST = slice(0, 3), slice(3, 6), slice(6, 23), slice(23, 26), 26, 27
ARM_CH = 28
S = 32                      # canonical samples per sign

# face templates in face-radius units relative to the nose tip (iBUG-68 subset of seds.keypoints)
_FACE68_XY = {0: (-0.92, -0.30), 4: (-0.78, 0.35), 8: (0.0, 0.82), 12: (0.78, 0.35), 16: (0.92, -0.30),
              17: (-0.70, -0.62), 19: (-0.42, -0.72), 21: (-0.14, -0.62), 22: (0.14, -0.62),
              24: (0.42, -0.72), 26: (0.70, -0.62), 27: (0.0, -0.45), 30: (0.0, 0.0), 33: (0.0, 0.12),
              36: (-0.55, -0.40), 39: (-0.20, -0.40), 42: (0.20, -0.40), 45: (0.55, -0.40)}
FACE_T = np.array([_FACE68_XY[i] for i in FACE68_SUBSET])
_MOUTH_Y, _MOUTH_W, _MOUTH_H, _MOUTH_IW = 0.42, 0.33, 0.10, 0.22
_th_up = np.linspace(0, np.pi, 7)                   # 48..54: left corner, upper lip, right corner
_th_lo = np.linspace(np.pi, 0, 7)[1:-1]             # 55..59: lower lip right → left
_ti_up = np.linspace(0, np.pi, 5)                   # 60..64
_ti_lo = np.linspace(np.pi, 0, 5)[1:-1]             # 65..67
MOUTH_X = np.concatenate([-_MOUTH_W * np.cos(_th_up), -_MOUTH_W * np.cos(_th_lo),
                           -_MOUTH_IW * np.cos(_ti_up), -_MOUTH_IW * np.cos(_ti_lo)])
MOUTH_Y0 = np.concatenate([-_MOUTH_H * np.sin(_th_up), _MOUTH_H * np.sin(_th_lo),
                            np.zeros(5), np.zeros(3)]) + _MOUTH_Y
MOUTH_OPEN = np.concatenate([np.zeros(7), 0.7 * np.sin(_th_lo),          # lower lip drops
                              -0.2 * np.sin(_ti_up), 0.8 * np.sin(_ti_lo)]) * 0.25
N_KP = STORE_LAYOUT.num_points      # 87
PALM = np.array([0, 1, 5, 9, 13, 17])
CHAINS = np.array([[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [0, 9, 10, 11, 12], [0, 13, 14, 15, 16],
                    [0, 17, 18, 19, 20]])
FACE_SL = slice(N_SEDS, N_SEDS + N_FACE)
MOUTH_SL = slice(N_SEDS + N_FACE, N_SEDS + N_FACE + N_MOUTH)

# pseudo-English word parts
ONSETS = ("b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "dr", "fl", "gr", "kl", "pl", "pr", "sk", "sl", "sn", "st", "tr", "ch", "sh", "th")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "oo", "ou", "ie")
CODAS = ("", "", "", "n", "m", "l", "r", "s", "t", "k", "nd", "st", "rk", "ng")
CLASS_FRAC = (0.40, 0.25, 0.15, 0.10, 0.10)
SKIN = ((255, 224, 196), (234, 192, 134), (224, 172, 105), (198, 134, 66), (141, 85, 36),
         (255, 205, 148))
HAIR = ((20, 20, 20), (70, 45, 25), (120, 80, 40), (200, 170, 110), (150, 150, 150))


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def catmull_rom(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples of the uniform Catmull-Rom spline through ``points`` (K, 3), eased in and out."""
    k = len(points)
    if k == 1:
        return np.repeat(points, n, axis=0)
    p = np.concatenate([points[:1], points, points[-1:]])
    u = smoothstep(np.linspace(0, 1, n)) * (k - 1)
    i = np.minimum(u.astype(int), k - 2)
    t = (u - i)[:, None]
    p0, p1, p2, p3 = p[i], p[i + 1], p[i + 2], p[i + 3]
    return 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                  + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)


def hsv_to_rgb(h, s, v) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


# ------------------------------------------------------------------------------------------------
# numeric helpers
# ------------------------------------------------------------------------------------------------

_POLE = np.array([-0.3, 1.0, 0.3]) / np.linalg.norm([-0.3, 1.0, 0.3])   # right elbow: down, a bit out and forward


def two_bone_ik(shoulder: np.ndarray, target: np.ndarray, l1: float, l2: float):
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


def rotate(p: np.ndarray, roll, yaw, pitch) -> np.ndarray:
    """Apply ``Rz(roll) Ry(yaw) Rx(pitch)`` to points ``(..., N, 3)`` with angles ``(...)``."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    c, s = np.cos(pitch)[..., None], np.sin(pitch)[..., None]
    y, z = c * y - s * z, s * y + c * z
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    x, z = c * x + s * z, -s * x + c * z
    c, s = np.cos(roll)[..., None], np.sin(roll)[..., None]
    x, y = c * x - s * y, s * x + c * y
    return np.stack([x, y, z], -1)


def missing_runs(rng: np.random.Generator, n_frames: int, n_tracks: int, p: float,
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
