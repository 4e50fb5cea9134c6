"""segment: resample, loudness-normalise and cut each track into windows with features.

Work is done per track (in parallel processes when asked) and each track's results are written
atomically under ``audio/``, ``features/`` and ``segment/<track_id>.json``; a rerun reuses every
track whose record matches the current settings, so a killed stage redoes only unfinished tracks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from stylecraft.artifacts import (
    atomic_path,
    atomic_save_npy,
    atomic_write_json,
    check_under,
    read_jsonl,
    sha256_file,
    sha256_json,
)
from stylecraft.audio import io as audio_io
from stylecraft.audio.loudness import LoudnessMeter, normalize_gain
from stylecraft.data import features as feat
from stylecraft.data.manifest import Track, Window, load_rows, save_rows
from stylecraft.errors import AudioDecodeError, StageInputError
from stylecraft.parallel import cpu_count, keep_torch_threads, resolve_workers, run_tasks
from stylecraft.progress import make_progress

FEATURE_NAMES = feat.NAMES
_BATCH = 16  # windows per feature batch: bounds memory for long tracks


def track_audio_path(run_dir: Path, track_id: str) -> Path:
    return run_dir / "audio" / f"{track_id}.npy"


def load_track_audio(run_dir: Path, track_id: str) -> np.ndarray:
    """The normalised mono track at the segment rate, float32 [samples] (memory-mapped int16 on disk)."""
    pcm = np.load(track_audio_path(run_dir, track_id), mmap_mode="r", allow_pickle=False)
    return np.asarray(pcm, dtype=np.float32) / 32767.0


def track_stereo_path(run_dir: Path, track_id: str) -> Path:
    return run_dir / "audio" / f"{track_id}.stereo.npy"


def load_track_stereo(run_dir: Path, track_id: str) -> np.ndarray:
    """The normalised stereo track (stereo models only), float32 ``[samples, 2]``, same gain and length as the mono one."""
    path = track_stereo_path(run_dir, track_id)
    if not path.exists():
        raise StageInputError(f"'{path}' is missing: segment the run again with the stereo model named in the recipe")
    pcm = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.asarray(pcm, dtype=np.float32) / 32767.0


def _write_stereo_pcm(source: str, sr: int, gain_db: float, n: int, out: Path) -> str:
    """Both channels of a track at the segment rate with the mono track's gain, int16 ``[n, 2]``.

    Only stereo models ask for it. A mono file is the same on both sides; wider files keep their
    first two channels. The whole file is decoded at once (the mono path streams long tracks).
    """
    audio, sr_in = audio_io.load(source)
    two = np.repeat(audio[:, :1], 2, axis=1) if audio.shape[1] == 1 else audio[:, :2]
    two = audio_io.resample(two, sr_in, sr)
    fixed = np.zeros((n, 2), dtype=np.float32)
    m = min(n, two.shape[0])
    fixed[:m] = two[:m] * np.float32(10 ** (gain_db / 20))
    return atomic_save_npy(out, np.round(np.clip(fixed, -1.0, 1.0) * 32767.0).astype(np.int16))


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of full windows that fit in the track."""
    if n_samples < window:
        return []
    return list(range(0, n_samples - window + 1, hop))


STREAM_BYTES = 256 << 20  # tracks whose decoded float32 audio is larger than this are processed in blocks
BLOCK_S = 10.0


