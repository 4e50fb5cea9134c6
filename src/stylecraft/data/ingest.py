"""ingest: scan a catalogue folder, keep every decodable audio file, reject the rest with a reason."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stylecraft.artifacts import sha256_file
from stylecraft.audio import AUDIO_EXTENSIONS
from stylecraft.audio import io as audio_io
from stylecraft.audio.loudness import LoudnessMeter, integrated_loudness
from stylecraft.data.manifest import Reject, Track, save_rows
from stylecraft.errors import AudioDecodeError, StageInputError
from stylecraft.parallel import resolve_workers, run_tasks
from stylecraft.progress import make_progress

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
            if p.suffix.lower() not in exts:
                rejects.append(Reject(path=str(p), reason=f"not an audio file extension ({p.suffix or 'none'})"))
                continue
            try:
                st_file = p.stat()  # follows symlinks
            except OSError as exc:
                why = "broken symlink" if p.is_symlink() else f"cannot read: {exc.strerror or exc}"
                rejects.append(Reject(path=str(p), reason=why))
                continue
            if stat.S_ISREG(st_file.st_mode):
                files.append(p)
            else:  # a named pipe would block the decoder forever; devices and sockets are not audio files
                rejects.append(Reject(path=str(p), reason="not a regular file (named pipe, device or socket)"))
    return files, rejects


def assign_split(track_id: str, valid_fraction: float, seed: int) -> str:
    """Deterministic per-track split from a hash, so a track's windows never straddle splits."""
    h = hashlib.sha256(f"{seed}:{track_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    return "valid" if u < valid_fraction else "train"


STREAM_BYTES = 256 << 20  # files whose decoded float32 audio is larger than this are read in blocks
BLOCK_S = 10.0


def _stream_stats(path: str) -> tuple[int, int, float, float, float]:
    """Decode a file block by block: frames, rate, peak, largest per-channel range and loudness.

    Memory stays at one block (10 s) whatever the file's length.

    Raises:
        AudioDecodeError: the file cannot be decoded, or holds NaN/Inf samples.
    """
    try:
        with sf.SoundFile(path) as f:
            sr, ch = f.samplerate, f.channels
            meter = LoudnessMeter(sr, ch)
            lo = np.full(ch, np.inf, dtype=np.float32)
            hi = np.full(ch, -np.inf, dtype=np.float32)
            frames = 0
            for block in f.blocks(blocksize=int(BLOCK_S * sr), dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise AudioDecodeError(f"'{path}' holds NaN or infinite samples")
                lo, hi = np.minimum(lo, block.min(axis=0)), np.maximum(hi, block.max(axis=0))
                meter.add(block)
                frames += block.shape[0]
    except AudioDecodeError:
        raise
    except Exception as exc:
        raise AudioDecodeError(f"cannot decode '{path}': {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    if frames == 0:
        raise AudioDecodeError(f"'{path}' holds no audio samples")
    peak = float(max(np.max(np.abs(lo)), np.max(np.abs(hi))))
    return frames, sr, peak, float(np.max(hi - lo)), meter.result()


def inspect_file(path: str, min_duration_s: float) -> dict[str, Any]:
    """Decode one file fully (a truncated file fails here, not in a later stage) and describe it.

    Long files (more than ``STREAM_BYTES`` of decoded audio) are decoded in blocks, so ingest's
    memory does not grow with a file's length.

    Returns:
        ``{"reject": reason}`` or the file's sha256, rate, channels, duration, format and loudness.
    """
    try:
        info = audio_io.probe(path)
        digest = sha256_file(path)
        if info.frames * info.channels * 4 > STREAM_BYTES:
            frames, sr, peak, spread, loud = _stream_stats(path)
        else:
            audio, sr = audio_io.load(path)
            frames, peak = audio.shape[0], float(np.max(np.abs(audio)))
            spread = float(np.max(np.ptp(audio, axis=0)))
            loud = integrated_loudness(audio, sr)
    except AudioDecodeError as exc:
        return {"reject": str(exc)}
    except OSError as exc:
        return {"reject": f"cannot read: {exc.strerror or exc}"}
    duration = frames / sr
    if duration < min_duration_s:
        return {"reject": f"too short ({duration:.2f} s < {min_duration_s} s)"}
    if peak < 1e-5:
        return {"reject": "silent"}
    if spread < 2e-5:
        return {"reject": "a constant (DC) signal: no audio content"}
    return {
        "sha256": digest,
        "sample_rate": int(sr),
        "channels": int(info.channels),
        "duration_s": round(duration, 6),
        "format": str(info.format),
        "loudness_lufs": round(loud, 3) if np.isfinite(loud) else None,
    }


def ingest(
    catalogue: str | Path,
    run_dir: str | Path,
    *,
    extensions: list[str] | None = None,
    valid_fraction: float = 0.2,
    min_duration_s: float = 1.0,
    split_seed: int = 0,
    workers: int = 0,
) -> tuple[list[Track], list[Reject]]:
    """Write ``tracks.jsonl`` and ``rejects.jsonl`` for every file under ``catalogue``.

    Every file ends in exactly one of the two. With at least two tracks, at least one goes to
    each split even when the hash split would put them all on one side.

    Raises:
        StageInputError: the catalogue folder does not exist or nothing in it is usable.
    """
    catalogue = Path(catalogue).expanduser().resolve()
    run_dir = Path(run_dir)
    if not catalogue.exists():
        raise StageInputError(f"catalogue folder '{catalogue}' does not exist")
    if not catalogue.is_dir():
        raise StageInputError(f"catalogue '{catalogue}' is a file: pass the folder that holds the artist's audio")
    exts = extensions or list(AUDIO_EXTENSIONS)
    files, rejects = scan(catalogue, exts)
    results: dict[int, dict[str, Any]] = {}
    n_workers = resolve_workers(workers, len(files))
    with make_progress() as prog:
        task = prog.add_task("ingest", total=len(files))
        for i, res in run_tasks(inspect_file, [(str(f), min_duration_s) for f in files], n_workers):
            if isinstance(res, Exception) and not isinstance(res, MemoryError):
                # Decoders raise many types on malformed files; a bad file is a reject, never a crash.
                first = str(res).strip().splitlines()[0] if str(res).strip() else ""
                res = {"reject": f"cannot decode: {type(res).__name__}{': ' + first if first else ''}"}
            elif isinstance(res, BaseException):
                raise res
            results[i] = res
            prog.advance(task)
    tracks: list[Track] = []
    seen: dict[str, str] = {}
    # Of files with the same bytes the first real file is kept (a symlink is a second name for one),
    # else the first in sorted order.
    for i in sorted(range(len(files)), key=lambda k: (files[k].is_symlink(), str(files[k]))):
        path = files[i]
        res = results[i]
        if "reject" in res:
            rejects.append(Reject(str(path), res["reject"]))
            continue
        if res["sha256"] in seen:
            rejects.append(Reject(str(path), f"duplicate of '{seen[res['sha256']]}' (same sha256)"))
            continue
        seen[res["sha256"]] = str(path)
        tid = res["sha256"][:16]
        tracks.append(Track(id=tid, path=str(path), split=assign_split(tid, valid_fraction, split_seed), **res))
    tracks.sort(key=lambda t: t.path)
    tracks = _ensure_both_splits(tracks, valid_fraction)
    save_rows(run_dir / "tracks.jsonl", tracks)
    save_rows(run_dir / "rejects.jsonl", rejects)
    if not files:
        raise StageInputError(f"no audio files ({' '.join(exts)}) under '{catalogue}'")
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
