"""Named EnCodec configurations, from a tiny test size to MusicGen's 32 kHz codec.

Each is a transformers :class:`~transformers.EncodecConfig`; a recipe picks one by name
(``codec.architecture``) and may override any of its fields (``codec.config``).
"""

from __future__ import annotations

from typing import Any

from transformers import EncodecConfig

from stylecraft.errors import ConfigError

_COMMON: dict[str, Any] = {
    "audio_channels": 1, "normalize": False, "use_causal_conv": False, "chunk_length_s": None, "overlap": None,
    "num_residual_layers": 1,
}

ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Tests: 16 kHz, 50 Hz frames, 2 codebooks of 64 codes (0.6 kbit/s), a few thousand weights.
    "tiny": {"sampling_rate": 16000, "num_filters": 4, "upsampling_ratios": [5, 4, 4, 4], "codebook_size": 64,
             "codebook_dim": 16, "hidden_size": 16, "num_lstm_layers": 1, "target_bandwidths": [0.6]},
    # stylecraft-mini: MusicGen's layout (32 kHz, 50 Hz, 4 codebooks of 2048 codes = 2.2 kbit/s) at a
    # quarter of its filters, so it trains on a CPU in hours and encodes ~90x faster than realtime there.
    "mini": {"sampling_rate": 32000, "num_filters": 16, "upsampling_ratios": [8, 5, 4, 4], "codebook_size": 2048,
             "codebook_dim": 128, "hidden_size": 128, "num_lstm_layers": 1, "target_bandwidths": [2.2]},
    # facebook/encodec_32khz, the codec of MusicGen.
    "musicgen-32khz": {"sampling_rate": 32000, "num_filters": 64, "upsampling_ratios": [8, 5, 4, 4],
                       "codebook_size": 2048, "codebook_dim": 128, "hidden_size": 128, "num_lstm_layers": 2,
                       "target_bandwidths": [2.2]},
}


def codec_config(architecture: str, overrides: dict[str, Any] | None = None) -> EncodecConfig:
    """The EncodecConfig of a named architecture with ``overrides`` applied.

    Raises:
        ConfigError: an unknown architecture or config field, or a codebook dimension that differs
            from the latent size (transformers' quantizer has no projection between them).
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown codec.architecture '{architecture}' (known: {', '.join(ARCHITECTURES)})")
    kwargs = {**_COMMON, **ARCHITECTURES[architecture]}
    known = set(EncodecConfig().to_dict())
    unknown = sorted(k for k in (overrides or {}) if k not in known)
    if unknown:
        raise ConfigError(f"codec.config has unknown EncodecConfig field(s) {', '.join(unknown)}")
    kwargs.update(overrides or {})
    if kwargs.get("codebook_dim", kwargs["hidden_size"]) != kwargs["hidden_size"]:
        raise ConfigError("codec.config: codebook_dim must equal hidden_size (the quantizer works on the latent)")
    return EncodecConfig(**kwargs)
