"""Kernel Audio Distance (KAD): a Gaussian-kernel MMD between two embedding sets, computed in blocks.

KAD (Chung et al., 2025, "KAD: No More FAD!") is the squared maximum mean discrepancy with a
Gaussian kernel ``k(a, b) = exp(-γ ‖a − b‖²)``, ``γ = 1 / (2 h² + 1e-8)``, scaled by 100. It makes
no Gaussian assumption about the embeddings and its estimator has no sample-size bias for two
independent sets, which is what a small catalogue needs.

The defaults are those of kadtk 1.1.0's ``calc_kernel_audio_distance`` (``x`` = reference set,
``y`` = evaluated set)::

    KAD = 100 · ( mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 · mean_{i,j} k(x_i, y_j) )

* **Gaussian kernel**, bandwidth ``h`` = the median of the pairwise Euclidean distances of the
  **evaluated** set (the lower median when their number is even, as ``torch.median`` gives).
* The within-set terms leave out their diagonals; the **cross term keeps all pairs**. For two
  independent sets this is the usual unbiased MMD² estimator. For a set scored against itself
  (or sets that share rows) the cross term counts every shared row with itself (kernel value 1),
  so ``KAD(X, X) = 200 · (mean_{i≠j} k(x_i, x_j) − 1) / n``, which is **negative**.
  ``estimator="unbiased"`` leaves the cross term's diagonal out as well when both sets have the
  same number of rows (Gretton et al., 2012, Lemma 6: ``x_i`` is paired with ``y_i``), which
  makes ``KAD(X, X) = 0`` exactly and is unbiased for independent sets too; with unequal sizes
  there is no diagonal and it equals the default.

Unlike kadtk, nothing here holds an ``N × N`` matrix: kernel sums run over blocks of
``block_rows`` rows (memory ``O(block_rows² + N·D)``), the bandwidth's median is an exact
selection over all ``N(N−1)/2`` distances (a fine histogram over the blocks finds the bin that holds it,
a second pass gathers that bin; a radix search on the float64 bits is the fallback), and
everything runs in float64 on the GPU when there is one (else the CPU).
Distances come from the Gram matrix of rows centred on their common mean (KAD and the median are
translation invariant; centring keeps ``‖a‖² + ‖b‖² − 2 a·b`` from cancelling catastrophically).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import numpy as np
import torch

from stylecraft.errors import StylecraftError

__all__ = [
    "GAMMA_EPS",
    "SCALE_FACTOR",
    "KadInfResult",
    "KadResult",
    "kad_inf",
    "kernel_audio_distance",
    "median_pairwise_distance",
    "per_track_kad",
    "weighted_kad_replicates",
]

SCALE_FACTOR = 100.0  # kadtk's SCALE_FACTOR
GAMMA_EPS = 1e-8  # kadtk's eps in γ = 1 / (2 h² + eps)
DEFAULT_BLOCK_ROWS = 1024  # a 1024 x 1024 float64 block is 8 MiB (small blocks keep the passes over them in cache)
_SELECT_LIMIT = 1 << 22  # distances gathered at once for the exact median (32 MiB of float64)

Estimator = Literal["kadtk", "unbiased"]
Bandwidth = float | Literal["gen", "ref"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class KadResult:
    """One KAD value and the terms it is made of.

    Attributes:
        kad: ``SCALE_FACTOR · (k_ref + k_gen − 2 k_cross)``.
        bandwidth: The Gaussian kernel's bandwidth ``h``.
        bandwidth_from: ``"gen"`` (median pairwise distance of the evaluated set, kadtk's
            default), ``"ref"`` (of the reference set) or ``"fixed"``.
        estimator: ``"kadtk"`` or ``"unbiased"``.
        n_ref: Reference rows.
        n_gen: Evaluated rows.
        k_ref: Mean kernel value over pairs of distinct reference rows.
        k_gen: The same over the evaluated set.
        k_cross: Mean kernel value over the cross pairs the estimator uses.
    """

    kad: float
    bandwidth: float
    bandwidth_from: str
    estimator: str
    n_ref: int
    n_gen: int
    k_ref: float
    k_gen: float
    k_cross: float


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _check_rows(emb: np.ndarray | torch.Tensor, label: str, min_rows: int = 2) -> np.ndarray | torch.Tensor:
    if not isinstance(emb, torch.Tensor):
        emb = np.asarray(emb)
    if emb.ndim != 2:
        raise StylecraftError(f"{label} embeddings must be a 2-D array [N, D], got shape {tuple(emb.shape)}")
    if emb.shape[0] < min_rows:
        raise StylecraftError(
            f"{label} set has {emb.shape[0]} embedding row(s); KAD needs at least {min_rows} "
            "(its within-set term averages over pairs of distinct rows)"
        )
    if emb.shape[1] < 1:
        raise StylecraftError(f"{label} embeddings have 0 dimensions")
    return emb


def _to_tensor(emb: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(emb, torch.Tensor):
        t = emb.to(device=device, dtype=torch.float64)
    else:
        arr = np.asarray(emb)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise StylecraftError(f"embeddings must be real numbers, got dtype {arr.dtype}")
        t = torch.as_tensor(arr, dtype=torch.float64, device=device)
    if not bool(torch.isfinite(t).all()):
        raise StylecraftError("embeddings hold NaN or inf values")
    return t


@dataclasses.dataclass
class _Rows:
    """A set's rows on the device, centred on a given point, ready for blocked distances.

    ``left[i] · right[j] = ‖x_i‖² + ‖x_j‖² − 2 x_i · x_j`` (``left = [x, ‖x‖², 1]``,
    ``right = [−2x, 1, ‖x‖²]``), so one matrix product gives a block of squared distances with no
    further pass over it.
    """

    x: torch.Tensor  # [N, D] float64
    sq: torch.Tensor  # [N]
    left: torch.Tensor  # [N, D + 2]
    right: torch.Tensor  # [N, D + 2]

    @classmethod
    def make(cls, emb: torch.Tensor, centre: torch.Tensor) -> _Rows:
        x = emb - centre
        sq = (x * x).sum(dim=1)
        one = torch.ones_like(sq)
        return cls(x=x, sq=sq, left=torch.cat([x, sq[:, None], one[:, None]], dim=1),
                   right=torch.cat([-2.0 * x, one[:, None], sq[:, None]], dim=1))

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _sq_dist(a: _Rows, i0: int, i1: int, b: _Rows, j0: int, j1: int) -> torch.Tensor:
    """Squared distances ``[i1 - i0, j1 - j0]`` between rows of ``a`` and ``b`` (rounding below 0 set to +0)."""
    d2 = a.left[i0:i1] @ b.right[j0:j1].T
    return d2.clamp_min_(0.0).add_(0.0)  # + 0.0 turns -0.0 into 0.0, so bit patterns sort as the values


def _pair_sq_distances(y: _Rows, block: int) -> Iterator[torch.Tensor]:
    """Squared distances of every pair ``i < j`` of rows, one 1-D tensor per block pair."""
    n = len(y)
    mask: torch.Tensor | None = None
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        for j0 in range(i0, n, block):
            j1 = min(n, j0 + block)
            d2 = _sq_dist(y, i0, i1, y, j0, j1)
            if j0 == i0:
                if mask is None or mask.shape[0] != i1 - i0:
                    mask = torch.ones(i1 - i0, i1 - i0, dtype=torch.bool, device=d2.device).triu_(1)
                yield d2[mask]
            else:
                yield d2.reshape(-1)


def _radix_select(y: _Rows, k: int, block: int) -> float:
    """The ``k``-th smallest squared pair distance by a radix search on its float64 bits.

    Non-negative floats sort as their bit patterns read as integers; each pass over the blocks
    fixes 16 more bits, and the remaining candidates are gathered once they fit in memory.
    """
    prefix = 0
    for shift in (48, 32, 16, 0):
        hist = torch.zeros(1 << 16, dtype=torch.int64, device=y.x.device)
        for d2 in _pair_sq_distances(y, block):
            bits = d2.view(torch.int64)
            if shift < 48:
                bits = bits[(bits >> (shift + 16)) == prefix]
            hist += torch.bincount((bits >> shift) & 0xFFFF, minlength=1 << 16)
        cum = torch.cumsum(hist, 0)
        digit = int(torch.searchsorted(cum, torch.tensor([k], device=cum.device), right=True)[0])
        k -= int(cum[digit - 1]) if digit > 0 else 0
        prefix = (prefix << 16) | digit
        if shift and int(hist[digit]) <= _SELECT_LIMIT:
            picked = _gather(y, block, int(hist[digit]), functools.partial(_with_prefix, shift=shift, prefix=prefix))
            return float(torch.kthvalue(picked.cpu(), k + 1).values)
    return float(torch.tensor([prefix], dtype=torch.int64).view(torch.float64)[0])


def _with_prefix(d2: torch.Tensor, shift: int, prefix: int) -> torch.Tensor:
    """The squared distances of a block whose float64 bits above ``shift`` are ``prefix``."""
    return d2[(d2.view(torch.int64) >> shift) == prefix]


def _gather(y: _Rows, block: int, count: int, select: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The ``count`` squared pair distances ``select`` picks from the blocks, in one tensor.

    The tensor is allocated before the pass: keeping many small selections alive between the
    blocks' large temporaries fragments the heap, and the process's memory would grow with the
    number of blocks.
    """
    out = torch.empty(count, dtype=torch.float64, device=y.x.device)
    pos = 0
    for d2 in _pair_sq_distances(y, block):
        part = select(d2)
        out[pos : pos + part.numel()] = part
        pos += int(part.numel())
    assert pos == count, "the gathering pass found another count than the counting pass"
    return out


