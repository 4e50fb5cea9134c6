"""Diversity and novelty of generated music.

* **Code diversity**: n-gram entropy and distinct-n of the generated EnCodec codes, per codebook.
  A model that loops repeats its n-grams within a clip (low per-clip distinct-n); a model that
  produces the same clip again and again repeats them across clips (low pooled distinct-n and
  entropy).
* **Embedding diversity**: the mean pairwise distance between clip embeddings (the mean of a
  clip's embedding rows, each dimension standardised by the reference set's spread) within the
  generated set, beside the same within clips of held-out tracks of the same length.
* **Novelty**: the distance of each generated clip's embedding to its nearest training window,
  beside the same for held-out clips. Music the model never saw comes only so close to the
  training windows; a generated clip that comes closer than every held-out clip is flagged as a
  likely copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist

from stylecraft.errors import StylecraftError

__all__ = [
    "clip_embedding",
    "code_ngram_stats",
    "embedding_diversity",
    "mean_pairwise_distance",
    "nearest_distances",
    "novelty",
    "standardiser",
]

NGRAM_ORDERS = (1, 2, 3, 4)


def _ngram_keys(seq: np.ndarray, n: int, bits: int) -> np.ndarray:
    """One int64 key per n-gram of a 1-D code sequence (codes packed ``bits`` bits apart)."""
    if seq.shape[0] < n:
        return np.zeros(0, dtype=np.int64)
    keys = np.zeros(seq.shape[0] - n + 1, dtype=np.int64)
    for i in range(n):
        keys |= seq[i : seq.shape[0] - n + 1 + i].astype(np.int64) << (bits * i)
    return keys


def _entropy_bits(keys: np.ndarray) -> float:
    if keys.size == 0:
        return 0.0
    _, counts = np.unique(keys, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def code_ngram_stats(codes: Sequence[np.ndarray], orders: Sequence[int] = NGRAM_ORDERS) -> dict[str, Any]:
    """n-gram entropy and distinct-n of generated codes, per codebook.

    n-grams run along time within one clip and one codebook (never across clips). For every
    codebook and order ``n``:

    * ``entropy_bits``: Shannon entropy (bits) of the n-gram distribution pooled over all clips;
    * ``distinct``: distinct n-grams / all n-grams, pooled over all clips (distinct-n);
    * ``distinct_clip_mean``: distinct-n of each clip on its own, averaged over clips.

    Args:
        codes: One ``[K, T]`` integer array per clip (non-negative codes, same ``K``).
        orders: n-gram orders.

    Returns:
        ``{"clips", "codebooks", "orders", "per_codebook": [{"codebook", "entropy_bits",
        "distinct", "distinct_clip_mean"}], "mean": {...}}``, each statistic a dict keyed by the
        order as a string, ``"mean"`` averaging them over codebooks.

    Raises:
        StylecraftError: For no clips, clips that are not 2-D, differing codebook counts, or
            negative codes.
    """
    if not codes:
        raise StylecraftError("code n-gram statistics need at least one clip of codes")
    arrays = [np.asarray(c) for c in codes]
    if any(a.ndim != 2 for a in arrays) or len({a.shape[0] for a in arrays}) != 1:
        raise StylecraftError(f"codes must be [K, T] arrays with the same K, got shapes {[a.shape for a in arrays]}")
    if any(a.size and int(a.min()) < 0 for a in arrays):
        raise StylecraftError("codes must be non-negative integers")
    top = max(int(a.max()) for a in arrays if a.size) if any(a.size for a in arrays) else 0
    bits = max(1, int(top).bit_length())
    if bits * max(orders) > 62:
        raise StylecraftError(f"codes up to {top} do not pack into 64-bit keys at order {max(orders)}")
    k = arrays[0].shape[0]
    per_codebook = []
    for cb in range(k):
        row: dict[str, Any] = {"codebook": cb, "entropy_bits": {}, "distinct": {}, "distinct_clip_mean": {}}
        for n in orders:
            keys = [_ngram_keys(a[cb], n, bits) for a in arrays]
            pooled = np.concatenate(keys)
            row["entropy_bits"][str(n)] = _entropy_bits(pooled)
            row["distinct"][str(n)] = float(np.unique(pooled).size / pooled.size) if pooled.size else 0.0
            per_clip = [np.unique(x).size / x.size for x in keys if x.size]
            row["distinct_clip_mean"][str(n)] = float(np.mean(per_clip)) if per_clip else 0.0
        per_codebook.append(row)
    mean = {
        stat: {str(n): float(np.mean([r[stat][str(n)] for r in per_codebook])) for n in orders}
        for stat in ("entropy_bits", "distinct", "distinct_clip_mean")
    }
    return {"clips": len(arrays), "codebooks": k, "orders": list(orders), "per_codebook": per_codebook, "mean": mean}


def clip_embedding(rows: np.ndarray) -> np.ndarray:
    """One vector per clip: the mean of its embedding rows ``[n, D]`` -> ``[D]``."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] < 1:
        raise StylecraftError(f"a clip needs at least one embedding row [n, D], got shape {rows.shape}")
    return rows.mean(axis=0)


