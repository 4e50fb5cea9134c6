"""Reliability report: bad inputs, killed stages, a malicious checkpoint, the outlier detector and the watermark.

Sections (each writes ``eval/results/reliability/<section>.json``; the report merges whatever
sections exist into ``eval/results/reliability.json`` and ``eval/results/reliability.md``):

* ``badinput``: the bad-input corpus of ``tests/reliability_corpus.py`` through
  ``stylecraft ingest`` and ``stylecraft segment`` (CLI, separate processes): every file must end in
  exactly one of tracks.jsonl / rejects.jsonl, no traceback, exit status 0 only if something usable
  remained; and peak RSS of ingest + segment on a long synthetic file.
* ``kills``: segment, augment and tokenize killed with SIGKILL at random moments and rerun with
  the same command; ``stylecraft verify`` must be clean and outputs equal to an uninterrupted run.
  Only runs that did kill a stage count as kills (see :func:`kill_kind`).
* ``pickle``: a checkpoint whose unpickling would create a marker file, offered to the model
  loader and to training resume; it must be refused and the marker must never appear.
* ``outliers``: known outliers (another artist, noise, corrupted audio, near duplicates, noise
  bursts inside tracks) injected into two disjoint halves of the real Wesnoth soundtrack;
  thresholds chosen on one half, recall and false-positive rate measured on the other.
* ``watermark``: detection after MP3/OGG re-encoding, resampling, gain and cropping, false
  positives on unwatermarked real music over many keys and excerpts, and audibility.

Real music comes from ``eval/data/wesnoth`` (or ``--music``), filled from the Debian package
``wesnoth-1.16-music`` when missing; "another artist" and more unwatermarked music from the
Debian packages ``asc-music``, ``colobot-common-sounds`` and ``drascula-music``, and, for the
watermark's false positives only, ``warzone2100-music``, ``lincity-ng-data`` and
``extremetuxracer-data`` (fetched the same way into ``eval/data``, with a ``SOURCE.json`` naming
package and version).

Usage::

    .venv/bin/python eval/reliability.py [--only watermark,outliers,...] [--music DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("STYLECRAFT_PROGRESS", "0")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "eval"))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "eval" / "results"
PARTS = RESULTS / "reliability"
SECTIONS = ("badinput", "kills", "pickle", "outliers", "watermark")


def _save_part(name: str, data: dict[str, Any]) -> None:
    from stylecraft.artifacts import atomic_write_json

    atomic_write_json(PARTS / f"{name}.json", data)


SOURCE_FILE = "SOURCE.json"  # provenance written next to the audio a Debian package was unpacked into


def _unpack_deb_audio(deb: Path, dest: Path, pattern: str, exclude: str | None = None, min_s: float = 0.0) -> dict[str, Any]:
    """Copy the audio files of the ``.deb`` file ``deb`` that match ``pattern`` into ``dest``.

    Files whose name matches ``exclude`` or that last less than ``min_s`` seconds (sound effects,
    jingles) are left out. ``dest`` is written whole or not at all, with a ``SOURCE.json`` naming
    the package, its version and the files kept.
    """
    from fnmatch import fnmatch

    from stylecraft.artifacts import atomic_write_json

    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True).stdout.strip()

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        root, out = Path(tmp) / "root", Path(tmp) / "out"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
        out.mkdir()
        kept, short = [], 0
        for f in sorted(root.rglob(pattern)):
            if exclude is not None and fnmatch(f.name, exclude):
                continue
            if min_s > 0 and sf.info(str(f)).duration < min_s:
                short += 1
                continue
            if (out / f.name).exists():  # flattened into one folder: a second file of that name would replace the first
                raise RuntimeError(f"{deb.name}: two files named {f.name} match {pattern}")
            shutil.copy2(f, out / f.name)
            kept.append(f.name)
        source = {"package": field("Package"), "version": field("Version"), "pattern": pattern, "exclude": exclude,
                  "min_seconds": min_s, "files": kept, "left_out_short": short}
        atomic_write_json(out / SOURCE_FILE, source)
        out.rename(dest)
    return source


def _fetch_deb_audio(package: str, dest: Path, pattern: str, exclude: str | None = None, min_s: float = 0.0) -> None:
    """Unpack the audio files of a Debian package into ``dest`` (apt-get download + dpkg-deb)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
        _unpack_deb_audio(next(Path(tmp).glob("*.deb")), dest, pattern, exclude, min_s)


def music_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    local = ROOT / "eval" / "data" / "wesnoth"
    if not local.exists():
        from bench_prep import fetch_wesnoth

        fetch_wesnoth(local)
    return local


# Other composers' free music (Debian packages): "another artist" in the outlier test and more
# unwatermarked real music in the watermark's false-positive test. (folder, package, file pattern)
OTHER_PACKAGES = (
    ("asc-music", "asc-music", "*.mp3"),
    ("colobot-music", "colobot-common-sounds", "music/*.ogg"),
    ("drascula-music", "drascula-music", "audio/*.ogg"),
)


# More unwatermarked real music, only for the watermark's false-positive test: (folder, package,
# file pattern, names left out). Warzone 2100's "_enhanced" files are remasters of two of its other
# tracks, left out so that every excerpt is distinct audio; files under FP_MIN_S (jingles) too.
FP_PACKAGES = (
    ("warzone2100-music", "warzone2100-music", "*.opus", "*_enhanced.opus"),
    ("lincity-ng-music", "lincity-ng-data", "music/default/*.ogg", None),
    ("etr-music", "extremetuxracer-data", "etr/music/*.ogg", None),
)
FP_MIN_S = 30.0


def _deb_dir(name: str, package: str, pattern: str, exclude: str | None = None, min_s: float = 0.0) -> Path:
    local = ROOT / "eval" / "data" / name
    if not local.exists():
        _fetch_deb_audio(package, local, pattern, exclude, min_s)
    return local


def _source_info(folder: Path, package: str | None) -> dict[str, Any]:
    """Package and version a music folder came from: as recorded when it was unpacked, else apt's candidate now."""
    rec = folder / SOURCE_FILE
    if rec.exists():
        src = json.loads(rec.read_text())
        return {"package": src["package"], "version": src["version"], "version_from": "unpacked .deb"}
    if package is None:
        return {"package": None, "version": None, "version_from": "user folder"}
    res = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    cand = next((ln.split(":", 1)[1].strip() for ln in res.stdout.splitlines() if ln.strip().startswith("Candidate:")), None)
    return {"package": package, "version": cand, "version_from": "apt candidate when measured (fetched earlier, not recorded)"}


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".ogg", ".opus", ".mp3", ".flac", ".wav"))


def _mono(path: Path, sr: int, max_s: float | None = None) -> np.ndarray:
    info = sf.info(str(path))
    frames = -1 if max_s is None else int(max_s * info.samplerate)
    x, file_sr = sf.read(str(path), dtype="float32", frames=frames, always_2d=True)
    return soxr.resample(x.mean(axis=1), file_sr, sr).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Watermark


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


