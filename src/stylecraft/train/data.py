"""What the training loop reads: token items of the run's splits, in a replayable order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

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


def stratified_rows(tracks: list[str], per_track: int) -> list[int]:
    """Positions of at most ``per_track`` items of each track (0: all), evenly spaced through the track.

    The choice depends only on the items and ``per_track``: the same validation set on every start.
    """
    by_track: dict[str, list[int]] = defaultdict(list)
    for i, track in enumerate(tracks):
        by_track[track].append(i)
    chosen: list[int] = []
    for track in sorted(by_track):
        rows = by_track[track]
        if 0 < per_track < len(rows):
            rows = [rows[(j * (len(rows) - 1)) // max(per_track - 1, 1)] for j in range(per_track)] \
                if per_track > 1 else [rows[len(rows) // 2]]
        chosen += rows
    return chosen


class ValidationSet(Dataset):
    """The held-out items training validates on: a fixed sample stratified by track.

    Each item carries its position (``index``) so per-item losses can be gathered across processes
    and grouped by track (:attr:`tracks`).
    """

    def __init__(self, valid: Any, per_track: int) -> None:
        rows = getattr(valid, "rows", None)
        all_tracks = [str(r["track_id"]) for r in rows] if rows is not None else ["all"] * len(valid)
        self.valid = valid
        self.positions = stratified_rows(all_tracks, per_track)
        self.tracks = [all_tracks[i] for i in self.positions]
        self.ids = [str(rows[i]["id"]) if rows is not None else str(i) for i in self.positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.valid[self.positions[i]], "index": i}
