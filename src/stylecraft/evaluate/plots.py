"""Pictures of evaluation results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stylecraft.artifacts import atomic_path


def spectrogram_grid(clips: list[tuple[str, np.ndarray]], sample_rate: int, path: str | Path) -> Path:
    """One log-mel spectrogram per ``(title, mono audio)`` row, on a shared dB scale, saved as PNG."""
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(clips), 1, figsize=(9, 2.1 * len(clips)), dpi=90, squeeze=False, sharex=True, layout="constrained"
    )
    for ax, (title, y) in zip(axes[:, 0], clips, strict=True):
        mel = librosa.feature.melspectrogram(y=y.astype(np.float32), sr=sample_rate, n_fft=1024, hop_length=512, n_mels=64)
        db = librosa.power_to_db(mel, ref=1.0, top_db=None)
        img = librosa.display.specshow(
            db, sr=sample_rate, hop_length=512, x_axis="time", y_axis="mel", ax=ax, vmin=-80, vmax=20, cmap="magma"
        )
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(img, ax=axes[:, 0].tolist(), format="%+.0f dB", fraction=0.02)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
