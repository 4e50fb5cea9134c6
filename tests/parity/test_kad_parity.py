"""Kernel Audio Distance, KAD∞ and per-track KAD against kadtk 1.1.0 (opt-in).

Builds the kadtk reference venv on first use (eval/parity/kad_env.py, about two minutes, needs
the package index); run with ``pytest -m reference``.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.reference


def test_kad_defaults_match_kadtk(tmp_path):
    import parity_kad

    result = parity_kad.run_defaults(tmp_path)
    compared = [r for r in result["cases"] if "rel_diff" in r]
    assert len(compared) >= 11
    assert all(r["rel_diff"] <= parity_kad.TOLERANCE for r in compared), [(r["case"], r["rel_diff"]) for r in compared]
    shapes = {tuple(r["shape_eval"]) for r in compared}
    assert min(s[0] for s in shapes) == 10 and max(s[0] for s in shapes) == 5000
    assert {s[1] for s in shapes} >= {8, 512}
    identical = next(r for r in result["cases"] if r["case"].startswith("identical"))
    assert identical["kadtk"] < 0 and identical["stylecraft"] < 0  # the cross term keeps its diagonal
    single = [r for r in result["cases"] if r["case"].startswith("single_row")]
    assert single and all(r["stylecraft"] is None and r["kadtk"] != r["kadtk"] for r in single)  # refused / NaN
    assert all(r["rel_diff"] <= 1e-10 for r in result["at_kadtk_bandwidth"] if "rel_diff" in r)


def test_kad_options_match_kadtk_bandwidth_argument(tmp_path):
    import parity_kad

    rows = parity_kad.run_options(tmp_path)["cases"]
    assert len(rows) == 8 and all(r["rel_diff"] <= parity_kad.TOLERANCE for r in rows)


def test_kad_inf_and_per_track_match_kadtk(tmp_path):
    import parity_kad

    inf = parity_kad.run_kad_inf(tmp_path)
    assert inf["same_sizes"] and inf["rel_diff_score"] <= parity_kad.TOLERANCE
    assert inf["max_rel_diff_points"] <= parity_kad.TOLERANCE
    per_track = parity_kad.run_per_track(tmp_path / "pt")
    assert per_track["ok"] and per_track["compared"] == 8


def test_negative_controls_are_detected(tmp_path):
    import parity_kad

    controls = parity_kad.run_negative_controls(tmp_path)["controls"]
    assert len(controls) == 3 and all(c["detected"] for c in controls)
