"""Shared fixtures: a tiny synthesised catalogue and a segmented mini run built from it.

Everything is short (12-14 s tracks, 4 s windows at 16 kHz) so the data-stage tests stay fast.
Session-scoped fixtures are read-only; tests that rerun or damage a run work on ``mini_run_copy``.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each of the suite's worker processes gets one core: two workers on two cores, not four threads.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    # librosa caches its numba functions beside its sources; in a fresh environment two workers
    # writing and loading that cache at once crashed one with a segfault inside a gufunc call.
    # Each worker keeps its own cache.
    import tempfile

    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"stylecraft-numba-{os.environ['PYTEST_XDIST_WORKER']}"))

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from stylecraft.config import SegmentConfig
from stylecraft.data.captions import CaptionSettings
from stylecraft.data.demo import synth_track
from stylecraft.data.ingest import ingest
from stylecraft.data.manifest import Track, Window
from stylecraft.data.segment import segment

CATALOGUE_SR = 22050  # source rate differs from the segment rate, so segment must resample
SEGMENT_SR = 16000
# Durations chosen so that one track does not end on a hop boundary (13.5 s: 5 windows, 1.5 s left over).
TRACK_DURATIONS_S = (12.0, 13.5, 12.7)


def segment_params(**changes: Any) -> dict[str, Any]:
    """The segment section used by the mini run (small windows, one worker)."""
    base = SegmentConfig(sample_rate=SEGMENT_SR, window_s=4.0, hop_s=2.0, loudness_lufs=-18.0, workers=1)
    return dataclasses.asdict(dataclasses.replace(base, **changes))


@dataclass(frozen=True)
class MiniRun:
    catalogue: Path
    run_dir: Path
    tracks: list[Track]
    windows: list[Window]
    params: dict[str, Any]


@pytest.fixture(scope="session")
def demo_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three stereo FLAC tracks of the demo artist, 12-13.5 s at 22.05 kHz."""
    out = tmp_path_factory.mktemp("demo_catalogue")
    for i, duration in enumerate(TRACK_DURATIONS_S):
        audio = synth_track(duration, CATALOGUE_SR, seed=10 + i, channels=2)
        sf.write(out / f"track-{i + 1:02d}.flac", audio, CATALOGUE_SR, subtype="PCM_16")
    return out


@pytest.fixture(scope="session")
def mini_run(demo_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> MiniRun:
    """The demo catalogue ingested and segmented (do not modify: copy it with ``mini_run_copy``)."""
    run_dir = tmp_path_factory.mktemp("mini_run")
    tracks, _ = ingest(demo_catalogue, run_dir, valid_fraction=0.34, captions=CaptionSettings(artist="demo artist"))
    params = segment_params()
    windows = segment(run_dir, params, artist="demo artist")
    return MiniRun(demo_catalogue, run_dir, tracks, windows, params)


@pytest.fixture
def mini_run_copy(mini_run: MiniRun, tmp_path: Path) -> MiniRun:
    """A private copy of the mini run's folder, free to rerun, delete from or augment."""
    run_dir = tmp_path / "run"
    shutil.copytree(mini_run.run_dir, run_dir)
    return dataclasses.replace(mini_run, run_dir=run_dir)
