"""The pipeline's ``separate`` stage: stems per track, and the audio the later stages train on.

For every track of ``tracks.jsonl`` it writes ``stems/<track id>/<stem>.flac`` and
``stems/<track id>/kept.flac``, the sum of the stems the recipe keeps (e.g. everything but the
vocals), and records them with their sha256 in ``stems.jsonl``. ``segment`` then reads
``kept.flac`` instead of the catalogue file. A track whose record is intact, made from the same
source hash, model and stem choice, is not separated again; a track that cannot be separated gets
a one-line reason in ``rejects.jsonl`` and the others go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylecraft.artifacts import read_jsonl, sha256_json, write_jsonl
from stylecraft.data.manifest import Track, load_rows, save_rows
from stylecraft.errors import AudioDecodeError, ConfigError, StageInputError
from stylecraft.progress import make_progress
from stylecraft.separate import describe_separator, load_separator
from stylecraft.separate.batch import outputs_intact
from stylecraft.separate.streaming import separate_file

__all__ = ["kept_stems", "run_separate", "stem_sources"]


def kept_stems(stems: tuple[str, ...], keep: list[str], drop: list[str]) -> list[str]:
    """The stems summed into the training audio: ``keep`` if given, else all but ``drop``.

    Raises:
        ConfigError: unknown stem names, or nothing left.
    """
    unknown = sorted((set(keep) | set(drop)) - set(stems))
    if unknown:
        raise ConfigError(f"separate.keep/drop name unknown stems {unknown}; the model gives {list(stems)}")
    chosen = [s for s in stems if s in keep] if keep else [s for s in stems if s not in drop]
    if not chosen:
        raise ConfigError(f"separate.keep/drop leave no stem to train on (model stems: {list(stems)})")
    return chosen


def run_separate(run_dir: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Separate every ingested track; returns the ``stems.jsonl`` rows.

    Raises:
        StageInputError: no tracks, or no track could be separated.
    """
    run = Path(run_dir)
    tracks_path = run / "tracks.jsonl"
    if not tracks_path.exists():
        raise StageInputError(f"'{tracks_path}' is missing: run `stylecraft ingest` first")
    tracks = load_rows(tracks_path, Track)
    if not tracks:
        raise StageInputError(f"'{tracks_path}' lists no tracks")
    separator = load_separator(
        params["model"],
        params.get("checkpoint") or None,
        device=None if params.get("device") in (None, "auto") else params["device"],
        batch_segments=params.get("batch_segments") or None,
    )
    kept = kept_stems(separator.stems, list(params.get("keep") or []), list(params.get("drop") or []))
    model = describe_separator(separator)
    key = sha256_json({"model": model, "kept": kept})
    manifest = run / "stems.jsonl"
    previous = {r["id"]: r for r in read_jsonl(manifest)} if manifest.exists() else {}
    rows: dict[str, dict[str, Any]] = {}
    rejects: list[dict[str, str]] = []
    with make_progress() as progress:
        task = progress.add_task("separate", total=len(tracks))
        for t in tracks:
            old = previous.get(t.id)
            if old and old.get("source_sha256") == t.sha256 and old.get("key") == key and outputs_intact(run, old):
                rows[t.id] = old
                progress.advance(task)
                continue
            folder = run / "stems" / t.id
            try:
                done = separate_file(separator, Path(t.path), folder, fmt="flac", mixes={"kept": kept})
            except AudioDecodeError as exc:
                rejects.append({"path": t.path, "reason": f"separate: {exc}"})
            else:
                rows[t.id] = {
                    "id": t.id,
                    "source_sha256": t.sha256,
                    "key": key,
                    "model": model,
                    "kept": kept,
                    "audio": f"stems/{t.id}/kept.flac",
                    "audio_sha256": done.sha256["kept"],
                    "files": {s: {"path": f"stems/{t.id}/{p.name}", "sha256": done.sha256[s]} for s, p in done.stems.items()},
                }
                # Written after every track: a killed run keeps what it finished.
                write_jsonl(manifest, [rows[x.id] for x in tracks if x.id in rows])
            progress.advance(task)
    write_jsonl(manifest, [rows[x.id] for x in tracks if x.id in rows])
    if rejects:
        old_rejects = read_jsonl(run / "rejects.jsonl") if (run / "rejects.jsonl").exists() else []
        save_rows(run / "rejects.jsonl", old_rejects + [r for r in rejects if r not in old_rejects])
    if not rows:
        raise StageInputError("separate: no track could be separated (see rejects.jsonl)")
    return list(rows.values())


def stem_sources(run_dir: Path) -> dict[str, dict[str, str]]:
    """Track id -> ``{"path", "sha256"}`` of the separated audio segment should read."""
    run = Path(run_dir)
    manifest = run / "stems.jsonl"
    if not manifest.exists():
        raise StageInputError(f"'{manifest}' is missing: run the separate stage first")
    out = {}
    root = run.resolve()
    for r in read_jsonl(manifest):
        path = (run / r["audio"]).resolve()
        if not path.is_relative_to(root):  # a tampered manifest must not point outside the run
            raise StageInputError(f"'{manifest}': track {r['id']} points outside the run folder ({r['audio']})")
        out[r["id"]] = {"path": str(path), "sha256": r["audio_sha256"]}
    return out
