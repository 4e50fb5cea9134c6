"""Gaussians of embedding rows at catalogue scale: pooled artist statistics, a Fréchet distance
from one candidate to many references at once, and a lower bound that prunes the search for the
nearest track.
"""

from __future__ import annotations

import numpy as np

from stylecraft.evaluate.frechet import _psd_eigvals, frechet_distance

__all__ = ["frechet_lower_bound", "frechet_to_many", "gaussian_from_sums", "sums_of_rows"]


def sums_of_rows(rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(n, Σx, Σxxᵀ)`` of rows ``[n, D]`` in float64: what an artist's Gaussian is pooled from."""
    x = np.asarray(rows, dtype=np.float64)
    return int(x.shape[0]), x.sum(axis=0), x.T @ x


def gaussian_from_sums(n: int, row_sum: np.ndarray, outer_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``ddof=1``, as :func:`gaussian_stats`) from sufficient sums."""
    mu = row_sum / n
    cov = (outer_sum - n * np.outer(mu, mu)) / (n - 1)
    return mu, (cov + cov.T) / 2.0


def frechet_lower_bound(mu_c: np.ndarray, trace_c: float, mus: np.ndarray, traces: np.ndarray) -> np.ndarray:
    """A lower bound of the Fréchet distance from one Gaussian to many, from means and traces only.

    ``Tr((S1 S2)^½)`` is the nuclear norm of ``S1^½ S2^½``, at most ``‖S1^½‖_F ‖S2^½‖_F =
    √(Tr S1 · Tr S2)`` (Hölder), so ``d² ≥ ‖μ1 − μ2‖² + (√Tr S1 − √Tr S2)²``.

    Args:
        mu_c: The candidate's mean ``[D]``; ``trace_c`` its covariance's trace.
        mus: Reference means ``[K, D]``; ``traces`` their covariances' traces ``[K]``.

    Returns:
        ``[K]`` bounds.
    """
    diff = mus - mu_c[None, :]
    return np.einsum("kd,kd->k", diff, diff) + (np.sqrt(max(trace_c, 0.0)) - np.sqrt(np.maximum(traces, 0.0))) ** 2


def frechet_to_many(mu_c: np.ndarray, sigma_c: np.ndarray, mus: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Fréchet distances from one Gaussian to ``K`` others, as :func:`frechet_distance` computes
    them (the candidate's square root once, then one batched symmetric eigen-solve).

    Args:
        mu_c: ``[D]``; sigma_c: ``[D, D]`` (the candidate).
        mus: ``[K, D]``; sigmas: ``[K, D, D]`` (the references).

    Returns:
        ``[K]`` squared distances, each equal to ``frechet_distance(mu_c, sigma_c, mus[k],
        sigmas[k])`` up to float rounding (rounding-level negatives are 0).
    """
    k = mus.shape[0]
    if k == 0:
        return np.zeros(0)
    if k == 1:
        return np.array([frechet_distance(mu_c, sigma_c, mus[0], sigmas[0])])
    w, v = _psd_eigvals(np.asarray(sigma_c, dtype=np.float64))
    sqrt_c = (v * np.sqrt(w)) @ v.T
    sym = (sigmas + np.transpose(sigmas, (0, 2, 1))) / 2.0
    inner = sqrt_c[None] @ sym @ sqrt_c[None]
    inner = (inner + np.transpose(inner, (0, 2, 1))) / 2.0
    wi = np.linalg.eigvalsh(inner)  # [K, D]
    top = np.abs(wi).max(axis=1, keepdims=True)
    wi = np.where(wi > top * inner.shape[1] * np.finfo(np.float64).eps, wi, 0.0)
    diff = mus - mu_c[None]
    traces = np.trace(sigmas, axis1=1, axis2=2)
    value = np.einsum("kd,kd->k", diff, diff) + np.trace(sigma_c) + traces - 2.0 * np.sqrt(wi).sum(axis=1)
    scale = np.einsum("kd,kd->k", diff, diff) + abs(np.trace(sigma_c)) + np.abs(traces)
    return np.where((value < 0) & (value >= -1e-9 * scale), 0.0, value)
