"""Tests for BS.1770-4 integrated loudness and loudness normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from stylecraft.audio.loudness import integrated_loudness, normalize_gain

# ITU-R BS.1770-4, Tables 1 and 2: the K-weighting pre-filters as published for 48 kHz.
_SHELF_48K = (
    [1.53512485958697, -2.69169618940638, 1.19839281085285],
    [1.0, -1.69065929318241, 0.73248077421585],
)
_HIGHPASS_48K = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


def sine(freq: float, seconds: float, sr: int, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return amplitude * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("sr", [48000, 44100, 32000])
def test_full_scale_997hz_sine_reads_minus_3_01(sr: int) -> None:
    # BS.1770-4: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS.
    assert integrated_loudness(sine(997, 5.0, sr), sr) == pytest.approx(-3.01, abs=0.05)


@pytest.mark.parametrize("sr", [48000, 44100, 32000])
def test_minus_20db_sine_reads_minus_23(sr: int) -> None:
    assert integrated_loudness(sine(997, 5.0, sr, amplitude=0.1), sr) == pytest.approx(-23.01, abs=0.05)


def test_loudness_follows_gain_exactly() -> None:
    x = sine(997, 3.0, 48000, 0.5)
    a = integrated_loudness(x, 48000)
    b = integrated_loudness(x * 10 ** (-7.5 / 20), 48000)
    assert a - b == pytest.approx(7.5, abs=1e-6)


@pytest.mark.parametrize("freq", [60.0, 200.0, 3000.0, 10000.0])
def test_frequency_weighting_matches_the_standards_48k_filters(freq: float) -> None:
    # A full-scale sine has mean square 0.5 (-3.01 dB), weighted by the K-filter gain at its frequency.
    sr = 48000
    gain = 1.0
    for b, a in (_SHELF_48K, _HIGHPASS_48K):
        _, h = signal.freqz(b, a, worN=[freq], fs=sr)
        gain *= abs(h[0])
    expected = -0.691 - 3.0103 + 20 * np.log10(gain)  # -0.691 calibrates 997 Hz to 0 dB gain
    assert integrated_loudness(sine(freq, 5.0, sr), sr) == pytest.approx(expected, abs=0.02)


def test_channels_add_power() -> None:
    mono = sine(997, 3.0, 48000, 0.25)
    stereo = np.stack([mono, mono], axis=1)
    # Two identical channels weighted 1.0 carry twice the power: +3.01 LU.
    assert integrated_loudness(stereo, 48000) - integrated_loudness(mono, 48000) == pytest.approx(
        3.0103, abs=1e-3
    )
    # A 1-D array and a [samples, 1] array are the same signal.
    assert integrated_loudness(mono[:, None], 48000) == pytest.approx(
        integrated_loudness(mono, 48000), abs=1e-9
    )


def test_silence_and_too_short_audio_read_minus_inf() -> None:
    assert integrated_loudness(np.zeros(48000 * 2), 48000) == float("-inf")
    assert integrated_loudness(np.zeros((48000, 2), dtype=np.float32), 48000) == float("-inf")
    # Below the -70 LUFS absolute gate.
    assert integrated_loudness(sine(997, 2.0, 48000, 1e-4), 48000) == float("-inf")
    # Shorter than one 400 ms block.
    assert integrated_loudness(sine(997, 0.39, 48000), 48000) == float("-inf")


def test_absolute_gate_ignores_a_silent_half() -> None:
    sr = 48000
    loud = sine(997, 10.0, sr, 0.5)
    half_silent = np.concatenate([np.zeros(10 * sr), loud])
    # Ungated, the mean power would halve (-3 dB). Only the three 400 ms blocks straddling the
    # edge count partly (75 % overlap), which costs ~0.07 LU with 10 s halves.
    assert integrated_loudness(half_silent, sr) == pytest.approx(integrated_loudness(loud, sr), abs=0.1)


def test_relative_gate_ignores_a_quiet_half() -> None:
    sr = 48000
    loud = sine(997, 10.0, sr, 0.5)  # about -9 LUFS
    quiet = sine(997, 10.0, sr, 0.5e-3)  # about -69 LUFS: above the absolute gate, 60 LU under the loud part
    assert integrated_loudness(quiet, sr) > -70.0
    mixed = np.concatenate([quiet, loud])
    assert integrated_loudness(mixed, sr) == pytest.approx(integrated_loudness(loud, sr), abs=0.1)


def test_normalize_gain_hits_the_target() -> None:
    sr = 48000
    x = sine(997, 3.0, sr, 0.01).astype(np.float32)  # about -43 LUFS
    out, gain_db = normalize_gain(x, sr, -16.0)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert integrated_loudness(out, sr) == pytest.approx(-16.0, abs=0.01)
    assert gain_db == pytest.approx(-16.0 - integrated_loudness(x, sr), abs=1e-6)
    # The gain is applied, not something else: the output is the input scaled.
    np.testing.assert_allclose(out, x * 10 ** (gain_db / 20), rtol=1e-5, atol=1e-9)


def test_normalize_gain_can_turn_down() -> None:
    sr = 32000
    x = sine(997, 3.0, sr, 0.9).astype(np.float32)
    out, gain_db = normalize_gain(x, sr, -20.0)
    assert gain_db < 0
    assert integrated_loudness(out, sr) == pytest.approx(-20.0, abs=0.01)


def test_normalize_gain_respects_the_peak_limit() -> None:
    sr = 48000
    x = sine(997, 3.0, sr, 0.5).astype(np.float32)  # -9 LUFS; 0 LUFS would need a peak of ~1.4
    out, gain_db = normalize_gain(x, sr, 0.0, peak=0.99)
    assert float(np.max(np.abs(out))) == pytest.approx(0.99, abs=1e-4)
    assert gain_db == pytest.approx(20 * np.log10(0.99 / 0.5), abs=1e-4)
    assert integrated_loudness(out, sr) < -1.0  # the limit won over the target
    out2, _ = normalize_gain(x, sr, 0.0, peak=0.5)
    assert float(np.max(np.abs(out2))) <= 0.5 + 1e-6


def test_normalize_gain_leaves_silence_alone() -> None:
    x = np.zeros(48000, dtype=np.float32)
    out, gain_db = normalize_gain(x, 48000, -16.0)
    assert gain_db == 0.0
    assert np.array_equal(out, x) and out.dtype == np.float32
