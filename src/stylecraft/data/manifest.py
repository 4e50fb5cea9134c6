"""Typed, immutable manifest rows (JSONL on disk). Units are in the names: ``_s`` is seconds."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from stylecraft.artifacts import read_jsonl, write_jsonl

T = TypeVar("T")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


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
    # The text condition (stylecraft.data.captions) and what it was made from.
    artist: str = ""
    caption: str = ""
    tempo_bpm: float | None = None
    key: str | None = None
    tags: list[str] = field(default_factory=list)
    duplicate_group: str = ""  # id of the first track of its near-duplicate group ("": no copy found)


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


ID_FIELDS = ("id", "track_id", "window_id")


def check_row(row: dict[str, Any], where: str | Path) -> None:
    """Refuse ids and file names that would lead a stage outside the run folder.

    Ids become file names (``audio/<track_id>.npy``), so one holding a path separator or ``..`` is
    a tampered manifest, as is a shard path that is absolute or climbs out of the run folder.

    Raises:
        StageInputError: naming the manifest and the bad value.
    """
    from stylecraft.artifacts import inside
    from stylecraft.errors import StageInputError

    for key in ID_FIELDS:
        value = row.get(key)
        if value is not None and (not isinstance(value, str) or not _SAFE_ID.fullmatch(value)):
            raise StageInputError(f"'{where}' holds a bad {key} {value!r}: the manifest has been altered, re-run the stage that wrote it")
    if "shard" in row:
        inside(".", row["shard"], f"shard in '{where}'")


def load_rows(path: str | Path, cls: type[T]) -> list[T]:
    """Read manifest rows into dataclasses, ignoring keys a newer version may have added.

    Raises:
        StageInputError: a row's ids or file names would escape the run folder.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    rows = read_jsonl(path)
    for row in rows:
        check_row(row, path)
    return [cls(**{k: v for k, v in row.items() if k in names}) for row in rows]


def run_caption(run: Path, artist: str) -> str:
    """The most common caption of a run's training windows: the default prompt of demos and generation.

    Captions are per track (:mod:`stylecraft.data.captions`), so this is the caption of the
    training track with the most windows: a prompt the model was trained to answer. Before
    segmenting, the most common caption of the training tracks; without either, ``"<artist> style"``.
    """
    for name in ("windows.jsonl", "tracks.jsonl"):
        rows = read_jsonl(run / name) if (run / name).exists() else []
        captions = [r["caption"] for r in rows if r.get("split") == "train" and r.get("caption")]
        if captions:
            return max(sorted(set(captions)), key=captions.count)
    return f"{artist} style"


def caption_facts(run: Path, artist: str, examples: int = 5) -> dict[str, Any]:
    """What a model card says about the captions: how many distinct ones, a few of them, the default prompt."""
    tracks = read_jsonl(run / "tracks.jsonl") if (run / "tracks.jsonl").exists() else []
    train = sorted({str(t["caption"]) for t in tracks if t.get("split") == "train" and t.get("caption")})
    return {"distinct": len(train), "examples": train[:examples], "default_prompt": run_caption(run, artist)}
