"""Typed, immutable manifest rows (JSONL on disk). Units are in the names: ``_s`` is seconds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from stylecraft.artifacts import read_jsonl, write_jsonl

T = TypeVar("T")


@dataclass(frozen=True)
class Track:
    id: str  # first 16 hex digits of the file's sha256
    path: str  # absolute path of the source file
    sha256: str
    sample_rate: int
    channels: int
    duration_s: float
    split: str  # "train" | "valid"
    format: str = ""
    loudness_lufs: float | None = None


@dataclass(frozen=True)
class Reject:
    path: str
    reason: str


@dataclass(frozen=True)
class Window:
    id: str  # "<track_id>-<index:04d>"
    track_id: str
    split: str
    start_s: float
    duration_s: float
    rms_db: float
    row: int  # row in the track's feature shards (features/<track_id>.<name>.npy)
    caption: str = ""


@dataclass(frozen=True)
class Variant:
    id: str  # "<window_id>-<kind><value>"
    window_id: str
    track_id: str
    split: str
    kind: str  # "pitch" | "stretch"
    value: float  # semitones or rate
    seed: int
    shard: str  # variant shard, relative to the run folder (variants/<track_id>.cNN.npy)
    row: int  # row in that shard
    caption: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def save_rows(path: str | Path, rows: list[Any]) -> str:
    """Write manifest rows atomically; return the file's sha256."""
    return write_jsonl(path, rows)


def load_rows(path: str | Path, cls: type[T]) -> list[T]:
    """Read manifest rows into dataclasses, ignoring keys a newer version may have added."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return [cls(**{k: v for k, v in row.items() if k in names}) for row in read_jsonl(path)]
