"""Synthesised "demo catalogue": short tracks by one imaginary artist.

The tracks come from :func:`stylecraft.audio.synth.synth_track`; this module writes them as a
catalogue folder that ingest reads like any other.
"""

from __future__ import annotations

import math
from pathlib import Path

import soundfile as sf

from stylecraft.artifacts import atomic_path
from stylecraft.audio.synth import synth_track

__all__ = ["make_demo_catalogue", "synth_track"]

_FORMATS = {"flac": "FLAC", "wav": "WAV"}
# Track i is seeded with seed * _SEED_STRIDE + i, so the stride caps n_tracks.
_SEED_STRIDE = 1000


def make_demo_catalogue(
    out_dir: str | Path,
    n_tracks: int = 4,
    duration_s: float = 40.0,
    sample_rate: int = 32000,
    seed: int = 0,
    fmt: str = "flac",
) -> list[Path]:
    """Write a demo catalogue of stereo tracks by the same imaginary artist.

    Track ``i`` (0-based) is ``synth_track(duration_s, sample_rate, seed * 1000 + i)``, stored
    as 16-bit PCM in ``track-{i + 1:02d}.{fmt}``. Each file is written atomically, so an
    interrupted run never leaves a truncated track; re-running overwrites with identical audio.

    Args:
        out_dir: Folder to write into; created if missing.
        n_tracks: Number of tracks, 1..1000.
        duration_s: Length of each track in seconds (> 0).
        sample_rate: Sample rate in Hz (>= 8000).
        seed: Non-negative catalogue seed; different seeds give different catalogues.
        fmt: ``"flac"`` or ``"wav"``.

    Returns:
        Paths of the written files, sorted.

    Raises:
        ValueError: If an argument is out of range.
    """
    if isinstance(n_tracks, bool) or int(n_tracks) != n_tracks or not 1 <= n_tracks <= _SEED_STRIDE:
        raise ValueError(f"n_tracks must be an integer in 1..{_SEED_STRIDE}, got {n_tracks!r}")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number > 0, got {duration_s!r}")
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {sorted(_FORMATS)}, got {fmt!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(int(n_tracks))))
    paths: list[Path] = []
    for i in range(int(n_tracks)):
        audio = synth_track(duration_s, sample_rate, seed=int(seed) * _SEED_STRIDE + i, channels=2)
        path = out / f"track-{i + 1:0{width}d}.{fmt}"
        with atomic_path(path) as tmp:
            sf.write(tmp, audio, int(sample_rate), subtype="PCM_16", format=_FORMATS[fmt])
        paths.append(path)
    return sorted(paths)
