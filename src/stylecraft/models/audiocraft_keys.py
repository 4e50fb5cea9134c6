"""Parameter names between audiocraft's MusicGen checkpoints and transformers' MusicGen classes.

Pure renaming and reshaping of state dicts, both ways; no model is built here.

LM (audiocraft ``LMModel``, pre-norm ``StreamingTransformer``, no biases in linears) against
``MusicgenForCausalLM``:

* ``emb.K.weight`` [card+1, D]                      <-> ``model.decoder.embed_tokens.K.weight``
* ``transformer.layers.N.self_attn.in_proj_weight`` [3D, D], rows (q | k | v)
                                                    <-> ``...layers.N.self_attn.{q,k,v}_proj.weight``
* ``...self_attn.out_proj.weight``                  <-> ``...self_attn.out_proj.weight``
* ``...cross_attention.{in_proj_weight,out_proj}``  <-> ``...encoder_attn.{q,k,v,out}_proj.weight``
* ``...linear1`` / ``...linear2``                   <-> ``...fc1`` / ``...fc2``
* ``...norm1`` / ``...norm_cross`` / ``...norm2``   <-> ``...self_attn_layer_norm`` /
  ``...encoder_attn_layer_norm`` / ``...final_layer_norm``
* ``out_norm``                                      <-> ``model.decoder.layer_norm``
* ``linears.K.weight``                              <-> ``lm_heads.K.weight``
* ``condition_provider.conditioners.description.output_proj`` <-> ``enc_to_dec_proj`` (of the
  encoder-decoder model, returned separately).

EnCodec (audiocraft ``EncodecModel`` with SEANet and RVQ) against transformers ``EncodecModel``:
``{encoder,decoder}.model.N.conv.conv`` -> ``{encoder,decoder}.layers.N.conv`` (``convtr.convtr``
likewise), ``.conv.norm`` -> ``.norm``, ``quantizer.vq.layers.K._codebook`` ->
``quantizer.layers.K.codebook``, and old-style weight norm (``weight_g``/``weight_v``) ->
parametrizations (``original0``/``original1``).
"""

from __future__ import annotations

import re

import torch

from stylecraft.errors import CheckpointError

_LAYER_RENAMES = {
    "self_attn.out_proj.": "self_attn.out_proj.",
    "cross_attention.out_proj.": "encoder_attn.out_proj.",
    "linear1.": "fc1.",
    "linear2.": "fc2.",
    "norm1.": "self_attn_layer_norm.",
    "norm_cross.": "encoder_attn_layer_norm.",
    "norm2.": "final_layer_norm.",
}
_OUTPUT_PROJ = "condition_provider.conditioners.description.output_proj."
_DEC = "model.decoder."


