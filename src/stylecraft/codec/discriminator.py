"""The multi-scale STFT discriminator of the EnCodec paper, with hinge and feature-matching losses.

Each scale looks at the complex STFT (real and imaginary parts as two channels) of one
resolution through 2-D convolutions dilated along time; the generator is trained to fool every
scale and to match the discriminator's inner features of the real audio (relative L1).
"""

from __future__ import annotations

import torch
from torch import nn

SCALES = (2048, 1024, 512)


class STFTDiscriminator(nn.Module):
    def __init__(self, n_fft: int, filters: int = 32) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.window: torch.Tensor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        norm = nn.utils.parametrizations.weight_norm
        self.convs = nn.ModuleList([norm(nn.Conv2d(2, filters, (3, 9), padding=(1, 4)))])
        for d in (1, 2, 4):
            self.convs.append(norm(nn.Conv2d(filters, filters, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))))
        self.convs.append(norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.out = norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x`` [B, S] -> logits [B, 1, frames, bins'] and the inner feature maps."""
        spec = torch.stft(x, self.n_fft, hop_length=self.n_fft // 4, window=self.window, return_complex=True)
        h = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        features = []
        for conv in self.convs:
            h = self.act(conv(h))
            features.append(h)
        return self.out(h), features


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, scales: tuple[int, ...] = SCALES, filters: int = 32) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList([STFTDiscriminator(n, filters) for n in scales])

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(x) for d in self.discriminators]


def discriminator_loss(real: list[tuple[torch.Tensor, list[torch.Tensor]]],
                       fake: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> torch.Tensor:
    """Hinge loss of the discriminator (``fake`` computed on detached reconstructions)."""
    terms = [torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()


def generator_losses(real: list[tuple[torch.Tensor, list[torch.Tensor]]],
                     fake: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial hinge loss, relative feature-matching L1) of the generator."""
    adv = torch.stack([torch.relu(1 - f).mean() for f, _ in fake]).mean()
    fm = []
    for (_, feats_r), (_, feats_f) in zip(real, fake, strict=True):
        for fr, ff in zip(feats_r, feats_f, strict=True):
            fm.append((ff - fr.detach()).abs().mean() / fr.detach().abs().mean().clamp_min(1e-8))
    return adv, torch.stack(fm).mean()
