"""Training: ``python -m seds.train --config configs/<name>.yaml [key=value ...] [--resume]``.

Paper settings (Sec. 4.1): Adam, cosine schedule with warm-up, lr 1e-4 for the pose encoder and CGAF,
1e-5 for the interaction transformers and the text encoder, batch 128, 200 epochs, α = 0.8, β = 0.4,
T = 64 clips, 32 words. bf16 autocast on CUDA, gradient clipping, seeds. The ``official`` configs train with
the authors' recipe instead (``seds/optim.py``: BertAdam, their groups, schedule and clipping;
``seds/data/official_train.py``: their sentence items, sampler order and text augmentation). Multi-GPU with
``torchrun --nproc_per_node=N -m seds.train ...``: features are gathered across ranks (with gradients)
so the contrastive batch is the global batch.

Outputs in ``train.out``: ``last/`` and ``best/`` checkpoints (safetensors + config.json; ``last/`` also
has ``train_state.pt`` with optimizer, scheduler and RNG state for ``--resume``), ``log.jsonl``,
``metrics.csv``, ``curves.png`` and TensorBoard events when tensorboard is installed. The best model is
chosen on the **validation** split. With ``train.patience`` > 0 training stops early once the validation
R-sum has not improved (by more than ``train.min_delta``) for that many validations; ``train.epochs`` is then a
cap, and the run reports ``best_epoch`` and ``stopped_early`` (:class:`EarlyStopping`; its counters are part of
the resume state).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from seds.atomic import atomic_write_bytes
from seds.checkpoint import CONFIG, read_config, save_checkpoint
from seds.config import Config, ConfigError, from_dict, load_config, to_dict
from seds.cpu_runtime import keep_freed_memory
from seds.data.official_train import OfficialTrainItems, official_epoch_batches, official_train_collate
from seds.synthetic.signing import SyntheticConfig
from seds.synthetic.store import write_synthetic_store
from seds.evaluate import evaluate_model, rsum
from seds.grad_cache import GradientCache
from seds.hub import resolve_init
from seds.losses import SEDSLoss
from seds.model import TextEmbedding, VideoEmbedding, create_model
from seds.model.clip_text import clip_logit_scale
from seds.model.text_encoder import resolve_text_model
from seds.optim import apply_gradients, build_optimizer
from seds.variants import build_dataset, variant_of
from seds.progname import prog

STATE = "train_state.pt"


class TrainingError(RuntimeError):
    """Training cannot go on (bad data, NaN loss, ...); the message says where."""


# --- distributed ----------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    d = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(d.local_rank)
    return d


def _gather_padded(x: torch.Tensor, dim: int, d: Dist) -> torch.Tensor:
    """all_gather along the batch with gradients, padding ``dim`` to the global maximum first."""
    n = torch.tensor([x.shape[dim]], device=x.device)
    dist.all_reduce(n, op=dist.ReduceOp.MAX)
    if x.shape[dim] < int(n):
        shape = list(x.shape)
        shape[dim] = int(n) - x.shape[dim]
        x = torch.cat([x, torch.zeros(shape, dtype=x.dtype, device=x.device)], dim)
    return GatherWithGrad.apply(x)


class GatherWithGrad(torch.autograd.Function):
    """``all_gather`` along dim 0 whose backward returns to each rank the sum over ranks of the gradient of its
    rows (every rank computes the loss of the whole gathered batch). Written out because
    ``torch.distributed.nn.functional.all_gather`` on gloo scatters into ``empty_like`` copies of the incoming
    gradients: a non-contiguous gradient (the text features' is) came back with its elements permuted —
    same norm, wrong direction (found by tests/test_official_training_parity.py)."""

    @staticmethod
    def forward(ctx, x):
        x = x.contiguous()
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x)
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(out, 0)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g)
        return g[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_embeddings(v: VideoEmbedding, t: TextEmbedding, d: Dist) -> tuple[VideoEmbedding, TextEmbedding]:
    if d.world == 1:
        return v, t
    streams = {k: _gather_padded(x, 1, d) for k, x in v.streams.items()}
    vm = _gather_padded(v.mask.float(), 1, d).bool()
    words = _gather_padded(t.words, 1, d)
    wm = _gather_padded(t.mask.float(), 1, d).bool()
    return VideoEmbedding(streams, vm), TextEmbedding(words, wm)


def gather_text(t: TextEmbedding, d: Dist) -> TextEmbedding:
    if d.world == 1:
        return t
    return TextEmbedding(_gather_padded(t.words, 1, d), _gather_padded(t.mask.float(), 1, d).bool())


# --- data -------------------------------------------------------------------------------------------

def prepare_data(cfg: Config, main: bool = True):
    """Datasets for the train and validation splits; synthetic data is generated on first use."""
    if cfg.data.dataset == "synthetic":
        store = Path(cfg.data.store or "runs/synthetic-store")
        cfg.data.store = str(store)
        if not (store / f"manifest_{cfg.data.train_split}.csv").exists():
            if main:
                print(f"generating synthetic signing data in {store} ...", flush=True)
                write_synthetic_store(store, from_dict(SyntheticConfig, cfg.data.synthetic))
            if dist.is_initialized():
                dist.barrier()
    if not cfg.data.store:
        raise TrainingError("data.store is empty: point it at a feature store (python -m seds.extract --out ...)")
    train = build_dataset(cfg, cfg.data.train_split)
    val = build_dataset(cfg, cfg.data.val_split)
    for name, ds in (("train", train), ("val", val)):
        if len(ds) == 0:
            raise TrainingError(f"the {name} split ({getattr(cfg.data, name + '_split')}) is empty")
        check_features(ds[0], cfg, name)
    if len(train) < cfg.train.batch_size and main:
        print(f"note: train split has {len(train)} videos < batch size {cfg.train.batch_size}; "
              "batches will be smaller", flush=True)
    return train, val


def check_features(item: dict, cfg: Config, split: str) -> None:
    problem = variant_of(cfg).check_item(item, cfg.model, split)
    if problem:
        raise TrainingError(problem)


def worker_context() -> str | None:
    """How data-loader workers start. Forked (the platform default): the preloaded dataset is shared
    copy-on-write, nothing is pickled. But a process that has JAX loaded (the Kinetics I3D reference, e.g. in a
    test session) holds threads that a fork does not carry over (JAX warns of deadlocks); then workers come
    from a clean ``forkserver`` process instead, at the price of pickling the dataset to each of them."""
    if "jax" in sys.modules and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return None


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, d: Dist,
                  lengths: list[int] | None = None, bucket: int = 8, min_len: int = 2) -> list[list[int]]:
    """Deterministic shuffled batches of one epoch (global batch split across ranks).

    With ``lengths`` (frames per video), videos are grouped by length inside windows of ``bucket``
    batches before cutting, which cuts padding (and CPU time) without fixing the batch composition;
    batch order is shuffled again. The last partial batch is dropped when it would hold fewer than
    ``min_len`` (≥ 2) videos or fewer than one per rank.
    """
    g = np.random.default_rng([seed, epoch])
    perm = g.permutation(n)
    if lengths is not None and bucket > 1:
        lens = np.asarray(lengths)
        span = batch_size * bucket
        perm = np.concatenate([c[np.argsort(lens[c], kind="stable")] for c in np.split(perm, range(span, n, span))])
    chunks = [perm[s:s + batch_size] for s in range(0, n, batch_size)]
    chunks = [c for c in chunks if len(c) >= max(2, min_len, d.world)]
    order = g.permutation(len(chunks)) if lengths is not None and bucket > 1 else range(len(chunks))
    return [chunks[i][d.rank::d.world].tolist() for i in order]


def train_batches(cfg: Config, n: int, epoch: int, d: Dist, lengths: list[int] | None) -> list[list[list[int]]]:
    """This rank's steps of ``epoch``, each a list of parts (item indices): one part, or with the gradient cache
    (``train.chunk``) one per chunk = what each of ``n_chunks`` GPUs would get. The order is the seeded
    length-bucketed shuffle, or with ``train.sampler: per_sentence`` the authors' DistributedSampler order."""
    n_chunks, global_batch = cfg.train.n_chunks, cfg.train.global_batch or cfg.train.batch_size
    if cfg.train.sampler == "per_sentence":     # a last batch too small for a contrastive loss is dropped (theirs keeps
        # it: with one video per GPU their CGAF raises) — only when the split's size leaves one
        if n_chunks:
            per = [official_epoch_batches(n, global_batch, cfg.train.seed, epoch, c, n_chunks, n_chunks)
                   for c in range(n_chunks)]
            steps = [list(parts) for parts in zip(*per)]
        else:
            steps = [[b] for b in official_epoch_batches(n, global_batch, cfg.train.seed, epoch, d.rank, d.world,
                                                         d.world)]
        return [s for s in steps if sum(map(len, s)) * (1 if n_chunks else d.world) >= 2]
    batches = epoch_batches(n, global_batch, cfg.train.seed, epoch, d, lengths, min_len=n_chunks)
    return [split_chunks(b, n_chunks) for b in batches]


def new_loss(cfg: Config) -> SEDSLoss:
    """A new run's loss module; ``model.text.clip_init`` starts its logit scale from CLIP's, as the authors'."""
    crit = SEDSLoss(cfg.loss, tau=cfg.model.tau, opts=cfg.model.options)
    if cfg.model.text.clip_init:
        with torch.no_grad():
            crit.logit_scale.copy_(clip_logit_scale(cfg.model.text.clip_init))
    return crit


def encode_step(model, batch: dict) -> tuple:
    """One (per-GPU) batch's embeddings in the order their dropout masks are drawn: video, text and the authors'
    augmented text (``text_aug``: drawn by the data before the step, so both gradient-cache passes see it)."""
    v, t = model.encode_batch_video(batch), model.encode_text(batch["text"])
    return (v, t, model.encode_text(batch["text_aug"])) if "text_aug" in batch else (v, t)


def split_chunks(ids: list[int], n_chunks: int) -> list[list[int]]:
    """A global batch in the gradient cache's chunks: chunk c = what rank c of ``n_chunks`` ranks would get."""
    return [ids[c::n_chunks] for c in range(n_chunks)] if n_chunks else [ids]


# --- state ------------------------------------------------------------------------------------------

class EarlyStopping:
    """Stop when the validation score has not improved by more than ``min_delta`` for ``patience``
    consecutive validations (``patience`` 0: never stop). ``update(score)`` returns True when the score
    is a new best (the caller saves the checkpoint then); ``stop`` says whether to end training.
    ``best_epoch`` is the epoch of the best score; the counters are part of the resume state."""

    def __init__(self, patience: int = 0, min_delta: float = 0.0, best: float = -1.0,
                 since_best: int = 0, best_epoch: int = 0):
        if patience < 0 or min_delta < 0:
            raise ValueError(f"patience ({patience}) and min_delta ({min_delta}) must be ≥ 0")
        self.patience, self.min_delta = patience, min_delta
        self.best, self.since_best, self.best_epoch = best, since_best, best_epoch

    def update(self, score: float, epoch: int) -> bool:
        if score > self.best + self.min_delta or self.best_epoch == 0:
            self.best, self.since_best, self.best_epoch = score, 0, epoch
            return True
        self.since_best += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "since_best": self.since_best, "best_epoch": self.best_epoch}


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_state(folder: Path, opt, sched, epoch: int, step_in_epoch: int, global_step: int,
               stopper: EarlyStopping, model, cfg, loss, grad_cache: GradientCache | None = None) -> None:
    best = stopper.best
    save_checkpoint(folder, model, cfg, loss, info={"epoch": epoch, "step_in_epoch": step_in_epoch,
                                                      "global_step": global_step, "best_val": best})
    # one file holds everything a resume needs (weights included), so a kill between two writes
    # can never pair weights of one step with optimizer state of another
    state = {"model": model.state_dict(), "loss": loss.state_dict(),
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
             "step_in_epoch": step_in_epoch, "global_step": global_step, "best": best,
             "early_stopping": stopper.state(), "rng": rng_state()}
    if grad_cache is not None:
        state["grad_cache"] = grad_cache.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(folder / STATE, buf.getvalue())


