"""segment: resample, loudness-normalise and cut each track into windows with features.

Work is done per track (in parallel processes when asked) and each track's results are written
atomically under ``audio/``, ``features/`` and ``segment/<track_id>.json``; a rerun reuses every
track whose record matches the current settings, so a killed stage redoes only unfinished tracks.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.artifacts import (
    atomic_save_npy,
    atomic_write_json,
    check_under,
    read_jsonl,
    sha256_file,
    sha256_json,
)
from stylecraft.audio import io as audio_io
from stylecraft.audio.loudness import normalize_gain
from stylecraft.data import features as feat
from stylecraft.data.manifest import Track, Window, load_rows, save_rows
from stylecraft.errors import AudioDecodeError, StageInputError
from stylecraft.parallel import cpu_count, keep_torch_threads, resolve_workers, run_tasks
from stylecraft.progress import make_progress

FEATURE_NAMES = ("mfcc", "logmel", "stft")
_BATCH = 16  # windows per feature batch: bounds memory for long tracks


def track_audio_path(run_dir: Path, track_id: str) -> Path:
    return run_dir / "audio" / f"{track_id}.npy"


def load_track_audio(run_dir: Path, track_id: str) -> np.ndarray:
    """The normalised mono track at the segment rate, float32 [samples] (memory-mapped int16 on disk)."""
    pcm = np.load(track_audio_path(run_dir, track_id), mmap_mode="r", allow_pickle=False)
    return np.asarray(pcm, dtype=np.float32) / 32767.0


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of full windows that fit in the track."""
    if n_samples < window:
        return []
    return list(range(0, n_samples - window + 1, hop))


def _process_track(track: dict[str, Any], params: dict[str, Any], run_dir: str, threads: int) -> dict[str, Any]:
    """Segment one track; writes its audio, feature shards and record; returns the record."""
    import torch

    torch.set_num_threads(max(1, threads))
    run = Path(run_dir)
    sr = params["sample_rate"]
    audio, sr_in = audio_io.load(track["path"])
    mono = audio_io.resample(audio_io.to_mono(audio), sr_in, sr)
    mono, gain_db = normalize_gain(mono, sr, params["loudness_lufs"])
    pcm = np.round(np.clip(mono, -1.0, 1.0) * 32767.0).astype(np.int16)
    audio_sha = atomic_save_npy(track_audio_path(run, track["id"]), pcm)
    mono = pcm.astype(np.float32) / 32767.0  # features see exactly what is stored

    win = int(round(params["window_s"] * sr))
    hop = int(round(params["hop_s"] * sr))
    kept: list[tuple[int, float]] = []
    for start in window_starts(mono.shape[0], win, hop):
        seg = mono[start : start + win]
        rms_db = 20 * np.log10(float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) + 1e-12)
        if rms_db >= params["silence_db"]:
            kept.append((start, rms_db))

    fp = feat.FeatureParams(
        sample_rate=sr,
        n_fft=params["n_fft"],
        hop_length=params["hop_length"],
        n_mels=params["n_mels"],
        n_mfcc=params["n_mfcc"],
    )
    outs: dict[str, list[np.ndarray]] = {k: [] for k in FEATURE_NAMES}
    for i in range(0, len(kept), _BATCH):
        batch = np.stack([mono[s : s + win] for s, _ in kept[i : i + _BATCH]])
        for k, v in feat.compute(batch, fp).items():
            outs[k].append(v.astype(np.float16))
    hashes: dict[str, str] = {"audio": audio_sha}
    tempo, key = 0.0, "unknown key"
    if kept:
        for k in FEATURE_NAMES:
            arr = np.concatenate(outs[k])
            hashes[k] = atomic_save_npy(run / "features" / f"{track['id']}.{k}.npy", arr)
        key = feat.estimate_key(feat.chroma_of_audio(mono, sr))
        tempo = feat.estimate_tempo(np.concatenate(outs["logmel"]).astype(np.float32)[:8], sr, fp.hop_length)
    record = {
        "track_id": track["id"],
        "params_hash": params["hash"],
        "gain_db": gain_db,
        "n_samples": int(mono.shape[0]),
        "tempo_bpm": round(tempo, 1),
        "key": key,
        "starts": [s for s, _ in kept],
        "rms_db": [round(r, 2) for _, r in kept],
        "hashes": hashes,
    }
    atomic_write_json(run / "segment" / f"{track['id']}.json", record)
    return record


