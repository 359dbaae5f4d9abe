"""Gradient cache: the contrastive step of C GPUs on one device (``train.global_batch`` + ``train.chunk``).

A contrastive loss over a global batch of B = C × b videos cannot be reproduced by accumulating the gradients
of C batches of b (each would see b − 1 negatives instead of B − 1). The gradient cache (Gao et al., *Scaling
Deep Contrastive Learning Batch Size under Memory Limited Setup*, 2021) computes the same gradient as the
C-GPU step in the memory of one chunk's graph:

1. every chunk is encoded **without a graph**; the features of the whole global batch are joined as the
   all-gather joins them (each tensor padded along dim 1 to the longest chunk, then concatenated);
2. the loss over the global batch and its gradient with respect to those features (the loss's own parameters,
   the learnable temperature, get their gradient here);
3. every chunk is encoded **again with a graph** and backpropagated with its slice of the cached feature
   gradient (``backward(features · grad)``); parameter gradients accumulate to Σ_c J_cᵀ g_c, the gradient of
   the global loss, which is what ``seds.train``'s multi-process step computes (features all-gathered with
   gradients, gradients all-reduced and averaged).

Equivalence with ``torchrun --nproc_per_node=C`` on the same global batch holds when chunk c holds rank c's
share (``batch[c::C]``, as :func:`seds.train.epoch_batches` splits a global batch across ranks) and the encoder
sees the same inputs in both passes — any randomness in the inputs (the authors' text augmentation) is drawn by the
data before the step (``seds.train.encode_step`` encodes video, text and augmented text):

* **batch norm per GPU**: each chunk is normalised with its own batch statistics, as each rank is; the running
  statistics after the step are those after chunk 0's first pass — one update per step from rank 0's videos,
  as rank 0 (which validates and saves the checkpoints) holds them; every other pass's update is undone;
* **dropout**: chunk c draws from its own random stream — chunk 0 from the global generator (rank 0's),
  chunk c ≥ 1 from a generator seeded ``seed + c`` (rank c's, :func:`seds.train.train` seeds ranks so) — and
  its second pass restarts from the state its first pass started from, so both passes draw the same masks.

Cost: one extra forward of every chunk (≈ +⅓ of a step's compute when backward ≈ 2 × forward, more where small
chunks use the hardware less well) and the features of the global batch held without graph; the peak memory is
one chunk's graph instead of the global batch's. Measured (``benchmarks/results/grad_cache.md``, tiny model,
global batch 32, 2-core CPU): step peak 123 MiB in chunks of 4 vs 677 MiB in one graph, 712 vs 449 ms/step.
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from typing import Callable, Iterator

import torch


def tensors_of(obj) -> list[torch.Tensor]:
    """The tensors of a nest of dataclasses / dicts / tuples / lists, in a fixed order."""
    if torch.is_tensor(obj):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [x for f in dataclasses.fields(obj) for x in tensors_of(getattr(obj, f.name))]
    if isinstance(obj, dict):
        return [x for k in obj for x in tensors_of(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in tensors_of(o)]
    return []


def rebuild(obj, new: Iterator[torch.Tensor]):
    """``obj`` with its tensors replaced, in :func:`tensors_of` order, by the next ones of ``new``."""
    if torch.is_tensor(obj):
        return next(new)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: rebuild(getattr(obj, f.name), new)
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, dict):
        return {k: rebuild(v, new) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(rebuild(o, new) for o in obj)
    return obj


def join_padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along the batch, zero-padding dim 1 to the longest part (as the ranks' all-gather does)."""
    if parts[0].dim() >= 2:
        n = max(p.shape[1] for p in parts)
        parts = [torch.nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, n - p.shape[1])) if p.shape[1] < n else p
                 for p in parts]
    return torch.cat(parts, 0)


def seeded_rng_state(seed: int, device: torch.device) -> dict:
    """The state the global generators (CPU, and ``device``'s when CUDA) have right after ``torch.manual_seed(seed)``."""
    st = {"cpu": torch.Generator().manual_seed(seed).get_state()}
    if device.type == "cuda":
        g = torch.Generator(device=device).manual_seed(seed)
        st["cuda"] = g.get_state()
    return st


