"""The authors' train-time data pipeline (``train.sampler: per_sentence``), re-implemented from their
``dataloaders/dataloader_*_retrieval_train_pose.py`` and ``data_dataloaders.py`` (longtaojiang/SEDS @ 434e3f7).

* **Items are sentences**, not videos: one per sentence id in first-appearance order (their ``sentences_dict``);
  each time an item is drawn, one of that sentence's videos is picked at random (their ``random.randint``).
  How2Sign and PHOENIX-2014T have about one video per sentence; CSL-Daily repeats sentences, so an epoch has
  fewer items than videos there.
* **Order**: their ``DistributedSampler`` (seed 0, ``set_epoch``): ``torch.randperm(n)`` of a generator seeded
  ``seed + epoch``, padded by repeating its head to a multiple of the number of GPUs, GPU ``r`` taking positions
  ``r, r + W, …`` in per-GPU batches of ``batch / W``, the last batch smaller (no drop). Global batch ``k`` is
  then ``perm[k·B:(k+1)·B]`` with GPU ``r`` holding its positions ``r::W`` — :func:`official_epoch_batches`
  returns exactly that for ``train.seed: 0`` (the batch composition of their run, given the same item order).
* **Frames and clips**: no randomness — frames are sub-sampled by a fixed stride to ≤ 300 (their
  ``random.randint`` start is drawn and never used) and the 16-frame windows come from
  :func:`seds.data.official_batch.official_sample`, the same code as evaluation.
* **Text**: sub-sampling of long sentences is deterministic (``linspace``, in the tokenizer); with probability
  ``train.text_aug`` (their ``--text_aug`` default: 0.5, ``random_swap``) the item also carries a copy of its
  sentence with two word positions swapped (textaugment ``EDA.random_swap``, n = 1), which only the
  text-to-video side of the loss sees (their ``pairs_text_aug``); otherwise the copy is the sentence itself.

Random draws (video choice, augmentation) come from ``numpy.random.default_rng([seed, epoch, item])``: the
same for any number of workers and on resume. Their draws come from Python's ``random`` in each of 64 loader
workers — that stream cannot be reproduced, so video choice and augmented copies match theirs in distribution,
not draw for draw.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from seds.data.official import official_collate


def sentence_groups(sentence_ids: list[str]) -> list[list[int]]:
    """Video indices grouped by sentence id, groups in first-appearance order (their ``sentences_dict``)."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(sentence_ids):
        groups.setdefault(s, []).append(i)
    return list(groups.values())


def official_epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                           shards: int = 1) -> list[list[int]]:
    """This rank's item indices of every global batch of one epoch, in the authors' order (module doc).

    ``shards`` is their number of GPUs (per-GPU batch = ``batch_size / shards``); the ``world`` ranks here split
    the shards evenly, a rank's list being its shards' positions one shard after the other (so one rank holding
    all shards sees ``chunk[0::S] + chunk[1::S] + …``: consecutive per-GPU sub-batches, for the gradient cache)."""
    if n < 1:
        raise ValueError("official_epoch_batches: no items")
    if shards < 1 or batch_size % shards or shards % world:
        raise ValueError(f"batch_size {batch_size} must split into {shards} shards, and the shards over {world} ranks")
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    total = math.ceil(n / shards) * shards
    pad = total - n
    perm += (perm * math.ceil(pad / n))[:pad]
    per_rank = shards // world
    out = []
    for s in range(0, total, batch_size):
        chunk = perm[s:s + batch_size]
        mine = range(rank * per_rank, (rank + 1) * per_rank)
        out.append([i for r in mine for i in chunk[r::shards]])
    return out


def random_swap(text: str, rng: np.random.Generator) -> str:
    """Swap two distinct word positions once (textaugment ``EDA.random_swap``, n = 1); a one-word sentence is
    returned as is. (EDA draws the second position up to four times until it differs from the first and otherwise
    leaves the sentence unchanged — for a two-word sentence 1 time in 16; here the two positions always differ.)"""
    words = text.split()
    if len(words) < 2:
        return text
    a, b = rng.choice(len(words), size=2, replace=False)
    words[a], words[b] = words[b], words[a]
    return " ".join(words)


class OfficialTrainItems(Dataset):
    """Sentence-level train items over a per-video dataset (``OfficialDataset`` or any dataset with
    ``sentence_ids`` and items holding ``text``); call :meth:`set_epoch` before each epoch's loader."""

    def __init__(self, videos: Dataset, text_aug: float = 0.5, seed: int = 0):
        self.videos, self.text_aug, self.seed = videos, float(text_aug), int(seed)
        self.groups = sentence_groups(list(videos.sentence_ids))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        group = self.groups[i]
        item = dict(self.videos[group[int(rng.integers(len(group)))]])
        aug = self.text_aug > 0 and rng.random() < self.text_aug
        item["text_aug"] = random_swap(item["text"], rng) if aug else item["text"]
        return item


def official_train_collate(items: list[dict]) -> dict:
    """:func:`official_collate` plus ``text_aug`` (the sentences the text-to-video side of the loss sees)."""
    batch = official_collate(items)
    batch["text_aug"] = [it.get("text_aug", it.get("text", "")) for it in items]
    return batch
