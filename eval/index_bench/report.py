"""Tables of ``bench_index.json`` as Markdown (``python eval/index_bench/report.py JSON``).

Parts run side by side are saved under section names with a suffix (``copies-10s``); every
section whose name starts with a known one is rendered.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from audio import DISTORTIONS  # type: ignore[import-not-found]

DUR = (5, 10, 30)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def copies_table(sections: list[dict[str, Any]]) -> str:
    cells: dict[str, Any] = {}
    for s in sections:
        cells.update(s)
    names = sorted({n for c in cells.values() for n in c})
    lines = ["| excerpt | matcher | " + " | ".join(DISTORTIONS) + " |", "|---|---|" + "---|" * len(DISTORTIONS)]
    for d in DUR:
        for n in names:
            row = []
            for k in DISTORTIONS:
                c = cells.get(f"{d}s/{k}", {}).get(n)
                row.append("–" if c is None else f"{_pct(c['recall'])} ({c['hits']}/{c['trials']})")
            if any(r != "–" for r in row):
                lines.append(f"| {d} s | {n} | " + " | ".join(row) + " |")
    lines += ["", "Offset error of the hits (median / 99th percentile / max, ms; hits more than 0.1 s off):", "",
              "| excerpt | matcher | " + " | ".join(DISTORTIONS) + " |", "|---|---|" + "---|" * len(DISTORTIONS)]
    for d in DUR:
        for n in names:
            row = []
            for k in DISTORTIONS:
                c = cells.get(f"{d}s/{k}", {}).get(n)
                if c is None or c["offset_err_median_s"] is None:
                    row.append("–")
                else:
                    row.append(f"{1000 * c['offset_err_median_s']:.0f} / {1000 * c['offset_err_p99_s']:.0f} / "
                               f"{1000 * c['offset_err_max_s']:.0f} ({c['offset_err_over_0.1s']})")
            if any(r != "–" for r in row):
                lines.append(f"| {d} s | {n} | " + " | ".join(row) + " |")
    lines += ["", "Aligned hashes of the trials (5th percentile / median):", "",
              "| excerpt | matcher | " + " | ".join(DISTORTIONS) + " |", "|---|---|" + "---|" * len(DISTORTIONS)]
    for d in DUR:
        for n in names:
            row = []
            for k in DISTORTIONS:
                c = cells.get(f"{d}s/{k}", {}).get(n)
                row.append("–" if c is None else f"{c['aligned_p05']:.0f} / {c['aligned_median']:.0f}")
            if any(r != "–" for r in row):
                lines.append(f"| {d} s | {n} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def false_table(f: dict[str, Any]) -> str:
    names = [n for n in f if isinstance(f[n], dict) and "whole_false" in f[n]]
    lines = [f"Never-indexed music: {f['whole_tracks']} whole tracks, {f['whole_minutes']:.0f} min.", "",
             "| matcher | whole tracks: false | largest aligned (top 5) | " +
             " | ".join(f"{d} s excerpts: false / n, largest aligned" for d in DUR) + " |", "|---|---|---|" + "---|" * len(DUR)]
    for n in names:
        ex = f["excerpts"].get(n, {})
        cols = [f"{len(ex[f'{d}s']['false'])} / {ex[f'{d}s']['n']}, {ex[f'{d}s']['aligned_max']}" if f"{d}s" in ex else "–"
                for d in DUR]
        lines.append(f"| {n} | {len(f[n]['whole_false'])} | {f[n]['whole_aligned_top5']} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def chroma_table(c: dict[str, Any]) -> str:
    names = [k for k in next(iter(c["cells"].values())) if not k.startswith("chromaprint_ber")]
    lines = [f"{c['fpcalc']}; {c['tracks']} indexed tracks, whole, under each distortion; BER threshold {c['ber_threshold']}.", "",
             "| distortion | " + " | ".join(names) + " | Chromaprint BER median / max |", "|---|" + "---|" * (len(names) + 1)]
    for k, v in c["cells"].items():
        lines.append(f"| {k} | " + " | ".join(_pct(v[n]) for n in names) +
                     f" | {v['chromaprint_ber_median']:.3f} / {v['chromaprint_ber_max']:.3f} |")
    ni = c["never_indexed"]
    lines += ["", f"Never-indexed whole tracks ({ni['tracks']}): Chromaprint false matches {ni['false_matches']}, "
              f"lowest BER {ni['lowest_ber']:.3f} (1st percentile {ni['ber_p01']:.3f})."]
    return "\n".join(lines)


def main() -> None:
    data = json.loads(open(sys.argv[1]).read())
    copies = [v for k, v in sorted(data.items()) if k.startswith("copies")]
    if copies:
        print("## Copy detection\n\n" + copies_table(copies) + "\n")
    for k, v in sorted(data.items()):
        if k.startswith("false"):
            print(f"## False matches ({k})\n\n" + false_table(v) + "\n")
        if k.startswith("chromaprint") and v:
            print(f"## Chromaprint ({k})\n\n" + chroma_table(v) + "\n")


if __name__ == "__main__":
    main()
