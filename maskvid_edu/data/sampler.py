"""Data order for training: a resumable, shardable permutation per epoch, and the epoch number
every dataset in a stack of wrappers should know.

Two things make an epoch reproducible and resumable: *which* clips come in which order
(:class:`ResumableSampler`, a function of ``(seed, epoch)`` only, cut at a global position), and
*what* each clip looks like — a seeded :class:`~maskvid_edu.data.datasets.VideoDataset` draws its
temporal window and crop from ``(seed, epoch, index)``, so it must be told the epoch
(:func:`set_dataset_epoch`), or every epoch would show the same window and crop of every video.
"""

from __future__ import annotations

import torch
from torch.utils.data import ConcatDataset, Sampler, Subset

__all__ = ["ResumableSampler", "set_dataset_epoch"]


class ResumableSampler(Sampler):
    """Per-rank shard of a seeded permutation; an epoch can start part-way through.

    Epoch ``e`` orders the dataset by ``randperm(n)`` drawn from a generator seeded with
    ``seed + e`` (the permutation ``DistributedSampler`` draws) and cuts it to
    ``usable = ⌊n / W⌋ · W`` positions for ``W`` processes. Rank ``r`` takes the positions
    ``start + r, start + r + W, start + r + 2W, …`` (each rank the same number), so after every
    rank has consumed ``k`` indices the whole world has consumed exactly the first
    ``start + k·W`` positions of the permutation. That makes ``start`` — a *global* position —
    the only thing a resumed run needs, whatever its number of processes: a run stopped on 8
    processes can continue on 4 (or 1) from the very next clip of the same order.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        self.n = len(dataset)
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.usable = self.n // num_replicas * num_replicas
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.usable:
            raise ValueError(f"start position {start} is outside this epoch's {self.usable} positions")
        self.epoch = epoch
        self.start = start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g)[: self.usable]  # (usable,)
        mine = order[self.start + self.rank :: self.num_replicas][: len(self)]  # equal counts on every rank
        return iter(mine.tolist())

    def __len__(self) -> int:
        return (self.usable - self.start) // self.num_replicas


def set_dataset_epoch(dataset, epoch: int) -> int:
    """Call ``set_epoch(epoch)`` on ``dataset`` and on every dataset it wraps; return how many.

    Looks through :class:`~torch.utils.data.Subset` (``.dataset``),
    :class:`~torch.utils.data.ConcatDataset` (``.datasets``) and any wrapper that keeps the
    dataset it wraps as ``.dataset``, so a seeded ``VideoDataset`` inside them draws the clips
    and crops of ``epoch``. Call it before the epoch's ``DataLoader`` iterator is created:
    workers take a copy of the dataset then (unless ``persistent_workers=True``).
    """
    found, stack, seen = 0, [dataset], set()
    while stack:
        ds = stack.pop()
        if ds is None or id(ds) in seen:
            continue
        seen.add(id(ds))
        if callable(getattr(ds, "set_epoch", None)):
            ds.set_epoch(epoch)
            found += 1
        if isinstance(ds, ConcatDataset):
            stack.extend(ds.datasets)
        elif isinstance(ds, Subset) or isinstance(getattr(ds, "dataset", None), torch.utils.data.Dataset):
            stack.append(ds.dataset)
    return found