_BINS = 1 << 18  # histogram bins per pass of the median search (2 MiB of counts, cache-sized)


def _bin_of(d2: torch.Tensor, lo: float, scale: float) -> torch.Tensor:
    """Histogram bin of each squared distance in ``[lo, lo + _BINS / scale)`` (the same expression
    on every pass, so a value is always found in the bin it was counted in)."""
    return ((d2 - lo) * scale).long().clamp_(0, _BINS - 1)


def _in_bin(d2: torch.Tensor, lo: float, hi: float, scale: float, b: int) -> torch.Tensor:
    """The squared distances of a block that the counting pass put in bin ``b`` of ``[lo, hi)``."""
    if lo > 0.0:
        d2 = d2[(d2 >= lo) & (d2 < hi)]
    return d2[_bin_of(d2, lo, scale) == b]


def _kth_pair_sq_distance(y: _Rows, k: int, block: int) -> float:
    """The ``k``-th smallest (0-based) of all ``N(N−1)/2`` squared pair distances, exactly, in bounded memory.

    Few pairs are gathered and selected directly. Otherwise one pass counts the squared
    distances in ``2**18`` equal bins from 0 to a bound no pair exceeds (``(2 max ‖x_i − c‖)²``),
    and a second gathers the bin that holds the ``k``-th value and selects it there; a bin too
    full to gather is split again by another pass. Should that not converge (a mass of exactly
    equal distances), an exact radix search on the float64 bits decides.
    """
    n = len(y)
    total = n * (n - 1) // 2
    if total <= _SELECT_LIMIT:
        return float(torch.kthvalue(torch.cat(list(_pair_sq_distances(y, block))).cpu(), k + 1).values)
    lo, hi = 0.0, float(4.0 * y.sq.max()) * (1.0 + 1e-6) + 1e-300
    for _ in range(4):
        scale = _BINS / (hi - lo)
        hist = torch.zeros(_BINS, dtype=torch.int64, device=y.x.device)
        below = 0
        for d2 in _pair_sq_distances(y, block):
            if lo > 0.0:
                below += int((d2 < lo).sum())
                d2 = d2[(d2 >= lo) & (d2 < hi)]
            hist += torch.bincount(_bin_of(d2, lo, scale), minlength=_BINS)
        if not below <= k < below + int(hist.sum()):
            break  # the widened range missed the value (rounding at a bin edge): the radix search decides
        cum = torch.cumsum(hist, 0) + below
        b = int(torch.searchsorted(cum, torch.tensor([k], device=cum.device), right=True)[0])
        start = int(cum[b - 1]) if b > 0 else below
        if int(hist[b]) <= _SELECT_LIMIT:
            picked = _gather(y, block, int(hist[b]), functools.partial(_in_bin, lo=lo, hi=hi, scale=scale, b=b))
            return float(torch.kthvalue(picked.cpu(), k - start + 1).values)
        new_lo, new_hi = lo + b / scale, lo + (b + 1) / scale
        if not new_lo < new_hi or (new_lo, new_hi) == (lo, hi):
            break
        # The next pass bins [new_lo, new_hi); values counted in bin b lie there up to rounding of
        # the bin arithmetic, so the range is widened a little and the count is checked above.
        lo, hi = new_lo * (1.0 - 1e-14), new_hi * (1.0 + 1e-14)
    return _radix_select(y, k, block)


