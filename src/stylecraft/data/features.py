"""Window features: STFT magnitude, log-mel and MFCC, batched in torch.

Definitions follow librosa's (centered frames, zero padding, periodic Hann window, Slaney mel
filters, ``power_to_db`` with ``top_db=80`` per window, orthonormal DCT-II), so the numbers equal
``librosa.feature.*`` to float32 rounding while one STFT serves all three features.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import librosa
import numpy as np
import torch


@dataclass(frozen=True)
class FeatureParams:
    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    n_mfcc: int = 20
    top_db: float = 80.0


@lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> torch.Tensor:
    return torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)).float()  # [M, F]


@lru_cache(maxsize=8)
def _dct_matrix(n_mels: int, n_mfcc: int) -> torch.Tensor:
    # Orthonormal DCT-II as a matrix, identical to scipy.fft.dct(type=2, norm="ortho").
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    return torch.from_numpy(basis).float()  # [n_mfcc, M]


def stft_magnitude(x: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """|STFT| of ``x`` [B, S] -> [B, n_fft//2+1, frames] (centered, zero-padded, periodic Hann)."""
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft, hop_length, window=window, center=True, pad_mode="constant", return_complex=True)
    return spec.abs()


def power_to_db(power: torch.Tensor, top_db: float) -> torch.Tensor:
    """librosa.power_to_db(ref=1.0, amin=1e-10) with the top_db floor taken per item of the batch."""
    db = 10.0 * torch.log10(power.clamp_min(1e-10))
    peak = db.amax(dim=tuple(range(1, db.ndim)), keepdim=True)
    return torch.maximum(db, peak - top_db)


NAMES = ("mfcc", "logmel", "stft")


def compute(windows: np.ndarray, params: FeatureParams, names: tuple[str, ...] | list[str] = NAMES) -> dict[str, np.ndarray]:
    """Features of a batch of equal-length mono windows ``[B, S]`` (float32).

    Args:
        names: the features to return (all three are computed from one STFT; only the mel and
            DCT products of unnamed ones are skipped).

    Returns:
        ``stft`` [B, n_fft//2+1, F] magnitude, ``logmel`` [B, n_mels, F] in dB,
        ``mfcc`` [B, n_mfcc, F], all float32, those of ``names`` only.
    """
    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        mag = stft_magnitude(x, params.n_fft, params.hop_length)  # [B, F, T]
        if "stft" in names:
            out["stft"] = mag.numpy()
        if "logmel" in names or "mfcc" in names:
            mel = torch.matmul(_mel_basis(params.sample_rate, params.n_fft, params.n_mels), mag**2)  # [B, M, T]
            logmel = power_to_db(mel, params.top_db)
            if "logmel" in names:
                out["logmel"] = logmel.numpy()
            if "mfcc" in names:
                out["mfcc"] = torch.matmul(_dct_matrix(params.n_mels, params.n_mfcc), logmel).numpy()  # [B, n_mfcc, T]
    return out


_KEYS = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
# Krumhansl-Kessler key profiles.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


KEY_N_FFT = 8192  # at 32 kHz: 3.9 Hz bins, finer than a semitone down to ~70 Hz


def chroma_of_audio(y: np.ndarray, sample_rate: int, max_s: float = 120.0) -> np.ndarray:
    """Mean chroma [12] of mono audio (its middle ``max_s`` seconds) for key estimation.

    The window features' 1024-point STFT is too coarse for pitch below ~500 Hz (one bin spans
    more than a semitone), so key estimation takes its own long-window STFT.
    """
    n = int(max_s * sample_rate)
    if y.shape[0] > n:
        start = (y.shape[0] - n) // 2
        y = y[start : start + n]
    if y.shape[0] < KEY_N_FFT:
        return np.zeros(12)
    chroma = librosa.feature.chroma_stft(
        y=np.ascontiguousarray(y, dtype=np.float32), sr=sample_rate, n_fft=KEY_N_FFT, hop_length=KEY_N_FFT // 2
    )
    return chroma.mean(axis=1)


def estimate_key(chroma: np.ndarray) -> str:
    """Best-correlating major/minor key of a 12-bin chroma vector (Krumhansl-Schmuckler)."""
    if not np.any(chroma > 0):
        return "unknown key"
    best, name = -np.inf, "unknown key"
    for shift in range(12):
        c = np.roll(chroma, -shift)
        for profile, mode in ((_MAJOR, "major"), (_MINOR, "minor")):
            r = float(np.corrcoef(c, profile)[0, 1])
            if r > best:
                best, name = r, f"{_KEYS[shift]} {mode}"
    return name


def estimate_tempo(logmel: np.ndarray, sample_rate: int, hop_length: int) -> float:
    """Tempo in BPM from log-mel windows [N, M, T] (median of per-window estimates)."""
    tempos = []
    for S in logmel:
        env = librosa.onset.onset_strength(S=S, sr=sample_rate, hop_length=hop_length)
        tempos.append(float(librosa.feature.tempo(onset_envelope=env, sr=sample_rate, hop_length=hop_length)[0]))
    return float(np.median(tempos)) if tempos else 0.0
