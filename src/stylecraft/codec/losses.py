"""Reconstruction losses of codec training: multi-scale mel, multi-resolution STFT and waveform L1.

* Multi-scale mel: L1 between log10 mel spectrograms at STFT sizes 64 … 2048 (hop a quarter of
  the size, more mel bands at larger sizes), so both transients and pitch are rewarded.
* Multi-resolution STFT: spectral convergence plus log-magnitude L1 at 512, 1024 and 2048.
* Waveform L1: a small anchor on the samples themselves.

Filter banks come from librosa (Slaney mel scale, as librosa's defaults) and are built once per
size and device.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import torch
from torch import nn

MEL_SIZES = (64, 128, 256, 512, 1024, 2048)
STFT_SIZES = (512, 1024, 2048)
LOG_FLOOR = 1e-5


def _magnitude(x: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """|STFT| of ``x`` [B, S] -> [B, n_fft // 2 + 1, frames]."""
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, win_length=n_fft, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    return spec.abs()


class MultiScaleMelLoss(nn.Module):
    """Mean over sizes of L1(log10 mel(x), log10 mel(y))."""

    def __init__(self, sample_rate: int, sizes: tuple[int, ...] = MEL_SIZES) -> None:
        super().__init__()
        self.sizes = sizes
        for n in sizes:
            n_mels = min(128, n // 8)
            fb = librosa.filters.mel(sr=sample_rate, n_fft=n, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2)
            self.register_buffer(f"fb{n}", torch.from_numpy(fb.astype(np.float32)), persistent=False)
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def log_mel(self, x: torch.Tensor, n: int) -> torch.Tensor:
        mag = _magnitude(x, n, getattr(self, f"win{n}"))
        return torch.log10(torch.clamp(getattr(self, f"fb{n}") @ mag, min=LOG_FLOOR))

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y`` reconstruction, ``x`` target, both [B, S]."""
        return torch.stack([(self.log_mel(y, n) - self.log_mel(x, n)).abs().mean() for n in self.sizes]).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over sizes of spectral convergence + L1 of log magnitudes."""

    def __init__(self, sizes: tuple[int, ...] = STFT_SIZES) -> None:
        super().__init__()
        self.sizes = sizes
        for n in sizes:
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        losses = []
        for n in self.sizes:
            my, mx = _magnitude(y, n, getattr(self, f"win{n}")), _magnitude(x, n, getattr(self, f"win{n}"))
            convergence = torch.linalg.norm(mx - my) / torch.linalg.norm(mx).clamp_min(LOG_FLOOR)
            log_l1 = (torch.log(my.clamp_min(LOG_FLOOR)) - torch.log(mx.clamp_min(LOG_FLOOR))).abs().mean()
            losses.append(convergence + log_l1)
        return torch.stack(losses).mean()


@dataclass(frozen=True)
class LossWeights:
    mel: float = 1.0
    stft: float = 1.0
    l1: float = 0.1
    commitment: float = 1.0
    adversarial: float = 1.0
    feature_matching: float = 1.0


class ReconstructionLoss(nn.Module):
    """The weighted sum of the three reconstruction terms; also returns each term for logging."""

    def __init__(self, sample_rate: int, weights: LossWeights) -> None:
        super().__init__()
        self.mel = MultiScaleMelLoss(sample_rate)
        self.stft = MultiResolutionSTFTLoss()
        self.weights = weights

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {"mel": self.mel(y, x), "stft": self.stft(y, x), "l1": (y - x).abs().mean()}
        w = self.weights
        total = w.mel * terms["mel"] + w.stft * terms["stft"] + w.l1 * terms["l1"]
        return total, terms
