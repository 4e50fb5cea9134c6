"""FAD statistics beyond one number: FAD∞, per-track FAD and bootstrap confidence intervals (of FAD and KAD).

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
from stylecraft.evaluate.kad import (
    DEFAULT_BLOCK_ROWS,
    Bandwidth,
    kernel_audio_distance,
    weighted_kad_replicates,
)

__all__ = [
    "MIN_BOOTSTRAP_UNITS",
    "BootstrapCI",
    "FadInfResult",
    "bootstrap_fad",
    "bootstrap_kad",
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


# Fewer resampling units than this and a percentile interval says little: n units have only
# C(2n-1, n) distinct resamples (35 for 4 files, 6435 for 8), and the replicates repeat a handful
# of values. A side with fewer units is held fixed (the reference) or the interval is refused.
MIN_BOOTSTRAP_UNITS = 8


@dataclasses.dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap confidence interval of FAD or KAD.

    Attributes:
        value: The statistic on the full sets.
        low: Lower bound.
        high: Upper bound.
        level: Confidence level, e.g. 0.95.
        std: Standard deviation of the bootstrap replicates.
        n_boot: Number of replicates.
        unit: What was resampled in the evaluated set: ``"file"`` (whole files or tracks,
            keeping their frames together) or ``"row"`` (single embedding rows, when file
            boundaries are unknown).
        replicates: The replicate values (for plots and further statistics).
        n_units: Resampling units of the evaluated set.
        n_ref_units: Resampling units of the reference set.
        resampled_ref: Whether the reference set was resampled too (else held fixed).
    """

    value: float
    low: float
    high: float
    level: float
    std: float
    n_boot: int
    unit: str
    replicates: list[float]
    n_units: int = 0
    n_ref_units: int = 0
    resampled_ref: bool = True

    @property
    def fad(self) -> float:
        """The statistic on the full sets (named for the FAD interval it first was)."""
        return self.value

    def record(self) -> dict[str, object]:
        """The JSON entry (without the replicates)."""
        return {"level": self.level, "low": self.low, "high": self.high, "std": self.std, "n_boot": self.n_boot,
                "unit": self.unit, "n_units": self.n_units, "n_ref_units": self.n_ref_units,
                "resampled_ref": self.resampled_ref}


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