def _cp_upper(positives: int, trials: int, conf: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen as ``positives`` in ``trials``."""
    from scipy.stats import beta

    if trials == 0:
        return float("nan")
    return 1.0 if positives >= trials else float(beta.ppf(conf, positives + 1, trials - positives))


def fp_music_dirs(args: argparse.Namespace) -> list[tuple[Path, str | None]]:
    """Real music the false-positive test runs on, with the Debian package of each folder.

    The catalogue, the other composers' soundtracks and the extra FP_PACKAGES.
    """
    from bench_prep import PACKAGE

    dirs: list[tuple[Path, str | None]] = [(music_dir(args.music), None if args.music else PACKAGE)]
    for name, package, pattern in OTHER_PACKAGES:
        dirs.append((_deb_dir(name, package, pattern), package))
    for name, package, pattern, exclude in FP_PACKAGES:
        dirs.append((_deb_dir(name, package, pattern, exclude, FP_MIN_S), package))
    return dirs


ATTACKS = ["none", "mp3-128k", "mp3-128k@44.1k", "ogg-vorbis", "resample-16k", "resample-44.1k", "gain-6dB",
           "gain+6dB-clipped", "crop-5s"]


def _attack(a: str, y: np.ndarray, sr: int, tmp: Path, rng: np.random.Generator,
            bitrates: list[dict[str, float]]) -> tuple[np.ndarray, int]:
    if a == "none":
        return y, sr
    if a == "mp3-128k":  # at the generated files' own rate (32 kHz)
        z, zsr, rates = _mp3_ffmpeg(y, sr, tmp)
        bitrates.append({"rate": sr, **rates})
        return z, zsr
    if a == "mp3-128k@44.1k":  # resampled to 44.1 kHz first, as most MP3s are
        z, zsr, rates = _mp3_ffmpeg(soxr.resample(y, sr, 44100), 44100, tmp)
        bitrates.append({"rate": 44100, **rates})
        return z, zsr
    if a == "ogg-vorbis":
        return _ogg(y, sr, tmp)
    if a == "resample-16k":
        return soxr.resample(y, sr, 16000), 16000
    if a == "resample-44.1k":
        return soxr.resample(y, sr, 44100), 44100
    if a == "gain-6dB":
        return y * 0.5, sr
    if a == "gain+6dB-clipped":
        return np.clip(y * 2.0, -1, 1), sr
    off = int(rng.integers(0, max(1, y.shape[0] - 5 * sr)))  # crop: 5 s starting anywhere (not on a frame boundary)
    return y[off : off + 5 * sr], sr


def _audibility(clip: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """SNR, segmental SNR (512-sample frames, clamped to [-10, 35] dB) and log-spectral distance, in dB."""
    w = (y - clip).astype(np.float64)
    c = clip.astype(np.float64)
    snr = 10 * np.log10(np.sum(c**2) / np.sum(w**2))
    frames = np.lib.stride_tricks.sliding_window_view(np.arange(clip.shape[0]), 512)[::512]
    s_c = np.sum(c[frames] ** 2, axis=1)
    s_w = np.sum(w[frames] ** 2, axis=1) + 1e-20
    ok = s_c > 1e-8
    seg = float(np.mean(np.clip(10 * np.log10(s_c[ok] / s_w[ok]), -10, 35)))
    spec_c = np.abs(np.fft.rfft(c[frames] * np.hanning(512), axis=1)) ** 2 + 1e-12
    spec_y = np.abs(np.fft.rfft(y.astype(np.float64)[frames] * np.hanning(512), axis=1)) ** 2 + 1e-12
    lsd = float(np.mean(np.sqrt(np.mean((10 * np.log10(spec_c / spec_y)) ** 2, axis=1))))
    return float(snr), seg, lsd


def section_watermark(args: argparse.Namespace) -> dict[str, Any]:
    from stylecraft.generate import watermark as wm

    files = audio_files(music_dir(args.music))
    sr = 32000  # MusicGen's rate: where generated files are marked
    rng = np.random.default_rng(1)
    strength = args.strength if args.strength is not None else wm.DEFAULT_STRENGTH
    clip_s = args.clip_s
    hits: dict[str, list[float]] = {a: [] for a in ATTACKS}
    snr, seg_snr, lsd = [], [], []
    wrong_key_scores: list[float] = []
    bitrates: list[dict[str, float]] = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for f in files:
            x = _mono(f, sr)
            for q in (0.15, 0.35, 0.55, 0.75):
                start = int(q * max(0, x.shape[0] - clip_s * sr))
                clip = x[start : start + int(clip_s * sr)]
                if clip.shape[0] < clip_s * sr or float(np.sqrt(np.mean(clip**2))) < 1e-3:
                    continue  # (near) silent passage: nothing to mark
                key = f"trial-{rng.integers(1 << 62)}"
                y = wm.embed(clip, sr, key, strength)
                a_snr, a_seg, a_lsd = _audibility(clip, y)
                snr.append(a_snr)
                seg_snr.append(a_seg)
                lsd.append(a_lsd)
                for a in ATTACKS:
                    z, zsr = _attack(a, y, sr, tmp, rng, bitrates)
                    hits[a].append(wm.detect(z, zsr, key).score)
                for j in range(3):
                    wrong_key_scores.append(wm.detect(y, sr, f"{key}-wrong-{j}").score)
    # False positives: every non-overlapping excerpt of unwatermarked real music (the catalogue and
    # the other free soundtracks), each tried with several random keys.
    fp_scores: list[list[float]] = []  # per excerpt: one score per key
    full_scores: list[float] = []
    fp_sources: dict[str, dict[str, Any]] = {}
    top: list[dict[str, Any]] = []  # the ten excerpts whose best key scored highest
    for folder, package in fp_music_dirs(args):
        print(f"false positives: {folder.name}", flush=True)
        n_exc, minutes = 0, 0.0
        for f in audio_files(folder):
            x16 = _mono(f, wm.RATE)
            minutes += x16.shape[0] / wm.RATE / 60
            for j in range(args.fp_keys):
                full_scores.append(wm.detect(x16, wm.RATE, f"fp-full-{j}").score)
            n = int(clip_s * wm.RATE)
            for start in range(0, x16.shape[0] - n + 1, n):
                exc = x16[start : start + n]
                if float(np.sqrt(np.mean(exc**2))) < 1e-3:
                    continue
                keys = [f"fp-{rng.integers(1 << 62)}" for _ in range(args.fp_keys)]
                row = [wm.detect(exc, wm.RATE, k).score for k in keys]
                fp_scores.append(row)
                best = int(np.argmax(row))
                # The highest-scoring excerpts are kept by name, so that a false positive can be listened to.
                top.append({"source": folder.name, "file": f.name, "start_s": round(start / wm.RATE, 2),
                            "key": keys[best], "score": round(float(row[best]), 3)})
                top = sorted(top, key=lambda r: -r["score"])[:10]
                n_exc += 1
        fp_sources[folder.name] = {**_source_info(folder, package), "files": len(audio_files(folder)),
                                   "minutes": round(minutes, 1), "excerpts": n_exc}
    thr = wm.THRESHOLD

    def rate(v: list[float]) -> float:
        return round(float(np.mean(np.asarray(v) >= thr)), 6) if v else float("nan")

    def fp_row(scores: list[float], units: int, unit: str) -> dict[str, Any]:
        pos = int(np.sum(np.asarray(scores) >= thr))
        return {"trials": len(scores), "positives": pos, "rate": rate(scores), "max_score": round(float(np.max(scores)), 2),
                "independent_units": units, "unit": unit,
                "upper95_per_unit": round(_cp_upper(int(np.sum(np.max(np.asarray(scores).reshape(units, -1), axis=1) >= thr)), units), 6),
                "upper95_per_trial": round(_cp_upper(pos, len(scores)), 6)}

    flat = [v for row in fp_scores for v in row]
    mp3 = [b for b in bitrates if b["rate"] == sr]
    mp3_44 = [b for b in bitrates if b["rate"] == 44100]
    return {
        "method": wm.METHOD,
        "strength": strength,
        "threshold": thr,
        "clip_s": clip_s,
        "sample_rate": sr,
        "tracks": len(files),
        "clips": len(snr),
        "mp3_encoder": f"{_tool_version(FFMPEG)} (libmp3lame, -b:a 128k)",
        "mp3_measured_kbps": {
            "32000 Hz": {"stream_kbps": sorted({b["stream_kbps"] for b in mp3}),
                         "file_kbps_min": min(b["file_kbps"] for b in mp3), "file_kbps_max": max(b["file_kbps"] for b in mp3)},
            "44100 Hz": {"stream_kbps": sorted({b["stream_kbps"] for b in mp3_44}),
                         "file_kbps_min": min(b["file_kbps"] for b in mp3_44), "file_kbps_max": max(b["file_kbps"] for b in mp3_44)},
        },
        "detection_rate": {a: rate(v) for a, v in hits.items()},
        "score_min": {a: round(float(np.min(v)), 2) for a, v in hits.items() if v},
        "score_median": {a: round(float(np.median(v)), 2) for a, v in hits.items() if v},
        "false_positive_music": fp_sources,
        "false_positive_minutes": round(sum(v["minutes"] for v in fp_sources.values()), 1),
        "highest_unmarked_excerpts": top,
        "false_positives": {
            "unmarked_excerpts": fp_row(flat, len(fp_scores), f"{clip_s} s excerpt"),
            "unmarked_full_tracks": fp_row(full_scores, len(full_scores) // args.fp_keys, "track"),
            "marked_wrong_key": fp_row(wrong_key_scores, len(wrong_key_scores) // 3, "marked clip"),
        },
        "audibility": {
            "snr_db": {"median": round(float(np.median(snr)), 2), "min": round(float(np.min(snr)), 2)},
            "segmental_snr_db": {"median": round(float(np.median(seg_snr)), 2), "min": round(float(np.min(seg_snr)), 2)},
            "log_spectral_distance_db": {"median": round(float(np.median(lsd)), 3), "max": round(float(np.max(lsd)), 3)},
        },
        "audioseal": audioseal_status(),
        "seconds": round(time.time() - t0, 1),
    }


def audioseal_status() -> str:
    """Whether the AudioSeal backend could be measured here."""
    try:
        from stylecraft.generate.watermark_audioseal import find_weights
    except ImportError as e:
        return f"not run: {e}"
    try:
        find_weights(None)
    except Exception as e:  # noqa: BLE001 - the reason is what the report shows
        return f"not run: {e}"
    return "weights present but not measured by this script"


# ---------------------------------------------------------------------------------------------
# Outliers


def _write(path: Path, x: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1, 1).astype(np.float32), sr, subtype="PCM_16")


def _write_ogg(path: Path, x: np.ndarray, sr: int) -> None:
    """Ogg Vorbis in 1 s pieces: libsndfile's Vorbis encoder overflows its stack on a whole track in one call."""
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, format="OGG", subtype="VORBIS") as f:
        for s0 in range(0, x.shape[0], sr):
            f.write(np.clip(x[s0 : s0 + sr], -1, 1).astype(np.float32))


def split_catalogue(music: Path) -> dict[str, list[Path]]:
    """Fixed split of the real catalogue (by sorted name, decided before any measurement).

    The Wesnoth files carry no composer tags, so the halves alternate by name. Six tracks are held
    out of both catalogues as the sources of the corrupted copies (a corrupted copy of a track that
    is also in the catalogue would be caught as a near duplicate, which is not what is measured).
    """
    files = audio_files(music)
    corrupt = files[::7][:6]
    rest = [f for f in files if f not in corrupt]
    return {"tune": rest[0::2], "test": rest[1::2], "corrupt_tune": corrupt[0::2], "corrupt_test": corrupt[1::2]}


def _noise(kind: str, n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(spec.shape[0]), 1)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = np.fft.irfft(spec / np.sqrt(f), n)
    elif kind == "brown":
        x = np.fft.irfft(spec / f, n)
    elif kind == "hum":  # mains hum with harmonics under hiss: a dead input channel
        t = np.arange(n) / sr
        x = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)) + 0.3 * rng.standard_normal(n)
    else:  # "band": noise band-passed to 300-3000 Hz (radio static)
        hz = np.fft.rfftfreq(n, 1 / sr)
        x = np.fft.irfft(spec * ((hz > 300) & (hz < 3000)), n)
    return 0.25 * x / np.max(np.abs(x))


def _corrupt(kind: str, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    if kind.startswith("bitrot"):  # a share of short blocks replaced by garbage
        share, ms = (0.3, 50) if kind == "bitrot" else (0.15, 20)
        step = int(ms / 1000 * sr)
        y = x.copy()
        for s in range(0, x.shape[0] - step, step):
            if rng.random() < share:
                y[s : s + step] = rng.uniform(-1, 1, step)
        return y
    if kind.startswith("clipped"):  # overdriven: gain then hard clipping
        gain_db = 30.0 if kind == "clipped" else 18.0
        return np.clip(x * 10 ** (gain_db / 20), -1, 1)
    if kind.startswith("crushed"):  # sample-and-hold and few bits
        hold, levels = (11, 8) if kind == "crushed" else (15, 16)
        return np.repeat(np.round(x[::hold] * levels) / levels, hold)[: x.shape[0]]
    if kind == "dropouts":  # 40% of 100 ms blocks silenced, with a click at every cut
        step = int(0.1 * sr)
        y = x.copy()
        for s in range(0, x.shape[0] - step, step):
            if rng.random() < 0.4:
                y[s : s + step] = 0.0
                y[s] = 0.9
        return y
    raise ValueError(kind)


# What each catalogue gets injected; the held-out catalogue's outliers are of other sources and kinds.
INJECTIONS: dict[str, dict[str, Any]] = {
    "tune": {"other": [("asc-music", 3), ("drascula-music", 4)], "noise": ["white", "pink"],
             "corrupt": ["bitrot", "clipped", "crushed"], "dup": ["mp3", "trimmed"], "synth": 1},
    "test": {"other": [("colobot-music", 5), ("drascula-music", 3)], "noise": ["brown", "hum", "band"],
             "corrupt": ["bitrot-fine", "clipped-mild", "dropouts"], "dup": ["resampled", "ogg-trimmed"], "synth": 1},
}


def build_injected_catalogue(split: str, out: Path, seed: int) -> dict[str, Any]:
    """One catalogue of real tracks plus known outliers; returns the ground truth by file name."""
    from stylecraft.data.demo import synth_track

    rng = np.random.default_rng(seed)
    parts = split_catalogue(music_dir(None))
    clean, corrupt_src = parts[split], parts[f"corrupt_{split}"]
    inj = INJECTIONS[split]
    truth: dict[str, str] = {}
    for f in clean:
        shutil.copy2(f, out / f.name)
        truth[f.name] = "clean"
    sr = 44100
    # Another artist: long enough tracks of other soundtracks; drascula's tracks alternate between the
    # two catalogues so none is in both.
    for name, count in inj["other"]:
        pool = [f for f in audio_files(_deb_dir(*next(o for o in OTHER_PACKAGES if o[0] == name)))
                if sf.info(str(f)).duration >= 60.0]
        if name == "drascula-music":
            pool = pool[0::2] if split == "tune" else pool[1::2]
        for f in pool[:count]:
            shutil.copy2(f, out / f"other-{name}-{f.name}")
            truth[f"other-{name}-{f.name}"] = "another artist"
    for i in range(inj["synth"]):
        name = f"other-synth-{i}.flac"
        _write(out / name, synth_track(120.0, sr, seed=40 + i + (10 if split == "test" else 0), channels=2), sr)
        truth[name] = "another artist"
    for kind in inj["noise"]:
        _write(out / f"noise-{kind}.flac", _noise(kind, 90 * sr, rng, sr), sr)
        truth[f"noise-{kind}.flac"] = "noise"
    for kind, f in zip(inj["corrupt"], corrupt_src, strict=True):
        name = f"corrupt-{kind}-{f.stem}.flac"
        _write(out / name, _corrupt(kind, _mono(f, sr), rng, sr), sr)
        truth[name] = "corrupted"
    # Near duplicates of catalogue tracks.
    duplicate_of = {}
    for kind, f in zip(inj["dup"], clean[3::6], strict=False):
        x = _mono(f, sr)
        if kind == "mp3":
            name = f"copy-{f.stem}.mp3"
            _mp3_ffmpeg(x, sr, out)
            shutil.move(out / "clip.mp3", out / name)
            (out / "clip.wav").unlink()
        elif kind == "trimmed":
            name = f"copy-{f.stem}-trimmed.flac"
            _write(out / name, x[int(3.3 * sr) :] * 10 ** (-4 / 20), sr)
        elif kind == "resampled":
            name = f"copy-{f.stem}-22k.flac"
            _write(out / name, _mono(f, 22050), 22050)
        else:
            name = f"copy-{f.stem}-trimmed.ogg"
            _write_ogg(out / name, x[int(5 * sr) : x.shape[0] - int(5 * sr)] * 10 ** (2 / 20), sr)
        duplicate_of[name] = f.name
        truth[name] = "near duplicate"
    # Bursts inside real tracks: 15 s of noise or a glitch loop.
    bursts: dict[str, list[float]] = {}
    long_enough = [f for f in clean if f.name not in duplicate_of.values() and sf.info(str(f)).duration >= 60.0]
    for k, f in enumerate(long_enough[1 :: max(1, len(long_enough) // 3)][:3]):
        x = _mono(f, sr)
        span = int(15 * sr)
        s0 = int(min(60 * sr, (x.shape[0] - span) // 2))
        if k % 2 == 0:
            x[s0 : s0 + span] = 0.3 * rng.standard_normal(span)
        else:
            x[s0 : s0 + span] = np.tile(rng.uniform(-0.8, 0.8, int(0.02 * sr)), span // int(0.02 * sr) + 1)[:span]
        name = f.stem + ".flac"
        (out / f.name).unlink()
        truth.pop(f.name)
        _write(out / name, x, sr)
        truth[name] = "clean"
        bursts[name] = [s0 / sr, (s0 + span) / sr]
    return {"truth": truth, "duplicate_of": duplicate_of, "bursts": bursts}


def prepare_catalogue(split: str) -> tuple[Path, dict[str, Any]]:
    """Build (once) and segment one injected catalogue; returns its run folder and ground truth."""
    from stylecraft.config import load_recipe
    from stylecraft.pipeline import run_stage

    work = ROOT / "eval" / ".cache" / f"reliability-outliers-{split}"
    cat, truth_file = work / "catalogue", work / "truth.json"
    if not truth_file.exists():
        shutil.rmtree(work, ignore_errors=True)
        cat.mkdir(parents=True)
        truth_file.write_text(json.dumps(build_injected_catalogue(split, cat, seed=7 if split == "tune" else 11)))
    run = work / "run"
    cfg = load_recipe(None, [f"catalogue={cat}", f"run_dir={run}", "stages=[ingest,segment]", "ingest.valid_fraction=0.0",
                             "segment.sample_rate=16000", "outliers.enabled=false"])
    run_stage("ingest", cfg)
    run_stage("segment", cfg)
    return run, json.loads(truth_file.read_text())


FEATURES_VERSION = 2  # bump when the detector's window features change: cached features are recomputed


def catalogue_features(split: str) -> dict[str, Any]:
    """An injected catalogue segmented once, with its window features and all pairwise fingerprint
    correlations (cached beside it, so thresholds can be swept without recomputing anything)."""
    from stylecraft.artifacts import atomic_path, read_jsonl
    from stylecraft.data import outliers as od
    from stylecraft.data.manifest import Window, load_rows

    run, gt = prepare_catalogue(split)
    windows = load_rows(run / "windows.jsonl", Window)
    tracks = {r["id"]: Path(r["path"]).name for r in read_jsonl(run / "tracks.jsonl")}
    cache = run.parent / f"features-v{FEATURES_VERSION}.npz"
    tids = sorted({w.track_id for w in windows})
    cached = np.load(cache) if cache.exists() else None
    if cached is None or list(cached["tids"]) != tids:  # a different catalogue: recompute
        emb = od.window_embeddings(run, windows, 16000, progress=False)
        prints = {t: od.fingerprint(od.track_pcm(run, t), 16000) for t in tids}
        corr = np.zeros((len(tids), len(tids)))
        for i, ta in enumerate(tids):
            for j in range(i):
                corr[i, j] = corr[j, i] = od._max_overlap_corr(prints[tids[j]], prints[ta])
        with atomic_path(cache) as p, open(p, "wb") as f:  # a killed run leaves no half-written cache
            np.savez(f, emb=emb, corr=corr, tids=np.array(tids))
        cached = {"emb": emb, "corr": corr}
    return {"split": split, "run": run, "gt": gt, "windows": windows, "tracks": tracks, "tids": tids,
            "emb": cached["emb"], "corr": cached["corr"]}


LEARNED_EMBEDDING = "musicnn-mtt"  # learned window features compared with the MFCC default


def with_learned_features(cat: dict[str, Any], embedding: str) -> dict[str, Any] | None:
    """``cat`` with the window features of :func:`stylecraft.data.outliers.window_embeddings` for a
    learned ``embedding`` (cached beside the catalogue), or None when its weights are not here."""
    from stylecraft.artifacts import atomic_path
    from stylecraft.data import outliers as od
    from stylecraft.errors import ModelNotFoundError

    cache = cat["run"].parent / f"features-{embedding}-v{FEATURES_VERSION}.npz"
    cached = np.load(cache) if cache.exists() else None
    if cached is not None and list(cached["tids"]) == cat["tids"]:
        learned = cached["learned"]
    else:
        try:
            learned = od.learned_window_features(cat["run"], cat["windows"], 16000, embedding, progress=True)
        except ModelNotFoundError as exc:
            print(f"outliers: {embedding} comparison skipped: {exc}", file=sys.stderr)
            return None
        with atomic_path(cache) as p, open(p, "wb") as f:
            np.savez(f, learned=learned, tids=np.array(cat["tids"]))
    # The same texture and damage columns as the MFCC rows: only the features that are whitened change.
    return {**cat, "emb": np.concatenate([learned, cat["emb"][:, -od.EXTRA_DIMS :]], axis=1)}


def _duplicates(cat: dict[str, Any], min_corr: float) -> dict[str, str]:
    """What :func:`stylecraft.data.outliers.find_duplicates` returns, from the cached correlations."""
    ids, out = cat["tids"], {}
    for j, b in enumerate(ids):
        for i, a in enumerate(ids[:j]):
            if a not in out and cat["corr"][i, j] >= min_corr:
                out[b] = a
                break
    return out


def evaluate_detector(cat: dict[str, Any], params: Any) -> dict[str, Any]:
    """Track- and window-level recall and false-positive rate of the detector on one catalogue.

    A pair of copies counts as caught when either copy is flagged as a duplicate of the other;
    the original is then neither a positive nor a false positive.
    """
    from stylecraft.data.outliers import detect_outliers

    report = detect_outliers(cat["windows"], cat["emb"], params, _duplicates(cat, params.duplicate_corr))
    tracks, gt = cat["tracks"], cat["gt"]
    truth, bursts = gt["truth"], gt["bursts"]
    flagged = {tracks[t]: why for t, why in report.flagged_tracks.items()}
    present = set(tracks.values())
    originals = set(gt["duplicate_of"].values())
    per_kind: dict[str, list[int]] = {}
    fp_names = []
    for name, kind in truth.items():
        if name not in present:
            continue
        if kind == "near duplicate":
            orig = gt["duplicate_of"][name]
            per_kind.setdefault(kind, []).append(int(name in flagged or "duplicate" in flagged.get(orig, "")))
        elif kind == "clean":
            if name in originals and "duplicate" in flagged.get(name, ""):
                continue
            if name in flagged:
                fp_names.append(name)
            per_kind.setdefault("clean", []).append(int(name in flagged))
        else:
            per_kind.setdefault(kind, []).append(int(name in flagged))
    positives = [v for k, vs in per_kind.items() if k != "clean" for v in vs]
    negatives = per_kind.get("clean", [])
    # Windows at least half inside an injected burst, against windows of clean unflagged tracks
    # that do not touch a burst.
    w_pos, w_neg = [], []
    for w in cat["windows"]:
        name = tracks[w.track_id]
        if truth.get(name) != "clean" or name in flagged:
            continue
        hit = w.id in report.flagged_windows
        if name in bursts:
            b0, b1 = bursts[name]
            overlap = max(0.0, min(b1, w.start_s + w.duration_s) - max(b0, w.start_s))
            if overlap >= 0.5 * w.duration_s:
                w_pos.append(int(hit))
                continue
            if overlap > 0:
                continue
        w_neg.append(int(hit))
    return {
        "track_level": {
            "recall": round(float(np.mean(positives)), 4), "positives": len(positives), "caught": int(np.sum(positives)),
            "false_positive_rate": round(float(np.mean(negatives)), 4), "negatives": len(negatives),
            "false_positives": fp_names,
            "recall_by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in per_kind.items() if k != "clean"},
            "missed": sorted(n for n, k in truth.items() if k not in ("clean", "near duplicate") and n in present
                             and n not in flagged),
        },
        "window_level": {
            "recall": round(float(np.mean(w_pos)), 4) if w_pos else None, "positives": len(w_pos),
            "false_positive_rate": round(float(np.mean(w_neg)), 4), "negatives": len(w_neg),
        },
        "flagged": flagged,
        "report": report,
    }


# Grid swept on the tuning catalogue only; the rule picks the highest recall at <= 5% false
# positives there (half the target's budget, for what does not carry over), ties going to the
# strictest thresholds.
GRID = {"track_z": [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0], "noise_coherence": [0.05, 0.1, 0.15],
        "flatness_z": [1.0, 1.5, 2.0, 2.5, 3.0],
        "clipped_share": [0.01, 0.02, 0.05], "dropout_share": [0.02, 0.05], "duplicate_corr": [0.8, 0.9]}
TUNE_MAX_FPR = 0.05


def tune_params(cat: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    import itertools

    from stylecraft.data import outliers as od
    from stylecraft.data.outliers import OutlierParams

    # The whitening does not depend on any threshold: compute it once per catalogue for the sweep.
    whiten, memo = od._whiten, {}

    def cached(x: np.ndarray) -> np.ndarray:
        k = (x.__array_interface__["data"][0], x.shape)
        if k not in memo:
            memo[k] = whiten(x)
        return memo[k]

    od._whiten = cached  # type: ignore[assignment]
    try:
        return _sweep(cat, itertools.product(*GRID.values()), OutlierParams)
    finally:
        od._whiten = whiten  # type: ignore[assignment]


def _sweep(cat: dict[str, Any], points: Any, params_cls: Any) -> tuple[Any, list[dict[str, Any]]]:
    OutlierParams = params_cls  # noqa: N806
    rows = []
    for values in points:
        p = OutlierParams(**dict(zip(GRID, values, strict=True)))
        t = evaluate_detector(cat, p)["track_level"]
        rows.append({**dict(zip(GRID, values, strict=True)), "recall": t["recall"], "false_positive_rate": t["false_positive_rate"]})
    ok = [r for r in rows if r["false_positive_rate"] <= TUNE_MAX_FPR]
    best = max(ok, key=lambda r: (r["recall"], -r["false_positive_rate"], r["track_z"], r["flatness_z"],
                                  -r["noise_coherence"], r["clipped_share"], r["dropout_share"], r["duplicate_corr"]))
    return OutlierParams(**{k: best[k] for k in GRID}), rows


def _summary(ev: dict[str, Any]) -> dict[str, Any]:
    return {"track_level": ev["track_level"], "window_level": ev["window_level"], "flagged": ev["flagged"]}


def section_outliers(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict

    from stylecraft.data.outliers import OutlierParams, plot_report

    t0 = time.time()
    tune, test = catalogue_features("tune"), catalogue_features("test")
    chosen, grid = tune_params(tune)
    defaults = OutlierParams()
    ev_test = evaluate_detector(test, chosen)
    plot_report(ev_test["report"], test["windows"], RESULTS / "reliability_outliers.png", chosen)
    sweep = []
    for thr in GRID["track_z"]:  # the track threshold alone, others as chosen, on the held-out catalogue
        t = evaluate_detector(test, OutlierParams(**{**asdict(chosen), "track_z": thr}))["track_level"]
        sweep.append({"track_z": thr, "recall": t["recall"], "false_positive_rate": t["false_positive_rate"]})
    learned: dict[str, Any] = {"embedding": LEARNED_EMBEDDING}
    l_tune, l_test = with_learned_features(tune, LEARNED_EMBEDDING), with_learned_features(test, LEARNED_EMBEDDING)
    if l_tune is not None and l_test is not None:
        l_chosen, _ = tune_params(l_tune)
        learned.update({"chosen_params": {**asdict(l_chosen), "embedding": LEARNED_EMBEDDING},
                        "held_out_with_chosen": _summary(evaluate_detector(l_test, l_chosen)),
                        "tune_with_chosen": _summary(evaluate_detector(l_tune, l_chosen))})
    cats = {}
    for cat in (tune, test):
        truth = cat["gt"]["truth"]
        cats[cat["split"]] = {"composition": {k: sum(1 for v in truth.values() if v == k) for k in sorted(set(truth.values()))},
                              "ingested_tracks": len(cat["tracks"]), "windows": len(cat["windows"]),
                              "injections": INJECTIONS[cat["split"]]}
    return {
        "protocol": ("the Wesnoth tracks are split by name into two disjoint halves, each injected with different "
                     "outliers (other sources and kinds); thresholds are chosen on the 'tune' catalogue by a fixed "
                     f"rule (highest recall at <= {100 * TUNE_MAX_FPR:g}% false positives) and measured on the 'test' "
                     "catalogue, which played no part in choosing them"),
        "catalogues": cats,
        "chosen_params": asdict(chosen),
        "default_params": asdict(defaults),
        "held_out_with_chosen": _summary(ev_test),
        "held_out_with_defaults": _summary(evaluate_detector(test, defaults)),
        "tune_with_chosen": _summary(evaluate_detector(tune, chosen)),
        "grid_points": len(grid),
        "held_out_track_threshold_sweep": sweep,
        "learned_embedding": learned,
        "settings": {"window_s": 10.0, "hop_s": 5.0, "sample_rate": 16000, "features_version": FEATURES_VERSION},
        "picture": "reliability_outliers.png",
        "seconds": round(time.time() - t0, 1),
    }


# ---------------------------------------------------------------------------------------------
# Bad input, kills, malicious pickles


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "stylecraft", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=3600)


def _peak_rss_mib(*args: str) -> tuple[int, float]:
    """Exit status and peak resident memory (MiB) of one ``stylecraft`` command in its own process."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL).returncode; print(r, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "stylecraft", *args], capture_output=True,
                         text=True, env=env, timeout=7200).stdout.split()
    return int(out[0]), round(int(out[1]) / 1024, 1)


def _write_long(path: Path, seconds: float, sr: int = 44100) -> None:
    """A long stereo 16-bit WAV written in one-minute pieces (never held in memory whole)."""
    from reliability_corpus import _tone

    minute = _tone(60.0, sr, 2, seed=1)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=2, subtype="PCM_16") as f:
        for i in range(int(seconds // 60)):
            f.write(minute * (0.5 + 0.4 * np.sin(i)))


def section_badinput(args: argparse.Namespace) -> dict[str, Any]:
    from reliability_corpus import make_corpus

    from stylecraft.artifacts import read_jsonl

    t0 = time.time()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        cat, run = tmp / "catalogue", tmp / "run"
        cases = make_corpus(cat)
        ing = _cli("ingest", str(cat), "--run-dir", str(run))
        seg = _cli("segment", "--run-dir", str(run), "segment.window_s=4", "segment.hop_s=2")
        ver = _cli("verify", str(run), "--json")
        tracks = {os.path.relpath(t["path"], cat): t for t in read_jsonl(run / "tracks.jsonl")}
        rejects = {os.path.relpath(r["path"], cat): r["reason"] for r in read_jsonl(run / "rejects.jsonl")}
        windows = read_jsonl(run / "windows.jsonl")
        with_windows = {t["id"] for t in tracks.values()} & {w["track_id"] for w in windows}
        table = []
        for rel, (case, usable) in sorted(cases.items()):
            if rel in tracks:
                outcome = "track" + ("" if tracks[rel]["id"] in with_windows else " (no window: shorter than one)")
            else:
                outcome = f"reject: {rejects.get(rel, 'MISSING')}"
            table.append({"file": rel, "case": case, "expected": "track" if usable else "reject", "outcome": outcome})
        in_both = sorted(set(tracks) & set(rejects))
        missing = sorted(set(cases) - set(tracks) - set(rejects))
        out["corpus"] = {
            "files": len(cases), "tracks": len(tracks), "rejects": len(rejects), "in_both": in_both, "missing": missing,
            "ingest_exit": ing.returncode, "segment_exit": seg.returncode, "windows": len(windows),
            "tracebacks": sum("Traceback" in p.stderr for p in (ing, seg, ver)),
            "verify": json.loads(ver.stdout)["counts"] if ver.stdout.strip() else ver.stderr.strip(),
            "cases": table,
        }
        bad = tmp / "all-bad"
        bad.mkdir()
        (bad / "a.wav").write_bytes(b"")
        (bad / "b.flac").write_bytes(b"garbage" * 10)
        p = _cli("ingest", str(bad), "--run-dir", str(tmp / "run-bad"))
        out["nothing_usable"] = {"exit": p.returncode, "stderr": p.stderr.strip()}
        p = _cli("run", str(ROOT / "recipes" / "quickstart.yaml"), "segment.window_s=-1", "train.lr=abc", "bogus.key=1",
                 "--run-dir", str(tmp / "r"))
        out["bad_config"] = {"exit": p.returncode, "stderr": p.stderr.strip()}
        p = _cli("generate", "--model", "musicgen-small", "--out", str(tmp / "g"))
        out["missing_model"] = {"exit": p.returncode, "stderr": p.stderr.strip()}
        code = ("import errno, os, sys; from stylecraft import cli\n"
                "def f(fd): raise OSError(errno.ENOSPC, 'No space left on device')\n"
                "os.fsync = f; sys.argv = ['stylecraft', 'ingest', sys.argv[1], '--run-dir', sys.argv[2]]; cli.main()")
        p = subprocess.run([sys.executable, "-c", code, str(cat / "rates"), str(tmp / "run-full")], capture_output=True, text=True,
                           env={**os.environ, "STYLECRAFT_PROGRESS": "0"}, timeout=600)
        leftovers = [q.name for q in (tmp / "run-full").rglob("*") if q.is_file()] if (tmp / "run-full").exists() else []
        out["disk_full_simulated"] = {"exit": p.returncode, "stderr": p.stderr.strip(), "files_left": leftovers}
        # Memory on long files.
        rss = []
        for minutes in args.long_minutes:
            long_cat = tmp / f"long-{minutes}"
            long_cat.mkdir()
            _write_long(long_cat / "long.wav", minutes * 60.0)
            long_run = tmp / f"long-run-{minutes}"
            code_i, rss_i = _peak_rss_mib("ingest", str(long_cat), "--run-dir", str(long_run))
            row = {"minutes": minutes, "file_mib": round((long_cat / "long.wav").stat().st_size / 2**20), "ingest_exit": code_i,
                   "ingest_peak_rss_mib": rss_i}
            if minutes <= args.segment_max_minutes:
                code_s, rss_s = _peak_rss_mib("segment", "--run-dir", str(long_run), "segment.workers=1")
                row.update({"segment_exit": code_s, "segment_peak_rss_mib": rss_s})
            rss.append(row)
            shutil.rmtree(long_cat)
            shutil.rmtree(long_run)
        out["long_files"] = rss
    out["seconds"] = round(time.time() - t0, 1)
    return out


def _pytest(paths: list[str], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run pytest on ``paths`` and return every test's outcome (from its JUnit XML)."""
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory() as tmpd:
        xml = Path(tmpd) / "r.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *paths],
                       cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=3600)
        rows = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            status = "passed"
            for tag in ("failure", "error", "skipped"):
                el = case.find(tag)
                if el is not None:
                    status = f"{tag}: {(el.get('message') or '').splitlines()[0][:200] if el.get('message') else ''}"
            rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": status,
                         "seconds": round(float(case.get("time", 0)), 1)})
        return rows


# Tests that send SIGKILL to a running stage. Each one skips (data stages) or fails (training)
# when the process finished before the signal, so "passed" means killed, resumed and checked.
KILL_TESTS = ("test_killed_stage_resumes_to_the_same_result", "test_sigkill_and_resume_gives_identical_losses")


def kill_kind(trial: dict[str, Any]) -> str:
    """``"kill"`` (a kill happened, whatever the outcome), ``"not killed"`` (the stage finished
    first: nothing was killed) or ``"no kill"`` (a test of the same files that kills nothing)."""
    name = str(trial["test"]).split("::")[-1].split("[")[0]
    if name not in KILL_TESTS:
        return "no kill"
    return "not killed" if str(trial["outcome"]).startswith("skipped") else "kill"


def kill_counts(section: dict[str, Any]) -> dict[str, int]:
    """Kill tests that killed (and of them, passed), runs where nothing was killed, other checks."""
    kinds = [(kill_kind(t), t["outcome"] == "passed") for t in section["trials"]]
    return {"kills": sum(k == "kill" for k, _ in kinds), "kills_passed": sum(k == "kill" and ok for k, ok in kinds),
            "not_killed": sum(k == "not killed" for k, _ in kinds), "other": sum(k == "no kill" for k, _ in kinds),
            "other_passed": sum(k == "no kill" and ok for k, ok in kinds)}


def section_kills(args: argparse.Namespace) -> dict[str, Any]:
    trials = []
    for seed in range(args.kill_trials):
        trials += [{"seed": seed, **r} for r in _pytest(["tests/test_kill_resume.py", "-m", ""],
                                                         {"STYLECRAFT_KILL_SEED": str(seed)})]
    trials += [{"seed": "-", **r} for r in _pytest(["tests/train/test_loop.py", "-k", "kill or resume"])]
    return {"trials": trials, **kill_counts({"trials": trials})}


def section_pickle(args: argparse.Namespace) -> dict[str, Any]:
    rows = _pytest(["tests/test_safe_loading.py", "tests/train/test_safe_resume.py"])
    return {"tests": rows, "passed": sum(r["outcome"] == "passed" for r in rows), "total": len(rows)}


SECTION_FUNCS = {
    "badinput": section_badinput,
    "kills": section_kills,
    "pickle": section_pickle,
    "watermark": section_watermark,
    "outliers": section_outliers,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to (re)run")
    ap.add_argument("--music", default=None, help="folder of the real catalogue (default: eval/data/wesnoth)")
    ap.add_argument("--strength", type=float, default=None, help="watermark strength to measure (default: the default strength)")
    ap.add_argument("--clip-s", type=float, default=6.0, help="length of watermarked clips")
    ap.add_argument("--fp-keys", type=int, default=10, help="keys tried on every unmarked excerpt")
    ap.add_argument("--long-minutes", type=int, nargs="*", default=[10, 60], help="lengths of the long-file memory test")
    ap.add_argument("--segment-max-minutes", type=int, default=60, help="longest file also segmented for the memory test")
    ap.add_argument("--kill-trials", type=int, default=2, help="seeds of the kill-and-rerun tests")
    ap.add_argument("--report-only", action="store_true", help="only merge the saved sections into the report")
    args = ap.parse_args()
    if not args.report_only:
        for name in [s for s in args.only.split(",") if s]:
            if name not in SECTION_FUNCS:
                raise SystemExit(f"unknown section '{name}' (known: {', '.join(SECTION_FUNCS)})")
            print(f"== {name}", flush=True)
            _save_part(name, {"measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **SECTION_FUNCS[name](args)})
    write_report(keep_machine=args.report_only)


def write_report(keep_machine: bool = False) -> None:
    """Merge the saved sections into the report; ``keep_machine`` keeps the machine and versions
    the report already names (a re-render measures nothing, so it must not claim this machine)."""
    from bench_prep import machine_info, versions

    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    parts = {p.stem: json.loads(p.read_text()) for p in sorted(PARTS.glob("*.json"))}
    if "kills" in parts:  # counted from the trials (sections saved before kill_counts carried passed/total)
        kills = {k: v for k, v in parts["kills"].items() if k not in ("passed", "total")}
        parts["kills"] = {**kills, **kill_counts(kills)}
    old = json.loads((RESULTS / "reliability.json").read_text()) if (RESULTS / "reliability.json").exists() else {}
    if keep_machine and "machine" in old:
        data = {"machine": old["machine"], "versions": old["versions"], "sections": parts}
    else:
        data = {"machine": machine_info(), "versions": versions(), "sections": parts}
    atomic_write_json(RESULTS / "reliability.json", data)
    atomic_write_text(RESULTS / "reliability.md", render_markdown(data))
    print(f"wrote {RESULTS / 'reliability.json'} and {RESULTS / 'reliability.md'}")


def render_markdown(data: dict[str, Any]) -> str:
    lines = ["# Reliability report", "", "Produced by `eval/reliability.py`; raw figures in `reliability.json`.", ""]
    m, v = data["machine"], data["versions"]
    lines += [f"Machine: {m['cpu']}, {m['cores_usable']} usable cores, {m['ram_gib']} GiB RAM, {m['os']}.",
              "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", ""]
    s = data["sections"]
    lines += ["## Against the targets", ""] + _targets(s) + [""]
    for name in SECTIONS:
        if name not in s:
            lines += [f"## {name}", "", "Not measured in this report.", ""]
            continue
        lines += RENDER.get(name, _render_generic)(s[name])
    return "\n".join(lines) + "\n"


def _targets(s: dict[str, Any]) -> list[str]:
    out = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if "badinput" in s:
        c = s["badinput"]["corpus"]
        ok = c["tracebacks"] == 0 and not c["in_both"] and not c["missing"]
        out.append(f"- Zero tracebacks and zero silently dropped files across the bad-input corpus: {verdict(ok)} "
                   f"({c['files']} files, {c['tracebacks']} tracebacks, {len(c['missing'])} dropped, {len(c['in_both'])} in both manifests).")
    if "kills" in s:
        k = kill_counts(s["kills"])  # counted from the trials, so earlier saved sections are counted the same way
        ok = k["kills"] > 0 and k["kills_passed"] == k["kills"]
        out.append(f"- Every kill-and-restart completes with `verify` clean: {verdict(ok)} ({k['kills_passed']}/{k['kills']} "
                   f"runs that killed a stage; {k['not_killed']} run(s) where the stage finished before the kill and "
                   f"{k['other']} test(s) that kill nothing are not counted).")
    if "pickle" in s:
        p = s["pickle"]
        out.append(f"- The malicious pickle executes nothing: {verdict(p['passed'] == p['total'])} ({p['passed']}/{p['total']} tests).")
    if "watermark" in s:
        w = s["watermark"]
        d = w["detection_rate"]
        worst = min(d["mp3-128k"], d["mp3-128k@44.1k"], d["resample-16k"], d["resample-44.1k"])
        fp = w["false_positives"]["unmarked_excerpts"]
        kb = w["mp3_measured_kbps"]["32000 Hz"]["stream_kbps"] + w["mp3_measured_kbps"]["44100 Hz"]["stream_kbps"]
        out.append(f"- Watermark detection >= 99% after 128 kbit/s MP3 and resampling: {verdict(worst >= 0.99)} "
                   f"(lowest {100 * worst:.2f}% over {w['clips']} clips of {w['clip_s']} s; MP3 streams measured at "
                   f"{', '.join(str(v) for v in sorted(set(kb)))} kbit/s).")
        out.append(f"- False positives <= 0.1% on real music: {verdict(fp['rate'] <= 0.001)} "
                   f"({fp['positives']} of {fp['trials']} excerpt/key trials over {fp['independent_units']} disjoint "
                   f"{fp['unit']}s; 95% upper bound {100 * fp['upper95_per_unit']:.3f}% per excerpt, "
                   f"{100 * fp['upper95_per_trial']:.4f}% per trial).")
    if "outliers" in s:
        o = s["outliers"]
        le = o.get("learned_embedding") or {}
        rows = [("thresholds chosen on the other half", o["held_out_with_chosen"]),
                ("library defaults", o["held_out_with_defaults"])]
        if "held_out_with_chosen" in le:
            rows.append((f"{le['embedding']} window features, thresholds chosen on the other half", le["held_out_with_chosen"]))
        for label, ev in rows:
            t = ev["track_level"]
            ok = t["recall"] >= 0.9 and t["false_positive_rate"] <= 0.1
            out.append(f"- Outlier recall >= 90% at <= 10% false positives, held-out catalogue, {label}: {verdict(ok)} "
                       f"(recall {100 * t['recall']:.1f}% of {t['positives']}, FPR {100 * t['false_positive_rate']:.1f}% of "
                       f"{t['negatives']}).")
    return out


def _render_generic(part: dict[str, Any]) -> list[str]:
    return ["```json", json.dumps(part, indent=2), "```", ""]


def _render_badinput(p: dict[str, Any]) -> list[str]:
    c = p["corpus"]
    out = ["## Bad input", "",
           f"Corpus of {c['files']} files (tests/reliability_corpus.py) through `stylecraft ingest` and `stylecraft segment` "
           f"(separate processes): {c['tracks']} tracks, {c['rejects']} rejects, {len(c['in_both'])} in both, "
           f"{len(c['missing'])} in neither; exit codes ingest {c['ingest_exit']}, segment {c['segment_exit']}; "
           f"{c['tracebacks']} tracebacks; {c['windows']} windows; verify: {c['verify']}.", "",
           "| file | case | expected | outcome |", "|---|---|---|---|"]
    for r in c["cases"]:
        name = r["file"].replace("\n", "\\n").replace("|", "\\|")
        out.append(f"| `{name}` | {r['case']} | {r['expected']} | {r['outcome'].replace('|', '/')} |")
    out += [""]
    for key, label in (("nothing_usable", "Catalogue with nothing usable"), ("bad_config", "Bad config values"),
                       ("missing_model", "Missing model"), ("disk_full_simulated", "Full disk (ENOSPC from fsync, simulated)")):
        r = p[key]
        out.append(f"- {label}: exit {r['exit']}, stderr `{r['stderr']}`" + (f", files left: {r['files_left']}" if "files_left" in r else ""))
    out += ["", "The tests run as root, which chmod 000 does not stop: `special/unreadable.flac` is read and expected as a "
            "track here; a permission failure is simulated in `tests/test_bad_input.py::test_unreadable_file_is_a_reject`.",
            "", "Peak resident memory (ru_maxrss, which includes pages of memory-mapped output files) on long files "
            "(1-minute tone pattern, 44.1 kHz stereo WAV). Files with more than 256 MiB of decoded audio (about 25 minutes "
            "of stereo 44.1 kHz) are processed in blocks; shorter ones are decoded whole:", "",
            "| minutes | file MiB | ingest exit | ingest peak RSS MiB | segment exit | segment peak RSS MiB |", "|---|---|---|---|---|---|"]
    for r in p["long_files"]:
        out.append(f"| {r['minutes']} | {r['file_mib']} | {r['ingest_exit']} | {r['ingest_peak_rss_mib']} | "
                   f"{r.get('segment_exit', '-')} | {r.get('segment_peak_rss_mib', '-')} |")
    return out + [""]


def _render_tests(title: str, rows: list[dict[str, Any]], intro: str) -> list[str]:
    out = [f"## {title}", "", intro, "", "| test | seed | outcome | s |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['test']}` | {r.get('seed', '-')} | {r['outcome']} | {r.get('seconds', '-')} |")
    return out + [""]


def _render_kills(p: dict[str, Any]) -> list[str]:
    k = kill_counts(p)
    rows = [{**t, "outcome": f"{t['outcome']} ({kill_kind(t)})"} for t in p["trials"]]
    return _render_tests("Kill and rerun", rows,
                         f"{k['kills_passed']} of {k['kills']} runs that killed a stage passed. Each data-stage test kills "
                         "the stage with SIGKILL at a random moment after its first finished unit of work, reruns the same "
                         "command, and checks outputs byte-equal to an uninterrupted run, finished units untouched and "
                         "`stylecraft verify` clean (it skips, and is not counted, when the stage finished before the "
                         "kill); the training test kills `stylecraft train` and checks an exact resume. "
                         f"{k['not_killed']} run(s) killed nothing because the stage had finished; {k['other_passed']} of "
                         f"{k['other']} tests from the same files that kill nothing (clean-up of temporary files, "
                         "refusal of changed settings) passed and are listed but not counted as kills.")


def _render_pickle(p: dict[str, Any]) -> list[str]:
    return _render_tests("Malicious checkpoints and tampered manifests", p["tests"],
                         f"{p['passed']} of {p['total']} passed. The pickles' `__reduce__` would create a marker file; "
                         "every test asserts the marker never appears.")


def _render_watermark(p: dict[str, Any]) -> list[str]:
    k = p["mp3_measured_kbps"]
    out = ["## Watermark", "",
           f"Method `{p['method']}`, strength {p['strength']}, threshold {p['threshold']}; {p['clips']} clips of {p['clip_s']} s "
           f"from {p['tracks']} real tracks at {p['sample_rate']} Hz, each marked with its own random key.", "",
           f"MP3: {p['mp3_encoder']}, constant bit rate. ffprobe reads every produced file's audio stream at "
           f"{', '.join(str(v) for v in k['32000 Hz']['stream_kbps'])} kbit/s when encoded at 32 kHz "
           f"(whole file, headers included: {k['32000 Hz']['file_kbps_min']}-{k['32000 Hz']['file_kbps_max']} kbit/s) and "
           f"{', '.join(str(v) for v in k['44100 Hz']['stream_kbps'])} kbit/s at 44.1 kHz "
           f"({k['44100 Hz']['file_kbps_min']}-{k['44100 Hz']['file_kbps_max']} kbit/s).", "",
           "| attack | detected | min score | median score |", "|---|---|---|---|"]
    for a, r in p["detection_rate"].items():
        out.append(f"| {a} | {100 * r:.2f}% | {p['score_min'][a]} | {p['score_median'][a]} |")
    src = p["false_positive_music"]

    def origin(v: dict[str, Any]) -> str:
        if not v.get("package"):
            return ""
        note = "" if v.get("version_from") == "unpacked .deb" else " (apt candidate when measured)"
        return f"Debian `{v['package']}` {v['version']}{note}, "

    total = sum(v["minutes"] for v in src.values())
    out += ["", f"False positives on unwatermarked real music ({round(total, 1)} min in all): " + "; ".join(
        f"{name} ({origin(v)}{v['files']} files, {v['minutes']} min, {v['excerpts']} excerpts)" for name, v in src.items())
        + ". Each excerpt and track is tried with several random keys. Upper bounds are one-sided 95% Clopper-Pearson: "
        "per unit counts a unit as positive when any of its keys fires (units are disjoint audio, so independent); "
        "per trial treats every key as its own trial (keys are independent patterns, the audio is shared).", "",
        "| false-positive test | units | trials | positives | rate | 95% bound per unit | 95% bound per trial | max score |",
        "|---|---|---|---|---|---|---|---|"]
    for name, r in p["false_positives"].items():
        out.append(f"| {name} | {r['independent_units']} x {r['unit']} | {r['trials']} | {r['positives']} | {100 * r['rate']:.4f}% | "
                   f"{100 * r['upper95_per_unit']:.3f}% | {100 * r['upper95_per_trial']:.4f}% | {r['max_score']} |")
    if "highest_unmarked_excerpts" in p:
        out += ["", f"Highest-scoring unmarked excerpts (best of their keys; a score >= {p['threshold']} is a false positive):", "",
                "| source | file | start s | score | key |", "|---|---|---|---|---|"]
        for r in p["highest_unmarked_excerpts"]:
            flag = " (positive)" if r["score"] >= p["threshold"] else ""
            out.append(f"| {r['source']} | `{r['file']}` | {r['start_s']} | {r['score']}{flag} | `{r['key']}` |")
    a = p["audibility"]
    out += ["", f"Audibility: SNR median {a['snr_db']['median']} dB (min {a['snr_db']['min']}), segmental SNR median "
            f"{a['segmental_snr_db']['median']} dB (min {a['segmental_snr_db']['min']}), log-spectral distance median "
            f"{a['log_spectral_distance_db']['median']} dB (max {a['log_spectral_distance_db']['max']}). These are signal "
            "proxies, not a listening test.", "", f"AudioSeal: {p['audioseal']}.", ""]
    return out


OUTLIER_TABLE_HEAD = ("| evaluation | track recall | track FPR | recall by kind | missed | clean tracks flagged | window recall "
                      "(bursts) | window FPR |", "|---|---|---|---|---|---|---|---|")


def _outlier_line(name: str, ev: dict[str, Any]) -> str:
    t, w = ev["track_level"], ev["window_level"]
    w_recall = "n/a" if w["recall"] is None else f"{100 * w['recall']:.1f}%"
    return (f"| {name} | {100 * t['recall']:.1f}% ({t['caught']}/{t['positives']}) | {100 * t['false_positive_rate']:.1f}% "
            f"({len(t['false_positives'])}/{t['negatives']}) | {t['recall_by_kind']} | {', '.join(t['missed']) or 'none'} | "
            f"{', '.join(t['false_positives']) or 'none'} | {w_recall} of {w['positives']} | "
            f"{100 * w['false_positive_rate']:.2f}% of {w['negatives']} |")


def _render_outliers(p: dict[str, Any]) -> list[str]:
    c = p["catalogues"]
    out = ["## Outlier detector", "", f"Protocol: {p['protocol']}.", ""]
    for name, v in c.items():
        out.append(f"- `{name}`: {v['composition']} ({v['ingested_tracks']} tracks ingested, {v['windows']} windows); "
                   f"injected: {v['injections']}.")
    out += ["", f"Chosen on `tune` ({p['grid_points']} grid points): {p['chosen_params']}. Library defaults: "
            f"{p['default_params']}.", "",
            *OUTLIER_TABLE_HEAD,
            _outlier_line("held-out `test`, chosen thresholds", p["held_out_with_chosen"]),
            _outlier_line("held-out `test`, library defaults", p["held_out_with_defaults"]),
            _outlier_line("`tune` (where chosen; not a measurement)", p["tune_with_chosen"]), "",
            "Track threshold on the held-out catalogue, other thresholds as chosen: "
            + "; ".join(f"{s['track_z']}: recall {100 * s['recall']:.0f}%, FPR {100 * s['false_positive_rate']:.1f}%"
                        for s in p["held_out_track_threshold_sweep"]) + ".", "",
            f"![outlier report on the held-out catalogue]({p['picture']})", ""]
    le = p.get("learned_embedding") or {}
    if "held_out_with_chosen" in le:
        out += [f"With a learned embedding (`outliers.embedding={le['embedding']}`: musicnn's MagnaTagATune tagger, "
                "200-D penultimate features averaged over each window's 3 s patches, in place of the MFCC features; "
                "texture and damage checks unchanged), thresholds chosen on `tune` by the same rule: "
                f"{le['chosen_params']}.", "",
                *OUTLIER_TABLE_HEAD,
                _outlier_line(f"held-out `test`, {le['embedding']}, chosen thresholds", le["held_out_with_chosen"]),
                _outlier_line(f"`tune`, {le['embedding']} (where chosen)", le["tune_with_chosen"]), ""]
    elif le:
        out += [f"The learned-embedding comparison ({le['embedding']}) was skipped: its weights are not on this machine "
                "(`stylecraft fetch musicnn`).", ""]
    return out


RENDER = {"watermark": _render_watermark, "outliers": _render_outliers, "badinput": _render_badinput,
          "kills": _render_kills, "pickle": _render_pickle}


if __name__ == "__main__":
    main()
