"""Chroma features for melody conditioning, computed as transformers' MusicgenMelodyFeatureExtractor does.

The feature extractor itself cannot be built here: its constructor requires torchaudio (for a
power spectrogram and resampling), which stylecraft does not use. This module repeats its steps
with torch only: pad to the batch's longest clip (and to at least ``n_fft``), a centred,
reflect-padded, Hann-windowed power spectrogram normalised by the window's L2 norm (what
``torchaudio.transforms.Spectrogram(normalized=True, power=2)`` computes), the same
``chroma_filter_bank`` from ``transformers.audio_utils``, an infinity-norm over the 12 bins, then
a one-hot of the loudest bin per frame. Resampling uses soxr (stylecraft.audio.io).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from transformers.audio_utils import chroma_filter_bank

from stylecraft.audio import io as audio_io
from stylecraft.errors import StylecraftError

N_FFT = 16384
HOP_LENGTH = 4096
NUM_CHROMA = 12
CHUNK_LENGTH_S = 30  # the extractor truncates its input to 30 s


@functools.lru_cache(maxsize=4)
def chroma_filters(sample_rate: int) -> torch.Tensor:
    """The extractor's chroma filter bank ``[12, n_fft // 2 + 1]`` (built once per rate; read-only)."""
    bank = chroma_filter_bank(sampling_rate=sample_rate, num_frequency_bins=N_FFT, tuning=0, num_chroma=NUM_CHROMA)
    return torch.from_numpy(bank).float()


def chroma(audio: list[np.ndarray], sample_rate: int) -> torch.Tensor:
    """One-hot chroma ``[B, frames, 12]`` of mono clips (float32 at ``sample_rate``).

    Clips are zero-padded to the longest one and truncated to 30 s, as the extractor does with
    its defaults (``padding=True``, ``truncation=True``).
    """
    limit = CHUNK_LENGTH_S * sample_rate
    clips = [np.asarray(a, dtype=np.float32)[:limit] for a in audio]
    n = max(c.shape[0] for c in clips)
    wav = torch.zeros(len(clips), n)
    for i, c in enumerate(clips):
        wav[i, : c.shape[0]] = torch.from_numpy(c)
    if n < N_FFT:  # the extractor pads short input symmetrically up to one FFT window
        pad = N_FFT - n
        wav = torch.nn.functional.pad(wav, (pad // 2, pad // 2 + pad % 2))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(
        wav, N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, window=window, center=True,
        pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )  # [B, n_fft // 2 + 1, frames]
    power = (spec / window.pow(2).sum().sqrt()).abs().pow(2)
    raw = torch.einsum("cf,bft->bct", chroma_filters(sample_rate), power)  # [B, 12, frames]
    norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)  # [B, frames, 12]
    onehot = torch.zeros_like(norm)
    onehot.scatter_(-1, norm.argmax(-1, keepdim=True), 1.0)
    return onehot


def load_melody(path: str | Path, sample_rate: int) -> np.ndarray:
    """A melody file as mono float32 ``[samples]`` at ``sample_rate``."""
    p = Path(path)
    if not p.is_file():
        raise StylecraftError(f"melody file '{p}' does not exist")
    audio, sr = audio_io.load(p)
    mono = audio_io.resample(audio_io.to_mono(audio), sr, sample_rate)
    if mono.shape[0] == 0:
        raise StylecraftError(f"melody file '{p}' holds no audio")
    return mono.astype(np.float32)


def melody_span(melody: np.ndarray, start_s: float, length_s: float, sample_rate: int) -> np.ndarray:
    """The melody under the output span ``[start_s, start_s + length_s)``, looped when it is shorter."""
    start = int(round(start_s * sample_rate))
    n = int(round(length_s * sample_rate))
    return np.take(melody, np.arange(start, start + n), mode="wrap")
