"""Audit latency against indexes of about 1k and 10k tracks' worth of rows.

Real music at that scale is not on this machine, so the real index is copied and padded with
**synthetic tracks**: each is a real track's row set (segment embeddings shifted by a random
per-track offset, its Gaussian, duration), grouped 20 to an artist, and its fingerprint postings
follow the real index's hash distribution (each hash gets ``Poisson(real count x scale)``
postings, at random tracks and frames). Postings are generated hash range by hash range in hash
order and streamed into the table, so the padding needs memory for one range, not the index.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.evaluate.audit import style_profile
from stylecraft.evaluate.audit.fingerprint import FRAME_S, landmarks
from stylecraft.index.codec import pack, unpack
from stylecraft.index.copies import POSTINGS_BUDGET, _within_budget, match_postings
from stylecraft.index.gaussians import sums_of_rows
from stylecraft.index.query import IndexAuditSettings, IndexReader, audit_candidate
from stylecraft.index.schema import FRAME_BITS

PER_ARTIST = 20


def _add_tracks(conn: sqlite3.Connection, n_new: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic track rows, embeddings and artist sums; returns their ids and durations."""
    real = conn.execute("SELECT te.n_rows, te.dim, te.segments, t.duration_s FROM track_embeddings te "
                        "JOIN tracks t ON t.id = te.track_id").fetchall()
    first = int(conn.execute("SELECT MAX(id) FROM tracks").fetchone()[0]) + 1
    d = int(real[0][1])
    ids, durs = np.arange(first, first + n_new), np.zeros(n_new)
    sums: dict[int, list[Any]] = {}
    conn.execute("BEGIN")
    for k in range(n_new):
        n, _, seg, dur = real[k % len(real)]
        rows = unpack(seg, "float32", (int(n), d)) + rng.normal(scale=0.5, size=(1, d)).astype(np.float32)
        artist = f"synthetic-{k // PER_ARTIST:05d}"
        if k % PER_ARTIST == 0:
            aid = int(conn.execute("INSERT INTO artists (name) VALUES (?) RETURNING id", (artist,)).fetchone()[0])
            sums[aid] = [0, 0, np.zeros(d), np.zeros((d, d))]
        tid = int(ids[k])
        durs[k] = dur
        conn.execute("INSERT INTO tracks (id, artist_id, path, sha256, duration_s, n_hashes, profile) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (tid, aid, f"synthetic/{tid}.flac", f"synthetic-{tid}", dur, 0, "{}"))
        r64 = rows.astype(np.float64)
        mu, cov = r64.mean(0), np.cov(r64, rowvar=False)
        conn.execute("INSERT INTO track_embeddings VALUES (?, 'mfcc', ?, ?, ?, ?, ?, ?)",
                     (tid, int(n), d, pack(mu, "float64"), pack(cov, "float64"), float(np.trace(cov)), pack(rows, "float32")))
        cnt, s, ss = sums_of_rows(rows)
        acc = sums[aid]
        acc[0], acc[1], acc[2], acc[3] = acc[0] + 1, acc[1] + cnt, acc[2] + s, acc[3] + ss
    conn.executemany("INSERT INTO artist_embeddings VALUES (?, 'mfcc', ?, ?, ?, ?)",
                     [(a, v[0], v[1], pack(v[2], "float64"), pack(v[3], "float64")) for a, v in sums.items()])
    conn.commit()
    return ids, durs


def _queried(hashes: np.ndarray, counts: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Mask of ``hashes`` that a query for ``candidate`` reads (as ``copies._within_budget`` picks)."""
    uniq, repeats = np.unique(candidate, return_counts=True)
    pos = np.minimum(np.searchsorted(hashes, uniq), hashes.size - 1)
    have = hashes[pos] == uniq
    cost = np.where(have, counts[pos], 0) * repeats
    order = np.argsort(cost, kind="stable")
    chosen = uniq[order[np.cumsum(cost[order]) <= POSTINGS_BUDGET]]
    return np.isin(hashes, chosen)


def _add_postings(conn: sqlite3.Connection, ids: np.ndarray, durs: np.ndarray, scale: float, rng: np.random.Generator,
                  candidate: np.ndarray | None, ranges: int = 64) -> int:
    """Stream synthetic postings in hash order; returns how many were added.

    With ``candidate`` (its hashes), every hash's count is raised in ``hash_counts`` but postings
    are written only for the hashes that candidate's query reads: the query does the same work as
    against the full index (only the fingerprint table is smaller, so its pages are fewer).
    """
    hashes, counts = (np.array(c, dtype=np.int64) for c in zip(*conn.execute(
        "SELECT hash, COUNT(*) FROM fingerprints GROUP BY hash ORDER BY hash").fetchall(), strict=True))
    frames_of = (durs / FRAME_S).astype(np.int64)
    n_all = rng.poisson(counts * scale)
    write = np.ones(hashes.size, bool) if candidate is None else _queried(hashes, counts + n_all, candidate)
    if candidate is not None:
        conn.execute("BEGIN")
        conn.executemany("UPDATE hash_counts SET n = n + ? WHERE hash = ?",
                         zip(n_all[~write].tolist(), hashes[~write].tolist(), strict=True))
        conn.commit()
    added = 0
    for part in np.array_split(np.flatnonzero(write), ranges):
        n = n_all[part]
        h = np.repeat(hashes[part], n)
        k = rng.integers(0, ids.size, size=h.size)
        post = (ids[k] << FRAME_BITS) | (rng.random(h.size) * frames_of[k]).astype(np.int64)
        pairs = np.unique(np.stack([h, post], axis=1), axis=0)  # sorted by hash, then posting; no repeats
        uniq, n_new = np.unique(pairs[:, 0], return_counts=True)
        conn.execute("BEGIN")
        conn.executemany("INSERT OR IGNORE INTO fingerprints VALUES (?, ?)", pairs.tolist())
        conn.executemany("INSERT INTO hash_counts (hash, n) VALUES (?, ?) ON CONFLICT (hash) DO UPDATE SET n = hash_counts.n + excluded.n",
                         zip(uniq.tolist(), n_new.tolist(), strict=True))
        conn.commit()
        added += int(pairs.shape[0])
    return added


def pad_with_synthetic(src_db: Path, dst_db: Path, n_tracks: int, seed: int, candidate: np.ndarray | None = None) -> dict[str, Any]:
    """Copy the real index to ``dst_db`` and pad it with synthetic tracks up to ``n_tracks``
    (with ``candidate``'s hashes: only the postings its query reads, see ``_add_postings``)."""
    t0 = time.perf_counter()
    shutil.copy(src_db, dst_db)
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(dst_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-524288")
    have = int(conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0])
    ids, durs = _add_tracks(conn, n_tracks - have, rng)
    real_s = float(conn.execute("SELECT SUM(duration_s) FROM tracks WHERE id < ?", (int(ids[0]),)).fetchone()[0])
    added = _add_postings(conn, ids, durs, float(durs.sum()) / real_s, rng, candidate)
    total = int(conn.execute("SELECT SUM(n) FROM hash_counts").fetchone()[0])
    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
    conn.close()
    return {"padding_s": time.perf_counter() - t0, "synthetic_tracks": int(ids.size), "synthetic_postings_written": added,
            "postings_counted": total, "postings_mode": "query-equivalent" if candidate is not None else "full",
            "db_bytes": dst_db.stat().st_size + sum(p.stat().st_size for p in dst_db.parent.glob(dst_db.name + "-*"))}


def audit_latency(db: Path, candidate: np.ndarray, sr: int, reps: int) -> dict[str, Any]:
    """Seconds of ``audit_candidate`` for one candidate (its embedding computed beforehand, excluded),
    the time of its own analysis inside it (style profile, landmarks: independent of the index), and
    of the copy check alone.

    The attribution model fitted on the real artists does not know the synthetic ones, so at
    padded scales it is left out (the rest of the audit runs in full) and this is reported.
    """
    t_open = time.perf_counter()
    reader = IndexReader(str(db))
    open_s = time.perf_counter() - t_open
    model_used = reader.model is not None and set(reader.model.artists) == set(reader.table.artists)
    if not model_used:
        reader.model = None
    cfg = IndexAuditSettings()
    rows = np.asarray(reader.emb_model.embed(candidate, sr), dtype=np.float64)
    times, cpu, copy_s, copy_cpu = [], [], [], []
    style_profile(candidate, sr, cfg.profile_s)  # once before timing: librosa's first call compiles
    c0 = time.process_time()
    style_profile(candidate, sr, cfg.profile_s)
    profile_cpu = time.process_time() - c0
    c0 = time.process_time()
    landmarks(candidate, sr, **reader.settings.fingerprint())
    landmarks_cpu = time.process_time() - c0
    with reader.store.read():
        reader.counts = dict(reader.store.query("SELECT track_id, n_rows FROM track_embeddings"))
        reader.durations = dict(reader.store.query("SELECT id, duration_s FROM tracks"))
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            res = audit_candidate(reader, candidate, sr, rows, cfg, np.random.default_rng(0))
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            h, t = landmarks(candidate, sr, **reader.settings.fingerprint())
            t0, c0 = time.perf_counter(), time.process_time()
            m = match_postings(reader.store, h, t, reader.paths)
            copy_s.append(time.perf_counter() - t0)
            copy_cpu.append(time.process_time() - c0)
        postings = int(reader.store.scalar("SELECT COUNT(*) FROM fingerprints"))
        fetched = len(reader.store.lookup_postings(_within_budget(reader.store, h, POSTINGS_BUDGET).tolist()))
        every = int(sum(n for _, n in reader.store.count_postings(np.unique(h).tolist())))
    out = {"tracks": int(len(reader.table.ids)), "artists": len(reader.table.artists), "attribution_model": model_used,
           "open_reader_s": open_s, "audit_s_median": float(np.median(times)), "audit_s_all": times,
           "audit_cpu_s_median": float(np.median(cpu)), "candidate_profile_cpu_s": profile_cpu, "candidate_landmarks_cpu_s": landmarks_cpu,
           "audit_cpu_s_minus_candidate_analysis": float(np.median(cpu)) - profile_cpu - landmarks_cpu,
           "copy_lookup_vote_s_median": float(np.median(copy_s)), "copy_lookup_vote_cpu_s_median": float(np.median(copy_cpu)), "postings": postings, "postings_fetched": fetched, "postings_of_all_candidate_hashes": every,
           "candidate_hashes": int(h.size), "near_copy": bool(res["memorization"]["near_copy"]), "copy_track": m.reference}
    reader.close()
    return out