# --- logging ------------------------------------------------------------------------------------------

class Logger:
    def __init__(self, out: Path, enabled: bool, resume: bool):
        self.out, self.enabled = out, enabled
        self.tb = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        mode = "a" if resume else "w"
        self.jsonl = open(out / "log.jsonl", mode)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"))
        except Exception:
            self.tb = None

    def log(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        write_epoch_table_and_plot(self.out)


def write_epoch_table_and_plot(out: Path) -> None:
    rows = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines() if l.strip()]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    if not epochs:
        return
    keys = sorted({k for r in epochs for k in r})
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(epochs)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ep = [r["epoch"] for r in epochs]
    for k in ("loss", "t-fused", "t-pose", "t-rgb", "p-r"):
        if k in epochs[0]:
            ax[0].plot(ep, [r.get(k, float("nan")) for r in epochs], label=k)
    ax[0].set_xlabel("epoch"); ax[0].set_title("training loss terms"); ax[0].legend()
    for k in ("val_fused_t2v_R@1", "val_fused_v2t_R@1", "val_pose_t2v_R@1", "val_rgb_t2v_R@1"):
        if any(k in r for r in epochs):
            ax[1].plot(ep, [r.get(k, float("nan")) for r in epochs], label=k.replace("val_", ""))
    ax[1].set_xlabel("epoch"); ax[1].set_title("validation R@1 (%)"); ax[1].legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)
    plt.close(fig)


