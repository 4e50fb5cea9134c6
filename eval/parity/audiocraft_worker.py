"""Runs inside the audiocraft 1.3.0 reference venv (eval/parity/audiocraft_env.py).

Invoked as ``python audiocraft_worker.py TASK JSON_ARGS``; prints one JSON line. Nothing from
stylecraft is imported here.

Tasks:

* ``build``: a tiny MusicGen LM and EnCodec built from config with audiocraft's own builders
  (``get_lm_model``, ``get_compression_model``), every parameter perturbed with seeded noise so
  that no weight sits at a value (1, 0, g = ||v||) a wrong mapping could still reproduce, saved in
  audiocraft's checkpoint layout the way its solvers export it.
* ``reference``: loads a folder with ``MusicGen.get_pretrained(folder)`` and returns, for given
  inputs, the LM logits (given condition tensors, and end to end from text), EnCodec codes of
  given audio and the audio decoded from given codes.

Stand-ins: torchaudio, spacy and xformers are imported at module level by audiocraft but not
used on these paths (xformers' ``unbind`` is ``torch.unbind``; attention goes through PyTorch's
SDPA, audiocraft's default backend, so xformers' causal-mask marker is an empty class); any other use fails loudly. audiocraft's T5 conditioner
only accepts the T5 names it lists, so a text encoder folder is registered under the name the
checkpoint's config uses.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import torch
from worker_stubs import stub
from worker_stubs import versions as worker_versions


def install_stubs() -> None:
    xf = stub("xformers", lenient=True)
    # With audiocraft's default 'torch' attention backend the causal mask is only tested for
    # being set (SDPA is_causal=True); the marker class carries nothing.
    xf.ops = stub("xformers.ops", lenient=True, unbind=torch.unbind, LowerTriangularMask=type("LowerTriangularMask", (), {}))
    ta = stub("torchaudio", lenient=True)
    ta.transforms = stub("torchaudio.transforms", lenient=True)
    ta.functional = stub("torchaudio.functional", lenient=True)
    stub("spacy", lenient=True)


def register_t5(name: str, folder: str) -> None:
    """Make audiocraft's T5Conditioner load ``folder`` when its config names ``name``."""
    from audiocraft.modules import conditioners as C
    from transformers import AutoTokenizer, T5EncoderModel

    dim = int(json.load(open(f"{folder}/config.json"))["d_model"])
    if name not in C.T5Conditioner.MODELS:
        C.T5Conditioner.MODELS.append(name)
    C.T5Conditioner.MODELS_DIMS[name] = dim

    class _Model:
        @staticmethod
        def from_pretrained(n: str, *a: Any, **k: Any) -> Any:
            return T5EncoderModel.from_pretrained(folder if n == name else n, *a, **k)

    class _Tok:
        @staticmethod
        def from_pretrained(n: str, *a: Any, **k: Any) -> Any:
            return AutoTokenizer.from_pretrained(folder if n == name else n, *a, **k)

    C.T5EncoderModel = _Model
    C.T5Tokenizer = _Tok


def versions() -> dict[str, str]:
    return worker_versions(("audiocraft", "torch", "transformers", "omegaconf", "numpy"))


def tiny_cfgs(t5_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """LM and compression configs in the shape of audiocraft's musicgen_lm / encodec defaults, at toy size."""
    lm = {
        "device": "cpu", "dtype": "float32", "lm_model": "transformer_lm",
        "dataset": {"segment_duration": 30.0},
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": [0, 1, 2, 3], "flatten_first": 0, "empty_initial": 0}},
        "transformer_lm": {
            "dim": 32, "num_heads": 4, "num_layers": 2, "hidden_scale": 4, "n_q": 4, "card": 64, "dropout": 0.0,
            "emb_lr": None, "activation": "gelu", "norm_first": True, "bias_ff": False, "bias_attn": False,
            "bias_proj": False, "past_context": None, "causal": True, "custom": False, "memory_efficient": True,
            "attention_as_float32": False, "layer_scale": None, "positional_embedding": "sin", "xpos": False,
            "checkpointing": "none", "weight_init": "gaussian", "depthwise_init": "current", "zero_bias_init": True,
            "norm": "layer_norm", "cross_attention": False, "qk_layer_norm": False, "qk_layer_norm_cross": False,
            "attention_dropout": None, "kv_repeat": 1, "two_step_cfg": False,
        },
        "classifier_free_guidance": {"training_dropout": 0.3, "inference_coef": 3.0},
        "attribute_dropout": {},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
                  "cross": ["description"], "input_interpolate": []},
        "conditioners": {"description": {"model": "t5", "t5": {"name": t5_name, "finetune": False, "word_dropout": 0.3,
                                                               "normalize_text": False}}},
    }
    comp = {
        "device": "cpu", "dtype": "float32", "sample_rate": 32000, "channels": 1, "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": "${sample_rate}", "channels": "${channels}",
                    "causal": False, "renormalize": False},
        "seanet": {"dimension": 32, "channels": "${channels}", "causal": "${encodec.causal}", "n_filters": 4,
                   "n_residual_layers": 1, "ratios": [8, 5, 4, 4], "activation": "ELU", "activation_params": {"alpha": 1.0},
                   "norm": "weight_norm", "norm_params": {}, "kernel_size": 7, "residual_kernel_size": 3,
                   "last_kernel_size": 7, "dilation_base": 2, "pad_mode": "constant", "true_skip": True, "compress": 2,
                   "lstm": 2, "disable_norm_outer_blocks": 0,
                   "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
                   "encoder": {}},
        "rvq": {"n_q": 4, "q_dropout": False, "bins": 64, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 50,
                "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0, "orthogonal_reg_active_codes_only": False},
    }
    return lm, comp


