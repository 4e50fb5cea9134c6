"""audiocraft's ``xp.cfg`` (the Hydra config its builders read) against transformers' configs.

audiocraft rebuilds a model from the config stored beside its weights
(``audiocraft.models.builders.get_lm_model`` / ``get_compression_model``), so an export must
write every key those builders read, and an import must refuse the LM and codec variants that
transformers' MusicGen classes cannot represent (biases in linears, rotary embeddings, layer
scale, chroma/prepend conditioning) instead of converting them into a different model.
"""

from __future__ import annotations

import math
from typing import Any

from stylecraft.errors import CheckpointError

# Text encoders audiocraft's T5Conditioner knows by name, with their hidden sizes.
AUDIOCRAFT_T5 = {
    "t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
    "google/flan-t5-small": 512, "google/flan-t5-base": 768, "google/flan-t5-large": 1024,
    "google/flan-t5-xl": 2048, "google/flan-t5-xxl": 4096,
}


def parse_cfg(raw: Any, where: str) -> dict[str, Any]:
    """The ``xp.cfg`` of a checkpoint (a YAML string, or already a dict) as plain, resolved data."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.create(raw) if isinstance(raw, str | dict) else None
        data = OmegaConf.to_container(cfg, resolve=True) if cfg is not None else None
    except (OmegaConfBaseException, ValueError) as exc:
        raise CheckpointError(f"'{where}' has an unreadable 'xp.cfg': {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"'{where}' has no 'xp.cfg' mapping (found {type(raw).__name__})")
    return {str(k): v for k, v in data.items()}


def _get(cfg: dict[str, Any], dotted: str, where: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise CheckpointError(f"'{where}' xp.cfg lacks '{dotted}': not an audiocraft MusicGen checkpoint")
        node = node[part]
    return node


def _require(ok: bool, what: str, where: str) -> None:
    if not ok:
        raise CheckpointError(f"'{where}' uses {what}, which transformers' MusicGen cannot represent")


def stereo_of(cfg: dict[str, Any]) -> bool:
    return bool((cfg.get("interleave_stereo_codebooks") or {}).get("use", False))


def t5_name_of(cfg: dict[str, Any], where: str) -> str:
    """The text encoder an LM's description conditioner names (e.g. ``t5-base``)."""
    cond = _get(cfg, "conditioners", where) or {}
    desc = cond.get("description")
    if not isinstance(desc, dict) or desc.get("model") != "t5":
        raise CheckpointError(f"'{where}' is not conditioned on text through T5 (conditioners.description.model)")
    return str(_get(desc, "t5.name", where))


