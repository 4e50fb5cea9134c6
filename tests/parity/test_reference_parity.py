"""Fréchet distance, FAD∞ and VGGish against frechet-audio-distance 0.3.4, fadtk 1.1.0 and torchvggish (opt-in).

Builds the reference venv on first use (eval/parity/refenv.py, about two minutes, needs the
package index); run with ``pytest -m reference``.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.reference


def test_frechet_matches_both_reference_tools(tmp_path):
    import parity_fad

    result = parity_fad.run_frechet(tmp_path)
    compared = 0
    for row in result["cases"]:
        for tool in ("frechet_audio_distance", "fadtk"):
            if tool in row:  # the tools raise on one-dimensional embeddings; stylecraft does not
                compared += 1
                assert row[f"rel_diff_{tool}"] <= parity_fad.TOLERANCE, (row["case"], tool, row)
    singular = [r for r in result["cases"] if r["case"].startswith("singular")]
    assert singular and all("fadtk" in r and "frechet_audio_distance" in r for r in singular)
    assert compared >= 12


def test_fad_inf_matches_fadtk(tmp_path):
    import parity_fad

    result = parity_fad.run_fad_inf(tmp_path)
    assert result["rel_diff_score"] <= parity_fad.TOLERANCE
    assert result["max_rel_diff_points"] <= parity_fad.TOLERANCE
    assert abs(result["stylecraft"]["r2"] - result["fadtk"]["r2"]) <= 1e-6


def test_vggish_matches_torchvggish_and_frechet_audio_distance(tmp_path):
    import parity_embeddings

    result = parity_embeddings.run_vggish(tmp_path)
    for variant in result["variants"].values():
        assert variant["max_abs_diff"] <= parity_embeddings.EMB_TOL
    assert result["fad"]["rel_diff"] <= parity_embeddings.FAD_TOL


@pytest.mark.parametrize("variant", ["24k", "48k"])
def test_encodec_matches_the_encodec_package(tmp_path, variant):
    import parity_embeddings

    result = parity_embeddings.run_encodec(tmp_path, variant)
    assert result["key_mapping"] == {"missing": [], "unexpected": []}
    assert result["max_abs_diff"] <= parity_embeddings.EMB_TOL
    assert result["fad"]["rel_diff"] <= parity_embeddings.FAD_TOL
    if variant == "48k":
        assert result["fadtk_segments_max_abs_diff"] <= parity_embeddings.EMB_TOL


def test_clap_matches_transformers_pipeline_in_fadtk_windows(tmp_path):
    import parity_embeddings

    result = parity_embeddings.run_clap(tmp_path)
    assert result["max_abs_diff"] <= parity_embeddings.EMB_TOL
