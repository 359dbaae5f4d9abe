"""The synthetic benchmark's **proxy** RGB encoder (:mod:`seds.data.synthetic`): a fixed, deterministic,
*non-learned* stand-in for I3D window features — colour histograms + a random projection of the
low-resolution mean image + a weakly weighted random projection of the low-resolution temporal-difference
image. It carries signer appearance strongly and motion weakly; numbers obtained with it are
"synthetic, proxy-RGB", never comparable with I3D numbers. :class:`ProxyRGBExtractor` puts it behind the
RGB-extractor interface of :class:`seds.extract.pipeline.Extractor`.
"""
from __future__ import annotations

import cv2
import numpy as np

from seds.clips import WINDOW
from seds.data.features import RGB_DIM


class ProxyRGBError(ValueError):
    """Frames or window starts the proxy encoder cannot take."""

PROXY_SEED = 20240601
_HIST_BINS = 8                  # per colour channel → 512 bins
_LOWRES = 28                    # frames are area-resized to 28×28 first (an exact 4× block mean at 112)
_APP_RES, _MOT_RES = 7, 14      # mean-image (7×7×3) and motion (14×14 grey) resolutions
_MOTION_WEIGHT = 0.35
_PROJ_CACHE: list = []


def _proxy_projections() -> tuple[np.ndarray, np.ndarray]:
    """The encoder's fixed random projections (seed ``PROXY_SEED``, independent of any config)."""
    if not _PROJ_CACHE:
        rng = np.random.default_rng(PROXY_SEED)
        n_app, n_mot = _APP_RES * _APP_RES * 3, _MOT_RES * _MOT_RES
        _PROJ_CACHE.append((rng.normal(size=(n_app, 256)) / np.sqrt(n_app)).astype(np.float32))
        _PROJ_CACHE.append((rng.normal(size=(n_mot, 256)) / np.sqrt(n_mot)).astype(np.float32))
    return _PROJ_CACHE[0], _PROJ_CACHE[1]


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
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ProxyRGBError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    starts = np.asarray(clip_starts, dtype=np.int64)
    F = len(frames)
    if starts.ndim != 1 or len(starts) == 0 or starts.min() < 0 or starts.max() + window > F:
        raise ProxyRGBError(f"clip_starts must be a non-empty 1-D array of window starts within "
                             f"{F} frames (window {window}), got {starts.tolist()[:8]}")
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
    idx = starts[:, None] + np.arange(window)[None, :]
    win = np.zeros((len(starts), F), dtype=np.float32)
    np.put_along_axis(win, idx, 1.0 / window, axis=1)
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
