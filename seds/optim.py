"""Optimiser, learning-rate schedule and gradient handling of ``python -m seds.train``.

Two recipes, chosen by ``train.optimizer``:

* ``adam`` (the ``paper`` variant's recipe): ``torch.optim.Adam`` over the model's two lr groups
  (:meth:`seds.model.SEDS.param_groups`) plus the temperature, ``train.weight_decay`` as L2, a cosine schedule
  with ``train.warmup_epochs`` of linear warm-up (:func:`cosine_with_warmup`) and global-norm clipping.
* ``bertadam`` (the authors' recipe, longtaojiang/SEDS @ 434e3f7: ``prep_optimizer`` / ``train_epoch`` of
  ``main_task_retrieval.py``, ``BertAdam`` of ``modules/optimization.py``; re-implemented here from those facts):

  - :class:`BertAdam`: Adam **without bias correction**; ``update = m / (sqrt(v) + eps) + wd · p`` (decoupled
    weight decay, applied through the lr), ``p -= lr · update``; β1 0.9, β2 0.98, ε 1e-6; **each parameter's
    gradient is clipped to norm ``param_clip`` (1.0) on its own** inside the step (``clip_grad_norm_(p)``), after
    the global clipping of the whole model to ``grad_clip`` (1.0) that ``train_epoch`` does first.
  - :func:`official_param_groups`: six groups, as theirs: {CLIP towers, SignBERT, everything else} ×
    {weight decay 0.001, none}. CLIP towers = their ``clip.*`` and ``clip_rgb.*`` (our text tower, pose and RGB
    token towers and the logit scale) at ``lr_transformer`` (``--lr 1e-5 × coef_lr 1``); SignBERT = our pose
    encoder at ``lr_pose`` (``--sign_lr 1e-4``); everything else (CGAF) at BertAdam's default lr, which they set to
    ``--sign_lr`` (= ``lr_pose``). No weight decay on a parameter whose **name contains "bias"**: their list
    also names ``LayerNorm.weight``, but no module of their model is called ``LayerNorm``, so LayerNorm and
    BatchNorm weights, embeddings, ``proj`` and the logit scale are decayed — as here.
  - :func:`warmup_cosine`: ``lr(s) = lr · (x/w if x < w else ½(1 + cos πx))`` with ``x = s / total`` and
    ``s`` the number of steps taken before (so the first step has lr 0), ``w`` = ``train.warmup_proportion``
    (0.1); the cosine is not shifted by the warm-up (a small jump at ``x = w``, as theirs).
  - after every step the logit scale is clamped to ≤ ln(``loss.max_logit_scale``) (their CLIP clamp).
  - ``train.grad_scale: ddp_average``: their features are gathered with an ``AllGather`` whose backward returns
    only the local rows, and DDP then **averages** over the GPUs, so the gradient their optimiser sees is the
    gradient of the global loss divided by the number of GPUs (8) — for every parameter but the logit scale,
    which acts after the gather (each GPU has its full gradient; the average keeps it). :func:`apply_gradients`
    divides by the number of shards (GPUs here, or gradient-cache chunks) to match; it matters through both
    clippings and ε.

What cannot be exact: the CLIP towers' fp16 weights (we train fp32 or bf16 autocast), and a parameter that gets
no gradient in a step (their per-parameter step counter then lags; every parameter of our model gets one).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn

#: our parameter-name prefixes (``model.<name>`` / ``loss.<name>``) of the authors' ``clip.*``/``clip_rgb.*``
#: (CLIP towers and logit scale) and ``signbert.*`` (pose encoder); ``seds.convert.official_key_map`` maps
#: each name, ``tests/test_official_training_parity.py`` checks the membership name by name
CLIP_PREFIXES = ("model.text.", "model.pose_transformer.", "model.rgb_transformer.", "loss.")
SIGN_PREFIXES = ("model.pose_encoder.",)
NO_DECAY = ("bias",)


def cosine_with_warmup(total: int, warmup: int):
    """``adam`` recipe: linear warm-up over ``warmup`` steps, then cosine to 0 at ``total``."""
    def f(step):
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


def warmup_cosine(total: float, proportion: float):
    """``bertadam`` recipe: the authors' ``warmup_cosine`` as a factor of the step count (see module doc)."""
    def f(step):
        x = step / total
        if x < proportion:
            return x / proportion
        return 0.5 * (1.0 + math.cos(math.pi * x))
    return f


def official_group_of(name: str) -> str:
    """``clip`` / ``sign`` / ``rest`` for one of our parameter names (``model.…`` or ``loss.…``)."""
    if name.startswith(CLIP_PREFIXES):
        return "clip"
    if name.startswith(SIGN_PREFIXES):
        return "sign"
    return "rest"


