"""Outlier detector: windows and tracks that do not belong in the catalogue, flagged before training.

Every window is described by the weights-free MFCC embedding (:class:`MfccEmbedding`): the mean of
its 0.96 s blocks (80 values) and the spread of the first 20 over the blocks, or, with
``embedding`` set to a learned one (e.g. ``musicnn-mtt``), the mean of that embedding's rows inside
the window (:func:`learned_window_features`); plus spectral texture and damage measures
(:func:`window_embeddings`). The embeddings are standardised per dimension (median and MAD)
and a Gaussian with a Ledoit-Wolf shrunk covariance is fitted robustly (the farthest ``TRIM`` of
windows are left out of each refit, so a handful of intruders cannot pull the model towards
themselves); distances are Mahalanobis distances under it. Then:

* a **window** is an outlier when its Mahalanobis distance is far above the other windows'
  (robust z-score over windows > ``window_z``): noise bursts, dropouts, corrupted passages;
* a **track** is an outlier when its score (:func:`track_scores`: the median distance of its
  windows and the distance of its centroid from the other tracks', as robust z-scores) is above
  ``track_z``: noise files, another artist, corrupted or mislabelled audio;
* a track is **clipped** or has **dropouts** when its share of samples at the ceiling, or in runs
  of digital zeros, passes ``clipped_share`` / ``dropout_share`` (:func:`damage`), and **noisy or
  distorted** when its spectral flatness is ``flatness_z`` robust z-scores above the catalogue's;
* a track is a **near duplicate** of another when their coarse log-mel envelopes (10 frames/s,
  gain and equalisation removed) correlate at ``duplicate_corr`` or more at some time shift, over
  the overlap (re-encodes, resampled, trimmed or quieter copies). Exact copies never get this far:
  ingest rejects files with the same sha256.

A window or track is also **noise-like** when its spectral coherence (:func:`texture`) is below
``noise_coherence``: MFCC means put broadband noise in the middle of a varied catalogue, where
no distance from the centre can see it, while its spectrum, unlike music's, does not carry over
from one frame to the next.

Flags are statistics, not proof, so the default is to report (``outliers/report.json`` and
``outliers/report.png``); ``outliers.exclude=true`` leaves flagged windows out of
``windows.jsonl``. With fewer than ``MIN_TRACKS`` tracks there is no "rest of the catalogue" to
compare with and only duplicates are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.artifacts import atomic_path, atomic_write_json
from stylecraft.data.duplicates import find_duplicates, fingerprint
from stylecraft.data.manifest import Window
from stylecraft.progress import progress_iter

MIN_TRACKS = 5
TRIM = 0.2  # share of windows left out of each robust refit
REFITS = 3


@dataclass(frozen=True)
class OutlierParams:
    track_z: float = 3.5
    window_z: float = 4.0
    duplicate_corr: float = 0.9  # fingerprint correlation from which two tracks are copies
    noise_coherence: float = 0.1  # spectral coherence below which audio is noise-like (music: 0.2-0.7)
    clipped_share: float = 0.02  # share of samples within 2 dB of the peak from which a track is clipped
    dropout_share: float = 0.02  # share of samples in digital-zero gaps from which a track has dropouts
    flatness_z: float = 2.0  # robust z of a track's spectral flatness over tracks from which it is noisy or distorted
    embedding: str = "mfcc"  # window features: "mfcc" (no weights) or a learned embedding such as "musicnn-mtt"


@dataclass
class OutlierReport:
    """What was flagged and why; ``window_scores`` and ``track_scores`` are robust z-scores."""

    n_tracks: int
    n_windows: int
    flagged_tracks: dict[str, str] = field(default_factory=dict)  # track id -> reason
    flagged_windows: dict[str, str] = field(default_factory=dict)  # window id -> reason
    track_scores: dict[str, float] = field(default_factory=dict)
    window_scores: dict[str, float] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)  # track id -> track id it copies
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


TEXTURE_DIMS = 3


def texture(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Three "is this music at all" numbers for a mono clip: ``[coherence, coherence at 4 frames, log flatness]``.

    Coherence is the mean correlation between the log spectra (minus their mean over the clip) of
    frames 1 and 4 hops apart: sustained notes keep it high (0.3-0.7 on real music), noise of any
    colour and bit-rot drive it to about 0. MFCC means alone put noise in the middle of a
    varied catalogue, where a distance from the centre cannot see it.
    """
    import scipy.signal

    nper = 1024 if sample_rate >= 16000 else 512
    _, _, z = scipy.signal.stft(audio.astype(np.float32), fs=sample_rate, nperseg=nper, noverlap=nper // 2)
    p = np.log(np.abs(z).astype(np.float64) ** 2 + 1e-10)  # [bins, frames]
    dev = p - p.mean(axis=1, keepdims=True)
    dev -= dev.mean(axis=0, keepdims=True)
    out = []
    for lag in (1, 4):
        a, b = dev[:, :-lag], dev[:, lag:]
        if a.shape[1] == 0:
            out.append(0.0)
            continue
        out.append(float(np.mean(np.sum(a * b, 0) / np.sqrt(np.sum(a * a, 0) * np.sum(b * b, 0) + 1e-12))))
    out.append(float(np.mean(p.mean(axis=0) - np.log(np.exp(p).mean(axis=0) + 1e-10))))
    return np.array(out)


DAMAGE_DIMS = 2
EXTRA_DIMS = TEXTURE_DIMS + DAMAGE_DIMS  # trailing columns of an embedding row that are not whitened
SLOW_DIMS = 20  # MFCCs whose spread over a window's blocks is kept


DROPOUT_S = 0.010  # shortest run of digital zeros counted as a dropout


def damage(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Two "is this recording damaged" numbers for a mono float clip: ``[clipped share, dropout share]``.

    Clipped share: samples within 2 dB of the clip's peak. A clipped recording sits on its
    ceiling (still near it after resampling rounds the flat tops); music peaks in a handful of
    samples. Dropout share: samples in runs of exact digital zeros of ``DROPOUT_S`` (10 ms) or
    more, the trace of lost blocks; recordings keep some noise floor.
    """
    a = np.abs(np.asarray(audio, dtype=np.float32))
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0.0:
        return np.array([0.0, 1.0])
    clipped = float(np.mean(a >= 0.79 * peak))
    zero = np.concatenate([[0], (a == 0.0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))  # run starts and ends alternate
    runs = edges[1::2] - edges[0::2]
    min_run = max(1, round(DROPOUT_S * sample_rate))
    return np.array([clipped, float(runs[runs >= min_run].sum()) / a.size])


def window_embeddings(run_dir: str | Path, windows: list[Window], sample_rate: int, progress: bool = True,
                      embedding: str = "mfcc") -> np.ndarray:
    """Features of every window: ``[windows, D + 5]``.

    With ``embedding="mfcc"`` (no weights needed), ``D = 80 + 20``: the MFCC embedding's mean over
    the window's 0.96 s blocks (80) and the spread over blocks of its first 20 values (how the
    timbre moves within the window: a steady drone, a loop or noise barely moves). With a learned
    embedding (e.g. ``musicnn-mtt``, see :func:`learned_window_features`), ``D`` is its width.
    Then :func:`texture` (3) and :func:`damage` (2).
    """
    from stylecraft.evaluate.embeddings import MfccEmbedding

    learned = None if embedding == "mfcc" else learned_window_features(run_dir, windows, sample_rate, embedding, progress)
    emb = MfccEmbedding()
    width = emb.dim + SLOW_DIMS if learned is None else learned.shape[1]
    out = np.zeros((len(windows), width + EXTRA_DIMS), dtype=np.float64)
    if learned is not None:
        out[:, :width] = learned
    by_track = _windows_by_track(windows)
    for tid in progress_iter(list(by_track), "outliers", enabled=progress):
        pcm = track_pcm(Path(run_dir), tid)  # memory-mapped: only the windows are read
        for i in by_track[tid]:
            seg = _window_audio(pcm, windows[i], sample_rate)
            if learned is None:
                blocks = emb.embed(seg, sample_rate)  # [blocks, 80]
                out[i, : emb.dim] = blocks.mean(axis=0)
                out[i, emb.dim : emb.dim + SLOW_DIMS] = blocks[:, :SLOW_DIMS].std(axis=0)
            out[i, -EXTRA_DIMS : -DAMAGE_DIMS] = texture(seg, sample_rate)
            out[i, -DAMAGE_DIMS:] = damage(seg, sample_rate)
    return out


def _windows_by_track(windows: list[Window]) -> dict[str, list[int]]:
    """Indices of the windows of each track, in first-seen track order."""
    by_track: dict[str, list[int]] = {}
    for i, w in enumerate(windows):
        by_track.setdefault(w.track_id, []).append(i)
    return by_track


def _window_audio(pcm: np.ndarray, w: Window, sample_rate: int) -> np.ndarray:
    """One window of a track's int16 samples, as float32 in [-1, 1]."""
    start = int(round(w.start_s * sample_rate))
    return pcm[start : start + int(round(w.duration_s * sample_rate))].astype(np.float32) / 32767.0


CHUNK_S = 300.0  # audio embedded at a time by learned_window_features: bounds memory on long tracks


def learned_window_features(run_dir: str | Path, windows: list[Window], sample_rate: int, embedding: str,
                            progress: bool = True) -> np.ndarray:
    """Mean of a learned embedding's rows over each window: ``[windows, D]``.

    An embedding whose rows cover fixed spans (``row_seconds``, e.g. musicnn's 3 s patches) is run
    once per track, a few minutes at a time (with a row of context on each side, so the rows equal
    those of one pass over the whole track), and each window averages the rows that lie inside it
    (or the row nearest its centre when none does), so overlapping windows cost nothing extra.
    Other embeddings are run on each window's audio.

    Raises:
        ModelNotFoundError: If the embedding's weights are not on this machine.
    """
    from stylecraft.evaluate.embeddings import get_embedding

    emb = get_embedding(embedding)
    row_s = getattr(emb, "row_seconds", None)
    by_track = _windows_by_track(windows)
    rows_out: list[np.ndarray | None] = [None] * len(windows)
    for tid in progress_iter(list(by_track), f"outliers ({embedding})", enabled=progress):
        pcm = track_pcm(Path(run_dir), tid)
        if row_s is None:
            for i in by_track[tid]:
                rows_out[i] = emb.embed(_window_audio(pcm, windows[i], sample_rate), sample_rate).mean(axis=0)
            continue
        rows = []
        per_chunk = max(1, int(CHUNK_S // row_s))  # whole rows per chunk
        n_rows = int(pcm.shape[0] // (row_s * sample_rate))

        def at(r: int) -> int:
            return int(round(r * row_s * sample_rate))

        for r0 in range(0, n_rows, per_chunk):
            r1 = min(n_rows, r0 + per_chunk)
            # One row of audio on each side, where there is some, so that the rows kept see the same
            # samples (spectrogram frames, resampler taps) as in one pass over the whole track.
            lead = 1 if r0 > 0 else 0
            seg = np.asarray(pcm[at(r0 - lead) : at(min(n_rows + 1, r1 + 1))], dtype=np.float32) / 32767.0
            rows.append(emb.embed(seg, sample_rate)[lead : lead + r1 - r0])
        if not rows:  # a track shorter than one row: embed it padded with silence
            seg = np.zeros(int(np.ceil(row_s * sample_rate)), dtype=np.float32)
            seg[: pcm.shape[0]] = np.asarray(pcm, dtype=np.float32) / 32767.0
            rows.append(emb.embed(seg, sample_rate))
        r = np.concatenate(rows)  # [n, D]; row k covers [k * row_s, (k + 1) * row_s)
        starts = np.arange(r.shape[0]) * row_s
        for i in by_track[tid]:
            w = windows[i]
            inside = (starts >= w.start_s - 1e-6) & (starts + row_s <= w.start_s + w.duration_s + 1e-6)
            if not inside.any():
                inside = np.zeros(r.shape[0], dtype=bool)
                inside[min(r.shape[0] - 1, int((w.start_s + w.duration_s / 2) // row_s))] = True
            rows_out[i] = r[inside].mean(axis=0)
    return np.stack([np.asarray(x, dtype=np.float64) for x in rows_out])


def track_pcm(run_dir: Path, track_id: str) -> np.ndarray:
    """A segmented track's int16 samples, memory-mapped (nothing is read until sliced)."""
    from stylecraft.data.segment import track_audio_path

    return np.load(track_audio_path(run_dir, track_id), mmap_mode="r", allow_pickle=False)


def _robust_z(x: np.ndarray) -> np.ndarray:
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    return (x - med) / max(mad, 1e-9 * max(1.0, abs(float(med))))


def _ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of centred rows ``x`` ``[n, p]`` (well conditioned even when n < p)."""
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    d2 = float(np.sum((s - mu * np.eye(p)) ** 2)) / p
    b2 = float(np.sum(np.sum(x**2, axis=1) ** 2) - n * np.sum(s**2)) / (n * n * p)
    shrink = 1.0 if d2 <= 0 else min(max(b2, 0.0), d2) / d2
    return shrink * mu * np.eye(p) + (1.0 - shrink) * s


def _whiten(emb: np.ndarray) -> np.ndarray:
    """Embeddings in coordinates where a robustly fitted Gaussian is the unit sphere ``[N, D]``.

    Every direction is kept: outliers often differ from music exactly where music varies least,
    which a projection on the leading principal components would throw away.
    """
    med = np.median(emb, axis=0)
    mad = 1.4826 * np.median(np.abs(emb - med), axis=0)
    z = (emb - med) / np.maximum(mad, 1e-6)
    # Start from the windows nearest the median: a tight group of intruders fitted together with
    # the music would open up a direction of its own and mask itself.
    dz = np.sqrt((z**2).sum(axis=1))
    keep = dz <= np.quantile(dz, 1.0 - TRIM)
    out = z
    for _ in range(REFITS):
        mu = z[keep].mean(axis=0)
        vals, vecs = np.linalg.eigh(_ledoit_wolf(z[keep] - mu))
        out = (z - mu) @ vecs / np.sqrt(np.maximum(vals, 1e-9))
        d = np.sqrt((out**2).sum(axis=1))
        keep = d <= np.quantile(d, 1.0 - TRIM)
    return out


def track_scores(x: np.ndarray, track_of: np.ndarray, tids: list[str]) -> np.ndarray:
    """Score of every track ``[tracks]``: the mean of two robust z-scores of how far it lies.

    * the median distance of its windows from the catalogue's centre (a track made of unusual
      windows), and
    * the distance of its centroid (per-dimension median of its whitened windows, so that a burst
      inside a track does not move it) from the other tracks' centroids,
      standardised per dimension over tracks (a track whose windows are each plausible but
      which sits, as a whole, off to one side: another artist's orchestra, a different mix).

    Args:
        x: whitened window embeddings ``[windows, D]``; track_of: track id of each row ``[windows]``.
    """
    d = np.sqrt((x**2).sum(axis=1))
    z_med = _robust_z(np.array([np.median(d[track_of == t]) for t in tids]))
    cent = np.stack([np.median(x[track_of == t], axis=0) for t in tids])  # [tracks, D]
    med = np.median(cent, axis=0)
    mad = 1.4826 * np.median(np.abs(cent - med), axis=0)
    z_cent = _robust_z(np.sqrt((((cent - med) / np.maximum(mad, 1e-6)) ** 2).sum(axis=1)))
    # A track of few windows has a noisy median and centroid (a 15 s jingle is two or three
    # windows): its score is scaled down by the square root of its share of the typical count.
    n = np.array([np.sum(track_of == t) for t in tids], dtype=np.float64)
    return 0.5 * (z_med + z_cent) * np.minimum(1.0, np.sqrt(n / np.median(n)))


def detect_outliers(
    windows: list[Window], embeddings: np.ndarray, params: OutlierParams | None = None,
    duplicates: dict[str, str] | None = None,
) -> OutlierReport:
    """Score windows and tracks from their embeddings and flag those that do not belong.

    Args:
        duplicates: near-duplicate pairs from :func:`find_duplicates` (track id -> track it copies).
    """
    p = params or OutlierParams()
    tids = sorted({w.track_id for w in windows})
    report = OutlierReport(n_tracks=len(tids), n_windows=len(windows))
    if len(windows) < 2 or len(tids) < 2:
        report.note = "fewer than two tracks: nothing to compare"
        return report
    coherence = embeddings[:, -EXTRA_DIMS]
    dmg = embeddings[:, -DAMAGE_DIMS:]  # [windows, 2]: clipped share, dropout share
    x = _whiten(embeddings[:, :-EXTRA_DIMS])
    track_of = np.array([w.track_id for w in windows])

    # Of a pair of copies only the later one (in id order) is flagged: one copy stays.
    for t, twin in sorted((duplicates or {}).items()):
        report.duplicates[t] = twin
        report.flagged_tracks[t] = f"near duplicate of track {twin}"

    if len(tids) < MIN_TRACKS:
        report.note = f"fewer than {MIN_TRACKS} tracks: only duplicates are checked"
        return report

    d = np.sqrt((x**2).sum(axis=1))
    wz = _robust_z(d)
    tz = track_scores(x, track_of, tids)
    # Garbage blocks, aliasing and hiss all whiten the spectrum: a track far flatter than the rest.
    fz = _robust_z(np.array([np.median(embeddings[track_of == t, -EXTRA_DIMS + 2]) for t in tids]))
    report.track_scores = {t: round(float(z), 3) for t, z in zip(tids, tz, strict=True)}
    report.window_scores = {w.id: round(float(z), 3) for w, z in zip(windows, wz, strict=True)}
    for t, z in zip(tids, tz, strict=True):
        if t in report.flagged_tracks:
            continue
        mine = track_of == t
        coh = float(np.median(coherence[mine]))
        clipped, dropped = (float(v) for v in np.median(dmg[mine], axis=0))
        if coh < p.noise_coherence:
            report.flagged_tracks[t] = f"noise-like: spectral coherence {coh:.2f} < {p.noise_coherence}"
        elif clipped > p.clipped_share:
            report.flagged_tracks[t] = f"clipped: {100 * clipped:.1f}% of samples at the ceiling > {100 * p.clipped_share:g}%"
        elif dropped > p.dropout_share:
            report.flagged_tracks[t] = f"dropouts: {100 * dropped:.1f}% of samples in digital-zero gaps > {100 * p.dropout_share:g}%"
        elif fz[tids.index(t)] > p.flatness_z:
            report.flagged_tracks[t] = (f"noisy or distorted: spectral flatness {fz[tids.index(t)]:.1f} robust SDs above "
                                        f"the catalogue's > {p.flatness_z}")
        elif z > p.track_z:
            report.flagged_tracks[t] = f"unlike the rest of the catalogue (track score {z:.1f} > {p.track_z})"
    for w, z, coh in zip(windows, wz, coherence, strict=True):
        if w.track_id in report.flagged_tracks:
            report.flagged_windows[w.id] = f"track flagged: {report.flagged_tracks[w.track_id]}"
        elif coh < p.noise_coherence:
            report.flagged_windows[w.id] = f"noise-like: spectral coherence {coh:.2f} < {p.noise_coherence}"
        elif z > p.window_z:
            report.flagged_windows[w.id] = f"unlike the rest of the catalogue (window score {z:.1f} > {p.window_z})"
    return report


def plot_report(report: OutlierReport, windows: list[Window], path: str | Path, params: OutlierParams | None = None) -> Path:
    """Track scores (bars) and window scores along each track, flagged ones in red, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), dpi=90, layout="constrained")
    tids = sorted(report.track_scores) or sorted({w.track_id for w in windows})
    scores = [report.track_scores.get(t, 0.0) for t in tids]
    colors = ["tab:red" if t in report.flagged_tracks else "tab:blue" for t in tids]
    ax1.bar(range(len(tids)), scores, color=colors)
    p = params or OutlierParams()
    ax1.axhline(p.track_z, color="grey", ls="--", lw=1)
    ax1.set_ylabel("track score (robust z)")
    ax1.set_xticks(range(len(tids)), [t[:6] for t in tids], rotation=90, fontsize=6)
    ax1.set_title(f"{len(report.flagged_tracks)} of {report.n_tracks} tracks flagged (red)", fontsize=10, loc="left")
    xs = np.arange(len(windows))
    ws = np.array([report.window_scores.get(w.id, 0.0) for w in windows])
    flagged = np.array([w.id in report.flagged_windows for w in windows], dtype=bool)
    ax2.scatter(xs[~flagged], ws[~flagged], s=4, c="tab:blue", label="kept")
    ax2.scatter(xs[flagged], ws[flagged], s=6, c="tab:red", label="flagged")
    ax2.axhline(p.window_z, color="grey", ls="--", lw=1)
    ax2.set_xlabel("window (in track order)")
    ax2.set_ylabel("window score (robust z)")
    ax2.set_title(f"{len(report.flagged_windows)} of {report.n_windows} windows flagged", fontsize=10, loc="left")
    ax2.legend(fontsize=8, loc="upper left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def check_run(
    run_dir: str | Path, windows: list[Window], sample_rate: int, params: OutlierParams | None = None, progress: bool = True
) -> OutlierReport:
    """Detect outliers in a segmented run; write ``outliers/report.json`` and ``outliers/report.png``."""
    run = Path(run_dir)
    p = params or OutlierParams()
    prints = {t: fingerprint(track_pcm(run, t), sample_rate) for t in sorted({w.track_id for w in windows})}
    dups = find_duplicates(prints, p.duplicate_corr)
    report = detect_outliers(windows, window_embeddings(run, windows, sample_rate, progress, p.embedding), params, dups)
    atomic_write_json(run / "outliers" / "report.json", report.to_json())
    plot_report(report, windows, run / "outliers" / "report.png", params)
    return report
