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
  recognise — its filters are random — nor the order of the motion inside a window (per-frame features are
  averaged over the 16 frames). Measured RGB-only / pose-only at the ablation scale (8 fps, T = 24, converged,
  5 seeds, ``benchmarks/results/ablations/streams.md``): 0.42 on test T2V R@1, 0.57 on test R-sum, 0.69 on
  val R-sum — below the paper's ≈ 0.9–1.0.

``max_clips`` (T) stores at most T windows per video, chosen at equal intervals like the model's own window
sampling (:func:`seds.clips.select_clip_starts`).

Numbers obtained with either proxy must be reported as "synthetic, proxy-RGB", never compared with the paper's
I3D numbers.

Typical use::

    cfg = SyntheticConfig(seed=0)
    data = SyntheticSignData(cfg)
    spec = data.sentences("train")[0]
    kp = data.keypoints(spec)          # (F, 87, 3) pixel x, y + confidence in STORE_LAYOUT
    frames = data.render(spec)         # (F, H, W, 3) uint8 RGB
    feats = data.make_features(spec)   # VideoFeatures with proxy RGB

    from seds.synthetic.store import write_synthetic_store
    write_synthetic_store("stores/synthetic", cfg)   # one safetensors per video + manifests

The hand model, sign locations and constant tables live in :mod:`seds.synthetic.body`; the
feature-store writer in :mod:`seds.synthetic.store`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from seds.clips import MAX_CLIPS, pad_frames, select_clip_starts
from seds.data.features import VideoFeatures
from seds.synthetic.body import (
    ANC, ARM_CH, BASE_SHAPES, CANON_NECK, CHAINS, CLASS_FRAC, CODAS, FACE_SL, FACE_T, HAIR, HANDS,
    HANDSHAPES, HP, LOC, LOCATIONS, LOC_NAMES, MOUTH_OPEN, MOUTH_SL, MOUTH_X, MOUTH_Y0, MOVEMENTS, N_KP,
    OFF, ONSETS, ORI, PALM, RELAXED, REST, REST_DIR, RST, S, SHAPE_NAMES, SHAPE_TABLE, SKIN, VOWELS,
    catmull_rom, hand_local_points, hsv_to_rgb, missing_runs, rotate, smoothstep, two_bone_ik)
from seds.extract.proxy_rgb import rgb_conv_proxy_features, rgb_proxy_features
from seds.keypoints import N_HAND, N_MOUTH, N_SEDS

__all__ = [
    "SyntheticConfig", "SyntheticSignData", "SentenceSpec", "Signer", "Word", "SyntheticError",
    "rgb_proxy_features", "hand_local_points", "SPLITS", "WORD_CLASSES", "HANDSHAPES", "LOCATIONS",
    "PROXY_RGB_NOTE",
]

