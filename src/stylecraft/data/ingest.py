"""ingest: scan a catalogue folder, keep every decodable audio file, reject the rest with a reason."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from stylecraft.artifacts import sha256_file
from stylecraft.audio import io as audio_io
from stylecraft.audio.loudness import integrated_loudness
from stylecraft.data.manifest import Reject, Track, save_rows
from stylecraft.errors import AudioDecodeError, StageInputError
from stylecraft.progress import progress_iter

log = logging.getLogger(__name__)


def scan(catalogue: Path, extensions: list[str]) -> tuple[list[Path], list[Reject]]:
    """List audio files under ``catalogue`` (recursively, sorted), following symlinks safely."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    files: list[Path] = []
    rejects: list[Reject] = []
    seen_dirs: set[tuple[int, int]] = set()
    for root, dirs, names in os.walk(catalogue, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop: visit each folder once
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(names):
            p = Path(root) / name
            if name.startswith("."):
                rejects.append(Reject(path=str(p), reason="hidden file (name starts with '.')"))
                continue
            if p.suffix.lower() in exts:
                files.append(p)
            else:
                rejects.append(Reject(path=str(p), reason=f"not an audio file extension ({p.suffix or 'none'})"))
    return files, rejects


def assign_split(track_id: str, valid_fraction: float, seed: int) -> str:
    """Deterministic per-track split from a hash, so a track's windows never straddle splits."""
    h = hashlib.sha256(f"{seed}:{track_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    return "valid" if u < valid_fraction else "train"


def ingest(
    catalogue: str | Path,
    run_dir: str | Path,
    *,
    extensions: list[str] | None = None,
    valid_fraction: float = 0.2,
    min_duration_s: float = 1.0,
    split_seed: int = 0,
) -> tuple[list[Track], list[Reject]]:
    """Write ``tracks.jsonl`` and ``rejects.jsonl`` for every file under ``catalogue``.

    Every file ends in exactly one of the two. With at least two tracks, at least one goes to
    each split even when the hash split would put them all on one side.

    Raises:
        StageInputError: the catalogue folder does not exist or nothing in it is usable.
    """
    catalogue = Path(catalogue).expanduser().resolve()
    run_dir = Path(run_dir)
    if not catalogue.is_dir():
        raise StageInputError(f"catalogue folder '{catalogue}' does not exist")
    exts = extensions or [".flac", ".wav", ".ogg", ".mp3", ".aiff", ".aif"]
    files, rejects = scan(catalogue, exts)
    tracks: list[Track] = []
    seen: dict[str, str] = {}
    for path in progress_iter(files, "ingest"):
        try:
            info = audio_io.probe(path)
            digest = sha256_file(path)
            if digest in seen:
                rejects.append(Reject(str(path), f"duplicate of '{seen[digest]}' (same sha256)"))
                continue
            audio, sr = audio_io.load(path)
            duration = audio.shape[0] / sr
            if duration < min_duration_s:
                rejects.append(Reject(str(path), f"too short ({duration:.2f} s < {min_duration_s} s)"))
                continue
            if float(np.max(np.abs(audio))) < 1e-5:
                rejects.append(Reject(str(path), "silent"))
                continue
            loud = integrated_loudness(audio, sr)
        except AudioDecodeError as exc:
            rejects.append(Reject(str(path), str(exc)))
            continue
        except OSError as exc:
            rejects.append(Reject(str(path), f"cannot read: {exc.strerror or exc}"))
            continue
        seen[digest] = str(path)
        tid = digest[:16]
        tracks.append(
            Track(
                id=tid,
                path=str(path),
                sha256=digest,
                sample_rate=int(sr),
                channels=int(audio.shape[1]),
                duration_s=round(duration, 6),
                split=assign_split(tid, valid_fraction, split_seed),
                format=str(info.format),
                loudness_lufs=round(loud, 3) if np.isfinite(loud) else None,
            )
        )
    tracks = _ensure_both_splits(tracks, valid_fraction)
    save_rows(run_dir / "tracks.jsonl", tracks)
    save_rows(run_dir / "rejects.jsonl", rejects)
    if not tracks:
        raise StageInputError(f"no usable audio under '{catalogue}' ({len(rejects)} file(s) rejected, see rejects.jsonl)")
    return tracks, rejects


def _ensure_both_splits(tracks: list[Track], valid_fraction: float) -> list[Track]:
    if len(tracks) < 2 or valid_fraction <= 0:
        return tracks
    splits = {t.split for t in tracks}
    if splits == {"train", "valid"}:
        return tracks
    # Move the track with the smallest id to the missing side: deterministic and order-free.
    missing = "valid" if "valid" not in splits else "train"
    pick = min(tracks, key=lambda t: t.id)
    return [Track(**{**t.__dict__, "split": missing}) if t is pick else t for t in tracks]
