"""Audio crops for codec training, read from a run's segmented tracks (``audio/<track_id>.npy``).

The segment stage has already resampled every track to the run's rate, mixed it to mono and
loudness-normalised it; the crops come from the memory-mapped int16 files. Which crops a step
trains on depends only on (seed, step, rank), so a resumed run sees exactly the batches an
uninterrupted one would, without a data loader to restore.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylecraft.artifacts import read_jsonl
from stylecraft.errors import StageInputError

SILENCE_DB = -50.0  # crops quieter than this (RMS, dBFS) are drawn again


@dataclass(frozen=True)
class TrackAudio:
    track_id: str
    path: Path
    samples: int


def segmented_tracks(run: Path, split: str) -> list[TrackAudio]:
    """Tracks of one split that the segment stage wrote, sorted by id."""
    tracks_path = run / "tracks.jsonl"
    if not tracks_path.exists():
        raise StageInputError(f"'{tracks_path}' is missing: run ingest and segment first")
    out = []
    for row in read_jsonl(tracks_path):
        p = run / "audio" / f"{row['id']}.npy"
        if row["split"] == split and p.exists():
            n = int(np.load(p, mmap_mode="r", allow_pickle=False).shape[0])
            out.append(TrackAudio(row["id"], p, n))
    return sorted(out, key=lambda t: t.track_id)


class CropSampler:
    """Random crops of ``crop`` samples, tracks drawn in proportion to their length.

    Args:
        tracks: the training tracks.
        crop: samples per crop.
        seed: the run's seed.
        gain_db: (low, high) range of a random gain applied per crop (volume augmentation).
    """

    def __init__(self, tracks: list[TrackAudio], crop: int, seed: int, gain_db: tuple[float, float]) -> None:
        usable = [t for t in tracks if t.samples > crop]
        if not usable:
            raise StageInputError(f"no segmented training track is longer than the codec crop ({crop} samples)")
        self.tracks = usable
        self.crop = crop
        self.seed = seed
        self.gain_db = gain_db
        lengths = np.array([t.samples - crop for t in usable], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self._audio: dict[str, np.ndarray] = {}

    def _pcm(self, t: TrackAudio) -> np.ndarray:
        if t.track_id not in self._audio:
            self._audio[t.track_id] = np.load(t.path, mmap_mode="r", allow_pickle=False)
        return self._audio[t.track_id]

    def batch(self, step: int, rank: int, size: int, purpose: int = 0) -> np.ndarray:
        """float32 [size, crop] for optimizer step ``step`` on process ``rank``; other ``purpose``
        values (codebook initialisation) draw crops unrelated to the training batches."""
        rng = np.random.default_rng([self.seed, step, rank, purpose])
        out = np.empty((size, self.crop), dtype=np.float32)
        for b in range(size):
            for _attempt in range(8):
                t = self.tracks[int(rng.choice(len(self.tracks), p=self.weights))]
                start = int(rng.integers(0, t.samples - self.crop))
                clip = np.asarray(self._pcm(t)[start : start + self.crop], dtype=np.float32) / 32767.0
                if 20 * np.log10(float(np.sqrt(np.mean(clip**2))) + 1e-12) >= SILENCE_DB:
                    break
            out[b] = clip * np.float32(10 ** (rng.uniform(*self.gain_db) / 20))
        return np.clip(out, -1.0, 1.0)


def fixed_crops(tracks: list[TrackAudio], crop: int, per_track: int, limit: int) -> np.ndarray:
    """Evenly spaced crops of every track (at most ``limit`` in all): a fixed held-out set."""
    clips = []
    for t in tracks:
        pcm = np.load(t.path, mmap_mode="r", allow_pickle=False)
        if t.samples <= crop:
            continue
        for start in np.linspace(0, t.samples - crop, per_track + 2)[1:-1].astype(int):
            clips.append(np.asarray(pcm[start : start + crop], dtype=np.float32) / 32767.0)
    if not clips:
        raise StageInputError("no held-out (valid) track is long enough for a codec evaluation crop")
    return np.stack(clips[:limit])
