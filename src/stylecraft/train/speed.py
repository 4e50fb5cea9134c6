"""Throughput choices of the training loop, applied to the model once before the optimizer is built.

Each choice is measured by eval/bench_train.py (eval/results/bench_train.md) against a plain
transformers loop; the loop calls :func:`apply` once, so the choices live here and not in it.

* Attention: PyTorch's ``scaled_dot_product_attention`` for the decoder (on CUDA it dispatches to
  its built-in FlashAttention-2 kernel for the causal self-attention; on CPU to a flash-style
  kernel). The eager path materialises ``[B, heads, S, S]`` probabilities per layer and keeps them
  for backward. ``train.attention=flash_attention_2`` asks for the flash-attn package instead.
* TF32 matmuls on CUDA for the float32 work outside autocast.
* ``train.compile``: ``torch.compile`` of the MusicGen decoder in place (``nn.Module.compile``, so
  parameter names, checkpoints and exports stay unchanged). Off by default: compiling takes minutes
  and is paid again on every start and resume.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from stylecraft.errors import ConfigError

ATTENTION_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2")


def pick_attention(choice: str, on_cuda: bool) -> str:
    """The decoder's attention implementation for ``train.attention`` (``auto`` picks the fastest)."""
    if choice == "flash_attention_2" and not (on_cuda and importlib.util.find_spec("flash_attn") is not None):
        raise ConfigError("train.attention=flash_attention_2 needs a CUDA GPU and the flash-attn package: use sdpa")
    return "sdpa" if choice == "auto" else choice


def _base(model: Any) -> Any:
    """The MusicGen model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def apply(model: Any, t: Any) -> Any:
    """Apply the throughput choices of train config ``t`` to ``model`` (plain or LoRA-wrapped).

    Returns:
        The same model object, changed in place.
    """
    on_cuda = torch.cuda.is_available()
    base = _base(model)
    # Only the trained decoder changes: the frozen T5 runs once per caption (cached) and keeps its own.
    base.decoder.set_attn_implementation(pick_attention(t.attention, on_cuda))
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if t.compile:
        base.decoder.compile()
    return model
