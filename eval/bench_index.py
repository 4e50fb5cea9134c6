"""Benchmark of the catalogue index (a label's catalogue, indexed once).

Measures, in one run on this machine, on real music only (soundtrack folders of music files):

* ``build``: throughput (x realtime) of ``build_index`` over the ``--index`` folders, ``--workers``
  files at once (each folder is one artist);
* ``copies``: excerpts of 5, 10 and 30 s of indexed tracks at -6 dB, then clean, with noise at
  20 and 10 dB SNR, through MP3 at 64 kbit/s, mixed 10 dB *under* a never-indexed track, and with
  a never-indexed track mixed 10 dB under them: recall and offset error per cell, for the index
  (the audit's thresholds) and for the first in-memory matcher (``index_bench.fingerprint_v0``);
* ``false``: near-copy verdicts on the never-indexed ``--others`` folders: every whole track,
  and excerpts of each length;
* ``chromaprint``: ``fpcalc`` on whole-track duplicates (the same distortions), the index on the
  same queries, and Chromaprint's lowest bit error rate on the never-indexed tracks;
* ``latency``: audit latency of one 3-minute candidate (its embedding excluded) against the real
  index and against it padded with synthetic tracks to each ``--scales`` size; the in-memory
  matchers on the same candidate;
* ``vectors``: nearest-segment search at ``--vector-tracks`` tracks' worth of segments: exact
  search against faiss, usearch and sqlite-vec (recall@10, latency).

Sections run in order and each is merged into ``--out`` as soon as it ends, so a run can be done
in parts (``--sections``) against the same ``--work`` folder (the index built by ``build``).

Usage:
    M=/work/main/eval/data/mini
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python eval/bench_index.py \\
        --index $M/corpus/catalogue/{wesnoth,hedgewars,supertux,widelands} \\
        --others $M/corpus/catalogue/{warzone2100,freedroidrpg,flare,megaglest,openclonk,pingus,asc} \\
                 $M/corpus/catalogue/{frozen-bubble,xmoto,lincity-ng,extremetuxracer} $M/test/{colobot,drascula}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_bench.audio import SR, AudioCache, Track, distort, soundtrack_tracks  # noqa: E402
from index_bench.chromaprint import whole_track_trials  # noqa: E402
from index_bench.copies import Matchers, copy_trials, false_matches, legacy_index  # noqa: E402
from index_bench.latency import audit_latency, pad_with_synthetic  # noqa: E402
from index_bench.vectors import vector_search  # noqa: E402

SECTIONS = ("build", "copies", "false", "chromaprint", "latency", "vectors")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict[str, Any]:
    from stylecraft.evaluate.fad import environment_versions

    vers: dict[str, Any] = dict(environment_versions())
    for mod in ("faiss", "usearch", "sqlite_vec", "lameenc"):
        try:
            vers[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            vers[mod] = None
    import sqlite3

    vers["sqlite"] = sqlite3.sqlite_version
    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "processor": platform.processor(), "versions": vers}


def save(out: Path, key: str, value: Any) -> None:
    """Merge one section into the JSON (atomically)."""
    data = json.loads(out.read_text()) if out.is_file() else {}
    data[key] = value
    data.setdefault("load_average", {})[key] = os.getloadavg()
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable))
    tmp.replace(out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(type(v))


def run_build(db: Path, folders: list[Path], workers: int) -> dict[str, Any]:
    from stylecraft.index.build import build_index

    for f in db.parent.glob(db.name + "*"):
        f.unlink()
    load0 = os.getloadavg()
    rep = build_index(str(db), {f.name: f for f in folders}, workers=workers, progress=False)
    return {"tracks": rep.added, "rejected": rep.rejected, "rejects": rep.rejects, "audio_min": rep.audio_s / 60,
            "wall_s": rep.wall_s, "x_realtime": rep.audio_s / rep.wall_s, "workers": workers,
            "load_average_before": load0, "load_average_after": os.getloadavg()}


def candidate_audio(cache: AudioCache, indexed: list[Track], others: list[Track]) -> tuple[np.ndarray, str]:
    """A 3-minute candidate: the first 180 s of the longest indexed track, with noise at 20 dB SNR."""
    src = max(indexed, key=lambda t: t.duration_s)
    a = np.asarray(cache.get(src.path)[: 180 * SR], np.float32)
    return distort(a, "noise20", np.zeros_like(a), np.random.default_rng(3)), src.path


def run_latency(db: Path, work: Path, cache: AudioCache, indexed: list[Track], others: list[Track], scales: list[int],
                full_scales: list[int], legacy: Any) -> dict[str, Any]:
    from stylecraft.evaluate.audit.fingerprint import FingerprintIndex, landmarks

    cand, src = candidate_audio(cache, indexed, others)
    out: dict[str, Any] = {"candidate": f"first 180 s of {src}, noise 20 dB SNR", "real": audit_latency(db, cand, SR, 3)}
    log(f"latency real: {out['real']['audit_s_median']:.3f} s")
    c0 = time.process_time()
    legacy.match(cand, SR)
    out["in_memory_v0_match_cpu_s"] = time.process_time() - c0
    today = FingerprintIndex()
    c0 = time.process_time()
    for t in indexed:
        today.add(t.path, np.asarray(cache.get(t.path)), SR)
    out["in_memory_today_build_cpu_s"] = time.process_time() - c0
    c0 = time.process_time()
    today.match(cand, SR)
    out["in_memory_today_match_cpu_s"] = time.process_time() - c0
    del today
    cand_hashes = landmarks(cand, SR)[0]
    for n in scales:
        for kind in ("full", "query") if n in full_scales else ("query",):
            big = work / f"pad{n}-{kind}.db"
            info = pad_with_synthetic(db, big, n, seed=n, candidate=None if kind == "full" else cand_hashes)
            log(f"padded to {n} ({kind}): {info}")
            key = str(n) if kind == "query" else f"{n}-full"
            out[key] = audit_latency(big, cand, SR, 3) | info
            log(f"latency {key}: {out[key]['audit_s_median']:.3f} s wall, {out[key]['audit_cpu_s_median']:.3f} s CPU "
                f"(copy lookup+vote {out[key]['copy_lookup_vote_cpu_s_median']:.3f} s CPU)")
            for f in work.glob(big.name + "*"):
                f.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, nargs="+", required=True, help="soundtrack folders to index (one artist each)")
    ap.add_argument("--others", type=Path, nargs="+", required=True, help="soundtrack folders never indexed")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trials", type=int, nargs=3, default=[100, 100, 100], metavar=("T5", "T10", "T30"),
                    help="trials per cell for 5, 10 and 30 s excerpts (0: that length is not tried)")
    ap.add_argument("--false-excerpts", type=int, default=120, help="never-indexed excerpts per length")
    ap.add_argument("--whole", type=int, default=30, help="indexed tracks in the whole-track duplicate trials")
    ap.add_argument("--scales", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--full-scales", type=int, nargs="*", default=[1000],
                    help="scales also padded with every posting (the others: only those the query reads)")
    ap.add_argument("--vector-tracks", type=int, default=10000)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_index")
    ap.add_argument("--cache", type=Path, default=None, help="decoded-audio cache (default: WORK/audio)")
    ap.add_argument("--out", type=Path, default=Path("eval/results/bench_index.json"))
    ap.add_argument("--key", default="", help="suffix of the section names in --out (parts run side by side)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    db = args.work / "real.db"
    cache = AudioCache(args.cache or args.work / "audio")
    indexed, others = soundtrack_tracks(args.index), soundtrack_tracks(args.others)
    save(args.out, "setup", {"machine": machine(), "command": " ".join(sys.argv),
                             "index": {f.name: sum(t.duration_s for t in indexed if t.soundtrack == f.name) / 60 for f in args.index},
                             "others": {f.name: sum(t.duration_s for t in others if t.soundtrack == f.name) / 60 for f in args.others},
                             "indexed_tracks": len(indexed), "other_tracks": len(others)})
    log(f"{len(indexed)} indexed tracks ({sum(t.duration_s for t in indexed) / 60:.0f} min), "
        f"{len(others)} never indexed ({sum(t.duration_s for t in others) / 60:.0f} min)")
    if "build" in args.sections:
        save(args.out, "build", run_build(db, args.index, args.workers))
        log(f"build: {json.loads(args.out.read_text())['build']['x_realtime']:.1f}x realtime")
    from stylecraft.index.query import IndexAuditSettings, IndexReader

    reader = IndexReader(str(db))
    need_legacy = {"copies", "false", "chromaprint", "latency"} & set(args.sections)
    m = Matchers(reader, IndexAuditSettings(), legacy_index(indexed, cache) if need_legacy else None)
    if "copies" in args.sections:
        save(args.out, "copies" + args.key, copy_trials(m, cache, indexed, others, dict(zip((5, 10, 30), args.trials, strict=True)),
                                             args.seed, log))
    if "false" in args.sections:
        save(args.out, "false" + args.key, false_matches(m, cache, others, args.false_excerpts, args.seed, log))
    if "chromaprint" in args.sections:
        save(args.out, "chromaprint" + args.key, whole_track_trials(m, cache, indexed, others, args.whole, args.seed, log))
    reader.close()
    if "latency" in args.sections:
        save(args.out, "latency" + args.key, run_latency(db, args.work, cache, indexed, others, args.scales, args.full_scales, m.legacy))
    if "vectors" in args.sections:
        reader = IndexReader(str(db))
        cand, _ = candidate_audio(cache, indexed, others)
        rows = np.asarray(reader.emb_model.embed(cand, SR), dtype=np.float32)
        reader.close()
        save(args.out, "vectors" + args.key, vector_search(db, rows, args.vector_tracks, args.work, args.seed, log))
    log("done")


if __name__ == "__main__":
    main()
