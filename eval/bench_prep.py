"""Data-preparation throughput on real music: stylecraft's ingest/segment/augment against a plain librosa loop.

What it measures
----------------
Both paths process the same whole audio files (the first ``--max-tracks`` files under ``--music``,
sorted by name) in the same run, and the benchmark reports each path's wall time and its realtime
factor: seconds of input audio processed per second of wall time.

* stylecraft: the library functions ``ingest``, ``segment`` and ``augment`` with the default
  settings of ``IngestConfig``, ``SegmentConfig`` and ``AugmentConfig`` (workers = 0, i.e. all
  cores) on a fresh run folder. Time is taken per stage and includes everything the stages do
  (starting workers, hashing, atomic writes, tempo and key estimation).
* baseline: one process, one file at a time, written the way a librosa user would: sha256 of the
  file, ``librosa.load(sr=32000, mono=True)`` (soxr_hq), ``normalize_gain`` to -16 LUFS, 10 s
  windows every 5 s with windows under -50 dBFS RMS skipped, then per window
  ``librosa.feature.mfcc``, ``power_to_db(melspectrogram)`` and ``|stft|`` (n_fft 1024, hop 512,
  64 mels, 20 MFCCs) and, for windows of training tracks (ingest's split: ``assign_split`` plus
  its rule that two or more tracks fill both splits), ``librosa.effects.pitch_shift`` by -2, -1,
  +1, +2 semitones (soxr_hq) and ``librosa.effects.time_stretch`` at rates 0.9 and 1.1. Audio is saved as int16 and features as
  float16 ``.npy`` files, as stylecraft stores them.

Before timing, both paths run once on a 15 s excerpt so that numba compilation and first-call
costs count for neither, and every input file is read once so both paths find it in the page
cache. Results go to ``eval/results/bench_prep.json`` and ``eval/results/bench_prep.md``.

Without ``--music`` the files come from ``eval/data/wesnoth``; when that folder is missing it is
filled from the Debian package ``wesnoth-1.16-music`` (41 freely licensed orchestral OGG tracks)
with ``apt-get download`` and ``dpkg-deb -x``.

Usage::

    .venv/bin/python eval/bench_prep.py [--music DIR] [--max-tracks N] [--only stylecraft|baseline]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import inspect
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("STYLECRAFT_PROGRESS", "0")  # no progress bars inside timed regions

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from report_tools import machine_info, machine_lines, table_head, versions  # noqa: E402

from stylecraft.artifacts import atomic_write_json, atomic_write_text  # noqa: E402
from stylecraft.audio.loudness import normalize_gain  # noqa: E402
from stylecraft.config import AugmentConfig, IngestConfig, SegmentConfig  # noqa: E402
from stylecraft.data.augment import augment  # noqa: E402
from stylecraft.data.ingest import assign_split, ingest  # noqa: E402
from stylecraft.data.manifest import Track, load_rows  # noqa: E402
from stylecraft.data.segment import segment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MUSIC = REPO / "eval" / "data" / "wesnoth"
RESULTS = REPO / "eval" / "results"
PACKAGE = "wesnoth-1.16-music"
WARMUP_S = 15.0
TARGET_RATIO = 3.0


class BenchError(Exception):
    """A problem that ends the benchmark with a one-line message."""


# --------------------------------------------------------------------------------------- inputs


def fetch_wesnoth(dest: Path) -> None:
    """Fill ``dest`` with the OGG files of the Debian package ``wesnoth-1.16-music``."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise BenchError(f"cannot fetch {PACKAGE}: '{tool}' is not installed; pass --music DIR instead")
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching {PACKAGE} into {dest} (apt-get download + dpkg-deb) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix=".wesnoth-", dir=dest.parent) as tmp:
        work = Path(tmp)

        def download() -> subprocess.CompletedProcess[str]:
            return subprocess.run(["apt-get", "download", PACKAGE], cwd=work, capture_output=True, text=True)

        res = download()
        if res.returncode != 0:  # package lists may be missing or stale: refresh once and retry
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            res = download()
        debs = sorted(work.glob("*.deb"))
        if res.returncode != 0 or not debs:
            why = (res.stderr or res.stdout).strip().splitlines()
            raise BenchError(
                f"cannot fetch {PACKAGE} with apt-get download: {why[-1] if why else 'no .deb produced'}; "
                "pass --music DIR instead"
            )
        root = work / "root"
        res = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], capture_output=True, text=True)
        if res.returncode != 0:
            raise BenchError(f"cannot unpack {debs[0].name}: {res.stderr.strip() or 'dpkg-deb failed'}")
        by_dir: dict[Path, int] = defaultdict(int)
        for p in root.rglob("*.ogg"):
            by_dir[p.parent] += 1
        if not by_dir:
            raise BenchError(f"{debs[0].name} holds no .ogg files; pass --music DIR instead")
        music = max(by_dir, key=lambda d: by_dir[d])
        os.replace(music, dest)