class GradientCache:
    """One global contrastive step in chunks. ``encode(batch)`` → embeddings (any nest of dataclasses / dicts /
    tuples of tensors, batch first), ``loss(*embeddings)`` → dict of terms with ``"loss"``. ``forward(chunks)``
    runs passes 1–2 and returns the terms (checked by the caller); ``backward()`` then leaves the gradient of
    the global loss in ``.grad`` of every parameter (zero them before, as for ``loss.backward()``)."""

    def __init__(self, encode: Callable, loss: Callable, model: torch.nn.Module, n_chunks: int, seed: int,
                 device: torch.device, autocast: Callable[[], object] = nullcontext):
        if n_chunks < 1:
            raise ValueError(f"n_chunks must be ≥ 1, got {n_chunks}")
        self.encode, self.loss, self.model, self.autocast = encode, loss, model, autocast
        self.n_chunks, self.device = n_chunks, device
        self.streams: list[dict | None] = [None] + [seeded_rng_state(seed + c, device) for c in range(1, n_chunks)]
        self._pending = None

    # random streams: chunk 0 is the global generator; chunk c ≥ 1 a saved state swapped in and out
    def _get(self) -> dict:
        st = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            st["cuda"] = torch.cuda.get_rng_state(self.device)
        return st

    def _set(self, st: dict) -> None:
        torch.set_rng_state(st["cpu"])
        if "cuda" in st:
            torch.cuda.set_rng_state(st["cuda"], self.device)

    def state_dict(self) -> dict:
        """The random streams of chunks 1..C−1 (chunk 0's is the global generator's, saved with it)."""
        return {"streams": self.streams[1:]}

    def load_state_dict(self, st: dict) -> None:
        if len(st["streams"]) != self.n_chunks - 1:
            raise ValueError(f"the saved gradient cache has {len(st['streams']) + 1} chunks, this run {self.n_chunks}")
        self.streams = [None] + list(st["streams"])

    def forward(self, chunks: list[dict]) -> dict:
        if len(chunks) != self.n_chunks:
            raise ValueError(f"the gradient cache was set up for {self.n_chunks} chunks, got {len(chunks)}")
        starts = [self._get()] + self.streams[1:]
        outs, ends, running = [], [], None
        with torch.no_grad(), self.autocast():
            for c, batch in enumerate(chunks):
                self._set(starts[c])
                outs.append(self.encode(batch))
                ends.append(self._get())
                if c == 0:      # rank 0's running statistics: one update, from its own videos
                    running = [b.detach().clone() for b in self.model.buffers()]
        self._set(ends[0])      # the loss runs on rank 0's stream, after its forward
        flat = [tensors_of(o) for o in outs]
        joined = [join_padded([f[i] for f in flat]) for i in range(len(flat[0]))]
        joined = [x.detach().requires_grad_(True) if x.is_floating_point() else x for x in joined]
        with self.autocast():
            terms = self.loss(*rebuild(outs[0], iter(joined)))
        self._pending = (chunks, starts, ends, flat, joined, terms["loss"], running, self._get())
        return terms

    def backward(self) -> None:
        if self._pending is None:
            raise RuntimeError("GradientCache.backward() without a forward()")
        chunks, starts, ends, flat, joined, loss, running, after_loss = self._pending
        self._pending = None
        loss.backward()         # gradients of the features (and of the loss's own parameters)
        offset = 0
        for c, batch in enumerate(chunks):
            self._set(starts[c])
            with self.autocast():
                again = tensors_of(self.encode(batch))
            rows = flat[c][0].shape[0]
            outs, grads = [], []
            for x, first, leaf in zip(again, flat[c], joined):
                if x.shape != first.shape:
                    raise RuntimeError(f"chunk {c}: the second pass gave {tuple(x.shape)}, the first "
                                       f"{tuple(first.shape)} (the encoder is not deterministic)")
                if leaf.grad is None or not x.requires_grad:
                    continue
                g = leaf.grad.narrow(0, offset, rows)
                outs.append(x)
                grads.append(g.narrow(1, 0, x.shape[1]) if x.dim() >= 2 else g)
            if outs:
                torch.autograd.backward(outs, grads)
            offset += rows
            if c:
                self.streams[c] = ends[c]
        self.keep_rank0_statistics(running)
        self._set(after_loss)

    def keep_rank0_statistics(self, running: list[torch.Tensor]) -> None:
        """Undo every buffer update but the first pass of chunk 0 (batch-norm running statistics)."""
        with torch.no_grad():
            for b, r in zip(self.model.buffers(), running):
                b.copy_(r)
