"""EnCodec encoder features (continuous, before quantisation) as FAD embeddings.

Computed through transformers' ``EncodecModel`` exactly as frechet-audio-distance 0.3.4 does with
the original ``encodec`` package: the encoder runs on the whole clip, and each latent frame
(75 per second at 24 kHz, 150 at 48 kHz) is one 128-D row.

* ``24k``: mono mix (mean of channels), resampled to 24 kHz with resampy's kaiser_best filter, shape ``[1, 1, T]``.
* ``48k``: stereo (a mono clip is duplicated to two channels), 48 kHz, ``[1, 2, T]``. With
  ``segment="fadtk"`` the clip is cut into the model's 1 s segments, each encoded on its own
  and the frames concatenated, as fadtk 1.1.0 does; ``segment="none"`` (the default) encodes
  the whole clip as frechet-audio-distance does.

Checkpoints of the original ``encodec`` package map onto transformers' parameter names with
:func:`encodec_package_to_transformers`.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import torch

from stylecraft.errors import AudioDecodeError, CheckpointError, StylecraftError
from stylecraft.evaluate.embeddings.base import to_mono_float

# The ``encodec`` package and audiocraft's EnCodec share their parameter names, so one renaming
# serves both.
from stylecraft.models.audiocraft_keys import encodec_to_transformers as encodec_package_to_transformers

__all__ = ["EncodecEmbedding", "encodec_config", "encodec_package_to_transformers"]


def encodec_config(variant: str, tiny: bool = False) -> Any:
    """transformers ``EncodecConfig`` of the published 24 kHz or 48 kHz model (or a tiny one).

    Args:
        variant: ``"24k"`` or ``"48k"``.
        tiny: Fewer filters and one LSTM layer, for offline tests.
    """
    from transformers import EncodecConfig

    if variant not in ("24k", "48k"):
        raise StylecraftError(f"EnCodec variant must be 24k or 48k, got {variant!r}")
    kwargs: dict[str, Any] = {}
    if variant == "48k":
        kwargs = dict(
            sampling_rate=48000, audio_channels=2, normalize=True, chunk_length_s=1.0, overlap=0.01,
            norm_type="time_group_norm", use_causal_conv=False, target_bandwidths=[3.0, 6.0, 12.0, 24.0],
        )
    if tiny:
        kwargs.update(num_filters=4, hidden_size=128, num_lstm_layers=1, codebook_size=16)
    return EncodecConfig(**kwargs)


def _resample(mono: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return mono
    from stylecraft.evaluate.embeddings.resample import resample_kaiser_best

    return resample_kaiser_best(mono, sr_in, sr_out)


class EncodecEmbedding:
    """``encodec-24k`` / ``encodec-48k``: 128-D EnCodec encoder frames (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        weights_id: str,
        variant: str = "24k",
        segment: str = "none",
        name: str | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        """Wrap a transformers ``EncodecModel`` (only its encoder is used).

        Args:
            model: The model, weights loaded.
            weights_id: What the weights are (hashes or ``random:...``), recorded in settings.
            variant: ``"24k"`` or ``"48k"``.
            segment: ``"none"`` (whole clip, frechet-audio-distance) or ``"fadtk"`` (1 s segments
                for the 48 kHz model, fadtk).
            name: Registry name (default ``encodec-<variant>``).
            device: Torch device (default: CUDA when available).
        """
        if segment not in ("none", "fadtk"):
            raise StylecraftError(f"EnCodec segment mode must be 'none' or 'fadtk', got {segment!r}")
        self.variant = variant
        self.segment = segment
        self.name = name or f"encodec-{variant}"
        self.weights_id = weights_id
        self.sample_rate = 24000 if variant == "24k" else 48000
        self.channels = 1 if variant == "24k" else 2
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        if int(model.config.sampling_rate) != self.sample_rate or int(model.config.audio_channels) != self.channels:
            raise CheckpointError(
                f"EnCodec model is {model.config.sampling_rate} Hz / {model.config.audio_channels} ch, "
                f"the {variant} embedding needs {self.sample_rate} Hz / {self.channels} ch"
            )

    @classmethod
    def preset(cls, variant: str = "24k", tiny: bool = True, seed: int = 0, **kwargs: Any) -> EncodecEmbedding:
        """A randomly initialised model (deterministic in ``seed``) for tests and parity runs."""
        from transformers import EncodecModel

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = EncodecModel(encodec_config(variant, tiny=tiny))
        size = "tiny" if tiny else "full"
        kwargs.setdefault("name", f"encodec-{variant}-{size}" if tiny else None)
        return cls(model, weights_id=f"random:{size}:seed{seed}", variant=variant, **kwargs)

    @classmethod
    def from_registry(cls, variant: str = "24k", **kwargs: Any) -> EncodecEmbedding:
        """Load ``facebook/encodec_24khz`` / ``_48khz`` fetched with ``stylecraft fetch encodec-24khz``.

        Raises:
            ModelNotFoundError: If the weights are not on this machine (the message names the fetch).
        """
        from transformers import EncodecModel

        from stylecraft.artifacts import sha256_file
        from stylecraft.models.loading import resolve_folder

        name = "encodec-24khz" if variant == "24k" else "encodec-48khz"
        folder = resolve_folder(name)
        assert folder is not None  # registry names never resolve to a preset
        model = EncodecModel.from_pretrained(folder)
        files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
        weights_id = "sha256:" + ",".join(sha256_file(f) for f in files)
        return cls(model, weights_id=weights_id, variant=variant, **kwargs)

    def settings(self) -> dict[str, Any]:
        """Everything that changes the numbers, including the weights' hashes."""
        return {
            "name": self.name,
            "version": 1,
            "weights": self.weights_id,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "mono": "mean of channels" if self.channels == 1 else "mono duplicated to stereo",
            "resample": f"polyphase resampy-{importlib.metadata.version('resampy')} kaiser_best",
            "layer": "encoder output (before quantisation)",
            "segment": self.segment,
            "frame_rate": self.sample_rate // int(np.prod(self.model.config.upsampling_ratios)),
            "transformers": importlib.metadata.version("transformers"),
            "torch": torch.__version__,
        }

    def _input(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        audio = np.asarray(audio)
        if self.channels == 1:
            x = _resample(to_mono_float(audio, sample_rate), sample_rate, self.sample_rate)[None, :]
        else:
            to_mono_float(audio, sample_rate)  # the same validation as every embedding
            stereo = audio.astype(np.float32)
            if stereo.ndim == 1:
                stereo = stereo[:, None]
            if stereo.shape[1] == 1:
                stereo = np.repeat(stereo, 2, axis=1)
            elif stereo.shape[1] > 2:
                raise AudioDecodeError(f"the 48 kHz EnCodec embedding takes mono or stereo, got {stereo.shape[1]} channels")
            x = _resample(stereo, sample_rate, self.sample_rate).T
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]  # [1, C, T]

    @torch.inference_mode()
    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embed one clip.

        Returns:
            float32 ``[frames, 128]``.

        Raises:
            AudioDecodeError: If the clip is empty, non-finite, or too short for one frame.
        """
        x = self._input(audio, sample_rate).to(self.device)
        hop = int(np.prod(self.model.config.upsampling_ratios))
        if x.shape[-1] < hop:
            raise AudioDecodeError(f"clip of {x.shape[-1]} samples is shorter than one EnCodec frame ({hop})")
        if self.segment == "fadtk" and self.model.config.chunk_length is not None:
            seg = int(self.model.config.chunk_length)
            parts = [self.model.encoder(x[:, :, o : o + seg]) for o in range(0, x.shape[-1], seg)]
            emb = torch.cat([p[0].transpose(0, 1) for p in parts])
        else:
            emb = self.model.encoder(x)[0].transpose(0, 1)  # [frames, 128]
        return emb.float().cpu().numpy()
