"""Benchmark of the catalogue index (issue: a label's catalogue, indexed once).

Measures, in one run on this machine:

* build throughput (x realtime) of ``build_index`` on real music (Debian soundtracks given with
  ``--index-packages``), ``--workers`` files at once;
* copy detection on real music: excerpts of 5, 10 and 30 s of indexed tracks, at -6 dB, then
  clean, with noise at 20 and 10 dB SNR, through MP3 at 64 kbit/s (lameenc), mixed *under*
  another (never indexed) track 10 dB below it, and with another track mixed under the excerpt
  10 dB below it: recall (right track) and offset error, for the index (``match_postings`` and
  the audit's thresholds) and for the in-memory matcher of ``evaluate.fingerprint`` (its
  ``FingerprintIndex`` and its thresholds);
* false matches over whole tracks of the packages never indexed (``--other-packages``);
* Chromaprint (``fpcalc -raw``) on the whole-track duplicate case it is built for, with the same
  distortions, matched by the lowest bit error rate over offsets;
* audit latency of one 3-minute candidate (its embedding excluded) against the real index
  padded with synthetic tracks to ``--scales`` tracks (synthetic rows: real tracks' segment
  embeddings with a per-track offset, and landmark hashes drawn from the real hash distribution).

Usage:
    nice -n 10 .venv/bin/python eval/bench_index.py --data /work/main/eval/data/debian \\
        --index-packages wesnoth-1.16-music colobot-common-sounds --other-packages drascula-music warzone2100-music
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from stylecraft.audio.io import resample
from stylecraft.evaluate.fad import list_audio_files
from stylecraft.evaluate.fingerprint import FRAME_S, FingerprintIndex, landmarks
from stylecraft.index.build import build_index
from stylecraft.index.copies import match_postings
from stylecraft.index.query import IndexAuditSettings, IndexReader, audit_candidate
from stylecraft.index.store import open_store

SR = 22050
DISTORTIONS = ("gain", "noise20", "noise10", "mp3", "mix_under", "mix_over")


def _load(path: str | Path) -> np.ndarray:
    a, sr = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(resample(a.mean(1), sr, SR) if sr != SR else a.mean(1), dtype=np.float32)


def _music_files(root: Path, packages: list[str], min_s: float) -> list[Path]:
    out = []
    for p in packages:
        for f in list_audio_files(root / p):
            try:
                info = sf.info(str(f))
            except Exception:
                continue
            if info.frames / info.samplerate >= min_s:
                out.append(f)
    return out


def _mp3(x: np.ndarray) -> np.ndarray:
    import lameenc

    enc = lameenc.Encoder()
    enc.set_bit_rate(64)
    enc.set_in_sample_rate(SR)
    enc.set_channels(1)
    enc.set_quality(2)
    data = enc.encode((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()) + enc.flush()
    y, _ = sf.read(io.BytesIO(data), dtype="float32")
    return y[: x.size] if y.size >= x.size else np.pad(y, (0, x.size - y.size))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def distort(x: np.ndarray, kind: str, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The excerpt at -6 dB, then the distortion ``kind``."""
    x = x * 0.5
    if kind.startswith("noise"):
        snr = float(kind[5:])
        return x + rng.normal(size=x.size).astype(np.float32) * _rms(x) / 10 ** (snr / 20)
    if kind == "mp3":
        return _mp3(x)
    if kind in ("mix_under", "mix_over"):
        s = int(rng.integers(0, max(1, other.size - x.size)))
        o = other[s : s + x.size]
        o = np.pad(o, (0, x.size - o.size))
        if kind == "mix_under":  # the excerpt 10 dB below the other track
            return (o * (_rms(x) / _rms(o)) + x * 10 ** (-10 / 20)).astype(np.float32)
        return (x + o * (_rms(x) / _rms(o)) * 10 ** (-10 / 20)).astype(np.float32)
    return x


def bench_build(db: Path, refs: dict[str, Path], workers: int) -> dict:
    rep = build_index(str(db), refs, workers=workers, progress=False)
    return {"tracks": rep.added, "rejected": rep.rejected, "audio_min": rep.audio_s / 60, "wall_s": rep.wall_s,
            "x_realtime": rep.audio_s / rep.wall_s, "workers": workers}


