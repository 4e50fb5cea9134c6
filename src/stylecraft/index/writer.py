"""The single writer: commits analysed tracks (and rejects) in transactions, and removes tracks.

Every commit keeps the index consistent for readers: a track's row, its embeddings, its
fingerprint postings and its artist's pooled sums go in together or not at all, and the
generation is raised in the same transaction.
"""

from __future__ import annotations

import json

import numpy as np

from stylecraft.evaluate.frechet import gaussian_stats
from stylecraft.index.analyse import AnalysedTrack
from stylecraft.index.codec import pack, unpack
from stylecraft.index.gaussians import sums_of_rows
from stylecraft.index.schema import FRAME_BITS
from stylecraft.index.store import Store

__all__ = ["commit_records", "remove_tracks"]


def _artist_id(store: Store, name: str) -> int:
    found = store.scalar("SELECT id FROM artists WHERE name = ?", (name,))
    if found is not None:
        return int(found)
    return store.insert_id("INSERT INTO artists (name) VALUES (?)", (name,))


def _add_to_artist(store: Store, artist_id: int, embedding: str, rows: np.ndarray, sign: int) -> None:
    """Add (``sign=1``) or take away (``sign=-1``) one track's rows from the artist's pooled sums."""
    n, s, ss = sums_of_rows(rows)
    d = rows.shape[1]
    old = store.query("SELECT n_tracks, n_rows, row_sum, outer_sum FROM artist_embeddings WHERE artist_id = ? AND embedding = ?",
                      (artist_id, embedding))
    if old:
        nt, nr = int(old[0][0]) + sign, int(old[0][1]) + sign * n
        s = unpack(old[0][2], "float64", (d,)) + sign * s
        ss = unpack(old[0][3], "float64", (d, d)) + sign * ss
        if nt <= 0:
            store.execute("DELETE FROM artist_embeddings WHERE artist_id = ? AND embedding = ?", (artist_id, embedding))
            return
        store.execute("UPDATE artist_embeddings SET n_tracks = ?, n_rows = ?, row_sum = ?, outer_sum = ? "
                      "WHERE artist_id = ? AND embedding = ?", (nt, nr, pack(s, "float64"), pack(ss, "float64"), artist_id, embedding))
    else:
        assert sign > 0, "removing a track from an artist with no sums"
        store.execute("INSERT INTO artist_embeddings (artist_id, embedding, n_tracks, n_rows, row_sum, outer_sum) "
                      "VALUES (?, ?, 1, ?, ?, ?)", (artist_id, embedding, n, pack(s, "float64"), pack(ss, "float64")))


def _insert_track(store: Store, rec: AnalysedTrack) -> bool:
    """Insert one analysed track; ``False`` when its sha256 is already indexed."""
    if store.scalar("SELECT id FROM tracks WHERE sha256 = ?", (rec.task.sha256,)) is not None:
        return False
    artist_id = _artist_id(store, rec.task.artist)
    track_id = store.insert_id(
        "INSERT INTO tracks (artist_id, path, sha256, duration_s, n_hashes, profile) VALUES (?, ?, ?, ?, ?, ?)",
        (artist_id, rec.task.path, rec.task.sha256, rec.duration_s, int(rec.hashes.size), json.dumps(rec.profile)),
    )
    for name, rows in rec.embeddings.items():
        mu, cov = gaussian_stats(rows)
        store.execute(
            "INSERT INTO track_embeddings (track_id, embedding, n_rows, dim, mean, cov, trace, segments) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (track_id, name, int(rows.shape[0]), int(rows.shape[1]), pack(mu, "float64"), pack(cov, "float64"),
             float(np.trace(cov)), pack(rows, "float32")),
        )
        _add_to_artist(store, artist_id, name, rows, +1)
    if rec.hashes.size:
        order = np.argsort(rec.hashes, kind="stable")
        postings = (np.int64(track_id) << FRAME_BITS) | rec.times[order]
        store.add_postings(rec.hashes[order].tolist(), postings.tolist())
        uniq, counts = np.unique(rec.hashes, return_counts=True)
        store.change_hash_counts(uniq.tolist(), counts.tolist())
    store.execute("DELETE FROM rejects WHERE path = ?", (rec.task.path,))
    return True


def commit_records(store: Store, records: list[AnalysedTrack]) -> tuple[int, int, int]:
    """Commit a batch in one transaction.

    Returns:
        ``(added, duplicates, rejected)``.
    """
    added = dup = rejected = 0
    with store.write():
        for rec in records:
            if rec.reason is not None:
                store.execute("INSERT INTO rejects (path, artist, sha256, reason) VALUES (?, ?, ?, ?) "
                              "ON CONFLICT (path) DO UPDATE SET artist = excluded.artist, sha256 = excluded.sha256, "
                              "reason = excluded.reason", (rec.task.path, rec.task.artist, rec.task.sha256, rec.reason))
                rejected += 1
            elif _insert_track(store, rec):
                added += 1
            else:
                dup += 1
        if added:
            store.bump_generation()
    return added, dup, rejected


def remove_tracks(store: Store, track_ids: list[int]) -> int:
    """Remove tracks (rows, embeddings, postings, their share of the artist sums) in one transaction.

    Postings are found by a scan of the fingerprint table (it is clustered by hash), so a removal
    costs about two passes over the table (count, then delete), however many tracks go.
    """
    if not track_ids:
        return 0
    with store.write():
        for tid in track_ids:
            artist_id = int(store.scalar("SELECT artist_id FROM tracks WHERE id = ?", (tid,)))
            for name, n, d, seg in store.query("SELECT embedding, n_rows, dim, segments FROM track_embeddings WHERE track_id = ?", (tid,)):
                _add_to_artist(store, artist_id, name, unpack(seg, "float32", (int(n), int(d))), -1)
            store.execute("DELETE FROM track_embeddings WHERE track_id = ?", (tid,))
            store.execute("DELETE FROM tracks WHERE id = ?", (tid,))
            if store.scalar("SELECT COUNT(*) FROM tracks WHERE artist_id = ?", (artist_id,)) == 0:
                store.execute("DELETE FROM artist_embeddings WHERE artist_id = ?", (artist_id,))
                store.execute("DELETE FROM artists WHERE id = ?", (artist_id,))
        lo_hi = [(tid << FRAME_BITS, ((tid + 1) << FRAME_BITS) - 1) for tid in track_ids]
        where = " OR ".join("posting BETWEEN ? AND ?" for _ in lo_hi)
        bounds = [v for pair in lo_hi for v in pair]
        gone = store.query(f"SELECT hash, COUNT(*) FROM fingerprints WHERE {where} GROUP BY hash", bounds)
        if gone:
            store.change_hash_counts([int(h) for h, _ in gone], [-int(n) for _, n in gone])
        store.execute(f"DELETE FROM fingerprints WHERE {where}", bounds)
        store.bump_generation()
    return len(track_ids)
