"""Self-supervised hand-pose pretraining for the pose encoder's hand ST-GCN (SignBERT-style stand-in).

SEDS initialises its hand ST-GCN from SignBERT (Hu et al., ICCV 2021; +7.5 R@1 pose-only, SEDS supp.
Tab. 3). Those weights are not obtainable here, so this module pretrains the *same* hand ST-GCN
(``seds.model.stgcn.STGCN`` on the 21-point hand graph, widths of the chosen model preset) by masked
hand-pose modelling on unlabeled keypoint sequences, in the spirit of SignBERT:

* **Data**: hand sequences (both hands, the left mirrored — exactly what the pose encoder sees after
  ``seds.keypoints.normalize_parts``) from feature stores (e.g. the synthetic benchmark's train split)
  and from real video folders through MediaPipe (:func:`extract_pose_folder`, e.g. How2Sign clips).
* **Masking** (:func:`mask_hands`): whole-hand frame masking in short runs (SignBERT's frame/clip
  masking) and random joint masking inside the remaining frames. A masked joint looks exactly like a
  detector miss (x = y = confidence = 0), so nothing new is introduced at fine-tuning time.
* **Model** (:class:`HandMAE`): the hand ST-GCN's last-layer per-joint features (the pose encoder
  averages exactly these over joints; its temporal convolutions see ±16 frames) and a light per-joint
  MLP decoder regress the 21 (x, y) coordinates. The loss is the mean L2 error over masked joints that
  were actually observed.
* **Evaluation** (:func:`evaluate_reconstruction`): masked-joint L2 error on held-out real clips
  against trivial baselines — per-joint linear interpolation in time, last-observation copy, and the
  training mean hand.
* **Use**: the encoder is saved as safetensors (``hand_stgcn.safetensors``) with its widths;
  :func:`load_pretrained_hands` copies it into ``SEDS.pose_encoder.hand`` (checking every key and shape).
  :func:`load_signbert` reads a user's SignBERT checkpoint from a local path (``torch.load`` with
  ``weights_only=True`` or safetensors) and maps its GCN keys with an explicit table.

CLI::

    python -m seds.pretrain_hands extract --videos ../shared/data/how2sign-mini --out runs/pose-h2s-mini
    python -m seds.pretrain_hands train --real runs/pose-h2s-mini --store runs/ablation-store \\
        --preset ablation --out runs/hands-ablation [--steps 3000]
    python -m seds.pretrain_hands evaluate --model runs/hands-ablation --real runs/pose-h2s-mini
    python -m seds.pretrain_hands signbert --checkpoint signbert.pth --preset paper --out runs/hands-signbert
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from seds.keypoints import KeypointLayout, N_HAND, normalize_parts, part_adjacency
from seds.model.stgcn import STGCN, masked_batch_norm

WEIGHTS = "hand_stgcn.safetensors"
INFO = "hand_stgcn.json"
FORMAT = "seds.hand_stgcn/1"


class PretrainError(ValueError):
    """Bad input to hand pretraining or loading (missing data, shape/key mismatch, ...)."""


# --- data -------------------------------------------------------------------------------------------

def hand_sequences(keypoints: np.ndarray, conf_threshold: float = 0.3, min_frames: int = 8,
                   min_present: float = 0.5) -> list[np.ndarray]:
    """Both hands of one video as normalized sequences ``(F, 21, 3)`` (x, y, confidence), the left
    mirrored, exactly as the pose encoder receives them. ``keypoints`` is raw ``(F, ≥49, 3)`` in the store
    layout (the first 49 points are the SEDS layout). Hands visible in fewer than ``min_present`` of the
    frames, or videos shorter than ``min_frames``, are skipped."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1] < 49 or kp.shape[2] != 3:
        raise PretrainError(f"keypoints must be (frames, ≥49, 3) in the store layout, got {kp.shape}")
    if len(kp) < min_frames:
        return []
    norm = normalize_parts(kp[:, :49], KeypointLayout(), conf_threshold=conf_threshold)
    sl = KeypointLayout().part_slices()
    out = []
    for part in ("left_hand", "right_hand"):
        h = norm[:, sl[part]]
        if (h[..., 2] > 0).any(1).mean() >= min_present:
            out.append(np.ascontiguousarray(h))
    return out


