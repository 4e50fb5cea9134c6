"""The near-duplicate search: the batched coarse pass equals the pairwise one, and groups join transitively."""

from __future__ import annotations

import numpy as np
import pytest

from stylecraft.data import duplicates as dup
from stylecraft.data.demo import synth_track


def test_batched_coarse_scores_equal_pairwise_best_overlap() -> None:
    rng = np.random.default_rng(0)
    # Lengths across three FFT size classes, a track shorter than the minimum overlap, and a partial copy.
    prints = [rng.standard_normal((32, n)).astype(np.float32) for n in (400, 1200, 37, 900, 12, 3000, 2999)]
    prints[3][:, 100:600] = prints[1][:, 300:800] + 0.1 * rng.standard_normal((32, 500))
    scores = dup._coarse_scores(prints)
    for j in range(len(prints)):
        for i in range(j):
            got = scores[j, i] if not np.isnan(scores[j, i]) else scores[i, j]
            assert np.isnan(scores[i, j]) != np.isnan(scores[j, i])  # each pair scored once
            want = dup.best_overlap(dup.coarse(prints[i]), dup.coarse(prints[j]))[0]
            assert got == pytest.approx(want, abs=1e-5)


def test_near_duplicates_finds_copies_and_their_offset() -> None:
    sr = 16000
    song = synth_track(40.0, sr, seed=5, channels=1).reshape(-1)
    prints = {
        "a": dup.fingerprint(song, sr),
        "b": dup.fingerprint(song[int(2.5 * sr) :] * 0.5, sr),  # starts 2.5 s in, 6 dB down
        "c": dup.fingerprint(synth_track(40.0, sr, seed=6, channels=1).reshape(-1), sr),
        "d": dup.fingerprint(synth_track(35.0, sr, seed=7, channels=1).reshape(-1), sr),
    }
    matches = dup.near_duplicates(prints, 0.9)
    assert [(m.a, m.b) for m in matches] == [("a", "b")]
    assert matches[0].offset_s == pytest.approx(2.5, abs=0.1)  # b's first sample is a's at 2.5 s
    assert matches[0].corr > 0.95


def test_groups_join_transitively() -> None:
    m = [dup.DuplicateMatch("b", "c", 0.95, 0.0), dup.DuplicateMatch("c", "e", 0.92, 0.0), dup.DuplicateMatch("a", "f", 0.99, 1.0)]
    assert dup.duplicate_groups(["a", "b", "c", "d", "e", "f"], m) == [["a", "f"], ["b", "c", "e"]]
    assert dup.duplicate_groups(["a", "b"], []) == []
