"""Diversity and novelty of generated music: code n-grams, embedding spread, nearest training windows."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from fad_synth import tones

from stylecraft.errors import StylecraftError
from stylecraft.evaluate.diversity import (
    clip_embedding,
    code_ngram_stats,
    embedding_diversity,
    nearest_distances,
    novelty,
)
from stylecraft.evaluate.embeddings import MfccEmbedding

SR = 16000


def _counter_stats(clips: list[np.ndarray], cb: int, n: int) -> tuple[float, float]:
    """Entropy (bits) and distinct-n of one codebook's n-grams, counted with tuples."""
    grams = Counter(tuple(c[cb, t : t + n]) for c in clips for t in range(c.shape[1] - n + 1))
    total = sum(grams.values())
    entropy = -sum(v / total * math.log2(v / total) for v in grams.values())
    return entropy, len(grams) / total


def test_ngram_statistics_match_a_direct_count():
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 2048, size=(4, int(rng.integers(20, 60)))) for _ in range(5)]
    stats = code_ngram_stats(clips)
    assert stats["codebooks"] == 4 and stats["clips"] == 5
    for cb in range(4):
        for n in (1, 2, 3, 4):
            entropy, distinct = _counter_stats(clips, cb, n)
            assert stats["per_codebook"][cb]["entropy_bits"][str(n)] == pytest.approx(entropy, rel=1e-12)
            assert stats["per_codebook"][cb]["distinct"][str(n)] == pytest.approx(distinct, rel=1e-12)
    with pytest.raises(StylecraftError, match="same K"):
        code_ngram_stats([np.zeros((4, 10), int), np.zeros((3, 10), int)])


def test_code_diversity_separates_a_looping_generator_from_a_varied_one():
    rng = np.random.default_rng(1)
    varied = [rng.integers(0, 1024, size=(4, 150)) for _ in range(8)]
    riff = rng.integers(0, 1024, size=(4, 25))
    looping = [np.tile(riff, 6) for _ in range(8)]  # one 25-frame riff, repeated in every clip
    v, lo = code_ngram_stats(varied)["mean"], code_ngram_stats(looping)["mean"]
    assert v["distinct_clip_mean"]["4"] > 0.95 and lo["distinct_clip_mean"]["4"] < 0.25
    assert v["distinct"]["4"] > 0.95 and lo["distinct"]["4"] < 0.05  # the clips also repeat each other
    assert lo["entropy_bits"]["4"] < math.log2(25) + 1e-9 < v["entropy_bits"]["4"]


def _style_clip(seed: int, seconds: float = 4.0) -> np.ndarray:
    """A clip "in the style": tones of random pitch and level (fad_synth), mono."""
    return tones(seconds, SR, seed)[:, 0]


@pytest.fixture(scope="module")
def catalogue():
    """Training windows, held-out clips and two generators' clips, embedded with MFCC."""
    emb = MfccEmbedding()
    train_tracks = [np.concatenate([_style_clip(100 + 10 * t + i) for i in range(6)]) for t in range(4)]
    windows = [tr[s : s + 4 * SR] for tr in train_tracks for s in range(0, tr.shape[0] - 4 * SR + 1, 2 * SR)]
    heldout = [_style_clip(500 + i) for i in range(10)]
    fresh = [_style_clip(900 + i) for i in range(10)]
    copies = [windows[i] for i in range(0, 40, 4)]  # a generator that returns training windows
    loop = [_style_clip(42)] * 10  # a generator that loops one clip

    def points(clips: list[np.ndarray]) -> np.ndarray:
        return np.stack([clip_embedding(emb.embed(c, SR)) for c in clips])

    return {name: points(c) for name, c in
            (("train", windows), ("heldout", heldout), ("fresh", fresh), ("copies", copies), ("loop", loop))}


def test_diversity_separates_a_looping_generator_from_a_varied_one(catalogue):
    varied = embedding_diversity(catalogue["fresh"], catalogue["heldout"])
    looping = embedding_diversity(catalogue["loop"], catalogue["heldout"])
    assert 0.7 < varied["ratio"] < 1.4
    assert looping["generated"] == pytest.approx(0.0, abs=1e-9) and looping["ratio"] < 0.01
    assert varied["reference"] == looping["reference"]


def test_novelty_flags_a_generator_that_returns_training_windows(catalogue):
    copying = novelty(catalogue["copies"], catalogue["heldout"], catalogue["train"])
    fresh = novelty(catalogue["fresh"], catalogue["heldout"], catalogue["train"])
    assert copying["flagged_share"] == 1.0 and copying["generated"]["max"] < 1e-5
    assert fresh["flagged_share"] <= 0.2
    assert copying["ratio_of_medians"] < 0.01 < 0.5 < fresh["ratio_of_medians"]


def test_nearest_distances_match_direct_computation():
    rng = np.random.default_rng(2)
    q, b = rng.normal(size=(7, 3)), rng.normal(size=(50, 3))
    direct = np.sqrt(((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert np.allclose(nearest_distances(q, b, block=3), direct, rtol=1e-10)
