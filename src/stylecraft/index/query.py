"""``stylecraft audit --index DB CANDIDATE…``: the style audit answered from a catalogue index.

Nothing of the catalogue is read again: artist Gaussians come from the pooled sums, per-track
Gaussians and segment embeddings from their tables, copies from the inverted fingerprint table,
and the attribution model was fitted when the index was built. The record has the keys of
:func:`~stylecraft.evaluate.audit.run_audit`'s (so ``audit_json`` and ``write_report`` take it
as they are), plus ``memorization.nearest_tracks`` and ``index``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.errors import AudioDecodeError, StylecraftError
from stylecraft.evaluate.audit.attribution import follow_copy
from stylecraft.evaluate.audit.run import candidate_files, style_fields
from stylecraft.evaluate.frechet import gaussian_stats
from stylecraft.evaluate.kad import kernel_audio_distance
from stylecraft.index.attribution import load_model
from stylecraft.index.build import IndexSettings, built_embeddings
from stylecraft.index.codec import unpack
from stylecraft.index.copies import match_postings
from stylecraft.index.gaussians import frechet_to_many, gaussian_from_sums
from stylecraft.index.store import Store, open_store
from stylecraft.index.tracks import TrackTable, load_track_table, nearest_tracks
from stylecraft.progress import progress_iter

__all__ = ["IndexAuditSettings", "IndexReader", "audit_with_index"]


@dataclasses.dataclass(frozen=True)
class IndexAuditSettings:
    """Knobs of an audit against an index (recorded in its JSON).

    Attributes:
        embedding: One of the index's embeddings (``None``: its first).
        n_boot: Bootstrap replicates of the closest-artist confidence.
        block_rows: Consecutive candidate rows resampled together.
        contenders: Artists (the closest by FAD) that take part in the bootstrap; farther ones
            never become closest in a replicate in practice, and leaving them out keeps the cost
            independent of the catalogue's size.
        seed: Seed of every random choice.
        profile_s: Seconds of the candidate analysed for its style profile.
        nearest: Nearest reference segments reported.
        nearest_tracks: Nearest tracks (by per-track FAD) reported.
        segment_tracks: Tracks whose segments are searched for the nearest segments: the
            nearest ones by per-track FAD, plus the fingerprint match (all tracks when the
            index has no more).
        copy_min_aligned: Aligned hashes needed to call a near-copy.
        copy_min_fraction: ... and their share of the candidate's hashes in the span they cover.
    """

    embedding: str | None = None
    n_boot: int = 100
    block_rows: int = 8
    contenders: int = 5
    seed: int = 0
    profile_s: float = 60.0
    nearest: int = 3
    nearest_tracks: int = 5
    segment_tracks: int = 64
    # Chance alignments of never-indexed music reach about 15 hashes in a 10 s excerpt and 30 over a
    # whole track (spread over it: under 0.5 % of the hashes in their span); see eval/results/bench_index.md.
    copy_min_aligned: int = 25
    copy_min_fraction: float = 0.01


class IndexReader:
    """An open index and what every audit against it reads once (artists, track table, model)."""

    def __init__(self, db: str | Path, embedding: str | None = None) -> None:
        self.store: Store = open_store(db)
        with self.store.read():
            self.settings = IndexSettings.from_json(self.store.meta("settings"))
            self.embedding = embedding or self.settings.embeddings[0]
            if self.embedding not in self.settings.embeddings:
                raise StylecraftError(f"the index holds embeddings {list(self.settings.embeddings)}, not {self.embedding!r}")
            self.generation = int(self.store.meta("generation") or 0)
            self.table = load_track_table(self.store, self.embedding)
            if len(self.table.ids) == 0:
                raise StylecraftError(f"the index {db} holds no track yet: add some with `stylecraft index add`")
            self.model, self.model_generation = load_model(self.store, self.embedding)
            self.artist_gauss = self._artist_gaussians()
            self.paths = dict(self.store.query("SELECT id, path FROM tracks"))
            self.profiles = self.store.query(
                "SELECT a.name, t.profile FROM tracks t JOIN artists a ON a.id = t.artist_id")
            self.embedding_settings = (self.store.meta("embedding_settings") or {}).get(self.embedding, {})
            self.baseline = self.store.meta(f"baseline/{self.embedding}")
        self.counts: dict[int, int] = {}
        self.durations: dict[int, float] = {}
        self.emb_model = built_embeddings(dataclasses.replace(self.settings, embeddings=(self.embedding,)))[self.embedding]

    def kad_reference(self, per_artist: int = 64) -> dict[str, np.ndarray]:
        """Segment rows of a fixed sample of up to ``per_artist`` tracks of each artist (KAD's reference;
        the same sample for every candidate and every audit of this index generation)."""
        if getattr(self, "_kad_reference", None) is None:
            self._kad_reference = _reference_sample(self, np.random.default_rng(0), per_artist)
        return self._kad_reference

    def _artist_gaussians(self) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
        d = self.table.means.shape[1]
        out = {}
        total_n, total_s, total_ss = 0, np.zeros(d), np.zeros((d, d))
        for name, n, s, ss in self.store.query(
            "SELECT a.name, ae.n_rows, ae.row_sum, ae.outer_sum FROM artist_embeddings ae JOIN artists a ON a.id = ae.artist_id "
            "WHERE ae.embedding = ? ORDER BY a.name", (self.embedding,)):
            s_arr, ss_arr = unpack(s, "float64", (d,)), unpack(ss, "float64", (d, d))
            mu, cov = gaussian_from_sums(int(n), s_arr, ss_arr)
            out[name] = (mu, cov, int(n))
            total_n, total_s, total_ss = total_n + int(n), total_s + s_arr, total_ss + ss_arr
        # Standardisation of segment distances, as the in-memory audit does over all reference rows.
        self.z_mu = total_s / total_n
        self.z_sd = np.sqrt(np.maximum(np.diag(total_ss) / total_n - self.z_mu**2, 0.0)) + 1e-9
        return out

    def close(self) -> None:
        self.store.close()


def _block_resample(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, size=int(np.ceil(n / block)))
    return np.concatenate([np.arange(s, s + block) for s in starts])[:n]


def _bootstrap(reader: IndexReader, rows: np.ndarray, scores: dict[str, float], cfg: IndexAuditSettings,
               rng: np.random.Generator) -> Counter[str]:
    """How often each contender is closest when candidate rows and artists' tracks are resampled."""
    t = reader.table
    names = sorted(scores, key=lambda a: scores[a])[: cfg.contenders]
    d = t.means.shape[1]
    per: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for a in names:
        rows_a = np.flatnonzero(t.artist == t.artists.index(a))
        n = np.array([reader.counts[int(t.ids[r])] for r in rows_a], dtype=np.float64)
        covs = t.covariances(reader.store, rows_a)
        mus = t.means[rows_a]
        per[a] = (n, n[:, None] * mus, (n - 1)[:, None, None] * covs + n[:, None, None] * np.einsum("ki,kj->kij", mus, mus))
    wins: Counter[str] = Counter()
    for _ in range(cfg.n_boot):
        m_c, s_c = gaussian_stats(rows[_block_resample(rows.shape[0], cfg.block_rows, rng)])
        mus, covs = np.zeros((len(names), d)), np.zeros((len(names), d, d))
        for k, a in enumerate(names):
            n, s, ss = per[a]
            pick = np.bincount(rng.integers(0, n.size, size=n.size), minlength=n.size).astype(np.float64)
            mus[k], covs[k] = gaussian_from_sums(int(pick @ n), pick @ s, np.tensordot(pick, ss, axes=1))
        wins[names[int(np.argmin(frechet_to_many(m_c, s_c, mus, covs)))]] += 1
    return wins


