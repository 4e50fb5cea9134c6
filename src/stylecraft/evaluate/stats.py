"""FAD statistics beyond one number: FAD∞, per-track FAD and bootstrap confidence intervals.

All functions take embeddings ``[N, D]`` (or a reference Gaussian) and use
:func:`~stylecraft.evaluate.frechet.frechet_distance`, so they inherit its float64 arithmetic,
its handling of singular covariances and its typed errors: nothing here returns a sentinel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from stylecraft.errors import StylecraftError
from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats

__all__ = [
    "BootstrapCI",
    "FadInfResult",
    "bootstrap_fad",
    "fad_inf",
    "per_track_fad",
]


@dataclasses.dataclass(frozen=True)
class FadInfResult:
    """FAD extrapolated to infinitely many samples (Chung et al. / fadtk ``score_inf``).

    Attributes:
        score: The intercept of the line ``FAD(n) = slope / n + score``: FAD∞.
        slope: Its slope.
        r2: Coefficient of determination of the fit; a low value means the points do not lie
            on a line in ``1/n`` and FAD∞ should not be trusted. ``None`` when every point has
            the same FAD (R² is undefined then).
        points: ``(n, FAD(n))`` for every sample size used.
    """

    score: float
    slope: float
    r2: float | None
    points: list[tuple[int, float]]


def fad_inf(
    mu_ref: np.ndarray,
    sigma_ref: np.ndarray,
    gen: np.ndarray,
    steps: int = 25,
    min_n: int = 500,
    seed: int = 0,
) -> FadInfResult:
    """FAD∞ exactly as fadtk 1.1.0's ``FrechetAudioDistance.score_inf`` computes it.

    For ``steps`` sample sizes ``n`` evenly spaced (``int(np.linspace(min_n, N, steps))``),
    ``n`` rows of ``gen`` are drawn with replacement, FAD against the reference Gaussian is
    computed, and a least-squares line is fitted to ``FAD`` against ``1/n``; its intercept is
    FAD∞. The draws use ``np.random.RandomState(seed).choice`` in the same order as fadtk, so
    with the same seed given to ``np.random.seed`` the two agree draw for draw.

    Args:
        mu_ref: Reference mean ``[D]``.
        sigma_ref: Reference covariance ``[D, D]``.
        gen: Evaluated embeddings ``[N, D]``.
        steps: Number of sample sizes.
        min_n: Smallest sample size.
        seed: Seed of the row draws.

    Returns:
        The :class:`FadInfResult`.

    Raises:
        StylecraftError: If ``steps < 2``, ``min_n < 2``, or ``gen`` has fewer than ``min_n``
            rows (fadtk would silently fit a line through decreasing ``n``).
    """
    gen = np.asarray(gen, dtype=np.float64)
    if gen.ndim != 2:
        raise StylecraftError(f"embeddings must be a 2-D array [N, D], got shape {gen.shape}")
    if steps < 2:
        raise StylecraftError(f"FAD-inf needs at least 2 sample sizes, got steps={steps}")
    if min_n < 2:
        raise StylecraftError(f"FAD-inf minimum sample size must be at least 2, got {min_n}")
    max_n = gen.shape[0]
    if max_n < min_n:
        raise StylecraftError(
            f"FAD-inf needs at least min_n={min_n} embedding rows, the evaluated set has {max_n}; "
            "lower the minimum sample size or add audio"
        )
    ns = [int(n) for n in np.linspace(min_n, max_n, steps)]
    rng = np.random.RandomState(seed)
    points: list[tuple[int, float]] = []
    for n in ns:
        idx = rng.choice(max_n, size=n, replace=True)
        mu, sigma = gaussian_stats(gen[idx])
        points.append((n, frechet_distance(mu_ref, sigma_ref, mu, sigma)))
    ys = np.array([p[1] for p in points])
    xs = 1.0 / np.array(ns, dtype=np.float64)
    slope, intercept = np.polyfit(xs, ys, 1)
    ss_tot = float(np.sum((ys - ys.mean()) ** 2))
    ss_res = float(np.sum((ys - (slope * xs + intercept)) ** 2))
    r2 = None if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return FadInfResult(score=float(intercept), slope=float(slope), r2=r2, points=points)


def per_track_fad(
    mu_ref: np.ndarray, sigma_ref: np.ndarray, tracks: Mapping[str, np.ndarray]
) -> tuple[dict[str, float], dict[str, str]]:
    """FAD of each track's own embedding Gaussian against the reference (fadtk ``score_individual``).

    Args:
        mu_ref: Reference mean ``[D]``.
        sigma_ref: Reference covariance ``[D, D]``.
        tracks: Track name -> its embeddings ``[n, D]``.

    Returns:
        ``(scores, skipped)``: FAD per track, and a reason per track that could not be scored
        (fewer than 2 embedding rows, i.e. shorter than two embedding windows).
    """
    scores: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name, emb in tracks.items():
        emb = np.asarray(emb)
        if emb.ndim != 2 or emb.shape[0] < 2:
            skipped[name] = f"{emb.shape[0] if emb.ndim == 2 else 0} embedding row(s); per-track FAD needs 2"
            continue
        mu, sigma = gaussian_stats(emb)
        scores[name] = frechet_distance(mu_ref, sigma_ref, mu, sigma)
    return scores, skipped


@dataclasses.dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap confidence interval of FAD.

    Attributes:
        fad: FAD of the full sets.
        low: Lower bound.
        high: Upper bound.
        level: Confidence level, e.g. 0.95.
        std: Standard deviation of the bootstrap replicates.
        n_boot: Number of replicates.
        unit: What was resampled: ``"file"`` (whole files, keeping their frames together) or
            ``"row"`` (single embedding rows, when file boundaries are unknown).
        replicates: The replicate values (for plots and further statistics).
    """

    fad: float
    low: float
    high: float
    level: float
    std: float
    n_boot: int
    unit: str
    replicates: list[float]