def median_pairwise_distance(
    emb: np.ndarray | torch.Tensor, block_rows: int = DEFAULT_BLOCK_ROWS, device: torch.device | str | None = None
) -> float:
    """Median Euclidean distance between distinct rows, as kadtk's ``median_pairwise_distance``.

    With ``M = N(N−1)/2`` distances, this is the ``(M−1)//2``-th smallest (0-based): the lower
    median for even ``M``, which is what ``torch.median`` returns. kadtk computes it in float32
    with ``torch.pdist`` (all ``M`` distances in memory); here it is exact in float64 in blocks.

    Args:
        emb: Rows ``[N, D]``, ``N >= 2``.
        block_rows: Rows per block.
        device: Where to compute (default: CUDA when present).

    Returns:
        The median distance.
    """
    dev = torch.device(device) if device is not None else default_device()
    t = _to_tensor(_check_rows(emb, "the"), dev)
    rows = _Rows.make(t, t.mean(dim=0))
    m = len(rows) * (len(rows) - 1) // 2
    return float(np.sqrt(_kth_pair_sq_distance(rows, (m - 1) // 2, block_rows)))


def _kernel_sum(
    a: _Rows, b: _Rows, gamma: float, block: int, same: bool,
    wa: torch.Tensor | None = None, wb: torch.Tensor | None = None,
) -> float:
    """``Σ_i Σ_j wa_i wb_j exp(-γ ‖a_i − b_j‖²)``; with ``same`` (``b`` is ``a``) the terms ``i == j`` are left out.

    With ``same`` only blocks on and above the diagonal are computed (the kernel is symmetric).
    Weights (``None``: all 1) let a bootstrap resample reweight rows instead of copying them.
    """
    total = torch.zeros((), dtype=torch.float64, device=a.x.device)
    na, nb = len(a), len(b)
    for i0 in range(0, na, block):
        i1 = min(na, i0 + block)
        for j0 in range(i0 if same else 0, nb, block):
            j1 = min(nb, j0 + block)
            k = _sq_dist(a, i0, i1, b, j0, j1).mul_(-gamma).exp_()
            if wa is None or wb is None:
                s = k.sum()
                diag = torch.diagonal(k).sum() if same and i0 == j0 else None
            else:
                s = wa[i0:i1] @ k @ wb[j0:j1]
                diag = (wa[i0:i1] * wb[j0:j1] * torch.diagonal(k)).sum() if same and i0 == j0 else None
            if same:
                s = s - diag if diag is not None else 2.0 * s
            total += s
    return float(total)


def _paired_kernel_sum(a: _Rows, b: _Rows, gamma: float) -> float:
    """``Σ_i exp(-γ ‖a_i − b_i‖²)``: the cross term's diagonal for sets of equal size."""
    d2 = torch.clamp(a.sq + b.sq - 2.0 * (a.x * b.x).sum(dim=1), min=0.0)
    return float(torch.exp(-gamma * d2).sum())


def _gamma(h: float) -> float:
    return 1.0 / (2.0 * h * h + GAMMA_EPS)


def _resolve_bandwidth(bandwidth: Bandwidth, ref: _Rows, gen: _Rows, block: int) -> tuple[float, str]:
    if isinstance(bandwidth, str):
        if bandwidth not in ("gen", "ref"):
            raise StylecraftError(f"KAD bandwidth must be 'gen', 'ref' or a positive number, got {bandwidth!r}")
        rows = gen if bandwidth == "gen" else ref
        m = len(rows) * (len(rows) - 1) // 2
        h = float(np.sqrt(_kth_pair_sq_distance(rows, (m - 1) // 2, block)))
        scale = float(torch.sqrt(rows.sq.mean()))
        if h <= 1e-6 * scale:
            # More than half of the row pairs are (numerically) identical: γ is then 1/1e-8, as in
            # kadtk, and the kernel tells apart nothing but exact copies. Computed all the same.
            which = "evaluated" if bandwidth == "gen" else "reference"
            logger.warning("the %s set's median pairwise distance is %.3g (more than half of its row pairs are "
                           "identical); KAD with that bandwidth only separates exact copies: pass a fixed bandwidth",
                           which, h)
        return h, bandwidth
    h = float(bandwidth)
    if not np.isfinite(h) or h <= 0.0:
        raise StylecraftError(f"a fixed KAD bandwidth must be a positive number, got {bandwidth}")
    return h, "fixed"


def kernel_audio_distance(
    ref: np.ndarray | torch.Tensor,
    gen: np.ndarray | torch.Tensor,
    bandwidth: Bandwidth = "gen",
    estimator: Estimator = "kadtk",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: torch.device | str | None = None,
    ref_weights: np.ndarray | None = None,
    gen_weights: np.ndarray | None = None,
) -> KadResult:
    """Kernel Audio Distance between a reference set and an evaluated set (defaults: kadtk 1.1.0's).

    Args:
        ref: Reference embeddings ``[M, D]`` (kadtk's ``x``), ``M >= 2``.
        gen: Evaluated embeddings ``[N, D]`` (kadtk's ``y``), ``N >= 2``.
        bandwidth: ``"gen"`` (median pairwise distance of ``gen``, kadtk's default), ``"ref"``
            (of ``ref``, so that every evaluated set is measured with the same kernel), or a
            fixed positive number.
        estimator: ``"kadtk"`` (within-set diagonals left out, all cross pairs kept) or
            ``"unbiased"`` (with equal sizes the cross pairs ``(x_i, y_i)`` are left out too;
            see the module docstring).
        block_rows: Rows per block; memory is ``O(block_rows²)`` besides the embeddings.
        device: Where to compute (default: CUDA when present, else CPU).
        ref_weights: Row multiplicities of ``ref`` (a bootstrap resample); a row is never paired
            with itself. ``None``: all 1. Only with the ``kadtk`` estimator.
        gen_weights: The same for ``gen``.

    Returns:
        The :class:`KadResult`.

    Raises:
        StylecraftError: For sets with fewer than 2 rows, different dimensions, non-finite
            values, a fixed bandwidth that is not positive, an unknown estimator, or weights
            with the ``unbiased`` estimator.
    """
    if estimator not in ("kadtk", "unbiased"):
        raise StylecraftError(f"KAD estimator must be 'kadtk' or 'unbiased', got {estimator!r}")
    if block_rows < 1:
        raise StylecraftError(f"block_rows must be >= 1, got {block_rows}")
    ref = _check_rows(ref, "reference")
    gen = _check_rows(gen, "evaluated")
    if ref.shape[1] != gen.shape[1]:
        raise StylecraftError(
            f"embedding dimensions differ: reference D={ref.shape[1]}, evaluated D={gen.shape[1]}; "
            "both sets must come from the same embedding model"
        )
    weighted = ref_weights is not None or gen_weights is not None
    if weighted and estimator != "kadtk":
        raise StylecraftError("row weights (bootstrap resamples) work with the kadtk estimator only")
    dev = torch.device(device) if device is not None else default_device()
    x, y = _to_tensor(ref, dev), _to_tensor(gen, dev)
    centre = torch.cat([x, y]).mean(dim=0)
    xr, yr = _Rows.make(x, centre), _Rows.make(y, centre)
    h, source = _resolve_bandwidth(bandwidth, xr, yr, block_rows)
    gamma = _gamma(h)
    m, n = len(xr), len(yr)
    wx = torch.ones(m, dtype=torch.float64, device=dev) if ref_weights is None else _weights(ref_weights, m, dev)
    wy = torch.ones(n, dtype=torch.float64, device=dev) if gen_weights is None else _weights(gen_weights, n, dev)
    if weighted:
        k_ref = _kernel_sum(xr, xr, gamma, block_rows, True, wx, wx) / _pair_weight(wx)
        k_gen = _kernel_sum(yr, yr, gamma, block_rows, True, wy, wy) / _pair_weight(wy)
        k_cross = _kernel_sum(xr, yr, gamma, block_rows, False, wx, wy) / float(wx.sum() * wy.sum())
    else:
        k_ref = _kernel_sum(xr, xr, gamma, block_rows, True) / (m * (m - 1))
        k_gen = _kernel_sum(yr, yr, gamma, block_rows, True) / (n * (n - 1))
        cross = _kernel_sum(xr, yr, gamma, block_rows, False)
        if estimator == "unbiased" and m == n:
            k_cross = (cross - _paired_kernel_sum(xr, yr, gamma)) / (m * (m - 1))
        else:
            k_cross = cross / (m * n)
    value = SCALE_FACTOR * (k_ref + k_gen - 2.0 * k_cross)
    return KadResult(kad=float(value), bandwidth=h, bandwidth_from=source, estimator=estimator, n_ref=m, n_gen=n,
                     k_ref=k_ref, k_gen=k_gen, k_cross=k_cross)


def _weights(w: np.ndarray, n: int, device: torch.device) -> torch.Tensor:
    arr = np.asarray(w, dtype=np.float64)
    if arr.shape != (n,) or (arr < 0).any() or not np.isfinite(arr).all():
        raise StylecraftError(f"row weights must be {n} non-negative numbers, got shape {arr.shape}")
    return torch.as_tensor(arr, device=device)


def _pair_weight(w: torch.Tensor) -> float:
    """Total weight of pairs of distinct rows: ``(Σw)² − Σw²`` (``n(n−1)`` for unit weights)."""
    total = float(w.sum() ** 2 - (w * w).sum())
    if total <= 0.0:
        raise StylecraftError("a resample holds fewer than 2 distinct rows; KAD needs pairs of distinct rows")
    return total


def _kernel_matrix(a: _Rows, b: _Rows, gamma: float, block: int, same: bool) -> torch.Tensor:
    """The whole kernel matrix ``[len(a), len(b)]`` (diagonal zeroed when ``same``), filled block by block."""
    out = torch.empty(len(a), len(b), dtype=torch.float64, device=a.x.device)
    for i0 in range(0, len(a), block):
        i1 = min(len(a), i0 + block)
        for j0 in range(0, len(b), block):
            j1 = min(len(b), j0 + block)
            out[i0:i1, j0:j1] = _sq_dist(a, i0, i1, b, j0, j1).mul_(-gamma).exp_()
    if same:
        out.fill_diagonal_(0.0)
    return out


def weighted_kad_replicates(
    ref: np.ndarray,
    gen: np.ndarray,
    bandwidth: float,
    weights: list[tuple[np.ndarray | None, np.ndarray | None]],
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: torch.device | str | None = None,
    max_matrix_bytes: int = 512 << 20,
) -> list[float]:
    """KAD (kadtk estimator) at a fixed bandwidth for many row weightings of the same two sets.

    When the three kernel matrices fit in ``max_matrix_bytes`` they are computed once and every
    weighting is three quadratic forms; otherwise each weighting runs the blocked computation.

    Args:
        ref: Reference embeddings ``[M, D]``.
        gen: Evaluated embeddings ``[N, D]``.
        bandwidth: The kernel bandwidth (fixed for all replicates).
        weights: ``(ref_weights, gen_weights)`` per replicate (``None``: all 1).
        block_rows: Rows per block.
        device: Where to compute.
        max_matrix_bytes: Memory allowed for the cached kernel matrices.

    Returns:
        One KAD value per weighting.
    """
    m, n = ref.shape[0], gen.shape[0]
    if (m * m + n * n + m * n) * 8 > max_matrix_bytes:
        return [kernel_audio_distance(ref, gen, bandwidth=bandwidth, block_rows=block_rows, device=device,
                                      ref_weights=wr, gen_weights=wg).kad for wr, wg in weights]
    dev = torch.device(device) if device is not None else default_device()
    x, y = _to_tensor(_check_rows(ref, "reference"), dev), _to_tensor(_check_rows(gen, "evaluated"), dev)
    centre = torch.cat([x, y]).mean(dim=0)
    xr, yr = _Rows.make(x, centre), _Rows.make(y, centre)
    gamma = _gamma(_resolve_bandwidth(bandwidth, xr, yr, block_rows)[0])
    kxx = _kernel_matrix(xr, xr, gamma, block_rows, True)
    kyy = _kernel_matrix(yr, yr, gamma, block_rows, True)
    kxy = _kernel_matrix(xr, yr, gamma, block_rows, False)
    out = []
    for wr, wg in weights:
        wx = torch.ones(m, dtype=torch.float64, device=dev) if wr is None else _weights(wr, m, dev)
        wy = torch.ones(n, dtype=torch.float64, device=dev) if wg is None else _weights(wg, n, dev)
        k_ref = float(wx @ kxx @ wx) / _pair_weight(wx)
        k_gen = float(wy @ kyy @ wy) / _pair_weight(wy)
        k_cross = float(wx @ kxy @ wy) / float(wx.sum() * wy.sum())
        out.append(SCALE_FACTOR * (k_ref + k_gen - 2.0 * k_cross))
    return out


@dataclasses.dataclass(frozen=True)
class KadInfResult:
    """KAD extrapolated to infinitely many evaluated rows (kadtk ``score_inf``).

    Attributes:
        score: The intercept of the least-squares line ``KAD(n) = slope / n + score``.
        slope: Its slope.
        r2: Coefficient of determination of the fit (``None`` when every point is equal).
        points: ``(n, KAD(n))`` for every sample size.
    """

    score: float
    slope: float
    r2: float | None
    points: list[tuple[int, float]]


def kad_inf(
    ref: np.ndarray,
    gen: np.ndarray,
    steps: int = 25,
    min_n: int = 500,
    seed: int = 0,
    bandwidth: Bandwidth = "gen",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: torch.device | str | None = None,
) -> KadInfResult:
    """KAD∞ as kadtk 1.1.0's ``KernelAudioDistance.score_inf`` computes it.

    For ``steps`` sizes ``n = int(linspace(min_n, N, steps))``, ``n`` rows of ``gen`` are drawn
    with replacement (``np.random.RandomState(seed).choice``, in kadtk's order: with the same
    seed given to ``np.random.seed`` the draws are kadtk's), KAD against ``ref`` is computed
    with the bandwidth taken afresh from each draw (kadtk's default; repeated rows count as
    distinct rows, at distance 0), and a line is fitted to KAD against ``1/n``.

    Raises:
        StylecraftError: If ``steps < 2``, ``min_n < 2`` or ``gen`` has fewer than ``min_n`` rows.
    """
    gen = np.asarray(gen, dtype=np.float64)
    _check_rows(gen, "evaluated")
    if steps < 2:
        raise StylecraftError(f"KAD-inf needs at least 2 sample sizes, got steps={steps}")
    if min_n < 2:
        raise StylecraftError(f"KAD-inf minimum sample size must be at least 2, got {min_n}")
    max_n = gen.shape[0]
    if max_n < min_n:
        raise StylecraftError(
            f"KAD-inf needs at least min_n={min_n} embedding rows, the evaluated set has {max_n}; "
            "lower the minimum sample size or add audio"
        )
    ns = [int(v) for v in np.linspace(min_n, max_n, steps)]
    rng = np.random.RandomState(seed)
    points: list[tuple[int, float]] = []
    for n in ns:
        idx = rng.choice(max_n, size=n, replace=True)
        res = kernel_audio_distance(ref, gen[idx], bandwidth=bandwidth, block_rows=block_rows, device=device)
        points.append((n, res.kad))
    ys = np.array([p[1] for p in points])
    xs = 1.0 / np.array(ns, dtype=np.float64)
    slope, intercept = np.polyfit(xs, ys, 1)
    ss_tot = float(np.sum((ys - ys.mean()) ** 2))
    ss_res = float(np.sum((ys - (slope * xs + intercept)) ** 2))
    r2 = None if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return KadInfResult(score=float(intercept), slope=float(slope), r2=r2, points=points)


def per_track_kad(
    ref: np.ndarray,
    tracks: Mapping[str, np.ndarray],
    bandwidth: Bandwidth = "gen",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: torch.device | str | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """KAD of each track's own rows against the reference (kadtk ``score_individual``).

    With the default bandwidth each track's kernel is set by its own median distance, as in
    kadtk; ``bandwidth="ref"`` or a number gives every track the same kernel, which makes the
    values comparable with one another.

    Returns:
        ``(scores, skipped)``: KAD per track, and a reason per track that could not be scored
        (fewer than 2 rows: kadtk gives NaN there).
    """
    scores: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name, emb in tracks.items():
        emb = np.asarray(emb)
        rows = emb.shape[0] if emb.ndim == 2 else 0
        if rows < 2:
            skipped[name] = f"{rows} embedding row(s); per-track KAD needs 2"
            continue
        scores[name] = kernel_audio_distance(ref, emb, bandwidth=bandwidth, block_rows=block_rows, device=device).kad
    return scores, skipped
