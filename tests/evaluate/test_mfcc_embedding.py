"""Tests for the embedding interface and the weights-free MFCC embedding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fad_synth import noise, tones

from stylecraft.errors import AudioDecodeError, StylecraftError
from stylecraft.evaluate.embeddings import Embedding, MfccEmbedding, available_embeddings, get_embedding
from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats


def test_registry_builds_mfcc_and_lists_names_for_unknown() -> None:
    emb = get_embedding("mfcc")
    assert isinstance(emb, MfccEmbedding)
    assert isinstance(emb, Embedding)
    assert emb.name == "mfcc" and emb.sample_rate == 16_000
    assert "mfcc" in available_embeddings()
    with pytest.raises(StylecraftError, match="unknown embedding 'panns'.*mfcc"):
        get_embedding("panns")


def test_settings_are_json_and_describe_the_output() -> None:
    settings = get_embedding("mfcc").settings()
    assert json.loads(json.dumps(settings)) == settings
    assert settings["dim"] == 80
    assert settings["hop_length"] == 160 and settings["block"]["frames"] == 96


def test_shape_dtype_and_determinism() -> None:
    emb = MfccEmbedding()
    audio = noise(3.0, 16_000, seed=0)[:, 0]
    out = emb.embed(audio, 16_000)
    assert out.dtype == np.float32
    assert out.shape == (3, 80)  # 301 frames -> 3 full blocks of 96, trailing 13 dropped
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, emb.embed(audio, 16_000))


def test_resamples_and_mixes_channels() -> None:
    emb = MfccEmbedding()
    stereo = noise(2.5, 44_100, seed=1, channels=2)
    out = emb.embed(stereo, 44_100)
    assert out.shape == (2, 80)
    # Identical channels mix to the mono signal.
    mono = stereo[:, :1]
    np.testing.assert_allclose(
        emb.embed(np.repeat(mono, 2, axis=1), 44_100), emb.embed(mono[:, 0], 44_100), rtol=1e-5, atol=1e-4
    )


def test_short_clip_gives_one_block_and_empty_clip_fails() -> None:
    emb = MfccEmbedding()
    assert emb.embed(noise(0.3, 16_000, seed=2), 16_000).shape == (1, 80)
    assert emb.embed(np.full(5, 0.1, dtype=np.float32), 48_000).shape == (1, 80)
    silent = emb.embed(np.zeros(8000, dtype=np.float32), 16_000)
    assert np.isfinite(silent).all()
    with pytest.raises(AudioDecodeError, match="no samples"):
        emb.embed(np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioDecodeError, match="NaN"):
        emb.embed(np.array([0.0, np.nan, 0.0], dtype=np.float32), 16_000)


def test_fad_separates_noise_from_tones() -> None:
    emb = MfccEmbedding()

    def stats(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return gaussian_stats(emb.embed(audio, 16_000))

    # 100 s per set gives 104 blocks, more than D = 80, so the covariances are full rank.
    ref = stats(noise(100.0, 16_000, seed=10))
    other_noise = stats(noise(100.0, 16_000, seed=11))
    tone = stats(tones(100.0, 16_000, seed=12))
    fad_same_kind = frechet_distance(*ref, *other_noise)
    fad_different = frechet_distance(*ref, *tone)
    assert fad_same_kind >= 0
    assert fad_different > 10 * fad_same_kind
