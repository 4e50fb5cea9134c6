"""Integrated loudness after ITU-R BS.1770-4 (K-weighting, 400 ms blocks, absolute and relative gates)."""

from __future__ import annotations

import numpy as np
from scipy import signal

_ABS_GATE_LUFS = -70.0
_REL_GATE_LU = -10.0


def _k_weighting_sos(sample_rate: int) -> np.ndarray:
    """The two K-weighting biquads as second-order sections [2, 6]."""
    b, a = _k_weighting_stages(sample_rate)
    return np.array([[*b[0], *a[0]], [*b[1], *a[1]]])


def _k_weighting(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The K-weighting filter as one (b, a) pair (for inspection against the standard's tables)."""
    (b1, b2), (a1, a2) = _k_weighting_stages(sample_rate)
    return np.convolve(b1, b2), np.convolve(a1, a2)


def _k_weighting_stages(sample_rate: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The two BS.1770 pre-filters (high shelf, then high pass), re-derived for any sample rate."""
    # High shelf (head effect); parameters from the standard's 48 kHz design, via the bilinear transform.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / sample_rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    b1 = np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    a1 = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    # High pass (RLB weighting).
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / sample_rate)
    a0 = 1 + k / q + k * k
    b2 = np.array([1.0, -2.0, 1.0])
    a2 = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return (b1, b2), (a1, a2)


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``[samples]`` or ``[samples, channels]`` audio.

    Channels are weighted 1.0 (the standard's weights for L, R and C). Returns -inf for audio
    that is silent or shorter than one 400 ms block.
    """
    # Two float32 biquads (second-order sections, stable with the 38 Hz high-pass's poles near the
    # unit circle) move the result by < 0.01 LU against float64; the block sums stay float64.
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    block = int(round(0.4 * sample_rate))
    step = int(round(0.1 * sample_rate))
    if x.shape[0] < block:
        return float("-inf")
    y = signal.sosfilt(_k_weighting_sos(sample_rate).astype(np.float32), x, axis=0)
    # Mean square per 400 ms block with 75% overlap, via a cumulative sum (O(n)).
    csum = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(np.square(y, dtype=np.float64), axis=0)])
    starts = np.arange(0, y.shape[0] - block + 1, step)
    z = (csum[starts + block] - csum[starts]) / block  # [blocks, channels]
    return _gated_loudness(z.sum(axis=1))


def _gated_loudness(power: np.ndarray) -> float:
    """BS.1770-4 gating of 400 ms block powers (absolute, then relative gate), in LUFS."""
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10 * np.log10(power)
    gated = power[lk > _ABS_GATE_LUFS]
    if gated.size == 0:
        return float("-inf")
    rel = -0.691 + 10 * np.log10(gated.mean()) + _REL_GATE_LU
    with np.errstate(divide="ignore"):
        gated = gated[(-0.691 + 10 * np.log10(gated)) > rel]
    if gated.size == 0:
        return float("-inf")
    return float(-0.691 + 10 * np.log10(gated.mean()))


class LoudnessMeter:
    """Integrated loudness of audio fed in blocks, in memory independent of the audio's length.

    The filter state carries across blocks and 100 ms step energies are kept (a few numbers per
    second); 400 ms blocks are four consecutive steps, so the result equals
    :func:`integrated_loudness` wherever 0.4 s is exactly four 0.1 s steps in samples (all common
    rates) and differs by a sample's rounding elsewhere.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.sample_rate = sample_rate
        self.step = int(round(0.1 * sample_rate))
        sos = _k_weighting_sos(sample_rate).astype(np.float32)
        self._sos = sos
        self._zi = np.zeros((sos.shape[0], 2, channels), dtype=np.float32)
        self._steps: list[float] = []
        self._carry = np.zeros(0, dtype=np.float64)  # squared samples (summed over channels) of an unfinished step

    def add(self, block: np.ndarray) -> None:
        """Feed ``[samples, channels]`` float audio."""
        y, self._zi = signal.sosfilt(self._sos, np.asarray(block, dtype=np.float32), axis=0, zi=self._zi)
        sq = np.concatenate([self._carry, np.square(y, dtype=np.float64).sum(axis=1)])
        n = (sq.shape[0] // self.step) * self.step
        if n:
            self._steps.extend(sq[:n].reshape(-1, self.step).sum(axis=1).tolist())
        self._carry = sq[n:]

    def result(self) -> float:
        """Integrated loudness in LUFS (-inf for silence or less than one 400 ms block)."""
        steps = np.asarray(self._steps)
        if steps.shape[0] < 4:
            return float("-inf")
        power = (steps[:-3] + steps[1:-2] + steps[2:-1] + steps[3:]) / (4 * self.step)
        return _gated_loudness(power)


def normalize_gain(audio: np.ndarray, sample_rate: int, target_lufs: float, peak: float = 0.99) -> tuple[np.ndarray, float]:
    """Scale audio to ``target_lufs``, limiting the gain so the peak stays below ``peak``.

    Returns:
        The scaled float32 audio and the applied gain in dB (0 for silent audio).
    """
    loud = integrated_loudness(audio, sample_rate)
    if not np.isfinite(loud):
        return audio.astype(np.float32, copy=False), 0.0
    gain_db = target_lufs - loud
    top = float(np.max(np.abs(audio)))
    if top > 0:
        gain_db = min(gain_db, 20 * np.log10(peak / top))
    gain = 10 ** (gain_db / 20)
    return (audio * gain).astype(np.float32), float(gain_db)
