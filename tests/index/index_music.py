"""The synthetic music of the index tests (a module of its own: test files import it by name)."""

from __future__ import annotations

import numpy as np

SR = 22050


def music(seconds: float, seed: int, low: bool) -> np.ndarray:
    """Decaying harmonic notes: 'low' in 80-300 Hz with slow notes, 'high' in 600-2000 Hz, fast and noisy."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = np.zeros(n)
    note_s = 0.6 if low else 0.2
    for onset in np.arange(0, seconds, note_s):
        f0 = rng.uniform(80, 300) if low else rng.uniform(600, 2000)
        a, b = int(onset * SR), min(n, int((onset + 3.0) * SR))
        tt = t[a:b] - onset
        y[a:b] += np.exp(-tt * (2 if low else 12)) * sum(np.sin(2 * np.pi * f0 * k * tt) / k for k in range(1, 4))
    if not low:
        y += 0.3 * rng.normal(size=n)
    return (0.25 * y / np.abs(y).max()).astype(np.float32)
