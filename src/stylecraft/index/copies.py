"""Copy detection against the index's inverted fingerprint table.

The candidate's landmark hashes are looked up in one query; every returned posting votes for
``(track, reference frame − candidate frame)``. The winning bin (with its neighbours ±1 frame,
as peaks can move by a frame) gives the reference track and the offset. A near-copy needs enough
aligned hashes, and enough of them relative to the candidate's hashes *in the span they cover*:
a short excerpt inside a long candidate is still a copy, while chance alignments, scattered over
a whole track, are not.

The work of a query grows with the postings it reads, and a hash's posting list grows with the
catalogue. So a query reads at most ``POSTINGS_BUDGET`` postings: the candidate's hashes are
taken rarest first (from ``hash_counts``) until the budget is spent. A small index reads every
posting; a large one reads the rarest hashes, which are also the most telling (a common hash
mostly adds chance collisions). Hashes left out do not count in the fraction either.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from stylecraft.evaluate.audit.fingerprint import FRAME_S
from stylecraft.index.schema import FRAME_BITS
from stylecraft.index.store import Store

__all__ = ["CopyMatch", "match_postings"]

SPAN_PAD_S = 1.0
POSTINGS_BUDGET = 200_000  # (posting, candidate hash) pairs one query may read


@dataclasses.dataclass(frozen=True)
class CopyMatch:
    """The best-aligned indexed track for a candidate (the keys of ``FingerprintMatch``, plus the span).

    Attributes:
        reference: Path of the matched track, or ``None``.
        track_id: Its id in the index (``-1`` if none).
        offset_s: Where in the reference the candidate's start lines up (seconds).
        aligned: Hashes agreeing on that offset (±1 frame).
        fraction: ``aligned`` over the candidate's hashes inside the span the aligned hashes cover.
        n_hashes: The candidate's hash count.
        span_s: ``(start, end)`` of that span in the candidate (seconds).
    """

    reference: str | None
    track_id: int
    offset_s: float
    aligned: int
    fraction: float
    n_hashes: int
    span_s: tuple[float, float]

    def is_copy(self, min_aligned: int, min_fraction: float) -> bool:
        return self.reference is not None and self.aligned >= min_aligned and self.fraction >= min_fraction

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["span_s"] = list(self.span_s)
        return out


def _count_at(uniq: np.ndarray, counts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``counts`` of ``keys`` in the sorted ``uniq`` (0 where absent)."""
    pos = np.minimum(np.searchsorted(uniq, keys), uniq.size - 1)
    return np.where(uniq[pos] == keys, counts[pos], 0)


def vote(hashes: np.ndarray, times: np.ndarray, post_hash: np.ndarray, post_val: np.ndarray) -> tuple[int, int, int, np.ndarray]:
    """Vote over ``(track, offset)``; returns ``(track_id, offset_frames, aligned, candidate frames of the aligned hashes)``."""
    order = np.argsort(hashes, kind="stable")
    hs, ts = hashes[order], times[order]
    lo = np.searchsorted(hs, post_hash, side="left")
    hi = np.searchsorted(hs, post_hash, side="right")
    n = hi - lo
    if not n.sum():
        return -1, 0, 0, np.zeros(0, np.int64)
    which = np.repeat(np.arange(post_hash.size), n)  # posting index per (posting, candidate hash) pair
    cand = np.repeat(lo, n) + (np.arange(which.size) - np.repeat(np.cumsum(n) - n, n))
    track = post_val[which] >> FRAME_BITS
    offset = (post_val[which] & ((1 << FRAME_BITS) - 1)) - ts[cand]
    key = track * (1 << 22) + (offset + (1 << 21))
    uniq, counts = np.unique(key, return_counts=True)
    summed = counts + _count_at(uniq, counts, uniq - 1) + _count_at(uniq, counts, uniq + 1)
    best = int(uniq[int(np.argmax(summed))])
    aligned = int(summed.max())
    near = np.abs(key - best) <= 1
    return best >> 22, (best & ((1 << 22) - 1)) - (1 << 21), aligned, ts[cand[near]]


def _within_budget(store: Store, hashes: np.ndarray, budget: int) -> np.ndarray:
    """The candidate's hashes to look up: rarest first while their postings (times their own
    repeats in the candidate) fit in ``budget``; hashes absent from the index are kept (they cost
    nothing and count in the fraction as before)."""
    uniq, repeats = np.unique(hashes, return_counts=True)
    counts = np.zeros(uniq.size, dtype=np.int64)
    rows = store.count_postings(uniq.tolist())
    if rows:
        got = np.asarray(rows, dtype=np.int64)
        counts[np.searchsorted(uniq, got[:, 0])] = got[:, 1]
    cost = counts * repeats
    order = np.argsort(cost, kind="stable")
    return np.sort(uniq[order[np.cumsum(cost[order]) <= budget]])


def match_postings(store: Store, hashes: np.ndarray, times: np.ndarray, paths: dict[int, str],
                   budget: int = POSTINGS_BUDGET) -> CopyMatch:
    """The best-aligned live track for a candidate's landmarks (inside a read transaction).

    Args:
        store: The index.
        hashes: Candidate hashes; times: their anchor frames.
        paths: Track id -> path of the tracks this reader sees (postings of others are ignored).
        budget: Postings read at most (see the module docstring).
    """
    n_hashes = int(hashes.size)
    none = CopyMatch(None, -1, 0.0, 0, 0.0, n_hashes, (0.0, 0.0))
    if not n_hashes:
        return none
    chosen = _within_budget(store, hashes, budget)
    keep = np.isin(hashes, chosen)
    hashes, times = hashes[keep], times[keep]
    rows = store.lookup_postings(chosen.tolist())
    if not rows:
        return none
    arr = np.asarray(rows, dtype=np.int64)
    live = np.isin(arr[:, 1] >> FRAME_BITS, np.fromiter(paths, dtype=np.int64))
    arr = arr[live]
    track, offset, aligned, frames = vote(hashes, times, arr[:, 0], arr[:, 1])
    if track < 0:
        return none
    start, end = frames.min() * FRAME_S - SPAN_PAD_S, frames.max() * FRAME_S + SPAN_PAD_S
    in_span = int(np.count_nonzero((times * FRAME_S >= start) & (times * FRAME_S <= end)))
    return CopyMatch(paths[int(track)], int(track), offset * FRAME_S, aligned, aligned / max(1, in_span), n_hashes,
                     (round(max(0.0, start), 3), round(end, 3)))
