"""Nearest-segment search at catalogue scale: the exact search of today against vector indexes.

Segments: every segment embedding of the real index, plus synthetic tracks (a real track's rows
shifted by a random per-track offset, as in ``latency``) up to ``n_tracks`` tracks' worth. Rows
are standardised as the audit does, so Euclidean distance is the audit's segment distance.
Queries: the rows of one real 3-minute candidate (noisy copy of an indexed track). Each method
returns the 10 nearest segments of every query row; recall@10 is against the exact answer.
Times are wall-clock seconds for all query rows (sqlite-vec: measured on the first
``SQLITE_VEC_QUERIES`` rows and scaled), on a machine shared with other jobs.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.index.codec import unpack

K = 10
SQLITE_VEC_QUERIES = 12  # sqlite-vec scans every row per query: its time is measured on these and scaled to all


def segments(db: Path, n_tracks: int, seed: int) -> np.ndarray:
    """``[N, D]`` float32 standardised segment rows of ``n_tracks`` tracks (real ones first)."""
    conn = sqlite3.connect(db)
    real = [unpack(s, "float32", (int(n), int(d))) for n, d, s in conn.execute("SELECT n_rows, dim, segments FROM track_embeddings")]
    conn.close()
    rng = np.random.default_rng(seed)
    d = real[0].shape[1]
    parts = list(real)
    for k in range(n_tracks - len(real)):
        parts.append(real[k % len(real)] + rng.normal(scale=0.5, size=(1, d)).astype(np.float32))
    return np.concatenate(parts).astype(np.float32)


def _exact(base: np.ndarray, q: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", base, base)
    out = np.empty((q.shape[0], K), dtype=np.int64)
    for s in range(0, q.shape[0], 64):
        d2 = sq[None, :] - 2.0 * q[s : s + 64] @ base.T
        part = np.argpartition(d2, K, axis=1)[:, :K]
        out[s : s + 64] = np.take_along_axis(part, np.argsort(np.take_along_axis(d2, part, 1), 1), 1)
    return out


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    r = fn(*args)
    return r, time.perf_counter() - t0


def _faiss(base: np.ndarray, q: np.ndarray) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(2)
    out = {}
    flat, b_flat = _timed(lambda: faiss.IndexFlatL2(base.shape[1]))
    flat.add(base)
    (_, i_flat), t_flat = _timed(flat.search, q, K)
    out["faiss_flat"] = {"build_s": b_flat, "query_s": t_flat, "ids": i_flat}
    hnsw = faiss.IndexHNSWFlat(base.shape[1], 32)
    hnsw.hnsw.efConstruction = 80
    _, b_h = _timed(hnsw.add, base)
    hnsw.hnsw.efSearch = 64
    (_, i_h), t_h = _timed(hnsw.search, q, K)
    out["faiss_hnsw32"] = {"build_s": b_h, "query_s": t_h, "ids": i_h}
    return out


def _usearch(base: np.ndarray, q: np.ndarray) -> dict[str, Any]:
    from usearch.index import Index

    idx = Index(ndim=base.shape[1], metric="l2sq", dtype="f32", connectivity=16, expansion_add=80, expansion_search=64)
    _, b = _timed(lambda: idx.add(np.arange(base.shape[0]), base, threads=2))
    m, t = _timed(lambda: idx.search(q, K, threads=2))
    return {"usearch_hnsw16": {"build_s": b, "query_s": t, "ids": np.asarray(m.keys, dtype=np.int64)}}


def _sqlite_vec(base: np.ndarray, q: np.ndarray, work: Path) -> dict[str, Any]:
    import sqlite_vec

    try:  # this Python's sqlite3 may be built without extension loading; pysqlite3-binary has it
        from pysqlite3 import dbapi2 as sqlite_ext
    except ImportError:
        sqlite_ext = sqlite3
    path = work / "vec.db"
    path.unlink(missing_ok=True)
    conn = sqlite_ext.connect(str(path))
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    t0 = time.perf_counter()
    conn.execute(f"CREATE VIRTUAL TABLE seg USING vec0(emb float[{base.shape[1]}])")
    conn.executemany("INSERT INTO seg(rowid, emb) VALUES (?, ?)", ((i + 1, base[i].tobytes()) for i in range(base.shape[0])))
    conn.commit()
    b = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = np.array([[r[0] - 1 for r in conn.execute(
        "SELECT rowid FROM seg WHERE emb MATCH ? AND k = ? ORDER BY distance", (row.tobytes(), K))] for row in q[:SQLITE_VEC_QUERIES]])
    t = (time.perf_counter() - t0) * q.shape[0] / min(q.shape[0], SQLITE_VEC_QUERIES)
    conn.close()
    path.unlink(missing_ok=True)
    return {"sqlite_vec": {"build_s": b, "query_s": t, "ids": ids}}


def vector_search(db: Path, query_rows: np.ndarray, n_tracks: int, work: Path, seed: int, log: Any = print) -> dict[str, Any]:
    """Recall@10 and latency of each method for all of one candidate's rows at ``n_tracks`` tracks."""
    raw = segments(db, n_tracks, seed)
    mu, sd = raw.mean(0), raw.std(0) + 1e-9
    base = ((raw - mu) / sd).astype(np.float32)
    del raw
    q = np.ascontiguousarray((query_rows - mu) / sd, dtype=np.float32)
    exact, t_exact = _timed(_exact, base, q)
    res: dict[str, Any] = {"exact_numpy": {"build_s": 0.0, "query_s": t_exact, "ids": exact}}
    for fn in (_faiss, _usearch):
        try:
            res.update(fn(base, q))
        except ImportError as exc:
            log(f"skipped {fn.__name__}: {exc}")
    try:
        res.update(_sqlite_vec(base, q, work))
    except (ImportError, AttributeError) as exc:
        log(f"skipped sqlite-vec: {exc}")
    out: dict[str, Any] = {"tracks": n_tracks, "segments": int(base.shape[0]), "dim": int(base.shape[1]),
                           "queries": int(q.shape[0]), "k": K, "methods": {}}
    for name, r in res.items():
        recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(r["ids"], exact, strict=False)]))
        out["methods"][name] = {"build_s": r["build_s"], "query_s": r["query_s"], "recall_at_10": recall}
        log(f"vectors {n_tracks} tracks {name}: {out['methods'][name]}")
    return out
