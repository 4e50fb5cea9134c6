"""``overview.png``: log-mel spectrograms of a generate call's files, long-form windows marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.artifacts import atomic_path
from stylecraft.audio import io as audio_io

MAX_ROWS = 16  # a picture, not an archive: more files than this are summarised by the first ones


def window_boundaries_s(row: dict[str, Any]) -> tuple[list[float], float]:
    """(seconds where each long-form window's new frames begin after the first, seed riff end)."""
    lf = row.get("long_form") or {}
    fr = float(lf.get("frame_rate") or 0)
    if not fr:
        return [], 0.0
    windows = lf.get("windows", [])
    starts = [(w["start_frame"] + w["prompt_frames"]) / fr for w in windows[1:]]
    return starts, float(row.get("seed_frames", 0)) / fr


def log_mel(y: np.ndarray, sample_rate: int, n_fft: int = 1024, hop: int = 512, n_mels: int = 64) -> np.ndarray:
    """Log-mel power spectrogram ``[n_mels, frames]`` in dB (Slaney mel scale, as librosa's default).

    Built from torch's STFT and transformers' mel filter bank, both already loaded by generation,
    rather than librosa, whose first import costs seconds.
    """
    import torch
    from transformers.audio_utils import mel_filter_bank

    x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    if x.shape[0] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[0]))
    spec = torch.stft(
        x, n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True, pad_mode="constant",
        return_complex=True,
    )  # zero-padded centring, as librosa's melspectrogram
    power = spec.abs().pow(2).numpy()  # [bins, frames]
    bank = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
        max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney",
    )  # [bins, n_mels]
    return 10.0 * np.log10(np.maximum(bank.T @ power, 1e-10))


def write_overview(folder: Path, rows: list[dict[str, Any]], sample_rate: int, path: Path) -> Path | None:
    """One log-mel row per file (dashed lines: window boundaries; dotted: end of the seed riff)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = rows[:MAX_ROWS]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(10, 1.9 * len(shown) + 0.6), dpi=90, squeeze=False, layout="constrained"
    )
    img = None
    for ax, row in zip(axes[:, 0], shown, strict=True):
        audio, sr = audio_io.load(folder / str(row["file"]))
        y = audio_io.resample(audio_io.to_mono(audio), sr, sample_rate).astype(np.float32)
        db = log_mel(y, sample_rate)  # [64, frames]
        img = ax.imshow(
            db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=20,
            extent=(0.0, y.shape[0] / sample_rate, 0.0, float(db.shape[0])),
        )
        ax.set_ylabel("mel band", fontsize=7)
        starts, seed_end = window_boundaries_s(row)
        for t in starts:
            ax.axvline(t, color="cyan", linestyle="--", linewidth=1.0)
        if seed_end > 0:
            ax.axvline(seed_end, color="white", linestyle=":", linewidth=1.2)
        best = row.get("best_of") or {}
        extra = f"  best of {best['n']}" if best.get("n", 1) > 1 else ""
        ax.set_title(f"{row['file']}  ({len(starts) + 1} window(s)){extra}", fontsize=8, loc="left")
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel("time (s)   -- window boundary   ·· end of seed riff")
    if len(rows) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(rows)} files", fontsize=9)
    if img is not None:
        fig.colorbar(img, ax=axes[:, 0].tolist(), format="%+.0f dB", fraction=0.02)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
