"""Attribution: window embeddings, nearest-track FAD and the CV-fitted combination."""

from __future__ import annotations

import numpy as np
import pytest
from reference_metrics import fad_reference

from stylecraft.evaluate.audit.attribution import Attributor, window_embeddings


def test_window_embeddings_pool_consecutive_rows():
    rows = np.arange(24, dtype=np.float64).reshape(12, 2)  # 12 rows of 2 dims
    w = window_embeddings(rows, 5)
    assert w.shape == (2, 4)  # the trailing 2 rows are dropped
    np.testing.assert_allclose(w[1, :2], rows[5:10].mean(0))
    np.testing.assert_allclose(w[1, 2:], rows[5:10].std(0))
    short = window_embeddings(rows[:3], 5)  # shorter than a window: one window of what there is
    assert short.shape == (1, 4)
    np.testing.assert_allclose(short[0, :2], rows[:3].mean(0))


def _track(rng: np.random.Generator, centre: np.ndarray, n: int = 40) -> np.ndarray:
    # Rows drift slowly in time, as embedding rows of music do.
    walk = np.cumsum(rng.normal(scale=0.05, size=(n, centre.size)), axis=0)
    return centre + walk + rng.normal(scale=0.3, size=(n, centre.size))


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    dim = 6
    # Each artist has two moods far apart; artist B's moods lie on either side of artist A's
    # so that B's *set* Gaussian is wide and centred near A.
    moods = {
        "a": [np.zeros(dim), np.full(dim, 0.6)],
        "b": [np.full(dim, -3.0), np.full(dim, 3.5)],
    }
    tracks = {
        artist: [(f"{artist}{i}", _track(rng, centres[i % 2])) for i in range(8)] for artist, centres in moods.items()
    }
    candidate = _track(rng, moods["b"][1])  # a new track in one of B's moods
    return tracks, candidate


def test_attributor_combines_evidence_with_cv_fitted_weights(corpus):
    tracks, candidate = corpus
    att = Attributor(tracks, window_rows=5, folds=4, seed=0)
    summary = att.summary()
    assert summary["cv_tracks"] == 16  # every reference track scored out of fold
    assert summary["cv_correct"] >= 14
    assert all(v >= 0 for v in summary["weights"].values())
    out = att.attribute(candidate)
    assert out["artist"] == "b"
    assert out["probabilities"]["b"] > 0.9
    assert sum(out["probabilities"].values()) == pytest.approx(1.0)
    assert sum(out["classifier"].values()) == pytest.approx(1.0)
    # The nearest-track FAD is the minimum over that artist's tracks.
    expect = min(fad_reference(r, candidate) for _, r in tracks["b"])
    assert out["nearest_track_fad"]["b"] == pytest.approx(expect)
    assert out["nearest_track"]["b"] in {"b1", "b3", "b5", "b7"}  # a track of the same mood


def test_attributor_is_deterministic(corpus):
    tracks, candidate = corpus
    one = Attributor(tracks, folds=4, seed=3).attribute(candidate)
    two = Attributor(tracks, folds=4, seed=3).attribute(candidate)
    assert one == two
