"""Compare tab and ``/audit`` endpoint: takes beside the artist's own tracks.

The artist's tracks are the run's held-out tracks (``split == valid`` in ``tracks.jsonl``; all
tracks when none is held out). FAD and KAD, each with its bootstrap interval, come from
:func:`stylecraft.evaluate.fad.compute_fad`, the verdict (closest artist, attribution, near-copy
check) from :func:`stylecraft.evaluate.audit.run_audit`; per-file embeddings are cached in the
studio's folder, so every score after the first reuses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stylecraft.artifacts import read_jsonl, sha256_json
from stylecraft.audio import io as audio_io
from stylecraft.errors import StageInputError, StylecraftError
from stylecraft.studio.settings import StudioSettings

CI_LEVEL = 0.95
NO_CI = "n/a: an interval needs 8 takes or more"
SPECTROGRAM_S = 20.0  # seconds of each file shown in the comparison picture


@dataclass
class CompareResult:
    """What the Compare tab shows."""

    artist: str
    references: list[Path]
    takes: list[Path]
    spectrograms: Path
    metrics: list[dict[str, Any]]  # one row per metric: name, value, CI, sizes
    verdicts: list[dict[str, Any]]  # one row per take: closest, attributed, near-copy
    record: dict[str, Any] = field(default_factory=dict)


def run_artist(run: Path) -> str:
    """The artist a run was trained for (its recipe's ``artist``), else the folder's name."""
    recipe = run / "recipe.yaml"
    if recipe.is_file():
        data = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and data.get("artist"):
            return str(data["artist"])
    return run.name


def reference_tracks(run: Path) -> list[Path]:
    """The run's held-out tracks (all tracks when none is held out) that are still on disk."""
    path = run / "tracks.jsonl"
    if not path.is_file():
        raise StageInputError(f"'{path}' is missing: the run has no ingested tracks to compare with")
    rows = read_jsonl(path)
    held = [r for r in rows if r.get("split") == "valid"] or rows
    tracks = [Path(r["path"]) for r in held if Path(r["path"]).is_file()]
    if not tracks:
        raise StageInputError(f"none of the tracks listed in '{path}' is on this machine")
    return tracks


def reference_folder(tracks: list[Path], settings: StudioSettings) -> Path:
    """A folder of links to ``tracks`` (the scorers read folders), named by their paths."""
    folder = settings.out_dir / "references" / sha256_json(sorted(map(str, tracks)))[:16]
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tracks):
        link = folder / f"{i:03d}-{t.name}"
        if not link.exists():
            os.symlink(t.resolve(), link)
    return folder


def takes_in(folder: Path) -> list[Path]:
    """The audio files a takes folder lists in its ``generated.jsonl`` (else every FLAC in it)."""
    manifest = folder / "generated.jsonl"
    if manifest.is_file():
        files = [folder / str(r["file"]) for r in read_jsonl(manifest)]
    else:
        files = sorted(folder.glob("*.flac"))
    files = [f for f in files if f.is_file()]
    if not files:
        raise StylecraftError(f"'{folder}' holds no takes: generate some first, or name a folder of audio files")
    return files


def scores_with_ci(ref_dir: Path, takes_dir: Path, settings: StudioSettings, n_takes: int) -> dict[str, Any]:
    """FAD and KAD of the takes against the references (one embedding pass): the record of
    :func:`~stylecraft.evaluate.fad.compute_fad`, with a bootstrap interval over takes resampled
    whole when there are enough takes for one (``MIN_BOOTSTRAP_UNITS``)."""
    from stylecraft.evaluate.fad import compute_fad
    from stylecraft.evaluate.stats import MIN_BOOTSTRAP_UNITS

    ci = CI_LEVEL if n_takes >= MIN_BOOTSTRAP_UNITS else None
    return compute_fad(
        ref_dir, takes_dir, embedding_name=settings.embedding, cache_dir=settings.out_dir / "embeddings",
        progress=False, ci=ci, n_boot=settings.n_boot, metric="all",
    )


