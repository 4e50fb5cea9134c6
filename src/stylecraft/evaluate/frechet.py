"""Fréchet distance between two Gaussians fitted to embedding sets.

The Fréchet Audio Distance (FAD) is the Fréchet (2-Wasserstein) distance between two
multivariate Gaussians ``N(mu1, S1)`` and ``N(mu2, S2)``::

    d² = ||mu1 - mu2||² + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^½)

The reference tools (``frechet-audio-distance``, ``fadtk``, ``pytorch-fid``) evaluate the last
term with ``scipy.linalg.sqrtm`` on the non-symmetric product ``S1 S2``. That product is
badly conditioned when a covariance is singular (fewer samples than dimensions, or constant
features), which yields complex or NaN results and, after rounding, negative distances.
:func:`frechet_distance` uses an equivalent symmetric formulation instead; the classic one is
kept as :func:`frechet_distance_scipy` for parity tests.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from stylecraft.errors import StylecraftError

__all__ = ["frechet_distance", "frechet_distance_scipy", "gaussian_stats"]

# A result below zero by less than this fraction of the distance's scale
# (||mu1-mu2||² + Tr S1 + Tr S2) is rounding noise and is reported as 0.0.
_NEGATIVE_TOLERANCE = 1e-9


def gaussian_stats(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit a Gaussian to a set of embeddings.

    The covariance is the unbiased sample covariance (``ddof=1``), as in
    ``frechet-audio-distance`` and ``fadtk``, so that distances are comparable with theirs.

    Args:
        emb: Embeddings, shape ``[N, D]`` with ``N >= 2``, one row per embedding frame.

    Returns:
        ``(mu, sigma)``: float64 mean of shape ``[D]`` and covariance of shape ``[D, D]``.

    Raises:
        StylecraftError: If ``emb`` is not 2-D, has fewer than 2 rows or no columns, or holds
            NaN/inf values.
    """
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise StylecraftError(f"embeddings must be a 2-D array [N, D], got shape {emb.shape}")
    n, d = emb.shape
    if n < 2:
        raise StylecraftError(f"need at least 2 embedding rows to estimate a covariance, got {n}")
    if d < 1:
        raise StylecraftError("embeddings have 0 dimensions (shape [N, 0])")
    if not np.issubdtype(emb.dtype, np.number) or np.iscomplexobj(emb):
        raise StylecraftError(f"embeddings must be real numbers, got dtype {emb.dtype}")
    emb = emb.astype(np.float64, copy=False)
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=1).sum())
        raise StylecraftError(f"embeddings hold NaN or inf values in {bad} of {n} rows")
    mu = emb.mean(axis=0)
    # atleast_2d: np.cov returns a 0-d array when D == 1.
    sigma = np.atleast_2d(np.cov(emb, rowvar=False, ddof=1))
    return mu, sigma


