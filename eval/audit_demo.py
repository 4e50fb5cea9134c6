"""Audit demonstration on real music: two Debian game soundtracks, held-out tracks attributed.

Soundtracks (Debian archive, free licences), unpacked under ``eval/data``:

* Wesnoth (``wesnoth-1.16-music``, OGG, orchestral), from ``$WESNOTH_MUSIC`` or
  ``eval/data/wesnoth``;
* Drascula: The Vampire Strikes Back (``drascula-music``, OGG), from ``eval/data/drascula``
  (``apt-get download drascula-music && dpkg-deb -x drascula-music_*.deb eval/data/drascula``);
* Colobot (``colobot-common-sounds``, ``music/*.ogg``) and Warzone 2100 (``warzone2100-music``,
  Opus, without the ``*_enhanced`` remasters), as ``eval/reliability.py`` unpacks them into
  ``eval/data/colobot-music`` and ``eval/data/warzone2100-music``.

The first audit, and the default, is Wesnoth against Drascula. Its held-out results were seen
while the attribution method was developed, so a second pair is kept as a clean test:
``--pair colobot warzone2100``, the two other soundtracks here with at least 20 tracks of 40 s or
more, fixed before it was first run; the method and all its parameters are the same for both.

Tracks of at least 40 s are sorted by name; every fifth is held out as a candidate and the rest
form each soundtrack's reference. One more candidate is a 30 s excerpt of a *reference* track of
the pair's first soundtrack at -6 dB with a little noise added, to show the memorisation check
(it is not counted in the attribution score). Embedding: ``mfcc`` by default (weights-free);
``--embedding musicnn-mtt`` runs the same audit on the learned musicnn embedding (``stylecraft
fetch musicnn``; VGGish and CLAP weights cannot be downloaded on this machine). Tracks are
scaled to -23 LUFS before embedding (the audit's default), so mastering level does not decide
attribution.

Three attributions are counted per held-out track: the closest reference by per-track FAD to the
whole soundtrack (``closest``), the window classifier alone (``classifier_closest``), and the
audit's attribution (``attributed``): the window classifier and the nearest-track FAD combined
with weights fitted by track-grouped cross-validation on the *reference* tracks only (the
held-out split is fixed by name above and plays no part in any choice). The split and the
method's parameters were not tuned on the held-out tracks.

Usage::

    python eval/audit_demo.py   # eval/results/audit_demo.{json,md}, audit_demo_report.png
    python eval/audit_demo.py --embedding musicnn-mtt   # eval/results/audit_demo-musicnn-mtt.*
    python eval/audit_demo.py --pair colobot warzone2100   # eval/results/audit_demo-colobot-warzone2100.*
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
from stylecraft.artifacts import atomic_path, atomic_write_json, atomic_write_text  # noqa: E402
from stylecraft.evaluate.audit import AuditSettings, audit_json, run_audit  # noqa: E402
from stylecraft.evaluate.audit.report import write_report  # noqa: E402

RESULTS = ROOT / "eval" / "results"
WORK = ROOT / "eval" / ".cache" / "audit_demo"
SOURCES = {
    "wesnoth": [Path(os.environ.get("WESNOTH_MUSIC", "/work/main/eval/data/wesnoth")), ROOT / "eval" / "data" / "wesnoth"],
    "drascula": [ROOT / "eval" / "data" / "drascula" / "usr" / "share" / "scummvm" / "drascula" / "audio",
                 ROOT / "eval" / "data" / "drascula-music"],
    "colobot": [ROOT / "eval" / "data" / "colobot-music"],
    "warzone2100": [ROOT / "eval" / "data" / "warzone2100-music"],
}
DEFAULT_PAIR = ("wesnoth", "drascula")
MIN_S = 40.0


def tracks(name: str) -> list[Path]:
    for d in SOURCES[name]:
        files = sorted(f for f in d.glob("*") if f.suffix in (".ogg", ".opus") and not f.stem.endswith("_enhanced"))
        if files:
            return [f for f in files if sf.info(str(f)).duration >= MIN_S]
    raise SystemExit(f"{name} soundtrack not found in {SOURCES[name]}; see this script's docstring")


def split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    held = files[2::5]
    return [f for f in files if f not in held], held


def link_all(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f)


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embedding", default="mfcc", help="embedding of the audit (default: mfcc, weights-free)")
    ap.add_argument("--pair", nargs=2, default=list(DEFAULT_PAIR), choices=sorted(SOURCES), metavar="SOUNDTRACK",
                    help=f"the two soundtracks (default: {' '.join(DEFAULT_PAIR)}; of {', '.join(sorted(SOURCES))})")
    args = ap.parse_args()
    embedding, pair = args.embedding, tuple(args.pair)
    if pair[0] == pair[1]:
        raise SystemExit("--pair needs two different soundtracks")
    stem = "audit_demo" + ("" if pair == DEFAULT_PAIR else f"-{pair[0]}-{pair[1]}") + ("" if embedding == "mfcc" else f"-{embedding}")
    work = WORK.with_name(stem)
    if work.exists():
        shutil.rmtree(work)
    refs: dict[str, Path] = {}
    truth: dict[str, str] = {}
    cands = work / "candidates"
    for name in pair:
        ref_files, held = split(tracks(name))
        link_all(ref_files, work / "references" / name)
        refs[name] = work / "references" / name
        for f in held:
            dst = cands / f"{name}__{f.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(f)
            truth[str(dst)] = name
    # A near-copy of a reference track of the first soundtrack: 30 s from 40 s in, -6 dB, noise at -50 dBFS.
    src = sorted(refs[pair[0]].iterdir())[3]
    audio, sr = sf.read(src, dtype="float32", always_2d=True)
    excerpt = audio[int(40 * sr) : int(70 * sr)] * 0.5
    excerpt += np.random.default_rng(0).normal(scale=0.003, size=excerpt.shape).astype(np.float32)
    copy = cands / f"copy__{src.stem}_40s.wav"
    with atomic_path(copy) as tmp:
        sf.write(tmp, excerpt, sr)

    record = run_audit(refs, [cands], AuditSettings(embedding=embedding, n_boot=100, workers=2), cache_dir=work / "cache")
    held_rows = [c for c in record["candidates"] if c["path"] in truth]
    correct = [c for c in held_rows if c["closest"] == truth[c["path"]]]
    clf_correct = [c for c in held_rows if c["classifier_closest"] == truth[c["path"]]]
    att_correct = [c for c in held_rows if c["attributed"] == truth[c["path"]]]
    copy_row = next(c for c in record["candidates"] if c["path"] == str(copy))
    false_copies = [c["path"] for c in held_rows if c["memorization"]["near_copy"]]
    summary = {
        "held_out": len(held_rows),
        "attributed_to_own_soundtrack": len(att_correct),
        "closest_fad_to_own_soundtrack": len(correct),
        "attribution_method": record["attribution"],
        "misattributed": [Path(c["path"]).name for c in held_rows if c not in att_correct],
        "classifier_attributed_to_own_soundtrack": len(clf_correct),
        "reference_tracks": {n: len(record["references"][n]["files"]) for n in refs},
        "copy_candidate": {"path": copy.name, "source": src.name, "source_offset_s": 40.0,
                           "near_copy": copy_row["memorization"]["near_copy"],
                           "fingerprint": copy_row["memorization"]["fingerprint"]},
        "held_out_flagged_as_copies": false_copies,
    }
    out = {"summary": summary, "truth": {Path(k).name: v for k, v in truth.items()}, "audit": audit_json(record)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / f"{stem}.json", out)

    report = write_report(record, work / "report.html")
    shot = RESULTS / f"{stem}_report.png"
    chromium = shutil.which("chromium")
    if chromium:
        with tempfile.TemporaryDirectory() as profile, atomic_path(shot) as tmp:
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", f"--screenshot={tmp}", "--window-size=1200,2400",
                            report.as_uri()], check=True, capture_output=True, timeout=180)

    lines = [
        "# Style audit on two real soundtracks",
        "",
        f"References: {', '.join(f'{n} ({k} tracks)' for n, k in summary['reference_tracks'].items())}; "
        f"embedding {embedding} on audio scaled to -23 LUFS; every fifth track (≥ 40 s, by name) held out.",
        "",
        f"**Held-out tracks attributed to their own soundtrack: {len(att_correct)} of {len(held_rows)}** "
        "(window classifier + nearest-track FAD, calibrated by grouped CV on the reference tracks); "
        f"closest per-track FAD to the whole soundtrack alone: {len(correct)} of {len(held_rows)}; "
        f"window classifier alone: {len(clf_correct)} of {len(held_rows)}.",
        "",
        f"Out-of-fold on the reference tracks: {record['attribution']['cv_correct']} of {record['attribution']['cv_tracks']} "
        f"(log loss {record['attribution']['cv_log_loss']:.3f}); fitted weights "
        + ", ".join(f"{k} {v:.2f}" for k, v in record["attribution"]["weights"].items()) + ".",
        "",
        f"| candidate | truth | FAD to {pair[0]} | FAD to {pair[1]} | closest | bootstrap | nearest-track FAD {pair[0]} / {pair[1]} | classifier P(truth) | attributed | P(truth) | near-copy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in record["candidates"]:
        t = truth.get(c["path"], f"copy of {pair[0]}")
        own = truth.get(c["path"], pair[0])
        att = c["attribution"]
        nt = att["nearest_track_fad"]
        lines.append(f"| {Path(c['path']).name} | {t} | {c['scores'][pair[0]]:.2f} | {c['scores'][pair[1]]:.2f} | "
                     f"{c['closest']} | {c['confidence']['bootstrap']:.0%} | {nt[pair[0]]:.0f} / {nt[pair[1]]:.0f} | "
                     f"{att['classifier'][own]:.0%} | {c['attributed']} | {att['probabilities'][own]:.0%} | "
                     f"{'yes' if c['memorization']['near_copy'] else 'no'} |")
    fp = summary["copy_candidate"]["fingerprint"]
    lines += [
        "",
        f"Near-copy check: `{copy.name}` (30 s of reference track {src.name} from 40 s, -6 dB, noise added) is "
        f"{'flagged' if summary['copy_candidate']['near_copy'] else 'NOT flagged'}: fingerprint match "
        f"{Path(fp['reference']).name if fp['reference'] else '-'} at offset {fp['offset_s']:.2f} s, "
        f"{fp['aligned']} of {fp['n_hashes']} hashes aligned. Held-out tracks flagged as copies: {len(false_copies)}.",
        "",
        f"Report screenshot (headless Chromium): `{stem}_report.png`.",
        "",
    ]
    atomic_write_text(RESULTS / f"{stem}.md", "\n".join(lines))
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
