"""The audit's calibrated attribution, fitted once per index instead of once per audit.

The same two pieces of evidence as :class:`~stylecraft.evaluate.audit.attribution.Attributor`: a
window classifier (logistic regression on mean and std of consecutive embedding rows) and the
nearest-track FAD per artist, combined by a conditional logit whose two weights are fitted on
reference tracks scored out of fold. What changes with a catalogue of thousands of tracks:

* the classifier is fitted on at most ``max_windows`` windows per track (evenly spaced), and its
  parameters are stored in the index (safetensors), so an audit only applies them;
* the out-of-fold tracks used to fit the two weights are at most ``cv_tracks`` (dealt evenly
  over artists), each scored against the other folds with the exact pruned nearest-track search.

The model is refitted at the end of every build, add and remove that changed the tracks.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from stylecraft.evaluate.audit.attribution import Attributor, window_embeddings
from stylecraft.evaluate.frechet import gaussian_stats
from stylecraft.index.codec import from_safetensors, to_safetensors, unpack
from stylecraft.index.store import Store
from stylecraft.index.tracks import TrackTable, load_track_table, nearest_tracks

__all__ = ["IndexAttribution", "fit_and_store", "load_model"]

WINDOW_ROWS = 5
MAX_WINDOWS = 12
CV_TRACKS = 200
FOLDS = 5


def _windows(rows: np.ndarray, cap: int) -> np.ndarray:
    w = window_embeddings(rows, WINDOW_ROWS)
    if w.shape[0] > cap:
        w = w[np.linspace(0, w.shape[0] - 1, cap).round().astype(int)]
    return w


def _fit_classifier(feats: list[np.ndarray], labels: list[int], n_classes: int) -> dict[str, np.ndarray]:
    """Standardised multinomial logistic regression; returns its parameters as arrays."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate(feats)
    y = np.concatenate([np.full(f.shape[0], k) for f, k in zip(feats, labels, strict=True)])
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=3000, class_weight="balanced").fit(scaler.transform(x), y)
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row (class 1 vs class 0)
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    full_coef = np.zeros((n_classes, x.shape[1]))
    full_int = np.full(n_classes, -1e9)  # a class absent from training gets no probability
    full_coef[clf.classes_] = coef
    full_int[clf.classes_] = intercept
    return {"mean": scaler.mean_, "scale": scaler.scale_, "coef": full_coef, "intercept": full_int}


def _mean_log_prob(params: dict[str, np.ndarray], windows: np.ndarray) -> np.ndarray:
    """Mean over windows of the classifier's log-probability per artist."""
    z = (windows - params["mean"]) / params["scale"] @ params["coef"].T + params["intercept"]
    logp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    return np.maximum(logp, np.log(1e-12)).mean(axis=0)


class IndexAttribution:
    """A fitted attribution model: classifier parameters, combination weights and a summary."""

    def __init__(self, artists: list[str], params: dict[str, np.ndarray], weights: tuple[float, float], summary: dict[str, Any]):
        self.artists = artists
        self.params = params
        self.weights = weights
        self.summary = summary

    def attribute(self, store: Store, table: TrackTable, rows: np.ndarray) -> dict[str, Any]:
        """Attribute candidate rows (as :meth:`Attributor.attribute` does, same keys)."""
        mlp = _mean_log_prob(self.params, window_embeddings(rows, WINDOW_ROWS))
        mu, sigma = gaussian_stats(np.asarray(rows, np.float64))
        fad, best_row, _ = nearest_tracks(store, table, mu, sigma)
        fad = np.maximum(fad, 1e-9)
        z = self.weights[0] * mlp - self.weights[1] * np.log(fad)
        p = np.exp(z - np.logaddexp.reduce(z))
        q = np.exp(mlp - np.logaddexp.reduce(mlp))
        return {
            "artist": self.artists[int(np.argmax(p))],
            "probabilities": {a: float(v) for a, v in zip(self.artists, p, strict=True)},
            "classifier": {a: float(v) for a, v in zip(self.artists, q, strict=True)},
            "nearest_track_fad": {a: float(v) for a, v in zip(self.artists, fad, strict=True)},
            "nearest_track": {a: table.paths[int(r)] for a, r in zip(self.artists, best_row, strict=True)},
        }


def _load_rows(store: Store, embedding: str, table: TrackTable) -> list[np.ndarray]:
    got = {int(tid): unpack(seg, "float32", (int(n), int(d))) for tid, n, d, seg in store.query(
        "SELECT track_id, n_rows, dim, segments FROM track_embeddings WHERE embedding = ?", (embedding,))}
    return [got[int(t)] for t in table.ids]


