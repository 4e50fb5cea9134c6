"""Landmark audio fingerprints (spectral-peak pairs) for finding copied recordings.

The method of Wang (2003), the idea behind Shazam: peaks of a log spectrogram survive gain
changes, added noise and lossy coding; pairs of nearby peaks ``(f1, f2, Δt)`` are hashed, and a
candidate that copies part of a reference shares many hashes with it *at one consistent time
offset*. Counting matches per ``(reference, offset)`` bin therefore separates copies (a tall
peak) from chance collisions (spread over offsets), and the winning bin gives where in the
reference the candidate's audio starts.

Peaks are chosen locally (per frequency band, among their neighbours in time) so that an excerpt
keeps the peaks of the recording it came from, and a recording mixed under other music keeps the
peaks of the bands it dominates; pairs are formed inside a small target zone ahead of each peak.
The choices and their effect on recall and false matches are measured in eval/bench_index.py.
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
FRAME_S = HOP / SAMPLE_RATE
PEAK_NEIGHBOURHOOD = (9, 15)  # (frequency bins, frames): a peak is the maximum of this patch
LEVEL_PATCH = (31, 63)  # (bins, frames) over which the local level of the log spectrum is averaged
PEAK_ABOVE_LEVEL = 1.0  # a peak stands this far (natural log, ~8.7 dB) above its local level
FLOOR = float(np.log(1e-5))  # and above this absolute level (about -90 dB re full scale)
BAND_EDGES = (0, 32, 64, 128, 256, N_FFT // 2 + 1)  # bins: 0-0.34, -0.69, -1.4, -2.8, -5.5 kHz
RANK_WINDOW_S = 0.5  # a peak competes with the peaks of its band within this window around it
PEAKS_PER_SECOND = 30  # kept per second over all bands (spread evenly over the bands)
FAN_OUT = 10  # at most this many partners per anchor peak, nearest in time first
MIN_DT = 1  # target zone: partners 1..MAX_DT frames ahead of the anchor ...
MAX_DT = 32  # (~0.37 s)
MAX_DF = 64  # ... and within MAX_DF bins (~690 Hz) above or below it


def _rank_in_band(frames: np.ndarray, bins: np.ndarray, values: np.ndarray, window: int) -> np.ndarray:
    """For each peak, how many stronger peaks of its band lie within ``window`` frames of it.

    The rank depends only on the peak's neighbourhood, never on where the clip starts, so an
    excerpt keeps the same peaks as the recording it was cut from (except within ``window`` of
    its edges); a budget per fixed block of time would not.
    """
    band = np.searchsorted(np.asarray(BAND_EDGES[1:]), bins, side="right")
    key = band.astype(np.int64) * (1 << 40) + frames  # sorted by band, then time
    order = np.argsort(key, kind="stable")
    key, v = key[order], values[order]
    n = key.size
    # Every pair of peaks of one band within ``window`` frames is at most ``reach`` places apart.
    reach = int((np.searchsorted(key, key + window, side="right") - np.arange(n)).max()) - 1 if n else 0
    rank_sorted = np.zeros(n, dtype=np.int64)
    for shift in range(1, min(reach, n - 1) + 1):
        near = key[shift:] - key[:-shift] <= window  # same band (else the gap is >= 2**40) and close
        rank_sorted[:-shift] += near & (v[shift:] > v[:-shift])
        rank_sorted[shift:] += near & (v[:-shift] > v[shift:])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = rank_sorted
    return rank


def _peaks(mono: np.ndarray, peaks_per_second: float = PEAKS_PER_SECOND) -> np.ndarray:
    """Spectral peaks ``[n, 2]`` as ``(frame, bin)`` in time order.

    A peak is a local maximum of the log spectrogram that stands above its local level (not the
    clip's: an excerpt must pick the peaks its source picked) and is among the strongest
    ``peaks_per_second * RANK_WINDOW_S / bands`` of its frequency band within the rank window.
    Picking per band keeps peaks where a quieter source dominates part of the spectrum, so a
    recording mixed under louder music still leaves some of its peaks.
    """
    _, _, z = scipy.signal.stft(mono, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False)
    spec = np.log(np.abs(z) + 1e-6).astype(np.float32)  # [bins, frames]
    local_max = scipy.ndimage.maximum_filter(spec, size=PEAK_NEIGHBOURHOOD, mode="constant", cval=-np.inf)
    level = scipy.ndimage.uniform_filter(spec, size=LEVEL_PATCH, mode="nearest")
    bins, frames = np.nonzero((spec == local_max) & (spec > level + PEAK_ABOVE_LEVEL) & (spec > FLOOR))
    if frames.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    window = round(RANK_WINDOW_S / 2 / FRAME_S)
    per_band = max(1, round(peaks_per_second * RANK_WINDOW_S / (len(BAND_EDGES) - 1)))
    keep = _rank_in_band(frames, bins, spec[bins, frames], window) < per_band
    bins, frames = bins[keep], frames[keep]
    order = np.lexsort((bins, frames))
    return np.stack([frames[order], bins[order]], axis=1).astype(np.int64)


def _pairs(peaks: np.ndarray, fan_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash each peak with its first ``fan_out`` partners in its target zone (``MIN_DT <= Δt <=
    MAX_DT``, ``|Δf| <= MAX_DF``), in anchor order; the same pairs as a loop over partners in time
    order. The zone is small enough that it rarely holds more than ``fan_out`` peaks, so a peak
    added by noise or another source seldom displaces a partner (as a cap on the *first* partners
    anywhere ahead would).

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
    ok = inside & (dt >= MIN_DT) & (dt <= MAX_DT) & (np.abs(df) <= MAX_DF)
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

    def is_copy(self, min_aligned: int = 25, min_fraction: float = 0.01) -> bool:
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