def audit_takes(references: dict[str, Path], takes: list[Path], settings: StudioSettings) -> dict[str, Any]:
    """The audit record of the takes against each reference artist's folder."""
    from stylecraft.evaluate.audit import AuditSettings, audit_json, run_audit

    record = run_audit(
        references, takes, AuditSettings(embedding=settings.embedding, n_boot=settings.n_boot),
        cache_dir=settings.out_dir / "embeddings", progress=False,
    )
    return audit_json(record)


def verdict_rows(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per take: closest artist, attribution and the copy check."""
    rows = []
    for c in audit["candidates"]:
        mem = c["memorization"]
        probs = c.get("probabilities") or {}
        attributed = c.get("attributed") or c["closest"]
        rows.append({
            "take": Path(c["path"]).name,
            "closest artist": c["closest"],
            "bootstrap confidence": round(float(c["confidence"]["bootstrap"]), 3),
            "attributed": attributed,
            "P(attributed)": round(float(probs[attributed]), 3) if attributed in probs else None,
            "copy check": f"NEAR-COPY of {mem['fingerprint']['reference']}" if mem["near_copy"] else "no near-copy",
        })
    return rows


def _metric_row(name: str, rec: dict[str, Any]) -> dict[str, Any]:
    """One table row of ``rec`` (a compute_fad record): ``name`` is FAD or KAD."""
    key, ci_key = ("fad", "ci") if name == "FAD" else ("kad", "kad_ci")
    ci = rec.get(ci_key) or {}
    return {"metric": name, "value": round(float(rec[key]), 4),
            "CI": f"{ci.get('level', CI_LEVEL):.0%} [{ci['low']:.4f}, {ci['high']:.4f}]" if ci else NO_CI,
            "reference rows": rec["n_ref"], "take rows": rec["n_gen"], "embedding": rec["embedding"]}


def comparison_picture(takes: list[Path], references: list[Path], out: Path, limit: int = 3) -> Path:
    """Spectrograms of the takes above the first few references (first 20 s of each)."""
    from stylecraft.evaluate.plots import spectrogram_grid

    clips, rate = [], 32000
    for label, files in (("take", takes[:limit]), ("reference", references[:limit])):
        for f in files:
            audio, sr = audio_io.load(f, duration_s=min(SPECTROGRAM_S, audio_io.probe(f).duration))
            mono = audio_io.resample(audio_io.to_mono(audio), sr, rate)
            clips.append((f"{label}: {f.name}", mono.astype(np.float32)))
    return spectrogram_grid(clips, rate, out)


def compare(
    settings: StudioSettings, run: Path, takes_dir: Path, others: dict[str, Path] | None = None
) -> CompareResult:
    """Score a takes folder against a run's artist (and other artists' folders, for the audit)."""
    if not takes_dir.is_dir():
        raise StylecraftError(f"takes folder '{takes_dir}' does not exist: generate takes first")
    takes = takes_in(takes_dir)
    refs = reference_tracks(run)
    ref_dir = reference_folder(refs, settings)
    artist = run_artist(run)
    scores = scores_with_ci(ref_dir, takes_dir, settings, len(takes))
    metrics = [_metric_row("FAD", scores), _metric_row("KAD", scores)]
    references = {artist: ref_dir, **(others or {})}
    audit = audit_takes(references, takes, settings)
    picture = comparison_picture(takes, refs, takes_dir / "compare.png")
    return CompareResult(
        artist=artist, references=refs, takes=takes, spectrograms=picture, metrics=metrics,
        verdicts=verdict_rows(audit), record={"scores": scores, "audit": audit},
    )


def parse_others(text: str) -> dict[str, Path]:
    """``NAME=FOLDER`` lines (other artists for the audit); blank lines ignored."""
    from stylecraft.evaluate.audit import parse_references

    items = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return parse_references(items) if items else {}