def decoder_kwargs(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """``MusicgenDecoderConfig`` arguments for an LM ``xp.cfg``; refuses what transformers lacks."""
    tl = _get(cfg, "transformer_lm", where)
    _require(cfg.get("lm_model", "transformer_lm") == "transformer_lm", f"lm_model={cfg.get('lm_model')}", where)
    fuser = _get(cfg, "fuser", where)
    _require(list(fuser.get("cross") or []) == ["description"], f"cross conditions {fuser.get('cross')}", where)
    if fuser.get("prepend") or fuser.get("sum") or fuser.get("input_interpolate"):
        raise CheckpointError(
            f"'{where}' is a melody/prepend-conditioned LM ({fuser.get('prepend') or fuser.get('sum')}); "
            "stylecraft imports text-only audiocraft MusicGen LMs for now"
        )
    _require(not fuser.get("cross_attention_pos_emb", False), "positional embeddings on cross-attention", where)
    _require(bool(tl.get("norm_first", False)), "post-norm layers (norm_first: false)", where)
    for key in ("bias_ff", "bias_attn", "bias_proj"):
        _require(not tl.get(key, True), f"biases ({key}: true)", where)
    _require(tl.get("positional_embedding", "sin") == "sin", f"positional_embedding={tl.get('positional_embedding')}", where)
    _require(tl.get("layer_scale") is None, "layer scale", where)
    _require(not tl.get("qk_layer_norm", False) and not tl.get("qk_layer_norm_cross", False), "qk layer norm", where)
    _require(int(tl.get("kv_repeat", 1)) == 1, "grouped key/value heads (kv_repeat)", where)
    _require(tl.get("norm", "layer_norm") == "layer_norm", f"norm={tl.get('norm')}", where)
    _require(tl.get("activation", "gelu") in ("gelu", "relu"), f"activation={tl.get('activation')}", where)
    n_q, dim = int(tl["n_q"]), int(tl["dim"])
    stereo = stereo_of(cfg)
    pattern = _get(cfg, "codebooks_pattern", where)
    delays = list((pattern.get("delay") or {}).get("delays") or [])
    expected = [d for d in range(n_q // 2) for _ in range(2)] if stereo else list(range(n_q))
    _require(pattern.get("modeling") == "delay" and delays == expected, f"codebook pattern {pattern.get('modeling')} {delays}", where)
    return dict(
        vocab_size=int(tl["card"]), num_codebooks=n_q, hidden_size=dim, num_hidden_layers=int(tl["num_layers"]),
        num_attention_heads=int(tl["num_heads"]), ffn_dim=int(float(tl.get("hidden_scale", 4)) * dim),
        activation_function=str(tl.get("activation", "gelu")), dropout=float(tl.get("dropout", 0.0)),
        attention_dropout=float(tl.get("attention_dropout") or 0.0), audio_channels=2 if stereo else 1,
        pad_token_id=int(tl["card"]), bos_token_id=int(tl["card"]),
    )


def encodec_kwargs(cfg: dict[str, Any], n_q_used: int, where: str) -> tuple[dict[str, Any], int]:
    """``EncodecConfig`` arguments for a compression ``xp.cfg`` and the number of RVQ layers kept.

    Only the first ``n_q_used`` residual codebooks are kept: MusicGen reads and writes that many,
    and a residual quantiser truncated to its first layers encodes and decodes them exactly as
    the full one restricted to that bandwidth does.
    """
    _require(cfg.get("compression_model") == "encodec", f"compression_model={cfg.get('compression_model')}", where)
    enc = _get(cfg, "encodec", where)
    _require(enc.get("autoencoder") == "seanet" and enc.get("quantizer") == "rvq", "a non-SEANet/RVQ codec", where)
    sn = _get(cfg, "seanet", where)
    rvq = _get(cfg, "rvq", where)
    _require(sn.get("activation", "ELU") == "ELU" and float((sn.get("activation_params") or {}).get("alpha", 1.0)) == 1.0,
             "a non-ELU(1) activation", where)
    _require(int(sn.get("disable_norm_outer_blocks", 0)) == 0, "disable_norm_outer_blocks", where)
    dec = sn.get("decoder") or {}
    _require(dec.get("final_activation") is None, "a final decoder activation", where)
    _require(not (sn.get("encoder") or {}) and set(dec) <= {"trim_right_ratio", "final_activation", "final_activation_params"},
             "separate encoder/decoder overrides", where)
    _require(sn.get("norm", "weight_norm") in ("weight_norm", "time_group_norm"), f"norm={sn.get('norm')}", where)
    n_q_total, bins = int(rvq["n_q"]), int(rvq["bins"])
    if n_q_used > n_q_total:
        raise CheckpointError(f"'{where}' has {n_q_total} codebooks but the LM reads {n_q_used}")
    sample_rate = int(enc["sample_rate"])
    ratios = [int(r) for r in sn["ratios"]]
    hop = math.prod(ratios)
    _require(sample_rate % hop == 0, "a frame rate that is not a whole number", where)
    frame_rate = sample_rate // hop
    bandwidth = n_q_used * math.ceil(math.log2(bins)) * frame_rate / 1000
    return dict(
        sampling_rate=sample_rate, audio_channels=int(enc.get("channels", 1)), normalize=bool(enc.get("renormalize", False)),
        chunk_length_s=None, overlap=None, hidden_size=int(sn["dimension"]), num_filters=int(sn["n_filters"]),
        num_residual_layers=int(sn["n_residual_layers"]), upsampling_ratios=ratios, norm_type=str(sn.get("norm", "weight_norm")),
        kernel_size=int(sn.get("kernel_size", 7)), last_kernel_size=int(sn.get("last_kernel_size", 7)),
        residual_kernel_size=int(sn.get("residual_kernel_size", 3)), dilation_growth_rate=int(sn.get("dilation_base", 2)),
        use_causal_conv=bool(sn.get("causal", enc.get("causal", False))), pad_mode=str(sn.get("pad_mode", "reflect")),
        compress=int(sn.get("compress", 2)), num_lstm_layers=int(sn.get("lstm", 0)),
        trim_right_ratio=float(dec.get("trim_right_ratio", 1.0)), codebook_size=bins, codebook_dim=int(sn["dimension"]),
        use_conv_shortcut=not bool(sn.get("true_skip", True)), target_bandwidths=[bandwidth],
    ), n_q_used


def lm_cfg(decoder: Any, t5_name: str, guidance_scale: float, segment_duration: float) -> dict[str, Any]:
    """An LM ``xp.cfg`` with every key audiocraft 1.3.0's ``get_lm_model`` and ``MusicGen`` read."""
    n_q, dim = int(decoder.num_codebooks), int(decoder.hidden_size)
    stereo = int(getattr(decoder, "audio_channels", 1)) == 2
    delays = [d for d in range(n_q // 2) for _ in range(2)] if stereo else list(range(n_q))
    if int(decoder.ffn_dim) % dim:
        raise CheckpointError(f"ffn_dim {decoder.ffn_dim} is not a multiple of hidden_size {dim}: audiocraft cannot hold it")
    if decoder.activation_function not in ("gelu", "relu"):
        raise CheckpointError(f"activation '{decoder.activation_function}' has no audiocraft counterpart")
    return {
        "device": "cpu", "dtype": "float32", "lm_model": "transformer_lm",
        "dataset": {"segment_duration": float(segment_duration)},
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": delays, "flatten_first": 0, "empty_initial": 0}},
        "transformer_lm": {
            "dim": dim, "num_heads": int(decoder.num_attention_heads), "num_layers": int(decoder.num_hidden_layers),
            "hidden_scale": int(decoder.ffn_dim) // dim, "n_q": n_q, "card": int(decoder.vocab_size),
            "dropout": float(decoder.dropout), "emb_lr": None, "activation": str(decoder.activation_function),
            "norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False, "past_context": None,
            "causal": True, "custom": True, "memory_efficient": True, "attention_as_float32": False,
            "layer_scale": None, "positional_embedding": "sin", "xpos": False, "checkpointing": "none",
            "weight_init": "gaussian", "depthwise_init": "current", "zero_bias_init": True, "norm": "layer_norm",
            "cross_attention": True, "qk_layer_norm": False, "qk_layer_norm_cross": False,
            "attention_dropout": float(decoder.attention_dropout) or None, "kv_repeat": 1, "two_step_cfg": False,
        },
        "classifier_free_guidance": {"training_dropout": 0.0, "inference_coef": float(guidance_scale)},
        "attribute_dropout": {},
        "fuser": {
            "cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
            "sum": [], "prepend": [], "cross": ["description"], "input_interpolate": [],
        },
        "conditioners": {
            "description": {"model": "t5", "t5": {"name": t5_name, "finetune": False, "word_dropout": 0.0, "normalize_text": False}},
        },
        "interleave_stereo_codebooks": {"use": stereo, "per_timestep": False},
        "compression_model_n_q": None,
    }


def compression_cfg(audio: Any) -> dict[str, Any]:
    """A compression ``xp.cfg`` for a transformers ``EncodecConfig`` (``get_compression_model``)."""
    if int(audio.codebook_dim) != int(audio.hidden_size):
        raise CheckpointError("EnCodec with codebook_dim != hidden_size has no audiocraft counterpart")
    sr, ch = int(audio.sampling_rate), int(audio.audio_channels)
    return {
        "device": "cpu", "dtype": "float32", "sample_rate": sr, "channels": ch, "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": sr, "channels": ch,
                    "causal": bool(audio.use_causal_conv), "renormalize": bool(audio.normalize)},
        "seanet": {
            "dimension": int(audio.hidden_size), "channels": ch, "causal": bool(audio.use_causal_conv),
            "n_filters": int(audio.num_filters), "n_residual_layers": int(audio.num_residual_layers),
            "ratios": [int(r) for r in audio.upsampling_ratios], "activation": "ELU", "activation_params": {"alpha": 1.0},
            "norm": str(audio.norm_type), "norm_params": {}, "kernel_size": int(audio.kernel_size),
            "residual_kernel_size": int(audio.residual_kernel_size), "last_kernel_size": int(audio.last_kernel_size),
            "dilation_base": int(audio.dilation_growth_rate), "pad_mode": str(audio.pad_mode),
            "true_skip": not bool(audio.use_conv_shortcut), "compress": int(audio.compress),
            "lstm": int(audio.num_lstm_layers), "disable_norm_outer_blocks": 0,
            "decoder": {"trim_right_ratio": float(audio.trim_right_ratio), "final_activation": None, "final_activation_params": None},
            "encoder": {},
        },
        "rvq": {
            "n_q": int(audio.num_quantizers), "q_dropout": False, "bins": int(audio.codebook_size), "decay": 0.99,
            "kmeans_init": True, "kmeans_iters": 50, "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0,
            "orthogonal_reg_active_codes_only": False,
        },
    }