def _nearest_segments(reader: IndexReader, rows: np.ndarray, cand_times: np.ndarray, track_rows: list[int],
                      cfg: IndexAuditSettings) -> list[dict[str, Any]]:
    t = reader.table
    ids = [int(t.ids[r]) for r in track_rows]
    marks = ",".join("?" for _ in ids)
    got = reader.store.query(f"SELECT track_id, n_rows, dim, segments FROM track_embeddings WHERE embedding = ? AND track_id IN ({marks})",
                             (reader.embedding, *ids))
    seg, owner, times = [], [], []
    for tid, n, d, blob in got:
        r = unpack(blob, "float32", (int(n), int(d))).astype(np.float64)
        seg.append(r)
        owner += [int(tid)] * int(n)
        dur = reader.durations[int(tid)]
        times.append(np.arange(int(n)) * (dur / max(1, int(n))))
    z_ref = (np.concatenate(seg) - reader.z_mu) / reader.z_sd
    z_c = (rows - reader.z_mu) / reader.z_sd
    d2 = (z_c**2).sum(1)[:, None] + (z_ref**2).sum(1)[None, :] - 2 * z_c @ z_ref.T
    dist = np.sqrt(np.maximum(d2, 0.0))
    ref_times = np.concatenate(times)
    artist_of = {int(i): t.artists[int(a)] for i, a in zip(t.ids, t.artist, strict=True)}
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, int]] = set()
    base = reader.baseline
    for idx in np.argsort(dist, axis=None):
        ci, ri = divmod(int(idx), dist.shape[1])
        key = (owner[ri], int(ref_times[ri] // 5))  # one hit per 5 s of a reference track
        if key in seen:
            continue
        seen.add(key)
        out.append({
            "reference": artist_of[owner[ri]], "path": reader.paths[owner[ri]], "reference_time_s": round(float(ref_times[ri]), 2),
            "candidate_time_s": round(float(cand_times[ci]), 2), "distance": float(dist[ci, ri]),
            "relative_distance": float(dist[ci, ri] / base) if base else None,
        })
        if len(out) == cfg.nearest:
            break
    return out


def audit_candidate(reader: IndexReader, audio: np.ndarray, sr: int, rows: np.ndarray, cfg: IndexAuditSettings,
                    rng: np.random.Generator) -> dict[str, Any]:
    """Everything the audit says about one embedded candidate (its rows already computed)."""
    from stylecraft.evaluate.audit.fingerprint import landmarks
    from stylecraft.evaluate.audit.profile import style_profile

    t = reader.table
    mu_c, sigma_c = gaussian_stats(rows)
    names = list(reader.artist_gauss)
    fads = frechet_to_many(mu_c, sigma_c, np.stack([reader.artist_gauss[a][0] for a in names]),
                           np.stack([reader.artist_gauss[a][1] for a in names]))
    scores = {a: float(f) for a, f in zip(names, fads, strict=True)}
    closest = min(scores, key=lambda k: scores[k])
    # KAD beside FAD, as run_audit reports it (kadtk's defaults), against a fixed sample of each artist.
    kad_scores = {a: float(kernel_audio_distance(ref, rows).kad) for a, ref in reader.kad_reference().items()}
    wins = _bootstrap(reader, rows, scores, cfg, rng)
    attribution = None if reader.model is None else reader.model.attribute(reader.store, t, rows)
    _, _, top = nearest_tracks(reader.store, t, mu_c, sigma_c, top=max(cfg.nearest_tracks, cfg.segment_tracks))
    hashes, times = landmarks(audio, sr, **reader.settings.fingerprint())
    fp = match_postings(reader.store, hashes, times, reader.paths)
    near_copy = fp.is_copy(cfg.copy_min_aligned, cfg.copy_min_fraction)
    search = [r for r, _ in top[: cfg.segment_tracks]]
    if fp.track_id >= 0:
        search.append(int(np.flatnonzero(t.ids == fp.track_id)[0]))
    cand_times = np.arange(rows.shape[0]) * (audio.shape[0] / sr / max(1, rows.shape[0]))
    result = {
        **style_fields(scores, closest, kad_scores, wins, cfg.n_boot, attribution),
        "n_rows": int(rows.shape[0]),
        "profile": style_profile(audio, sr, cfg.profile_s),
        "memorization": {
            "near_copy": near_copy,
            "fingerprint": fp.as_json(),
            "nearest_segments": _nearest_segments(reader, rows, cand_times, list(dict.fromkeys(search)), cfg),
            "nearest_tracks": [{"reference": t.artists[int(t.artist[r])], "path": t.paths[r], "fad": f}
                               for r, f in top[: cfg.nearest_tracks]],
            "baseline_nearest_distance": reader.baseline,
        },
    }
    copy_artist = t.artists[int(t.artist[np.flatnonzero(t.ids == fp.track_id)[0]])] if near_copy else None
    return follow_copy(result, copy_artist)


def audit_with_index(
    db: str | Path, candidates: list[Path], settings: IndexAuditSettings | None = None, progress: bool = True,
    reader: IndexReader | None = None,
) -> dict[str, Any]:
    """Audit candidate files against an index.

    Args:
        db: The index (SQLite path or ``postgresql://`` URL).
        candidates: Audio files or folders.
        settings: :class:`IndexAuditSettings`.
        progress: Show progress.
        reader: An already open :class:`IndexReader` (``db`` is then ignored).

    Returns:
        A record with the keys of ``run_audit``'s (see the module docstring).

    Raises:
        StylecraftError: No index, an empty index, or no usable candidate.
    """
    from stylecraft.evaluate.audit.profile import artist_profile
    from stylecraft.evaluate.fad import environment_versions, load_audio_for_embedding

    cfg = settings or IndexAuditSettings()
    if cfg.n_boot < 10:
        raise StylecraftError(f"the audit bootstrap needs at least 10 replicates, got {cfg.n_boot}")
    own = reader is None
    rd = reader or IndexReader(db, cfg.embedding)
    try:
        files = candidate_files(candidates)
        rng = np.random.default_rng(cfg.seed)
        results, skipped, cand_rows = [], [], {}
        with rd.store.read():
            rd.counts = dict(rd.store.query("SELECT track_id, n_rows FROM track_embeddings WHERE embedding = ?", (rd.embedding,)))
            rd.durations = dict(rd.store.query("SELECT id, duration_s FROM tracks"))
            for path in progress_iter(files, f"auditing against the index ({rd.embedding})", enabled=progress):
                try:
                    audio, sr = load_audio_for_embedding(path)
                    rows = np.asarray(rd.emb_model.embed(audio, sr), dtype=np.float64)
                except AudioDecodeError as exc:
                    skipped.append({"path": str(path), "reason": " ".join(str(exc).split())})
                    continue
                if rows.shape[0] < 2:
                    skipped.append({"path": str(path), "reason": f"{rows.shape[0]} embedding row(s); per-track FAD needs 2"})
                    continue
                cand_rows[str(path)] = rows
                results.append({"path": str(path), **audit_candidate(rd, audio, sr, rows, cfg, rng)})
            ref_rows = _reference_sample(rd, rng)
            rejects = rd.store.query("SELECT artist, path, reason FROM rejects ORDER BY path")
        if not results:
            raise StylecraftError(f"none of the {len(files)} candidate files could be audited; first: {skipped[0]['reason']}")
        by_artist: dict[str, list[dict[str, Any]]] = {}
        for name, prof in rd.profiles:
            by_artist.setdefault(name, []).append(json.loads(prof))
        t = rd.table
        return {
            "candidates": results,
            "references": {
                a: {"path": f"index:{rd.store.url if rd.store.dialect == 'sqlite' else 'postgresql'}",
                    "files": [p for p, k in zip(t.paths, t.artist, strict=True) if t.artists[int(k)] == a],
                    "rows": rd.artist_gauss[a][2],
                    "skipped": [{"path": p, "reason": why} for who, p, why in rejects if who == a], "profile": artist_profile(by_artist[a])}
                for a in t.artists
            },
            "skipped": skipped,
            "attribution": None if rd.model is None else {k: v for k, v in rd.model.summary.items() if k != "artists"},
            "settings": dataclasses.asdict(cfg),
            "embedding": rd.embedding,
            "embedding_settings": rd.embedding_settings,
            "versions": environment_versions(),
            "index": {"backend": rd.store.dialect, "generation": rd.generation, "model_generation": rd.model_generation,
                      "tracks": int(len(t.ids)), "artists": len(t.artists)},
            "_rows": {"references": ref_rows, "candidates": cand_rows},
        }
    finally:
        if own:
            rd.close()


def _reference_sample(rd: IndexReader, rng: np.random.Generator, per_artist: int = 40) -> dict[str, np.ndarray]:
    """Segment rows of up to ``per_artist`` tracks of each artist, for the report's embedding map."""
    t: TrackTable = rd.table
    out: dict[str, list[np.ndarray]] = {}
    for k, a in enumerate(t.artists):
        ids = t.ids[t.artist == k]
        pick = rng.choice(ids, size=min(per_artist, ids.size), replace=False)
        marks = ",".join("?" for _ in pick)
        for n, d, blob in rd.store.query(f"SELECT n_rows, dim, segments FROM track_embeddings WHERE embedding = ? AND track_id IN ({marks})",
                                         (rd.embedding, *[int(i) for i in pick])):
            out.setdefault(a, []).append(unpack(blob, "float32", (int(n), int(d))).astype(np.float64))
    return {a: np.concatenate(v) for a, v in out.items()}