def _decode_mono_stream(path: str, sr: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a file resampled to ``sr``, decoded 10 s at a time."""
    with sf.SoundFile(path) as f:
        rs = soxr.ResampleStream(f.samplerate, sr, 1, dtype="float32", quality="HQ") if f.samplerate != sr else None
        for block in f.blocks(blocksize=int(BLOCK_S * f.samplerate), dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise AudioDecodeError(f"'{path}' holds NaN or infinite samples")
            mono = audio_io.to_mono(block)
            yield mono if rs is None else rs.resample_chunk(mono)
        if rs is not None:
            yield rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def _normalised_pcm_streamed(path: str, sr: int, target_lufs: float, out: Path) -> tuple[str, float]:
    """Write the loudness-normalised int16 track to ``out`` in two streaming passes; memory stays flat.

    The first pass measures loudness and peak (as :func:`normalize_gain` does on the whole track),
    the second applies the gain and writes into a memory-mapped ``.npy`` (atomically).
    """
    try:
        meter = LoudnessMeter(sr, 1)
        peak, n = 0.0, 0
        for y in _decode_mono_stream(path, sr):
            meter.add(y[:, None])
            peak = max(peak, float(np.max(np.abs(y)))) if y.size else peak
            n += y.shape[0]
        loud = meter.result()
        gain_db = 0.0
        if np.isfinite(loud):
            gain_db = target_lufs - loud
            if peak > 0:
                gain_db = min(gain_db, 20 * np.log10(0.99 / peak))
        gain = np.float32(10 ** (gain_db / 20))
        with atomic_path(out) as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(n,))
            pos = 0
            for y in _decode_mono_stream(path, sr):
                m = min(y.shape[0], n - pos)
                mm[pos : pos + m] = np.round(np.clip(y[:m] * gain, -1.0, 1.0) * 32767.0).astype(np.int16)
                pos += m
            mm.flush()
            del mm
    except AudioDecodeError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AudioDecodeError(f"cannot decode '{path}': {first}") from None
    return sha256_file(out), float(gain_db)


def _as_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32767.0  # features see exactly what is stored


def _process_track(track: dict[str, Any], params: dict[str, Any], run_dir: str, threads: int) -> dict[str, Any]:
    """Segment one track; writes its audio, feature shards and record; returns the record.

    Long tracks (more than ``STREAM_BYTES`` of decoded audio) are decoded, resampled and written
    in blocks and their features are written window batch by window batch into memory-mapped
    shards, so memory does not grow with a track's length.
    """
    import torch

    torch.set_num_threads(max(1, threads))
    run = Path(run_dir)
    sr = params["sample_rate"]
    audio_path = track_audio_path(run, track["id"])
    source = track.get("source_path") or track["path"]  # the separate stage's kept stems, if any
    info = audio_io.probe(source)
    if info.frames * info.channels * 4 > STREAM_BYTES:
        audio_sha, gain_db = _normalised_pcm_streamed(source, sr, params["loudness_lufs"], audio_path)
        pcm = np.load(audio_path, mmap_mode="r", allow_pickle=False)
    else:
        audio, sr_in = audio_io.load(source)
        mono = audio_io.resample(audio_io.to_mono(audio), sr_in, sr)
        del audio
        mono, gain_db = normalize_gain(mono, sr, params["loudness_lufs"])
        pcm = np.round(np.clip(mono, -1.0, 1.0) * 32767.0).astype(np.int16)
        del mono
        audio_sha = atomic_save_npy(audio_path, pcm)

    stereo_sha = None
    if params.get("channels") == 2:
        stereo_sha = _write_stereo_pcm(source, sr, gain_db, int(pcm.shape[0]), track_stereo_path(run, track["id"]))

    win = int(round(params["window_s"] * sr))
    hop = int(round(params["hop_s"] * sr))
    kept: list[tuple[int, float]] = []
    for start in window_starts(pcm.shape[0], win, hop):
        seg = _as_float(pcm[start : start + win])
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
    hashes: dict[str, str] = {"audio": audio_sha}
    if stereo_sha is not None:
        hashes["stereo"] = stereo_sha
    names = [n for n in FEATURE_NAMES if n in params.get("features", FEATURE_NAMES)]
    if kept and names:
        # Feature shards are filled batch by batch in place (the same bytes np.save would write).
        with contextlib.ExitStack() as stack:
            shards: dict[str, np.memmap] = {}
            for i in range(0, len(kept), _BATCH):
                batch = _as_float(np.stack([pcm[s : s + win] for s, _ in kept[i : i + _BATCH]]))
                for k, v in feat.compute(batch, fp, names).items():
                    if k not in shards:
                        tmp = stack.enter_context(atomic_path(run / "features" / f"{track['id']}.{k}.npy"))
                        shards[k] = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(kept), *v.shape[1:]))
                    shards[k][i : i + v.shape[0]] = v.astype(np.float16)
            for arr in shards.values():
                arr.flush()
            shards.clear()
        for k in names:
            hashes[k] = sha256_file(run / "features" / f"{track['id']}.{k}.npy")
    record = {
        "track_id": track["id"],
        "params_hash": params["hash"],
        "source_sha256": track.get("source_sha256") or track["sha256"],
        "gain_db": gain_db,
        "n_samples": int(pcm.shape[0]),
        "features": names if kept else [],
        "starts": [s for s, _ in kept],
        "rms_db": [round(r, 2) for _, r in kept],
        "hashes": hashes,
    }
    del pcm
    atomic_write_json(run / "segment" / f"{track['id']}.json", record)
    return record


def _record_valid(run: Path, track: Track, params_hash: str, source_sha: str) -> dict[str, Any] | None:
    path = run / "segment" / f"{track.id}.json"
    if not path.exists():
        return None
    import json

    rec = json.loads(path.read_text())
    if rec.get("params_hash") != params_hash or rec.get("source_sha256", track.sha256) != source_sha:
        return None
    files = {"audio": track_audio_path(run, track.id)}
    if "stereo" in rec["hashes"]:
        files["stereo"] = track_stereo_path(run, track.id)
    files.update({k: run / "features" / f"{track.id}.{k}.npy" for k in rec.get("features", [])})
    for k, p in files.items():
        if not p.exists() or sha256_file(p) != rec["hashes"].get(k):
            return None
    return rec


def segment(
    run_dir: str | Path,
    params: dict[str, Any],
    artist: str = "artist",
    catalogue: str | Path | None = None,
    sources: dict[str, dict[str, str]] | None = None,
    channels: int = 1,
) -> list[Window]:
    """Write ``windows.jsonl`` and per-track audio and feature shards for every ingested track.

    Args:
        run_dir: the run folder holding ``tracks.jsonl``.
        params: the recipe's ``segment`` section.
        artist: the caption of tracks whose row has none (``tracks.jsonl`` written before captions
            were built by ingest): ``"<artist> style"``.
        catalogue: the catalogue folder; when given, every track's path must lie inside it.
        sources: track id -> ``{"path", "sha256"}`` of audio to read instead of the catalogue
            file (the separate stage's kept stems); tracks missing from it are left out.
        channels: 2 when the run's model is stereo: each track is also kept in stereo
            (``audio/<id>.stereo.npy``, same gain) for tokenize. Windows, features and outlier
            checks stay on the mono mix either way.

    Raises:
        StageInputError: no tracks, or no window survived (tracks too short or silent).
    """
    run = Path(run_dir)
    tracks_path = run / "tracks.jsonl"
    tracks = _tracks_to_segment(tracks_path, catalogue, sources)
    source_sha = {t.id: sources[t.id]["sha256"] if sources is not None else t.sha256 for t in tracks}
    p = _hashed_params(params, channels)
    records: dict[str, dict[str, Any]] = {}
    todo: list[Track] = []
    for t in tracks:
        rec = _record_valid(run, t, p["hash"], source_sha[t.id])
        if rec is not None:
            records[t.id] = rec
        else:
            todo.append(t)
    jobs = [
        (
            {
                **asdict(t),
                "source_path": sources[t.id]["path"] if sources is not None else None,
                "source_sha256": source_sha[t.id],
            },
            p,
            str(run),
        )
        for t in todo
    ]
    new_rejects = _process_tracks(todo, jobs, records, len(tracks), params.get("workers"))
    windows = _windows_of_records(tracks, records, params, artist)
    if new_rejects:
        _move_to_rejects(run, tracks_path, tracks, new_rejects)
    save_rows(run / "windows.jsonl", windows)
    if not windows:
        raise StageInputError(
            f"no windows: every track is shorter than segment.window_s={params['window_s']} s or silent "
            f"below segment.silence_db={params['silence_db']} dB"
        )
    return windows


def _tracks_to_segment(
    tracks_path: Path, catalogue: str | Path | None, sources: dict[str, dict[str, str]] | None
) -> list[Track]:
    """The ingested tracks, checked to lie in the catalogue; only those with a source when given."""
    if not tracks_path.exists():
        raise StageInputError(f"'{tracks_path}' is missing: run `stylecraft ingest` first")
    tracks = load_rows(tracks_path, Track)
    if catalogue is not None:
        root = Path(catalogue).expanduser().resolve()
        for t in tracks:
            check_under(t.path, root, f"track path in '{tracks_path}'")
    if not tracks:
        raise StageInputError(f"'{tracks_path}' lists no tracks")
    if sources is not None:
        tracks = [t for t in tracks if t.id in sources]
        if not tracks:
            raise StageInputError("no separated track to segment (see rejects.jsonl)")
    return tracks


def _hashed_params(params: dict[str, Any], channels: int) -> dict[str, Any]:
    """The segment parameters with their ``hash`` (the worker count does not change the output)."""
    p = dict(params)
    if channels == 2:  # only stereo runs carry the key, so mono runs keep their records and hashes
        p["channels"] = 2
    p["hash"] = sha256_json({k: v for k, v in p.items() if k != "workers"})
    return p


def _process_tracks(
    todo: list[Track],
    jobs: list[tuple[dict[str, Any], dict[str, Any], str]],
    records: dict[str, dict[str, Any]],
    n_tracks: int,
    workers_param: Any,
) -> list[dict[str, str]]:
    """Segment the tracks ``todo`` across worker processes, adding to ``records``; returns new rejects."""
    cores = cpu_count()
    workers = resolve_workers(workers_param, len(todo))
    threads = max(1, cores // max(1, workers))
    new_rejects: list[dict[str, str]] = []
    with keep_torch_threads(), make_progress() as prog:
        task = prog.add_task("segment", total=n_tracks, completed=len(records))
        for i, res in run_tasks(_process_track, [(*job, threads) for job in jobs], workers):
            if isinstance(res, AudioDecodeError):
                new_rejects.append({"path": todo[i].path, "reason": str(res)})
            elif isinstance(res, BaseException):
                raise res
            else:
                records[todo[i].id] = res
            prog.advance(task)
    return new_rejects


def _windows_of_records(
    tracks: list[Track], records: dict[str, dict[str, Any]], params: dict[str, Any], artist: str
) -> list[Window]:
    windows: list[Window] = []
    for t in tracks:
        rec = records.get(t.id)
        if rec is None:
            continue
        caption = t.caption or f"{artist} style"  # built by ingest (stylecraft.data.captions)
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
    return windows


def _move_to_rejects(run: Path, tracks_path: Path, tracks: list[Track], new_rejects: list[dict[str, str]]) -> None:
    """Move files ingest accepted but that no longer decode from ``tracks.jsonl`` to ``rejects.jsonl``.

    A file changed or damaged since ingest moves so that every file stays in exactly one of them.
    Rejects are written first: a kill between the two writes leaves the track listed twice, and the
    rerun decodes it again and finishes the move. Ingest decodes fully too, so only bytes changed
    since ingest get here, and the next `stylecraft run` reruns ingest, as it should.
    """
    old = read_jsonl(run / "rejects.jsonl") if (run / "rejects.jsonl").exists() else []
    save_rows(run / "rejects.jsonl", old + [r for r in new_rejects if r not in old])
    gone = {r["path"] for r in new_rejects}
    save_rows(tracks_path, [t for t in tracks if t.path not in gone])


def load_features(run_dir: str | Path, track_id: str, name: str) -> np.ndarray:
    """Memory-mapped feature shard of a track: ``[n_windows, bins, frames]`` float16.

    Raises:
        KeyError: ``name`` is not a feature the segment stage computes.
        StageInputError: the shard was not written (``segment.features`` left it out).
    """
    if name not in FEATURE_NAMES:
        raise KeyError(f"unknown feature '{name}' (known: {', '.join(FEATURE_NAMES)})")
    path = Path(run_dir) / "features" / f"{track_id}.{name}.npy"
    if not path.exists():
        raise StageInputError(
            f"no {name} features for track {track_id} ('{path}' was not written): add {name} to segment.features "
            "and run `stylecraft segment` again"
        )
    return np.load(path, mmap_mode="r", allow_pickle=False)
