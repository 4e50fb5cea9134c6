"""The polyphase form of resampy's kaiser_best resampler against resampy itself."""

from __future__ import annotations

import numpy as np
import pytest
import resampy

from stylecraft.evaluate.embeddings.resample import resample_kaiser_best


@pytest.mark.parametrize(
    ("sr_in", "sr_out", "n"),
    [(44100, 16000, 44100 * 2 + 17), (22050, 16000, 30011), (48000, 16000, 48000), (44100, 24000, 50000),
     (44100, 48000, 40000), (16000, 48000, 16001), (8000, 16000, 100), (32000, 48000, 7)],
)
def test_matches_resampy(sr_in, sr_out, n):
    x = (np.random.default_rng(n).normal(size=n) * 0.3).astype(np.float32)
    ref = resampy.resample(x, sr_in, sr_out)
    out = resample_kaiser_best(x, sr_in, sr_out)
    assert out.shape == ref.shape and out.dtype == np.float32
    # resampy accumulates in float32; the difference is that rounding, far below audio resolution.
    assert np.abs(out - ref).max() < 2e-6


def test_channels_and_odd_rates():
    x = (np.random.default_rng(0).normal(size=(5000, 2)) * 0.3).astype(np.float32)
    out = resample_kaiser_best(x, 44100, 16000)
    assert np.abs(out - resampy.resample(x, 44100, 16000, axis=0)).max() < 2e-6
    # A rate pair with a huge phase count falls back to resampy itself.
    assert np.array_equal(resample_kaiser_best(x[:, 0], 44101, 16000), resampy.resample(x[:, 0], 44101, 16000))
    assert np.array_equal(resample_kaiser_best(x, 16000, 16000), x)
