"""Style audit: which reference artist does each candidate track resemble, how sure is that, and is it a copy?

For every candidate track against every reference set (one per artist):

* **per-track FAD** to each reference (the candidate's own embedding Gaussian against the
  artist's), and the closest reference; **per-track KAD** beside it (kadtk's defaults);
* **confidence** two ways: a bootstrap (candidate rows resampled in blocks, reference files
  resampled per artist) giving how often the closest reference stays closest, and a style
  classifier (standardised logistic regression on the references' embedding rows) giving a
  probability per artist;
* an interpretable **style profile** (tempo, key, loudness, spectral statistics) beside each
  artist's;
* a **memorisation check**: the nearest reference segments in embedding space (with the
  distance relative to how close different reference tracks usually come) and a landmark
  fingerprint match with its time offset; an aligned fingerprint match flags a near-copy.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.errors import AudioDecodeError, StylecraftError
from stylecraft.evaluate.audit.attribution import Attributor, follow_copy
from stylecraft.evaluate.audit.fingerprint import FingerprintIndex
from stylecraft.evaluate.audit.profile import LoudnessNormalized, artist_profile, style_profile
from stylecraft.evaluate.embeddings import Embedding, get_embedding
from stylecraft.evaluate.fad import (
    EmbeddedSet,
    embed_set,
    environment_versions,
    list_audio_files,
    load_audio_for_embedding,
)
from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats
from stylecraft.evaluate.kad import kernel_audio_distance
from stylecraft.progress import progress_iter

__all__ = ["AuditSettings", "audit_json", "parse_references", "run_audit"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """Knobs of an audit (all recorded in its JSON).

    Attributes:
        embedding: Registry name of the embedding.
        n_boot: Bootstrap replicates for the closest-reference confidence.
        block_rows: Consecutive candidate rows resampled together (rows are correlated in time).
        seed: Seed of every random choice.
        profile_s: Seconds of each track (from its middle) analysed for the style profile.
        nearest: Nearest reference segments reported per candidate.
        copy_min_aligned: Fingerprint hashes that must agree on one offset to flag a near-copy.
        copy_min_fraction: ... and the fraction of the candidate's hashes they must be.
        classifier_window_rows: Consecutive embedding rows pooled (mean and std) into one
            window embedding for the style classifier.
        attribution_folds: Track-grouped folds over the reference tracks used to fit how the
            classifier and the nearest-track FAD are combined into calibrated probabilities.
        workers: Files embedded at once.
        loudness_lufs: Every track (references and candidates) is scaled to this integrated
            loudness before it is embedded, so that attribution follows the music and not the
            mastering level (which the style profile reports separately); ``None`` embeds the
            files as they are.
    """

    embedding: str = "mfcc"
    n_boot: int = 100
    block_rows: int = 8
    seed: int = 0
    profile_s: float = 60.0
    nearest: int = 3
    # Chance alignments of never-indexed music reach about 15 hashes in a 10 s excerpt and 30 over a
    # whole track (then spread over it: under 0.5 % of its hashes); see eval/results/bench_index.md.
    copy_min_aligned: int = 25
    copy_min_fraction: float = 0.01
    classifier_window_rows: int = 5
    attribution_folds: int = 5
    workers: int = 1
    loudness_lufs: float | None = -23.0


def parse_references(items: list[str]) -> dict[str, Path]:
    """Parse ``NAME=PATH`` reference arguments.

    Raises:
        StylecraftError: For a malformed item, a repeated name, or a missing folder.
    """
    refs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise StylecraftError(f"--reference must look like NAME=PATH, got {item!r}")
        if name in refs:
            raise StylecraftError(f"reference name {name!r} is given twice")
        p = Path(path)
        if not p.is_dir():
            raise StylecraftError(f"reference {name!r}: {p} is not a folder of audio")
        refs[name] = p
    if len(refs) < 1:
        raise StylecraftError("give at least one --reference NAME=PATH")
    return refs


def _block_resample(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a moving-block bootstrap sample of ``n`` time-ordered rows."""
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, size=int(np.ceil(n / block)))
    return np.concatenate([np.arange(s, s + block) for s in starts])[:n]


@dataclasses.dataclass
class _Reference:
    """One reference artist: its embedded set, Gaussian and per-track style profiles."""

    name: str
    emb: EmbeddedSet
    mu: np.ndarray
    sigma: np.ndarray
    profiles: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _file_times(emb_rows: int, duration_s: float) -> np.ndarray:
    """Start time of each embedding row, spreading the rows evenly over the file."""
    return np.arange(emb_rows) * (duration_s / max(1, emb_rows))


