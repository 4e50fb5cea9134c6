"""CLAP audio embeddings through transformers' ``ClapModel`` (e.g. ``laion/larger_clap_music``).

Front end: mono mix, resampled to 48 kHz with resampy's kaiser_best filter, then one of two windowings:

* ``"fadtk"`` (default), as fadtk 1.1.0 embeds with CLAP: the clip is quantised to int16 and
  back (``x * 32767`` clipped to [-1, 1], ``/ 32767``), cut into 10 s windows every 1 s, each
  window zero-padded to 10 s; one embedding per window.
* ``"10s"``: non-overlapping 10 s windows (zero-padded), no quantisation; ten times fewer
  rows, for quick audits.

Each window goes through the model's own ``ClapFeatureExtractor`` (exactly 10 s, so its
random crops never apply; see :meth:`ClapEmbedding.embed_windows` for its ``is_longer`` rule)
and ``get_audio_features``: one projected 512-D row (for the published models) per window.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import torch

from stylecraft.errors import StylecraftError
from stylecraft.evaluate.embeddings.base import to_mono_float

__all__ = ["ClapEmbedding", "clap_windows", "tiny_clap_config"]

SAMPLE_RATE = 48_000
WINDOW = 10 * SAMPLE_RATE


def clap_windows(mono_48k: np.ndarray, windowing: str) -> np.ndarray:
    """Cut a 48 kHz mono clip into CLAP windows ``[n, 480000]`` (see the module docstring)."""
    if windowing == "fadtk":
        q = (np.clip(mono_48k, -1.0, 1.0) * 32767.0).astype(np.int16)
        x = (q / 32767.0).astype(np.float32)
        hop = SAMPLE_RATE
    elif windowing == "10s":
        x = mono_48k.astype(np.float32)
        hop = WINDOW
    else:
        raise StylecraftError(f"CLAP windowing must be 'fadtk' or '10s', got {windowing!r}")
    out = np.zeros((len(range(0, x.shape[0], hop)), WINDOW), dtype=np.float32)
    for row, start in enumerate(range(0, x.shape[0], hop)):
        chunk = x[start : start + WINDOW]
        out[row, : chunk.shape[0]] = chunk
    return out


def tiny_clap_config() -> Any:
    """A small ``ClapConfig`` with the published audio front end, for offline tests."""
    from transformers import ClapConfig

    audio = dict(
        depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1], patch_embeds_hidden_size=8, hidden_size=64,
        projection_dim=32, num_mel_bins=64, enable_fusion=True,
    )
    text = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, projection_dim=32)
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=32)


class ClapEmbedding:
    """``clap``: one CLAP audio embedding per 10 s window (see the module docstring)."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: Any,
        feature_extractor: Any,
        weights_id: str,
        windowing: str = "fadtk",
        name: str = "clap",
        device: str | torch.device | None = None,
        batch_size: int = 8,
    ) -> None:
        """Wrap a transformers ``ClapModel`` and its feature extractor.

        Args:
            model: The model, weights loaded.
            feature_extractor: Its ``ClapFeatureExtractor``.
            weights_id: What the weights are, recorded in settings.
            windowing: ``"fadtk"`` or ``"10s"``.
            name: Registry name.
            device: Torch device (default: CUDA when available).
            batch_size: Windows per forward pass.
        """
        clap_windows(np.zeros(1, dtype=np.float32), windowing)  # validates the name
        self.name = name
        self.weights_id = weights_id
        self.windowing = windowing
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.fe = feature_extractor

    @classmethod
    def preset(cls, seed: int = 0, **kwargs: Any) -> ClapEmbedding:
        """A tiny randomly initialised model (deterministic in ``seed``) for tests and parity runs."""
        from transformers import ClapFeatureExtractor, ClapModel

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ClapModel(tiny_clap_config())
        kwargs.setdefault("name", "clap-tiny")
        return cls(model, ClapFeatureExtractor(), weights_id=f"random:tiny:seed{seed}", **kwargs)

    @classmethod
    def from_registry(cls, name: str = "clap-larger-music", **kwargs: Any) -> ClapEmbedding:
        """Load a fetched CLAP model (``stylecraft fetch clap-larger-music``).

        Raises:
            ModelNotFoundError: If it is not on this machine (the message names the fetch).
        """
        from transformers import ClapFeatureExtractor, ClapModel

        from stylecraft.artifacts import sha256_file
        from stylecraft.models.loading import resolve_folder

        folder = resolve_folder(name)
        assert folder is not None
        files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
        model = ClapModel.from_pretrained(folder)
        fe = ClapFeatureExtractor.from_pretrained(folder)
        return cls(model, fe, weights_id="sha256:" + ",".join(sha256_file(f) for f in files), **kwargs)

    def settings(self) -> dict[str, Any]:
        """Everything that changes the numbers, including the weights' hashes."""
        return {
            "name": self.name,
            "version": 1,
            "weights": self.weights_id,
            "sample_rate": SAMPLE_RATE,
            "mono": "mean of channels",
            "resample": f"polyphase resampy-{importlib.metadata.version('resampy')} kaiser_best",
            "windowing": self.windowing,
            "window_s": 10.0,
            "hop_s": 1.0 if self.windowing == "fadtk" else 10.0,
            "int16_roundtrip": self.windowing == "fadtk",
            "feature_extractor": self.fe.to_dict() if hasattr(self.fe, "to_dict") else str(self.fe),
            "transformers": importlib.metadata.version("transformers"),
            "torch": torch.__version__,
        }

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Embed ``[n, 480000]`` windows; returns float32 ``[n, projection_dim]``."""
        outs = []
        for start in range(0, windows.shape[0], self.batch_size):
            batch = list(windows[start : start + self.batch_size])
            feats = self.fe(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            if "is_longer" in feats and getattr(self.fe, "truncation", None) == "fusion":
                # With "fusion", when no clip of a batch is longer than 10 s the extractor marks
                # one clip, chosen at random, as longer, so a window's embedding would depend on
                # its batch and on numpy's global RNG. A window embedded alone is always marked
                # (the only choice), so mark every window: each row then equals that.
                feats["is_longer"][:] = True
            out = self.model.get_audio_features(**{k: v.to(self.device) for k, v in feats.items()})
            emb = out.pooler_output if hasattr(out, "pooler_output") else out
            outs.append(emb.float().cpu())
        return torch.cat(outs).numpy()

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embed one clip: one row per window.

        Raises:
            AudioDecodeError: If the clip is empty or holds non-finite samples.
        """
        mono = to_mono_float(audio, sample_rate)
        if sample_rate != SAMPLE_RATE:
            from stylecraft.evaluate.embeddings.resample import resample_kaiser_best

            mono = resample_kaiser_best(mono, sample_rate, SAMPLE_RATE)
        return self.embed_windows(clap_windows(np.asarray(mono), self.windowing))
