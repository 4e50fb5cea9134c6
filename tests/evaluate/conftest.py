"""Fixtures for the evaluate tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from fad_synth import write_set


@pytest.fixture
def noise_folder(tmp_path: Path) -> Path:
    """Four noise clips of 3 s at 22.05 kHz, mono and stereo mixed (12 MFCC blocks)."""
    return write_set(tmp_path / "noise", "noise", n_files=4, seconds=3.0, sample_rate=22050, seed=1)
