"""Catalogue index: build, skip, reject, remove, audit from the index (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli

from stylecraft.errors import StylecraftError
from stylecraft.evaluate.audit import AuditSettings, audit_json, run_audit
from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats
from stylecraft.index.build import build_index, index_stats, remove_from_index
from stylecraft.index.codec import unpack
from stylecraft.index.gaussians import frechet_lower_bound, frechet_to_many, gaussian_from_sums
from stylecraft.index.query import IndexAuditSettings, audit_with_index
from stylecraft.index.store import open_store


def _refs(root: Path) -> dict[str, Path]:
    return {"low": root / "low", "high": root / "high"}


def check_consistent(db: str) -> dict[str, int]:
    """Every track has its embeddings and exactly its postings, ``hash_counts`` counts exactly the
    postings of each hash, and each artist's pooled sums are those of its tracks' segments
    (recomputed here from the stored rows)."""
    store = open_store(db)
    try:
        with store.read():
            tracks = store.query("SELECT id, artist_id, n_hashes FROM tracks")
            postings = store.query("SELECT posting FROM fingerprints")
            per_track: dict[int, int] = {}
            for (p,) in postings:
                per_track[p >> 20] = per_track.get(p >> 20, 0) + 1
            assert {t: n for t, _, n in tracks if n} == per_track
            by_hash: dict[int, int] = {}
            for (h,) in store.query("SELECT hash FROM fingerprints"):
                by_hash[h] = by_hash.get(h, 0) + 1
            assert dict(store.query("SELECT hash, n FROM hash_counts")) == by_hash
            sums: dict[int, list[np.ndarray]] = {}
            for tid, artist, _ in tracks:
                (n, d, seg), = store.query("SELECT n_rows, dim, segments FROM track_embeddings WHERE track_id = ? AND embedding = 'mfcc'", (tid,))
                sums.setdefault(artist, []).append(unpack(seg, "float32", (n, d)).astype(np.float64))
            for artist, n, s, ss in store.query("SELECT artist_id, n_rows, row_sum, outer_sum FROM artist_embeddings"):
                rows = np.concatenate(sums[artist])
                d = rows.shape[1]
                assert n == rows.shape[0]
                np.testing.assert_allclose(unpack(s, "float64", (d,)), rows.sum(0), rtol=1e-9, atol=1e-6)
                mu, cov = gaussian_from_sums(n, unpack(s, "float64", (d,)), unpack(ss, "float64", (d, d)))
                mu_ref, cov_ref = gaussian_stats(rows)
                np.testing.assert_allclose(cov, cov_ref, rtol=1e-7, atol=1e-6)
            assert set(sums) == {a for a, *_ in store.query("SELECT artist_id FROM artist_embeddings")}
            return {"tracks": len(tracks), "postings": len(postings)}
    finally:
        store.close()


def test_frechet_to_many_and_its_lower_bound_match_frechet_distance():
    rng = np.random.default_rng(0)
    cand = rng.normal(size=(40, 6))
    mu_c, s_c = gaussian_stats(cand)
    refs = [gaussian_stats(rng.normal(loc=rng.normal(size=6), scale=rng.uniform(0.5, 2), size=(n, 6))) for n in (3, 10, 50, 200)]
    mus, sigmas = np.stack([m for m, _ in refs]), np.stack([s for _, s in refs])
    many = frechet_to_many(mu_c, s_c, mus, sigmas)
    one = np.array([frechet_distance(mu_c, s_c, m, s) for m, s in refs])
    np.testing.assert_allclose(many, one, rtol=1e-9)
    bound = frechet_lower_bound(mu_c, float(np.trace(s_c)), mus, np.trace(sigmas, axis1=1, axis2=2))
    assert (bound <= one + 1e-9).all() and (bound > 0).all()


def _build_and_check(db: str, catalogue: Path) -> None:
    report = build_index(db, _refs(catalogue), workers=2, commit_every=3, progress=False)
    assert (report.added, report.already_indexed, report.rejected) == (8, 0, 1)
    assert "broken.wav" in report.rejects[0]["path"] and report.rejects[0]["reason"]
    stats = index_stats(db)
    assert stats["tracks"] == 8 and set(stats["artists"]) == {"low", "high"}
    assert stats["artists"]["low"]["tracks"] == 4 and stats["rejects"][0]["path"].endswith("broken.wav")
    assert stats["models"]["mfcc"]["generation"] == stats["generation"]
    counts = check_consistent(db)
    # Built again: every file is skipped (same sha256), the broken one too (same bytes, same reject).
    again = build_index(db, _refs(catalogue), progress=False)
    assert (again.added, again.already_indexed, again.rejected) == (0, 8, 0)
    assert check_consistent(db) == counts


def _audit_and_check(db: str, catalogue: Path) -> dict:
    rec = audit_with_index(db, [catalogue / "cands"], IndexAuditSettings(n_boot=20), progress=False)
    by = {Path(c["path"]).name: c for c in rec["candidates"]}
    assert by["new_low.wav"]["closest"] == "low" and by["new_low.wav"]["attributed"] == "low"
    assert not by["new_low.wav"]["memorization"]["near_copy"]
    copy = by["copy_of_high2.wav"]
    assert copy["memorization"]["near_copy"] and copy["attributed"] == "high" and copy["closest"] == "high"
    assert copy["memorization"]["fingerprint"]["reference"].endswith("high2.wav")
    assert abs(copy["memorization"]["fingerprint"]["offset_s"] - 3.0) < 0.1
    assert Path(copy["memorization"]["nearest_segments"][0]["path"]).name == "high2.wav"
    assert Path(copy["memorization"]["nearest_tracks"][0]["path"]).name == "high2.wav"
    return rec


def _keys(obj: object, prefix: str = "") -> set[str]:
    if isinstance(obj, dict) and not (obj and all(isinstance(v, (int, float)) for v in obj.values()) and prefix.endswith(("scores", "probabilities", "wins"))):
        out = set()
        for k, v in obj.items():
            out |= {f"{prefix}.{k}"} | _keys(v, f"{prefix}.{k}")
        return out
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        return _keys(obj[0], prefix + "[]")
    return set()


def test_sqlite_index_builds_skips_rejects_and_audits_like_run_audit(catalogue, tmp_path):
    db = str(tmp_path / "cat.db")
    _build_and_check(db, catalogue)
    rec = _audit_and_check(db, catalogue)
    # The same JSON keys as the in-memory audit (the index adds a few of its own).
    mem = run_audit(_refs(catalogue), [catalogue / "cands"], AuditSettings(n_boot=20), progress=False)
    ours, theirs = _keys(audit_json(rec)), _keys(audit_json(mem))
    assert {k for k in theirs - ours if not k.startswith(".settings.")} == set()
    assert {".candidates[].memorization.fingerprint.reference", ".candidates[].memorization.fingerprint.offset_s",
            ".candidates[].memorization.near_copy", ".candidates[].closest"} <= ours
    json.dumps(audit_json(rec))


def test_remove_takes_tracks_postings_and_artist_sums_away(catalogue, tmp_path):
    db = str(tmp_path / "cat.db")
    build_index(db, _refs(catalogue), progress=False)
    full = check_consistent(db)
    assert remove_from_index(db, str(catalogue / "high" / "high2.wav")) == 1
    after = check_consistent(db)
    assert after["tracks"] == 7 and after["postings"] < full["postings"]
    rec = audit_with_index(db, [catalogue / "cands" / "copy_of_high2.wav"], IndexAuditSettings(n_boot=10), progress=False)
    assert not rec["candidates"][0]["memorization"]["near_copy"]  # the copied recording is gone
    assert remove_from_index(db, "low") == 4
    assert check_consistent(db)["tracks"] == 3 and index_stats(db)["artists"].keys() == {"high"}
    with pytest.raises(StylecraftError, match="no artist named"):
        remove_from_index(db, "nobody")
    # Added back: only the removed files are analysed again.
    again = build_index(db, _refs(catalogue), progress=False)
    assert (again.added, again.already_indexed) == (5, 3)
    assert check_consistent(db) == full


def test_index_settings_are_fixed_and_errors_are_one_line(catalogue, tmp_path):
    from stylecraft.index.build import IndexSettings

    db = str(tmp_path / "cat.db")
    build_index(db, {"low": catalogue / "low"}, progress=False)
    with pytest.raises(StylecraftError, match="built with"):
        build_index(db, {"low": catalogue / "low"}, IndexSettings(fan_out=3), progress=False)
    for args in (["index", "stats", str(tmp_path / "missing.db")],
                 ["audit", "--index", str(tmp_path / "missing.db"), str(catalogue / "cands")],
                 ["index", "build", db, "--reference", "oops"]):
        proc = run_cli(*args)
        assert proc.returncode == 1 and proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1, proc.stderr


def test_postgres_index_builds_removes_and_audits(catalogue, pg_url):
    import psycopg

    name = f"idx_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    db = pg_url.rsplit("/", 1)[0] + f"/{name}"
    _build_and_check(db, catalogue)
    _audit_and_check(db, catalogue)
    assert remove_from_index(db, str(catalogue / "high" / "high2.wav")) == 1
    assert check_consistent(db)["tracks"] == 7
    assert index_stats(db)["backend"] == "postgres"


def test_analysis_measures_loudness_once_with_the_same_embedding():
    from index_music import SR, music

    from stylecraft.audio.loudness import integrated_loudness
    from stylecraft.evaluate.audit import LoudnessNormalized
    from stylecraft.evaluate.embeddings import get_embedding

    emb = LoudnessNormalized(get_embedding("mfcc"), -23.0)
    audio = music(6.0, seed=3, low=True)[:, None]
    np.testing.assert_array_equal(emb.embed_measured(audio, SR, integrated_loudness(audio, SR)), emb.embed(audio, SR))