def sequences_from_store(store: str | Path, split: str | None = "train", limit: int | None = None) -> list[np.ndarray]:
    """Hand sequences of every video of a feature store split (labels are not used)."""
    from seds.data.store import FeatureStore

    root = Path(store)
    fs = FeatureStore(root)
    man = root / f"manifest_{split}.csv" if split else None
    if man is not None and man.exists():
        with open(man, newline="", encoding="utf-8") as f:
            ids = [r["id"] for r in csv.DictReader(f)]
    else:
        ids = fs.ids()
    out = []
    for vid in ids[:limit]:
        out += hand_sequences(fs[vid].keypoints)
    return out


def extract_pose_folder(videos: str | Path, out: str | Path, fps: float = 12.0, max_seconds: float = 6.0,
                        limit: int | None = None, progress: bool = True) -> list[dict]:
    """MediaPipe keypoints (store layout, raw pixels) of the videos of a folder — pose only, no RGB
    features. ``videos``: a folder with ``manifest.csv`` (``id, file, video_id, ...``; How2Sign-mini)
    or just video files. Writes ``<out>/<id>.npy`` + ``<out>/index.csv``; resumable (existing clips are
    skipped). Each clip is decoded at ``fps`` and cut after ``max_seconds``."""
    from seds.extract.pose import make_pose_estimator
    from seds.extract.video import read_video

    videos, out = Path(videos), Path(out)
    if not videos.is_dir():
        raise PretrainError(f"video folder {videos} not found")
    man = videos / "manifest.csv"
    if man.exists():
        with open(man, newline="", encoding="utf-8") as f:
            rows = [{"id": r["id"], "file": str(videos / r["file"]), "group": r.get("video_id") or r["id"]}
                    for r in csv.DictReader(f)]
    else:
        files = sorted(p for p in videos.rglob("*") if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm"))
        rows = [{"id": p.stem, "file": str(p), "group": p.stem} for p in files]
    if not rows:
        raise PretrainError(f"no videos in {videos}")
    rows = rows[:limit]
    out.mkdir(parents=True, exist_ok=True)
    est = None
    index = []
    t0 = time.time()
    for i, r in enumerate(rows):
        dst = out / f"{r['id']}.npy"
        if not dst.exists():
            est = est or make_pose_estimator("mediapipe")
            try:
                v = read_video(r["file"], fps=fps, max_seconds=max_seconds, trim_long=True)
            except Exception as e:          # a broken clip is skipped, never stops the run
                print(f"skip {r['id']}: {e}", file=sys.stderr)
                continue
            kp = est.store_keypoints(v.frames)
            np.save(dst.with_suffix(".tmp.npy"), kp)
            dst.with_suffix(".tmp.npy").replace(dst)
            if progress:
                print(f"[{i + 1}/{len(rows)}] {r['id']}: {len(kp)} frames ({time.time() - t0:.0f}s)", flush=True)
        index.append({"id": r["id"], "group": r["group"], "file": dst.name})
    with open(out / "index.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "group", "file"])
        w.writeheader()
        w.writerows(index)
    (out / "extract_info.json").write_text(json.dumps({"source": str(videos), "fps": fps,
                                                       "max_seconds": max_seconds, "pose": "mediapipe",
                                                       "clips": len(index)}, indent=1))
    if est is not None:
        est.close()
    return index


def real_split(pose_dir: str | Path, held_out: float = 0.2, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split extracted real clips into (pretraining, held-out) by source video (signer), so no held-out
    clip shares a source video with a pretraining clip."""
    pose_dir = Path(pose_dir)
    idx = pose_dir / "index.csv"
    if not idx.exists():
        raise PretrainError(f"{idx} not found: run `python -m seds.pretrain_hands extract` first")
    with open(idx, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    groups = sorted({r["group"] for r in rows})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(groups, max(1, int(round(held_out * len(groups)))), replace=False).tolist())
    return [r for r in rows if r["group"] not in held], [r for r in rows if r["group"] in held]


def sequences_from_rows(pose_dir: str | Path, rows: list[dict]) -> list[np.ndarray]:
    out = []
    for r in rows:
        out += hand_sequences(np.load(Path(pose_dir) / r["file"]))
    return out


# --- masking ------------------------------------------------------------------------------------------

@dataclass
class MaskConfig:
    """SignBERT-style masking: whole-hand frames in runs, plus single joints."""
    frame_rate: float = 0.25        # expected fraction of frames whose hand is masked
    run_length: float = 3.0         # mean length of a masked frame run
    joint_rate: float = 0.15        # fraction of joints masked in the other frames

    def __post_init__(self):
        if not (0 <= self.frame_rate < 1 and 0 <= self.joint_rate < 1 and self.run_length >= 1):
            raise PretrainError(f"bad masking settings {self}")


def mask_hands(x: torch.Tensor, valid: torch.Tensor, cfg: MaskConfig, gen: torch.Generator) -> torch.Tensor:
    """Boolean (N, F, 21) mask of the joints to hide: runs of whole frames (a run starts at a frame with
    probability frame_rate / run_length and lasts run_length frames on average) and random joints
    (joint_rate) elsewhere. ``valid`` (N, F) excludes padding."""
    n, f, v = x.shape[:3]
    p_start = cfg.frame_rate / cfg.run_length
    starts = torch.rand(n, f, generator=gen) < p_start
    if cfg.run_length > 1:      # 1 + Geometric(1 / run_length) by inversion, drawn from ``gen`` (deterministic)
        u = torch.rand(n, f, generator=gen, dtype=torch.float64).clamp(min=1e-12)
        lengths = 1 + torch.floor(torch.log(u) / math.log(1.0 - 1.0 / cfg.run_length)).long()
    else:
        lengths = torch.ones(n, f, dtype=torch.long)
    # frame t is masked if some run starting at s ≤ t has s + length > t: running max of (s + len) · start
    end = torch.where(starts, torch.arange(f)[None, :] + lengths, torch.zeros_like(lengths))
    frames = torch.cummax(end, dim=1).values > torch.arange(f)[None, :]
    joints = torch.rand(n, f, v, generator=gen) < cfg.joint_rate
    return (frames[..., None] | joints) & valid[..., None]


# --- model --------------------------------------------------------------------------------------------

def hand_stgcn(widths, temporal_kernel: int = 9, in_channels: int = 3, dropout: float = 0.0) -> STGCN:
    """The pose encoder's hand ST-GCN (same construction as ``seds.model.pose_encoder.PoseEncoder``)."""
    return STGCN(torch.from_numpy(part_adjacency("hand")), in_channels, tuple(widths), temporal_kernel, dropout)


def joint_features(stgcn: STGCN, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``STGCN.forward`` without its final mean over joints: x (N, F, V, C), mask (N, F) →
    (N, F, V, C_out). ``joint_features(...).mean(2) == stgcn(x, mask)`` (tested), so pretraining these
    per-joint features trains exactly the layers the pose encoder uses."""
    n, f, v, c = x.shape
    x = x * mask[:, :, None, None].to(x.dtype)
    flat = x.permute(0, 2, 3, 1).reshape(n, v * c, f)
    flat = masked_batch_norm(flat, mask, stgcn.data_bn, (0, 2), (n, 1, f))
    h = flat.reshape(n, v, c, f).permute(0, 2, 3, 1) * mask[:, None, :, None].to(x.dtype)
    for layer in stgcn.layers:
        h = layer(h, mask)
    return h.permute(0, 2, 3, 1)


class HandMAE(nn.Module):
    """Hand ST-GCN encoder + light per-joint decoder (MLP on each joint's last-layer feature plus a
    learned joint embedding) regressing the 21 (x, y) coordinates."""

    def __init__(self, widths=(128, 128, 256, 512), temporal_kernel: int = 9, hidden: int = 256):
        super().__init__()
        self.encoder = hand_stgcn(widths, temporal_kernel)
        c = self.encoder.out_dim
        self.joint_embed = nn.Parameter(torch.randn(N_HAND, c) * 0.02)
        self.decoder = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, hidden), nn.GELU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (N, F, 21, 3) with masked joints zeroed, valid (N, F) → (N, F, 21, 2) coordinates."""
        return self.decoder(joint_features(self.encoder, x, valid) + self.joint_embed)


def masked_l2(pred: torch.Tensor, target: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance over the selected joints (``sel`` (N, F, 21) bool)."""
    d = (pred - target).norm(dim=-1)
    return (d * sel).sum() / sel.sum().clamp(min=1)


def batch_windows(seqs: list[np.ndarray], length: int, batch: int, gen: np.random.Generator):
    """A batch of random windows of ``length`` frames (shorter sequences are zero-padded)."""
    x = np.zeros((batch, length, N_HAND, 3), np.float32)
    valid = np.zeros((batch, length), bool)
    for b, i in enumerate(gen.integers(0, len(seqs), batch)):
        s = seqs[i]
        start = int(gen.integers(0, max(1, len(s) - length + 1)))
        w = s[start:start + length]
        x[b, :len(w)] = w
        valid[b, :len(w)] = True
    return torch.from_numpy(x), torch.from_numpy(valid)


def apply_mask(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(m[..., None], 0.0)


# --- trivial baselines -------------------------------------------------------------------------------

def _neighbour_index(obs: np.ndarray, forward: bool) -> np.ndarray:
    """For each frame, the index of the nearest observed frame at or before (forward=True) / at or after
    it, per (sequence, joint); -1 / F where none. ``obs`` (N, F, V) bool."""
    n, f, v = obs.shape
    t = np.arange(f)[None, :, None]
    if forward:
        idx = np.where(obs, t, -1)
        return np.maximum.accumulate(idx, axis=1)
    idx = np.where(obs, t, f)
    return np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]


def interpolate_baseline(x: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Per-joint linear interpolation in time between the nearest observed frames (nearest observation
    at the ends; 0 where a joint is never observed). x (N, F, V, 2), obs (N, F, V) bool."""
    n, f, v = obs.shape
    prev = _neighbour_index(obs, True)
    nxt = _neighbour_index(obs, False)
    has_p, has_n = prev >= 0, nxt < f
    pi, ni = np.clip(prev, 0, f - 1), np.clip(nxt, 0, f - 1)
    take = lambda idx: np.take_along_axis(x, idx[..., None], axis=1)
    xp, xn = take(pi), take(ni)
    t = np.arange(f)[None, :, None]
    w = np.where(has_p & has_n & (nxt > prev), (t - prev) / np.maximum(nxt - prev, 1), 0.0)[..., None]
    both = xp + w * (xn - xp)
    out = np.where((has_p & has_n)[..., None], both, np.where(has_p[..., None], xp, xn))
    return np.where((has_p | has_n)[..., None], out, 0.0)


def last_copy_baseline(x: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """The joint's last observed position (the next one when there is none before; 0 if never)."""
    f = obs.shape[1]
    prev = _neighbour_index(obs, True)
    nxt = _neighbour_index(obs, False)
    take = lambda idx: np.take_along_axis(x, np.clip(idx, 0, f - 1)[..., None], axis=1)
    out = np.where((prev >= 0)[..., None], take(prev), take(nxt))
    return np.where(((prev >= 0) | (nxt < f))[..., None], out, 0.0)


# --- training and evaluation -------------------------------------------------------------------------

@dataclass
class PretrainConfig:
    widths: tuple[int, ...] = (8, 8, 16, 32)
    temporal_kernel: int = 9
    decoder_hidden: int = 128
    window: int = 48                # frames per training window
    batch_size: int = 64
    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    eval_every: int = 250


@torch.no_grad()
def evaluate_reconstruction(model: HandMAE | None, seqs: list[np.ndarray], mask_cfg: MaskConfig,
                            mean_hand: np.ndarray | None = None, seed: int = 1234, window: int = 48) -> dict:
    """Masked-joint L2 error (normalized hand units: half the hand box side) on ``seqs``, with a fixed
    masking (``seed``), for the model and the trivial baselines; split into frame-masked and
    joint-masked positions. Only joints observed before masking are scored."""
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    for s in seqs:                       # cut every sequence into consecutive windows (deterministic)
        for a in range(0, len(s), window):
            if len(s) - a >= 8:
                chunks.append(s[a:a + window])
    x = np.zeros((len(chunks), window, N_HAND, 3), np.float32)
    valid = np.zeros((len(chunks), window), bool)
    for i, c in enumerate(chunks):
        x[i, :len(c)] = c
        valid[i, :len(c)] = True
    xt, vt = torch.from_numpy(x), torch.from_numpy(valid)
    m = mask_hands(xt, vt, mask_cfg, gen)
    observed = xt[..., 2] > 0
    target_sel = m & observed
    whole = m.all(-1, keepdim=True).expand_as(m) & target_sel
    partial = target_sel & ~whole
    visible = observed & ~m
    preds = {"interpolation": torch.from_numpy(interpolate_baseline(x[..., :2], visible.numpy())),
             "last-frame copy": torch.from_numpy(last_copy_baseline(x[..., :2], visible.numpy()))}
    if mean_hand is not None:
        preds["mean hand"] = torch.from_numpy(np.broadcast_to(mean_hand, x[..., :2].shape).copy())
    if model is not None:
        model.eval()
        outs = [model(apply_mask(xt[i:i + 256], m[i:i + 256]), vt[i:i + 256]) for i in range(0, len(xt), 256)]
        preds["hand ST-GCN (masked pretraining)"] = torch.cat(outs)
    res = {"n_windows": len(chunks), "n_masked_joints": int(target_sel.sum()),
           "n_frame_masked": int(whole.sum()), "n_joint_masked": int(partial.sum())}
    for name, p in preds.items():
        res[name] = {"all": float(masked_l2(p, xt[..., :2], target_sel)),
                     "frame-masked": float(masked_l2(p, xt[..., :2], whole)),
                     "joint-masked": float(masked_l2(p, xt[..., :2], partial))}
    return res


def pretrain(train_seqs: list[np.ndarray], cfg: PretrainConfig, mask_cfg: MaskConfig = MaskConfig(),
             val_seqs: list[np.ndarray] | None = None, progress: bool = True) -> tuple[HandMAE, list[dict]]:
    """Masked hand-pose modelling on ``train_seqs``; returns the model and a history of losses (and
    held-out errors every ``eval_every`` steps when ``val_seqs`` is given)."""
    if not train_seqs:
        raise PretrainError("no hand sequences to pretrain on")
    torch.manual_seed(cfg.seed)
    model = HandMAE(cfg.widths, cfg.temporal_kernel, cfg.decoder_hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    history, run = [], []
    t0 = time.time()
    for step in range(1, cfg.steps + 1):
        model.train()
        x, valid = batch_windows(train_seqs, cfg.window, cfg.batch_size, rng)
        m = mask_hands(x, valid, mask_cfg, gen)
        sel = m & (x[..., 2] > 0)
        loss = masked_l2(model(apply_mask(x, m), valid), x[..., :2], sel)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run.append(float(loss.detach()))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            rec = {"step": step, "loss": float(np.mean(run)), "seconds": round(time.time() - t0, 1)}
            run = []
            if val_seqs:
                rec["heldout_l2"] = evaluate_reconstruction(model, val_seqs, mask_cfg, window=cfg.window)[
                    "hand ST-GCN (masked pretraining)"]["all"]
            history.append(rec)
            if progress:
                print(json.dumps(rec), flush=True)
    return model, history


def mean_hand(seqs: list[np.ndarray]) -> np.ndarray:
    """Per-joint mean (x, y) over observed joints of ``seqs`` → (21, 2)."""
    s = np.zeros((N_HAND, 2))
    c = np.zeros((N_HAND, 1))
    for q in seqs:
        o = q[..., 2:3] > 0
        s += (q[..., :2] * o).sum(0)
        c += o.sum(0)
    return (s / np.maximum(c, 1)).astype(np.float32)


# --- saving / loading -------------------------------------------------------------------------------

def save_hand_encoder(folder: str | Path, encoder: STGCN, info: dict) -> Path:
    """``<folder>/hand_stgcn.safetensors`` (the STGCN state dict) + ``hand_stgcn.json`` (widths, ...)."""
    from seds.checkpoint import atomic_save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    widths = [layer.tcn.out_channels for layer in encoder.layers]
    meta = {"format": FORMAT, "widths": json.dumps(widths),
            "temporal_kernel": str(encoder.layers[0].tcn.kernel_size[0])}
    atomic_save_file({k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()},
                     folder / WEIGHTS, meta)
    (folder / INFO).write_text(json.dumps({"format": FORMAT, "widths": widths,
                                           "temporal_kernel": int(meta["temporal_kernel"]), **info}, indent=1))
    return folder / WEIGHTS


def _weights_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS
    if not p.is_file():
        raise PretrainError(f"pretrained hand weights {p} not found (a folder with {WEIGHTS} or the file)")
    return p


def load_hand_state(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    p = _weights_path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            if (f.metadata() or {}).get("format") != FORMAT:
                raise PretrainError(f"{p} is not a SEDS hand ST-GCN file (metadata format "
                                    f"{(f.metadata() or {}).get('format')!r}); SignBERT checkpoints go "
                                    "through `python -m seds.pretrain_hands signbert` first")
            return {k: f.get_tensor(k) for k in f.keys()}
    except PretrainError:
        raise
    except Exception as e:
        raise PretrainError(f"{p}: unreadable safetensors file ({e})") from None


def load_into_stgcn(encoder: STGCN, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Copy ``state`` into ``encoder`` after checking that keys and shapes match exactly."""
    want = encoder.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in want.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        lines = [f"pretrained hand ST-GCN {source} does not fit the model's hand ST-GCN "
                 "(pretrain with the same model.pose.widths / temporal_kernel):"]
        lines += [f"  missing: {k}" for k in missing[:10]] + [f"  unexpected: {k}" for k in extra[:10]]
        lines += [f"  shape: {s}" for s in shapes[:10]]
        raise PretrainError("\n".join(lines))
    encoder.load_state_dict({k: v.to(want[k].dtype) for k, v in state.items()})


def load_pretrained_hands(model: nn.Module, path: str | Path) -> nn.Module:
    """Initialise the hand ST-GCN of a SEDS model (``model.pose_encoder.hand``) — or of a bare
    ``PoseEncoder`` / ``STGCN`` — from ``path`` (folder or ``hand_stgcn.safetensors``)."""
    target = model
    if hasattr(target, "pose_encoder"):
        target = target.pose_encoder
    if hasattr(target, "hand") and isinstance(target.hand, STGCN):
        target = target.hand
    if not isinstance(target, STGCN):
        raise PretrainError(f"{type(model).__name__} has no hand ST-GCN (a pose stream is needed)")
    load_into_stgcn(target, load_hand_state(path), str(path))
    return model


# --- SignBERT checkpoints ----------------------------------------------------------------------------
# SignBERT's hand-pose encoder is a 4-block ST-GCN over the 21-point hand graph (Yan et al. layout):
# per block `gcn.conv` (1×1 conv, possibly with K spatial partitions stacked along the output channels),
# `tcn.0` batch norm, `tcn.2` temporal conv, `tcn.3` batch norm, `residual.0/1` conv + bn, and the
# input `data_bn`. The table maps those names (after stripping a module prefix) to our STGCN's; a
# K-partition gcn weight (K·C_out rows) is reduced to our single normalized-adjacency conv by summing
# the partitions (exact when the partitions' adjacencies sum to ours, an approximation otherwise — we
# say so). Prefixes tried: "", "module.", "encoder.", "gcn_encoder.", "hand_encoder.", "st_gcn.".

SIGNBERT_BLOCK_MAP = {
    "gcn.conv.weight": "gcn.weight", "gcn.conv.bias": "gcn.bias",
    "tcn.0.weight": "bn1.weight", "tcn.0.bias": "bn1.bias",
    "tcn.0.running_mean": "bn1.running_mean", "tcn.0.running_var": "bn1.running_var",
    "tcn.2.weight": "tcn.weight", "tcn.2.bias": "tcn.bias",
    "tcn.3.weight": "bn2.weight", "tcn.3.bias": "bn2.bias",
    "tcn.3.running_mean": "bn2.running_mean", "tcn.3.running_var": "bn2.running_var",
    "residual.0.weight": "residual.weight", "residual.0.bias": "residual.bias",
    "residual.1.weight": "bn_res.weight", "residual.1.bias": "bn_res.bias",
    "residual.1.running_mean": "bn_res.running_mean", "residual.1.running_var": "bn_res.running_var",
}
SIGNBERT_TOP_MAP = {"data_bn.weight": "data_bn.weight", "data_bn.bias": "data_bn.bias",
                    "data_bn.running_mean": "data_bn.running_mean", "data_bn.running_var": "data_bn.running_var"}
SIGNBERT_BLOCK_PREFIXES = ("st_gcn_networks.", "layers.", "blocks.")
SIGNBERT_PREFIXES = ("", "module.", "encoder.", "gcn_encoder.", "hand_encoder.", "st_gcn.", "model.")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file loaded with ``weights_only=True`` (no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise PretrainError(f"checkpoint {p} not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(p))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PretrainError(f"{p}: cannot be read with torch.load(weights_only=True) ({str(e)[:200]})") from None
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise PretrainError(f"{p}: not a state dict of tensors")
    return obj


def map_signbert_state(state: dict[str, torch.Tensor], n_layers: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """SignBERT GCN keys → our STGCN keys with the explicit tables above. Returns (state, notes)."""
    notes: list[str] = []
    for prefix in SIGNBERT_PREFIXES:
        for bp in SIGNBERT_BLOCK_PREFIXES:
            if f"{prefix}{bp}0.tcn.2.weight" in state:
                break
        else:
            continue
        break
    else:
        raise PretrainError("no SignBERT ST-GCN blocks found (looked for '<prefix>st_gcn_networks.0.tcn.2.weight' "
                            f"with prefixes {SIGNBERT_PREFIXES}); keys start with "
                            f"{sorted({k.split('.')[0] for k in state})[:8]}")
    out = {}
    for src, dst in SIGNBERT_TOP_MAP.items():
        if f"{prefix}{src}" in state:
            out[dst] = state[f"{prefix}{src}"]
    for i in range(n_layers):
        for src, dst in SIGNBERT_BLOCK_MAP.items():
            k = f"{prefix}{bp}{i}.{src}"
            if k in state:
                out[f"layers.{i}.{dst}"] = state[k]
    for i in range(n_layers):
        w = out.get(f"layers.{i}.gcn.weight")
        t = out.get(f"layers.{i}.tcn.weight")
        if w is not None and t is not None and w.shape[0] != t.shape[0]:
            k = w.shape[0] // t.shape[0]
            if k * t.shape[0] != w.shape[0]:
                raise PretrainError(f"block {i}: gcn weight {tuple(w.shape)} is not K × {t.shape[0]} output channels")
            out[f"layers.{i}.gcn.weight"] = w.view(k, t.shape[0], *w.shape[1:]).sum(0)
            b = out.get(f"layers.{i}.gcn.bias")
            if b is not None:
                out[f"layers.{i}.gcn.bias"] = b.view(k, t.shape[0]).sum(0)
            notes.append(f"block {i}: {k} spatial partitions summed into one graph convolution (approximation)")
    return out, notes


def load_signbert(path: str | Path, widths, temporal_kernel: int = 9) -> tuple[STGCN, list[str]]:
    """A hand ST-GCN of ``widths`` initialised from a local SignBERT checkpoint (every key and shape
    asserted; ``num_batches_tracked`` counters are filled in when absent)."""
    enc = hand_stgcn(widths, temporal_kernel)
    state, notes = map_signbert_state(read_checkpoint(path), len(enc.layers))
    for k, v in enc.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v.clone()
    load_into_stgcn(enc, state, str(path))
    return enc, notes


# --- CLI ---------------------------------------------------------------------------------------------

def _widths_of(preset: str) -> tuple[tuple[int, ...], int]:
    from seds.config import model_config
    m = model_config(preset)
    return tuple(m.pose.widths), m.pose.temporal_kernel


def _table(ev: dict) -> str:
    names = [k for k in ev if isinstance(ev[k], dict)]
    lines = ["| predictor | all masked joints | frame-masked | joint-masked |", "|---|---:|---:|---:|"]
    for n in names:
        r = ev[n]
        lines.append(f"| {n} | {r['all']:.4f} | {r['frame-masked']:.4f} | {r['joint-masked']:.4f} |")
    return "\n".join(lines)


def load_hand_mae(folder: str | Path) -> tuple[HandMAE, dict]:
    """The pretrained encoder + decoder written by ``train`` (``hand_stgcn.*`` + ``decoder.pt``)."""
    folder = Path(folder)
    info = json.loads((folder / INFO).read_text())
    hidden = info.get("config", {}).get("decoder_hidden", 128)
    model = HandMAE(tuple(info["widths"]), info["temporal_kernel"], hidden)
    load_into_stgcn(model.encoder, load_hand_state(folder), str(folder))
    dec = torch.load(folder / "decoder.pt", map_location="cpu", weights_only=True)
    model.decoder.load_state_dict(dec["decoder"])
    with torch.no_grad():
        model.joint_embed.copy_(dec["joint_embed"])
    return model.eval(), info


def real_data(real: str | Path, held_out: float, seed: int) -> tuple[list, list, dict]:
    """(pretraining sequences, held-out sequences, source summary) of an ``extract`` folder."""
    tr, ho = real_split(real, held_out, seed)
    train, held = sequences_from_rows(real, tr), sequences_from_rows(real, ho)
    return train, held, {"folder": str(real), "pretrain_clips": len(tr), "heldout_clips": len(ho),
                         "pretrain_hand_sequences": len(train), "heldout_hand_sequences": len(held),
                         "held_out_fraction": held_out, "split_seed": seed}


def write_report(path: str | Path, command: str, real: dict, ev: dict, mcfg: MaskConfig, window: int,
                 encoder: str) -> None:
    md = ["# Masked hand-pose pretraining: reconstruction on held-out real clips", "",
          f"Command: `{command}`", "",
          f"Held-out: {real['heldout_clips']} How2Sign-mini clips ({real['heldout_hand_sequences']} hand "
          f"sequences; {ev['n_windows']} windows of {window} frames; {ev['n_masked_joints']} masked observed joints, "
          f"{ev['n_frame_masked']} in whole-frame masks, {ev['n_joint_masked']} single joints) from source videos "
          f"not used for pretraining; pretraining saw {real['pretrain_clips']} other real clips. MediaPipe "
          "Holistic keypoints at 12 fps, first 6 s of each clip. Error = mean L2 distance of the masked joints in "
          "normalized hand coordinates (the hand's box half-side = 1, as the pose encoder sees them). Masking "
          f"(fixed seed): {asdict(mcfg)}. Mean hand = per-joint mean over the real pretraining clips.", "",
          f"Encoder: {encoder}", "", _table(ev), ""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(md))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seds.pretrain_hands", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="MediaPipe keypoints of a video folder (pose only)")
    e.add_argument("--videos", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--fps", type=float, default=12.0)
    e.add_argument("--max-seconds", type=float, default=6.0)
    e.add_argument("--limit", type=int, default=None)
    t = sub.add_parser("train", help="masked hand-pose pretraining + held-out evaluation")
    t.add_argument("--real", default=None, help="folder written by `extract` (real clips)")
    t.add_argument("--store", action="append", default=[], help="feature store(s) (train split is used)")
    t.add_argument("--preset", default="ablation", help="model preset whose pose widths to use")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--window", type=int, default=48)
    t.add_argument("--results", default=None, help="also write the evaluation table here (markdown)")
    v = sub.add_parser("evaluate", help="held-out reconstruction error of a pretrained model vs trivial baselines")
    v.add_argument("--model", required=True, help="folder written by `train`")
    v.add_argument("--real", required=True)
    v.add_argument("--results", default=None)
    for q in (t, v):
        q.add_argument("--held-out", type=float, default=0.2, help="fraction of real source videos held out")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("signbert", help="convert a local SignBERT checkpoint into a hand_stgcn.safetensors")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--preset", default="paper")
    s.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    command = "python -m seds.pretrain_hands " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                    else sys.argv[1:]))
    try:
        if args.cmd == "extract":
            extract_pose_folder(args.videos, args.out, args.fps, args.max_seconds, args.limit)
            return 0
        if args.cmd == "signbert":
            widths, tk = _widths_of(args.preset)
            enc, notes = load_signbert(args.checkpoint, widths, tk)
            save_hand_encoder(args.out, enc, {"source": f"SignBERT checkpoint {args.checkpoint}", "notes": notes})
            print(f"wrote {Path(args.out) / WEIGHTS}" + "".join(f"\nnote: {n}" for n in notes))
            return 0
        torch.set_num_threads(max(1, args.threads))
        mcfg = MaskConfig()
        if args.cmd == "evaluate":
            model, info = load_hand_mae(args.model)
            real_train, held, real = real_data(args.real, args.held_out, args.seed)
            window = info.get("config", {}).get("window", 48)
            ev = evaluate_reconstruction(model, held, mcfg, mean_hand(real_train), window=window)
            print(_table(ev))
            if args.results:
                c = info.get("config", {})
                write_report(args.results, command, real, ev, mcfg, window,
                             f"hand ST-GCN widths {info['widths']} from `{args.model}` ({c.get('steps')} steps × "
                             f"batch {c.get('batch_size')}; sources {json.dumps(info.get('sources', {}))})")
            return 0
        widths, tk = _widths_of(args.preset)
        train_seqs, held_seqs, real_train, sources = [], [], [], {}
        if args.real:
            real_train, held_seqs, sources["real"] = real_data(args.real, args.held_out, args.seed)
            train_seqs += real_train
        for st in args.store:
            seqs = sequences_from_store(st, "train")
            train_seqs += seqs
            sources[f"store:{st}"] = {"hand_sequences": len(seqs)}
        cfg = PretrainConfig(widths=widths, temporal_kernel=tk, window=args.window, batch_size=args.batch_size,
                             steps=args.steps, seed=args.seed)
        print(f"pretraining on {len(train_seqs)} hand sequences ({sources}); held out: {len(held_seqs)}", flush=True)
        model, history = pretrain(train_seqs, cfg, mcfg, held_seqs or None)
        info = {"config": asdict(cfg), "mask": asdict(mcfg), "sources": sources, "history": history,
                "command": command}
        if held_seqs:
            ev = evaluate_reconstruction(model, held_seqs, mcfg, mean_hand(real_train), window=cfg.window)
            info["heldout_eval"] = ev
            print(_table(ev))
        save_hand_encoder(args.out, model.encoder, info)
        torch.save({"decoder": model.decoder.state_dict(), "joint_embed": model.joint_embed.detach()},
                   Path(args.out) / "decoder.pt")
        if args.results and held_seqs:
            write_report(args.results, command, sources["real"], ev, mcfg, cfg.window,
                         f"hand ST-GCN widths {list(widths)}, {cfg.steps} steps × batch {cfg.batch_size}; "
                         f"sources {json.dumps(sources)}")
        return 0
    except PretrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
