"""Per-track Gaussians read from the index, and the exact nearest track per artist by FAD.

The nearest-track search visits tracks in order of a cheap lower bound of their FAD
(:func:`~stylecraft.index.gaussians.frechet_lower_bound`) and stops for an artist as soon as the
next bound exceeds the best distance found, so it is exact while computing a full Fréchet
distance for only a few tracks per artist.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stylecraft.index.codec import unpack
from stylecraft.index.gaussians import frechet_lower_bound, frechet_to_many
from stylecraft.index.store import Store

__all__ = ["TrackTable", "load_track_table", "nearest_tracks"]


@dataclasses.dataclass
class TrackTable:
    """Every indexed track's id, artist, path and Gaussian summary for one embedding."""

    ids: np.ndarray  # [T] track ids
    artist: np.ndarray  # [T] index into ``artists``
    artists: list[str]
    paths: list[str]
    means: np.ndarray  # [T, D]
    traces: np.ndarray  # [T]
    embedding: str

    def covariances(self, store: Store, rows: np.ndarray) -> np.ndarray:
        """Covariances ``[len(rows), D, D]`` of the tracks at table rows ``rows``."""
        d = self.means.shape[1]
        ids = [int(self.ids[r]) for r in rows]
        got: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            for tid, cov in store.query(f"SELECT track_id, cov FROM track_embeddings WHERE embedding = ? AND track_id IN ({marks})",
                                        (self.embedding, *chunk)):
                got[int(tid)] = unpack(cov, "float64", (d, d))
        return np.stack([got[i] for i in ids]) if ids else np.zeros((0, d, d))


def load_track_table(store: Store, embedding: str) -> TrackTable:
    """Read the track table for ``embedding`` (inside a read transaction)."""
    rows = store.query(
        "SELECT t.id, a.name, t.path, te.dim, te.mean, te.trace FROM tracks t JOIN artists a ON a.id = t.artist_id "
        "JOIN track_embeddings te ON te.track_id = t.id AND te.embedding = ? ORDER BY a.name, t.id", (embedding,))
    artists = sorted({r[1] for r in rows})
    pos = {a: i for i, a in enumerate(artists)}
    d = int(rows[0][3]) if rows else 0
    return TrackTable(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        artist=np.array([pos[r[1]] for r in rows], dtype=np.int64),
        artists=artists,
        paths=[r[2] for r in rows],
        means=np.stack([unpack(r[4], "float64", (d,)) for r in rows]) if rows else np.zeros((0, 0)),
        traces=np.array([r[5] for r in rows], dtype=np.float64),
        embedding=embedding,
    )


def nearest_tracks(
    store: Store, table: TrackTable, mu: np.ndarray, sigma: np.ndarray, allowed: np.ndarray | None = None, top: int = 0
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, float]]]:
    """Exact nearest track per artist by per-track FAD (and the ``top`` nearest overall).

    Args:
        store: The open index (inside a read transaction).
        table: Its track table.
        mu: The candidate's mean; sigma: its covariance.
        allowed: Boolean mask of table rows that may be chosen (``None``: all).
        top: Also return this many nearest tracks overall.

    Returns:
        ``(fad [A], row [A], top_rows)``: per artist the smallest FAD and the table row of that
        track (``inf`` / ``-1`` for an artist with no allowed track), and ``[(row, fad)]`` of the
        ``top`` nearest tracks in order.
    """
    n_art = len(table.artists)
    mask = np.ones(len(table.ids), bool) if allowed is None else allowed
    bound = frechet_lower_bound(mu, float(np.trace(sigma)), table.means, table.traces)
    bound = np.where(mask, bound, np.inf)
    best = np.full(n_art, np.inf)
    best_row = np.full(n_art, -1)
    exact: dict[int, float] = {}

    def evaluate(rows: list[int]) -> None:
        rows = [r for r in dict.fromkeys(rows) if r not in exact]
        if not rows:
            return
        fads = frechet_to_many(mu, sigma, table.means[rows], table.covariances(store, np.array(rows)))
        for r, f in zip(rows, fads, strict=True):
            exact[r] = float(f)
            a = int(table.artist[r])
            if f < best[a]:
                best[a], best_row[a] = float(f), r

    order = np.argsort(bound, kind="stable")
    # Per artist, its rows in bound order and a pointer to the next unvisited one; each round
    # computes, for every artist still open, its next track (one batched eigen-solve a round).
    per_artist = [order[table.artist[order] == a] for a in range(n_art)]
    nxt = np.zeros(n_art, dtype=np.int64)
    while True:
        want = []
        for a in range(n_art):
            rows = per_artist[a]
            if nxt[a] < len(rows) and bound[rows[nxt[a]]] < best[a]:
                want.append(int(rows[nxt[a]]))
                nxt[a] += 1
        if not want:
            break
        evaluate(want)
    # The overall nearest: walk the bound order until the next bound exceeds the top-th distance.
    k = 0
    while top and k < len(order) and np.isfinite(bound[order[k]]):
        kth = sorted(exact.values())[top - 1] if len(exact) >= top else np.inf
        if bound[order[k]] >= kth:
            break
        evaluate([int(r) for r in order[k : k + 16]])
        k += 16
    top_rows = sorted(exact.items(), key=lambda kv: kv[1])[:top] if top else []
    return best, best_row, top_rows
