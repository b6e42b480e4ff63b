"""Counter-based randomness for training data: an epoch's order and every sample's random draws are pure
functions of a few numbers, so that a run's samples do not depend on --num_threads and a resumed run can
start at any position of an epoch.

- The order of epoch e is a permutation drawn from (seed, e) (the identity with --serial_batches), padded
  to a multiple of the number of processes and dealt out to them as DistributedSampler does (process r
  takes positions r, r + W, r + 2W, ...).
- The sampler yields a SampleKey per sample, not an index: (seed, epoch, rank, position in this
  process's share of the epoch, dataset index). The dataset draws everything random about the sample
  (real or synthetic, which photos, crop, flip, synthesis parameters) from key.generator(), a generator
  seeded from (seed, epoch, rank, position) alone.

Nothing here reads or advances a global random generator.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch.utils.data import Sampler

from util import seeding

# Tags that keep the two kinds of streams apart (the order of epoch e is never a sample's stream).
ORDER_STREAM = 1
SAMPLE_STREAM = 2


class SampleKey(NamedTuple):
    """What identifies a training sample: its random draws come from (seed, epoch, rank, position) alone."""

    seed: int
    epoch: int
    rank: int
    position: int  # in this process's share of the epoch, from 0
    index: int  # the dataset index at that position

    def generator(self) -> torch.Generator:
        """Return the generator of this sample's random draws (a new one, the same for the same key)."""
        return seeding.generator(SAMPLE_STREAM, self.seed, self.epoch, self.rank, self.position)


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """Return the dataset indices of an epoch in their order: a permutation drawn from (seed, epoch), or 0..size-1."""
    if not shuffle:
        return list(range(size))
    return torch.randperm(size, generator=seeding.generator(ORDER_STREAM, seed, epoch)).tolist()


class EpochSampler(Sampler[SampleKey]):
    """Yields this process's SampleKeys of one epoch, from a start position on (set_epoch chooses both).

    len() is the number of keys still to come in the epoch; samples_per_epoch is this process's whole
    share (the dataset size divided by the number of processes, rounded up).
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.samples_per_epoch = math.ceil(size / world_size)
        self.epoch = 1
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make the next iteration yield epoch `epoch` from position `start` of this process's share on."""
        self.epoch = epoch
        self.start = start

    def positions(self) -> list[int]:
        """Return the dataset indices of this process's share of the current epoch, position 0 first."""
        order = epoch_order(self.size, self.seed, self.epoch, self.shuffle)
        total = self.samples_per_epoch * self.world_size
        padded = (order * math.ceil(total / max(self.size, 1)))[:total]  # repeats the first ones, as DistributedSampler
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[SampleKey]:
        """Yield the keys from the start position to the end of this process's share."""
        share = self.positions()
        for position in range(self.start, len(share)):
            yield SampleKey(self.seed, self.epoch, self.rank, position, share[position])

    def __len__(self) -> int:
        """Return the number of keys the next iteration yields."""
        return max(self.samples_per_epoch - self.start, 0)
