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


def write_overview(folder: Path, rows: list[dict[str, Any]], sample_rate: int, path: Path) -> Path | None:
    """One log-mel row per file (dashed lines: window boundaries; dotted: end of the seed riff)."""
    if not rows:
        return None
    import librosa
    import librosa.display
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
        melspec = librosa.feature.melspectrogram(y=y, sr=sample_rate, n_fft=1024, hop_length=512, n_mels=64)
        db = librosa.power_to_db(melspec, ref=1.0, top_db=None)
        img = librosa.display.specshow(
            db, sr=sample_rate, hop_length=512, x_axis="time", y_axis="mel", ax=ax, vmin=-80, vmax=20, cmap="magma"
        )
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
