"""Training the residual vector quantizer of a transformers ``EncodecModel``.

transformers ships EnCodec's quantizer for inference only (nearest code, no gradient, no
updates). Training adds what the EnCodec paper and audiocraft do, on the same buffers
(``embed``, ``embed_avg``, ``cluster_size``), so the trained model saves and loads as any
``EncodecModel``:

* codebooks initialised by k-means on encoder outputs (a zero codebook maps everything to code 0);
* exponential-moving-average codebook updates (no codebook gradient);
* dead-code replacement: a code whose average usage falls below a threshold is moved onto a
  vector of the current batch;
* a commitment loss pulling the encoder towards its codes, and a straight-through estimator so
  the decoder's gradient reaches the encoder.

Under data parallelism the usage counts and sums are all-reduced and replacements come from the
main process, so every rank keeps identical codebooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, D, T], straight-through: forward = codes, gradient = identity to the latent
    codes: torch.Tensor  # [B, K, T]
    commitment: torch.Tensor  # scalar, mean over codebooks


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means on rows of ``x`` [N, D] -> centres [k, D]; empty clusters re-seeded from random rows."""
    centres = x[torch.randperm(x.shape[0], generator=generator)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            centres[empty] = x[torch.randint(0, x.shape[0], (int(empty.sum()),), generator=generator)]
    return centres


class TrainableRVQ:
    """Training view of an ``EncodecResidualVectorQuantizer`` (its first ``n_q`` codebooks).

    Args:
        quantizer: the model's ``quantizer``; its buffers are updated in place.
        n_q: codebooks in use (the model's top bandwidth).
        decay: EMA decay of usage counts and code sums.
        dead_fraction: a code whose average usage (EMA of hits per batch) falls below this share of an
            even share (latent frames per batch / codebook size) is replaced.
        eps: Laplace smoothing of usage counts.
    """

    def __init__(self, quantizer: Any, n_q: int, decay: float = 0.99, dead_fraction: float = 0.1, eps: float = 1e-5) -> None:
        self.layers = quantizer.layers  # the model's own modules: updated in place, saved with the model
        self.n_q = n_q
        self.decay = decay
        self.dead_fraction = dead_fraction
        self.eps = eps

    def _codebook(self, i: int) -> Any:
        return self.layers[i].codebook

    @torch.no_grad()
    def init_kmeans(self, latents: torch.Tensor, frames_per_batch: int, iters: int = 10, seed: int = 0) -> None:
        """Set every codebook by k-means on the residuals of ``latents`` [N, D] (main process), then share.

        Usage counts start at each cluster's share of ``latents`` scaled to ``frames_per_batch``, the
        unit the EMA then keeps them in.
        """
        gen = torch.Generator().manual_seed(seed)
        residual = latents.float().cpu()
        for i in range(self.n_q):
            cb = self._codebook(i)
            centres = kmeans(residual, cb.embed.shape[0], iters, gen)
            assign = torch.cdist(residual, centres).argmin(dim=1)
            usage = torch.bincount(assign, minlength=centres.shape[0]).float() / residual.shape[0] * frames_per_batch
            cb.embed.copy_(centres)
            cb.cluster_size.copy_(usage)
            cb.embed_avg.copy_(centres * usage[:, None])
            residual = residual - centres[assign]
        self.broadcast()

    @torch.no_grad()
    def broadcast(self) -> None:
        if _distributed():
            for i in range(self.n_q):
                for buf in (self._codebook(i).embed, self._codebook(i).embed_avg, self._codebook(i).cluster_size):
                    dist.broadcast(buf, src=0)

    def __call__(self, latent: torch.Tensor, update: bool, generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantize ``latent`` [B, D, T]; with ``update``, move the codebooks (EMA, dead codes)."""
        x = latent.transpose(1, 2).reshape(-1, latent.shape[1])  # [N, D]
        residual = x
        quantized = torch.zeros_like(x)
        codes, commit = [], []
        for i in range(self.n_q):
            cb = self._codebook(i)
            embed = cb.embed.detach()
            dist2 = residual.detach().pow(2).sum(1, keepdim=True) - 2 * residual.detach() @ embed.t() + embed.pow(2).sum(1)[None]
            idx = dist2.argmin(dim=1)  # [N]
            q = embed[idx]  # [N, D]
            commit.append(nn.functional.mse_loss(residual, q))
            if update:
                self._ema_update(i, residual.detach(), idx, generator)
            quantized = quantized + q
            residual = residual - q
            codes.append(idx)
        b, d, t = latent.shape
        st = x + (quantized - x).detach()  # straight-through
        return QuantizerOutput(
            quantized=st.reshape(b, t, d).transpose(1, 2),
            codes=torch.stack(codes, dim=0).reshape(self.n_q, b, t).transpose(0, 1),
            commitment=torch.stack(commit).mean(),
        )

    @torch.no_grad()
    def _ema_update(self, i: int, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None) -> None:
        cb = self._codebook(i)
        k = cb.embed.shape[0]
        counts = torch.bincount(idx, minlength=k).to(x.dtype)  # [K]
        sums = torch.zeros_like(cb.embed).index_add_(0, idx, x)  # [K, D]
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        cb.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        cb.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = cb.cluster_size.sum()
        smoothed = (cb.cluster_size + self.eps) / (n + k * self.eps) * n
        cb.embed.copy_(cb.embed_avg / smoothed[:, None])
        self._replace_dead(i, x, generator)

    @torch.no_grad()
    def _replace_dead(self, i: int, x: torch.Tensor, generator: torch.Generator | None) -> None:
        cb = self._codebook(i)
        k = cb.embed.shape[0]
        frames = x.shape[0] * (dist.get_world_size() if _distributed() else 1)
        floor = self.dead_fraction * frames / k
        dead = cb.cluster_size < floor
        if not bool(dead.any()):
            return
        n_dead = int(dead.sum())
        pick = torch.randint(0, x.shape[0], (n_dead,), generator=generator, device="cpu").to(x.device)
        fresh = x[pick]
        # A replaced code starts at an even share of usage, so it is not replaced again at once.
        even = frames / k
        cb.embed[dead] = fresh
        cb.embed_avg[dead] = fresh * even
        cb.cluster_size[dead] = even
        if _distributed():  # every rank takes the main process's replacements
            for buf in (cb.embed, cb.embed_avg, cb.cluster_size):
                dist.broadcast(buf, src=0)


def code_usage(codes: torch.Tensor, codebook_size: int) -> list[float]:
    """Perplexity of code usage per codebook, as a share of the codebook size (1.0: all used evenly)."""
    out = []
    for k in range(codes.shape[1]):
        p = torch.bincount(codes[:, k].reshape(-1), minlength=codebook_size).double()
        p = p / p.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        out.append(float(entropy.exp()) / codebook_size)
    return out
