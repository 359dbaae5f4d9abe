"""The synthetic benchmark's **proxy** RGB encoders (:mod:`seds.synthetic.signing`): fixed, deterministic,
*non-learned* stand-ins for I3D window features (running I3D over thousands of synthetic videos is too slow
on a CPU). Numbers obtained with either are "synthetic, proxy-RGB", never comparable with I3D numbers.

* ``synthetic-proxy`` (:func:`rgb_proxy_features`, :class:`ProxyRGBExtractor`): colour histograms + a
  random projection of the low-resolution mean image + a weakly weighted random projection of the
  low-resolution temporal-difference image. It sees signer appearance strongly and motion weakly, and no
  hand shape at all (everything is seen at 28×28 or coarser). Measured: RGB-only SEDS learns little from it
  (``benchmarks/results/ablations/diagnosis_rgb.md``).
* ``synthetic-proxy-conv`` (:func:`rgb_conv_proxy_features`, :class:`ConvProxyRGBExtractor`): a frozen
  random conv stack over 112×112 frames and their frame differences (a cheap "flow" channel, as in
  two-stream I3D), pooled on a 4×4 grid. It can see where the hands are and how they move, and coarse hand
  shape at ~4 px patches; it cannot recognise anything (random weights, no training), and it still sees
  signer appearance (colour channels, weighted down). Its RGB/pose ratio is measured in the diagnosis file.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from seds.clips import WINDOW
from seds.data.features import RGB_DIM


class ProxyRGBError(ValueError):
    """Frames or window starts the proxy encoder cannot take."""

PROXY_SEED = 20240601
_HIST_BINS = 8                  # per colour channel → 512 bins
_LOWRES = 28                    # frames are area-resized to 28×28 first (an exact 4× block mean at 112)
_APP_RES, _MOT_RES = 7, 14      # mean-image (7×7×3) and motion (14×14 grey) resolutions
_MOTION_WEIGHT = 0.35
_CONV_RES = 112                 # the conv proxy's input resolution
_CONV_COLOUR, _CONV_MOTION = 0.25, 16.0   # input weights of the colour and the frame-difference channels
_PROJ_CACHE: list = []


def _proxy_projections() -> tuple[np.ndarray, np.ndarray]:
    """The encoder's fixed random projections (seed ``PROXY_SEED``, independent of any config)."""
    if not _PROJ_CACHE:
        rng = np.random.default_rng(PROXY_SEED)
        n_app, n_mot = _APP_RES * _APP_RES * 3, _MOT_RES * _MOT_RES
        _PROJ_CACHE.append((rng.normal(size=(n_app, 256)) / np.sqrt(n_app)).astype(np.float32))
        _PROJ_CACHE.append((rng.normal(size=(n_mot, 256)) / np.sqrt(n_mot)).astype(np.float32))
    return _PROJ_CACHE[0], _PROJ_CACHE[1]


