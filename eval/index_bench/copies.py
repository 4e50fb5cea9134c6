"""Copy-detection trials on real music: recall and offset error per (excerpt length, distortion)
cell, and false matches over music that was never indexed.

Every draw is deterministic (one seeded generator per cell). A trial is a hit when the matcher
calls a near-copy *of the track the excerpt was cut from*; a near-copy of another track counts
as a miss (and is listed with the failures). Offset errors are over the hits.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from index_bench import fingerprint_v0
from index_bench.audio import DISTORTIONS, SR, AudioCache, Track, distort
from stylecraft.evaluate.audit.fingerprint import landmarks
from stylecraft.index.copies import CopyMatch, match_postings
from stylecraft.index.query import IndexAuditSettings, IndexReader

DURATIONS = (5, 10, 30)


@dataclasses.dataclass
class Matchers:
    """The index (today's fingerprint and the audit's thresholds) and the first in-memory matcher."""

    reader: IndexReader
    cfg: IndexAuditSettings
    legacy: fingerprint_v0.FingerprintIndex | None

    def index(self, x: np.ndarray) -> CopyMatch:
        h, t = landmarks(x, SR, **self.reader.settings.fingerprint())
        with self.reader.store.read():
            return match_postings(self.reader.store, h, t, self.reader.paths)

    def verdicts(self, x: np.ndarray) -> dict[str, dict[str, Any]]:
        """Each matcher's answer: copy verdict, reference (real path), offset, aligned hashes, fraction."""
        m = self.index(x)
        out = {"index": {"copy": m.is_copy(self.cfg.copy_min_aligned, self.cfg.copy_min_fraction),
                         "reference": _real(m.reference), "offset_s": m.offset_s, "aligned": m.aligned,
                         "fraction": round(m.fraction, 4), "n_hashes": m.n_hashes}}
        if self.legacy is not None:
            g = self.legacy.match(x, SR)
            out["in_memory_v0"] = {"copy": g.is_copy(), "reference": _real(g.reference), "offset_s": g.offset_s,
                                   "aligned": g.aligned, "fraction": round(g.fraction, 4), "n_hashes": g.n_hashes}
        return out


def _real(path: str | None) -> str | None:
    return None if path is None else os.path.realpath(path)


def legacy_index(tracks: list[Track], cache: AudioCache) -> fingerprint_v0.FingerprintIndex:
    """The first in-memory matcher over the indexed tracks (its own landmarks, as it was)."""
    idx = fingerprint_v0.FingerprintIndex()
    for t in tracks:
        idx.add(t.path, np.asarray(cache.get(t.path)), SR)
    return idx


def _pick(rng: np.random.Generator, tracks: list[Track], dur: float) -> tuple[Track, int]:
    """A track weighted by how many excerpt starts it offers, and a start sample in it."""
    room = np.array([max(0.0, t.duration_s - dur - 0.1) for t in tracks])
    t = tracks[int(rng.choice(len(tracks), p=room / room.sum()))]
    return t, int(rng.integers(0, int((t.duration_s - dur - 0.1) * SR)))


def _excerpt(cache: AudioCache, track: Track, start: int, dur: float) -> np.ndarray:
    return np.asarray(cache.get(track.path)[start : start + int(dur * SR)], dtype=np.float32)


