"""Tests for the synthesised demo catalogue (stylecraft.data.demo)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import soundfile as sf

from stylecraft.audio import synth as demo
from stylecraft.data.demo import make_demo_catalogue, synth_track

SR = 32000


def _band_fraction(audio: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """Share of the mono down-mix's energy between lo and hi Hz."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64).mean(axis=1))) ** 2
    freqs = np.fft.rfftfreq(audio.shape[0], 1.0 / sr)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum() / spectrum.sum())


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Absolute normalised correlation of two mono down-mixes."""
    x = a.astype(np.float64).mean(axis=1)
    y = b.astype(np.float64).mean(axis=1)
    return float(abs(np.dot(x, y)) / (np.linalg.norm(x) * np.linalg.norm(y)))


@pytest.fixture(scope="module")
def track() -> np.ndarray:
    # Long enough for the groove, bass and lead to all be playing.
    return synth_track(8.0, SR, seed=0)


def test_same_seed_gives_identical_audio(track: np.ndarray) -> None:
    again = synth_track(8.0, SR, seed=0)
    assert again.dtype == track.dtype
    assert np.array_equal(again, track)


def test_different_seed_gives_different_audio(track: np.ndarray) -> None:
    other = synth_track(8.0, SR, seed=1)
    assert not np.array_equal(other, track)
    assert _similarity(track, other) < 0.5


@pytest.mark.parametrize(
    ("duration_s", "sample_rate", "channels"),
    [(8.0, SR, 2), (3.0, 16000, 1), (2.5, 44100, 2), (0.01, SR, 2), (1.0, 8000, 1)],
)
def test_shape_dtype_and_range(duration_s: float, sample_rate: int, channels: int) -> None:
    audio = synth_track(duration_s, sample_rate, seed=3, channels=channels)
    assert audio.dtype == np.float32
    assert audio.shape == (round(duration_s * sample_rate), channels)
    assert np.isfinite(audio).all()
    peak = float(np.max(np.abs(audio)))
    assert peak <= 1.0
    assert peak == pytest.approx(0.9, abs=1e-3)


def test_stereo_is_not_dual_mono(track: np.ndarray) -> None:
    left, right = track[:, 0].astype(np.float64), track[:, 1].astype(np.float64)
    assert not np.array_equal(left, right)
    # Small panning differences: the channels differ but remain strongly related.
    corr = float(np.corrcoef(left, right)[0, 1])
    assert 0.5 < corr < 0.999


def test_non_silent_with_bass_and_hat_energy(track: np.ndarray) -> None:
    rms = float(np.sqrt(np.mean(track.astype(np.float64) ** 2)))
    assert rms > 0.05
    assert _band_fraction(track, SR, 20.0, 200.0) > 0.2  # bass + kick
    assert _band_fraction(track, SR, 200.0, 4000.0) > 0.1  # pad + lead
    assert _band_fraction(track, SR, 4000.0, SR / 2) > 0.002  # hats + snare


def test_every_second_has_sound(track: np.ndarray) -> None:
    # No dropouts: the groove keeps going through the whole excerpt (fades aside).
    seconds = track[: 8 * SR].astype(np.float64).reshape(8, SR, 2)
    rms = np.sqrt((seconds**2).mean(axis=(1, 2)))
    assert (rms > 0.02).all(), rms


def test_fades_start_and_end_near_silence(track: np.ndarray) -> None:
    assert np.max(np.abs(track[:8])) < 0.01
    assert np.max(np.abs(track[-8:])) < 0.01


def test_tracks_differ_from_each_other() -> None:
    tracks = [synth_track(6.0, SR, seed=s) for s in range(4)]
    for a, b in itertools.combinations(tracks, 2):
        assert _similarity(a, b) < 0.5


def test_style_is_fixed_while_key_and_tempo_vary() -> None:
    plans = [demo._plan(np.random.default_rng(s), 40.0) for s in range(50)]
    bpms = {p.bpm for p in plans}
    keys = {p.tonic for p in plans}
    assert all(96 <= bpm <= 112 for bpm in bpms)
    assert keys <= set(demo._KEYS)
    assert len(bpms) > 5 and len(keys) > 1
    # A full-length track gets the arranged form: intro before the groove, lead after it.
    assert all(p.intro_bars > 0 and p.lead_start >= p.intro_bars for p in plans)


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_catalogue_files_are_written_and_readable(tmp_path, fmt: str) -> None:
    out_dir = tmp_path / "nested" / "demo"
    paths = make_demo_catalogue(out_dir, n_tracks=3, duration_s=2.0, sample_rate=16000, seed=2, fmt=fmt)

    assert paths == sorted(paths)
    assert [p.name for p in paths] == [f"track-0{i}.{fmt}" for i in (1, 2, 3)]
    # Atomic writes leave no temporaries behind.
    assert sorted(out_dir.iterdir()) == paths
    for i, path in enumerate(paths):
        info = sf.info(path)
        assert info.samplerate == 16000
        assert info.channels == 2
        assert info.frames == 32000
        assert info.subtype == "PCM_16"
        audio, sr = sf.read(path, dtype="float32")
        # Track i is synth_track with seed * 1000 + i, up to 16-bit quantisation.
        expected = synth_track(2.0, 16000, seed=2 * 1000 + i)
        assert np.max(np.abs(audio - expected)) <= 1.0 / 32768 + 1e-6


def test_catalogue_is_reproducible_and_seed_dependent(tmp_path) -> None:
    a = make_demo_catalogue(tmp_path / "a", n_tracks=2, duration_s=1.0, seed=0, fmt="wav")
    b = make_demo_catalogue(tmp_path / "b", n_tracks=2, duration_s=1.0, seed=0, fmt="wav")
    c = make_demo_catalogue(tmp_path / "c", n_tracks=2, duration_s=1.0, seed=1, fmt="wav")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]
    # Re-running into the same folder overwrites with identical content.
    again = make_demo_catalogue(tmp_path / "a", n_tracks=2, duration_s=1.0, seed=0, fmt="wav")
    assert again == a
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in b]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_tracks": 0},
        {"n_tracks": -1},
        {"n_tracks": 1.5},
        {"duration_s": 0.0},
        {"duration_s": -3.0},
        {"duration_s": math.nan},
        {"duration_s": math.inf},
        {"fmt": "mp3"},
        {"fmt": "FLAC "},
        {"seed": -1},
    ],
)
def test_catalogue_rejects_invalid_arguments(tmp_path, kwargs: dict) -> None:
    args = {"n_tracks": 1, "duration_s": 0.5, "fmt": "wav"} | kwargs
    with pytest.raises(ValueError):
        make_demo_catalogue(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration_s": 0.0},
        {"duration_s": -1.0},
        {"duration_s": math.nan},
        {"duration_s": 1e-6},  # shorter than one sample
        {"sample_rate": 100},
        {"seed": -5},
        {"channels": 0},
        {"channels": 3},
    ],
)
def test_synth_track_rejects_invalid_arguments(kwargs: dict) -> None:
    args = {"duration_s": 0.5, "sample_rate": SR, "seed": 0, "channels": 2} | kwargs
    with pytest.raises(ValueError):
        synth_track(**args)
