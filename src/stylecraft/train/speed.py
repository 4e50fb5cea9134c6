"""Throughput choices of the training loop, applied to the model once before the optimizer is built.

eval/bench_train.py (eval/results/bench_train.md) measures them together, as stylecraft's loop
against a plain transformers loop, not one by one; the loop calls :func:`apply` once, so the
choices live here and not in it.

* Attention: PyTorch's ``scaled_dot_product_attention`` for the decoder (on CUDA it dispatches to
  its built-in FlashAttention-2 kernel for the causal self-attention; on CPU to a flash-style
  kernel). The eager path materialises ``[B, heads, S, S]`` probabilities per layer and keeps them
  for backward. ``train.attention=flash_attention_2`` asks for the flash-attn package instead.
* Loss: the cross-entropy of each codebook straight from its output head. transformers stacks the K
  heads' logits into one ``[B, K, S, V]`` tensor, copies each codebook's slice out of it, and in
  backward fills a zero tensor of the whole stack per codebook; the direct form gives the same loss
  (bit for bit on CPU) and gradients without those copies.
* TF32 matmuls on CUDA for the float32 work outside autocast.
* ``train.compile``: ``torch.compile`` of the MusicGen decoder in place (``nn.Module.compile``, so
  parameter names, checkpoints and exports stay unchanged). Off by default: compiling is paid
  again on every start and resume, and its gain has not been measured (``bench_train.py --compile``).
"""

from __future__ import annotations

import importlib.util
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

from stylecraft.errors import ConfigError
from stylecraft.models.kv_cache import CACHE


def pick_attention(choice: str, on_cuda: bool) -> str:
    """The decoder's attention implementation for ``train.attention`` (``auto`` picks the fastest)."""
    if choice == "flash_attention_2" and not (on_cuda and importlib.util.find_spec("flash_attn") is not None):
        raise ConfigError("train.attention=flash_attention_2 needs a CUDA GPU and the flash-attn package: use sdpa")
    return "sdpa" if choice == "auto" else choice


def _loss_forward(self: Any, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                  encoder_hidden_states: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                  past_key_values: Any = None, inputs_embeds: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None, use_cache: bool | None = None, **kwargs: Any) -> Any:
    """``MusicgenForCausalLM.forward`` with the per-codebook loss taken head by head (no logits kept).

    Calls without labels, or that leave the decoder inputs to be derived from the labels, go to
    transformers' own forward unchanged.
    """
    if past_key_values is not None:  # passed on only when given, under the installed release's name
        kwargs[CACHE] = past_key_values
    if labels is None or (input_ids is None and inputs_embeds is None):
        return type(self).forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                  encoder_hidden_states=encoder_hidden_states,
                                  encoder_attention_mask=encoder_attention_mask,
                                  inputs_embeds=inputs_embeds, labels=labels, use_cache=use_cache, **kwargs)
    out = self.model(input_ids, attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
                     encoder_attention_mask=encoder_attention_mask,
                     inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)
    hidden = out.last_hidden_state[:, -labels.shape[1]:]  # [B, S, D]
    labels = labels.masked_fill(labels == self.config.pad_token_id, -100)  # [B, S, K]
    # Summed in the same order as transformers (from a zero) so the loss matches it exactly.
    loss = torch.zeros([], device=hidden.device)
    for k, head in enumerate(self.lm_heads):
        logits = head(hidden)  # [B, S, V]
        loss = loss + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[..., k].reshape(-1))
    return CausalLMOutputWithCrossAttentions(
        loss=loss / self.config.num_codebooks, hidden_states=out.hidden_states, attentions=out.attentions,
        cross_attentions=out.cross_attentions, **{CACHE: getattr(out, CACHE)},
    )


def _base(model: Any) -> Any:
    """The MusicGen model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def process_flags_restored() -> Iterator[None]:
    """Restore the process-wide matmul flags :func:`apply` sets once training is over.

    TF32 speeds up training, but the stages that run after it in the same process (generation,
    FAD embeddings that must agree with the reference tools) keep full float32 matmuls.
    """
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def apply(model: Any, t: Any) -> Any:
    """Apply the throughput choices of train config ``t`` to ``model`` (plain or LoRA-wrapped).

    Returns:
        The same model object, changed in place.
    """
    on_cuda = torch.cuda.is_available()
    base = _base(model)
    # Only the trained decoder changes: the frozen T5 runs once per caption (cached) and keeps its own.
    base.decoder.set_attn_implementation(pick_attention(t.attention, on_cuda))
    base.decoder.forward = types.MethodType(_loss_forward, base.decoder)
    if on_cuda:  # process-wide: train() restores them (process_flags_restored)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if t.compile:
        base.decoder.compile()
    return model