def official_param_groups(named: Iterable[tuple[str, nn.Parameter]], lr_clip: float, lr_sign: float,
                          lr_rest: float, weight_decay: float) -> list[dict]:
    """The authors' six groups in their order; each dict has ``params``, ``lr``, ``weight_decay``, ``name``
    and ``names`` (the parameter names, for checks and logs)."""
    lrs = {"clip": lr_clip, "sign": lr_sign, "rest": lr_rest}
    groups = {}
    for decay in (True, False):
        for part in ("clip", "sign", "rest"):
            groups[(part, decay)] = {"params": [], "names": [], "lr": lrs[part],
                                     "weight_decay": weight_decay if decay else 0.0,
                                     "name": f"{part}" + ("" if decay else "_no_decay")}
    for name, p in named:
        if not p.requires_grad:
            continue
        g = groups[(official_group_of(name), not any(s in name for s in NO_DECAY))]
        g["params"].append(p)
        g["names"].append(name)
    return [g for g in groups.values() if g["params"]]


class BertAdam(torch.optim.Optimizer):
    """Adam as the authors' ``BertAdam`` computes it (module doc): no bias correction, decoupled weight decay
    through the lr, per-parameter gradient clipping to ``max_grad_norm`` (≤ 0: off). The learning rate is the
    group's ``lr`` as it stands (a ``LambdaLR`` with :func:`warmup_cosine` supplies their schedule). Vectorised
    over each group with ``torch._foreach_*``."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6,
                 weight_decay: float = 0.0, max_grad_norm: float = 1.0):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
            raise ValueError(f"BertAdam: bad lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("BertAdam does not support sparse gradients")
            grads = [p.grad for p in params]
            if group["max_grad_norm"] > 0:      # torch's clip_grad_norm_ on each tensor alone (p.grad is scaled)
                norms = torch._foreach_norm(grads)
                coefs = [torch.clamp(group["max_grad_norm"] / (n + 1e-6), max=1.0) for n in norms]
                torch._foreach_mul_(grads, coefs)
            for p in params:
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            b1, b2 = group["betas"]
            torch._foreach_mul_(m, b1)
            torch._foreach_add_(m, grads, alpha=1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, group["eps"])
            update = torch._foreach_div(m, denom)
            if group["weight_decay"] > 0:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            torch._foreach_mul_(update, group["lr"])
            torch._foreach_sub_(params, update)
            for p in params:
                self.state[p]["step"] += 1
        return loss


def build_optimizer(train_cfg, loss_cfg, model: nn.Module, crit: nn.Module, steps_per_epoch: int):
    """``(optimizer, LambdaLR scheduler)`` of ``train_cfg.optimizer`` for ``model`` and the loss module
    ``crit`` (its logit scale). ``train_cfg`` is a :class:`seds.config.TrainConfig`."""
    t = train_cfg
    total = t.epochs * steps_per_epoch
    if t.optimizer == "bertadam":
        named = [(f"model.{n}", p) for n, p in model.named_parameters()]
        named += [(f"loss.{n}", p) for n, p in crit.named_parameters()]
        groups = official_param_groups(named, t.lr_transformer, t.lr_pose, t.lr_pose, t.weight_decay)
        opt = BertAdam(groups, lr=t.lr_pose, betas=(t.beta1, t.beta2), eps=t.eps, weight_decay=t.weight_decay,
                       max_grad_norm=t.param_clip)
    else:
        groups = model.param_groups(t.lr_pose, t.lr_transformer)
        groups.append({"params": [p for p in crit.parameters() if p.requires_grad], "lr": t.lr_pose,
                       "name": "temperature"})
        groups = [g for g in groups if g["params"]]
        opt = torch.optim.Adam(groups, betas=(t.beta1, t.beta2), eps=t.eps, weight_decay=t.weight_decay)
    if t.schedule == "warmup_cosine":
        f = warmup_cosine(total, t.warmup_proportion)
    else:
        f = cosine_with_warmup(total, int(t.warmup_epochs * steps_per_epoch))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, f)


def apply_gradients(train_cfg, loss_cfg, opt, sched, params: list[nn.Parameter], shards: int = 1,
                    logit_scale: nn.Parameter | None = None) -> torch.Tensor | None:
    """After ``backward`` (gradients of the global loss, already summed/averaged across ranks): scale them
    for ``train.grad_scale`` (``ddp_average``: ÷ ``shards``, all but ``logit_scale``), clip the global norm to ``train.grad_clip``, take the
    optimiser step, advance the schedule and, for ``bertadam``, clamp ``logit_scale``. Returns the global norm
    before clipping (None when clipping is off)."""
    if train_cfg.grad_scale == "ddp_average" and shards > 1:
        grads = [p.grad for p in params if p.grad is not None and p is not logit_scale]
        if grads:
            torch._foreach_div_(grads, float(shards))
    norm = None
    if train_cfg.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
    opt.step()
    sched.step()
    if train_cfg.optimizer == "bertadam" and logit_scale is not None:
        with torch.no_grad():
            logit_scale.clamp_(max=math.log(loss_cfg.max_logit_scale))
    return norm
