"""Masked hand-pose modelling (:class:`HandMAE`), its masking, trivial baselines, training and
held-out evaluation (see :mod:`seds.experiments.pretrain_hands`)."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from seds.keypoints import N_HAND
from seds.model.hand_init import INFO, PretrainError, hand_stgcn, load_hand_state, load_into_stgcn
from seds.model.stgcn import STGCN, masked_batch_norm


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