def _groups(n_rows: int, sizes: Sequence[int] | None) -> list[np.ndarray]:
    if sizes is None:
        return [np.array([i]) for i in range(n_rows)]
    if sum(sizes) != n_rows or any(s < 1 for s in sizes):
        raise StylecraftError(f"group sizes {list(sizes)} do not partition {n_rows} rows")
    bounds = np.cumsum([0, *sizes])
    return [np.arange(bounds[i], bounds[i + 1]) for i in range(len(sizes))]


def _resample(emb: np.ndarray, groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    pick = rng.integers(0, len(groups), size=len(groups))
    return emb[np.concatenate([groups[i] for i in pick])]


def bootstrap_fad(
    ref: np.ndarray,
    gen: np.ndarray,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    ref_sizes: Sequence[int] | None = None,
    gen_sizes: Sequence[int] | None = None,
    resample_ref: bool = True,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of FAD.

    Frames of one file are strongly correlated, so when the per-file row counts are given the
    bootstrap resamples whole files (a cluster bootstrap); resampling single rows would treat
    them as independent and give intervals that are far too narrow.

    Args:
        ref: Reference embeddings ``[N, D]``.
        gen: Evaluated embeddings ``[M, D]``.
        n_boot: Number of bootstrap replicates.
        level: Confidence level in ``(0, 1)``.
        seed: Seed of the resampling.
        ref_sizes: Rows per reference file, in order (``None``: resample rows).
        gen_sizes: Rows per evaluated file, in order (``None``: resample rows).
        resample_ref: Also resample the reference set (both sets are samples); ``False``
            treats the reference Gaussian as fixed.

    Returns:
        The :class:`BootstrapCI`.

    Raises:
        StylecraftError: For ``n_boot < 10``, a level outside ``(0, 1)``, group sizes that do
            not add up, or a replicate whose Fréchet distance is not a valid number.
    """
    if n_boot < 10:
        raise StylecraftError(f"a bootstrap interval needs at least 10 replicates, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise StylecraftError(f"confidence level must be between 0 and 1, got {level}")
    ref = np.asarray(ref, dtype=np.float64)
    gen = np.asarray(gen, dtype=np.float64)
    mu_r, s_r = gaussian_stats(ref)
    mu_g, s_g = gaussian_stats(gen)
    full = frechet_distance(mu_r, s_r, mu_g, s_g)
    ref_groups = _groups(ref.shape[0], ref_sizes)
    gen_groups = _groups(gen.shape[0], gen_sizes)
    unit = "file" if gen_sizes is not None else "row"
    rng = np.random.default_rng(seed)
    reps: list[float] = []
    for _ in range(n_boot):
        g = _resample(gen, gen_groups, rng)
        if g.shape[0] < 2:
            g = gen  # a draw of one single-row file has no covariance; keep the full set then
        mu_b, s_b = gaussian_stats(g)
        if resample_ref:
            r = _resample(ref, ref_groups, rng)
            if r.shape[0] < 2:
                r = ref
            mu_a, s_a = gaussian_stats(r)
        else:
            mu_a, s_a = mu_r, s_r
        reps.append(frechet_distance(mu_a, s_a, mu_b, s_b))
    arr = np.array(reps)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(arr, [alpha, 1.0 - alpha])
    return BootstrapCI(
        fad=full,
        low=float(low),
        high=float(high),
        level=level,
        std=float(arr.std(ddof=1)),
        n_boot=n_boot,
        unit=unit,
        replicates=[float(x) for x in arr],
    )