def _resample_weights(n_rows: int, groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Row multiplicities of one cluster resample (each group drawn with replacement)."""
    pick = np.bincount(rng.integers(0, len(groups), size=len(groups)), minlength=len(groups))
    w = np.zeros(n_rows)
    for g, times in zip(groups, pick, strict=True):
        w[g] = times
    return w


def _check_bootstrap(n_boot: int, level: float, n_units: int, n_ref_units: int, resample_ref: bool, min_units: int) -> None:
    if n_boot < 10:
        raise StylecraftError(f"a bootstrap interval needs at least 10 replicates, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise StylecraftError(f"confidence level must be between 0 and 1, got {level}")
    if n_units < min_units:
        raise StylecraftError(
            f"a bootstrap interval over {n_units} evaluated file(s) says little (it needs at least {min_units} "
            "resampling units: files, or rows of a .npy); add files or leave out the interval"
        )
    if resample_ref and n_ref_units < min_units:
        raise StylecraftError(
            f"the reference set has {n_ref_units} file(s), fewer than the {min_units} a resample needs; "
            "hold it fixed (resample_ref=False) or add reference files"
        )


def _interval(value: float, reps: list[float], level: float, n_boot: int, unit: str, n_units: int,
              n_ref_units: int, resampled_ref: bool) -> BootstrapCI:
    arr = np.array(reps)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(arr, [alpha, 1.0 - alpha])
    return BootstrapCI(value=value, low=float(low), high=float(high), level=level, std=float(arr.std(ddof=1)),
                       n_boot=n_boot, unit=unit, replicates=[float(x) for x in arr], n_units=n_units,
                       n_ref_units=n_ref_units, resampled_ref=resampled_ref)


def bootstrap_fad(
    ref: np.ndarray,
    gen: np.ndarray,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    ref_sizes: Sequence[int] | None = None,
    gen_sizes: Sequence[int] | None = None,
    resample_ref: bool = True,
    min_units: int = MIN_BOOTSTRAP_UNITS,
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
        min_units: Fewest resampling units (files, or rows) a resampled side may have.

    Returns:
        The :class:`BootstrapCI`.

    Raises:
        StylecraftError: For ``n_boot < 10``, a level outside ``(0, 1)``, group sizes that do
            not add up, a resampled side with fewer than ``min_units`` units, or a replicate
            whose Fréchet distance is not a valid number.
    """
    ref = np.asarray(ref, dtype=np.float64)
    gen = np.asarray(gen, dtype=np.float64)
    ref_groups = _groups(ref.shape[0], ref_sizes)
    gen_groups = _groups(gen.shape[0], gen_sizes)
    _check_bootstrap(n_boot, level, len(gen_groups), len(ref_groups), resample_ref, min_units)
    mu_r, s_r = gaussian_stats(ref)
    mu_g, s_g = gaussian_stats(gen)
    full = frechet_distance(mu_r, s_r, mu_g, s_g)
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
    return _interval(full, reps, level, n_boot, unit, len(gen_groups), len(ref_groups), resample_ref)


def bootstrap_kad(
    ref: np.ndarray,
    gen: np.ndarray,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    ref_sizes: Sequence[int] | None = None,
    gen_sizes: Sequence[int] | None = None,
    resample_ref: bool = True,
    min_units: int = MIN_BOOTSTRAP_UNITS,
    bandwidth: Bandwidth = "gen",
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of KAD (kadtk estimator), resampling whole files.

    The kernel's bandwidth is set once, from the full sets (as ``bandwidth`` says), and kept
    for every replicate, so the replicates differ only in the rows they weigh. A resample is
    evaluated as row multiplicities: a row drawn twice is never paired with itself (that pair
    would be the U-statistic's left-out diagonal, not two draws), so duplicated files do not
    inflate the within-set terms.

    Args:
        ref: Reference embeddings ``[N, D]``.
        gen: Evaluated embeddings ``[M, D]``.
        n_boot: Number of bootstrap replicates.
        level: Confidence level in ``(0, 1)``.
        seed: Seed of the resampling.
        ref_sizes: Rows per reference file (``None``: resample rows).
        gen_sizes: Rows per evaluated file (``None``: resample rows).
        resample_ref: Also resample the reference set.
        min_units: Fewest resampling units a resampled side may have.
        bandwidth: As for :func:`~stylecraft.evaluate.kad.kernel_audio_distance`.
        block_rows: Rows per block.

    Returns:
        The :class:`BootstrapCI` of KAD.

    Raises:
        StylecraftError: As :func:`bootstrap_fad`, and as
            :func:`~stylecraft.evaluate.kad.kernel_audio_distance`.
    """
    ref = np.asarray(ref, dtype=np.float64)
    gen = np.asarray(gen, dtype=np.float64)
    ref_groups = _groups(ref.shape[0], ref_sizes)
    gen_groups = _groups(gen.shape[0], gen_sizes)
    _check_bootstrap(n_boot, level, len(gen_groups), len(ref_groups), resample_ref, min_units)
    full = kernel_audio_distance(ref, gen, bandwidth=bandwidth, block_rows=block_rows)
    rng = np.random.default_rng(seed)
    weights: list[tuple[np.ndarray | None, np.ndarray | None]] = []
    for _ in range(n_boot):
        wg = _resample_weights(gen.shape[0], gen_groups, rng)
        wr = _resample_weights(ref.shape[0], ref_groups, rng) if resample_ref else None
        weights.append((wr, wg))
    reps = weighted_kad_replicates(ref, gen, full.bandwidth, weights, block_rows=block_rows)
    unit = "file" if gen_sizes is not None else "row"
    return _interval(full.kad, reps, level, n_boot, unit, len(gen_groups), len(ref_groups), resample_ref)
