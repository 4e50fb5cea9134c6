"""Tests for window features (equal to librosa's) and the key / tempo estimates used in captions.

Tolerances against librosa (float32 input, torch vs numpy FFTs):
  stft    max |ours - librosa| <= 1e-5 x max |librosa|
  logmel  max |ours - librosa| <= 1e-3 dB
  mfcc    max |ours - librosa| <= 1e-2 (MFCC values reach several hundred)
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from stylecraft.data import features as feat
from stylecraft.data.demo import synth_track

SR = 16000
N_FFT, HOP, N_MELS, N_MFCC = 1024, 512, 64, 20
PARAMS = feat.FeatureParams(sample_rate=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, n_mfcc=N_MFCC)
PITCHES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def _windows() -> list[np.ndarray]:
    """Music, a quiet copy (different top_db floor) and a half-silent window (floor engaged)."""
    music = synth_track(2.0, SR, seed=0, channels=1)[:, 0]
    quiet = synth_track(2.0, SR, seed=1, channels=1)[:, 0] * np.float32(0.01)
    half = music.copy()
    half[: len(half) // 2] = 0.0
    return [music, quiet, half]


def _librosa_features(y: np.ndarray) -> dict[str, np.ndarray]:
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    return {
        "stft": np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)),
        "logmel": librosa.power_to_db(mel),
        "mfcc": librosa.feature.mfcc(y=y, sr=SR, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS),
    }


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x = np.stack(_windows())
    return x, feat.compute(x, PARAMS)


def test_shapes_and_dtypes(batch: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    x, out = batch
    frames = 1 + x.shape[1] // HOP  # centered frames
    assert out["stft"].shape == (3, N_FFT // 2 + 1, frames)
    assert out["logmel"].shape == (3, N_MELS, frames)
    assert out["mfcc"].shape == (3, N_MFCC, frames)
    assert all(v.dtype == np.float32 for v in out.values())


@pytest.mark.parametrize("item", [0, 1, 2], ids=["music", "quiet", "half-silent"])
def test_features_equal_librosa(batch: tuple[np.ndarray, dict[str, np.ndarray]], item: int) -> None:
    x, out = batch
    ref = _librosa_features(x[item])
    stft_err = np.max(np.abs(out["stft"][item] - ref["stft"])) / np.max(ref["stft"])
    assert stft_err <= 1e-5
    assert np.max(np.abs(out["logmel"][item] - ref["logmel"])) <= 1e-3
    assert np.max(np.abs(out["mfcc"][item] - ref["mfcc"])) <= 1e-2


def test_top_db_floor_is_per_window(batch: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    _, out = batch
    for lm in out["logmel"]:
        # Every window floors at its own peak - 80 dB.
        assert lm.min() == pytest.approx(lm.max() - 80.0, abs=1e-3)
    # The quiet window (-40 dB) is not floored by the loud window's peak.
    assert out["logmel"][1].max() < out["logmel"][0].max() - 30


def test_batching_gives_the_same_result_as_single(batch: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    x, out = batch
    for i in range(len(x)):
        single = feat.compute(x[i : i + 1], PARAMS)
        for name in ("stft", "logmel", "mfcc"):
            np.testing.assert_allclose(
                single[name][0], out[name][i], rtol=1e-5, atol=1e-4 * np.abs(out[name][i]).max()
            )
    reordered = feat.compute(x[::-1].copy(), PARAMS)
    np.testing.assert_allclose(reordered["logmel"][::-1], out["logmel"], atol=1e-3)


def test_float64_input_is_accepted() -> None:
    y = _windows()[0]
    a = feat.compute(y[None].astype(np.float64), PARAMS)["mfcc"]
    b = feat.compute(y[None], PARAMS)["mfcc"]
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-3)


# ------------------------------------------------------------------------------------------
# Key and tempo
# ------------------------------------------------------------------------------------------


def _tones(midis: list[int], seconds: float, sr: int, harmonics: int = 4) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for m in midis:
        f0 = 440.0 * 2 ** ((m - 69) / 12)
        for h in range(1, harmonics + 1):
            y += np.sin(2 * np.pi * f0 * h * t) / h
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def _key_of(y: np.ndarray, sr: int) -> str:
    return feat.estimate_key(feat.chroma_of_audio(y, sr))


@pytest.mark.parametrize("shift", range(12))
def test_estimate_key_recovers_every_key_from_its_profile(shift: int) -> None:
    assert feat.estimate_key(np.roll(feat._MAJOR, shift)) == f"{PITCHES[shift]} major"
    assert feat.estimate_key(np.roll(feat._MINOR, shift)) == f"{PITCHES[shift]} minor"


def test_estimate_key_of_an_ideal_triad_and_of_silence() -> None:
    c_major_triad = np.zeros(12)
    c_major_triad[[0, 4, 7]] = 1.0
    assert feat.estimate_key(c_major_triad) == "C major"
    assert feat.estimate_key(np.zeros(12)) == "unknown key"


def test_estimate_key_of_a_c_major_triad_signal() -> None:
    # C major triad voiced over C4-C6 with harmonics: energy in the octaves where a 1024-point
    # STFT at 32 kHz separates semitones.
    assert _key_of(_tones([60, 64, 67, 72, 76, 79, 84], 3.0, 32000), 32000) == "C major"


def test_estimate_key_follows_transposition() -> None:
    # The same voicing a whole tone up.
    assert _key_of(_tones([62, 66, 69, 74, 78, 81, 86], 3.0, 32000), 32000) == "D major"


def test_estimate_key_of_a_cadence_in_the_middle_register() -> None:
    # Needs the long-window chroma: a 1024-point STFT at 32 kHz reads this cadence as "G major".
    chords = [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]]  # C F G C around middle C
    y = np.concatenate([_tones(c, 1.0, 32000) for c in chords])
    assert _key_of(y, 32000) == "C major"


def _click_track(bpm: float, seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(0.01 * sr)
    burst = (rng.standard_normal(n) * np.exp(-np.arange(n) / (0.002 * sr))).astype(np.float32)
    y = np.zeros(int(seconds * sr), dtype=np.float32)
    for t in np.arange(0.0, seconds, 60.0 / bpm):
        i = int(round(t * sr))
        k = min(n, len(y) - i)
        y[i : i + k] += burst[:k]
    return 0.5 * y / np.abs(y).max()


@pytest.mark.parametrize("bpm", [90.0, 120.0, 140.0])
def test_estimate_tempo_of_a_click_track(bpm: float) -> None:
    # At 32 kHz / hop 512 the tempogram's lag grid is 62.5 frames/s: 120 BPM falls between lags
    # 31 (121.0 BPM) and 32 (117.2 BPM), hence the +-2 BPM tolerance. No octave errors are accepted.
    sr = 32000
    params = feat.FeatureParams(sample_rate=sr)
    windows = np.stack([_click_track(bpm, 8.0, sr, seed) for seed in range(2)])
    logmel = feat.compute(windows, params)["logmel"]
    assert feat.estimate_tempo(logmel, sr, params.hop_length) == pytest.approx(bpm, abs=2.0)


def test_estimate_tempo_of_nothing_is_zero() -> None:
    assert feat.estimate_tempo(np.zeros((0, N_MELS, 10), dtype=np.float32), SR, HOP) == 0.0
