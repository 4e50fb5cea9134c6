"""MusicGen training batches: the codebook delay pattern, labels and decoder inputs.

For codes ``c[k, t]`` (K codebooks, T frames) and the pad/BOS id ``P`` (= codebook size), the
delayed sequence has length ``T + K - 1`` with ``d[k, s] = c[k, s - k]`` where ``0 <= s - k < T``
and ``P`` elsewhere. The model at position ``s`` predicts ``d[:, s]`` from ``d[:, :s]``:

* labels ``[B, T + K - 1, K]``: ``d`` transposed, with ``P`` replaced by -100 (ignored);
* decoder inputs ``[B * K, T + K - 1]``: ``P`` (the decoder start token) then ``d[:, :-1]``.

This is the sequence ``MusicgenForCausalLM.build_delay_pattern_mask`` lays out at generation.

Stereo models (2K codebooks, left and right interleaved as audiocraft lays them out) delay
codebook ``k`` by ``k // 2`` (left and right of one level together); ``delays`` gives the delay
of each codebook and the sequence is ``T + max(delays)`` long. Without it, delays are ``0..K-1``.
"""

from __future__ import annotations

from typing import Any

import torch


def stereo_delays(num_codebooks: int) -> list[int]:
    """Delays of interleaved stereo codebooks: ``[0, 0, 1, 1, …]``."""
    return [i // 2 for i in range(num_codebooks)]


def delay_pattern(codes: torch.Tensor, pad_id: int, delays: list[int] | None = None) -> torch.Tensor:
    """``codes`` [B, K, T] -> delayed [B, K, T + D] (D = max delay; K - 1 by default) with ``pad_id`` in the offsets."""
    b, k, t = codes.shape
    delays = list(range(k)) if delays is None else delays
    out = codes.new_full((b, k, t + max(delays)), pad_id)
    for i, d in enumerate(delays):
        out[:, i, d : d + t] = codes[:, i]
    return out


def undelay(delayed: torch.Tensor, num_frames: int, delays: list[int] | None = None) -> torch.Tensor:
    """Inverse of :func:`delay_pattern`: [B, K, T + D] -> [B, K, T]."""
    k = delayed.shape[1]
    delays = list(range(k)) if delays is None else delays
    return torch.stack([delayed[:, i, d : d + num_frames] for i, d in enumerate(delays)], dim=1)


def labels_and_inputs(
    codes: torch.Tensor, pad_id: int, start_id: int, delays: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels [B, T + D, K] (pad -> -100) and decoder_input_ids [B * K, T + D]."""
    d = delay_pattern(codes, pad_id, delays)  # [B, K, S]
    labels = d.transpose(1, 2).clone()
    labels[labels == pad_id] = -100
    inputs = torch.cat([torch.full_like(d[..., :1], start_id), d[..., :-1]], dim=-1)
    b, k, s = inputs.shape
    return labels, inputs.reshape(b * k, s)


class Collator:
    """Stack token items and tokenize their captions."""

    def __init__(
        self, tokenizer: Any, pad_id: int, start_id: int, max_text_len: int = 64, stereo: bool = False
    ) -> None:
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.start_id = start_id
        self.max_text_len = max_text_len
        self.stereo = stereo

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        codes = torch.stack([it["codes"] for it in items])  # [B, K, T]
        delays = stereo_delays(codes.shape[1]) if self.stereo else None
        labels, inputs = labels_and_inputs(codes, self.pad_id, self.start_id, delays)
        captions = [it["caption"] for it in items]
        text = self.tokenizer(
            captions, padding=True, truncation=True, max_length=self.max_text_len, return_tensors="pt"
        )
        batch = {
            "labels": labels,
            "decoder_input_ids": inputs,
            "input_ids": text["input_ids"],
            "attention_mask": text["attention_mask"],
            "captions": captions,
        }
        if "index" in items[0]:  # validation items: their positions in the validation set
            batch["index"] = torch.tensor([it["index"] for it in items])
        return batch
