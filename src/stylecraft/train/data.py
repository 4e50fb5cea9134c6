"""What the training loop reads: token items of the run's splits, in a replayable order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Sampler

from stylecraft.data.tokens import TokenDataset


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch: the order depends only on (seed, epoch), so it can be replayed."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


@dataclass
class TrainData:
    train: TokenDataset
    valid: TokenDataset


def default_data(run_dir: Path) -> TrainData:
    """Training items: windows and variants of train tracks; validation: windows of valid tracks."""
    return TrainData(train=TokenDataset(run_dir, "train"), valid=TokenDataset(run_dir, "valid", kinds=("window",)))
