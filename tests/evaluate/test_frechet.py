"""Tests for the Fréchet distance and Gaussian fitting."""

from __future__ import annotations

import numpy as np
import pytest

from stylecraft.errors import StylecraftError
from stylecraft.evaluate import frechet
from stylecraft.evaluate.frechet import frechet_distance, frechet_distance_scipy, gaussian_stats


def reference_from_gaussians(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The published formula, written here: |Δμ|² + tr S1 + tr S2 − 2 tr sqrtm(S1 S2)."""
    import scipy.linalg

    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean).real)


def random_gaussian(rng: np.random.Generator, d: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A random mean and a well-conditioned random covariance."""
    a = rng.standard_normal((d, d))
    sigma = a @ a.T / d + 0.1 * np.eye(d)
    mu = rng.standard_normal(d) + shift
    return mu, sigma


@pytest.mark.parametrize("d", [16, 64])
def test_matches_scipy_reference_on_random_gaussians(d: int) -> None:
    rng = np.random.default_rng(d)
    for _ in range(3):
        mu1, s1 = random_gaussian(rng, d)
        mu2, s2 = random_gaussian(rng, d, shift=0.5)
        ours = frechet_distance(mu1, s1, mu2, s2)
        ref = reference_from_gaussians(mu1, s1, mu2, s2)
        assert ours > 0
        assert ours == pytest.approx(ref, rel=1e-6)
        assert frechet_distance_scipy(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_matches_closed_form_for_diagonal_covariances() -> None:
    rng = np.random.default_rng(0)
    d = 32
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.01, 10, d), rng.uniform(0.01, 10, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_identical_gaussians_give_zero() -> None:
    rng = np.random.default_rng(1)
    mu, sigma = random_gaussian(rng, 64)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_rank_deficient_covariances_are_finite_and_close_to_reference() -> None:
    rng = np.random.default_rng(2)
    # 10 samples of dimension 32: both covariances have rank 9.
    x = rng.standard_normal((10, 32))
    y = rng.standard_normal((10, 32)) * 1.5 + 0.3
    mu1, s1 = gaussian_stats(x)
    mu2, s2 = gaussian_stats(y)
    assert np.linalg.matrix_rank(s1) == 9
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(ours) and ours > 0
    ref = reference_from_gaussians(mu1, s1, mu2, s2)
    if np.isfinite(ref):
        assert ours == pytest.approx(ref, rel=1e-4)


def test_rank_deficient_self_distance_is_zero_not_negative() -> None:
    rng = np.random.default_rng(3)
    mu, sigma = gaussian_stats(rng.standard_normal((10, 32)) * rng.uniform(0.01, 100, 32))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    # Zero covariances (a constant set) are the extreme singular case.
    zeros = np.zeros((32, 32))
    assert frechet_distance(mu, zeros, mu, zeros) == 0.0
    assert frechet_distance(mu, zeros, mu + 1.0, zeros) == pytest.approx(32.0)


def test_small_negative_rounding_is_clamped_but_large_negative_raises() -> None:
    assert frechet._finalize(-1e-12, scale=10.0) == 0.0
    with pytest.raises(StylecraftError, match="negative"):
        frechet._finalize(-1e-3, scale=10.0)
    # A "covariance" with a negative trace cannot give a distance: refuse, never return < 0.
    d = 4
    with pytest.raises(StylecraftError, match="negative"):
        frechet_distance(np.zeros(d), np.zeros((d, d)), np.zeros(d), -np.eye(d))


def test_shape_mismatch_and_non_finite_inputs_raise() -> None:
    mu, sigma = np.zeros(4), np.eye(4)
    with pytest.raises(StylecraftError, match="4 vs 5"):
        frechet_distance(mu, sigma, np.zeros(5), np.eye(5))
    with pytest.raises(StylecraftError, match="sigma2"):
        frechet_distance(mu, sigma, mu, np.eye(3))
    with pytest.raises(StylecraftError, match="NaN"):
        frechet_distance(mu, sigma, np.array([0, 0, 0, np.nan]), sigma)
    with pytest.raises(StylecraftError):
        frechet_distance_scipy(mu, sigma, np.zeros(5), np.eye(5))


def test_gaussian_stats_matches_numpy_and_is_float64() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    mu, sigma = gaussian_stats(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    assert mu.shape == (6,) and sigma.shape == (6, 6)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, ddof=1))
    # One dimension still gives a 2-D covariance.
    _, s1 = gaussian_stats(x[:, :1])
    assert s1.shape == (1, 1)


@pytest.mark.parametrize(
    ("emb", "message"),
    [
        (np.zeros(10), "2-D"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.zeros((1, 8)), "at least 2"),
        (np.zeros((5, 0)), "0 dimensions"),
        (np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, np.nan]]), "NaN or inf values in 2 of 3 rows"),
    ],
)
def test_gaussian_stats_rejects_bad_input(emb: np.ndarray, message: str) -> None:
    with pytest.raises(StylecraftError, match=message):
        gaussian_stats(emb)
