"""FAD∞, per-track FAD and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from reference_metrics import fad_reference

from stylecraft.errors import StylecraftError
from stylecraft.evaluate.frechet import gaussian_stats
from stylecraft.evaluate.stats import MIN_BOOTSTRAP_UNITS, bootstrap_fad, fad_inf, per_track_fad


def _gauss(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    return rng.normal(size=(n, d)) + shift


def test_fad_inf_extrapolates_towards_the_population_value():
    rng = np.random.default_rng(0)
    d = 32
    ref = _gauss(rng, 50000, d, 0.0)
    gen = _gauss(rng, 3000, d, 0.25)
    mu, sigma = gaussian_stats(ref)
    res = fad_inf(mu, sigma, gen, steps=10, min_n=100, seed=1)
    assert [p[0] for p in res.points][0] == 100 and res.points[-1][0] == 3000
    # Population FAD: |Δμ|² = 32 * 0.0625 = 2 (same covariances). Small-n FAD is biased upwards;
    # the intercept removes most of that bias.
    assert res.slope > 0
    assert abs(res.score - 2.0) < abs(res.points[0][1] - 2.0)
    assert res.r2 is not None and 0.5 < res.r2 <= 1.0
    again = fad_inf(mu, sigma, gen, steps=10, min_n=100, seed=1)
    assert again == res


def test_fad_inf_refuses_too_few_rows():
    rng = np.random.default_rng(0)
    mu, sigma = gaussian_stats(_gauss(rng, 100, 4, 0))
    with pytest.raises(StylecraftError, match="min_n=500"):
        fad_inf(mu, sigma, _gauss(rng, 100, 4, 0), min_n=500)
    with pytest.raises(StylecraftError, match="steps"):
        fad_inf(mu, sigma, _gauss(rng, 100, 4, 0), steps=1, min_n=10)


def test_per_track_fad_scores_each_track_and_names_skips():
    rng = np.random.default_rng(0)
    mu, sigma = gaussian_stats(_gauss(rng, 500, 4, 0))
    tracks = {"near": _gauss(rng, 200, 4, 0.0), "far": _gauss(rng, 200, 4, 3.0), "short": _gauss(rng, 1, 4, 0)}
    scores, skipped = per_track_fad(mu, sigma, tracks)
    assert set(scores) == {"near", "far"} and scores["far"] > scores["near"] + 20
    ref = _gauss(np.random.default_rng(0), 500, 4, 0)  # the same draw as the reference Gaussian above
    assert scores["far"] == pytest.approx(fad_reference(ref, tracks["far"]), rel=1e-9)
    assert scores["near"] == pytest.approx(fad_reference(ref, tracks["near"]), rel=1e-9)
    assert "short" in skipped and "1 embedding row" in skipped["short"]


def test_bootstrap_interval_brackets_the_estimate_and_widens_with_file_resampling():
    rng = np.random.default_rng(0)
    ref = _gauss(rng, 600, 4, 0.0)
    # 20 "files" of 30 rows, each with its own offset: rows within a file are correlated.
    offsets = rng.normal(scale=1.0, size=(20, 1, 4))
    gen = (rng.normal(size=(20, 30, 4)) * 0.3 + offsets + 0.5).reshape(600, 4)
    rows = bootstrap_fad(ref, gen, n_boot=100, seed=3)
    files = bootstrap_fad(ref, gen, n_boot=100, seed=3, gen_sizes=[30] * 20, ref_sizes=None)
    for ci in (rows, files):
        assert ci.fad == pytest.approx(fad_reference(ref, gen), rel=1e-9)
        assert ci.low < ci.fad < ci.high
        assert len(ci.replicates) == 100
        # The bounds are the 2.5% and 97.5% points of the replicates.
        assert ci.low == pytest.approx(np.quantile(ci.replicates, 0.025)) and ci.high == pytest.approx(np.quantile(ci.replicates, 0.975))
    assert (files.n_units, files.n_ref_units) == (20, 600) and rows.n_units == 600
    assert files.unit == "file" and rows.unit == "row"
    assert (files.high - files.low) > 2 * (rows.high - rows.low)
    assert bootstrap_fad(ref, gen, n_boot=100, seed=3) == rows


def test_bootstrap_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    a, b = _gauss(rng, 50, 2, 0), _gauss(rng, 50, 2, 1)
    with pytest.raises(StylecraftError, match="replicates"):
        bootstrap_fad(a, b, n_boot=5)
    with pytest.raises(StylecraftError, match="level"):
        bootstrap_fad(a, b, level=1.5)
    with pytest.raises(StylecraftError, match="partition"):
        bootstrap_fad(a, b, gen_sizes=[10, 10])


def test_bootstrap_refuses_too_few_files_and_can_hold_the_reference_fixed():
    rng = np.random.default_rng(1)
    ref, gen = _gauss(rng, 80, 2, 0), _gauss(rng, 40, 2, 1)
    few = [10] * 4
    with pytest.raises(StylecraftError, match=f"over 4 evaluated file.*at least {MIN_BOOTSTRAP_UNITS}"):
        bootstrap_fad(ref, gen, n_boot=20, gen_sizes=few)
    with pytest.raises(StylecraftError, match="reference set has 4 file"):
        bootstrap_fad(gen, ref, n_boot=20, ref_sizes=few, gen_sizes=[10] * 8)
    held = bootstrap_fad(gen, ref, n_boot=20, ref_sizes=few, gen_sizes=[10] * 8, resample_ref=False)
    assert not held.resampled_ref and held.record()["n_ref_units"] == 4