def run_audit(
    references: dict[str, Path],
    candidates: list[Path],
    settings: AuditSettings | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    embedding: Embedding | None = None,
) -> dict[str, Any]:
    """Audit candidate tracks against reference artists.

    Args:
        references: Artist name -> folder of that artist's tracks.
        candidates: Candidate audio files or folders of them.
        settings: :class:`AuditSettings` (defaults if ``None``).
        cache_dir: Per-file embedding cache.
        progress: Show progress bars.
        embedding: A built embedding (overrides ``settings.embedding``).

    Returns:
        A record (JSON-serialisable after :func:`audit_json`): ``candidates`` (one dict per candidate track with ``path``,
        ``scores`` (per-track FAD per reference name), ``closest`` (lowest score), ``kad_scores``
        and ``kad_closest`` (the same with KAD),
        ``confidence``, ``attributed`` and ``probabilities`` (the calibrated attribution of
        :class:`~stylecraft.evaluate.audit.attribution.Attributor`; ``attribution`` holds its
        evidence), ``profile``, ``memorization``), ``references`` (per artist: files, rows,
        profile), ``attribution`` (fitted weights and out-of-fold accuracy on the reference
        tracks), ``skipped``, ``settings``, ``embedding_settings``, ``versions``.

    Raises:
        StylecraftError: For missing inputs, no usable candidate, or a reference with fewer
            than two embedding rows.
    """
    cfg = settings or AuditSettings()
    if cfg.n_boot < 10:
        raise StylecraftError(f"the audit bootstrap needs at least 10 replicates, got {cfg.n_boot}")
    emb_model = embedding or get_embedding(cfg.embedding)
    if cfg.loudness_lufs is not None:
        emb_model = LoudnessNormalized(emb_model, cfg.loudness_lufs)
    rng = np.random.default_rng(cfg.seed)
    refs, index, durations = _embed_references(references, emb_model, cfg, cache_dir, progress)
    attributor = _fit_attributor(refs, cfg)
    space = _segment_space(refs, durations, rng)
    files = candidate_files(candidates)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    cand_rows: dict[str, np.ndarray] = {}
    for path in progress_iter(files, f"auditing candidates ({emb_model.name})", enabled=progress):
        try:
            audio, sr = load_audio_for_embedding(path)
            rows = np.asarray(emb_model.embed(audio, sr), dtype=np.float64)
        except AudioDecodeError as exc:
            skipped.append({"path": str(path), "reason": " ".join(str(exc).split())})
            continue
        if rows.shape[0] < 2:
            skipped.append({"path": str(path), "reason": f"{rows.shape[0]} embedding row(s); per-track FAD needs 2"})
            continue
        cand_rows[str(path)] = rows
        results.append(_audit_candidate(path, rows, audio, sr, refs, attributor, space, index, cfg, rng))
    if not results:
        raise StylecraftError(f"none of the {len(files)} candidate files could be audited; first: {skipped[0]['reason']}")
    return {
        "candidates": results,
        "references": {r.name: _reference_record(r, references[r.name]) for r in refs},
        "skipped": skipped,
        "attribution": None if attributor is None else attributor.summary(),
        "settings": dataclasses.asdict(cfg),
        "embedding": emb_model.name,
        "embedding_settings": emb_model.settings(),
        "versions": environment_versions(),
        # For the report's embedding map; left out of the JSON by audit_json.
        "_rows": {"references": {r.name: r.emb.embeddings for r in refs}, "candidates": cand_rows},
    }


def _embed_references(
    references: dict[str, Path], emb_model: Embedding, cfg: AuditSettings, cache_dir: Path | None, progress: bool
) -> tuple[list[_Reference], FingerprintIndex, dict[str, float]]:
    """Every reference set's embeddings, Gaussian and style profiles, and one fingerprint index
    over all their files (with each file's duration in seconds)."""
    refs: list[_Reference] = []
    index = FingerprintIndex()
    durations: dict[str, float] = {}
    for name, folder in references.items():
        es = embed_set(folder, emb_model, cache_dir=cache_dir, progress=progress, workers=cfg.workers)
        if es.embeddings.shape[0] < 2:
            raise StylecraftError(f"reference {name!r} gives {es.embeddings.shape[0]} embedding row(s); need at least 2")
        mu, sigma = gaussian_stats(es.embeddings)
        ref = _Reference(name, es, mu, sigma)
        refs.append(ref)
        for f in progress_iter(es.files, f"profiling + fingerprinting {name}", enabled=progress):
            audio, sr = load_audio_for_embedding(f)
            durations[f] = audio.shape[0] / sr
            index.add(f, audio, sr)
            ref.profiles.append(style_profile(audio, sr, cfg.profile_s))
    return refs, index, durations


