"""Interpretable style descriptors of a track (tempo, key, loudness, spectra) and of an artist.

Also :class:`LoudnessNormalized`, the embedding wrapper the audit and the catalogue index use so
that attribution follows the music and not the mastering level.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np

from stylecraft.evaluate.embeddings import Embedding

__all__ = ["NUMERIC_PROFILE", "LoudnessNormalized", "artist_profile", "style_profile"]


class LoudnessNormalized:
    """An embedding applied to audio scaled to a fixed integrated loudness (ITU-R BS.1770)."""

    def __init__(self, inner: Embedding, target_lufs: float) -> None:
        self.inner = inner
        self.target_lufs = target_lufs
        self.name = inner.name
        self.sample_rate = inner.sample_rate

    def settings(self) -> dict[str, Any]:
        """The inner embedding's settings plus the loudness target (so caches keep them apart)."""
        return {**self.inner.settings(), "loudness_normalized_lufs": self.target_lufs}

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Scale to the target loudness (no peak limit: nothing is written), then embed."""
        from stylecraft.audio.loudness import normalize_gain

        scaled, _ = normalize_gain(np.asarray(audio, dtype=np.float32), sample_rate, self.target_lufs, peak=float("inf"))
        return self.inner.embed(scaled, sample_rate)

    def embed_measured(self, audio: np.ndarray, sample_rate: int, loudness_lufs: float) -> np.ndarray:
        """:meth:`embed` for audio whose integrated loudness is already known (the same result,
        without measuring it again: measuring costs about as much as the MFCC embedding)."""
        gain = 10 ** ((self.target_lufs - loudness_lufs) / 20) if np.isfinite(loudness_lufs) else 1.0
        return self.inner.embed((np.asarray(audio, dtype=np.float32) * gain).astype(np.float32), sample_rate)


# librosa's zero crossings run a numba gufunc; concurrent calls from the audit's and the index's
# thread pools crashed worker processes (segfault inside the gufunc call), so calls take turns.
_GUFUNC_CALLS = threading.Lock()


def style_profile(audio: np.ndarray, sample_rate: int, max_s: float = 60.0, loudness_lufs: float | None = None) -> dict[str, Any]:
    """Interpretable descriptors of one track.

    Args:
        audio: ``[samples, channels]`` or ``[samples]`` float audio.
        sample_rate: Its rate.
        max_s: Seconds analysed (the middle of the track) for tempo, key and spectra; loudness
            uses the whole track.
        loudness_lufs: The whole track's integrated loudness when already measured.

    Returns:
        ``tempo_bpm``, ``key``, ``loudness_lufs``, ``spectral_centroid_hz``,
        ``spectral_bandwidth_hz``, ``spectral_rolloff_hz``, ``spectral_flatness``,
        ``zero_crossing_rate``, ``duration_s``.
    """
    import librosa

    from stylecraft.audio.io import resample
    from stylecraft.audio.loudness import integrated_loudness
    from stylecraft.data.features import chroma_of_audio, estimate_key, estimate_tempo

    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    sr = 22050
    n = int(max_s * sample_rate)
    start = max(0, (mono.shape[0] - n) // 2)
    y = resample(mono[start : start + n], sample_rate, sr) if sample_rate != sr else mono[start : start + n]
    y = np.ascontiguousarray(y, dtype=np.float32)
    hop = 512
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=hop, n_mels=64))
    win = int(10 * sr / hop)  # 10 s tempo windows, the median of which is the track's tempo
    windows = [mel[:, i : i + win] for i in range(0, max(1, mel.shape[1] - win + 1), win)]
    loud = integrated_loudness(audio, sample_rate) if loudness_lufs is None else loudness_lufs
    with _GUFUNC_CALLS:
        zcr = float(librosa.feature.zero_crossing_rate(y, hop_length=hop).mean())
    return {
        "tempo_bpm": float(estimate_tempo(np.stack(windows), sr, hop)),
        "key": estimate_key(chroma_of_audio(y, sr, max_s=max_s)),
        "loudness_lufs": float(loud) if np.isfinite(loud) else None,
        "spectral_centroid_hz": float(librosa.feature.spectral_centroid(y=y, sr=sr, hop_length=hop).mean()),
        "spectral_bandwidth_hz": float(librosa.feature.spectral_bandwidth(y=y, sr=sr, hop_length=hop).mean()),
        "spectral_rolloff_hz": float(librosa.feature.spectral_rolloff(y=y, sr=sr, hop_length=hop).mean()),
        "spectral_flatness": float(librosa.feature.spectral_flatness(y=y, hop_length=hop).mean()),
        "zero_crossing_rate": zcr,
        "duration_s": float(mono.shape[0] / sample_rate),
    }


NUMERIC_PROFILE = (
    "tempo_bpm",
    "loudness_lufs",
    "spectral_centroid_hz",
    "spectral_bandwidth_hz",
    "spectral_rolloff_hz",
    "spectral_flatness",
    "zero_crossing_rate",
)


def artist_profile(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread of the numeric descriptors over an artist's tracks, and their key counts."""
    out: dict[str, Any] = {"n_tracks": len(profiles)}
    for key in NUMERIC_PROFILE:
        vals = np.array([p[key] for p in profiles if p.get(key) is not None], dtype=np.float64)
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std())} if vals.size else None
    keys = Counter(p["key"] for p in profiles)
    out["keys"] = dict(keys.most_common())
    return out
