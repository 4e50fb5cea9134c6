"""resampy's ``kaiser_best`` resampling, computed as a polyphase matrix product.

frechet-audio-distance loads audio with ``resampy.resample(x, sr, target)``; matching its FAD
values means matching that resampler. resampy evaluates an interpolated windowed-sinc filter
for every output sample in a numba loop. For integer sample rates the ratio is rational
(``up / down`` in lowest terms), so output sample ``b * up + p`` always uses the same filter
taps for its phase ``p``, just shifted by ``b * down`` input samples. Building those ``up``
filters once, with resampy's own table and interpolation, turns the whole resampling into one
BLAS product of a strided view of the input with a ``[up, taps]`` matrix: several times faster,
and equal to resampy up to float rounding (resampy accumulates in the input's dtype, float32
here; this accumulates in float64, so it is the more exact of the two).
"""

from __future__ import annotations

from math import gcd

import numpy as np

__all__ = ["resample_kaiser_best"]

_MAX_PHASES = 4096  # beyond this (odd rate pairs) the filter bank is larger than it is worth


def _filter_bank(sr_orig: int, sr_new: int) -> tuple[np.ndarray, int, int, int, int]:
    """``(H [up, width], lo, up, down, n_taps)`` such that ``y[b*up+p] = H[p] · x[b*down+lo : ...]``."""
    from resampy.filters import get_filter

    ratio = float(sr_new) / sr_orig
    g = gcd(sr_orig, sr_new)
    up, down = sr_new // g, sr_orig // g
    interp_win, num_table, _ = get_filter("kaiser_best")
    if ratio < 1:
        interp_win = ratio * interp_win
    interp_delta = np.diff(interp_win, append=interp_win[-1])
    scale = min(1.0, ratio)
    index_step = int(scale * num_table)
    nwin = interp_win.shape[0]
    t_out = np.arange(up) * (1.0 / ratio)  # the first period, as resampy computes its times

    taps: list[tuple[int, np.ndarray]] = []  # per phase: (first input offset, weights)
    for p in range(up):
        n = int(t_out[p])
        frac = scale * (t_out[p] - n)
        index_frac = frac * num_table
        offset = int(index_frac)
        eta = index_frac - offset
        i = np.arange((nwin - offset) // index_step)
        left = interp_win[offset + i * index_step] + eta * interp_delta[offset + i * index_step]  # x[n - i]
        frac = scale - frac
        index_frac = frac * num_table
        offset = int(index_frac)
        eta = index_frac - offset
        k = np.arange((nwin - offset) // index_step)
        right = interp_win[offset + k * index_step] + eta * interp_delta[offset + k * index_step]  # x[n + 1 + k]
        weights = np.concatenate([left[::-1], right])
        taps.append((n - (left.size - 1), weights))
    lo = min(start for start, _ in taps)
    hi = max(start + w.size for start, w in taps)
    bank = np.zeros((up, hi - lo))
    for p, (start, w) in enumerate(taps):
        bank[p, start - lo : start - lo + w.size] = w
    return bank, lo, up, down, hi - lo


def _resample_1d(x: np.ndarray, bank: np.ndarray, lo: int, up: int, down: int, width: int, n_out: int) -> np.ndarray:
    n_blocks = -(-n_out // up)
    # Zeros outside the signal stand for the taps resampy skips at the edges.
    pad_left = max(0, -lo)
    need = (n_blocks - 1) * down + lo + pad_left + width
    xp = np.zeros(max(need, x.shape[0] + pad_left))
    xp[pad_left : pad_left + x.shape[0]] = x
    base = lo + pad_left
    frames = np.lib.stride_tricks.as_strided(
        xp[base:], shape=(n_blocks, width), strides=(xp.strides[0] * down, xp.strides[0]), writeable=False
    )
    out = np.empty((n_blocks, up))
    step = 8192
    for s in range(0, n_blocks, step):
        out[s : s + step] = frames[s : s + step] @ bank.T
    return out.reshape(-1)[:n_out]


def resample_kaiser_best(x: np.ndarray, sr_orig: int, sr_new: int) -> np.ndarray:
    """``resampy.resample(x, sr_orig, sr_new, axis=0)`` (filter ``kaiser_best``), faster.

    Args:
        x: Float samples ``[samples]`` or ``[samples, channels]``.
        sr_orig: Input rate (Hz, integer).
        sr_new: Output rate (Hz, integer).

    Returns:
        ``[int(samples * sr_new / sr_orig)]`` (or with channels), in ``x``'s float dtype.
    """
    x = np.asarray(x)
    if sr_orig == sr_new:
        return x.copy()
    up = sr_new // gcd(sr_orig, sr_new)
    if up > _MAX_PHASES:
        import resampy

        return np.asarray(resampy.resample(x, sr_orig, sr_new, axis=0))
    n_out = int(x.shape[0] * float(sr_new) / float(sr_orig))
    if n_out < 1:
        raise ValueError(f"Input signal length={x.shape[0]} is too small to resample from {sr_orig}->{sr_new}")
    bank, lo, up, down, width = _filter_bank(sr_orig, sr_new)
    x64 = x.astype(np.float64)
    if x.ndim == 1:
        y = _resample_1d(x64, bank, lo, up, down, width, n_out)
    else:
        y = np.stack([_resample_1d(x64[:, c], bank, lo, up, down, width, n_out) for c in range(x.shape[1])], axis=1)
    return y.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
