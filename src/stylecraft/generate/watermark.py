"""Keyed spread-spectrum audio watermark (pure DSP, no model weights).

Embedding multiplies the short-time spectrum of the audio, between 500 Hz and 7 kHz, by
``1 + strength * P``, where ``P`` is a keyed pseudo-random ±1 pattern of time-frequency tiles
(``BANDS`` bands x ``PERIOD`` chips of ``CHIP_FRAMES`` STFT frames, about 2 s, repeated). The
added signal is proportional to the music in every tile, so it hides under it (a constant
watermark-to-music ratio of ``20 log10(strength)`` dB per tile) and vanishes in silence.

Everything happens at a fixed internal rate of 16 kHz: the watermark is computed on a 16 kHz copy
and resampled back, so it lives below 8 kHz and survives resampling to 16 kHz and lossy codecs
(which keep this band), and detection does not depend on the file's rate.

Detection takes the log band energies, removes each band's envelope (a second difference at the
chip lag) and each frame's overall level (so gain changes do not matter), folds the result onto one pattern period and
correlates it with the key's pattern at every circular shift (so a cropped file is found at any
offset). The score is how far the best shift stands above the other shifts, in robust standard
deviations (median and MAD across shifts): with a wrong key or unmarked audio all shifts look
alike and the score stays near 3; the detection threshold is ``THRESHOLD``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal

from stylecraft.audio import io as audio_io
from stylecraft.errors import ConfigError
from stylecraft.generate.watermark_key import resolve_key

METHOD = "stylecraft-ss-v1"
RATE = 16000  # internal rate: embedding and detection both work here
N_FFT = 1024  # 64 ms Hann window
HOP = 256  # 16 ms
BAND_LO_HZ = 500.0
BAND_HI_HZ = 7000.0
BANDS = 96  # equal-width bands of about 68 Hz (4-5 STFT bins): many tiles, each still a few bins wide
CHIP_FRAMES = 4  # one chip lasts 4 hops (64 ms): tolerant of sub-frame misalignment after cropping
PERIOD = 32  # chips per pattern period (about 2 s)
THRESHOLD = 7.0  # detection score threshold (robust standard deviations)
DEFAULT_KEY = "stylecraft"
DEFAULT_STRENGTH = 0.12  # measured on real music: see eval/results/reliability.md


@dataclass(frozen=True)
class Detection:
    """Result of :func:`detect`: ``score`` in robust standard deviations, ``offset_s`` of the best shift."""

    detected: bool
    score: float
    threshold: float
    offset_s: float
    duration_s: float
    key_id: str


def key_id(key: str) -> str:
    """A public fingerprint of a key (recorded in provenance instead of the key itself)."""
    return hashlib.sha256(f"{METHOD}:{resolve_key(key)}".encode()).hexdigest()[:16]


def _band_edges() -> np.ndarray:
    """STFT bin edges of the ``BANDS`` equal-width bands."""
    hz = np.linspace(BAND_LO_HZ, BAND_HI_HZ, BANDS + 1)
    return np.round(hz / RATE * N_FFT).astype(int)


def pattern(key: str) -> np.ndarray:
    """The key's ±1 tile pattern ``[BANDS, PERIOD]`` (every band balanced: as many +1 as -1)."""
    seed = int.from_bytes(hashlib.sha256(f"{METHOD}:pattern:{resolve_key(key)}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    row = np.array([1.0] * (PERIOD // 2) + [-1.0] * (PERIOD // 2))
    return np.stack([rng.permutation(row) for _ in range(BANDS)])


def _frame_pattern(key: str, n_frames: int) -> np.ndarray:
    """Pattern expanded to STFT bins and frames: ``[N_FFT // 2 + 1, n_frames]`` (0 outside the band)."""
    p = pattern(key)
    chips = (np.arange(n_frames) // CHIP_FRAMES) % PERIOD
    per_band = p[:, chips]  # [BANDS, frames]
    out = np.zeros((N_FFT // 2 + 1, n_frames), dtype=np.float32)
    edges = _band_edges()
    for b in range(BANDS):
        out[edges[b] : edges[b + 1]] = per_band[b]
    return out


def _mono16(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    return audio_io.resample(audio_io.to_mono(np.asarray(audio, dtype=np.float32)), sample_rate, RATE)


def _stft(x: np.ndarray) -> np.ndarray:
    _, _, z = scipy.signal.stft(x, fs=RATE, window="hann", nperseg=N_FFT, noverlap=N_FFT - HOP, boundary="even")
    return z  # [bins, frames]


def watermark_signal(audio: np.ndarray, sample_rate: int, key: str, strength: float = DEFAULT_STRENGTH) -> np.ndarray:
    """The additive watermark for ``audio`` (mono ``[samples]`` at ``sample_rate``), same length."""
    if not 0.0 < strength <= 0.5:
        raise ConfigError(f"watermark strength must be in (0, 0.5], got {strength}")
    x16 = _mono16(audio, sample_rate)
    if x16.shape[0] < N_FFT:
        return np.zeros(audio.shape[0], dtype=np.float32)
    z = _stft(x16)
    mod = _frame_pattern(key, z.shape[1])
    _, w16 = scipy.signal.istft(z * (strength * mod), fs=RATE, window="hann", nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=True)
    w16 = w16[: x16.shape[0]].astype(np.float32)
    if w16.shape[0] < x16.shape[0]:
        w16 = np.pad(w16, (0, x16.shape[0] - w16.shape[0]))
    w = audio_io.resample(w16, RATE, sample_rate)
    n = audio.shape[0]
    return np.pad(w, (0, max(0, n - w.shape[0])))[:n].astype(np.float32)


def embed(audio: np.ndarray, sample_rate: int, key: str, strength: float = DEFAULT_STRENGTH) -> np.ndarray:
    """Watermark ``audio`` (``[samples]`` or ``[samples, channels]``): every channel gets the same mark.

    The result is scaled down only if adding the mark would clip.
    """
    a = np.asarray(audio, dtype=np.float32)
    w = watermark_signal(a, sample_rate, key, strength)
    out = a + (w[:, None] if a.ndim == 2 else w)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 1.0:
        out = out / peak
    return out.astype(np.float32)


def _fold_residual(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Whitened log band energies folded onto one period: ``[BANDS, PERIOD * CHIP_FRAMES]``, frames used."""
    x16 = _mono16(audio, sample_rate)
    if x16.shape[0] < N_FFT:
        return np.zeros((BANDS, PERIOD * CHIP_FRAMES)), 0
    power = np.abs(_stft(x16)) ** 2
    edges = _band_edges()
    bands = np.stack([power[edges[b] : edges[b + 1]].mean(axis=0) for b in range(BANDS)])  # [BANDS, frames]
    floor = 1e-10 * max(float(bands.mean()), 1e-20)
    s = np.log(bands + floor)
    # Whiten: a second difference at the chip lag removes each band's envelope (music changes
    # slowly next to the chip-rate pattern, measured: scores about 20% higher than subtracting a
    # moving average), and removing each frame's mean cancels gain and loudness changes.
    f = CHIP_FRAMES
    s = s - 0.5 * (np.roll(s, f, axis=1) + np.roll(s, -f, axis=1))
    s = s - s.mean(axis=0, keepdims=True)
    n = s.shape[1]
    s[:, :f] = 0.0  # the circular roll wrapped these frames around
    s[:, n - f :] = 0.0
    # Clip loud transients so one drum hit cannot dominate.
    mad = np.median(np.abs(s)) + 1e-9
    s = np.clip(s, -4 * mad, 4 * mad)
    length = PERIOD * CHIP_FRAMES
    padded = np.pad(s, ((0, 0), (0, (-n) % length)))
    return padded.reshape(BANDS, -1, length).sum(axis=1), n


def detect(audio: np.ndarray, sample_rate: int, key: str, threshold: float = THRESHOLD) -> Detection:
    """Whether ``audio`` carries the watermark of ``key``, with a score (see module docstring)."""
    a = np.asarray(audio, dtype=np.float32)
    duration = a.shape[0] / sample_rate
    folded, n_frames = _fold_residual(a, sample_rate)
    kid = key_id(key)
    if n_frames < 2 * CHIP_FRAMES:
        return Detection(False, 0.0, threshold, 0.0, duration, kid)
    length = PERIOD * CHIP_FRAMES
    p = np.repeat(pattern(key), CHIP_FRAMES, axis=1)  # [BANDS, length]
    # Circular cross-correlation over every frame shift, all bands at once.
    corr = np.fft.irfft(np.conj(np.fft.rfft(p, axis=1)) * np.fft.rfft(folded, axis=1), n=length, axis=1).sum(axis=0)
    best = int(np.argmax(corr))
    # Shifts within one chip of the best share its chips: leave them out of the noise estimate.
    dist = np.minimum(np.abs(np.arange(length) - best), length - np.abs(np.arange(length) - best))
    rest = corr[dist >= CHIP_FRAMES]
    med = float(np.median(rest))
    spread = 1.4826 * float(np.median(np.abs(rest - med))) + 1e-12
    score = (float(corr[best]) - med) / spread
    return Detection(score >= threshold, round(score, 3), threshold, round(best * HOP / RATE, 4), round(duration, 3), kid)


def embed_file(src: str | Path, dst: str | Path, key: str, strength: float = DEFAULT_STRENGTH) -> Path:
    """Watermark an audio file into ``dst`` (FLAC, WAV or OGG by suffix; 16-bit PCM), written atomically."""
    audio, sr = audio_io.load(src)
    return audio_io.write(dst, embed(audio, sr, key, strength), sr)


def detect_file(path: str | Path, key: str, threshold: float = THRESHOLD) -> Detection:
    """:func:`detect` on a decoded file (any format soundfile reads)."""
    audio, sr = audio_io.load(path)
    return detect(audio, sr, key, threshold)


METHODS = ("dsp", "audioseal")


def embed_as(method: str, audio: np.ndarray, sample_rate: int, key: str, strength: float = DEFAULT_STRENGTH,
             audioseal_path: str = "") -> np.ndarray:
    """Watermark with the chosen backend: ``dsp`` (this module) or ``audioseal`` (its weights needed).

    Raises:
        ConfigError: unknown method.
        ModelNotFoundError: ``audioseal`` without its package or weights (never a silent fallback).
    """
    if method == "dsp":
        return embed(audio, sample_rate, key, strength)
    if method == "audioseal":
        from stylecraft.generate import watermark_audioseal as was

        return was.embed(audio, sample_rate, key, was.load_models(audioseal_path or None))
    raise ConfigError(f"unknown watermark method '{method}' (known: {', '.join(METHODS)})")


def record_as(method: str, key: str, strength: float = DEFAULT_STRENGTH, audioseal_path: str = "") -> dict[str, Any]:
    """The provenance entry of a watermark: method, the key's public id (never the key), settings."""
    if method == "dsp":
        return {"method": METHOD, "key_id": key_id(key), "strength": strength}
    if method == "audioseal":
        from stylecraft.generate import watermark_audioseal as was

        return was.record(key, was.load_models(audioseal_path or None))
    raise ConfigError(f"unknown watermark method '{method}' (known: {', '.join(METHODS)})")


def detect_file_as(method: str, path: str | Path, key: str, threshold: float | None = None,
                   audioseal_path: str = "") -> Any:
    """:func:`detect_file` with the chosen backend; ``threshold`` None keeps the backend's default.

    Returns:
        The backend's detection record (``detected``, ``score``, ``threshold``, ``key_id`` …).

    Raises:
        ConfigError: unknown method.
        ModelNotFoundError: ``audioseal`` without its package or weights.
    """
    if method == "dsp":
        return detect_file(path, key, THRESHOLD if threshold is None else threshold)
    if method == "audioseal":
        from stylecraft.generate import watermark_audioseal as was

        models = was.load_models(audioseal_path or None)
        audio, sr = audio_io.load(path)
        return was.detect(audio, sr, key, models, was.DETECT_PROB if threshold is None else threshold)
    raise ConfigError(f"unknown watermark method '{method}' (known: {', '.join(METHODS)})")
