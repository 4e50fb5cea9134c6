"""Lossy round trips through real encoders: MP3 with ffmpeg's libmp3lame, Ogg Vorbis with libsndfile."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

FFMPEG = os.environ.get("FFMPEG", "/usr/bin/ffmpeg")
FFPROBE = os.environ.get("FFPROBE", "/usr/bin/ffprobe")


def _mp3_ffmpeg(x: np.ndarray, sr: int, tmp: Path, kbps: int = 128) -> tuple[np.ndarray, int, dict[str, float]]:
    """Encode with ffmpeg's libmp3lame at a constant ``kbps`` and decode again.

    Returns the decoded audio, its rate and the produced file's bitrates as ffprobe reports them
    (the audio stream's nominal rate and the whole file's size over its duration).
    """
    wav, mp3 = tmp / "clip.wav", tmp / "clip.mp3"
    sf.write(str(wav), np.clip(x, -1, 1), sr, subtype="PCM_16")
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", f"{kbps}k", str(mp3)],
                   check=True, capture_output=True)
    probe = json.loads(subprocess.run([FFPROBE, "-v", "error", "-show_entries", "stream=bit_rate:format=bit_rate,duration",
                                       "-of", "json", str(mp3)], check=True, capture_output=True, text=True).stdout)
    rates = {"stream_kbps": int(probe["streams"][0]["bit_rate"]) / 1000,
             "file_kbps": round(mp3.stat().st_size * 8 / float(probe["format"]["duration"]) / 1000, 2)}
    y, out_sr = sf.read(str(mp3), dtype="float32")
    return y, out_sr, rates


def _ogg(x: np.ndarray, sr: int, tmp: Path) -> tuple[np.ndarray, int]:
    path = tmp / "clip.ogg"
    sf.write(str(path), x, sr, format="OGG", subtype="VORBIS")
    y, out_sr = sf.read(str(path), dtype="float32")
    return y, out_sr


def _tool_version(cmd: str) -> str:
    try:
        return subprocess.run([cmd, "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "missing"
