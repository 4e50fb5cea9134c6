"""The first landmark fingerprint of ``stylecraft.evaluate.audit.fingerprint`` (global peak budget, the first
``FAN_OUT`` partners of each peak), kept unchanged so that the benchmark can compare it with today's.

Landmark audio fingerprints (spectral-peak pairs) for finding copied recordings.

The method of Wang (2003), the idea behind Shazam: peaks of a log spectrogram survive gain
changes, added noise and lossy coding; pairs of nearby peaks ``(f1, f2, Δt)`` are hashed, and a
candidate that copies part of a reference shares many hashes with it *at one consistent time
offset*. Counting matches per ``(reference, offset)`` bin therefore separates copies (a tall
peak) from chance collisions (spread over offsets), and the winning bin gives where in the
reference the candidate's audio starts.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import scipy.ndimage
import scipy.signal

from stylecraft.audio.io import resample
from stylecraft.errors import AudioDecodeError

__all__ = ["FingerprintIndex", "FingerprintMatch", "landmarks"]

SAMPLE_RATE = 11025
N_FFT = 1024
HOP = 256
PEAK_NEIGHBOURHOOD = (15, 31)  # (frequency bins, frames): a peak is the maximum of this patch
PEAKS_PER_SECOND = 30
FAN_OUT = 5  # pairs per anchor peak
MAX_DT = 64  # frames (~1.5 s) ahead of the anchor
MAX_DF = 96  # frequency bins above or below the anchor
FRAME_S = HOP / SAMPLE_RATE


def _peaks(mono: np.ndarray, peaks_per_second: float = PEAKS_PER_SECOND) -> np.ndarray:
    """Spectral peaks ``[n, 2]`` as ``(frame, bin)``, the strongest ``peaks_per_second`` per second."""
    _, _, z = scipy.signal.stft(mono, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False)
    spec = np.log(np.abs(z) + 1e-6)  # [bins, frames]
    local_max = scipy.ndimage.maximum_filter(spec, size=PEAK_NEIGHBOURHOOD, mode="constant", cval=-np.inf)
    # Ignore near-silence: a peak must stand above the clip's median level.
    mask = (spec == local_max) & (spec > np.median(spec) + 2.0)
    bins, frames = np.nonzero(mask)
    if frames.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    budget = max(1, int(peaks_per_second * spec.shape[1] * FRAME_S))
    if frames.size > budget:
        keep = np.argsort(spec[bins, frames])[::-1][:budget]
        bins, frames = bins[keep], frames[keep]
    order = np.lexsort((bins, frames))
    return np.stack([frames[order], bins[order]], axis=1).astype(np.int64)


def _pairs(peaks: np.ndarray, fan_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash each peak with its first ``fan_out`` partners ahead of it (``1 <= Δt <= MAX_DT``,
    ``|Δf| <= MAX_DF``), in anchor order; the same pairs as a loop over partners in time order.

    All partners of an anchor lie among the next ``reach`` peaks (peaks are sorted by frame), so
    the search is one ``[peaks, reach]`` array instead of a Python loop per peak.
    """
    n = peaks.shape[0]
    if n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    frames, bins = peaks[:, 0], peaks[:, 1]
    # The farthest partner an anchor can have: the last peak within MAX_DT frames of it.
    reach = int((np.searchsorted(frames, frames + MAX_DT, side="right") - np.arange(n)).max())
    reach = max(1, min(reach, n - 1))
    j = np.arange(n)[:, None] + np.arange(1, reach + 1)[None, :]  # [n, reach]
    inside = j < n
    j = np.minimum(j, n - 1)
    dt = frames[j] - frames[:, None]
    df = bins[j] - bins[:, None]
    ok = inside & (dt >= 1) & (dt <= MAX_DT) & (np.abs(df) <= MAX_DF)
    ok &= np.cumsum(ok, axis=1) <= fan_out
    anchor, k = np.nonzero(ok)
    f1, f2, d = bins[anchor], bins[j[anchor, k]], dt[anchor, k]
    return (f1 << 20) | (f2 << 8) | d, frames[anchor]


def landmarks(
    audio: np.ndarray, sample_rate: int, peaks_per_second: float = PEAKS_PER_SECOND, fan_out: int = FAN_OUT
) -> tuple[np.ndarray, np.ndarray]:
    """Landmark hashes of a clip.

    Args:
        audio: Samples ``[samples]`` or ``[samples, channels]``.
        sample_rate: Its rate in Hz.
        peaks_per_second: Spectral peaks kept per second (the strongest).
        fan_out: Partners hashed with each anchor peak.

    Returns:
        ``(hashes, times)``: int64 hashes of ``(f1, f2, Δt)`` and each hash's anchor frame.

    Raises:
        AudioDecodeError: If the clip is empty.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0:
        raise AudioDecodeError("cannot fingerprint an empty clip")
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    mono = resample(mono, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else mono
    if mono.shape[0] < N_FFT:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    peaks = _peaks(np.asarray(mono, dtype=np.float32), peaks_per_second)
    return _pairs(peaks, fan_out)


@dataclasses.dataclass(frozen=True)
class FingerprintMatch:
    """The best-aligned reference for a candidate.

    Attributes:
        reference: The reference track (its key in the index), or ``None`` if nothing matched.
        offset_s: Where in the reference the candidate's start lines up (seconds; negative when
            the candidate starts before the reference's start).
        aligned: Hashes that agree on that offset.
        fraction: ``aligned`` over the candidate's hash count.
        n_hashes: The candidate's hash count.
    """

    reference: str | None
    offset_s: float
    aligned: int
    fraction: float
    n_hashes: int

    def is_copy(self, min_aligned: int = 20, min_fraction: float = 0.05) -> bool:
        """Near-copy verdict: enough hashes agree on one offset, in absolute and relative terms."""
        return self.reference is not None and self.aligned >= min_aligned and self.fraction >= min_fraction


class FingerprintIndex:
    """Hash table of reference fingerprints: ``hash -> [(track, frame)]``."""

    def __init__(self) -> None:
        self._table: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.tracks: list[str] = []

    def add(self, name: str, audio: np.ndarray, sample_rate: int) -> int:
        """Index a reference track; returns its hash count."""
        hashes, times = landmarks(audio, sample_rate)
        tid = len(self.tracks)
        self.tracks.append(name)
        for h, t in zip(hashes.tolist(), times.tolist(), strict=True):
            self._table[h].append((tid, t))
        return int(hashes.size)

    def match(self, audio: np.ndarray, sample_rate: int) -> FingerprintMatch:
        """Find the reference track and offset sharing the most aligned hashes with a clip."""
        hashes, times = landmarks(audio, sample_rate)
        votes: dict[tuple[int, int], int] = defaultdict(int)
        for h, t in zip(hashes.tolist(), times.tolist(), strict=True):
            for tid, t_ref in self._table.get(h, ()):
                votes[(tid, t_ref - t)] += 1
        if not votes:
            return FingerprintMatch(None, 0.0, 0, 0.0, int(hashes.size))
        (tid, offset), count = max(votes.items(), key=lambda kv: kv[1])
        # Peaks can land one frame apart in the copy; count the neighbouring offsets too.
        count += votes.get((tid, offset - 1), 0) + votes.get((tid, offset + 1), 0)
        return FingerprintMatch(
            reference=self.tracks[tid],
            offset_s=offset * FRAME_S,
            aligned=int(count),
            fraction=float(count / max(1, hashes.size)),
            n_hashes=int(hashes.size),
        )
