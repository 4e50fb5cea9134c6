"""Load a MusicGen model by preset name, registry name, hub id, local folder or run folder.

Nothing is ever downloaded here: a model that is not on disk is a ``ModelNotFoundError`` naming
``stylecraft fetch``, never a silent random model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
)

from stylecraft.artifacts import cache_root
from stylecraft.errors import CheckpointError, ModelNotFoundError
from stylecraft.models import presets, registry
from stylecraft.models.bundle import ModelBundle, cached_bundle, from_folder, hf_cache_folder, save_bundle

PRESETS = ("tiny", "tiny-melody", "tiny-stereo")
NEW_PREFIX = "new:"


def resolve_folder(name_or_path: str) -> Path | None:
    """The local folder a name points to, or None for presets; raises if a named model is absent."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        from stylecraft.models.audiocraft import is_audiocraft_folder

        if (p / "model" / "config.json").exists() or is_adapter_folder(p / "model"):  # a run folder
            return p / "model"
        if (p / "config.json").exists() or is_audiocraft_folder(p) or is_adapter_folder(p):
            return p
        raise CheckpointError(
            f"'{p}' is neither a model folder (config.json or audiocraft's state_dict.bin) nor a run folder with model/"
        )
    if name_or_path in PRESETS:
        return None
    entry = registry.find(name_or_path)
    if entry is not None:
        if entry.is_shipped:
            return entry.verify_shipped()
        if (entry.local_dir / "config.json").exists():
            return entry.local_dir
        cached = hf_cache_folder(entry.repo_id)
        if cached is not None:
            return cached
        raise ModelNotFoundError(
            f"model '{entry.name}' ({entry.repo_id}) is not on this machine: run `stylecraft fetch {entry.name}` "
            f"(needs network) or pass a local folder"
        )
    if "/" in name_or_path and not name_or_path.startswith((".", "/")):
        cached = hf_cache_folder(name_or_path)
        if cached is not None:
            return cached
        raise ModelNotFoundError(
            f"model '{name_or_path}' is not on this machine: no folder '{name_or_path}' here and no downloaded hub "
            f"model of that id; download it with `stylecraft fetch {name_or_path}` (needs network) or pass a local folder"
        )
    known = ", ".join([*PRESETS, *registry.load_registry()])
    raise ModelNotFoundError(f"unknown model '{name_or_path}': use a preset or registry name ({known}) or a folder")


ADAPTER_DIR = "adapter"


def is_adapter_folder(folder: Path) -> bool:
    """A model folder holding only a LoRA adapter (``train.export.lora=adapter``): no config.json of its own."""
    return not (folder / "config.json").exists() and (folder / ADAPTER_DIR / "adapter_config.json").is_file()