SPLITS = ("train", "val", "test")
WORD_CLASSES = ("noun", "verb", "adj", "adv", "time")
PROXY_RGB_NOTE = ("synthetic, proxy-RGB: RGB features come from seds.synthetic.signing.rgb_proxy_features "
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
    max_clips: int = MAX_CLIPS       # T: windows stored per video, at equal intervals (= the model's max_clips)
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
        if not 1 <= self.max_clips <= 4096:
            bad("max_clips", "must be in [1, 4096]")
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
# the generator
# ------------------------------------------------------------------------------------------------

class SyntheticSignData:
    """The synthetic benchmark defined by a :class:`SyntheticConfig` (see the module docstring)."""

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
                coda = CODAS[rng.integers(len(CODAS))] if (j == n_syl - 1 or rng.random() < 0.3) else ""
                parts.append(ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))] + coda)
            w = "".join(parts)
            if 3 <= len(w) <= 10 and w not in seen:
                seen.add(w)
                words.append(w)
        counts = np.floor(np.array(CLASS_FRAC) * n).astype(int)
        counts[0] += n - counts.sum()
        classes = np.repeat(np.arange(len(WORD_CLASSES)), counts)
        rng.shuffle(classes)
        self._words = words
        self._word_class = classes
        self._by_class = {c: np.flatnonzero(classes == i) for i, c in enumerate(WORD_CLASSES)}

    # --- signs: the canonical table (V + 1 rest entry, S samples, 2 arms, channels) -------------
    def _make_signs(self, rng: np.random.Generator) -> None:
        V = self.cfg.vocab_size
        arm = np.zeros((V + 1, S, 2, ARM_CH))
        mouth = np.zeros((V + 1, S))
        u = np.linspace(0.0, 1.0, S)
        shape_w = smoothstep((u - 0.3) / 0.4)[:, None]
        ori_w = smoothstep(u)[:, None]
        self._sign_info: list[tuple] = []
        base_len = np.zeros(V + 1, dtype=np.float64)
        for w in range(V):
            loc_name = LOC_NAMES[rng.integers(len(LOC_NAMES))]
            loc0, head = LOCATIONS[loc_name]
            loc = np.array(loc0) + rng.uniform(-0.06, 0.06, 3)
            move = MOVEMENTS[rng.choice(len(MOVEMENTS), p=(0.12, 0.22, 0.2, 0.14, 0.17, 0.15))]
            if head:
                hands = "sym" if rng.random() < 0.15 else "one"
            else:
                hands = HANDS[rng.choice(4, p=(0.5, 0.2, 0.12, 0.18))]
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
            off = catmull_rom(ctrl, S)
            off -= off.mean(0)
            s0 = rng.integers(len(SHAPE_NAMES))
            s1 = s0 if rng.random() < 0.7 else rng.integers(len(SHAPE_NAMES))
            hp = (1 - shape_w) * SHAPE_TABLE[s0] + shape_w * SHAPE_TABLE[s1]
            yaw0 = rng.choice([0.0, 0.0, 1.2, -1.2, np.pi - 0.3])
            o0 = np.array([rng.uniform(-0.5, 0.5), yaw0, rng.uniform(-0.4, 0.4)])
            o1 = o0 + (rng.uniform(-0.6, 0.6, 3) if rng.random() < 0.4 else 0.0)
            ori = (1 - ori_w) * o0 + ori_w * o1
            dom = arm[w, :, 0]
            dom[:, LOC], dom[:, OFF], dom[:, HP], dom[:, ORI], dom[:, ANC] = loc, off, hp, ori, head
            nd = arm[w, :, 1]
            if hands == "one":
                nd[:, LOC], nd[:, HP], nd[:, RST] = REST, RELAXED, 1.0
                nd[:, ORI] = (0.0, 1.2, 0.0)
            elif hands in ("sym", "alt"):
                nd[:] = dom
                if hands == "alt":
                    nd[:, OFF] = off[::-1]
            else:   # base: the non-dominant hand holds a base shape palm-up near the midline
                nd[:, LOC] = (-0.12, 0.62, 0.5) + rng.uniform(-0.05, 0.05, 3)
                nd[:, OFF] = 0.15 * off
                nd[:, HP] = HANDSHAPES[BASE_SHAPES[rng.integers(len(BASE_SHAPES))]]
                nd[:, ORI] = (rng.uniform(-0.3, 0.3), 0.0, -1.2)
                dom[:, LOC] = (0.05, 0.45, 0.55) + rng.uniform(-0.05, 0.05, 3)
                dom[:, ANC] = 0.0
            k = rng.integers(1, 4)
            mouth[w] = rng.uniform(0.0, 1.0) * np.abs(np.sin(np.pi * k * u))
            base_len[w] = rng.uniform(8, 16) + (3 if move in ("circle", "repeat") else 0)
            self._sign_info.append((SHAPE_NAMES[s0], SHAPE_NAMES[s1], loc_name, move, hands))
        rest = arm[V]
        rest[:, :, LOC] = REST
        rest[:, :, HP] = RELAXED
        rest[:, :, ORI] = (0.0, 1.2, 0.0)
        rest[:, :, RST] = 1.0
        self._arm_table = arm
        self._mouth_table = mouth
        self._base_len = base_len
        pos = arm[:, :, :, LOC] + arm[:, :, :, OFF]            # (V+1, S, 2, 3), size 1
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
                skin=SKIN[rng.integers(len(SKIN))], hair=HAIR[rng.integers(len(HAIR))],
                clothing=hsv_to_rgb(hues[i], rng.uniform(0.35, 0.85), rng.uniform(0.3, 0.85)),
                background=hsv_to_rgb(bg_h, rng.uniform(0.1, 0.5), rng.uniform(0.45, 0.95)),
            ))
        self.signers: list[Signer] = out

    def split_signers(self, split: str) -> list[Signer]:
        self.check_split(split)
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
        self.check_split(split)
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
    def check_split(split: str) -> None:
        if split not in SPLITS:
            raise SyntheticError(f"split must be one of {SPLITS}, got {split!r}")

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
            pa[prev_end:s] = S - 1
            alpha[prev_end:s] = smoothstep(np.arange(1, n + 1) / (n + 1))
            a[s:e] = b[s:e] = w
            pa[s:e] = pb[s:e] = np.linspace(0, S - 1, e - s)
            prev_end, prev_w = e, w
        return a, pa, b, pb, alpha

    def _state(self, spec: SentenceSpec):
        a, pa, b, pb, alpha = self._timeline(spec)

        def sample(ids, pos):
            p0 = np.floor(pos).astype(int)
            p1 = np.minimum(p0 + 1, S - 1)
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
        wrist = arm[..., LOC] + spec.size * arm[..., OFF]
        wrist[..., 1] -= arm[..., ANC] * (sg.neck - CANON_NECK)
        rest = np.array([-0.5, 0.0, 0.0]) + 0.96 * (sg.upper_arm + sg.forearm) * REST_DIR
        wrist += arm[..., RST, None] * (rest - REST)
        elbow, wrist = two_bone_ik(shoulder, wrist, sg.upper_arm, sg.forearm)
        fa = wrist - elbow
        roll = np.arctan2(fa[..., 0], -fa[..., 1]) + arm[..., ORI][..., 0]
        local = hand_local_points(arm[..., HP])                         # (F, 2, 21, 3)
        local = rotate(local, roll, arm[..., ORI][..., 1], arm[..., ORI][..., 2])
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
        pts = np.empty((F, N_KP, 2))
        pts[:, 0] = nose
        pts[:, 1], pts[:, 2], pts[:, 3] = shoulder[:, left, :2], elbow[:, left, :2], wrist[:, left, :2]
        pts[:, 4], pts[:, 5], pts[:, 6] = shoulder[:, right, :2], elbow[:, right, :2], wrist[:, right, :2]
        pts[:, 7:7 + N_HAND] = hand[:, left, :, :2]
        pts[:, 7 + N_HAND:N_SEDS] = hand[:, right, :, :2]
        pts[:, FACE_SL] = nose[:, None] + sg.head * FACE_T
        mouth_xy = np.stack([np.broadcast_to(MOUTH_X, (F, N_MOUTH)),
                             MOUTH_Y0 + mouth[:, None] * MOUTH_OPEN], -1)
        pts[:, MOUTH_SL] = nose[:, None] + sg.head * mouth_xy
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
        conf = rng.random((F, N_KP))
        conf[:, :7] = 0.85 + 0.15 * conf[:, :7]
        hand_c = 0.5 + 0.45 * rng.random((F, 2, 1)) + 0.16 * (conf[:, 7:N_SEDS].reshape(F, 2, N_HAND) - 0.5)
        conf[:, 7:N_SEDS] = np.clip(hand_c, 0.4, 1.0).reshape(F, 2 * N_HAND)
        conf[:, N_SEDS:] = 0.8 + 0.18 * conf[:, N_SEDS:]
        out = np.concatenate([xy, conf[..., None]], -1).astype(np.float32)
        outside = ((xy < 0) | (xy > (cfg.width - 1, cfg.height - 1))).any(-1)   # not detectable
        out[outside] = 0.0
        if cfg.p_missing_hand > 0:
            miss = missing_runs(rng, F, 2, cfg.p_missing_hand, cfg.missing_run)   # (F, 2)
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
        mouth = np.ascontiguousarray(P[:, MOUTH_SL][:, :12])
        hands = P[:, 7:N_SEDS].reshape(F, 2, N_HAND, 2)                  # left, right
        palms = np.ascontiguousarray(hands[:, :, PALM])                 # (F, 2, 6, 2)
        fingers = np.ascontiguousarray(hands[:, :, CHAINS])             # (F, 2, 5, 5, 2)
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
        starts = select_clip_starts(len(kp), self.cfg.max_clips)
        rgb = RGB_PROXIES[self.cfg.rgb_proxy](frames, starts)
        meta = {"id": spec.id, "text": spec.text, "split": spec.split,
                "signer": self.signers[spec.signer].id, "words": " ".join(spec.words),
                "word_ids": ",".join(str(i) for i in spec.word_ids),
                "word_spans": " ".join(f"{s}:{e}" for s, e in spec.spans),
                "dominant": spec.dominant, "source": "synthetic",
                "rgb": "proxy" if self.cfg.rgb_proxy == "histogram" else f"proxy-{self.cfg.rgb_proxy}"}
        return VideoFeatures(keypoints=kp, rgb=rgb, clip_starts=starts, fps=self.cfg.fps, meta=meta)
