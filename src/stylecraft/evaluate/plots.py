"""Pictures of evaluation results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def novelty_plot(record: dict[str, Any], path: str | Path) -> Path | None:
    """eval/diversity.png: per embedding, each clip's distance to its nearest training window.

    Generated clips (top of each panel) beside held-out clips (bottom); the dashed line is the
    nearest any held-out clip comes, below which a generated clip is flagged as a likely copy.
    The title gives the mean pairwise distance within each set (diversity).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, row) for name, row in record["by_embedding"].items() if "generated_distances" in row.get("novelty", {})]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.9 * len(panels) + 0.4), dpi=90, squeeze=False,
                             layout="constrained")
    for ax, (name, row) in zip(axes[:, 0], panels, strict=True):
        nov, div = row["novelty"], row.get("diversity", {})
        for y, key, colour in ((1, "generated_distances", "tab:red"), (0, "heldout_distances", "tab:blue")):
            values = np.asarray(nov[key])
            jitter = np.linspace(-0.15, 0.15, values.size) if values.size > 1 else np.zeros(1)
            ax.scatter(values, y + jitter, s=14, color=colour, alpha=0.7)
        ax.axvline(nov["threshold"], color="k", ls="--", lw=1)
        ax.set_yticks([0, 1], ["held-out", "generated"])
        title = f"{name}: distance to the nearest training window ({len(nov['flagged'])} flagged)"
        if "ratio" in div:
            title += f"; diversity {div['generated']:.2f} generated vs {div['reference']:.2f} held-out"
        ax.set_title(title, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("standardised embedding distance")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
