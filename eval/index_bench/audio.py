"""Music for the index benchmark: soundtrack folders, a decoded-audio cache, and the distortions.

Tracks are decoded once to mono float32 at ``SR`` and kept as ``.npy`` files in a cache folder,
read back memory-mapped, so a run over many hours of music holds only the tracks it is using.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np
import soundfile as sf

from stylecraft.audio import AUDIO_EXTENSIONS
from stylecraft.audio.io import resample

SR = 22050
DISTORTIONS = ("gain", "noise20", "noise10", "mp3", "mix_under", "mix_over")


@dataclasses.dataclass(frozen=True)
class Track:
    """One music file of a soundtrack folder (``path`` as the index stores it: resolved)."""

    soundtrack: str
    path: str
    duration_s: float


def soundtrack_tracks(folders: list[Path], min_s: float = 15.0) -> list[Track]:
    """The audio files of each folder (symlinks followed), at least ``min_s`` long, in name order."""
    out = []
    for folder in folders:
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            info = sf.info(str(f))
            if info.frames / info.samplerate >= min_s:
                out.append(Track(folder.name, str(f.resolve()), info.frames / info.samplerate))
    return out


class AudioCache:
    """Mono ``SR`` Hz float32 audio of tracks, decoded once into ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, path: str) -> np.ndarray:
        key = hashlib.sha256(path.encode()).hexdigest()[:24]
        f = self.folder / f"{key}.npy"
        if not f.is_file():
            a, sr = sf.read(path, dtype="float32", always_2d=True)
            mono = resample(a.mean(axis=1), sr, SR)
            tmp = f.with_suffix(".tmp.npy")
            np.save(tmp, np.ascontiguousarray(mono, dtype=np.float32))
            tmp.replace(f)
        return np.load(f, mmap_mode="r", allow_pickle=False)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-12)


def mp3_64k(x: np.ndarray) -> np.ndarray:
    """Through an MP3 encoder (LAME, 64 kbit/s CBR, mono at ``SR``) and back, same length."""
    import lameenc

    enc = lameenc.Encoder()
    enc.set_bit_rate(64)
    enc.set_in_sample_rate(SR)
    enc.set_channels(1)
    enc.set_quality(2)
    data = enc.encode((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()) + enc.flush()
    y, _ = sf.read(io.BytesIO(data), dtype="float32")
    return y[: x.size] if y.size >= x.size else np.pad(y, (0, x.size - y.size))


def distort(x: np.ndarray, kind: str, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The excerpt at -6 dB, then the distortion ``kind`` (one of ``DISTORTIONS``).

    ``other`` is a never-indexed track's audio of at least ``x``'s length (``mix_*`` only):
    ``mix_under`` puts the excerpt 10 dB *below* it, ``mix_over`` puts it 10 dB below the excerpt.
    """
    x = np.asarray(x, np.float32) * 0.5
    if kind.startswith("noise"):
        snr = float(kind[5:])
        return (x + rng.normal(size=x.size).astype(np.float32) * rms(x) / 10 ** (snr / 20)).astype(np.float32)
    if kind == "mp3":
        return mp3_64k(x)
    if kind in ("mix_under", "mix_over"):
        o = np.asarray(other[: x.size], np.float32)
        o = np.pad(o, (0, x.size - o.size)) * (rms(x) / rms(other[: x.size]))
        if kind == "mix_under":
            return (o + x * 10 ** (-10 / 20)).astype(np.float32)
        return (x + o * 10 ** (-10 / 20)).astype(np.float32)
    if kind != "gain":
        raise ValueError(f"unknown distortion {kind!r}")
    return x