@torch.no_grad()
def task_build(args: dict[str, Any]) -> dict[str, Any]:
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    register_t5(args["t5_name"], args["t5_dir"])
    torch.manual_seed(int(args["seed"]))
    lm_cfg, comp_cfg = tiny_cfgs(args["t5_name"])
    lm = builders.get_lm_model(OmegaConf.create(lm_cfg)).eval()
    comp = builders.get_compression_model(OmegaConf.create(comp_cfg)).eval()
    for p in list(lm.parameters()) + list(comp.parameters()):
        p.add_(0.05 * torch.randn_like(p))
    for layer in comp.quantizer.vq.layers:  # kmeans_init leaves codebooks at zero until trained
        cb = layer._codebook
        cb.embed.copy_(torch.randn_like(cb.embed))
        cb.embed_avg.copy_(cb.embed)
        cb.cluster_size.fill_(1.0)
        cb.inited.fill_(1.0)
    out = args["dir"]
    import os

    os.makedirs(out, exist_ok=True)
    torch.save({"xp.cfg": OmegaConf.to_yaml(OmegaConf.create(lm_cfg)), "best_state": lm.state_dict()}, f"{out}/state_dict.bin")
    torch.save({"xp.cfg": OmegaConf.to_yaml(OmegaConf.create(comp_cfg)), "best_state": comp.state_dict()},
               f"{out}/compression_state_dict.bin")
    return {"lm_params": sum(p.numel() for p in lm.parameters()), "compression_params": sum(p.numel() for p in comp.parameters()),
            "lm_keys": len(lm.state_dict()), "compression_keys": len(comp.state_dict()), "versions": versions()}


@torch.no_grad()
def task_reference(args: dict[str, Any]) -> dict[str, Any]:
    from audiocraft.models import MusicGen

    register_t5(args["t5_name"], args["t5_dir"])
    mg = MusicGen.get_pretrained(args["dir"], device="cpu")
    data = np.load(args["inputs"])
    codes = torch.from_numpy(data["codes"]).long()  # [B, K, T]
    hidden = torch.from_numpy(data["hidden"]).float()  # [B, L, D_t5] text encoder states
    mask = torch.from_numpy(data["mask"]).long()  # [B, L]
    conditioner = mg.lm.condition_provider.conditioners["description"]
    cond = conditioner.output_proj(hidden) * mask[..., None]  # what T5Conditioner.forward returns
    logits = mg.lm(codes, conditions=[], condition_tensors={"description": (cond, mask)})  # [B, K, T, card]
    text_logits = {}
    for key in ("texts", "texts_padded"):
        attributes, _ = mg._prepare_tokens_and_attributes(list(args[key]), None)
        tokenized = mg.lm.condition_provider.tokenize(attributes)
        text_cond = mg.lm.condition_provider(tokenized)
        text_logits[key] = mg.lm(codes, conditions=[], condition_tensors=text_cond).numpy()
    audio = torch.from_numpy(data["audio"]).float()  # [B, C, S]: C = 2 for stereo LMs
    cm = mg.compression_model  # InterleaveStereoCompressionModel around the mono codec for stereo LMs
    enc_codes, scale = cm.encode(audio)  # [B, K, T] (stereo: left/right interleaved, K = 2 x codec codebooks)
    mono_codec = cm.model if cm.channels == 2 else cm
    latents = mono_codec.encoder(audio[:, :1])  # [B, D, T] before quantisation (left channel for stereo)
    decoded = cm.decode(torch.from_numpy(data["decode_codes"]).long(), scale)  # [B, C, S]
    # The LM's codebook pattern: the delayed sequence audiocraft trains and samples on, start step included.
    pattern = mg.lm.pattern_provider.get_pattern(codes.shape[-1])
    seq, _, _ = pattern.build_pattern_sequence(codes, mg.lm.special_token_id, keep_only_valid_steps=False)
    np.savez(args["out"], logits=logits.numpy(), text_logits=text_logits["texts"],
             text_logits_padded=text_logits["texts_padded"], codes=enc_codes.numpy(), latents=latents.numpy(),
             decoded=decoded.numpy(), pattern=seq.numpy())
    return {"sample_rate": mg.sample_rate, "frame_rate": mg.frame_rate, "n_q": mg.lm.n_q, "card": mg.lm.card,
            "compression_codebooks": mg.compression_model.num_codebooks, "max_duration": mg.max_duration,
            "compression_channels": mg.compression_model.channels,
            "versions": versions()}


if __name__ == "__main__":
    install_stubs()
    task, raw = sys.argv[1], json.loads(sys.argv[2])
    result = {"build": task_build, "reference": task_reference}[task](raw)
    print(json.dumps(result, default=float))