def _fit_attributor(refs: list[_Reference], cfg: AuditSettings) -> Attributor | None:
    """The window classifier + nearest-track FAD, weights fitted by grouped CV (two or more artists)."""
    if len(refs) < 2:
        return None
    per_track: dict[str, list[tuple[str, np.ndarray]]] = {}
    for r in refs:
        bounds = np.cumsum([0, *r.emb.sizes])
        per_track[r.name] = [
            (f, r.emb.embeddings[bounds[i] : bounds[i + 1]])
            for i, f in enumerate(r.emb.files)
            if bounds[i + 1] - bounds[i] >= 2
        ]
        if not per_track[r.name]:
            raise StylecraftError(
                f"reference {r.name!r} has no track long enough for its own statistics "
                "(2 embedding rows each): add longer tracks"
            )
    return Attributor(per_track, window_rows=cfg.classifier_window_rows, folds=cfg.attribution_folds, seed=cfg.seed)


@dataclasses.dataclass
class _SegmentSpace:
    """The nearest-segment search space: standardised reference rows and where each comes from."""

    scale_mu: np.ndarray
    scale_sd: np.ndarray
    z_ref: np.ndarray  # [rows, D]
    row_file: list[str]
    row_time: list[float]
    row_ref: list[str]
    baseline: float  # median nearest distance between rows of different reference tracks


def _segment_space(refs: list[_Reference], durations: dict[str, float], rng: np.random.Generator) -> _SegmentSpace:
    """Standardise the reference rows and measure how close rows of *different* reference
    tracks usually come (the median nearest distance over a sample of rows)."""
    all_rows = np.concatenate([r.emb.embeddings for r in refs])
    scale_mu = all_rows.mean(axis=0)
    scale_sd = all_rows.std(axis=0) + 1e-9
    z_ref = (all_rows - scale_mu) / scale_sd
    row_file: list[str] = []
    row_time: list[float] = []
    row_ref: list[str] = []
    for r in refs:
        for f, n in zip(r.emb.files, r.emb.sizes, strict=True):
            row_file += [f] * n
            row_time += _file_times(n, durations[f]).tolist()
            row_ref += [r.name] * n
    row_file_arr = np.array(row_file)
    sample = rng.choice(z_ref.shape[0], size=min(800, z_ref.shape[0]), replace=False)
    base = []
    for i in sample:
        d = np.linalg.norm(z_ref - z_ref[i], axis=1)
        d[row_file_arr == row_file_arr[i]] = np.inf
        if np.isfinite(d).any():
            base.append(float(d.min()))
    baseline = float(np.median(base)) if base else float("nan")
    return _SegmentSpace(scale_mu, scale_sd, z_ref, row_file, row_time, row_ref, baseline)


def candidate_files(candidates: list[Path]) -> list[Path]:
    """The candidate audio files: files as given, folders searched for audio."""
    files: list[Path] = []
    for c in candidates:
        c = Path(c)
        if c.is_dir():
            files += list_audio_files(c)
        elif c.is_file():
            files.append(c)
        else:
            raise StylecraftError(f"candidate {c} does not exist")
    if not files:
        raise StylecraftError("no candidate audio files given")
    return files


def _bootstrap_wins(rows: np.ndarray, refs: list[_Reference], cfg: AuditSettings, rng: np.random.Generator) -> Counter[str]:
    """How often each reference is closest when the candidate's rows (in blocks) and each
    reference's files are resampled."""
    wins: Counter[str] = Counter()
    ref_groups = {r.name: np.cumsum([0, *r.emb.sizes]) for r in refs}
    for _ in range(cfg.n_boot):
        cand = rows[_block_resample(rows.shape[0], cfg.block_rows, rng)]
        m_c, s_c = gaussian_stats(cand)
        rep: dict[str, float] = {}
        for r in refs:
            bounds = ref_groups[r.name]
            pick = rng.integers(0, len(bounds) - 1, size=len(bounds) - 1)
            sel = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in pick])
            sub = r.emb.embeddings[sel] if sel.size >= 2 else r.emb.embeddings
            m_r, s_r = gaussian_stats(sub)
            rep[r.name] = frechet_distance(m_r, s_r, m_c, s_c)
        wins[min(rep, key=lambda k: rep[k])] += 1
    return wins