def _summary(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    hits = [r for r in rows if r[name]["hit"]]
    errs = np.array([r[name]["offset_err_s"] for r in hits]) if hits else np.zeros(0)
    al = np.array([r[name]["aligned"] for r in rows])
    return {"recall": len(hits) / len(rows), "hits": len(hits), "trials": len(rows),
            "offset_err_median_s": float(np.median(errs)) if errs.size else None,
            "offset_err_p99_s": float(np.quantile(errs, 0.99)) if errs.size else None,
            "offset_err_max_s": float(errs.max()) if errs.size else None,
            "offset_err_over_0.1s": int(np.count_nonzero(errs > 0.1)),
            "aligned_median": float(np.median(al)), "aligned_p05": float(np.quantile(al, 0.05)),
            "failures": [{"track": r["track"], "start_s": r["start_s"], **r[name]} for r in rows if not r[name]["hit"]][:25]}


def copy_trials(m: Matchers, cache: AudioCache, indexed: list[Track], others: list[Track], trials: dict[int, int],
                seed: int, log: Any = print) -> dict[str, Any]:
    """Recall and offset error per cell; ``trials`` maps excerpt seconds to trials per cell (a
    length left out is not tried; each cell draws from its own generator, so cells are the same
    whichever lengths run together)."""
    out: dict[str, Any] = {}
    for dur in [d for d in DURATIONS if trials.get(d)]:
        for k, kind in enumerate(DISTORTIONS):
            rng = np.random.default_rng([seed, dur, k])
            rows = []
            for _ in range(trials[dur]):
                track, start = _pick(rng, indexed, dur)
                other, o_start = _pick(rng, others, dur)
                x = distort(_excerpt(cache, track, start, dur), kind, _excerpt(cache, other, o_start, dur), rng)
                row: dict[str, Any] = {"track": track.path, "start_s": round(start / SR, 3)}
                for name, v in m.verdicts(x).items():
                    v["hit"] = bool(v["copy"] and v["reference"] == track.path)
                    v["offset_err_s"] = round(abs(v["offset_s"] - start / SR), 4)
                    row[name] = v
                rows.append(row)
            names = [n for n in rows[0] if n not in ("track", "start_s")]
            out[f"{dur}s/{kind}"] = {n: _summary(rows, n) for n in names}
            log(f"{dur}s {kind}: " + ", ".join(f"{n} {out[f'{dur}s/{kind}'][n]['recall']:.3f}" for n in names))
    return out


def false_matches(m: Matchers, cache: AudioCache, others: list[Track], excerpts: int, seed: int,
                  log: Any = print) -> dict[str, Any]:
    """Near-copy verdicts on never-indexed music: every whole track, and ``excerpts`` excerpts per
    length (the distortions in turn; ``mix_*`` with another never-indexed track)."""
    whole: dict[str, list[dict[str, Any]]] = {}
    for t in others:
        for name, v in m.verdicts(np.asarray(cache.get(t.path), np.float32)).items():
            whole.setdefault(name, []).append({"track": t.path, **v})
    out: dict[str, Any] = {"whole_tracks": len(others), "whole_minutes": sum(t.duration_s for t in others) / 60, "excerpts": {}}
    for name, rows in whole.items():
        out[name] = {"whole_false": [r for r in rows if r["copy"]], "whole_aligned_max": max(r["aligned"] for r in rows),
                     "whole_aligned_top5": sorted((r["aligned"] for r in rows), reverse=True)[:5]}
    log("whole never-indexed tracks: " + ", ".join(f"{n} {len(out[n]['whole_false'])} false, max aligned "
                                                    f"{out[n]['whole_aligned_max']}" for n in whole))
    for dur in DURATIONS:
        rng = np.random.default_rng([seed, dur, 99])
        rows: dict[str, list[dict[str, Any]]] = {}
        for i in range(excerpts):
            kind = DISTORTIONS[i % len(DISTORTIONS)]
            t, start = _pick(rng, others, dur)
            o, o_start = _pick(rng, [x for x in others if x.path != t.path], dur)
            x = distort(_excerpt(cache, t, start, dur), kind, _excerpt(cache, o, o_start, dur), rng)
            for name, v in m.verdicts(x).items():
                rows.setdefault(name, []).append({"track": t.path, "start_s": round(start / SR, 3), "kind": kind, **v})
        for name, r in rows.items():
            al = sorted((v["aligned"] for v in r), reverse=True)
            out["excerpts"].setdefault(name, {})[f"{dur}s"] = {
                "n": len(r), "minutes": len(r) * dur / 60, "false": [v for v in r if v["copy"]], "aligned_max": al[0],
                "aligned_top5": al[:5]}
        log(f"{dur}s never-indexed excerpts: " + ", ".join(
            f"{n} {len(out['excerpts'][n][f'{dur}s']['false'])} false, max aligned {out['excerpts'][n][f'{dur}s']['aligned_max']}"
            for n in rows))
    return out
