"""Kernel Audio Distance: the blocked float64 computation against a whole-matrix reference, its
options, KAD∞, per-track KAD, its bootstrap, and how it behaves as the sample grows (against FAD)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from reference_metrics import fad_reference, gaussian_mmd2, kad_reference, lower_median_distance

from stylecraft.errors import StylecraftError
from stylecraft.evaluate import kad as kad_mod
from stylecraft.evaluate.kad import kad_inf, kernel_audio_distance, median_pairwise_distance, per_track_kad
from stylecraft.evaluate.stats import bootstrap_kad


def _mixed(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


@pytest.mark.parametrize(("m", "n", "d", "block"), [(10, 12, 8, 2048), (150, 90, 16, 7), (300, 300, 64, 64), (40, 500, 3, 33)])
def test_matches_the_whole_matrix_reference(m, n, d, block):
    rng = np.random.default_rng(m + n + d)
    x, y = _mixed(rng, m, d), _mixed(rng, n, d, 0.3)
    res = kernel_audio_distance(x, y, block_rows=block)
    assert res.kad == pytest.approx(kad_reference(x, y), rel=1e-10)
    assert res.bandwidth == pytest.approx(lower_median_distance(y), rel=1e-12)
    assert res.bandwidth_from == "gen" and (res.n_ref, res.n_gen) == (m, n)
    # Blocks change nothing but rounding.
    assert kernel_audio_distance(x, y, block_rows=5).kad == pytest.approx(res.kad, rel=1e-12)


def test_options_fixed_and_reference_bandwidth_and_unbiased_estimator():
    rng = np.random.default_rng(1)
    x, y = _mixed(rng, 200, 12), _mixed(rng, 200, 12, 0.2)
    assert kernel_audio_distance(x, y, bandwidth=2.5).kad == pytest.approx(kad_reference(x, y, 2.5), rel=1e-10)
    ref_h = lower_median_distance(x)
    res = kernel_audio_distance(x, y, bandwidth="ref")
    assert res.bandwidth_from == "ref" and res.kad == pytest.approx(kad_reference(x, y, ref_h), rel=1e-10)
    unbiased = kernel_audio_distance(x, y, estimator="unbiased")
    assert unbiased.kad == pytest.approx(kad_reference(x, y, cross_diagonal=False), rel=1e-10)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(StylecraftError, match="positive"):
            kernel_audio_distance(x, y, bandwidth=bad)
    with pytest.raises(StylecraftError, match="estimator"):
        kernel_audio_distance(x, y, estimator="biased")  # type: ignore[arg-type]


def test_a_set_against_itself_is_negative_by_kadtk_and_zero_unbiased():
    rng = np.random.default_rng(2)
    x = _mixed(rng, 120, 10)
    res = kernel_audio_distance(x, x.copy())
    # The cross term counts each row with itself (kernel 1): KAD = 200 (mean_{i≠j} k − 1) / n < 0.
    assert res.kad < 0 and res.kad == pytest.approx(200 * (res.k_ref - 1) / 120, rel=1e-10)
    assert kernel_audio_distance(x, x.copy(), estimator="unbiased").kad == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_are_one_line_errors():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 4))
    with pytest.raises(StylecraftError, match="1 embedding row"):
        kernel_audio_distance(x, x[:1])
    with pytest.raises(StylecraftError, match="D=4.*D=3"):
        kernel_audio_distance(x, x[:, :3])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(StylecraftError, match="NaN"):
        kernel_audio_distance(x, bad)


def test_exact_median_by_radix_selection(monkeypatch):
    rng = np.random.default_rng(4)
    x = _mixed(rng, 220, 6)
    x[100:160] = x[:60]  # duplicated rows: exact-zero distances among the candidates
    expected = lower_median_distance(x)
    assert median_pairwise_distance(x) == pytest.approx(expected, rel=1e-12)
    for limit in (4000, 50):  # one gathering pass after the histogram, or all four 16-bit passes
        monkeypatch.setattr(kad_mod, "_SELECT_LIMIT", limit)
        assert median_pairwise_distance(x, block_rows=37) == pytest.approx(expected, rel=1e-12)
    rows = kad_mod._Rows.make(*(lambda t: (t, t.mean(dim=0)))(torch.as_tensor(x)))
    k = (220 * 219 // 2 - 1) // 2
    assert np.sqrt(kad_mod._radix_select(rows, k, 37)) == pytest.approx(expected, rel=1e-12)
    zeros = np.zeros((40, 3))  # every distance is exactly 0: the bins never narrow it, the radix search does
    assert median_pairwise_distance(zeros, block_rows=16) == 0.0


def test_kad_of_two_draws_from_one_distribution_goes_to_zero_while_fad_stays_biased():
    """KAD's estimator is unbiased for independent sets; FAD's is biased upwards at every size."""
    rng = np.random.default_rng(5)
    d = 24
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    kads, fads = {}, {}
    for n in (40, 160, 640):
        k, f = [], []
        for _ in range(16):
            a = rng.normal(size=(n, d)) @ mix
            b = rng.normal(size=(n, d)) @ mix
            k.append(kernel_audio_distance(a, b, bandwidth=4.0).kad)  # one kernel for every n
            f.append(fad_reference(a, b))
        kads[n], fads[n] = np.array(k), np.array(f)
    for n in kads:
        se = kads[n].std(ddof=1) / 4
        assert abs(kads[n].mean()) < 3 * se  # no bias at any size
        assert fads[n].mean() > 10 * fads[n].std(ddof=1) / 4  # FAD is clearly above its true value 0
    # KAD's values close in on 0 as n grows (their spread shrinks like 1/n), around 0 at every n;
    # FAD's mean at n near D is far from its true value 0 and is all bias.
    assert np.abs(kads[640]).max() < np.abs(kads[40]).max() / 6
    assert (fads[40] > 0).all() and fads[40].mean() > 10 * fads[640].mean()


def test_kad_inf_follows_kadtk_score_inf():
    rng = np.random.default_rng(6)
    ref, gen = _mixed(rng, 300, 8), _mixed(rng, 400, 8, 0.2)
    res = kad_inf(ref, gen, steps=5, min_n=100, seed=9)
    draws = np.random.RandomState(9)
    for n, value in res.points:
        idx = draws.choice(400, size=n, replace=True)
        assert value == pytest.approx(kad_reference(ref, gen[idx]), rel=1e-9)
    ns = np.array([p[0] for p in res.points], dtype=float)
    ys = np.array([p[1] for p in res.points])
    slope, intercept = np.polyfit(1 / ns, ys, 1)
    assert res.score == pytest.approx(intercept, rel=1e-12) and res.slope == pytest.approx(slope, rel=1e-12)
    with pytest.raises(StylecraftError, match="min_n=500"):
        kad_inf(ref, gen, min_n=500)


def test_per_track_kad_uses_each_tracks_own_bandwidth_and_names_skips():
    rng = np.random.default_rng(7)
    ref = _mixed(rng, 200, 6)
    tracks = {"near": _mixed(rng, 60, 6), "far": _mixed(rng, 60, 6, 2.0), "short": _mixed(rng, 1, 6)}
    scores, skipped = per_track_kad(ref, tracks)
    assert set(scores) == {"near", "far"} and scores["far"] > scores["near"]
    assert scores["far"] == pytest.approx(kad_reference(ref, tracks["far"]), rel=1e-10)
    assert "1 embedding row" in skipped["short"]


def test_weighted_sets_equal_copies_with_self_pairs_left_out():
    rng = np.random.default_rng(8)
    x, y = _mixed(rng, 30, 5), _mixed(rng, 25, 5, 0.4)
    wx, wy = rng.integers(0, 3, 30).astype(float), rng.integers(0, 3, 25).astype(float)
    got = kernel_audio_distance(x, y, bandwidth=2.0, ref_weights=wx, gen_weights=wy).kad
    assert got == pytest.approx(kad_reference(x, y, 2.0, wx=wx, wy=wy), rel=1e-10)
    got_cached = kad_mod.weighted_kad_replicates(x, y, 2.0, [(wx, wy)])[0]
    got_blocked = kad_mod.weighted_kad_replicates(x, y, 2.0, [(wx, wy)], max_matrix_bytes=0)[0]
    assert got_cached == pytest.approx(got, rel=1e-12) and got_blocked == pytest.approx(got, rel=1e-12)


def test_bootstrap_interval_of_kad_covers_the_population_value():
    """Over repeated experiments a 90% interval should contain the true (population) KAD about 90% of the time."""
    rng = np.random.default_rng(9)
    d, h = 3, 2.0
    cov1, cov2 = np.eye(d), np.diag([1.0, 1.5, 0.7])
    mu1, mu2 = np.zeros(d), np.array([0.6, 0.0, 0.3])
    truth = gaussian_mmd2(mu1, cov1, mu2, cov2, h)
    covered = 0
    trials = 40
    for _ in range(trials):
        ref = rng.multivariate_normal(mu1, cov1, size=120)
        gen = rng.multivariate_normal(mu2, cov2, size=100)
        ci = bootstrap_kad(ref, gen, n_boot=150, level=0.9, seed=int(rng.integers(1 << 30)), bandwidth=h)
        assert ci.low <= ci.value <= ci.high
        covered += ci.low <= truth <= ci.high
    assert covered >= 0.75 * trials, (covered, truth)


def test_cli_kad_from_npy_and_audio(tmp_path):
    from typer.testing import CliRunner

    from stylecraft.cli import app

    rng = np.random.default_rng(10)
    np.save(tmp_path / "a.npy", _mixed(rng, 120, 8))
    np.save(tmp_path / "b.npy", _mixed(rng, 90, 8, 0.5))
    runner = CliRunner()
    out = runner.invoke(app, ["fad", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metric", "kad", "--json"])
    assert out.exit_code == 0, out.output
    rec = json.loads(out.stdout)
    expected = kad_reference(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert rec["kad"] == pytest.approx(expected, rel=1e-10) and "fad" not in rec
    assert rec["kad_settings"]["bandwidth_from"] == "gen" and rec["diversity"]["unit_generated"] == "row"
    out = runner.invoke(app, ["fad", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metric", "all", "--json",
                              "--kad-bandwidth", "3.0"])
    rec = json.loads(out.stdout)
    assert rec["fad"] == pytest.approx(fad_reference(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")), rel=1e-6)
    assert rec["kad"] == pytest.approx(kad_reference(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), 3.0), rel=1e-10)
    bad = runner.invoke(app, ["fad", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metric", "kid"])
    assert isinstance(bad.exception, StylecraftError) and "--metric must be fad, kad or all" in str(bad.exception)
