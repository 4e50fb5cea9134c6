"""ingest: scan a catalogue folder, keep every decodable audio file, reject the rest with a reason.

Each kept file becomes a track with its split (train or valid, near-duplicate recordings kept on
one side) and its caption (:mod:`stylecraft.data.captions`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stylecraft.artifacts import atomic_write_json, sha256_file
from stylecraft.audio import AUDIO_EXTENSIONS
from stylecraft.audio import io as audio_io
from stylecraft.audio.loudness import LoudnessMeter, integrated_loudness
from stylecraft.data import captions as cap_mod
from stylecraft.data.captions import ANALYSIS_SR, CaptionSettings, MusicnnTagger
from stylecraft.data.duplicates import (
    DUPLICATE_S,
    DuplicateMatch,
    duplicate_groups,
    fingerprint,
    near_duplicates,
)
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


EXCERPT_S = 600.0  # seconds from a file's start that near-duplicates and captions are read from


def _excerpt(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono, 16 kHz, the first ``EXCERPT_S`` seconds: what fingerprints and analysis read."""
    return audio_io.resample(audio_io.to_mono(audio[: int(EXCERPT_S * sr)]), sr, ANALYSIS_SR)


def _excerpt_streamed(path: str) -> np.ndarray:
    """:func:`_excerpt` of a long file, decoded 10 s at a time (memory stays at one block and the excerpt)."""
    import soxr

    parts = []
    with sf.SoundFile(path) as f:
        rs = soxr.ResampleStream(f.samplerate, ANALYSIS_SR, 1, dtype="float32", quality="HQ")
        left = int(EXCERPT_S * f.samplerate)
        for block in f.blocks(blocksize=int(BLOCK_S * f.samplerate), dtype="float32", always_2d=True):
            mono = audio_io.to_mono(block[:left])
            left -= mono.shape[0]
            parts.append(rs.resample_chunk(mono, last=left <= 0))
            if left <= 0:
                break
        if left > 0:
            parts.append(rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def inspect_file(path: str, min_duration_s: float, with_print: bool = False, with_analysis: bool = False) -> dict[str, Any]:
    """Decode one file fully (a truncated file fails here, not in a later stage) and describe it.

    Long files (more than ``STREAM_BYTES`` of decoded audio) are decoded in blocks, so ingest's
    memory does not grow with a file's length.

    Args:
        with_print: also return the near-duplicate fingerprint of its first five minutes (``"print"``).
        with_analysis: also return the tempo and key estimated from them (``"analysis"``).

    Returns:
        ``{"reject": reason}`` or the file's sha256, rate, channels, duration, format and loudness.
    """
    try:
        info = audio_io.probe(path)
        digest = sha256_file(path)
        if info.frames * info.channels * 4 > STREAM_BYTES:
            frames, sr, peak, spread, loud = _stream_stats(path)
            audio = None
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
    out: dict[str, Any] = {
        "sha256": digest,
        "sample_rate": int(sr),
        "channels": int(info.channels),
        "duration_s": round(duration, 6),
        "format": str(info.format),
        "loudness_lufs": round(loud, 3) if np.isfinite(loud) else None,
    }
    if with_print or with_analysis:
        excerpt = _excerpt_streamed(path) if audio is None else _excerpt(audio, sr)
        del audio
        if with_print:
            # float16 halves what a large catalogue holds in memory until the search; correlations barely notice
            out["print"] = fingerprint(excerpt[: int(DUPLICATE_S * ANALYSIS_SR)], ANALYSIS_SR).astype(np.float16)
        if with_analysis:
            out["analysis"] = cap_mod.analyse(excerpt, ANALYSIS_SR)
    return out


@dataclass(frozen=True)
class DuplicateSettings:
    """Near-duplicate search of ingest (``ingest.near_duplicates``, ``ingest.duplicate_corr``)."""

    enabled: bool = True
    min_corr: float = 0.9


def ingest(
    catalogue: str | Path,
    run_dir: str | Path,
    *,
    extensions: list[str] | None = None,
    valid_fraction: float = 0.2,
    min_duration_s: float = 1.0,
    split_seed: int = 0,
    workers: int = 0,
    captions: CaptionSettings | None = None,
    duplicates: DuplicateSettings | None = None,
) -> tuple[list[Track], list[Reject]]:
    """Write ``tracks.jsonl``, ``rejects.jsonl`` and ``duplicates.json`` for every file under ``catalogue``.

    Every file ends in exactly one of the first two. Tracks are split into train and valid by a
    hash of their id; near-duplicate recordings (re-encodes, remasters, copies at another gain,
    :mod:`stylecraft.data.duplicates`) form a group that takes the split of its first track, so
    no song sits on both sides; the groups are listed in ``duplicates.json``. With at least two
    tracks (or groups), at least one goes to each split even when the hash split would put them
    all on one side. Each track's caption is built as ``captions`` says
    (:mod:`stylecraft.data.captions`).

    Raises:
        StageInputError: the catalogue folder does not exist or nothing in it is usable.
        ConfigError: ``captions.file`` is missing or malformed.
        ModelNotFoundError: ``captions.mode=tags`` without the musicnn weights.
    """
    catalogue = Path(catalogue).expanduser().resolve()
    run_dir = Path(run_dir)
    if not catalogue.exists():
        raise StageInputError(f"catalogue folder '{catalogue}' does not exist")
    if not catalogue.is_dir():
        raise StageInputError(f"catalogue '{catalogue}' is a file: pass the folder that holds the artist's audio")
    cap = dataclasses.replace(captions or CaptionSettings(), catalogue=str(catalogue))
    dup = duplicates or DuplicateSettings()
    # What can fail without decoding anything fails first: the caption file's format, the tagger's weights.
    file_captions = cap_mod.read_caption_file(cap.file, catalogue) if cap.mode == "file" else None
    tagger = MusicnnTagger.from_registry() if cap.mode == "tags" else None
    exts = extensions or list(AUDIO_EXTENSIONS)
    files, rejects = scan(catalogue, exts)
    results = _inspect_all(files, min_duration_s, dup.enabled, cap.needs_analysis, workers)
    tracks: list[Track] = []
    extras: dict[str, dict[str, Any]] = {}
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
        extras[tid] = {k: res.pop(k) for k in ("print", "analysis") if k in res}
        tracks.append(Track(id=tid, path=str(path), split="train", **res))
    tracks.sort(key=lambda t: t.path)
    groups, matches = _group_copies(tracks, extras, dup)
    tracks = _split(tracks, groups, valid_fraction, split_seed)
    tracks = _with_captions(tracks, extras, cap, file_captions, tagger, run_dir)
    save_rows(run_dir / "tracks.jsonl", tracks)
    save_rows(run_dir / "rejects.jsonl", rejects)
    _write_duplicates(run_dir / "duplicates.json", tracks, groups, matches, dup)
    if not files:
        raise StageInputError(f"no audio files ({' '.join(exts)}) under '{catalogue}'")
    if not tracks:
        raise StageInputError(f"no usable audio under '{catalogue}' ({len(rejects)} file(s) rejected, see rejects.jsonl)")
    return tracks, rejects


def _inspect_all(files: list[Path], min_duration_s: float, prints: bool, analyse: bool, workers: int) -> dict[int, dict[str, Any]]:
    """:func:`inspect_file` of every file, in parallel, with a progress bar; a bad file is a reject, never a crash."""
    results: dict[int, dict[str, Any]] = {}
    n_workers = resolve_workers(workers, len(files))
    with make_progress() as prog:
        task = prog.add_task("ingest", total=len(files))
        for i, res in run_tasks(inspect_file, [(str(f), min_duration_s, prints, analyse) for f in files], n_workers):
            if isinstance(res, Exception) and not isinstance(res, MemoryError):
                # Decoders raise many types on malformed files; a bad file is a reject, never a crash.
                first = str(res).strip().splitlines()[0] if str(res).strip() else ""
                res = {"reject": f"cannot decode: {type(res).__name__}{': ' + first if first else ''}"}
            elif isinstance(res, BaseException):
                raise res
            results[i] = res
            prog.advance(task)
    return results


def _group_copies(
    tracks: list[Track], extras: dict[str, dict[str, Any]], dup: DuplicateSettings
) -> tuple[list[list[str]], list[DuplicateMatch]]:
    """Near-duplicate groups of track ids (two or more each) and the matches that join them."""
    if not dup.enabled or len(tracks) < 2:
        return [], []
    prints = {t.id: extras[t.id]["print"] for t in tracks}
    matches = near_duplicates(prints, dup.min_corr)
    return duplicate_groups(sorted(prints), matches), matches


def _split(tracks: list[Track], groups: list[list[str]], valid_fraction: float, seed: int) -> list[Track]:
    """Each track's split: the hash split of its group's first track (its own, when it has no copy)."""
    group_of = {tid: g[0] for g in groups for tid in g}
    out = [
        dataclasses.replace(
            t, split=assign_split(group_of.get(t.id, t.id), valid_fraction, seed), duplicate_group=group_of.get(t.id, "")
        )
        for t in tracks
    ]
    return _ensure_both_splits(out, valid_fraction)


def _with_captions(
    tracks: list[Track],
    extras: dict[str, dict[str, Any]],
    cap: CaptionSettings,
    file_captions: dict[str, str] | None,
    tagger: MusicnnTagger | None,
    run_dir: Path,
) -> list[Track]:
    if not tracks:
        return tracks
    tags = None
    if tagger is not None:
        tags = cap_mod.tag_tracks([(t.path, t.sha256) for t in tracks], tagger, run_dir / "ingest" / "tags", EXCERPT_S)
    analyses = [extras[t.id].get("analysis", (None, None)) for t in tracks]
    caps = cap_mod.track_captions([t.path for t in tracks], analyses, cap, file_captions, tags)
    return [
        dataclasses.replace(t, artist=c.artist, caption=c.caption, tempo_bpm=c.tempo_bpm, key=c.key, tags=list(c.tags))
        for t, c in zip(tracks, caps, strict=True)
    ]


def _write_duplicates(
    path: Path, tracks: list[Track], groups: list[list[str]], matches: list[DuplicateMatch], dup: DuplicateSettings
) -> None:
    """``duplicates.json``: each group of near-duplicate tracks, its split and the matches behind it."""
    by_id = {t.id: t for t in tracks}
    rows = [
        {
            "tracks": [{"id": tid, "path": by_id[tid].path} for tid in g],
            "split": by_id[g[0]].split,
            "matches": [dataclasses.asdict(m) for m in matches if m.a in g],
        }
        for g in groups
    ]
    atomic_write_json(path, {"enabled": dup.enabled, "min_corr": dup.min_corr, "excerpt_s": EXCERPT_S,
                             "groups": rows, "tracks_in_groups": sum(len(g) for g in groups)})


def _ensure_both_splits(tracks: list[Track], valid_fraction: float) -> list[Track]:
    """Move one track (with its near-duplicates) to the empty side when one split got every track."""
    units = {t.duplicate_group or t.id for t in tracks}
    if len(units) < 2 or valid_fraction <= 0:
        return tracks
    splits = {t.split for t in tracks}
    if splits == {"train", "valid"}:
        return tracks
    # Move the unit (a track, or a group of copies) with the smallest id: deterministic and order-free.
    missing = "valid" if "valid" not in splits else "train"
    pick = min(units)
    return [dataclasses.replace(t, split=missing) if (t.duplicate_group or t.id) == pick else t for t in tracks]
