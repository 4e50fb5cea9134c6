"""Independent reference implementations of FAD and KAD for the evaluate tests.

Written from the published formulas with numpy and scipy only (nothing from stylecraft), the
straightforward way: ``scipy.linalg.sqrtm`` of ``S1 S2`` for the Fréchet distance, and whole
kernel matrices from ``scipy.spatial.distance`` for KAD. Tests compare stylecraft's blocked,
eigenvalue-based code with these instead of with itself.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist, pdist


def fad_reference(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|² + tr(Sa) + tr(Sb) - 2 tr(sqrtm(Sa Sb))`` with unbiased covariances."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean).real)


def lower_median_distance(x: np.ndarray) -> float:
    """The lower median of all pairwise Euclidean distances (``torch.median`` on ``pdist``)."""
    d = np.sort(pdist(np.asarray(x, dtype=np.float64)))
    return float(d[(d.size - 1) // 2])


def kad_reference(
    x: np.ndarray, y: np.ndarray, bandwidth: float | None = None, cross_diagonal: bool = True,
    wx: np.ndarray | None = None, wy: np.ndarray | None = None,
) -> float:
    """KAD as the KAD paper / kadtk define it, from whole kernel matrices.

    ``100 · (mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 · mean_{i,j} k(x_i, y_j))`` with
    ``k = exp(−‖a−b‖² / (2h² + 1e-8))`` and ``h`` the lower median distance of ``y`` unless given.
    ``cross_diagonal=False`` leaves the pairs ``(x_i, y_i)`` out of the cross mean (equal sizes).
    Weights are row multiplicities; pairs of a row with itself are left out.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    h = lower_median_distance(y) if bandwidth is None else bandwidth
    gamma = 1.0 / (2.0 * h * h + 1e-8)
    kxx = np.exp(-gamma * cdist(x, x, "sqeuclidean"))
    kyy = np.exp(-gamma * cdist(y, y, "sqeuclidean"))
    kxy = np.exp(-gamma * cdist(x, y, "sqeuclidean"))
    wx = np.ones(x.shape[0]) if wx is None else np.asarray(wx, dtype=np.float64)
    wy = np.ones(y.shape[0]) if wy is None else np.asarray(wy, dtype=np.float64)
    np.fill_diagonal(kxx, 0.0)
    np.fill_diagonal(kyy, 0.0)
    mxx = wx @ kxx @ wx / (wx.sum() ** 2 - (wx**2).sum())
    myy = wy @ kyy @ wy / (wy.sum() ** 2 - (wy**2).sum())
    if cross_diagonal:
        mxy = wx @ kxy @ wy / (wx.sum() * wy.sum())
    else:
        n = x.shape[0]
        mxy = (kxy.sum() - np.trace(kxy)) / (n * (n - 1))
    return float(100.0 * (mxx + myy - 2.0 * mxy))


def gaussian_mmd2(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray, h: float) -> float:
    """Population KAD (×100 MMD²) between two Gaussians for the kernel ``exp(−‖a−b‖² / (2h²))``.

    For ``a ~ N(m1, C1)``, ``b ~ N(m2, C2)`` independent, ``a − b ~ N(m1 − m2, C1 + C2)`` and
    ``E exp(−γ‖a−b‖²) = det(I + 2γ(C1+C2))^(−1/2) exp(−γ δᵀ (I + 2γ(C1+C2))⁻¹ δ)``.
    """
    gamma = 1.0 / (2.0 * h * h)
    d = mu1.shape[0]

    def expected_kernel(m: np.ndarray, c: np.ndarray) -> float:
        a = np.eye(d) + 2.0 * gamma * c
        return float(np.linalg.det(a) ** -0.5 * np.exp(-gamma * m @ np.linalg.solve(a, m)))

    zero = np.zeros(d)
    return 100.0 * (expected_kernel(zero, 2 * cov1) + expected_kernel(zero, 2 * cov2)
                    - 2.0 * expected_kernel(mu1 - mu2, cov1 + cov2))
