"""What the index keeps of one catalogue file: decoded once, checked, embedded, fingerprinted, profiled.

:func:`analyse_file` runs in build workers (threads, or the processes of a distributed build);
its result is a plain record that the single writer commits. Records cross process boundaries
as safetensors bytes (:func:`record_to_bytes`), never as pickles.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from stylecraft.errors import AudioDecodeError
from stylecraft.evaluate.embeddings import Embedding
from stylecraft.index.codec import from_safetensors, to_safetensors

__all__ = ["AnalysedTrack", "FileTask", "analyse_file", "record_from_bytes", "record_to_bytes"]


@dataclasses.dataclass(frozen=True)
class FileTask:
    """One file to index: its artist, path and content hash."""

    artist: str
    path: str
    sha256: str


@dataclasses.dataclass
class AnalysedTrack:
    """A file's analysis, or its reject reason (``reason`` set, nothing else filled)."""

    task: FileTask
    reason: str | None = None
    duration_s: float = 0.0
    profile: dict[str, Any] = dataclasses.field(default_factory=dict)
    hashes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    times: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    embeddings: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def analyse_file(
    task: FileTask, embeddings: dict[str, Embedding], fingerprint: dict[str, Any], profile_s: float, min_duration_s: float
) -> AnalysedTrack:
    """Decode, check and analyse one file; a file that cannot be used comes back with a reason.

    Args:
        task: The file.
        embeddings: Name -> embedding (loudness-normalised as the index's settings say).
        fingerprint: Keyword arguments of :func:`~stylecraft.evaluate.audit.fingerprint.landmarks`.
        profile_s: Seconds analysed for the style profile.
        min_duration_s: Shorter files are rejected.
    """
    from stylecraft.audio.loudness import integrated_loudness
    from stylecraft.evaluate.audit.fingerprint import landmarks
    from stylecraft.evaluate.audit.profile import LoudnessNormalized, style_profile
    from stylecraft.evaluate.fad import load_audio_for_embedding

    try:
        audio, sr = load_audio_for_embedding(task.path)
    except AudioDecodeError as exc:
        return AnalysedTrack(task, reason=" ".join(str(exc).split()))
    duration = audio.shape[0] / sr
    if not np.isfinite(audio).all():
        return AnalysedTrack(task, reason="holds NaN or infinite samples")
    if duration < min_duration_s:
        return AnalysedTrack(task, reason=f"too short ({duration:.2f} s < {min_duration_s} s)")
    if float(np.max(np.abs(audio))) < 1e-5:
        return AnalysedTrack(task, reason="silent")
    if float(np.max(np.ptp(audio, axis=0))) < 2e-5:
        return AnalysedTrack(task, reason="a constant (DC) signal: no audio content")
    loudness = integrated_loudness(audio, sr)  # measured once: the profile and every embedding use it
    rows: dict[str, np.ndarray] = {}
    for name, emb in embeddings.items():
        try:
            if isinstance(emb, LoudnessNormalized):
                r = np.asarray(emb.embed_measured(audio, sr, loudness), dtype=np.float32)
            else:
                r = np.asarray(emb.embed(audio, sr), dtype=np.float32)
        except AudioDecodeError as exc:
            return AnalysedTrack(task, reason=f"{name}: " + " ".join(str(exc).split()))
        if r.shape[0] < 2:
            return AnalysedTrack(task, reason=f"{name} gives {r.shape[0]} embedding row(s); per-track statistics need 2")
        rows[name] = r
    hashes, times = landmarks(audio, sr, **fingerprint)
    return AnalysedTrack(
        task, duration_s=float(duration), profile=style_profile(audio, sr, profile_s, loudness),
        hashes=hashes.astype(np.int64), times=times.astype(np.int64), embeddings=rows,
    )


def record_to_bytes(rec: AnalysedTrack) -> bytes:
    """A record as safetensors bytes (arrays as tensors, the rest as JSON metadata)."""
    arrays = {"hashes": rec.hashes, "times": rec.times, **{f"emb/{k}": v for k, v in rec.embeddings.items()}}
    meta = {"task": dataclasses.asdict(rec.task), "reason": rec.reason, "duration_s": rec.duration_s, "profile": rec.profile}
    return to_safetensors(arrays, meta)


def record_from_bytes(data: bytes) -> AnalysedTrack:
    """Inverse of :func:`record_to_bytes`."""
    arrays, meta = from_safetensors(data)
    return AnalysedTrack(
        FileTask(**meta["task"]), reason=meta["reason"], duration_s=float(meta["duration_s"]), profile=meta["profile"],
        hashes=arrays["hashes"], times=arrays["times"],
        embeddings={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("emb/")},
    )
