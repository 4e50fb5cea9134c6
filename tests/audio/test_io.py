"""Tests for decoding, resampling and atomic writing of audio files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stylecraft.audio import io
from stylecraft.errors import AudioDecodeError

LSB16 = 1.0 / 32767


def noise(n: int, channels: int, seed: int = 0, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).uniform(-1, 1, (n, channels))).astype(np.float32)


def _decode_error(path: Path) -> str:
    with pytest.raises(AudioDecodeError) as info:
        io.load(path)
    return str(info.value)


def test_garbage_with_wav_extension_raises_one_line_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "not really.wav"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    msg = _decode_error(bad)
    assert "not really.wav" in msg
    assert "\n" not in msg
    with pytest.raises(AudioDecodeError, match="not really.wav") as info:
        io.probe(bad)
    assert "\n" not in str(info.value)


def test_empty_and_missing_files_raise_audio_decode_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    assert "empty.flac" in _decode_error(empty)
    assert "missing.wav" in _decode_error(tmp_path / "missing.wav")
    no_frames = tmp_path / "no_frames.wav"
    sf.write(no_frames, np.zeros((0, 1), dtype=np.float32), 8000)
    assert "no audio samples" in _decode_error(no_frames)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_samples_are_rejected(tmp_path: Path, bad_value: float) -> None:
    x = noise(1000, 2)
    x[500, 1] = bad_value
    path = tmp_path / "float.wav"
    sf.write(path, x, 8000, subtype="FLOAT")  # float WAV can hold NaN/Inf, PCM cannot
    msg = _decode_error(path)
    assert "NaN or infinite" in msg and "float.wav" in msg


def test_load_returns_float32_samples_by_channels(tmp_path: Path) -> None:
    x = noise(3000, 1)
    path = tmp_path / "mono.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    audio, sr = io.load(path)
    assert sr == 8000 and audio.dtype == np.float32 and audio.shape == (3000, 1)
    assert np.array_equal(audio, x)


def test_load_span_equals_slice_of_full_load(tmp_path: Path) -> None:
    x = noise(16000, 2, seed=3)
    path = tmp_path / "span.flac"
    io.write(path, x, 16000)
    full, _ = io.load(path)
    part, sr = io.load(path, start_s=0.25, duration_s=0.5)
    assert sr == 16000 and part.shape == (8000, 2)
    assert np.array_equal(part, full[4000:12000])
    tail, _ = io.load(path, start_s=0.75)
    assert np.array_equal(tail, full[12000:])


@pytest.mark.parametrize("channels", [1, 2])
def test_flac_round_trip_within_16_bit_precision(tmp_path: Path, channels: int) -> None:
    x = noise(12000, channels, seed=channels, amplitude=0.9)
    path = io.write(tmp_path / "rt.flac", x, 24000)
    assert path == tmp_path / "rt.flac"
    assert sf.info(str(path)).subtype == "PCM_16"
    y, sr = io.load(path)
    assert sr == 24000 and y.shape == x.shape
    assert float(np.max(np.abs(y - x))) <= LSB16 * 1.0001


def test_write_clips_to_full_scale(tmp_path: Path) -> None:
    path = io.write(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], dtype=np.float32), 8000)
    y, _ = io.load(path)
    np.testing.assert_allclose(y[:, 0], [1.0, -1.0, 0.5], atol=LSB16 * 1.0001)


def test_write_ogg_round_trips_approximately(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None]
    path = io.write(tmp_path / "a.ogg", x, 16000)
    assert sf.info(str(path)).format == "OGG"
    y, sr = io.load(path)
    assert sr == 16000 and y.shape[1] == 1
    n = min(len(x), len(y))
    # Lossy, but the tone survives: strong correlation with the input.
    assert float(np.corrcoef(x[:n, 0], y[:n, 0])[0, 1]) > 0.99


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "out.flac"
    io.write(target, noise(8000, 2), 8000)
    io.write(target, noise(8000, 2, seed=1), 8000)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["out.flac"]
    before = target.read_bytes()
    # A failing write (FLAC cannot hold float samples) keeps the old file and leaves no temporary.
    with pytest.raises(Exception):  # noqa: B017 - soundfile's own error type is not part of the contract
        io.write(target, noise(8000, 2, seed=2), 8000, subtype="FLOAT")
    assert sorted(os.listdir(tmp_path)) == ["out.flac"]
    assert target.read_bytes() == before


def test_write_refuses_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match=r"out\.mp3"):
        io.write(tmp_path / "out.mp3", noise(100, 1), 8000)
    assert os.listdir(tmp_path) == []


def test_to_mono_averages_channels() -> None:
    x = np.array([[1.0, 0.0], [0.5, -0.5], [0.2, 0.4]], dtype=np.float32)
    m = io.to_mono(x)
    assert m.dtype == np.float32 and m.shape == (3,)
    np.testing.assert_allclose(m, [0.5, 0.0, 0.3], atol=1e-7)
    flat = np.array([0.1, 0.2], dtype=np.float64)
    assert io.to_mono(flat).dtype == np.float32 and io.to_mono(flat).shape == (2,)


@pytest.mark.parametrize(
    ("n", "sr_in", "sr_out", "expected"),
    [
        (44100, 44100, 32000, 32000),
        (48000, 48000, 32000, 32000),
        (22050, 22050, 16000, 16000),
        (1000, 8000, 16000, 2000),
    ],
)
def test_resample_lengths(n: int, sr_in: int, sr_out: int, expected: int) -> None:
    out = io.resample(np.zeros(n, dtype=np.float32), sr_in, sr_out)
    assert out.shape == (expected,) and out.dtype == np.float32
    stereo = io.resample(np.zeros((n, 2), dtype=np.float32), sr_in, sr_out)
    assert stereo.shape == (expected, 2)


def test_resample_keeps_pitch_and_level() -> None:
    sr_in, sr_out = 44100, 32000
    t = np.arange(sr_in) / sr_in
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y = io.resample(x, sr_in, sr_out)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * sr_out / len(y)
    assert peak_hz == pytest.approx(1000, abs=2)
    mid = y[2000:-2000]
    assert float(np.sqrt(np.mean(mid**2))) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)


def test_resample_same_rate_is_identity() -> None:
    x = noise(500, 2)
    assert np.array_equal(io.resample(x, 32000, 32000), x)