def _cv_weights(
    store: Store, table: TrackTable, rows: list[np.ndarray], windows: list[np.ndarray], seed: int
) -> tuple[tuple[float, float], dict[str, Any]]:
    """Fit the two combination weights on out-of-fold reference tracks."""
    rng = np.random.default_rng(seed)
    n_art = len(table.artists)
    fold_of = np.empty(len(table.ids), dtype=int)
    scored = np.zeros(len(table.ids), dtype=bool)
    per_artist_cap = max(1, CV_TRACKS // n_art)
    for a in range(n_art):
        idx = rng.permutation(np.flatnonzero(table.artist == a))
        fold_of[idx] = np.arange(len(idx)) % FOLDS
        scored[idx[: per_artist_cap]] = True
    labels, feats = [], []
    for f in range(FOLDS):
        train = fold_of != f
        test = np.flatnonzero((fold_of == f) & scored)
        if not test.size or len(set(table.artist[train].tolist())) < n_art:
            continue
        tr = np.flatnonzero(train)
        params = _fit_classifier([windows[i] for i in tr], [int(table.artist[i]) for i in tr], n_art)
        for i in test:
            mu, sigma = gaussian_stats(np.asarray(rows[i], np.float64))
            fad, _, _ = nearest_tracks(store, table, mu, sigma, allowed=train)
            labels.append(int(table.artist[i]))
            feats.append((_mean_log_prob(params, windows[i]), np.log(np.maximum(fad, 1e-9))))
    weights = Attributor._fit_weights(labels, feats)
    correct = 0
    loss = 0.0
    for k, (m, lf) in zip(labels, feats, strict=True):
        z = weights[0] * m - weights[1] * lf
        p = np.exp(z - np.logaddexp.reduce(z))
        correct += int(np.argmax(p) == k)
        loss -= float(np.log(max(p[k], 1e-12)))
    return weights, {"cv_tracks": len(labels), "cv_correct": correct, "cv_log_loss": loss / max(1, len(labels))}



def _baseline(rows: list[np.ndarray], seed: int, n_rows: int = 800, max_tracks: int = 500) -> float | None:
    """How close rows of *different* reference tracks usually come: the median, over up to
    ``n_rows`` sampled rows, of the distance to the nearest row of another track (standardised
    rows, as the in-memory audit computes it; against at most ``max_tracks`` sampled tracks)."""
    rng = np.random.default_rng(seed)
    keep = rng.choice(len(rows), size=min(max_tracks, len(rows)), replace=False)
    allr = np.concatenate([rows[i] for i in keep]).astype(np.float64)
    owner = np.concatenate([np.full(rows[i].shape[0], i) for i in keep])
    mu, sd = allr.mean(0), allr.std(0) + 1e-9
    z = (allr - mu) / sd
    pick = rng.choice(z.shape[0], size=min(n_rows, z.shape[0]), replace=False)
    sq = (z**2).sum(1)
    d2 = sq[pick][:, None] + sq[None, :] - 2 * z[pick] @ z.T
    d2[owner[pick][:, None] == owner[None, :]] = np.inf
    best = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    best = best[np.isfinite(best)]
    return float(np.median(best)) if best.size else None


def fit_and_store(store: Store, embedding: str, seed: int = 0) -> None:
    """Fit the attribution model of ``embedding`` if the tracks changed since the last fit."""
    with store.read():
        gen = int(store.meta("generation") or 0)
        have = store.scalar("SELECT generation FROM models WHERE embedding = ?", (embedding,))
        if have is not None and int(have) == gen:
            return
        table = load_track_table(store, embedding)
        baseline = _baseline(_load_rows(store, embedding, table), seed) if len(table.ids) >= 2 else None
        if len(table.artists) < 2:
            params_bytes = None
        else:
            rows = _load_rows(store, embedding, table)
            windows = [_windows(r, MAX_WINDOWS) for r in rows]
            params = _fit_classifier(windows, table.artist.tolist(), len(table.artists))
            weights, cv = _cv_weights(store, table, rows, windows, seed)
            summary = {
                "method": "window classifier (mean log-probability) + nearest-track FAD, conditional logit fitted by grouped CV",
                "window_rows": WINDOW_ROWS, "max_windows_per_track": MAX_WINDOWS,
                "weights": {"classifier_mean_log_prob": weights[0], "log_nearest_track_fad": weights[1]},
                "artists": table.artists, **cv,
            }
            params_bytes = to_safetensors(params, summary)
    with store.write():
        store.set_meta(f"baseline/{embedding}", baseline)
        store.execute("DELETE FROM models WHERE embedding = ?", (embedding,))
        if params_bytes is not None:
            store.execute("INSERT INTO models (embedding, generation, params, summary) VALUES (?, ?, ?, ?)",
                          (embedding, gen, params_bytes, json.dumps(summary)))


def load_model(store: Store, embedding: str) -> tuple[IndexAttribution | None, int | None]:
    """The stored model and the generation it was fitted at (``None`` with fewer than 2 artists)."""
    row = store.query("SELECT generation, params FROM models WHERE embedding = ?", (embedding,))
    if not row:
        return None, None
    params, summary = from_safetensors(row[0][1])
    w = summary["weights"]
    return IndexAttribution(summary["artists"], params, (w["classifier_mean_log_prob"], w["log_nearest_track_fad"]), summary), int(row[0][0])
