"""Round trips through a codec: encode files to codes and decode them again, to hear what it keeps.

Audio is mixed to the codec's channels, resampled to its rate and loudness-normalised as the
segment stage prepares training audio (the level codecs here are trained at); the decoded audio
gets the input's level back. Long files are coded in chunks with context on either side, so
memory stays bounded and the chunk edges are not heard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylecraft.audio import io as audio_io
from stylecraft.audio.loudness import normalize_gain
from stylecraft.errors import StylecraftError
from stylecraft.progress import make_progress

CHUNK_S = 30.0
CONTEXT_S = 1.0


def _frames(codec: Any) -> tuple[int, int]:
    """(hop in samples, frames per second) of a codec."""
    hop = int(np.prod(codec.config.upsampling_ratios))
    return hop, int(codec.config.frame_rate)


@torch.no_grad()
def encode_chunked(codec: Any, audio: np.ndarray) -> torch.Tensor:
    """Codes ``[K, T]`` of mono audio ``[samples]`` at the codec's rate, 30 s at a time with 1 s of context."""
    hop, rate = _frames(codec)
    n_frames = -(-audio.shape[0] // hop)
    padded = np.zeros(n_frames * hop, dtype=np.float32)
    padded[: audio.shape[0]] = audio
    chunk, ctx = int(CHUNK_S * rate), int(CONTEXT_S * rate)
    out = []
    for s in range(0, n_frames, chunk):
        e = min(n_frames, s + chunk)
        s0, e0 = max(0, s - ctx), min(n_frames, e + ctx)
        x = torch.from_numpy(padded[s0 * hop : e0 * hop])[None, None].to(codec.device)
        bandwidth = float(codec.config.target_bandwidths[-1])
        codes = codec.encode(x, bandwidth=bandwidth).audio_codes[0, 0]  # [K, e0 - s0]
        out.append(codes[:, s - s0 : e - s0])
    return torch.cat(out, dim=1).long().cpu()


@torch.no_grad()
def decode_chunked(codec: Any, codes: torch.Tensor) -> np.ndarray:
    """Mono audio ``[T * hop]`` of codes ``[K, T]``, 30 s at a time with 1 s of context."""
    hop, rate = _frames(codec)
    t = codes.shape[-1]
    chunk, ctx = int(CHUNK_S * rate), int(CONTEXT_S * rate)
    out = np.zeros(t * hop, dtype=np.float32)
    for s in range(0, t, chunk):
        e = min(t, s + chunk)
        s0, e0 = max(0, s - ctx), min(t, e + ctx)
        wav = codec.decode(codes[None, None, :, s0:e0].to(codec.device), [None]).audio_values[0, 0]
        out[s * hop : e * hop] = wav[(s - s0) * hop : (e - s0) * hop].float().cpu().numpy()
    return out


def roundtrip_audio(codec: Any, audio: np.ndarray, sample_rate: int, loudness_lufs: float = -16.0) -> tuple[np.ndarray, torch.Tensor]:
    """Decoded audio (mono, at ``sample_rate``, the input's level) and the codes of ``audio`` [samples(, channels)]."""
    rate = int(codec.config.sampling_rate)
    mono = audio_io.resample(audio_io.to_mono(audio), sample_rate, rate)
    normalised, gain_db = normalize_gain(mono, rate, loudness_lufs)
    codes = encode_chunked(codec, normalised)
    decoded = decode_chunked(codec, codes)[: normalised.shape[0]] * np.float32(10 ** (-gain_db / 20))
    return audio_io.resample(decoded, rate, sample_rate), codes


def roundtrip_files(inputs: list[str], model: str, out: str | Path) -> list[dict[str, Any]]:
    """Write ``out/<input stem>.flac`` for every input file: what the codec of ``model`` keeps of it.

    Raises:
        StylecraftError: an input is missing or undecodable, two inputs share a stem, or no codec loads.
    """
    from stylecraft.artifacts import sha256_file
    from stylecraft.models.loading import load_codec

    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.is_file():
            raise StylecraftError(f"input '{p}' is not a file")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise StylecraftError(f"two inputs are named '{dup}': outputs are DIR/<input stem>.flac, rename one")
    codec = load_codec(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with make_progress() as prog:
        task = prog.add_task("roundtrip", total=len(paths))
        for p in paths:
            audio, sr = audio_io.load(p)
            decoded, codes = roundtrip_audio(codec, audio, sr)
            target = audio_io.write(out / f"{p.stem}.flac", np.clip(decoded, -1.0, 1.0), sr)
            rows.append({"input": str(p), "output": str(target), "frames": int(codes.shape[-1]),
                         "codebooks": int(codes.shape[0]), "sha256": sha256_file(target)})
            prog.advance(task)
    return rows
