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

The sections live in ``eval/reliability_sections/``, one module per thing measured; this script
runs the ones asked for and writes the report.

Usage::

    .venv/bin/python eval/reliability.py [--only watermark,outliers,...] [--music DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("STYLECRAFT_PROGRESS", "0")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "eval"))
sys.path.insert(0, str(ROOT / "tests"))

from reliability_sections import badinput, kills, outliers, pickles, watermark  # noqa: E402
from reliability_sections.common import PARTS  # noqa: E402
from reliability_sections.report import targets as _targets  # noqa: E402, F401
from reliability_sections.report import write_report  # noqa: E402
from reliability_sections.sources import SOURCE_FILE, _source_info, _unpack_deb_audio, audio_files  # noqa: E402, F401
from reliability_sections.watermark import _cp_upper  # noqa: E402, F401

# _targets, _render_kills and the imports marked F401: section helpers under the names that
# tests/eval/test_reliability.py reads them by.
_render_kills = kills.render

SECTIONS = ("badinput", "kills", "pickle", "outliers", "watermark")
SECTION_FUNCS = {
    "badinput": badinput.measure,
    "kills": kills.measure,
    "pickle": pickles.measure,
    "watermark": watermark.measure,
    "outliers": outliers.measure,
}


def _save_part(name: str, data: dict[str, Any]) -> None:
    from stylecraft.artifacts import atomic_write_json

    atomic_write_json(PARTS / f"{name}.json", data)


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


if __name__ == "__main__":
    main()