def lm_to_transformers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Rename an audiocraft LM state dict.

    Args:
        state: ``LMModel.state_dict()`` (the ``best_state`` of ``state_dict.bin``).

    Returns:
        ``(decoder_state, enc_to_dec_proj_state)`` for ``MusicgenForCausalLM`` and the
        encoder-decoder model's ``enc_to_dec_proj``.

    Raises:
        CheckpointError: a parameter has no counterpart (an LM feature transformers lacks).
    """
    decoder: dict[str, torch.Tensor] = {}
    proj: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key.startswith(_OUTPUT_PROJ):
            proj[key[len(_OUTPUT_PROJ):]] = value
            continue
        if m := re.fullmatch(r"emb\.(\d+)\.weight", key):
            decoder[f"{_DEC}embed_tokens.{m[1]}.weight"] = value
            continue
        if m := re.fullmatch(r"linears\.(\d+)\.weight", key):
            decoder[f"lm_heads.{m[1]}.weight"] = value
            continue
        if m := re.fullmatch(r"out_norm\.(weight|bias)", key):
            decoder[f"{_DEC}layer_norm.{m[1]}"] = value
            continue
        m = re.fullmatch(r"transformer\.layers\.(\d+)\.(.+)", key)
        if m is None:
            unknown.append(key)
            continue
        prefix, rest = f"{_DEC}layers.{m[1]}.", m[2]
        if rest in ("self_attn.in_proj_weight", "cross_attention.in_proj_weight"):
            target = "self_attn" if rest.startswith("self_attn") else "encoder_attn"
            q, k, v = value.chunk(3, dim=0)  # [3D, D] -> 3 x [D, D]; audiocraft packs rows as (q, k, v)
            decoder[f"{prefix}{target}.q_proj.weight"] = q.clone()
            decoder[f"{prefix}{target}.k_proj.weight"] = k.clone()
            decoder[f"{prefix}{target}.v_proj.weight"] = v.clone()
            continue
        for old, new in _LAYER_RENAMES.items():
            if rest.startswith(old):
                decoder[prefix + new + rest[len(old):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"the audiocraft LM has parameters transformers' MusicGen has no place for ({', '.join(unknown[:4])}"
            f"{', …' if len(unknown) > 4 else ''}): this LM variant is not supported"
        )
    return decoder, proj


def lm_from_transformers(
    decoder: dict[str, torch.Tensor], enc_to_dec_proj: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`lm_to_transformers`: an audiocraft ``LMModel`` state dict."""
    out: dict[str, torch.Tensor] = {}
    inverse = {v: k for k, v in _LAYER_RENAMES.items()}
    for key, value in decoder.items():
        if m := re.fullmatch(rf"{re.escape(_DEC)}embed_tokens\.(\d+)\.weight", key):
            out[f"emb.{m[1]}.weight"] = value
        elif m := re.fullmatch(r"lm_heads\.(\d+)\.weight", key):
            out[f"linears.{m[1]}.weight"] = value
        elif m := re.fullmatch(rf"{re.escape(_DEC)}layer_norm\.(weight|bias)", key):
            out[f"out_norm.{m[1]}"] = value
        elif m := re.fullmatch(rf"{re.escape(_DEC)}layers\.(\d+)\.(self_attn|encoder_attn)\.([qkv])_proj\.weight", key):
            continue  # packed below, once per layer and attention
        elif m := re.fullmatch(rf"{re.escape(_DEC)}layers\.(\d+)\.(.+)", key):
            for new, old in inverse.items():
                if m[2].startswith(new):
                    out[f"transformer.layers.{m[1]}.{old}{m[2][len(new):]}"] = value
                    break
            else:
                raise CheckpointError(f"decoder parameter '{key}' has no audiocraft counterpart")
        elif key.startswith(f"{_DEC}embed_positions."):
            continue  # sinusoidal table, recomputed by audiocraft
        else:
            raise CheckpointError(f"decoder parameter '{key}' has no audiocraft counterpart")
    layers = sorted({int(m[1]) for k in decoder if (m := re.match(rf"{re.escape(_DEC)}layers\.(\d+)\.", k))})
    for n in layers:
        for hf, ac in (("self_attn", "self_attn"), ("encoder_attn", "cross_attention")):
            parts = [decoder.get(f"{_DEC}layers.{n}.{hf}.{p}_proj.weight") for p in "qkv"]
            if all(p is not None for p in parts):
                out[f"transformer.layers.{n}.{ac}.in_proj_weight"] = torch.cat(parts, dim=0)  # type: ignore[arg-type]
    for key, value in enc_to_dec_proj.items():
        out[_OUTPUT_PROJ + key] = value
    return out


def encodec_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an audiocraft (or ``encodec`` package) ``EncodecModel`` state dict to transformers' names.

    Args:
        state: ``EncodecModel.state_dict()`` of audiocraft or of the ``encodec`` package (both use
            the same parameter names).

    Returns:
        A state dict for transformers' ``EncodecModel`` (load it with ``strict=True`` to check).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = re.sub(r"^(encoder|decoder)\.model\.", r"\1.layers.", key)
        k = k.replace(".conv.conv.", ".conv.").replace(".convtr.convtr.", ".conv.")
        k = k.replace(".conv.norm.", ".norm.").replace(".convtr.norm.", ".norm.")
        k = k.replace("quantizer.vq.layers.", "quantizer.layers.").replace("._codebook.", ".codebook.")
        k = k.replace(".weight_g", ".parametrizations.weight.original0")
        k = k.replace(".weight_v", ".parametrizations.weight.original1")
        out[k] = value
    return out


def encodec_from_transformers(state: dict[str, torch.Tensor], transposed: set[str]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`encodec_to_transformers`.

    Args:
        state: transformers ``EncodecModel.state_dict()``.
        transposed: Prefixes (``decoder.layers.N``) of the layers that are transposed convolutions
            (audiocraft names them ``convtr.convtr``, transformers just ``conv``).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key.replace(".parametrizations.weight.original0", ".weight_g")
        k = k.replace(".parametrizations.weight.original1", ".weight_v")
        k = k.replace("quantizer.layers.", "quantizer.vq.layers.").replace(".codebook.", "._codebook.")
        m = re.fullmatch(r"(encoder|decoder)\.layers\.(.+?)\.(conv|norm)\.(.+)", k)
        if m is not None:
            kind = "convtr" if f"{m[1]}.layers.{m[2]}" in transposed else "conv"
            inner = kind if m[3] == "conv" else "norm"
            k = f"{m[1]}.model.{m[2]}.{kind}.{inner}.{m[4]}"
        else:
            k = re.sub(r"^(encoder|decoder)\.layers\.", r"\1.model.", k)
        out[k] = value
    return out
