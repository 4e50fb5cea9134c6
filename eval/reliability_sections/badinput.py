"""Bad input: the bad-input corpus of tests/reliability_corpus.py through ``stylecraft ingest`` and
``stylecraft segment`` (CLI, separate processes): every file must end in exactly one of tracks.jsonl /
rejects.jsonl, no traceback, exit status 0 only if something usable remained; one-line errors for a
catalogue with nothing usable, bad config values, a missing model and a full disk; and peak RSS of
ingest + segment on long synthetic files."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from report_tools import table_head

from .common import ROOT, verdict


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


def measure(args: argparse.Namespace) -> dict[str, Any]:
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


def render(p: dict[str, Any]) -> list[str]:
    c = p["corpus"]
    out = ["## Bad input", "",
           f"Corpus of {c['files']} files (tests/reliability_corpus.py) through `stylecraft ingest` and `stylecraft segment` "
           f"(separate processes): {c['tracks']} tracks, {c['rejects']} rejects, {len(c['in_both'])} in both, "
           f"{len(c['missing'])} in neither; exit codes ingest {c['ingest_exit']}, segment {c['segment_exit']}; "
           f"{c['tracebacks']} tracebacks; {c['windows']} windows; verify: {c['verify']}.", "",
           *table_head(["file", "case", "expected", "outcome"])]
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
            *table_head(["minutes", "file MiB", "ingest exit", "ingest peak RSS MiB", "segment exit", "segment peak RSS MiB"])]
    for r in p["long_files"]:
        out.append(f"| {r['minutes']} | {r['file_mib']} | {r['ingest_exit']} | {r['ingest_peak_rss_mib']} | "
                   f"{r.get('segment_exit', '-')} | {r.get('segment_peak_rss_mib', '-')} |")
    return out + [""]


def targets(p: dict[str, Any]) -> list[str]:
    c = p["corpus"]
    ok = c["tracebacks"] == 0 and not c["in_both"] and not c["missing"]
    return [f"- Zero tracebacks and zero silently dropped files across the bad-input corpus: {verdict(ok)} "
            f"({c['files']} files, {c['tracebacks']} tracebacks, {len(c['missing'])} dropped, {len(c['in_both'])} in both manifests)."]
