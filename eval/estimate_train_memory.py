"""Computed (not measured) GPU memory of the training recipes in recipes/, per process.

Parameter counts come from instantiating the transformers MusicGen decoder, T5-base encoder and
32 kHz EnCodec on the meta device with the published sizes (no weights, no GPU). Memory follows:

- trainable weights fp32 (4 B) + gradients fp32 (4 B) + AdamW moments (8 B) = 16 B per parameter,
  and 4 B more per parameter with train.ema; frozen weights 4 B per parameter (fp32 master copies
  under bf16 autocast);
- FSDP divides the decoder's weights, gradients and optimizer states by the process count; the
  frozen T5 and EnCodec stay whole on every process (the loop keeps them out of the shards, since
  the text encoder runs outside the model's forward), and so do the codebook embeddings and output
  heads (FSDP's root unit, gathered for the whole forward): 2 x 4 codebooks x 2048 x d x 4 B;
- activations per sample under bf16 autocast with SDPA attention (no [s, s] score matrices kept):
  about 44 * s * d bytes per decoder layer (34 * s * d for self-attention + MLP as in Korthikanti
  et al. 2022, about 10 * s * d more for the cross-attention block), s = 50 frames/s x window + 3
  (delay pattern), plus the logits 4 codebooks * s * 2048 * 10 B (bf16 logits, fp32 copy and
  gradient for the cross-entropy); with gradient checkpointing only each layer's input (2 * s * d
  bytes per layer) plus one layer's full activations are kept.

Run: python eval/estimate_train_memory.py   (prints the table quoted in each recipe's header)
"""

from __future__ import annotations

import torch

SIZES = {"small": (1024, 24, 16), "medium": (1536, 48, 24), "large": (2048, 48, 32)}
GB = 1e9


def counts(size: str) -> tuple[int, int, int]:
    """(decoder parameters, frozen T5 + EnCodec parameters, decoder layers)."""
    from transformers import EncodecConfig, EncodecModel, MusicgenDecoderConfig, T5Config, T5EncoderModel
    from transformers.models.musicgen.modeling_musicgen import MusicgenForCausalLM

    d, layers, heads = SIZES[size]
    with torch.device("meta"):
        dec = MusicgenForCausalLM(MusicgenDecoderConfig(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                                                        ffn_dim=4 * d, num_codebooks=4, vocab_size=2048))
        t5 = T5EncoderModel(T5Config(d_model=768, d_ff=3072, num_layers=12, num_heads=12, vocab_size=32128))
        enc = EncodecModel(EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=64, codebook_size=2048,
                                         upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], use_causal_conv=False,
                                         norm_type="weight_norm", hidden_size=128, num_lstm_layers=2, codebook_dim=128))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return n(dec), n(t5) + n(enc), layers


def lora_params(size: str, r: int) -> int:
    """LoRA on q,k,v,out (self and cross attention), fc1, fc2 and the 4 output heads."""
    d, layers, _ = SIZES[size]
    per_layer = 8 * r * (d + d) + r * (d + 4 * d) * 2
    return layers * per_layer + 4 * r * (d + 2048)


def estimate(size: str, mode: str, window_s: float, batch: int, procs: int, fsdp: bool, ckpt: bool, r: int = 16,
             ema: bool = False) -> dict[str, float]:
    p_dec, p_frozen, layers = counts(size)
    d = SIZES[size][0]
    trainable = p_dec if mode == "full" else lora_params(size, r)
    frozen = p_frozen + (0 if mode == "full" else p_dec)
    shard = procs if fsdp else 1
    states = (16 + (4 if ema else 0)) * trainable / shard
    frozen_b = 4 * p_frozen + 4 * (frozen - p_frozen) / shard
    s = int(50 * window_s) + 3
    per_layer = 44 * s * d
    act = (2 * s * d * layers + per_layer) if ckpt else per_layer * layers
    act += 4 * s * 2048 * 10
    # One layer's full weights (fp32) during its forward/backward, and the root unit's embeddings and heads.
    gathered = (4 * (p_dec / layers) * 2 + 4 * 2 * 4 * 2048 * d) if fsdp else 0
    total = states + frozen_b + batch * act + gathered
    return {"trainable": trainable, "frozen": frozen, "states_gb": states / GB, "frozen_gb": frozen_b / GB,
            "act_per_sample_gb": act / GB, "batch": batch, "gathered_gb": gathered / GB, "total_gb": total / GB, "s": s}


RECIPES = {
    "musicgen-small-lora": dict(size="small", mode="lora", window_s=10.0, batch=8, procs=1, fsdp=False, ckpt=False),
    "musicgen-small-full": dict(size="small", mode="full", window_s=10.0, batch=8, procs=1, fsdp=False, ckpt=False,
                                ema=True),
    "musicgen-medium-fsdp": dict(size="medium", mode="full", window_s=10.0, batch=8, procs=4, fsdp=True, ckpt=True),
    "musicgen-large-fsdp-lora": dict(size="large", mode="lora", window_s=10.0, batch=8, procs=4, fsdp=True, ckpt=True),
}


if __name__ == "__main__":
    for name, kw in RECIPES.items():
        e = estimate(**kw)  # type: ignore[arg-type]
        print(f"{name}: trainable {e['trainable'] / 1e6:.1f} M, frozen {e['frozen'] / 1e6:.1f} M; "
              f"weights+grads+AdamW {e['states_gb']:.2f} GB + frozen {e['frozen_gb']:.2f} GB"
              f"{' + gathered layer {:.2f} GB'.format(e['gathered_gb']) if e['gathered_gb'] else ''} "
              f"+ activations {e['act_per_sample_gb']:.3f} GB/sample x {e['batch']} (s={e['s']}) "
              f"= {e['total_gb']:.1f} GB per process")