def list_audio(folder: Path, extensions: list[str], limit: int) -> list[Path]:
    """The first ``limit`` audio files under ``folder`` (recursively), sorted by relative path."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")
    ]
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    return files[:limit]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_warmup_clip(files: list[Path], folder: Path) -> Path:
    """A WARMUP_S excerpt from the middle of the longest input file, as WAV."""
    longest = max(files, key=lambda p: sf.info(str(p)).duration)
    info = sf.info(str(longest))
    n = int(WARMUP_S * info.samplerate)
    start = max(0, (info.frames - n) // 2)
    audio, sr = sf.read(str(longest), start=start, frames=n, dtype="float32", always_2d=True)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "warmup.wav"
    sf.write(str(out), audio, sr, subtype="PCM_16")
    return out


# --------------------------------------------------------------------------------------- timing


class Clock:
    """Accumulates wall time per named phase."""

    def __init__(self) -> None:
        self.times: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] += time.perf_counter() - t0


def _busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _live_descendants_cpu_s() -> float:
    """CPU seconds of this process's live descendants (worker pools that outlive a stage)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    me, total = os.getpid(), 0
    for pid in parent:
        p, seen = parent[pid], 0
        while p > 1 and seen < 64:
            if p == me:
                total += ticks[pid]
                break
            p, seen = parent.get(p, 0), seen + 1
    return total / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and all its children, finished or still running."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    live = _live_descendants_cpu_s() if Path("/proc/self/stat").exists() else 0.0
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + live


class OtherCpu:
    """CPU time used by other processes on the machine during a block: contention from outside."""

    def __enter__(self) -> OtherCpu:
        self.busy0, self.own0 = _busy_cpu_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.busy1, self.own1 = _busy_cpu_s(), _own_cpu_s()

    def result(self, wall_s: float) -> dict[str, float]:
        own = self.own1 - self.own0
        if self.busy0 is None or self.busy1 is None:
            return {"own_cpu_s": round(own, 2), "other_cpu_s": float("nan"), "other_cpu_share": 0.0}
        other = max(0.0, (self.busy1 - self.busy0) - own)
        capacity = wall_s * (os.cpu_count() or 1)
        return {
            "own_cpu_s": round(own, 2),
            "other_cpu_s": round(other, 2),
            "other_cpu_share": round(other / capacity, 4),
        }


# --------------------------------------------------------------------------------------- stylecraft


def run_stylecraft(files: list[Path], work: Path, *, valid_fraction: float | None = None) -> dict[str, Any]:
    """ingest -> segment -> augment with default settings on a fresh run folder under ``work``."""
    catalogue = work / "catalogue"
    run_dir = work / "run"
    catalogue.mkdir(parents=True)
    for i, f in enumerate(files):
        (catalogue / f"{i:03d}_{f.name}").symlink_to(f.resolve())
    ing = dataclasses.asdict(IngestConfig())
    if valid_fraction is not None:
        ing["valid_fraction"] = valid_fraction
    seg = dataclasses.asdict(SegmentConfig())
    aug = dataclasses.asdict(AugmentConfig())
    clock = Clock()
    stage_cpu: dict[str, float] = {}
    accepted = inspect.signature(ingest).parameters
    with clock("ingest"), OtherCpu() as cpu:
        tracks, rejects = ingest(catalogue, run_dir, **{k: v for k, v in ing.items() if k in accepted})
    stage_cpu["ingest"] = cpu.result(1.0)["own_cpu_s"]
    with clock("segment"), OtherCpu() as cpu:
        windows = segment(run_dir, seg, artist="wesnoth")
    stage_cpu["segment"] = cpu.result(1.0)["own_cpu_s"]
    with clock("augment"), OtherCpu() as cpu:
        variants = augment(run_dir, aug, seg["sample_rate"])
    stage_cpu["augment"] = cpu.result(1.0)["own_cpu_s"]
    shutdown_pool()
    names = {t.id: Path(t.path).name.split("_", 1)[1] for t in load_rows(run_dir / "tracks.jsonl", Track)}
    per_track = {
        name: {
            "split": next(t.split for t in tracks if t.id == tid),
            "windows": sum(w.track_id == tid for w in windows),
            "variants": sum(v.track_id == tid for v in variants),
        }
        for tid, name in names.items()
    }
    return {
        "stage_s": dict(clock.times),
        "stage_cpu_s": stage_cpu,
        "wall_s": sum(clock.times.values()),
        "tracks": len(tracks),
        "rejects": len(rejects),
        "windows": len(windows),
        "train_windows": sum(w.split == "train" for w in windows),
        "variants": len(variants),
        "per_track": per_track,
    }


