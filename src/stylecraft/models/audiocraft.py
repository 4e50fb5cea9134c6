"""MusicGen in audiocraft's checkpoint format, in and out.

An audiocraft MusicGen folder holds ``state_dict.bin`` (the LM: ``{'xp.cfg': YAML, 'best_state':
state dict}``) and ``compression_state_dict.bin`` (the EnCodec model, same layout, or
``{'pretrained': name}``). Both are read with ``torch.load(weights_only=True)``: a pickle that
would construct arbitrary objects is refused, never executed.

The T5 text encoder is not part of an audiocraft checkpoint (audiocraft loads ``t5-base`` by
name). On import it comes from, in order: the ``text_encoder`` argument (a transformers folder or
hub id on disk), a ``text_encoder/`` folder beside the checkpoint (stylecraft's exports write
one), the Hugging Face cache. Converted models are cached as safetensors keyed by the sha256 of
every source file, so the second load skips the conversion.

Export writes the same two files with the ``xp.cfg`` that audiocraft 1.3.0's builders read, so
``MusicGen.get_pretrained(folder)`` loads it, plus ``text_encoder/`` and a ``manifest.json``
with the sha256 of every file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from stylecraft.artifacts import cache_root
from stylecraft.errors import CheckpointError, ModelNotFoundError, StylecraftError
from stylecraft.models import audiocraft_cfg as acfg
from stylecraft.models import audiocraft_keys as keys

LM_FILE = "state_dict.bin"
COMPRESSION_FILE = "compression_state_dict.bin"
TEXT_ENCODER_DIR = "text_encoder"
MANIFEST = "manifest.json"
FORMATS = ("audiocraft", "transformers")
# The tiny preset's text encoder is no audiocraft T5; its exports name it so.
CUSTOM_T5_PREFIX = "stylecraft/t5-d"


def is_audiocraft_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` looks like an audiocraft MusicGen checkpoint folder."""
    return (Path(folder) / LM_FILE).is_file()