def _check_gaussians(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and finiteness; return float64 copies with 1-D means and 2-D covariances."""
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise StylecraftError(f"means must be 1-D, got shapes {mu1.shape} and {mu2.shape}")
    if mu1.shape != mu2.shape:
        raise StylecraftError(
            f"mean dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]} "
            "(were both sets embedded with the same model?)"
        )
    d = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (d, d):
            raise StylecraftError(f"{name} has shape {sigma.shape}, expected ({d}, {d}) to match the means")
    for name, arr in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise StylecraftError(f"{name} holds NaN or inf values")
    return mu1, sigma1, mu2, sigma2


def _psd_eigvals(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decompose a symmetric PSD matrix, zeroing eigenvalues below its numerical rank.

    Eigenvalues that are truly zero come back from ``eigh`` as ``±eps * λmax``. Clipping only
    the negative ones would leave the positive noise, and its square root (``~1e-8 * √λmax``
    each, times the number of null directions) is large enough to push a zero distance
    visibly below zero. The cut-off is the usual numerical-rank tolerance
    (``λmax * D * eps``, as in ``numpy.linalg.matrix_rank``).
    """
    mat = (mat + mat.T) / 2.0  # remove asymmetry left by rounding, so eigh sees what we mean
    w, v = np.linalg.eigh(mat)
    top = float(np.max(np.abs(w))) if w.size else 0.0
    tol = top * mat.shape[0] * np.finfo(np.float64).eps
    w = np.where(w > tol, w, 0.0)
    return w, v


def _finalize(value: float, scale: float) -> float:
    """Turn rounding-level negatives into 0.0; refuse anything else that is not a distance."""
    if not np.isfinite(value):
        raise StylecraftError(
            f"Fréchet distance is not finite ({value}); the covariances are ill-conditioned"
        )
    if value < 0.0:
        if value >= -_NEGATIVE_TOLERANCE * scale:
            return 0.0
        raise StylecraftError(
            f"Fréchet distance came out negative ({value:.6g}, scale {scale:.6g}); "
            "the covariances are too ill-conditioned for a reliable result"
        )
    return float(value)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``, robust to singular covariances.

    ``Tr((S1 S2)^½)`` is computed as ``Σ √λ_i`` over the eigenvalues of the symmetric PSD
    matrix ``S1^½ S2 S1^½``, which is similar to ``S1 S2`` and therefore has the same
    eigenvalues. Working with symmetric matrices keeps every step real and well defined
    even when ``N < D`` makes the covariances rank deficient, where ``sqrtm(S1 @ S2)``
    returns complex or NaN values.

    Args:
        mu1: Mean of the first Gaussian, shape ``[D]``.
        sigma1: Covariance of the first Gaussian, shape ``[D, D]`` (symmetric PSD).
        mu2: Mean of the second Gaussian, shape ``[D]``.
        sigma2: Covariance of the second Gaussian, shape ``[D, D]`` (symmetric PSD).

    Returns:
        The squared Fréchet distance (the quantity the FAD literature calls "FAD"), ``>= 0``.

    Raises:
        StylecraftError: If shapes do not match, inputs are not finite, or the result is
            negative beyond rounding noise (``< -1e-9 * scale``).
    """
    mu1, sigma1, mu2, sigma2 = _check_gaussians(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    mean_term = float(diff @ diff)
    tr1 = float(np.trace(sigma1))
    tr2 = float(np.trace(sigma2))

    w1, v1 = _psd_eigvals(sigma1)
    sqrt_s1 = (v1 * np.sqrt(w1)) @ v1.T
    inner = sqrt_s1 @ ((sigma2 + sigma2.T) / 2.0) @ sqrt_s1
    w_inner, _ = _psd_eigvals(inner)
    tr_covmean = float(np.sqrt(w_inner).sum())

    value = mean_term + tr1 + tr2 - 2.0 * tr_covmean
    return _finalize(value, scale=mean_term + abs(tr1) + abs(tr2))


def frechet_distance_scipy(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
) -> float:
    """Classic Fréchet distance via ``scipy.linalg.sqrtm(S1 @ S2)``, as in the reference tools.

    Mirrors ``frechet-audio-distance`` / ``fadtk`` / ``pytorch-fid``: if the matrix square root
    is not finite, ``eps * I`` is added to both covariances and it is retried; a complex result
    with a non-negligible imaginary diagonal is an error, otherwise the real part is used.
    Unlike :func:`frechet_distance` the result is returned as computed (it may be slightly
    negative). Kept for parity tests; prefer :func:`frechet_distance`.

    Args:
        mu1: Mean of the first Gaussian, shape ``[D]``.
        sigma1: Covariance of the first Gaussian, shape ``[D, D]``.
        mu2: Mean of the second Gaussian, shape ``[D]``.
        sigma2: Covariance of the second Gaussian, shape ``[D, D]``.
        eps: Diagonal offset used on the retry.

    Returns:
        The squared Fréchet distance as the reference formula computes it.

    Raises:
        StylecraftError: If shapes do not match, inputs are not finite, or the square root has
            a significant imaginary component.
    """
    mu1, sigma1, mu2, sigma2 = _check_gaussians(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # sqrtm warns about singular input; the non-finite check below handles that case.
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = float(np.max(np.abs(covmean.imag)))
            raise StylecraftError(f"matrix square root has an imaginary component {m:.3g}")
        covmean = covmean.real
    tr_covmean = float(np.trace(covmean))
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
