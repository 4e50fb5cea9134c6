"""A catalogue of bad and unusual inputs, generated on the fly (used by the tests and eval/reliability.py).

:func:`make_corpus` writes every case into a folder and returns what it wrote: relative path ->
what the case is. Cases marked usable must end in tracks.jsonl, the others in rejects.jsonl.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


def _tone(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A few seconds of a chord with some noise: usable music-like audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.15 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (220.0 * (1 + seed % 5 / 10), 277.2, 329.6))
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)) + 0.01 * rng.standard_normal(t.shape[0])
    return np.stack([y * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def make_corpus(root: str | os.PathLike[str], seconds: float = 6.0) -> dict[str, tuple[str, bool]]:
    """Write the corpus under ``root``; returns ``{relative path: (case, usable)}``.

    ``usable`` says whether the file must be accepted (tracks.jsonl) rather than rejected.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[str, bool]] = {}

    def add(rel: str, case: str, usable: bool) -> Path:
        cases[rel] = (case, usable)
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    # Usable audio in every rate, channel count, format and odd name.
    for i, sr in enumerate((8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000)):
        sf.write(add(f"rates/sr-{sr}.flac", f"{sr} Hz FLAC", True), _tone(seconds, sr, 2, seed=i), sr, subtype="PCM_16")
    for i, ch in enumerate((1, 2, 3, 6, 8, 12)):
        sf.write(add(f"channels/ch-{ch}.wav", f"{ch} channels WAV", True), _tone(seconds, SR, ch, seed=20 + i), SR, subtype="PCM_16")
    sf.write(add("formats/float64.wav", "64-bit float WAV", True), _tone(seconds, SR, seed=30).astype(np.float64), SR, subtype="DOUBLE")
    sf.write(add("formats/pcm24.wav", "24-bit WAV", True), _tone(seconds, SR, seed=31), SR, subtype="PCM_24")
    sf.write(add("formats/u8.wav", "8-bit unsigned WAV", True), _tone(seconds, SR, seed=32), SR, subtype="PCM_U8")
    sf.write(add("formats/song.aiff", "AIFF", True), _tone(seconds, SR, seed=33), SR, subtype="PCM_16")
    sf.write(add("formats/song.ogg", "Ogg Vorbis", True), _tone(seconds, SR, 2, seed=34), SR, format="OGG", subtype="VORBIS")
    sf.write(add("formats/song.mp3", "MP3", True), _tone(seconds, SR, 2, seed=35), SR, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(add("formats/UPPER.FLAC", "upper-case extension", True), _tone(seconds, SR, seed=36), SR)
    for i, name in enumerate(("names/ünïcødé 曲 №1.flac", "names/with  spaces .wav", "names/odd'\"$(x);&|.wav",
                              "names/-leading-dash.wav", "names/new\nline.wav", "names/ümlaut dir ✓/inner.flac")):
        sf.write(add(name, "odd file name", True), _tone(seconds, SR, seed=40 + i), SR)
    sf.write(add("short-window.wav", "shorter than a window (usable, no windows)", True), _tone(2.5, SR, seed=50), SR)

    # Unusable content.
    add("bad/empty.wav", "empty file", False).write_bytes(b"")
    good = root / "rates" / "sr-44100.flac"
    data = good.read_bytes()
    add("bad/truncated.flac", "truncated FLAC (first 30% of the bytes)", False).write_bytes(data[: len(data) * 3 // 10])
    add("bad/header-only.flac", "FLAC header only", False).write_bytes(data[:200])
    rng = np.random.default_rng(1)
    add("bad/random.ogg", "random bytes as .ogg", False).write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    add("bad/text.mp3", "text file named .mp3", False).write_bytes(b"this is not audio\n" * 200)
    add("bad/image.wav", "PNG image named .wav", False).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    add("bad/riff-no-data.wav", "RIFF header, no data chunk", False).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    nan = _tone(seconds, SR, seed=60)
    nan[1000:1010] = np.nan
    sf.write(add("bad/nan.wav", "NaN samples", False), nan, SR, subtype="FLOAT")
    inf = _tone(seconds, SR, seed=61)
    inf[500] = np.inf
    sf.write(add("bad/inf.wav", "infinite samples", False), inf, SR, subtype="FLOAT")
    sf.write(add("bad/silence.wav", "digital silence", False), np.zeros((int(seconds * SR), 2), np.float32), SR)
    sf.write(add("bad/dc.wav", "constant DC offset", False), np.full(int(seconds * SR), 0.5, np.float32), SR)
    sf.write(add("bad/too-short.wav", "0.3 s (below ingest.min_duration_s)", False), _tone(0.3, SR, seed=62), SR)
    sf.write(add("bad/zero-frames.wav", "valid header, zero frames", False), np.zeros((0, 1), np.float32), SR)
    add("notes.txt", "not an audio extension", False).write_text("liner notes")
    add("cover.jpg", "not an audio extension", False).write_bytes(b"\xff\xd8\xff" + bytes(100))
    sf.write(add(".hidden.wav", "hidden file", False), _tone(seconds, SR, seed=63), SR)

    # Duplicates, links and special files.
    shutil.copy2(root / "channels" / "ch-2.wav", add("dup/copy-of-ch-2.wav", "duplicate (same bytes)", False))
    os.symlink(root / "names" / "with  spaces .wav", add("links/link-to-file.wav", "symlink to a catalogue file (same bytes)", False))
    os.symlink(root / "nowhere.wav", add("links/dangling.wav", "dangling symlink", False))
    (root / "links" / "loop").symlink_to(root / "links")  # a folder loop: walked once, adds no entries
    os.mkfifo(add("special/pipe.wav", "named pipe (FIFO) with an audio name", False))
    unreadable = add("special/unreadable.flac", "permission 000", True)
    sf.write(unreadable, _tone(seconds, SR, seed=64), SR)
    os.chmod(unreadable, 0)
    if os.geteuid() != 0:  # only root reads it anyway
        cases["special/unreadable.flac"] = ("permission 000", False)
    return cases


def corpus_paths(root: str | os.PathLike[str], cases: dict[str, tuple[str, bool]]) -> set[str]:
    return {os.path.normpath(str(Path(root) / rel)) for rel in cases}
