"""Synthetic audio for the evaluate tests (noise and tone sets written as small files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def noise(seconds: float, sample_rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """Low-level white noise with a slowly varying gain, so blocks are not all alike."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    gain = 0.05 + 0.05 * np.abs(np.sin(np.linspace(0, 3 * np.pi, n)))[:, None]
    return (rng.standard_normal((n, channels)) * gain).astype(np.float32)


def tones(seconds: float, sample_rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """A sequence of 0.5 s sine tones with random pitch and level."""
    rng = np.random.default_rng(seed)
    seg = int(0.5 * sample_rate)
    n_seg = int(np.ceil(seconds / 0.5))
    t = np.arange(seg) / sample_rate
    parts = [rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) for _ in range(n_seg)]
    mono = np.concatenate(parts)[: int(seconds * sample_rate)]
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def write_set(
    folder: Path, kind: str, n_files: int, seconds: float, sample_rate: int, seed: int, ext: str = ".wav"
) -> Path:
    """Write ``n_files`` synthetic clips of ``kind`` ("noise" or "tones") into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    make = {"noise": noise, "tones": tones}[kind]
    for i in range(n_files):
        audio = make(seconds, sample_rate, seed * 1000 + i, channels=1 + i % 2)
        sf.write(folder / f"clip_{i:02d}{ext}", audio, sample_rate)
    return folder