def standardiser(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` per dimension of reference points; a constant dimension gets std 1.

    Distances between embeddings are taken after ``(v - mean) / std`` so that one dimension
    with a large scale (an MFCC's energy term, say) does not decide them alone.
    """
    reference = np.asarray(reference, dtype=np.float64)
    sd = reference.std(axis=0)
    return reference.mean(axis=0), np.where(sd > 0, sd, 1.0)


def mean_pairwise_distance(points: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs of distinct points ``[C, D]`` (``C >= 2``)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2:
        raise StylecraftError(f"a mean pairwise distance needs at least 2 points, got shape {points.shape}")
    return float(pdist(points).mean())


def nearest_distances(query: np.ndarray, base: np.ndarray, block: int = 1024) -> np.ndarray:
    """Euclidean distance from each query point to its nearest base point, ``[Q]``."""
    query = np.asarray(query, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    if base.ndim != 2 or base.shape[0] < 1 or query.ndim != 2 or query.shape[1] != base.shape[1]:
        raise StylecraftError(f"nearest distances need [Q, D] and [B, D] points, got {query.shape} and {base.shape}")
    sq_b = (base * base).sum(axis=1)
    out = np.empty(query.shape[0])
    for i in range(0, query.shape[0], block):
        q = query[i : i + block]
        d2 = (q * q).sum(axis=1)[:, None] + sq_b[None, :] - 2.0 * q @ base.T
        out[i : i + block] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max())}


def embedding_diversity(generated: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Mean pairwise distance within generated clips beside the same within reference clips.

    Both sets are standardised by the reference clips' spread. ``ratio`` below 1 means the
    generated clips are more alike than the reference's (a model that loops or repeats itself
    comes out near 0); about 1 means as varied.

    Args:
        generated: Clip embeddings ``[G, D]`` (``G >= 2``).
        reference: Clip embeddings ``[R, D]`` of reference (held-out) audio (``R >= 2``).

    Returns:
        ``{"generated", "reference", "ratio", "n_generated", "n_reference"}``.
    """
    mu, sd = standardiser(reference)
    gen = mean_pairwise_distance((np.asarray(generated) - mu) / sd)
    ref = mean_pairwise_distance((np.asarray(reference) - mu) / sd)
    return {"generated": gen, "reference": ref, "ratio": gen / ref if ref > 0 else None,
            "n_generated": int(np.asarray(generated).shape[0]), "n_reference": int(np.asarray(reference).shape[0])}


def novelty(generated: np.ndarray, heldout: np.ndarray, train: np.ndarray) -> dict[str, Any]:
    """Nearest-training-window distances of generated clips beside those of held-out clips.

    All points are standardised by the training windows' spread. A generated clip is flagged
    when it comes closer to a training window than every held-out clip does (held-out tracks are
    the artist's own music that training never saw, so their distances say how close new music
    in that style comes without copying).

    Args:
        generated: Clip embeddings of the generated clips ``[G, D]``.
        heldout: Clip embeddings of held-out clips of the same length ``[H, D]``.
        train: Embeddings of the training windows ``[W, D]``.

    Returns:
        ``{"generated": summary, "heldout": summary, "ratio_of_medians", "threshold",
        "flagged": [indices of generated clips], "flagged_share", "generated_distances",
        "heldout_distances"}`` (summaries: mean, median, min, max).
    """
    mu, sd = standardiser(train)
    base = (np.asarray(train) - mu) / sd
    d_gen = nearest_distances((np.asarray(generated) - mu) / sd, base)
    d_held = nearest_distances((np.asarray(heldout) - mu) / sd, base)
    if d_gen.size == 0 or d_held.size == 0:
        raise StylecraftError("novelty needs at least one generated and one held-out clip")
    threshold = float(d_held.min())
    flagged = [int(i) for i in np.flatnonzero(d_gen < threshold)]
    med_held = float(np.median(d_held))
    return {
        "generated": _summary(d_gen), "heldout": _summary(d_held),
        "ratio_of_medians": float(np.median(d_gen)) / med_held if med_held > 0 else None,
        "threshold": threshold, "flagged": flagged, "flagged_share": len(flagged) / d_gen.size,
        "generated_distances": [float(v) for v in d_gen], "heldout_distances": [float(v) for v in d_held],
        "n_train_windows": int(base.shape[0]),
    }
