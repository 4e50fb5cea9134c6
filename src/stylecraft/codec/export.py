"""The codec's outputs: a transformers ``EncodecModel`` folder, audiocraft's compression checkpoint
and the loss curves.

``<run>/codec/model/`` (``config.json``, ``model.safetensors``, ``stylecraft.json`` with the
training facts and the sha256 of every file) loads with ``EncodecModel.from_pretrained`` and by
stylecraft anywhere a codec or ``model.codec`` is named; ``<run>/codec/audiocraft/
compression_state_dict.bin`` is the same weights in audiocraft's format (``CompressionModel``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from stylecraft.artifacts import atomic_path, atomic_write_json, files_sha256, replace_dir

PROVENANCE = "stylecraft.json"
AUDIOCRAFT_FILE = "compression_state_dict.bin"


def export_codec(codec: Any, root: Path, cfg: Any, facts: dict[str, Any]) -> dict[str, Any]:
    """Write ``root/model`` and ``root/audiocraft`` (each built beside its name and renamed)."""
    import transformers
    from omegaconf import OmegaConf

    from stylecraft.models.audiocraft import compression_package

    out = root / "model"
    tmp = out.with_name(".model.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    codec.save_pretrained(tmp, safe_serialization=True)
    conf = codec.config
    prov = {
        "kind": "encodec", "architecture": str(cfg.codec.architecture), "config_overrides": dict(cfg.codec.config),
        "sample_rate": int(conf.sampling_rate), "frame_rate": int(conf.frame_rate),
        "codebooks": int(conf.num_quantizers), "codebook_size": int(conf.codebook_size),
        "bitrate_kbps": round(conf.num_quantizers * conf.codebook_nbits * conf.frame_rate / 1000, 4),
        "training": OmegaConf.to_container(cfg.codec, resolve=True), **facts,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "files": files_sha256(tmp),
    }
    atomic_write_json(tmp / PROVENANCE, prov)
    replace_dir(tmp, out)
    ac = root / "audiocraft"
    ac.mkdir(parents=True, exist_ok=True)
    with atomic_path(ac / AUDIOCRAFT_FILE) as p:
        torch.save(compression_package(codec), p)
    return {"codec_model": str(out), "audiocraft": str(ac / AUDIOCRAFT_FILE), "bitrate_kbps": prov["bitrate_kbps"]}


def plot_codec_losses(metrics: list[dict[str, Any]], path: Path) -> Path:
    """Training and held-out reconstruction losses, and code usage, over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    steps = [r["step"] for r in metrics]
    for key in ("mel", "stft"):
        axes[0].plot(steps, [r[key] for r in metrics], lw=1, label=f"train {key}")
    val = [r for r in metrics if "val_mel" in r]
    for key in ("val_mel", "val_stft"):
        if val:
            axes[0].plot([r["step"] for r in val], [r[key] for r in val], "o-", lw=1.2, label=key.replace("_", " "))
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].set_title("reconstruction")
    axes[0].grid(alpha=0.3)
    axes[0].legend()
    usage = [r["usage"] for r in metrics if "usage" in r]
    for k in range(len(usage[0]) if usage else 0):
        axes[1].plot([r["step"] for r in metrics if "usage" in r], [u[k] for u in usage], lw=1, label=f"codebook {k}")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("code perplexity / codebook size")
    axes[1].set_title("code usage per batch")
    axes[1].grid(alpha=0.3)
    if usage:
        axes[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
