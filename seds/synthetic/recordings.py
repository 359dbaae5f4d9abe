"""Long synthetic recordings with known boundaries: sentences of the synthetic benchmark
(:mod:`seds.synthetic.signing`) signed one after another by one signer, with pauses between them — the test
material of localisation (:mod:`seds.retrieval.localise`) and of ``benchmarks/bench_recordings.py``.

A recording is a :class:`~seds.data.features.VideoFeatures` with ``meta["kind"] == "recording"`` whose
``clip_starts`` are 16-frame windows at a fixed ``stride`` along the whole timeline (the layout streaming
extraction writes, ``meta`` ``window`` / ``window_stride`` / ``duration_s`` / ``n_frames`` as there; the per-window
signer ``presence`` is left to :func:`seds.retrieval.localise.window_presence`). Every sentence is re-made for the recording's signer (:meth:`SyntheticSignData.make_spec`
with the sentence's words: held-out sentences stay held out), so the body stays in place; each sentence
starts and ends at the rest pose (its lead and tail holds), and a pause of ``pause_s`` seconds (a hold of the
last frame with keypoint jitter) separates two sentences. The *signing* span of a sentence runs from the
start of its first sign to the end of its last sign (rests and the first/last transition excluded).
``gap_without_signer_s`` inserts empty frames (no person, confidence 0) — material for "no signing".

Proxy RGB (:func:`seds.extract.proxy_rgb.rgb_proxy_features`) is computed over blocks of windows so memory
stays bounded by a block, not by the recording.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seds.clips import WINDOW
from seds.data.features import STORE_LAYOUT, VideoFeatures
from seds.synthetic.signing import RGB_PROXIES, SentenceSpec, SyntheticError, SyntheticSignData

RGB_BLOCK = 256        # windows per proxy-RGB block


@dataclass(frozen=True)
class PlacedSentence:
    id: str
    text: str
    start_s: float       # first sign starts
    end_s: float         # last sign ends
    clip_start_s: float  # the sentence video (rests included) starts
    clip_end_s: float


@dataclass
class SyntheticRecording:
    features: VideoFeatures
    sentences: list[PlacedSentence]
    frames: np.ndarray | None = None     # (F, H, W, 3) uint8 rendered frames, with ``keep_frames``

    @property
    def duration_s(self) -> float:
        return self.features.num_frames / float(self.features.fps)


def make_recording(data: SyntheticSignData, specs: list[SentenceSpec], *, signer: int | None = None,
                   stride: int = 8, pause_s: tuple[float, float] = (0.5, 3.0), seed: int = 0,
                   gap_without_signer_s: float = 0.0, id: str = "recording",
                   keep_frames: bool = False) -> SyntheticRecording:
    """Sentences ``specs`` signed in order by ``signer`` (default: the first spec's), pauses drawn uniformly
    from ``pause_s``; windows every ``stride`` frames; ``keep_frames``: also return the rendered frames (to write
    the recording as a video)."""
    if not specs and gap_without_signer_s <= 0:
        raise SyntheticError("a recording needs sentences or a gap without a signer")
    if stride < 1:
        raise SyntheticError("stride must be ≥ 1 frame")
    fps = data.cfg.fps
    rng = np.random.default_rng([seed, 29])
    signer = specs[0].signer if signer is None and specs else (signer or 0)
    kps, frames, placed = [], [], []
    t = 0
    if gap_without_signer_s > 0:
        n = int(round(gap_without_signer_s * fps))
        kps.append(np.zeros((n, STORE_LAYOUT.num_points, 3), np.float32))
        frames.append(np.zeros((n, data.cfg.height, data.cfg.width, 3), np.uint8))
        t += n
    for i, sp in enumerate(specs):
        spec = data.make_spec(sp.word_ids, signer, seed=int(rng.integers(2 ** 31)), split=sp.split, id=sp.id)
        kp, fr = data.keypoints(spec), data.render(spec)
        placed.append(PlacedSentence(spec.id, spec.text, (t + spec.spans[0][0]) / fps, (t + spec.spans[-1][1]) / fps,
                                     t / fps, (t + spec.num_frames) / fps))
        kps.append(kp)
        frames.append(fr)
        t += spec.num_frames
        if i + 1 < len(specs):
            n = int(round(rng.uniform(*pause_s) * fps))
            hold = np.repeat(kp[-1:], n, 0)
            jitter = rng.normal(0.0, 0.4, hold[..., :2].shape).astype(np.float32)
            hold[..., :2] += jitter * (hold[..., 2:] > 0)
            kps.append(hold)
            frames.append(np.repeat(fr[-1:], n, 0))
            t += n
    kp = np.concatenate(kps)
    fr = np.concatenate(frames)
    if len(kp) < WINDOW:
        pad = WINDOW - len(kp)
        kp = np.concatenate([kp, np.repeat(kp[-1:], pad, 0)])
        fr = np.concatenate([fr, np.repeat(fr[-1:], pad, 0)])
    starts = np.arange(0, len(kp) - WINDOW + 1, stride, dtype=np.int64)
    proxy = RGB_PROXIES[data.cfg.rgb_proxy]
    rgb = np.empty((len(starts), 1024), np.float32)
    for lo in range(0, len(starts), RGB_BLOCK):
        s = starts[lo:lo + RGB_BLOCK]
        rgb[lo:lo + len(s)] = proxy(fr[s[0]:s[-1] + WINDOW], s - s[0])
    meta = {"id": id, "kind": "recording", "source": "synthetic", "window": WINDOW, "window_stride": stride,
            "duration_s": len(kp) / fps, "n_frames": len(kp),
            "signer": data.signers[signer].id if specs else "", "sentences": len(specs)}
    return SyntheticRecording(VideoFeatures(kp, rgb, starts, fps, meta), placed, fr if keep_frames else None)
