"""What ingest's near-duplicate check and analysis captions cost, on real music.

What it measures
----------------
1. **Ingest, three ways, on the same files in the same run** (alternated, ``--reps`` times each, on
   fresh run folders, all cores):

   * ``plain``: ``ingest.near_duplicates=false``, ``captions.mode=artist``: what ingest did before
     either existed (decode every file fully, sha256, peak, loudness);
   * ``+duplicates``: the near-duplicate search on (fingerprints of each file's first five minutes,
     the batched search, splits by group), captions still ``artist``;
   * ``+duplicates +analysis``: the defaults (tempo and key estimated per file for the captions).

   Reported: wall time, the ratio to ``plain``, and the groups found.

2. **The search alone**, on fingerprints of every file under ``--music`` and ``--search-music``:
   stylecraft's batched search (:func:`stylecraft.data.duplicates.near_duplicates`) against the
   all-pairs full-resolution comparison it replaces (the outlier check's
   :func:`stylecraft.data.duplicates.find_duplicates`), on the same fingerprints, for the first
   ``--naive-max`` tracks (all pairs grow with the square of the count), and the batched search
   alone on all of them.

Before timing, one file is ingested once so that numba compilation and first-call costs count for
no configuration, and every file is read once so all runs find it in the page cache. Results go to
``eval/results/bench_ingest.json`` and ``eval/results/bench_ingest.md``.

Usage::

    .venv/bin/python eval/bench_ingest.py --music /path/to/wesnoth-music [--search-music DIR ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("STYLECRAFT_PROGRESS", "0")  # no progress bars inside timed regions

import numpy as np  # noqa: E402

from stylecraft.artifacts import atomic_write_json, atomic_write_text, read_jsonl  # noqa: E402
from stylecraft.audio import AUDIO_EXTENSIONS  # noqa: E402
from stylecraft.data import duplicates as dup  # noqa: E402
from stylecraft.data.captions import CaptionSettings  # noqa: E402
from stylecraft.data.ingest import DuplicateSettings, ingest, inspect_file  # noqa: E402
from stylecraft.parallel import resolve_workers, run_tasks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prep import list_audio  # noqa: E402
from report_tools import machine_info, machine_lines, table_head, versions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "eval" / "results"

CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {"duplicates": DuplicateSettings(enabled=False), "captions": CaptionSettings(mode="artist")},
    "+duplicates": {"duplicates": DuplicateSettings(enabled=True), "captions": CaptionSettings(mode="artist")},
    "+duplicates +analysis": {"duplicates": DuplicateSettings(enabled=True), "captions": CaptionSettings(mode="analysis")},
}


def time_ingest(music: Path, work: Path, config: dict[str, Any]) -> tuple[float, Path]:
    run = work / f"run-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    ingest(music, run, captions=config["captions"], duplicates=config["duplicates"])
    return time.perf_counter() - t0, run


def fingerprints(files: list[Path]) -> dict[str, np.ndarray]:
    """The near-duplicate fingerprint of every file (as ingest computes it), keyed by relative name."""
    out: dict[str, np.ndarray] = {}
    workers = resolve_workers(0, len(files))
    for i, res in run_tasks(inspect_file, [(str(f), 1.0, True, False) for f in files], workers):
        if isinstance(res, dict) and "print" in res:
            out[f"{i:05d}-{files[i].name}"] = res["print"]
    return out


def search_timings(prints: dict[str, np.ndarray], naive_max: int) -> dict[str, Any]:
    ids = sorted(prints)
    small = {k: prints[k] for k in ids[:naive_max]}
    t0 = time.perf_counter()
    fast_small = dup.near_duplicates(small, 0.9)
    t_fast_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_small = dup.find_duplicates({k: v.astype(np.float32) for k, v in small.items()}, 0.9)
    t_naive_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast_all = dup.near_duplicates(prints, 0.9)
    t_fast_all = time.perf_counter() - t0
    naive_pairs = {tuple(sorted(p)) for p in naive_small.items()}
    fast_pairs = {(m.a, m.b) for m in fast_small}
    return {
        "n_small": len(small), "pairs_small": len(small) * (len(small) - 1) // 2,
        "fast_small_s": round(t_fast_small, 3), "naive_small_s": round(t_naive_small, 3),
        "speedup_small": round(t_naive_small / max(t_fast_small, 1e-9), 2),
        # find_duplicates maps each copy to one earlier track: every pair it names must be found too.
        "naive_pairs_found_by_fast": sorted(naive_pairs) == sorted(naive_pairs & fast_pairs),
        "n_all": len(prints), "pairs_all": len(prints) * (len(prints) - 1) // 2, "fast_all_s": round(t_fast_all, 3),
        "minutes_all": round(sum(p.shape[1] for p in prints.values()) / dup.FP_RATE / 60, 1),
        "matches_all": [dataclass_row(m) for m in fast_all],
    }


def dataclass_row(m: dup.DuplicateMatch) -> dict[str, Any]:
    return {"a": m.a, "b": m.b, "corr": m.corr, "offset_s": m.offset_s}


def closest_distinct_pair(prints: dict[str, np.ndarray], groups: list[list[str]]) -> float:
    """Highest full-resolution correlation between two tracks not in one group (the threshold's margin)."""
    same = {frozenset((a, b)) for g in groups for a in g for b in g}
    ids = sorted(prints)
    best = 0.0
    for j, b in enumerate(ids):
        for a in ids[:j]:
            if frozenset((a, b)) not in same:
                best = max(best, dup.max_overlap_corr(prints[a].astype(np.float32), prints[b].astype(np.float32)))
    return best


def markdown(res: dict[str, Any]) -> str:
    m, v = res["machine"], res["versions"]
    lines = [
        "# Ingest: the cost of the near-duplicate check and of analysis captions",
        "",
        f"Date: {res['date']}  ",
        *machine_lines(m, v),
        "",
        f"Input: {res['n_files']} files from `{res['music']}`, {res['minutes']:.1f} min of audio. "
        f"{res['reps']} runs of each configuration, alternated; the table gives the median and the range. "
        "The machine is shared with other work: compare the ratios, measured side by side, rather than the seconds.",
        "",
        *table_head(["configuration", "wall s (median)", "range", "/ plain"], align="lrrr"),
    ]
    base = res["ingest"]["plain"]["median_s"]
    for name, row in res["ingest"].items():
        lines.append(f"| {name} | {row['median_s']:.1f} | {min(row['runs_s']):.1f}-{max(row['runs_s']):.1f} | "
                     f"{row['median_s'] / base:.2f}x |")
    g = res["groups"]
    lines += [
        "",
        f"Near-duplicate groups found: {len(g)}" + (": " + "; ".join(" = ".join(x) for x in g) if g else "") + ". "
        f"Highest full-resolution correlation between two tracks not grouped: {res['closest_distinct_corr']:.3f} "
        "(threshold `ingest.duplicate_corr` = 0.9).",
        "",
        "## The search alone",
        "",
        f"Fingerprints of {res['search']['n_all']} files ({', '.join(res['search_music'])}): "
        f"{res['search']['minutes_all']} min fingerprinted (each file's first {dup.DUPLICATE_S:.0f} s at most).",
        "",
        "| search | tracks | pairs | s |",
        "|---|---:|---:|---:|",
        f"| all pairs at full resolution (`find_duplicates`) | {res['search']['n_small']} | {res['search']['pairs_small']} | "
        f"{res['search']['naive_small_s']:.2f} |",
        f"| batched coarse pass + verification (`near_duplicates`) | {res['search']['n_small']} | "
        f"{res['search']['pairs_small']} | {res['search']['fast_small_s']:.2f} |",
        f"| batched coarse pass + verification (`near_duplicates`) | {res['search']['n_all']} | {res['search']['pairs_all']} | "
        f"{res['search']['fast_all_s']:.2f} |",
        "",
        f"On the same {res['search']['n_small']} tracks the batched search is {res['search']['speedup_small']:.1f}x faster, "
        f"and every pair the all-pairs search finds it finds too: {res['search']['naive_pairs_found_by_fast']}. "
        f"Matches among all {res['search']['n_all']}: {len(res['search']['matches_all'])}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--music", type=Path, required=True, help="folder of real music (e.g. the wesnoth-1.16-music OGG files)")
    ap.add_argument("--max-tracks", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--search-music", type=Path, nargs="*", default=[], help="more folders for the search-only timing")
    ap.add_argument("--naive-max", type=int, default=120, help="tracks the all-pairs search is timed on")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_ingest")
    args = ap.parse_args(argv)
    files = list_audio(args.music, list(AUDIO_EXTENSIONS), args.max_tracks)
    if not files:
        print(f"error: no audio under {args.music}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        music = work / "music"
        music.mkdir()
        for f in files:  # one flat folder of symlinks: the catalogue is exactly these files
            (music / f.relative_to(args.music).as_posix().replace("/", "__")).symlink_to(f.resolve())
        warm = work / "warm"
        warm.mkdir()
        (warm / files[0].name).symlink_to(files[0].resolve())
        for cfg in CONFIGS.values():  # first-call costs (numba, librosa caches) outside the timings
            time_ingest(warm, work, cfg)
        for f in files:
            f.read_bytes()
        runs: dict[str, list[float]] = {name: [] for name in CONFIGS}
        last_run: Path | None = None
        for _ in range(args.reps):
            for name, cfg in CONFIGS.items():
                seconds, last_run = time_ingest(music, work, cfg)
                runs[name].append(round(seconds, 3))
                if name != "+duplicates +analysis":
                    shutil.rmtree(last_run)
        assert last_run is not None
        report = read_jsonl(last_run / "tracks.jsonl")
        groups_json = json.loads((last_run / "duplicates.json").read_text())
        groups = [[Path(t["path"]).name for t in g["tracks"]] for g in groups_json["groups"]]
        minutes = sum(r["duration_s"] for r in report) / 60
        prints_main = fingerprints(files)
        id_groups = [[k for k in prints_main if k.split("-", 1)[1] in {n.split("__")[-1] for n in g}] for g in groups]
        closest = closest_distinct_pair(prints_main, id_groups)
        extra = [f for d in args.search_music for f in list_audio(d, list(AUDIO_EXTENSIONS), 10_000)]
        prints_all = {**prints_main, **{f"x{k}": v for k, v in fingerprints(extra).items()}} if extra else prints_main
        search = search_timings(prints_all, args.naive_max)
    res = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "music": str(args.music), "n_files": len(files), "minutes": round(minutes, 2), "reps": args.reps,
        "ingest": {name: {"runs_s": r, "median_s": float(np.median(r))} for name, r in runs.items()},
        "captions_example": sorted({r["caption"] for r in report})[:5],
        "groups": groups, "closest_distinct_corr": round(closest, 4),
        "search_music": [str(args.music), *map(str, args.search_music)], "search": search,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), res)
    atomic_write_text(args.out.with_suffix(".md"), markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