def flat_metrics(results: dict, prefix: str = "val") -> dict:
    return {f"{prefix}_{s}_{d}_{m}": v for s, r in results.items() for d, ms in r.items()
            for m, v in ms.items() if m != "n_queries"}


# --- the loop --------------------------------------------------------------------------------------

def resolve_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def check_resume_config(out: Path, cfg: Config) -> None:
    old, _ = read_config(out / "last")
    if to_dict(old.model) != to_dict(cfg.model) or to_dict(old.loss) != to_dict(cfg.loss):
        a, b = to_dict(old.model), to_dict(cfg.model)
        diff = [k for k in a if a[k] != b.get(k)] or ["loss"]
        raise TrainingError(f"--resume: the model/loss config differs from {out / 'last' / CONFIG} "
                            f"(fields: {', '.join(diff)})")


def check_output_dir(out: Path) -> None:
    """Create ``train.out`` and check that files can be written in it — before data preparation, which
    can take minutes, so that a wrong path fails at once with a message naming the field."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"train.out={str(out)!r}: cannot write the output folder there "
                            f"({e.strerror or e})") from None


def train(cfg: Config, resume: bool = False, progress: bool = True) -> dict:
    d = init_distributed()
    torch.manual_seed(cfg.train.seed)    # the same initial weights on every rank (as DDP's broadcast gives)
    device = resolve_device(cfg.train.device, d)
    if device.type == "cpu":
        keep_freed_memory()     # reuse freed activations instead of re-faulting them in every step
    out = Path(cfg.train.out)
    if d.main:
        check_output_dir(out)
    resolve_text_model(cfg.model.text.model)          # a wrong text model fails now, not after the data
    train_ds, val_ds = prepare_data(cfg, d.main)
    variant = variant_of(cfg)
    frames_key, train_collate = variant.frames_key, variant.collate
    if cfg.train.sampler == "per_sentence":     # one item per sentence, a random one of its videos, text augmentation
        train_ds, train_collate = OfficialTrainItems(train_ds, cfg.train.text_aug, cfg.train.seed), official_train_collate

    model = create_model(cfg.model, hand_init=resolve_init(cfg.model.pose.hand_init)).to(device)   # local or Hub
    crit = new_loss(cfg).to(device)
    lengths = [int(train_ds[i][frames_key].shape[0]) for i in range(len(train_ds))] \
        if cfg.data.preload and cfg.train.sampler == "default" else None
    if d.rank:     # each rank its own dropout stream from here (rank 0 keeps the global one; = GradientCache's chunks)
        torch.manual_seed(cfg.train.seed + d.rank)
    n_chunks = cfg.train.n_chunks
    if n_chunks and d.world > 1:
        raise TrainingError("train.chunk (the gradient cache) runs in one process; use it without torchrun")
    n_batches = len(train_batches(cfg, len(train_ds), 0, d, lengths))
    if n_batches == 0:
        raise TrainingError(f"the train split has {len(train_ds)} videos: not enough for one batch")
    opt, sched = build_optimizer(cfg.train, cfg.loss, model, crit, n_batches)

    start_epoch, skip_steps, global_step = 0, 0, 0
    stopper = EarlyStopping(cfg.train.patience, cfg.train.min_delta)
    if resume and (out / "last" / STATE).exists():
        check_resume_config(out, cfg)
        st = torch.load(out / "last" / STATE, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        crit.load_state_dict(st["loss"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start_epoch, skip_steps, global_step = st["epoch"], st["step_in_epoch"], st["global_step"]
        # states written before early stopping existed hold only the best score
        es = st.get("early_stopping", {"best": st["best"], "best_epoch": int(st["best"] >= 0)})
        stopper = EarlyStopping(cfg.train.patience, cfg.train.min_delta, **es)
        set_rng_state(st["rng"])
        if d.main:
            print(f"resumed from {out / 'last'}: epoch {start_epoch}, step {skip_steps} of the epoch", flush=True)
    elif resume and d.main:
        print(f"--resume: no checkpoint in {out / 'last'}; starting fresh", flush=True)

    use_amp = device.type == "cuda" and cfg.train.amp in ("auto", "bf16") or cfg.train.amp == "bf16"
    gc = None
    if n_chunks:    # the step of n_chunks GPUs with cfg.train.chunk videos each, on this one device
        gc = GradientCache(lambda b: encode_step(model, b), crit, model, n_chunks, cfg.train.seed, device,
                           lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp))
        if resume and (out / "last" / STATE).exists() and "grad_cache" in st:
            gc.load_state_dict(st["grad_cache"])
    log = Logger(out, d.main, resume)
    if d.main:
        (out).mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(json.dumps(to_dict(cfg), indent=2))
    pin = device.type == "cuda"
    history = []
    stopped = False
    for epoch in range(start_epoch, cfg.train.epochs):
        if stopper.stop:      # a resumed run that had already stopped early
            break
        model.train()
        batches = train_batches(cfg, len(train_ds), epoch, d, lengths)
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        sums: dict[str, float] = {}
        count = 0
        t0 = time.time()
        it = range(skip_steps, len(batches))
        bar = None
        if progress and d.main:
            bar = tqdm(it, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="step", leave=False)
            it = bar
        loader = None
        if cfg.data.workers:    # the same batches, read and collated by worker processes ahead of the step;
            # a generator of its own, so that the global RNG (dropout) is not drawn from
            chunked = [c for parts in batches[skip_steps:] for c in parts]
            loader = iter(DataLoader(train_ds, batch_sampler=chunked, collate_fn=train_collate,
                                     num_workers=cfg.data.workers, generator=torch.Generator(),
                                     multiprocessing_context=worker_context()))
        for k in it:
            parts = [next(loader) if loader is not None else train_collate([train_ds[i] for i in ids])
                     for ids in batches[k]]
            if pin:
                parts = [{kk: (vv.pin_memory() if torch.is_tensor(vv) else vv) for kk, vv in b.items()} for b in parts]
            if gc is not None:
                terms = gc.forward(parts)     # the global batch's features without graph, and the loss on them
            else:
                batch = parts[0]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    v, t, *aug = encode_step(model, batch)
                    v, t = gather_embeddings(v, t, d)     # global contrastive batch across ranks
                    # the authors' augmented sentences, seen by the text-to-video side only
                    terms = crit(v, t, *(gather_text(a, d) for a in aug))
            bad = [name for name, val in terms.items() if not torch.isfinite(val).all()]
            if bad:
                raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {k} (global {global_step}): "
                                    f"term(s) {', '.join(bad)}")
            opt.zero_grad(set_to_none=True)
            if gc is not None:
                gc.backward()     # the loss's gradient w.r.t. the features, then each chunk again with its share
            else:
                terms["loss"].backward()
            if d.world > 1:     # every rank saw the global loss; average its local contributions
                for p in model.parameters():
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= d.world
            gn = apply_gradients(cfg.train, cfg.loss, opt, sched, list(model.parameters()) + list(crit.parameters()),
                                 shards=n_chunks or d.world, logit_scale=crit.logit_scale)
            if gn is not None:
                terms["grad_norm"] = gn.detach()
            global_step += 1
            count += 1
            for name, val in terms.items():
                sums[name] = sums.get(name, 0.0) + float(val.detach())
            if bar is not None:
                bar.set_postfix(loss=f"{float(terms['loss']):.3f}")
            if d.main and global_step % cfg.train.log_every == 0:
                rec = {"kind": "step", "epoch": epoch + 1, "step": global_step,
                       **{n: float(v.detach()) for n, v in terms.items()},
                       **{f"lr_{g['name']}": g["lr"] for g in opt.param_groups}}
                log.log(rec, global_step)
            if d.main and cfg.train.save_every_steps and global_step % cfg.train.save_every_steps == 0:
                save_state(out / "last", opt, sched, epoch, k + 1, global_step, stopper, model, cfg, crit, gc)
            if cfg.train.max_steps and global_step >= cfg.train.max_steps:
                stopped = True
                if d.main:
                    save_state(out / "last", opt, sched, epoch, k + 1, global_step, stopper, model, cfg, crit, gc)
                break
        skip_steps = 0
        if bar is not None:
            bar.close()
        if stopped:
            break
        rec = {"kind": "epoch", "epoch": epoch + 1, "step": global_step, "seconds": round(time.time() - t0, 2),
               **{n: s / max(1, count) for n, s in sums.items()},
               **{f"lr_{g['name']}": g["lr"] for g in opt.param_groups}}
        if d.main and ((epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs):
            # honest ranks (expected rank under random ties): a constant model scores at chance, never best
            res = evaluate_model(model, val_ds, cfg.model.tau, cfg.train.eval_batch_size, amp=use_amp,
                                 protocol="sentence_ids", ties="expected")
            score = rsum(res)
            rec.update(flat_metrics(res))
            rec["val_rsum"] = score
            if stopper.update(score, epoch + 1):
                save_checkpoint(out / "best", model, cfg, crit,
                                info={"epoch": epoch + 1, "global_step": global_step, "val_rsum": score,
                                      "selected_on": cfg.data.val_split, "selection_protocol": "sentence_ids",
                                      "selection_ties": "expected"})
            model.train()
        if d.main:
            rec["epochs_since_best"] = stopper.since_best
            save_state(out / "last", opt, sched, epoch + 1, 0, global_step, stopper, model, cfg, crit, gc)
            log.log(rec, global_step)
            history.append(rec)
            if progress:
                msg = " ".join(f"{k}={rec[k]:.3f}" for k in ("loss", "t-fused", "t-pose", "t-rgb", "p-r") if k in rec)
                val = f" val R@1 t2v={rec.get('val_fused_t2v_R@1', rec.get('val_pose_t2v_R@1', float('nan'))):.1f}" \
                    if "val_rsum" in rec else ""
                print(f"epoch {epoch + 1}/{cfg.train.epochs} {msg}{val} ({rec['seconds']:.1f}s)", flush=True)
        if d.world > 1:     # every rank stops together (only rank 0 validates)
            flag = torch.tensor([int(stopper.stop)], device=device)
            dist.broadcast(flag, 0)
            stopper.since_best = stopper.patience if int(flag) else stopper.since_best
        if stopper.stop:
            if d.main and progress:
                print(f"early stopping after epoch {epoch + 1}: no val R-sum gain in {stopper.patience} "
                      f"validations (best epoch {stopper.best_epoch})", flush=True)
            break
    log.close()
    if d.world > 1:
        dist.destroy_process_group()
    return {"history": history, "best_val_rsum": stopper.best, "best_epoch": stopper.best_epoch,
            "stopped_early": stopper.stop, "global_step": global_step, "out": str(out)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog=prog("seds.train", "seds-train"), description="Train SEDS.")
    ap.add_argument("--config", default=None, help="YAML config (see configs/)")
    ap.add_argument("--resume", action="store_true", help="continue from <train.out>/last")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=10")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        train(cfg, resume=args.resume, progress=not args.no_progress)
    except (TrainingError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
