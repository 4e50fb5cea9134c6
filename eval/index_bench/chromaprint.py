"""Chromaprint (``fpcalc -raw``, Debian's libchromaprint-tools) on the case it is built for: a whole
track, distorted, looked up among whole indexed tracks; and the index on the same queries.

Matching: the bit error rate (BER) between two raw prints at the best shift within ``MAX_SHIFT``
items (~0.12 s each); a query is called a duplicate of the indexed track with the lowest BER when
that BER is below ``BER_THRESHOLD`` (fixed before the run). Never-indexed whole tracks give the
false-match side, and the lowest BER any of them reaches.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from typing import Any

import numpy as np
import soundfile as sf

from index_bench.audio import DISTORTIONS, SR, AudioCache, Track, distort
from index_bench.copies import Matchers

MAX_SHIFT = 16
BER_THRESHOLD = 0.35


def fpcalc_version() -> str | None:
    if shutil.which("fpcalc") is None:
        return None
    return subprocess.run(["fpcalc", "-v"], capture_output=True, text=True).stdout.strip()


def fpcalc(x: np.ndarray) -> np.ndarray:
    """The raw print of ``x`` (fpcalc's default: its first 120 s)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        sf.write(tmp.name, np.clip(x, -1, 1), SR, subtype="PCM_16")
        # fpcalc 1.5.1 exits 3 after "Error decoding audio frame (End of file)" at the end of
        # every WAV, with the full print already written: the print is what counts.
        res = subprocess.run(["fpcalc", "-raw", tmp.name], capture_output=True, text=True)
    line = next((s for s in res.stdout.splitlines() if s.startswith("FINGERPRINT=")), None)
    if line is None:
        raise RuntimeError(f"fpcalc gave no fingerprint: {res.stderr.strip()}")
    return np.array([int(v) for v in line.split("=", 1)[1].split(",") if v], dtype=np.int64).astype(np.uint32)


def best_ber(q: np.ndarray, refs: list[np.ndarray]) -> tuple[int, float]:
    """``(index of the reference with the lowest BER, that BER)``."""
    best, arg = 1.0, -1
    for k, r in enumerate(refs):
        for s in range(-MAX_SHIFT, MAX_SHIFT + 1):
            a, b = (q[s:], r) if s >= 0 else (q, r[-s:])
            n = min(a.size, b.size)
            if n < 40:
                continue
            ber = float(np.bitwise_count(a[:n] ^ b[:n]).sum()) / (32 * n)
            if ber < best:
                best, arg = ber, k
    return arg, best


def _fit(other: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of another track (repeated when it is shorter), from a random start."""
    start = int(rng.integers(0, max(1, other.size - n))) if other.size > n else 0
    return np.resize(np.asarray(other[start:], np.float32), n)


def whole_track_trials(m: Matchers, cache: AudioCache, indexed: list[Track], others: list[Track], n: int, seed: int,
                       log: Any = print) -> dict[str, Any]:
    """``n`` indexed tracks under every distortion, and every never-indexed track, whole."""
    refs = [fpcalc(np.asarray(cache.get(t.path))) for t in indexed]
    rng = np.random.default_rng([seed, 7])
    chosen = [indexed[int(i)] for i in rng.choice(len(indexed), size=min(n, len(indexed)), replace=False)]
    out: dict[str, Any] = {"fpcalc": fpcalc_version(), "ber_threshold": BER_THRESHOLD, "tracks": len(chosen), "cells": {}}
    for k, kind in enumerate(DISTORTIONS):
        krng = np.random.default_rng([seed, 8, k])
        hits = {"chromaprint": 0}
        bers = []
        for t in chosen:
            a = np.asarray(cache.get(t.path), np.float32)
            x = distort(a, kind, _fit(cache.get(others[int(krng.integers(len(others)))].path), a.size, krng), krng)
            arg, ber = best_ber(fpcalc(x), refs)
            bers.append(ber)
            hits["chromaprint"] += int(indexed[arg].path == t.path and ber < BER_THRESHOLD)
            for name, v in m.verdicts(x).items():
                hits[name] = hits.get(name, 0) + int(v["copy"] and v["reference"] == t.path)
        out["cells"][kind] = {name: h / len(chosen) for name, h in hits.items()}
        out["cells"][kind]["chromaprint_ber_median"] = float(np.median(bers))
        out["cells"][kind]["chromaprint_ber_max"] = float(np.max(bers))
        log(f"whole track {kind}: {out['cells'][kind]}")
    neg = [best_ber(fpcalc(np.asarray(cache.get(t.path))), refs)[1] for t in others]
    out["never_indexed"] = {"tracks": len(others), "false_matches": int(np.sum(np.array(neg) < BER_THRESHOLD)),
                            "lowest_ber": float(np.min(neg)), "ber_p01": float(np.quantile(neg, 0.01))}
    log(f"chromaprint never-indexed: {out['never_indexed']}")
    return out