def _checked(frames, clip_starts, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(F, H, W, 3)`` uint8 frames and int64 window starts, or a clear :class:`ProxyRGBError`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ProxyRGBError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    starts = np.asarray(clip_starts, dtype=np.int64)
    F = len(frames)
    if starts.ndim != 1 or len(starts) == 0 or starts.min() < 0 or starts.max() + window > F:
        raise ProxyRGBError(f"clip_starts must be a non-empty 1-D array of window starts within "
                             f"{F} frames (window {window}), got {starts.tolist()[:8]}")
    return frames, starts


def _window_means(starts: np.ndarray, n_frames: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices of every window ``(T, window)`` and the ``(T, F)`` matrix whose product with per-frame
    values gives the window means."""
    idx = starts[:, None] + np.arange(window)[None, :]
    win = np.zeros((len(starts), n_frames), dtype=np.float32)
    np.put_along_axis(win, idx, 1.0 / window, axis=1)
    return idx, win


def _resize_stack(frames: np.ndarray, size: int) -> np.ndarray:
    """Area-resize ``(F, H, W, C)`` frames to ``(F, size, size, C)`` in one OpenCV call: the frames
    are stacked vertically, and as every frame maps onto exactly ``size`` output rows, area
    averaging never mixes two frames."""
    F, H, W, C = frames.shape
    tall = np.ascontiguousarray(frames).reshape(F * H, W, C)
    return cv2.resize(tall, (size, F * size), interpolation=cv2.INTER_AREA).reshape(F, size, size, C)


def rgb_proxy_features(frames: np.ndarray, clip_starts: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """A cheap, deterministic **proxy** for I3D window features: ``(T, 1024)`` float32.

    Not a learned encoder and not I3D — see the module docstring; results with it are
    "synthetic, proxy-RGB". For each ``window``-frame window starting at ``clip_starts``:

    * 512-d: square-rooted joint RGB colour histogram (8 bins per channel) of the window's 28×28
      area-downsampled frames — dominated by background, clothing and skin colours;
    * 256-d: ``0.35 ×`` a fixed random projection of the window's mean 7×7 colour image (layout);
    * 256-d: ``0.35 ×`` a fixed random projection of the window's mean absolute temporal difference
      at 14×14 grey (motion; weak by design, as the paper argues RGB features are appearance-biased).

    The projections come from a fixed seed (``PROXY_SEED``), so features are comparable across runs
    and datasets. Window sums use cumulative sums: the cost is linear in frames, not windows × 16.
    """
    frames, starts = _checked(frames, clip_starts, window)
    F = len(frames)
    p_app, p_mot = _proxy_projections()
    small = _resize_stack(frames, _LOWRES)                                     # (F, 28, 28, 3) uint8
    q = (small >> 5).astype(np.uint16)                                        # 8 levels per channel
    code = (q[..., 0] << 6) | (q[..., 1] << 3) | q[..., 2]
    nb = _HIST_BINS ** 3
    code = code.reshape(F, -1).astype(np.int32) + (np.arange(F, dtype=np.int32) * nb)[:, None]
    hist = np.bincount(code.ravel(), minlength=F * nb).reshape(F, nb).astype(np.float32)
    smallf = small.astype(np.float32) * (1.0 / 255.0)
    app = _resize_stack(smallf, _APP_RES).reshape(F, -1) - 0.5                # (F, 147)
    grey = _resize_stack(smallf.mean(-1, keepdims=True), _MOT_RES).reshape(F, -1)   # (F, 196)
    diff = np.abs(np.diff(grey, axis=0, prepend=grey[:1]))                    # |g_t - g_(t-1)|
    # window means as one matrix product with a (T, F) window-membership matrix
    idx, win = _window_means(starts, F, window)
    inner = win.copy()                                # motion: differences inside the window only
    np.put_along_axis(inner, idx[:, :1], 0.0, axis=1)
    inner *= window / (window - 1)
    h = np.sqrt(win @ hist * (1.0 / (_LOWRES * _LOWRES)))
    a = 0.35 * ((win @ app) @ p_app)
    mo = ((inner @ diff) * 10.0) @ p_mot
    out = np.concatenate([h, a, _MOTION_WEIGHT * mo], axis=1)
    assert out.shape[1] == RGB_DIM
    return out


class ProxyRGBExtractor:
    """The synthetic benchmark's proxy RGB encoder (:func:`rgb_proxy_features`)
    behind the RGB-extractor interface of :class:`seds.extract.pipeline.Extractor`. Not I3D."""

    name = "synthetic-proxy"
    weights = "none (fixed colour histograms + random projections)"

    def features(self, frames, clip_starts, window: int = WINDOW) -> np.ndarray:
        return rgb_proxy_features(np.asarray(frames), np.asarray(clip_starts), window)


# --- the convolutional proxy ("synthetic-proxy-conv") ---------------------------------------------

CONV_PROXY_SEED = 20261130
_CONV_CACHE: list = []


class _ConvStack(torch.nn.Module):
    """A frozen, randomly initialised conv stack over frames (seed ``CONV_PROXY_SEED``, independent of any
    config). Input: 4 channels per frame (RGB − ½ and the grey temporal difference ×4, a cheap "flow"
    channel as in two-stream I3D). 4×4-patch conv (24 ch) → ReLU → the channels of frames t−1, t, t+1
    stacked (a 3-frame temporal kernel) → 3×3 conv, stride 2 (48 ch) → ReLU → 3×3 conv (64 ch) → ReLU →
    average over a 4×4 spatial grid: (F, 64·16 = 1024) per frame. He-scaled weights keep activation sizes
    through the stack. 2-D convolutions (the temporal kernel as stacked channels) run ~5× faster on a CPU
    than the equivalent 3-D ones."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(CONV_PROXY_SEED)
        self.c1 = torch.nn.Conv2d(4, 24, 4, stride=4)
        self.c2 = torch.nn.Conv2d(3 * 24, 48, 3, stride=2, padding=1)
        self.c3 = torch.nn.Conv2d(48, 64, 3, padding=1)
        for conv in (self.c1, self.c2, self.c3):
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / conv.weight[0].numel()) ** 0.5)
                conv.bias.zero_()
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (F, 4, H, W) → (F, 1024)."""
        h = torch.relu(self.c1(x))
        prev = torch.cat([h[:1], h[:-1]])
        nxt = torch.cat([h[1:], h[-1:]])
        h = torch.relu(self.c2(torch.cat([prev, h, nxt], 1)))
        h = torch.relu(self.c3(h))
        return torch.nn.functional.adaptive_avg_pool2d(h, 4).flatten(1)


def _conv_stack() -> _ConvStack:
    if not _CONV_CACHE:
        _CONV_CACHE.append(_ConvStack())
    return _CONV_CACHE[0]


def rgb_conv_proxy_features(frames: np.ndarray, clip_starts: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """The convolutional **proxy** for I3D window features: ``(T, 1024)`` float32 (not I3D, not learned).

    Frames are area-resized to 112×112 (hands, fingers and their motion stay visible: a hand is ~10 px),
    passed through :func:`_conv_stack` (64 channels, pooled on a 4×4 spatial grid per frame = 1024 values),
    and averaged over each ``window``-frame window. Deterministic, like :func:`rgb_proxy_features`.
    """
    frames, starts = _checked(frames, clip_starts, window)
    F = len(frames)
    small = _resize_stack(frames, _CONV_RES).astype(np.float32) * (1.0 / 255.0)       # (F, 112, 112, 3)
    grey = small.mean(-1)
    diff = np.diff(grey, axis=0, prepend=grey[:1]) * _CONV_MOTION
    x = np.concatenate([(small - 0.5) * _CONV_COLOUR, diff[..., None]], axis=-1)       # (F, H, W, 4)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))                # (F, 4, H, W)
    with torch.no_grad():
        per_frame = _conv_stack()(x).numpy()                                           # (F, 1024)
    _, win = _window_means(starts, F, window)
    out = (win @ per_frame).astype(np.float32)
    assert out.shape[1] == RGB_DIM
    return out


class ConvProxyRGBExtractor:
    """The convolutional proxy (:func:`rgb_conv_proxy_features`) behind the RGB-extractor interface. Not I3D."""

    name = "synthetic-proxy-conv"
    weights = f"none (frozen random 3-D conv stack, seed {CONV_PROXY_SEED})"

    def features(self, frames, clip_starts, window: int = WINDOW) -> np.ndarray:
        return rgb_conv_proxy_features(np.asarray(frames), np.asarray(clip_starts), window)