def _nearest_segments(rows: np.ndarray, duration_s: float, space: _SegmentSpace, nearest: int) -> list[dict[str, Any]]:
    """The ``nearest`` closest (candidate row, reference row) pairs, one per 5 s of a reference track."""
    z_c = (rows - space.scale_mu) / space.scale_sd
    d2 = (z_c**2).sum(1)[:, None] + (space.z_ref**2).sum(1)[None, :] - 2 * z_c @ space.z_ref.T
    dist = np.sqrt(np.maximum(d2, 0.0))
    cand_times = _file_times(rows.shape[0], duration_s)
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for idx in np.argsort(dist, axis=None):
        ci, ri = divmod(int(idx), dist.shape[1])
        key = (space.row_file[ri], int(space.row_time[ri] // 5))  # one hit per 5 s of a reference track
        if key in seen:
            continue
        seen.add(key)
        found.append({
            "reference": space.row_ref[ri], "path": space.row_file[ri], "reference_time_s": round(space.row_time[ri], 2),
            "candidate_time_s": round(float(cand_times[ci]), 2), "distance": float(dist[ci, ri]),
            "relative_distance": float(dist[ci, ri] / space.baseline) if space.baseline > 0 else None,
        })
        if len(found) == nearest:
            break
    return found


def style_fields(scores: dict[str, float], closest: str, kad_scores: dict[str, float], wins: Counter[str],
                 n_boot: int, attribution: dict[str, Any] | None) -> dict[str, Any]:
    """The style part of a candidate's audit record (the same keys with or without an index)."""
    return {
        "scores": scores,
        "closest": closest,
        "kad_scores": kad_scores,
        "kad_closest": min(kad_scores, key=lambda k: kad_scores[k]),
        "confidence": {"bootstrap": wins[closest] / n_boot, "bootstrap_wins": dict(wins), "n_boot": n_boot},
        "probabilities": None if attribution is None else attribution["probabilities"],
        "attributed": None if attribution is None else attribution["artist"],
        "attribution": attribution,
        "classifier_closest": None if attribution is None else max(attribution["classifier"], key=attribution["classifier"].get),
    }


def _audit_candidate(path: Path, rows: np.ndarray, audio: np.ndarray, sr: int, refs: list[_Reference],
                     attributor: Attributor | None, space: _SegmentSpace, index: FingerprintIndex,
                     cfg: AuditSettings, rng: np.random.Generator) -> dict[str, Any]:
    """One candidate's scores, confidence, attribution, profile and memorisation check."""
    mu_c, sigma_c = gaussian_stats(rows)
    scores = {r.name: frechet_distance(r.mu, r.sigma, mu_c, sigma_c) for r in refs}
    closest = min(scores, key=lambda k: scores[k])
    # KAD beside FAD (kadtk's defaults: the kernel's bandwidth from the candidate's own rows).
    kad_scores = {r.name: kernel_audio_distance(r.emb.embeddings, rows).kad for r in refs}
    wins = _bootstrap_wins(rows, refs, cfg, rng)
    attribution = None if attributor is None else attributor.attribute(rows)
    nearest = _nearest_segments(rows, audio.shape[0] / sr, space, cfg.nearest)
    fp = index.match(audio, sr)
    near_copy = fp.is_copy(cfg.copy_min_aligned, cfg.copy_min_fraction)
    copy_artist = space.row_ref[space.row_file.index(fp.reference)] if near_copy and fp.reference is not None else None
    return follow_copy({
        "path": str(path),
        **style_fields(scores, closest, kad_scores, wins, cfg.n_boot, attribution),
        "n_rows": int(rows.shape[0]),
        "profile": style_profile(audio, sr, cfg.profile_s),
        "memorization": {
            "near_copy": near_copy,
            "fingerprint": dataclasses.asdict(fp),
            "nearest_segments": nearest,
            "baseline_nearest_distance": space.baseline,
        },
    }, copy_artist)


def _reference_record(ref: _Reference, folder: Path) -> dict[str, Any]:
    """One reference set in the audit record: its files, rows, skips and artist profile."""
    return {
        "path": str(folder),
        "files": ref.emb.files,
        "rows": int(ref.emb.embeddings.shape[0]),
        "skipped": [{"path": p, "reason": why} for p, why in ref.emb.skipped],
        "profile": artist_profile(ref.profiles),
    }


def audit_json(record: dict[str, Any]) -> dict[str, Any]:
    """The audit record without its in-memory embedding arrays (keys starting with ``_``)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}