def read_checkpoint(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """One audiocraft checkpoint file, unpickled with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, not a torch checkpoint, holds a pickle that would run
            code, or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing: an audiocraft MusicGen folder holds {LM_FILE} and {COMPRESSION_FILE}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only load failed" in str(exc).lower() or "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"'{path}' holds a pickle that would run code when loaded ({_global_named(str(exc))}); "
                "stylecraft refuses it: re-save it as plain tensors where you trust its source"
            ) from None
        raise CheckpointError(f"'{path}' is not a torch checkpoint ({first})") from None
    except Exception as exc:  # garbage bytes make the unpickler fail in many ways (IndexError, KeyError, …)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"'{path}' is not a torch checkpoint ({first[:160]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"'{path}' holds a {type(data).__name__}, not an audiocraft {what} checkpoint dict")
    return data


def _global_named(message: str) -> str:
    for line in message.splitlines():
        if "GLOBAL" in line or "global" in line:
            return line.strip()[:160]
    return "a non-tensor object"


def _state(pkg: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    state = pkg.get("best_state")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # solver checkpoints nest the model's state one level down
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"'{path}' has no 'best_state' of tensors: not an audiocraft checkpoint")
    return {str(k): v for k, v in state.items()}


# --------------------------------------------------------------------------------------------
# import


def _text_encoder_candidates(folder: Path, t5_name: str, explicit: str | os.PathLike[str] | None) -> list[Path]:
    from stylecraft.models.bundle import hf_cache_folder

    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.exists():
            return [p]
        cached = hf_cache_folder(str(explicit)) if "/" in str(explicit) else None
        if cached is None:
            raise ModelNotFoundError(f"text encoder '{explicit}' is neither a folder nor a hub id on this machine")
        return [cached]
    out = [folder / TEXT_ENCODER_DIR] if (folder / TEXT_ENCODER_DIR / "config.json").exists() else []
    for repo in (t5_name, f"google-t5/{t5_name}" if t5_name.startswith("t5-") else ""):
        if repo and "/" in repo and (cached := hf_cache_folder(repo)) is not None:
            out.append(cached)
    return out


def load_text_encoder(folder: Path, t5_name: str, explicit: str | os.PathLike[str] | None, dim: int) -> tuple[Any, Any, Path]:
    """The T5 encoder and tokenizer an audiocraft LM needs (see the module docstring for the order)."""
    from transformers import AutoTokenizer, T5EncoderModel

    candidates = _text_encoder_candidates(folder, t5_name, explicit)
    if not candidates:
        repo = f"google-t5/{t5_name}" if t5_name.startswith("t5-") else t5_name
        raise ModelNotFoundError(
            f"the audiocraft LM in '{folder}' needs the text encoder '{t5_name}', which audiocraft checkpoints do not "
            f"contain and which is not on this machine: pass --text-encoder FOLDER, or download '{repo}' "
            "(e.g. `huggingface-cli download " + repo + "`) where there is network"
        )
    src = candidates[0]
    try:
        t5 = T5EncoderModel.from_pretrained(src, local_files_only=True, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the text encoder from '{src}': {str(exc).splitlines()[0]}") from None
    if int(t5.config.d_model) != dim:
        raise CheckpointError(
            f"text encoder '{src}' has hidden size {t5.config.d_model}, the LM's conditioner expects {dim} ({t5_name})"
        )
    return t5, tokenizer, src


def convert_folder(folder: str | os.PathLike[str], text_encoder: str | os.PathLike[str] | None = None) -> tuple[Any, Any]:
    """Build transformers' ``MusicgenForConditionalGeneration`` (and tokenizer) from an audiocraft folder.

    Args:
        folder: Folder with ``state_dict.bin`` and ``compression_state_dict.bin``.
        text_encoder: T5 folder or hub id on disk (default: see the module docstring).

    Returns:
        ``(model, tokenizer)``, the model in eval mode.

    Raises:
        CheckpointError: a file is missing, unsafe or of another kind, or the LM uses a feature
            transformers' MusicGen cannot represent.
        ModelNotFoundError: no text encoder is available.
    """
    from transformers import (
        EncodecConfig,
        EncodecModel,
        MusicgenDecoderConfig,
        MusicgenForCausalLM,
        MusicgenForConditionalGeneration,
    )

    from stylecraft.models import presets

    folder = Path(folder)
    lm_path, comp_path = folder / LM_FILE, folder / COMPRESSION_FILE
    lm_pkg = read_checkpoint(lm_path, "LM")
    comp_pkg = read_checkpoint(comp_path, "compression model")
    if "xp.cfg" not in lm_pkg:
        raise CheckpointError(f"'{lm_path}' has no 'xp.cfg': not an audiocraft LM checkpoint")
    cfg = acfg.parse_cfg(lm_pkg["xp.cfg"], str(lm_path))
    dec_kwargs = acfg.decoder_kwargs(cfg, str(lm_path))
    decoder_state, proj_state = keys.lm_to_transformers(_state(lm_pkg, lm_path))
    if "weight" not in proj_state:
        raise CheckpointError(f"'{lm_path}' has no description conditioner output_proj: not a text-conditioned MusicGen LM")
    t5_dim = int(proj_state["weight"].shape[1])  # output_proj: [D_lm, D_t5]
    t5, tokenizer, _ = load_text_encoder(folder, acfg.t5_name_of(cfg, str(lm_path)), text_encoder, t5_dim)

    n_q_per_channel = dec_kwargs["num_codebooks"] // dec_kwargs["audio_channels"]
    if "pretrained" in comp_pkg:
        audio_encoder = _pretrained_encodec(str(comp_pkg["pretrained"]))
    else:
        if "xp.cfg" not in comp_pkg:
            raise CheckpointError(f"'{comp_path}' has neither 'xp.cfg' nor 'pretrained': not an audiocraft compression checkpoint")
        comp_cfg = acfg.parse_cfg(comp_pkg["xp.cfg"], str(comp_path))
        enc_kwargs, n_keep = acfg.encodec_kwargs(comp_cfg, n_q_per_channel, str(comp_path))
        audio_config = EncodecConfig(**enc_kwargs)
        if audio_config.num_quantizers != n_keep:  # float rounding of the bandwidth
            audio_config.target_bandwidths = [enc_kwargs["target_bandwidths"][0] + 1e-6]
        audio_encoder = EncodecModel(audio_config)
        state = keys.encodec_to_transformers(_state(comp_pkg, comp_path))
        state = {k: v for k, v in state.items() if not _dropped_codebook(k, n_keep)}
        _load_strict(audio_encoder, state, str(comp_path))
    if int(audio_encoder.config.audio_channels) != 1:
        raise CheckpointError(f"'{comp_path}' is a {audio_encoder.config.audio_channels}-channel codec; MusicGen uses mono EnCodec")

    decoder_config = MusicgenDecoderConfig(**dec_kwargs)
    decoder_config.decoder_start_token_id = dec_kwargs["bos_token_id"]
    decoder = MusicgenForCausalLM(decoder_config)
    _load_strict(decoder, decoder_state, str(lm_path), ignore=("model.decoder.embed_positions.",))
    model = MusicgenForConditionalGeneration(text_encoder=t5, audio_encoder=audio_encoder, decoder=decoder)
    if hasattr(model, "enc_to_dec_proj"):
        _load_strict(model.enc_to_dec_proj, proj_state, str(lm_path))
    elif not _is_identity(proj_state):
        # transformers has no projection when the text and LM widths are equal; audiocraft always has one.
        raise CheckpointError(
            f"'{lm_path}': the text encoder and the LM are both {t5_dim} wide and the conditioner's output_proj is "
            "not the identity, which transformers' MusicGen cannot represent"
        )
    guidance = float((cfg.get("classifier_free_guidance") or {}).get("inference_coef", 3.0))
    model.generation_config = presets.generation_config(int(dec_kwargs["vocab_size"]))
    model.generation_config.guidance_scale = guidance
    segment = float((cfg.get("dataset") or {}).get("segment_duration") or 30.0)
    model.generation_config.max_length = int(segment * int(audio_encoder.config.frame_rate)) + 1
    model.eval()
    return model, tokenizer


def _is_identity(proj: dict[str, torch.Tensor]) -> bool:
    w, b = proj["weight"], proj.get("bias")
    eye = torch.eye(w.shape[0], w.shape[1], dtype=w.dtype)
    return bool(torch.equal(w, eye) and (b is None or not b.any()))


def _identity_proj(width: int) -> dict[str, torch.Tensor]:
    return {"weight": torch.eye(width), "bias": torch.zeros(width)}


def _dropped_codebook(key: str, n_keep: int) -> bool:
    parts = key.split(".")
    return key.startswith("quantizer.layers.") and int(parts[2]) >= n_keep


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str, ignore: tuple[str, ...] = ()) -> None:
    expected = {k for k in module.state_dict() if not k.startswith(ignore)}
    got = set(state)
    if expected != got:
        missing, extra = sorted(expected - got), sorted(got - expected)
        raise CheckpointError(
            f"'{where}' does not match its own config: missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'…' if len(extra) > 3 else ''}"
        )
    own = module.state_dict()
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise CheckpointError(f"'{where}': '{k}' has shape {tuple(v.shape)}, its config implies {tuple(own[k].shape)}")
    module.load_state_dict(state, strict=False)


def _pretrained_encodec(name: str) -> Any:
    from transformers import EncodecModel

    from stylecraft.models.bundle import hf_cache_folder

    cached = hf_cache_folder(name) if "/" in name else None
    if cached is None:
        raise ModelNotFoundError(
            f"the compression model is audiocraft's pretrained '{name}', which is not on this machine: "
            f"download '{name}' (e.g. `huggingface-cli download {name}`) where there is network"
        )
    try:
        return EncodecModel.from_pretrained(cached, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load EnCodec '{name}' from '{cached}': {str(exc).splitlines()[0]}") from None


def _cache_root() -> Path:
    return cache_root() / "audiocraft"


def _sha256_memo(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so that large checkpoints are hashed once."""
    from stylecraft.artifacts import atomic_write_json, sha256_file

    st = path.stat()
    memo_path = _cache_root() / "hashes.json"
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if ident in memo:
        return str(memo[ident])
    digest = sha256_file(path)
    memo[ident] = digest
    try:
        atomic_write_json(memo_path, memo)
    except OSError:
        pass  # a read-only cache only costs re-hashing
    return digest


def _cache_key(folder: Path, text_encoder: str | os.PathLike[str] | None) -> str:
    import transformers

    h = hashlib.sha256()
    for name in (LM_FILE, COMPRESSION_FILE):
        p = folder / name
        h.update(f"{name}:{_sha256_memo(p) if p.is_file() else 'missing'}\n".encode())
    te = Path(text_encoder).expanduser() if text_encoder is not None else folder / TEXT_ENCODER_DIR
    if te.is_dir():
        for f in sorted(te.glob("*")):
            if f.is_file():
                h.update(f"{f.name}:{_sha256_memo(f)}\n".encode())
    else:
        h.update(f"text_encoder:{text_encoder}\n".encode())
    for mod in (acfg, keys):
        h.update(Path(str(mod.__file__)).read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(f"{torch.__version__}|{transformers.__version__}".encode())
    return h.hexdigest()


def load_audiocraft(
    folder: str | os.PathLike[str], text_encoder: str | os.PathLike[str] | None = None, name: str | None = None
) -> Any:
    """Load an audiocraft MusicGen folder as a ``ModelBundle``, converting once and caching.

    Args:
        folder: The audiocraft folder.
        text_encoder: T5 folder or hub id on disk (default: see the module docstring).
        name: Name recorded in the bundle (default: the folder path).
    """
    from stylecraft.models.bundle import ModelBundle, cached_bundle, from_folder, save_bundle
    from stylecraft.progress import info

    folder = Path(folder)
    for f in (LM_FILE, COMPRESSION_FILE):
        if not (folder / f).is_file():
            raise CheckpointError(f"'{folder / f}' is missing: an audiocraft MusicGen folder holds {LM_FILE} and {COMPRESSION_FILE}")
    key = _cache_key(folder, text_encoder)
    cache = _cache_root() / key[:24]
    label = name or str(folder)
    cached = cached_bundle(cache, label, f"audiocraft:{folder}")
    if cached is not None:
        return cached  # a damaged cache entry gives None and is rebuilt below
    info(f"converting audiocraft checkpoint '{folder}' (cached for the next load)")
    model, tokenizer = convert_folder(folder, text_encoder)
    bundle = ModelBundle(model=model, tokenizer=tokenizer, name=label, source=f"audiocraft:{folder}")
    try:
        save_bundle(bundle, cache)
    except OSError:
        return bundle  # a read-only cache still returns the converted model
    # Reloaded from the cache, the first load is the same model (attention implementation included)
    # as every later one.
    bundle = from_folder(cache, label)
    bundle.source = f"audiocraft:{folder}"
    return bundle


# --------------------------------------------------------------------------------------------
# export


def _t5_name(model: Any) -> str:
    te = model.config.text_encoder
    raw = str(getattr(te, "_name_or_path", "") or getattr(te, "name_or_path", "") or "")
    for candidate in (raw, raw.removeprefix("google-t5/")):
        if candidate in acfg.AUDIOCRAFT_T5 and acfg.AUDIOCRAFT_T5[candidate] == int(te.d_model):
            return candidate
    return f"{CUSTOM_T5_PREFIX}{int(te.d_model)}"


def _transposed_layers(audio_encoder: Any) -> set[str]:
    out = set()
    for name, mod in audio_encoder.decoder.layers.named_children():
        if isinstance(getattr(mod, "conv", None), torch.nn.ConvTranspose1d):
            out.add(f"decoder.layers.{name}")
    return out


def audiocraft_packages(model: Any, t5_name: str | None = None, segment_duration: float = 30.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two audiocraft checkpoint dicts (LM, compression) of a transformers MusicGen model."""
    from omegaconf import OmegaConf

    if str(model.config.model_type) != "musicgen":
        raise CheckpointError(f"audiocraft export supports text-conditioned MusicGen, not '{model.config.model_type}'")
    decoder_cfg = model.config.decoder
    name = t5_name or _t5_name(model)
    guidance = float(getattr(model.generation_config, "guidance_scale", None) or 3.0)
    lm_cfg = acfg.lm_cfg(decoder_cfg, name, guidance, segment_duration)
    prefix = "decoder."
    dec_state = {k[len(prefix):]: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items() if k.startswith(prefix)}
    if hasattr(model, "enc_to_dec_proj"):
        proj_state = {k: v.detach().cpu().contiguous().clone() for k, v in model.enc_to_dec_proj.state_dict().items()}
    else:  # equal widths: transformers feeds T5's states straight in; audiocraft's output_proj must be the identity
        proj_state = _identity_proj(int(decoder_cfg.hidden_size))
    lm_state = keys.lm_from_transformers(dec_state, proj_state)
    lm_pkg = {"xp.cfg": OmegaConf.to_yaml(OmegaConf.create(lm_cfg)), "best_state": lm_state, "version": "stylecraft"}
    return lm_pkg, compression_package(model.audio_encoder)


def compression_package(audio: Any) -> dict[str, Any]:
    """audiocraft's ``compression_state_dict.bin`` dict of a transformers ``EncodecModel``."""
    from omegaconf import OmegaConf

    comp_state = {k: v.detach().cpu().contiguous().clone() for k, v in audio.state_dict().items()}
    comp_state = keys.encodec_from_transformers(comp_state, _transposed_layers(audio))
    comp_cfg = acfg.compression_cfg(audio.config)
    return {"xp.cfg": OmegaConf.to_yaml(OmegaConf.create(comp_cfg)), "best_state": comp_state, "version": "stylecraft"}


def export_model(bundle: Any, out: str | os.PathLike[str], fmt: str = "audiocraft", t5_name: str | None = None) -> dict[str, Any]:
    """Write ``bundle`` to the folder ``out`` in audiocraft or transformers format, atomically.

    The folder is built beside ``out`` and renamed onto it when complete; ``manifest.json`` in it
    lists the sha256 of every file.

    Args:
        bundle: A ``ModelBundle`` (``load_model``).
        out: Output folder: new, empty, or an earlier export (replaced); anything else is refused.
        fmt: ``"audiocraft"`` (``state_dict.bin``, ``compression_state_dict.bin``, ``text_encoder/``)
            or ``"transformers"`` (``save_pretrained``, safetensors).
        t5_name: Text encoder name written into the audiocraft config (default: the model's own if
            audiocraft knows it, else ``stylecraft/t5-d<hidden size>``).

    Returns:
        The manifest.
    """
    import transformers

    from stylecraft.artifacts import atomic_path, atomic_write_json, files_sha256, replace_dir

    if fmt not in FORMATS:
        raise CheckpointError(f"unknown export format '{fmt}': use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        # Only an earlier export (its manifest.json) or an empty folder is replaced: a mistyped --out
        # must not wipe a folder of the user's files.
        raise StylecraftError(f"'{out}' exists and is not an earlier export: choose a new or empty folder")
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    manifest: dict[str, Any] = {
        "format": fmt, "source": bundle.source, "name": bundle.name,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    try:
        model = bundle.model
        if fmt == "transformers":
            model.save_pretrained(tmp, safe_serialization=True)
            bundle.tokenizer.save_pretrained(tmp)
        else:
            lm_pkg, comp_pkg = audiocraft_packages(model, t5_name)
            for fname, pkg in ((LM_FILE, lm_pkg), (COMPRESSION_FILE, comp_pkg)):
                with atomic_path(tmp / fname) as p:
                    torch.save(pkg, p)
            name = acfg.parse_cfg(lm_pkg["xp.cfg"], LM_FILE)["conditioners"]["description"]["t5"]["name"]
            manifest["t5_name"] = name
            # audiocraft's T5Conditioner only accepts the names it lists; a custom encoder needs registering there.
            manifest["audiocraft_loads_without_changes"] = name in acfg.AUDIOCRAFT_T5
            model.text_encoder.save_pretrained(tmp / TEXT_ENCODER_DIR, safe_serialization=True)
            bundle.tokenizer.save_pretrained(tmp / TEXT_ENCODER_DIR)
        manifest["files"] = files_sha256(tmp)
        atomic_write_json(tmp / MANIFEST, manifest)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest
