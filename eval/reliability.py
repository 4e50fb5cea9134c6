"""Reliability report: bad inputs, killed stages, a malicious checkpoint, the outlier detector and the watermark.

Sections (each writes ``eval/results/reliability/<section>.json``; the report merges whatever
sections exist into ``eval/results/reliability.json`` and ``eval/results/reliability.md``):

* ``badinput``: the bad-input corpus of ``tests/reliability_corpus.py`` through
  ``stylecraft ingest`` and ``stylecraft segment`` (CLI, separate processes): every file must end in
  exactly one of tracks.jsonl / rejects.jsonl, no traceback, exit status 0 only if something usable
  remained; and peak RSS of ingest + segment on a long synthetic file.
* ``kills``: segment, augment and tokenize killed with SIGKILL at random moments and rerun with
  the same command; ``stylecraft verify`` must be clean and outputs equal to an uninterrupted run.
* ``pickle``: a checkpoint whose unpickling would create a marker file, offered to the model
  loader and to training resume; it must be refused and the marker must never appear.
* ``outliers``: known outliers (another artist, noise, corrupted audio, near duplicates, noise
  bursts inside tracks) injected into the real Wesnoth soundtrack; recall and false-positive rate
  of the detector run by the segment stage.
* ``watermark``: detection after MP3/OGG re-encoding, resampling, gain and cropping, false
  positives on unwatermarked real music over many keys and excerpts, and audibility.

Real music comes from ``eval/data/wesnoth`` (or ``--music``), filled from the Debian package
``wesnoth-1.16-music`` when missing; "another artist" from the Debian package ``asc-music``
(``--other``, fetched the same way).

Usage::

    .venv/bin/python eval/reliability.py [--only watermark,outliers,...] [--music DIR] [--other DIR]
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


def _fetch_deb_audio(package: str, dest: Path, pattern: str) -> None:
    """Unpack the audio files of a Debian package into ``dest`` (apt-get download + dpkg-deb)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")], check=True, capture_output=True)
        files = sorted((Path(tmp) / "root").rglob(pattern))
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, dest / f.name)


def music_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    local = ROOT / "eval" / "data" / "wesnoth"
    if not local.exists():
        from bench_prep import fetch_wesnoth

        fetch_wesnoth(local)
    return local


def other_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    local = ROOT / "eval" / "data" / "asc-music"
    if not local.exists():
        _fetch_deb_audio("asc-music", local, "*.mp3")
    return local


def _mono(path: Path, sr: int, max_s: float | None = None) -> np.ndarray:
    info = sf.info(str(path))
    frames = -1 if max_s is None else int(max_s * info.samplerate)
    x, file_sr = sf.read(str(path), dtype="float32", frames=frames, always_2d=True)
    return soxr.resample(x.mean(axis=1), file_sr, sr).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Watermark


def _codec(x: np.ndarray, sr: int, fmt: str, tmp: Path) -> tuple[np.ndarray, int]:
    path = tmp / f"clip.{fmt.lower()}"
    if fmt == "MP3":  # libsndfile's LAME: constant 128 kbit/s at compression level 0.5
        sf.write(str(path), x, sr, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT", compression_level=0.5)
    else:
        sf.write(str(path), x, sr, format="OGG", subtype="VORBIS")
    y, out_sr = sf.read(str(path), dtype="float32")
    return y, out_sr


def _mp3_kbps(tmp: Path, sr: int) -> float:
    x = (0.1 * np.random.default_rng(0).standard_normal(sr * 10)).astype(np.float32)
    _codec(x, sr, "MP3", tmp)
    return round(os.path.getsize(tmp / "clip.mp3") * 8 / 10 / 1000, 1)


def section_watermark(args: argparse.Namespace) -> dict[str, Any]:
    from stylecraft.generate import watermark as wm

    files = sorted(music_dir(args.music).glob("*.ogg"))
    sr = 32000  # MusicGen's rate: where generated files are marked
    rng = np.random.default_rng(1)
    strength = args.strength if args.strength is not None else wm.DEFAULT_STRENGTH
    clip_s = args.clip_s
    attacks = ["none", "mp3-128k", "ogg-vorbis", "resample-16k", "resample-44.1k", "gain-6dB", "gain+6dB-clipped", "crop-5s"]
    hits: dict[str, list[float]] = {a: [] for a in attacks}
    snr, seg_snr, lsd = [], [], []
    wrong_key_scores: list[float] = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        kbps = _mp3_kbps(tmp, sr)
        for f in files:
            x = _mono(f, sr)
            for q in (0.15, 0.35, 0.55, 0.75):
                start = int(q * max(0, x.shape[0] - clip_s * sr))
                clip = x[start : start + int(clip_s * sr)]
                if clip.shape[0] < clip_s * sr or float(np.sqrt(np.mean(clip**2))) < 1e-3:
                    continue  # (near) silent passage: nothing to mark
                key = f"trial-{rng.integers(1 << 62)}"
                y = wm.embed(clip, sr, key, strength)
                w = (y - clip).astype(np.float64)
                snr.append(10 * np.log10(np.sum(clip.astype(np.float64) ** 2) / np.sum(w**2)))
                frames = np.lib.stride_tricks.sliding_window_view(np.arange(clip.shape[0]), 512)[::512]
                s_c = np.sum(clip.astype(np.float64)[frames] ** 2, axis=1)
                s_w = np.sum(w[frames] ** 2, axis=1) + 1e-20
                ok = s_c > 1e-8
                seg_snr.append(float(np.mean(np.clip(10 * np.log10(s_c[ok] / s_w[ok]), -10, 35))))
                spec_c = np.abs(np.fft.rfft(clip.astype(np.float64)[frames] * np.hanning(512), axis=1)) ** 2 + 1e-12
                spec_y = np.abs(np.fft.rfft(y.astype(np.float64)[frames] * np.hanning(512), axis=1)) ** 2 + 1e-12
                lsd.append(float(np.mean(np.sqrt(np.mean((10 * np.log10(spec_c / spec_y)) ** 2, axis=1)))))
                for a in attacks:
                    if a == "none":
                        z, zsr = y, sr
                    elif a == "mp3-128k":
                        z, zsr = _codec(y, sr, "MP3", tmp)
                    elif a == "ogg-vorbis":
                        z, zsr = _codec(y, sr, "OGG", tmp)
                    elif a == "resample-16k":
                        z, zsr = soxr.resample(y, sr, 16000), 16000
                    elif a == "resample-44.1k":
                        z, zsr = soxr.resample(y, sr, 44100), 44100
                    elif a == "gain-6dB":
                        z, zsr = y * 0.5, sr
                    elif a == "gain+6dB-clipped":
                        z, zsr = np.clip(y * 2.0, -1, 1), sr
                    else:  # a 5 s piece starting anywhere (not on a frame boundary)
                        off = int(rng.integers(0, max(1, y.shape[0] - 5 * sr)))
                        z, zsr = y[off : off + 5 * sr], sr
                    hits[a].append(wm.detect(z, zsr, key).score)
                for j in range(3):
                    wrong_key_scores.append(wm.detect(y, sr, f"{key}-wrong-{j}").score)
        # False positives: unwatermarked real music, every 6 s excerpt of every track, many keys.
        fp_scores: list[float] = []
        full_scores: list[float] = []
        for f in files:
            x16 = _mono(f, wm.RATE)
            for j in range(args.fp_keys):
                full_scores.append(wm.detect(x16, wm.RATE, f"fp-full-{j}").score)
            n = int(clip_s * wm.RATE)
            for start in range(0, x16.shape[0] - n + 1, n):
                exc = x16[start : start + n]
                if float(np.sqrt(np.mean(exc**2))) < 1e-3:
                    continue
                for j in range(args.fp_keys):
                    fp_scores.append(wm.detect(exc, wm.RATE, f"fp-{rng.integers(1 << 62)}-{j}").score)
    thr = wm.THRESHOLD

    def rate(v: list[float]) -> float:
        return round(float(np.mean(np.asarray(v) >= thr)), 4) if v else float("nan")

    return {
        "method": wm.METHOD,
        "strength": strength,
        "threshold": thr,
        "clip_s": clip_s,
        "sample_rate": sr,
        "tracks": len(files),
        "clips": len(snr),
        "mp3_measured_kbps": kbps,
        "detection_rate": {a: rate(v) for a, v in hits.items()},
        "score_min": {a: round(float(np.min(v)), 2) for a, v in hits.items() if v},
        "score_median": {a: round(float(np.median(v)), 2) for a, v in hits.items() if v},
        "false_positives": {
            "unmarked_excerpts": {"trials": len(fp_scores), "positives": int(np.sum(np.asarray(fp_scores) >= thr)),
                                  "rate": rate(fp_scores), "max_score": round(float(np.max(fp_scores)), 2),
                                  "p99_9_score": round(float(np.quantile(fp_scores, 0.999)), 2)},
            "unmarked_full_tracks": {"trials": len(full_scores), "positives": int(np.sum(np.asarray(full_scores) >= thr)),
                                     "rate": rate(full_scores), "max_score": round(float(np.max(full_scores)), 2)},
            "marked_wrong_key": {"trials": len(wrong_key_scores), "positives": int(np.sum(np.asarray(wrong_key_scores) >= thr)),
                                 "rate": rate(wrong_key_scores), "max_score": round(float(np.max(wrong_key_scores)), 2)},
        },
        "audibility": {
            "snr_db": {"median": round(float(np.median(snr)), 2), "min": round(float(np.min(snr)), 2)},
            "segmental_snr_db": {"median": round(float(np.median(seg_snr)), 2), "min": round(float(np.min(seg_snr)), 2)},
            "log_spectral_distance_db": {"median": round(float(np.median(lsd)), 3), "max": round(float(np.max(lsd)), 3)},
        },
        "audioseal": "not run: no AudioSeal weights on this machine and no network to fetch them",
        "seconds": round(time.time() - t0, 1),
    }


# ---------------------------------------------------------------------------------------------
# Outliers


def _write(path: Path, x: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1, 1).astype(np.float32), sr, subtype="PCM_16")


def build_injected_catalogue(music: Path, other: Path, out: Path) -> dict[str, Any]:
    """Clean Wesnoth tracks plus known outliers; returns the ground truth by file name."""
    from stylecraft.data.demo import synth_track

    rng = np.random.default_rng(7)
    files = sorted(music.glob("*.ogg"))
    corrupt_src, clean = files[:3], files[3:]
    truth: dict[str, str] = {}
    for f in clean:
        shutil.copy2(f, out / f.name)
        truth[f.name] = "clean"
    sr = 44100
    # Another artist: the asc-music tracks and two tracks of the demo synthesiser.
    for f in sorted(other.glob("*.mp3")):
        shutil.copy2(f, out / f"other-{f.name}")
        truth[f"other-{f.name}"] = "another artist"
    for i in range(2):
        _write(out / f"other-synth-{i}.flac", synth_track(120.0, sr, seed=40 + i, channels=2), sr)
        truth[f"other-synth-{i}.flac"] = "another artist"
    # Noise files.
    n = 90 * sr
    white = rng.standard_normal(n)
    spec = np.fft.rfft(rng.standard_normal(n))
    f_ax = np.maximum(np.arange(spec.shape[0]), 1)
    pink = np.fft.irfft(spec / np.sqrt(f_ax), n)
    brown = np.fft.irfft(spec / f_ax, n)
    for name, x in (("white", white), ("pink", pink), ("brown", brown)):
        _write(out / f"noise-{name}.flac", 0.25 * x / np.max(np.abs(x)), sr)
        truth[f"noise-{name}.flac"] = "noise"
    # Corrupted recordings (of tracks not otherwise in the catalogue).
    a = _mono(corrupt_src[0], sr)
    blocks = a.copy()
    step = int(0.05 * sr)
    for s in range(0, a.shape[0] - step, step):
        if rng.random() < 0.3:  # bit rot: 30% of 50 ms blocks replaced by garbage
            blocks[s : s + step] = rng.uniform(-1, 1, step)
    _write(out / f"corrupt-bitrot-{corrupt_src[0].stem}.flac", blocks, sr)
    b = _mono(corrupt_src[1], sr)
    _write(out / f"corrupt-clipped-{corrupt_src[1].stem}.flac", np.clip(b * 10 ** (30 / 20), -1, 1), sr)
    c = _mono(corrupt_src[2], sr)
    crushed = np.repeat(np.round(c[::11] * 8) / 8, 11)[: c.shape[0]]  # 4 kHz sample-and-hold, 4-bit
    _write(out / f"corrupt-crushed-{corrupt_src[2].stem}.flac", crushed, sr)
    for f in out.glob("corrupt-*"):
        truth[f.name] = "corrupted"
    # Near duplicates of catalogue tracks: an MP3 re-encode, a trimmed quieter copy, a resampled copy.
    dup_src = clean[5], clean[15], clean[25]
    x0 = _mono(dup_src[0], sr)
    sf.write(str(out / f"copy-{dup_src[0].stem}.mp3"), x0, sr, format="MP3", subtype="MPEG_LAYER_III",
             bitrate_mode="CONSTANT", compression_level=0.5)
    x1 = _mono(dup_src[1], sr)
    _write(out / f"copy-{dup_src[1].stem}-trimmed.flac", x1[int(3.3 * sr) :] * 10 ** (-4 / 20), sr)
    x2 = _mono(dup_src[2], 22050)
    _write(out / f"copy-{dup_src[2].stem}-22k.flac", x2, 22050)
    duplicate_of = {f"copy-{dup_src[0].stem}.mp3": dup_src[0].name, f"copy-{dup_src[1].stem}-trimmed.flac": dup_src[1].name,
                    f"copy-{dup_src[2].stem}-22k.flac": dup_src[2].name}
    for name in duplicate_of:
        truth[name] = "near duplicate"
    # Bursts inside real tracks: 15 s of noise, a dropout to digital silence with clicks, a glitch loop.
    bursts: dict[str, list[float]] = {}
    long_enough = [f for f in clean if f not in dup_src and sf.info(str(f)).duration >= 60.0]
    for k, f in enumerate(long_enough[1 :: max(1, len(long_enough) // 4)][:4]):
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


def section_outliers(args: argparse.Namespace) -> dict[str, Any]:
    from stylecraft.artifacts import read_jsonl
    from stylecraft.config import load_recipe
    from stylecraft.pipeline import run_stage

    t0 = time.time()
    # Kept under eval/.cache so a rerun reuses the segmented catalogue (stages skip unchanged work).
    work = ROOT / "eval" / ".cache" / "reliability-outliers"
    cat = work / "catalogue"
    truth_file = work / "truth.json"
    if not truth_file.exists():
        shutil.rmtree(work, ignore_errors=True)
        cat.mkdir(parents=True)
        truth_file.write_text(json.dumps(build_injected_catalogue(music_dir(args.music), other_dir(args.other), cat)))
    gt = json.loads(truth_file.read_text())
    if True:
        truth, bursts = gt["truth"], gt["bursts"]
        run = work / "run"
        cfg = load_recipe(None, [f"catalogue={cat}", f"run_dir={run}", "stages=[ingest,segment]", "ingest.valid_fraction=0.0",
                                 "segment.sample_rate=16000"])
        run_stage("ingest", cfg)
        run_stage("segment", cfg, force=True)  # always re-detect: the detector is what is measured
        tracks = {r["id"]: Path(r["path"]).name for r in read_jsonl(run / "tracks.jsonl")}
        report = json.loads((run / "outliers" / "report.json").read_text())
        windows = read_jsonl(run / "windows.jsonl")
        flagged = {tracks[t]: why for t, why in report["flagged_tracks"].items()}
        # Track level. A pair of copies counts as caught when either copy is flagged as a duplicate
        # of the other; the original is then neither a positive nor a false positive.
        name_of_id = {v: k for k, v in tracks.items()}
        originals = set(gt["duplicate_of"].values())
        per_kind: dict[str, list[int]] = {}
        fp_names = []
        for name, kind in truth.items():
            if name not in name_of_id:
                continue
            if kind == "near duplicate":
                orig = gt["duplicate_of"][name]
                caught = name in flagged or (orig in flagged and "duplicate" in flagged[orig])
                per_kind.setdefault(kind, []).append(int(caught))
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
        # Window level: windows at least half inside an injected burst, against windows of clean,
        # unflagged tracks that do not touch a burst.
        w_pos, w_neg = [], []
        for w in windows:
            name = tracks[w["track_id"]]
            if truth.get(name) != "clean" or name in flagged:
                continue
            is_flagged = w["id"] in report["flagged_windows"]
            if name in bursts:
                b0, b1 = bursts[name]
                overlap = max(0.0, min(b1, w["start_s"] + w["duration_s"]) - max(b0, w["start_s"]))
                if overlap >= 0.5 * w["duration_s"]:
                    w_pos.append(int(is_flagged))
                    continue
                if overlap > 0:
                    continue
            w_neg.append(int(is_flagged))
        # Sweep of the track threshold (duplicate and noise flags do not depend on it).
        fixed = {tracks[t] for t, why in report["flagged_tracks"].items() if "track score" not in why}
        sweep = []
        pos_names = [n for n, k in truth.items() if k not in ("clean", "near duplicate") and n in name_of_id]
        neg_names = [n for n, k in truth.items() if k == "clean" and n in name_of_id
                     and not (n in originals and "duplicate" in flagged.get(n, ""))]
        for thr in (2.5, 3.0, 3.5, 4.0, 5.0):
            flag = fixed | {tracks[t] for t, z in report["track_scores"].items() if z > thr}
            dups = per_kind.get("near duplicate", [])
            caught = sum(n in flag for n in pos_names) + sum(dups)
            sweep.append({"track_z": thr, "recall": round(caught / (len(pos_names) + len(dups)), 4),
                          "false_positive_rate": round(sum(n in flag for n in neg_names) / len(neg_names), 4)})
        shutil.copy2(run / "outliers" / "report.png", RESULTS / "reliability_outliers.png")
        return {
            "catalogue": {k: sum(1 for v in truth.values() if v == k) for k in sorted(set(truth.values()))},
            "ingested_tracks": len(tracks),
            "windows": len(windows),
            "track_level": {
                "recall": round(float(np.mean(positives)), 4), "positives": len(positives), "caught": int(np.sum(positives)),
                "false_positive_rate": round(float(np.mean(negatives)), 4), "negatives": len(negatives),
                "false_positives": fp_names,
                "recall_by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in per_kind.items() if k != "clean"},
            },
            "window_level": {
                "recall": round(float(np.mean(w_pos)), 4) if w_pos else None, "positives": len(w_pos),
                "false_positive_rate": round(float(np.mean(w_neg)), 4), "negatives": len(w_neg),
            },
            "track_threshold_sweep": sweep,
            "flagged": flagged,
            "settings": {"track_z": cfg.outliers.track_z, "window_z": cfg.outliers.window_z,
                         "duplicate_corr": cfg.outliers.duplicate_corr,
                         "noise_coherence": cfg.outliers.noise_coherence, "window_s": cfg.segment.window_s,
                         "hop_s": cfg.segment.hop_s},
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


def section_kills(args: argparse.Namespace) -> dict[str, Any]:
    trials = []
    for seed in range(args.kill_trials):
        trials += [{"seed": seed, **r} for r in _pytest(["tests/test_kill_resume.py", "-m", ""],
                                                         {"STYLECRAFT_KILL_SEED": str(seed)})]
    trials += [{"seed": "-", **r} for r in _pytest(["tests/train/test_loop.py", "-k", "kill or resume"])]
    return {"trials": trials, "passed": sum(r["outcome"] == "passed" for r in trials), "total": len(trials)}


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
    ap.add_argument("--other", default=None, help="folder of another artist's MP3s (default: eval/data/asc-music)")
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
    write_report()


def write_report() -> None:
    from bench_prep import machine_info, versions

    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    parts = {p.stem: json.loads(p.read_text()) for p in sorted(PARTS.glob("*.json"))}
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
        k = s["kills"]
        out.append(f"- Every kill-and-restart completes with `verify` clean: {verdict(k['passed'] == k['total'])} ({k['passed']}/{k['total']} tests).")
    if "pickle" in s:
        p = s["pickle"]
        out.append(f"- The malicious pickle executes nothing: {verdict(p['passed'] == p['total'])} ({p['passed']}/{p['total']} tests).")
    if "watermark" in s:
        w = s["watermark"]
        d = w["detection_rate"]
        worst = min(d["mp3-128k"], d["resample-16k"], d["resample-44.1k"])
        fp = w["false_positives"]["unmarked_excerpts"]
        out.append(f"- Watermark detection >= 99% after 128 kbit/s MP3 and resampling: {verdict(worst >= 0.99)} "
                   f"(lowest {100 * worst:.2f}% over {w['clips']} clips of {w['clip_s']} s).")
        out.append(f"- False positives <= 0.1% on real music: {verdict(fp['rate'] <= 0.001)} "
                   f"({fp['positives']} of {fp['trials']} unmarked excerpt/key trials).")
    if "outliers" in s:
        t = s["outliers"]["track_level"]
        ok = t["recall"] >= 0.9 and t["false_positive_rate"] <= 0.1
        out.append(f"- Outlier recall >= 90% at <= 10% false positives: {verdict(ok)} (recall {100 * t['recall']:.1f}%, "
                   f"FPR {100 * t['false_positive_rate']:.1f}% at the default thresholds).")
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
        out.append(f"| `{r['test']}` | {r.get('seed', '-')} | {r['outcome']} | {r['seconds']} |")
    return out + [""]


def _render_kills(p: dict[str, Any]) -> list[str]:
    return _render_tests("Kill and rerun", p["trials"],
                         f"{p['passed']} of {p['total']} passed. Each data-stage test kills the stage with SIGKILL at a "
                         "random moment after its first finished unit of work, reruns the same command, and checks outputs "
                         "byte-equal to an uninterrupted run, finished units untouched and `stylecraft verify` clean; "
                         "the training test kills `stylecraft train` and checks an exact resume.")


def _render_pickle(p: dict[str, Any]) -> list[str]:
    return _render_tests("Malicious checkpoints and tampered manifests", p["tests"],
                         f"{p['passed']} of {p['total']} passed. The pickles' `__reduce__` would create a marker file; "
                         "every test asserts the marker never appears.")


def _render_watermark(p: dict[str, Any]) -> list[str]:
    out = ["## Watermark", "",
           f"Method `{p['method']}`, strength {p['strength']}, threshold {p['threshold']}; {p['clips']} clips of {p['clip_s']} s "
           f"from {p['tracks']} real tracks at {p['sample_rate']} Hz, each marked with its own random key. "
           f"MP3 written by libsndfile/LAME at a measured {p['mp3_measured_kbps']} kbit/s.", "",
           "| attack | detected | min score | median score |", "|---|---|---|---|"]
    for a, r in p["detection_rate"].items():
        out.append(f"| {a} | {100 * r:.2f}% | {p['score_min'][a]} | {p['score_median'][a]} |")
    fp = p["false_positives"]
    out += ["", "| false-positive test | trials | positives | rate | max score |", "|---|---|---|---|---|"]
    for k, r in fp.items():
        out.append(f"| {k} | {r['trials']} | {r['positives']} | {100 * r['rate']:.3f}% | {r['max_score']} |")
    a = p["audibility"]
    out += ["", f"Audibility: SNR median {a['snr_db']['median']} dB (min {a['snr_db']['min']}), segmental SNR median "
            f"{a['segmental_snr_db']['median']} dB (min {a['segmental_snr_db']['min']}), log-spectral distance median "
            f"{a['log_spectral_distance_db']['median']} dB (max {a['log_spectral_distance_db']['max']}). These are signal "
            "proxies, not a listening test.", "", f"AudioSeal: {p['audioseal']}.", ""]
    return out


def _render_outliers(p: dict[str, Any]) -> list[str]:
    t, w = p["track_level"], p["window_level"]
    w_recall = "n/a" if w["recall"] is None else f"{100 * w['recall']:.1f}%"
    return ["## Outlier detector", "",
            f"Catalogue: {p['catalogue']} ({p['ingested_tracks']} tracks ingested, {p['windows']} windows of "
            f"{p['settings']['window_s']} s every {p['settings']['hop_s']} s). Settings: {p['settings']}.", "",
            f"Tracks: recall {100 * t['recall']:.1f}% ({t['caught']}/{t['positives']}; by kind {t['recall_by_kind']}), "
            f"false-positive rate {100 * t['false_positive_rate']:.1f}% of {t['negatives']} clean tracks "
            f"(flagged clean: {', '.join(t['false_positives']) or 'none'}).", "",
            f"Windows (15 s noise bursts and glitch loops inside 4 real tracks): recall "
            f"{w_recall} of {w['positives']} windows, false-positive rate "
            f"{100 * w['false_positive_rate']:.2f}% of {w['negatives']} windows of clean, unflagged tracks.", "",
            "Threshold sweep (track_z; the other flags do not depend on it): "
            + "; ".join(f"{s['track_z']}: recall {100 * s['recall']:.0f}%, FPR {100 * s['false_positive_rate']:.1f}%"
                        for s in p["track_threshold_sweep"]) + ".", "",
            "The defaults (track_z 3.5, noise_coherence 0.1) were set while developing against this catalogue, "
            "so these figures are not from held-out data.", "",
            f"![outlier report]({p['picture']})", ""]


RENDER = {"watermark": _render_watermark, "outliers": _render_outliers, "badinput": _render_badinput,
          "kills": _render_kills, "pickle": _render_pickle}


if __name__ == "__main__":
    main()