def adapter_base(folder: Path) -> str:
    """The base model an adapter folder was trained on: its provenance's ``base_model``, else peft's
    ``base_model_name_or_path``.

    Raises:
        CheckpointError: neither names a base model.
    """
    import json

    prov = folder / "stylecraft.json"
    if prov.is_file():
        base = json.loads(prov.read_text()).get("base_model")
        if base:
            return str(base)
    base = json.loads((folder / ADAPTER_DIR / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise CheckpointError(
            f"'{folder}' holds a LoRA adapter but names no base model (stylecraft.json base_model, or "
            "adapter_config.json base_model_name_or_path): export the run again with train.export.lora=both"
        )
    return str(base)


def _from_adapter(folder: Path, name: str) -> ModelBundle:
    """The adapter's base model (loaded as :func:`load_model` would) with the adapter merged into it."""
    from peft import PeftModel

    base_name = adapter_base(folder)
    base = load_model(base_name)
    try:
        tuned = PeftModel.from_pretrained(base.model, str(folder / ADAPTER_DIR), is_trainable=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot apply the LoRA adapter in '{folder / ADAPTER_DIR}' to its base model '{base_name}': "
            f"{str(exc).splitlines()[0]}"
        ) from None
    model = tuned.merge_and_unload()  # plain MusicGen again: generation and export see one model
    model.eval()
    tokenizer = base.tokenizer
    if (folder / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return ModelBundle(model=model, tokenizer=tokenizer, name=name, source=f"{folder} (LoRA adapter on {base.source})")


def _preset_cache_dir(name: str) -> Path:
    """Cache folder of a built preset, keyed by the code and library versions that define it."""
    import hashlib

    import transformers

    from stylecraft.audio import synth

    h = hashlib.sha256()
    for mod in (presets, synth):
        h.update(Path(str(mod.__file__)).read_bytes())
    h.update(f"{torch.__version__}|{transformers.__version__}".encode())
    return cache_root() / "presets" / f"{name}-{h.hexdigest()[:16]}"


def load_preset(name: str) -> ModelBundle:
    """Build a preset once (deterministic) and reuse the saved copy afterwards."""
    cache = _preset_cache_dir(name)
    cached = cached_bundle(cache, name, f"preset:{name}")
    if cached is not None:
        return cached
    with _build_lock(cache):  # concurrent processes build a preset once; the others wait and load it
        cached = cached_bundle(cache, name, f"preset:{name}")
        if cached is not None:
            return cached
        model, tokenizer = presets.BUILDERS[name]()
        bundle = ModelBundle(model=model, tokenizer=tokenizer, name=name, source=f"preset:{name}")
        try:
            save_bundle(bundle, cache)
        except OSError:
            pass  # a read-only home still gets the (freshly built) preset
    return bundle


@contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    """An exclusive lock on ``cache``'s lock file (none where the folder cannot be written)."""
    import fcntl

    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        handle = open(cache.with_name(f".{cache.name}.lock"), "a")  # noqa: SIM115
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


PRESET_CHANNELS = {"tiny-stereo": 2}


def model_channels(name_or_path: str) -> int:
    """Audio channels a model generates (2: stereo), read from its config without loading weights where possible."""
    import json

    if name_or_path.startswith(NEW_PREFIX):
        return 1  # new models are built around a mono codec
    folder = resolve_folder(name_or_path)
    if folder is None:
        return PRESET_CHANNELS.get(name_or_path, 1)
    config = folder / "config.json"
    if config.is_file():
        return int((json.loads(config.read_text()).get("decoder") or {}).get("audio_channels", 1))
    return load_model(name_or_path).channels  # an audiocraft folder: converted (and cached) once


def load_model(
    name_or_path: str, device: str | torch.device = "cpu", text_encoder: str | None = None,
    codec: str | None = None, seed: int = 0,
) -> ModelBundle:
    """Load a model bundle (model + text tokenizer) in eval mode on ``device``.

    ``new:<architecture>`` builds a randomly initialised model of that size (seeded by ``seed``)
    around the codec in the folder ``codec``: the start of base-model pretraining.

    A folder (or run) exported with only its LoRA adapter (``train.export.lora=adapter``) loads
    the base model its provenance names and merges the adapter into it. An audiocraft-format
    folder (``state_dict.bin`` + ``compression_state_dict.bin``) is converted
    on the first load and cached; ``text_encoder`` names the T5 folder it needs when none is beside it.
    """
    from stylecraft.models.audiocraft import is_audiocraft_folder, load_audiocraft

    if name_or_path.startswith(NEW_PREFIX):
        bundle = new_model(name_or_path, codec, seed)
        bundle.model.to(device)  # type: ignore[arg-type]
        return bundle
    folder = resolve_folder(name_or_path)
    if folder is None:
        bundle = load_preset(name_or_path)
    elif is_adapter_folder(folder):
        bundle = _from_adapter(folder, name_or_path)
    elif is_audiocraft_folder(folder) and not (folder / "config.json").exists():
        bundle = load_audiocraft(folder, text_encoder=text_encoder, name=name_or_path)
    else:
        bundle = from_folder(folder, name_or_path)
    bundle.model.to(device)  # type: ignore[arg-type]  # transformers' to() accepts devices
    return bundle


def new_model(name: str, codec: str | None, seed: int) -> ModelBundle:
    """``new:<architecture>`` around the codec folder ``codec`` (see :func:`load_model`).

    Raises:
        ConfigError: an unknown architecture or no codec named.
    """
    from stylecraft.errors import ConfigError

    arch = name[len(NEW_PREFIX):]
    if arch not in presets.LM_ARCHITECTURES:
        known = ", ".join(NEW_PREFIX + a for a in presets.LM_ARCHITECTURES)
        raise ConfigError(f"unknown architecture in '{name}' (known: {known})")
    if not codec:
        raise ConfigError(f"model '{name}' is built around a trained codec: set model.codec to an EnCodec folder "
                          "or run the codec stage first")
    model, tokenizer = presets.build_new(arch, load_codec(codec), seed)
    return ModelBundle(model=model, tokenizer=tokenizer, name=name, source=f"{name}+codec:{codec}")


def load_codec(name_or_path: str) -> Any:
    """A transformers ``EncodecModel`` in eval mode: an EnCodec folder, or the codec of any model
    :func:`load_model` loads (preset, registry name, MusicGen folder, run folder).

    Raises:
        CheckpointError / ModelNotFoundError: nothing loadable there.
    """
    import json

    from transformers import EncodecModel

    folder = Path(name_or_path).expanduser()
    config = folder / "config.json"
    if config.exists() and json.loads(config.read_text()).get("model_type") == "encodec":
        if not (folder / "model.safetensors").exists():
            raise CheckpointError(f"'{folder}' has no model.safetensors (stylecraft loads safetensors only)")
        try:
            codec = EncodecModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load codec from '{folder}': {str(exc).splitlines()[0]}") from None
        return codec.eval()
    if (folder / "codec" / "model" / "config.json").exists() and not (folder / "model" / "config.json").exists():
        return load_codec(str(folder / "codec" / "model"))  # a run folder that trained only a codec
    return load_model(name_or_path).model.audio_encoder.eval()


def recipe_model(cfg: Any, run: Path) -> ModelBundle:
    """The model a recipe names; a ``new:`` model takes ``model.codec`` or the run's own codec."""
    name = str(cfg.model.name)
    if name.startswith(NEW_PREFIX):
        codec = str(cfg.model.codec) or str(run / "codec" / "model")
        return load_model(name, codec=codec, seed=int(cfg.model.seed))
    return load_model(name)