def caption_for(artist: str, record: dict[str, Any]) -> str:
    """Text condition for a track's windows: the artist tag and what was estimated."""
    parts = [f"{artist} style"]
    if record.get("tempo_bpm"):
        parts.append(f"{record['tempo_bpm']:.0f} bpm")
    if record.get("key") and record["key"] != "unknown key":
        parts.append(record["key"])
    return ", ".join(parts)


def _record_valid(run: Path, track: Track, params_hash: str) -> dict[str, Any] | None:
    path = run / "segment" / f"{track.id}.json"
    if not path.exists():
        return None
    import json

    rec = json.loads(path.read_text())
    if rec.get("params_hash") != params_hash:
        return None
    files = {"audio": track_audio_path(run, track.id)}
    if rec["starts"]:
        files.update({k: run / "features" / f"{track.id}.{k}.npy" for k in FEATURE_NAMES})
    for k, p in files.items():
        if not p.exists() or sha256_file(p) != rec["hashes"].get(k):
            return None
    return rec


def segment(
    run_dir: str | Path, params: dict[str, Any], artist: str = "artist", catalogue: str | Path | None = None
) -> list[Window]:
    """Write ``windows.jsonl`` and per-track audio and feature shards for every ingested track.

    Args:
        run_dir: the run folder holding ``tracks.jsonl``.
        params: the recipe's ``segment`` section.
        artist: artist tag used in captions.
        catalogue: the catalogue folder; when given, every track's path must lie inside it.

    Raises:
        StageInputError: no tracks, or no window survived (tracks too short or silent).
    """
    run = Path(run_dir)
    tracks_path = run / "tracks.jsonl"
    if not tracks_path.exists():
        raise StageInputError(f"'{tracks_path}' is missing: run `stylecraft ingest` first")
    tracks = load_rows(tracks_path, Track)
    if catalogue is not None:
        root = Path(catalogue).expanduser().resolve()
        for t in tracks:
            check_under(t.path, root, f"track path in '{tracks_path}'")
    if not tracks:
        raise StageInputError(f"'{tracks_path}' lists no tracks")
    p = dict(params)
    p["hash"] = sha256_json({k: v for k, v in params.items() if k != "workers"})

    records: dict[str, dict[str, Any]] = {}
    todo: list[Track] = []
    for t in tracks:
        rec = _record_valid(run, t, p["hash"])
        if rec is not None:
            records[t.id] = rec
        else:
            todo.append(t)

    cores = cpu_count()
    workers = resolve_workers(params.get("workers"), len(todo))
    threads = max(1, cores // max(1, workers))
    new_rejects: list[dict[str, str]] = []
    with keep_torch_threads(), make_progress() as prog:
        task = prog.add_task("segment", total=len(tracks), completed=len(records))
        jobs = [(asdict(t), p, str(run), threads) for t in todo]
        for i, res in run_tasks(_process_track, jobs, workers):
            if isinstance(res, AudioDecodeError):
                new_rejects.append({"path": todo[i].path, "reason": str(res)})
            elif isinstance(res, BaseException):
                raise res
            else:
                records[todo[i].id] = res
            prog.advance(task)

    windows: list[Window] = []
    for t in tracks:
        rec = records.get(t.id)
        if rec is None:
            continue
        caption = caption_for(artist, rec)
        for row, (start, rms) in enumerate(zip(rec["starts"], rec["rms_db"], strict=True)):
            windows.append(
                Window(
                    id=f"{t.id}-{row:04d}",
                    track_id=t.id,
                    split=t.split,
                    start_s=round(start / params["sample_rate"], 6),
                    duration_s=float(params["window_s"]),
                    rms_db=rms,
                    row=row,
                    caption=caption,
                )
            )
    if new_rejects:
        old = read_jsonl(run / "rejects.jsonl") if (run / "rejects.jsonl").exists() else []
        save_rows(run / "rejects.jsonl", old + [r for r in new_rejects if r not in old])
    save_rows(run / "windows.jsonl", windows)
    if not windows:
        raise StageInputError(
            f"no windows: every track is shorter than segment.window_s={params['window_s']} s or silent "
            f"below segment.silence_db={params['silence_db']} dB"
        )
    return windows


def load_features(run_dir: str | Path, track_id: str, name: str) -> np.ndarray:
    """Memory-mapped feature shard of a track: ``[n_windows, bins, frames]`` float16."""
    if name not in FEATURE_NAMES:
        raise KeyError(f"unknown feature '{name}' (known: {', '.join(FEATURE_NAMES)})")
    return np.load(Path(run_dir) / "features" / f"{track_id}.{name}.npy", mmap_mode="r", allow_pickle=False)