def shutdown_pool() -> None:
    """Stop stylecraft's shared worker pool, where it keeps one, so it does not idle through the baseline."""
    try:
        from stylecraft import parallel
    except ImportError:
        return
    parallel.shutdown()


def _worker_ready() -> int:
    return os.getpid()


def worker_startup_s() -> float:
    """Wall time to start one spawned worker process, what STYLECRAFT_POOL=process pays per worker (imports included)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    t0 = time.perf_counter()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(_worker_ready).result()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------- baseline


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def baseline_splits(ids: list[str], valid_fraction: float, seed: int) -> list[str]:
    """``assign_split`` per track, plus ingest's rule that two or more tracks fill both splits
    (the track with the smallest id moves to the empty side), so both paths do the same work."""
    splits = [assign_split(t, valid_fraction, seed) for t in ids]
    if len(ids) >= 2 and valid_fraction > 0 and len(set(splits)) == 1:
        pick = ids.index(min(ids))
        splits[pick] = "valid" if splits[pick] == "train" else "train"
    return splits


def baseline_track(path: Path, track_id: str, split: str, out: Path, clock: Clock) -> dict[str, Any]:
    """One file the plain librosa way; returns its counts."""
    seg = SegmentConfig()
    aug = AugmentConfig()
    sr = seg.sample_rate
    with clock("load+resample"):
        y, _ = librosa.load(path, sr=sr, mono=True)
    with clock("loudness"):
        y, _ = normalize_gain(y, sr, seg.loudness_lufs)
    with clock("save"):
        np.save(out / f"{track_id}.audio.npy", to_int16(y))

    win = int(round(seg.window_s * sr))
    hop = int(round(seg.hop_s * sr))
    feats: dict[str, list[np.ndarray]] = defaultdict(list)
    variants: dict[str, list[np.ndarray]] = defaultdict(list)
    n_windows = n_variants = 0
    for start in range(0, len(y) - win + 1, hop):
        w = y[start : start + win]
        if 20 * np.log10(np.sqrt(np.mean(w**2)) + 1e-12) < seg.silence_db:
            continue
        n_windows += 1
        with clock("features"):
            feats["mfcc"].append(
                librosa.feature.mfcc(
                    y=w,
                    sr=sr,
                    n_mfcc=seg.n_mfcc,
                    n_fft=seg.n_fft,
                    hop_length=seg.hop_length,
                    n_mels=seg.n_mels,
                ).astype(np.float16)
            )
            mel = librosa.feature.melspectrogram(
                y=w, sr=sr, n_fft=seg.n_fft, hop_length=seg.hop_length, n_mels=seg.n_mels
            )
            feats["logmel"].append(librosa.power_to_db(mel).astype(np.float16))
            feats["stft"].append(
                np.abs(librosa.stft(w, n_fft=seg.n_fft, hop_length=seg.hop_length)).astype(np.float16)
            )
        if split != "train":
            continue
        with clock("pitch_shift"):
            for s in aug.pitch_semitones:
                variants["pitch"].append(
                    to_int16(librosa.effects.pitch_shift(w, sr=sr, n_steps=s, res_type="soxr_hq"))
                )
                n_variants += 1
        with clock("time_stretch"):
            for r in aug.stretch_rates:
                variants[f"stretch{r:g}"].append(to_int16(librosa.effects.time_stretch(w, rate=r)))
                n_variants += 1
    with clock("save"):
        for name, rows in {**feats, **variants}.items():
            np.save(out / f"{track_id}.{name}.npy", np.stack(rows))
    return {"split": split, "windows": n_windows, "variants": n_variants}


def run_baseline(files: list[Path], out: Path, *, force_split: str | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    ing = IngestConfig()
    clock = Clock()
    per_file = {}
    t0 = time.perf_counter()
    with clock("sha256"):  # all ids first: the split rule needs every track's id
        ids = [sha256_of(f)[:16] for f in files]
    splits = (
        [force_split] * len(files)
        if force_split
        else baseline_splits(ids, ing.valid_fraction, ing.split_seed)
    )
    for f, tid, split in zip(files, ids, splits, strict=True):
        per_file[f.name] = baseline_track(f, tid, split, out, clock)
    wall = time.perf_counter() - t0
    return {
        "stage_s": dict(clock.times),
        "wall_s": wall,
        "tracks": len(files),
        "windows": sum(r["windows"] for r in per_file.values()),
        "train_windows": sum(r["windows"] for r in per_file.values() if r["split"] == "train"),
        "variants": sum(r["variants"] for r in per_file.values()),
        "per_track": per_file,
    }


# --------------------------------------------------------------------------------------- report


SOURCES = (
    "data/ingest.py",
    "data/segment.py",
    "data/augment.py",
    "data/features.py",
    "audio/io.py",
    "audio/loudness.py",
    "artifacts.py",
    "parallel.py",
)


def source_hashes() -> dict[str, str]:
    """Short sha256 of the stylecraft modules the timed stages run, to tie figures to code."""
    import stylecraft

    root = Path(stylecraft.__file__).parent
    return {rel: sha256_of(root / rel)[:12] if (root / rel).exists() else "missing" for rel in SOURCES}


def markdown(res: dict[str, Any]) -> str:
    m, v = res["machine"], res["versions"]
    lines = [
        "# Data-preparation throughput: stylecraft vs a plain librosa loop",
        "",
        f"Date: {res['date']}  ",
        *machine_lines(m, v),
        "",
        f"Input: {res['input']['files']} files from `{res['input']['folder']}` (first {res['input']['max_tracks']} "
        f"by name, whole tracks), {res['input']['audio_min']:.2f} min of audio "
        f"({'/'.join(map(str, res['input']['sample_rates']))} Hz, "
        f"{'/'.join(map(str, res['input']['channels']))} channel(s)).",
        "",
        "stylecraft sources (sha256, 12 hex): "
        + ", ".join(f"`{k}` {v}" for k, v in res["stylecraft_sources"].items()),
        "",
        "Realtime factor = seconds of input audio / seconds of wall time. Both paths were warmed up on a "
        f"{WARMUP_S:.0f} s excerpt first, so numba compilation and first-call costs are excluded; stylecraft's "
        "times include starting its workers. Input files were read once before timing (page cache warm). "
        "Own CPU s counts this process and its worker processes; other procs' CPU s is what the rest of the "
        "machine used meanwhile (contention). The baseline is one process, but librosa's STFT-based features "
        "run on more than one thread.",
        "",
        *table_head(["path", "wall s", "realtime x", "own CPU s", "other procs' CPU s", "windows", "train windows",
                     "variants"], align="lrrrrrrr"),
    ]
    for name in ("stylecraft", "baseline"):
        r = res.get(name)
        if r:
            lines.append(
                f"| {name} | {r['wall_s']:.1f} | {r['realtime_factor']:.1f} | {r['own_cpu_s']:.1f} | {r['other_cpu_s']:.1f} "
                f"| {r['windows']} | {r['train_windows']} | {r['variants']} |"
            )
    if res.get("ratio") is not None:
        verdict = "meets" if res["ratio"] >= TARGET_RATIO else "misses"
        lines += [
            "",
            f"**stylecraft / baseline realtime factor: {res['ratio']:.2f}x** ({verdict} the {TARGET_RATIO:g}x target).",
            "",
            f"CPU time for the same work, baseline / stylecraft: {res['cpu_ratio']:.2f}x (above 1: stylecraft needs "
            "less CPU; unlike wall time this barely depends on the core count or on other load).",
        ]
    for name in ("stylecraft", "baseline"):
        r = res.get(name)
        if r:
            cpu = r.get("stage_cpu_s", {})
            lines += [
                "",
                f"Per-stage time, {name}" + (f" (worker pool: {r['pool']})" if "pool" in r else "") + ":",
                "",
                "| stage | wall s | share | CPU s |" if cpu else "| stage | wall s | share |",
                "|---|---:|---:|---:|" if cpu else "|---|---:|---:|",
            ]
            total = r["wall_s"]
            for k, s in r["stage_s"].items():
                row = f"| {k} | {s:.2f} | {100 * s / total:.0f}% |"
                lines.append(row + (f" {cpu[k]:.2f} |" if cpu else ""))
            if "worker_startup_s" in r:
                lines += [
                    "",
                    f"For reference, one spawned worker process takes {r['worker_startup_s']:.2f} s to start "
                    "(imports included): what each worker of a process pool pays.",
                ]
    if res.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def print_table(res: dict[str, Any]) -> None:
    print()
    print(
        f"{'path':<12}{'wall s':>10}{'realtime x':>12}{'own CPU s':>11}{'other CPU s':>13}"
        f"{'windows':>10}{'train win':>11}{'variants':>10}"
    )
    for name in ("stylecraft", "baseline"):
        r = res.get(name)
        if r:
            print(
                f"{name:<12}{r['wall_s']:>10.1f}{r['realtime_factor']:>12.1f}{r['own_cpu_s']:>11.1f}"
                f"{r['other_cpu_s']:>13.1f}{r['windows']:>10}"
                f"{r['train_windows']:>11}{r['variants']:>10}"
            )
    if res.get("ratio") is not None:
        print(f"ratio stylecraft/baseline: {res['ratio']:.2f}x (target >= {TARGET_RATIO:g}x)")
        print(f"CPU-time ratio baseline/stylecraft (same work): {res['cpu_ratio']:.2f}x")
    if res.get("stylecraft"):
        sc = res["stylecraft"]
        print("stylecraft stage CPU: " + ", ".join(f"{k} {s:.2f}s" for k, s in sc["stage_cpu_s"].items()))
        print(
            f"start-up of one spawned worker process (what a process pool pays per worker): {sc['worker_startup_s']:.2f}s"
        )
    for name in ("stylecraft", "baseline"):
        r = res.get(name)
        if r:
            print(f"{name} stages: " + ", ".join(f"{k} {s:.2f}s" for k, s in r["stage_s"].items()))
    for n in res.get("notes", []):
        print(f"note: {n}")


# --------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--music", type=Path, default=None, help=f"folder of audio files (default: {DEFAULT_MUSIC})"
    )
    ap.add_argument(
        "--max-tracks", type=int, default=8, help="use the first N files sorted by name (default 8)"
    )
    ap.add_argument(
        "--only", choices=("both", "stylecraft", "baseline"), default="both", help="which path(s) to time"
    )
    ap.add_argument("--no-write", action="store_true", help="print only; leave eval/results untouched")
    args = ap.parse_args(argv)
    if args.max_tracks < 1:
        print("error: --max-tracks must be at least 1", file=sys.stderr)
        return 2

    try:
        if args.music is not None:
            music = args.music.expanduser().resolve()
            if not music.is_dir():
                raise BenchError(f"--music '{music}' is not a folder")
        else:
            music = DEFAULT_MUSIC
            if not music.is_dir():
                fetch_wesnoth(music)
        files = list_audio(music, IngestConfig().extensions, args.max_tracks)
        if not files:
            raise BenchError(f"no audio files under '{music}'")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    infos = [sf.info(str(f)) for f in files]
    audio_s = sum(i.duration for i in infos)
    print(f"{len(files)} files, {audio_s / 60:.2f} min of audio from {music}")
    for f, i in zip(files, infos, strict=True):
        print(f"  {f.name:<40} {i.duration:8.1f} s  {i.samplerate} Hz  {i.channels} ch")
    for f in files:  # page cache: both paths find the files already read
        sha256_of(f)

    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "input": {
            "folder": str(music),
            "max_tracks": args.max_tracks,
            "files": len(files),
            "names": [f.name for f in files],
            "audio_s": round(audio_s, 3),
            "audio_min": round(audio_s / 60, 3),
            "sample_rates": sorted({i.samplerate for i in infos}),
            "channels": sorted({i.channels for i in infos}),
        },
        "settings": {
            "ingest": dataclasses.asdict(IngestConfig()),
            "segment": dataclasses.asdict(SegmentConfig()),
            "augment": dataclasses.asdict(AugmentConfig()),
            "warmup_s": WARMUP_S,
        },
        "notes": [],
        "stylecraft_sources": source_hashes(),
    }

    with tempfile.TemporaryDirectory(prefix="bench_prep-") as tmp:
        tmpdir = Path(tmp)
        clip = write_warmup_clip(files, tmpdir / "warmup_in")
        print(
            f"warm-up on a {WARMUP_S:.0f} s excerpt (numba/JIT and first-call costs excluded from timings) ...",
            flush=True,
        )
        t0 = time.perf_counter()
        if args.only in ("both", "stylecraft"):
            run_stylecraft([clip], tmpdir / "warmup_sc", valid_fraction=0.0)
        if args.only in ("both", "baseline"):
            run_baseline([clip], tmpdir / "warmup_bl", force_split="train")
        print(f"warm-up done in {time.perf_counter() - t0:.1f} s", flush=True)

        def timed(name: str, what: str, run: Any) -> dict[str, Any]:
            print(f"timing {name} ({what}) ...", flush=True)
            with OtherCpu() as other:
                out = run(files, tmpdir / name)
            out.update(other.result(out["wall_s"]))
            out["realtime_factor"] = audio_s / out["wall_s"]
            print(f"  {name}: {out['wall_s']:.1f} s, {out['realtime_factor']:.1f}x realtime", flush=True)
            return out

        if args.only in ("both", "stylecraft"):
            res["stylecraft"] = timed("stylecraft", "ingest, segment, augment", run_stylecraft)
            res["stylecraft"]["worker_startup_s"] = round(worker_startup_s(), 2)
            res["stylecraft"]["pool"] = os.environ.get("STYLECRAFT_POOL", "thread")
        if args.only in ("both", "baseline"):
            res["baseline"] = timed("baseline", "plain librosa loop, one process", run_baseline)

    if source_hashes() != res["stylecraft_sources"]:
        res["notes"].append(
            "stylecraft source files changed during the run: rerun for figures tied to one version"
        )
    for name in ("stylecraft", "baseline"):
        r = res.get(name)
        if r and r["other_cpu_share"] > 0.05:
            res["notes"].append(
                f"other processes used {r['other_cpu_s']:.1f} CPU-s ({100 * r['other_cpu_share']:.0f}% of the "
                f"machine's capacity) while {name} was timed: its figures are pessimistic"
            )
    sc, bl = res.get("stylecraft"), res.get("baseline")
    res["ratio"] = round(sc["realtime_factor"] / bl["realtime_factor"], 3) if sc and bl else None
    if sc and bl:
        for key in ("windows", "train_windows", "variants"):
            if sc[key] != bl[key]:
                res["notes"].append(f"{key} differ: stylecraft {sc[key]} vs baseline {bl[key]}")
        differ = sorted(n for n, r in sc["per_track"].items() if bl["per_track"].get(n) != r)
        if differ:
            res["notes"].append("per-track split, window or variant counts differ for " + ", ".join(differ))
        res["cpu_ratio"] = round(bl["own_cpu_s"] / sc["own_cpu_s"], 3)
        if not differ and all(sc[k] == bl[k] for k in ("windows", "train_windows", "variants")):
            res["notes"].append("window, train-window and variant counts match on both paths, track by track")
    res["notes"].append(
        "stylecraft also estimates tempo and key per track in segment and decodes every file twice "
        "(ingest and segment); the baseline does neither"
    )
    res["notes"].append(
        "baseline time_stretch variants are librosa's (length window/rate); stylecraft's stretch variants "
        "keep the window length by stretching a source span of window*rate samples"
    )
    print_table(res)

    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        atomic_write_json(RESULTS / "bench_prep.json", res)
        atomic_write_text(RESULTS / "bench_prep.md", markdown(res))
        print(f"wrote {RESULTS / 'bench_prep.json'} and {RESULTS / 'bench_prep.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
