"""Code-space sampling, scoring and decoding with transformers' MusicGen.

Generation works on EnCodec codes ``[B, K, T]`` (K codebooks, T frames at the codec's frame
rate), not on audio: a prompt (a seed riff's codes, or the tail of the previous long-form
window) is handed to ``generate`` as ``decoder_input_ids``, which transformers lays out in the
delay pattern itself, so a continuation never re-encodes decoded audio and its prompt codes are
reproduced verbatim. Audio is decoded once at the end, in bounded chunks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from stylecraft.models.loading import ModelBundle


def text_inputs(bundle: ModelBundle, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Tokenized prompts (``input_ids``, ``attention_mask``: ``[B, L]``) on the model's device."""
    enc = bundle.tokenizer(prompts, padding=True, return_tensors="pt")
    return {k: v.to(bundle.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


@contextlib.contextmanager
def _captured_codes(bundle: ModelBundle) -> Iterator[list[torch.Tensor]]:
    """Record the codes ``generate`` hands to EnCodec instead of decoding them.

    transformers' MusicGen ``generate`` returns decoded audio only; the codes it would decode
    (delay pattern already undone, pads removed) are exactly what long-form continuation and
    scoring need. Skipping the in-generate decode also keeps a window's cost to the decoder's.
    """
    enc: Any = bundle.model.audio_encoder
    calls: list[torch.Tensor] = []

    def capture(audio_codes: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(audio_codes[0].detach().clone())  # [1, B, K, T] -> [B, K, T]
        b = audio_codes.shape[1]
        return SimpleNamespace(audio_values=torch.zeros(b, 1, 1))

    enc.decode = capture  # an instance attribute shadows the method until deleted below
    try:
        yield calls
    finally:
        del enc.decode


@torch.no_grad()
def sample_codes(
    bundle: ModelBundle,
    text: dict[str, torch.Tensor],
    new_frames: int,
    *,
    prompt: torch.Tensor | None = None,
    melody: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """Sample ``new_frames`` frames after ``prompt`` (uses the global torch RNG).

    Args:
        text: tokenized prompts (:func:`text_inputs`), batch B.
        new_frames: frames to add.
        prompt: codes ``[B, K, P]`` to continue (None: start from nothing).
        melody: chroma ``[B, F, 12]`` for melody models (None: none).

    Returns:
        Codes ``[B, K, P + new_frames]`` (long), the prompt's codes first and unchanged.
    """
    model: Any = bundle.model
    k = bundle.num_codebooks
    kwargs: dict[str, Any] = {}
    b = int(text["input_ids"].shape[0])
    if prompt is not None and prompt.shape[-1] > 0:
        # generate() takes un-delayed codes [B*K, P] and applies the delay pattern itself.
        kwargs["decoder_input_ids"] = prompt.to(model.device).reshape(b * k, prompt.shape[-1])
    if melody is not None:
        kwargs["input_features"] = melody.to(model.device, model.dtype)
    with _captured_codes(bundle) as calls:
        model.generate(
            **text,
            **kwargs,
            do_sample=True,
            max_new_tokens=new_frames + max(codebook_delays(bundle)),  # the delay pattern costs its largest delay
            temperature=temperature,
            top_k=top_k or None,
            top_p=top_p or None,
            guidance_scale=guidance_scale if guidance_scale > 1 else None,
        )
    if len(calls) == 2:  # stereo models decode left and right codebooks apart; re-interleave them
        left, right = calls
        codes = torch.stack([left, right], dim=2).reshape(b, k, -1)
    else:
        (codes,) = calls
    return codes.long().cpu()  # [B, K, P + new]


def _stereo(bundle: ModelBundle) -> bool:
    config: Any = bundle.model.config
    return int(config.decoder.audio_channels) == 2


def codebook_delays(bundle: ModelBundle) -> list[int]:
    """Delay of each codebook in decoder steps: ``k`` (mono), or ``k // 2`` for stereo models,
    whose left and right codebooks are interleaved and share a delay (audiocraft's layout)."""
    k = bundle.num_codebooks
    return [i // 2 for i in range(k)] if _stereo(bundle) else list(range(k))


def interleave(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Stereo codes as audiocraft lays them out: ``[B, K, T]`` x 2 -> ``[B, 2K, T]`` (L0, R0, L1, R1 …)."""
    b, k, t = left.shape
    return torch.stack([left, right], dim=2).reshape(b, 2 * k, t)


@torch.no_grad()
def encode_audio(bundle: ModelBundle, audio: np.ndarray) -> torch.Tensor:
    """EnCodec codes ``[B, K, T]`` of audio ``[B, samples]`` (mono) or ``[B, 2, samples]`` at the model's rate.

    Stereo models encode each channel with their mono EnCodec and interleave the codes (a mono
    input is the same on both sides); mono models take mono audio only.
    """
    enc: Any = bundle.model.audio_encoder
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(bundle.model.device)
    channels = x[:, None, :] if x.ndim == 2 else x  # [B, C, samples]
    if channels.shape[1] not in (1, 2) or (channels.shape[1] == 2 and not _stereo(bundle)):
        raise ValueError(f"expected mono audio for a mono model, or 1-2 channels for a stereo one, got {tuple(x.shape)}")

    def one(ch: torch.Tensor) -> torch.Tensor:  # [B, samples] -> [B, K, T]
        return enc.encode(ch[:, None, :], bandwidth=bundle.bandwidth).audio_codes[0].long().cpu()

    if not _stereo(bundle):
        return one(channels[:, 0])
    left = one(channels[:, 0])
    return interleave(left, left if channels.shape[1] == 1 else one(channels[:, 1]))


@torch.no_grad()
def decode_codes(
    bundle: ModelBundle,
    codes: torch.Tensor,
    chunk_frames: int = 1500,
    context_frames: int = 50,
    on_chunk: Callable[[], object] | None = None,
) -> np.ndarray:
    """Decode codes ``[B, K, T]`` to audio ``[B, channels, T * hop]`` in chunks of bounded memory.

    Each chunk of ``chunk_frames`` is decoded with ``context_frames`` of codes on either side
    (EnCodec's decoder convolutions and LSTM look both ways) and only its own span is kept, so
    memory grows with the chunk, not with the piece. With ``chunk_frames >= T`` it is one call.
    ``on_chunk`` is called after each chunk (progress).
    """
    enc: Any = bundle.model.audio_encoder
    hop = bundle.sample_rate // bundle.frame_rate
    stereo = _stereo(bundle)
    b, _, t = codes.shape
    out = np.zeros((b, 2 if stereo else 1, t * hop), dtype=np.float32)
    for s in range(0, t, chunk_frames):
        e = min(t, s + chunk_frames)
        s0, e0 = max(0, s - context_frames), min(t, e + context_frames)
        part = codes[..., s0:e0].to(bundle.model.device)
        if stereo:
            wav = torch.cat(
                [enc.decode(part[None, :, ::2], [None] * b).audio_values,
                 enc.decode(part[None, :, 1::2], [None] * b).audio_values], dim=1,
            )
        else:
            wav = enc.decode(part[None], [None] * b).audio_values  # [B, 1, (e0 - s0) * hop]
        keep = wav[..., (s - s0) * hop : (e - s0) * hop].float().cpu().numpy()
        out[..., s * hop : s * hop + keep.shape[-1]] = keep
        if on_chunk is not None:
            on_chunk()
    return out


def delayed_sequence(bundle: ModelBundle, codes: torch.Tensor) -> torch.Tensor:
    """The decoder's teacher-forcing sequence ``[B*K, T + D + 1]`` for codes ``[B, K, T]``.

    Position 0 is the start token; codebook k's frame t sits at position ``delay[k] + 1 + t``
    (:func:`codebook_delays`, D the largest delay); every other place is the pad token: the delay
    pattern transformers builds in ``generate``.
    """
    b, k, t = codes.shape
    span = t + max(codebook_delays(bundle))
    pad = bundle.pad_token_id
    start = torch.full((b * k, 1), pad, dtype=torch.long)
    flat = torch.cat([start, codes.reshape(b * k, t)], dim=1)
    decoder: Any = bundle.model.decoder
    _, pattern = decoder.build_delay_pattern_mask(flat, pad_token_id=pad, max_length=span + 1)
    return pattern.cpu()


@torch.no_grad()
def code_log_likelihood(
    bundle: ModelBundle,
    text: dict[str, torch.Tensor],
    codes: torch.Tensor,
    prompt_frames: int = 0,
    melody: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed log-probability of frames ``prompt_frames..T-1`` of ``codes`` ``[B, K, T]``.

    One teacher-forced forward pass with the text condition and no classifier-free guidance:
    the model's own conditional distribution, which does not depend on the guidance scale the
    codes were sampled with.

    Returns:
        (sum of log-probabilities per row ``[B]`` (float64), number of scored tokens per row).
    """
    model: Any = bundle.model
    b, k, t = codes.shape
    delays = torch.tensor(codebook_delays(bundle))
    span = t + int(delays.max())
    seq = delayed_sequence(bundle, codes).to(model.device)  # [B*K, T + D + 1]
    kwargs: dict[str, Any] = {}
    if melody is not None:
        kwargs["input_features"] = melody.to(model.device, model.dtype)
    logits = model(**text, **kwargs, decoder_input_ids=seq[:, :-1]).logits  # [B*K, >= T+D, V]
    logits = logits[:, -span:].float().reshape(b, k, span, -1)
    logp = torch.log_softmax(logits, dim=-1)
    # Codebook j's frame i is predicted at position delay[j] + i (its token sits at delay[j] + 1 + i).
    pos = delays[:, None] + torch.arange(t)[None, :]  # [K, T]
    picked = logp[:, torch.arange(k)[:, None], pos.to(logp.device)]  # [B, K, T, V]
    lp = picked.gather(-1, codes.to(logp.device)[..., None])[..., 0]  # [B, K, T]
    scored = lp[..., prompt_frames:]
    return scored.double().sum(dim=(1, 2)).cpu(), k * (t - prompt_frames)
