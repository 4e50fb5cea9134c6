"""Landmark fingerprints: peaks chosen locally, so an excerpt keeps the peaks of its recording."""

from __future__ import annotations

import numpy as np

from stylecraft.evaluate.audit import fingerprint as fp


def _tones(seconds: float, seed: int) -> np.ndarray:
    """Notes of random pitch and level (3 at a time) over quiet noise, at the fingerprint's rate."""
    rng = np.random.default_rng(seed)
    sr = fp.SAMPLE_RATE
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = 0.01 * rng.normal(size=n)
    for onset in np.arange(0, seconds, 0.15):
        a, b = int(onset * sr), min(n, int((onset + 0.45) * sr))
        y[a:b] += rng.uniform(0.05, 1.0) * np.sin(2 * np.pi * rng.uniform(60, 5000) * t[a:b]) * np.exp(-(t[a:b] - onset) * 4)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def test_rank_in_band_counts_stronger_neighbours_of_the_same_band():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 400, size=600)
    bins = rng.integers(0, fp.N_FFT // 2 + 1, size=600)
    values = rng.normal(size=600)
    band = np.searchsorted(np.asarray(fp.BAND_EDGES[1:]), bins, side="right")
    want = [int(np.sum((band == band[i]) & (np.abs(frames - frames[i]) <= 20) & (values > values[i]))) for i in range(600)]
    np.testing.assert_array_equal(fp._rank_in_band(frames, bins, values, 20), want)


def _inner_peaks(full: np.ndarray, start_frame: int, gain: float) -> tuple[set, set]:
    """Peaks of a 20 s excerpt (from ``start_frame``, scaled by ``gain``) away from its edges, and
    the recording's own peaks over the same frames, in the excerpt's frame numbers."""
    part = full[start_frame * fp.HOP : start_frame * fp.HOP + 20 * fp.SAMPLE_RATE] * gain
    p_full, p_part = fp._peaks(full), fp._peaks(part)
    margin = 120  # frames: the level patch, the peak patch and the rank window all reach less far
    inner = p_part[(p_part[:, 0] >= margin) & (p_part[:, 0] < p_part[:, 0].max() - margin)]
    lo, hi = inner[:, 0].min() + start_frame, inner[:, 0].max() + start_frame
    same = p_full[(p_full[:, 0] >= lo) & (p_full[:, 0] <= hi)] - [start_frame, 0]
    assert inner.shape[0] > 200
    return {tuple(r) for r in inner.tolist()}, {tuple(r) for r in same.tolist()}


def test_an_excerpt_keeps_the_peaks_of_its_recording_away_from_its_edges():
    full = _tones(40.0, seed=1)
    part, same = _inner_peaks(full, 517, 1.0)
    assert part == same  # peaks chosen against the clip's median or a budget over the clip differ
    part, same = _inner_peaks(full, 517, 0.5)  # -6 dB: only float rounding at near-ties may differ
    assert len(part & same) / len(part | same) > 0.99


def test_copy_found_at_its_offset_and_unrelated_audio_rejected():
    idx = fp.FingerprintIndex()
    a = _tones(30.0, seed=2)
    idx.add("a", a, fp.SAMPLE_RATE)
    idx.add("b", _tones(30.0, seed=3), fp.SAMPLE_RATE)
    noisy = a[int(7.0 * fp.SAMPLE_RATE) : int(17.0 * fp.SAMPLE_RATE)] * 0.5
    noisy = noisy + np.random.default_rng(4).normal(scale=float(np.std(noisy)) / 10 ** (10 / 20), size=noisy.size).astype(np.float32)
    m = idx.match(noisy, fp.SAMPLE_RATE)
    assert m.reference == "a" and abs(m.offset_s - 7.0) < 0.05 and m.is_copy()
    assert not idx.match(_tones(10.0, seed=5), fp.SAMPLE_RATE).is_copy()