def _index_match(reader: IndexReader, x: np.ndarray, cfg: IndexAuditSettings):
    h, t = landmarks(x, SR, **reader.settings.fingerprint())
    with reader.store.read():
        m = match_postings(reader.store, h, t, reader.paths)
    return m.reference if m.is_copy(cfg.copy_min_aligned, cfg.copy_min_fraction) else None, m.offset_s


def bench_recall(reader: IndexReader, mem: FingerprintIndex, ref_audio: dict[str, np.ndarray], others: list[np.ndarray],
                 trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    cfg = IndexAuditSettings()
    paths = list(ref_audio)
    out: dict[str, dict] = {}
    for dur in (5, 10, 30):
        for kind in DISTORTIONS:
            res = {"index": [0, []], "in_memory": [0, []]}
            long_enough = [q for q in paths if ref_audio[q].size > dur * SR]
            for k in range(trials):
                p = long_enough[k % len(long_enough)]
                a = ref_audio[p]
                start = int(rng.integers(0, a.size - dur * SR))
                x = distort(a[start : start + dur * SR], kind, others[int(rng.integers(len(others)))], rng)
                ref, off = _index_match(reader, x, cfg)
                if ref == p:
                    res["index"][0] += 1
                    res["index"][1].append(abs(off - start / SR))
                m = mem.match(x, SR)
                if m.is_copy() and m.reference == p:
                    res["in_memory"][0] += 1
                    res["in_memory"][1].append(abs(m.offset_s - start / SR))
            out[f"{dur}s/{kind}"] = {
                name: {"recall": hits / trials, "hits": hits, "trials": trials,
                       "offset_err_median_s": float(np.median(errs)) if errs else None,
                       "offset_err_max_s": float(np.max(errs)) if errs else None}
                for name, (hits, errs) in res.items()
            }
            print(dur, kind, {n: v["recall"] for n, v in out[f"{dur}s/{kind}"].items()}, flush=True)
    return out


def bench_false(reader: IndexReader, mem: FingerprintIndex, other_files: list[Path]) -> dict:
    cfg = IndexAuditSettings()
    minutes, fa_idx, fa_mem, worst = 0.0, 0, 0, 0
    for f in other_files:
        x = _load(f)
        minutes += x.size / SR / 60
        h, t = landmarks(x, SR, **reader.settings.fingerprint())
        with reader.store.read():
            m = match_postings(reader.store, h, t, reader.paths)
        worst = max(worst, m.aligned)
        fa_idx += int(m.is_copy(cfg.copy_min_aligned, cfg.copy_min_fraction))
        fa_mem += int(mem.match(x, SR).is_copy())
    return {"tracks": len(other_files), "minutes": minutes, "false_matches_index": fa_idx, "false_matches_in_memory": fa_mem,
            "largest_aligned_index": worst}


def _fpcalc(x: np.ndarray) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        sf.write(tmp.name, x, SR)
        out = subprocess.run(["fpcalc", "-raw", "-length", "7200", tmp.name], capture_output=True, text=True, check=True).stdout
    line = next(s for s in out.splitlines() if s.startswith("FINGERPRINT="))
    return np.array([int(v) for v in line.split("=", 1)[1].split(",") if v], dtype=np.int64).astype(np.uint32)


def _ber(a: np.ndarray, b: np.ndarray, max_shift: int = 40) -> float:
    best = 1.0
    for s in range(-max_shift, max_shift + 1):
        x, y = (a[s:], b) if s >= 0 else (a, b[-s:])
        n = min(x.size, y.size)
        if n < 20:
            continue
        bits = np.unpackbits((x[:n] ^ y[:n]).view(np.uint8)).sum()
        best = min(best, bits / (32 * n))
    return float(best)


def bench_chromaprint(ref_audio: dict[str, np.ndarray], others: list[np.ndarray], reader: IndexReader, mem: FingerprintIndex,
                      n: int, seed: int) -> dict | None:
    if shutil.which("fpcalc") is None:
        return None
    rng = np.random.default_rng(seed)
    cfg = IndexAuditSettings()
    paths = list(ref_audio)[:n]
    prints = {p: _fpcalc(ref_audio[p]) for p in paths}
    out = {}
    for kind in DISTORTIONS:
        hits = {"chromaprint": 0, "index": 0, "in_memory": 0}
        for p in paths:
            x = distort(ref_audio[p], kind, others[int(rng.integers(len(others)))], rng)
            fp = _fpcalc(x)
            bers = {q: _ber(fp, prints[q]) for q in paths}
            best = min(bers, key=lambda q: bers[q])
            hits["chromaprint"] += int(best == p and bers[best] < 0.35)
            hits["index"] += int(_index_match(reader, x, cfg)[0] == p)
            m = mem.match(x, SR)
            hits["in_memory"] += int(m.is_copy() and m.reference == p)
        out[kind] = {k: v / len(paths) for k, v in hits.items()} | {"tracks": len(paths)}
        print("whole", kind, out[kind], flush=True)
    return out


def pad_with_synthetic(src_db: Path, dst_db: Path, n_tracks: int, per_artist: int, seed: int) -> float:
    """Copy the real index and add synthetic tracks until it holds ``n_tracks`` (returns seconds taken)."""
    from stylecraft.index.codec import pack, unpack
    from stylecraft.index.gaussians import sums_of_rows

    t0 = time.perf_counter()
    shutil.copy(src_db, dst_db)
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(dst_db)
    real = conn.execute("SELECT te.n_rows, te.dim, te.segments, t.duration_s FROM track_embeddings te JOIN tracks t ON t.id = te.track_id").fetchall()
    pool = np.array([r[0] for r in conn.execute("SELECT hash FROM fingerprints")], dtype=np.int64)
    have = conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
    next_id = conn.execute("SELECT MAX(id) FROM tracks").fetchone()[0] + 1
    d = int(real[0][1])
    conn.execute("BEGIN")
    fp_rows: list[tuple[int, int]] = []
    for k in range(n_tracks - have):
        n, _, seg, dur = real[k % len(real)]
        rows = unpack(seg, "float32", (int(n), d)) + rng.normal(scale=0.5, size=(1, d)).astype(np.float32)
        artist = f"synthetic-{k // per_artist:05d}"
        aid = conn.execute("SELECT id FROM artists WHERE name = ?", (artist,)).fetchone()
        aid = aid[0] if aid else conn.execute("INSERT INTO artists (name) VALUES (?) RETURNING id", (artist,)).fetchone()[0]
        tid = next_id + k
        n_h = int(80 * dur)
        conn.execute("INSERT INTO tracks (id, artist_id, path, sha256, duration_s, n_hashes, profile) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (tid, aid, f"synthetic/{tid}.flac", f"synthetic-{tid}", dur, n_h, "{}"))
        mu, cov = rows.astype(np.float64).mean(0), np.cov(rows.astype(np.float64), rowvar=False)
        conn.execute("INSERT INTO track_embeddings VALUES (?, 'mfcc', ?, ?, ?, ?, ?, ?)",
                     (tid, int(n), d, pack(mu, "float64"), pack(cov, "float64"), float(np.trace(cov)), pack(rows, "float32")))
        cnt, s, ss = sums_of_rows(rows)
        old = conn.execute("SELECT n_tracks, n_rows, row_sum, outer_sum FROM artist_embeddings WHERE artist_id = ?", (aid,)).fetchone()
        if old:
            conn.execute("UPDATE artist_embeddings SET n_tracks=?, n_rows=?, row_sum=?, outer_sum=? WHERE artist_id=?",
                         (old[0] + 1, old[1] + cnt, pack(unpack(old[2], "float64", (d,)) + s, "float64"),
                          pack(unpack(old[3], "float64", (d, d)) + ss, "float64"), aid))
        else:
            conn.execute("INSERT INTO artist_embeddings VALUES (?, 'mfcc', 1, ?, ?, ?)", (aid, cnt, pack(s, "float64"), pack(ss, "float64")))
        hashes = rng.choice(pool, size=n_h)
        frames = np.sort(rng.integers(0, int(dur / FRAME_S), size=n_h))
        fp_rows += list(zip(hashes.tolist(), ((tid << 20) | frames).tolist(), strict=True))
    fp_rows.sort()
    conn.executemany("INSERT OR IGNORE INTO fingerprints VALUES (?, ?)", fp_rows)
    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
    conn.commit()
    conn.close()
    return time.perf_counter() - t0


def bench_latency(db: Path, candidate: np.ndarray, reps: int, mem_max_tracks: int) -> dict:
    from stylecraft.evaluate.frechet import gaussian_stats

    reader = IndexReader(str(db))
    reader.model = None if reader.model is not None and set(reader.model.artists) != set(reader.table.artists) else reader.model
    cfg = IndexAuditSettings(n_boot=100)
    rows = np.asarray(reader.emb_model.embed(candidate, SR), dtype=np.float64)
    gaussian_stats(rows)
    times = []
    with reader.store.read():
        reader.counts = dict(reader.store.query("SELECT track_id, n_rows FROM track_embeddings"))
        reader.durations = dict(reader.store.query("SELECT id, duration_s FROM tracks"))
        for _ in range(reps):
            t0 = time.perf_counter()
            audit_candidate(reader, candidate, SR, rows, cfg, np.random.default_rng(0))
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        h, t = landmarks(candidate, SR, **reader.settings.fingerprint())
        match_postings(reader.store, h, t, reader.paths)
        fp_s = time.perf_counter() - t0
    out = {"tracks": int(len(reader.table.ids)), "artists": len(reader.table.artists), "attribution_model": reader.model is not None,
           "audit_s_median": float(np.median(times)), "audit_s_all": times, "copy_check_s": fp_s,
           "postings": int(open_store(str(db)).scalar("SELECT COUNT(*) FROM fingerprints"))}
    reader.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--index-packages", nargs="+", required=True)
    ap.add_argument("--other-packages", nargs="+", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--whole", type=int, default=20, help="tracks in the whole-track duplicate trials")
    ap.add_argument("--scales", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_index")
    ap.add_argument("--out", type=Path, default=Path("eval/results/bench_index.json"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    db = args.work / "real.db"
    for f in args.work.glob("*.db*"):
        f.unlink()
    result: dict = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": __import__("os").cpu_count()},
                    "settings": vars(args) | {"data": str(args.data), "work": str(args.work), "out": str(args.out)}}
    refs = {p: args.data / p for p in args.index_packages}
    result["build"] = bench_build(db, refs, args.workers)
    print("build", result["build"], flush=True)
    reader = IndexReader(str(db))
    ref_audio = {p: _load(p) for p in reader.paths.values()}
    mem = FingerprintIndex()
    for p, a in ref_audio.items():
        mem.add(p, a, SR)
    other_files = _music_files(args.data, args.other_packages, 45.0)
    others = [_load(f) for f in other_files[:12]]
    result["recall"] = bench_recall(reader, mem, ref_audio, others, args.trials, seed=1)
    result["false_matches"] = bench_false(reader, mem, other_files)
    print("false", result["false_matches"], flush=True)
    result["whole_track"] = bench_chromaprint(ref_audio, others, reader, mem, args.whole, seed=2)
    reader.close()
    cand_src = max(ref_audio.values(), key=lambda a: a.size)
    candidate = distort(cand_src[: 180 * SR], "noise20", others[0], np.random.default_rng(3))
    result["latency"] = {"real": bench_latency(db, candidate, 3, 0)}
    t0 = time.perf_counter()
    mem.match(candidate, SR)
    result["latency"]["in_memory_match_s_real"] = time.perf_counter() - t0
    for n in args.scales:
        big = args.work / f"pad{n}.db"
        secs = pad_with_synthetic(db, big, n, 20, seed=n)
        result["latency"][str(n)] = bench_latency(big, candidate, 3, 0) | {"padding_s": secs}
        print("latency", n, result["latency"][str(n)], flush=True)
        big.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: result[k] for k in ("build", "false_matches", "latency")}, indent=1, default=float))


if __name__ == "__main__":
    main()
