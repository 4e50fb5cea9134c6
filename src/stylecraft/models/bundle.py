"""A loaded MusicGen model with its tokenizer, and the folder format it is saved in.

The building block of :mod:`~stylecraft.models.loading` and :mod:`~stylecraft.models.audiocraft`:
a model folder holds ``config.json``, safetensors weights and the tokenizer; pickled weights are
refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForTextToWaveform,
    AutoTokenizer,
    MusicgenForConditionalGeneration,
    PreTrainedTokenizerBase,
)

from stylecraft.errors import CheckpointError

__all__ = ["ModelBundle", "cached_bundle", "from_folder", "hf_cache_folder", "save_bundle"]

SUPPORTED_TYPES = ("musicgen", "musicgen_melody")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class ModelBundle:
    model: MusicgenForConditionalGeneration  # or MusicgenMelodyForConditionalGeneration
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: str

    @property
    def _audio(self) -> Any:  # transformers types sub-configs loosely (dict | config | None)
        return self.model.config.audio_encoder

    @property
    def _decoder(self) -> Any:
        return self.model.config.decoder

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)

    @property
    def sample_rate(self) -> int:
        return int(self._audio.sampling_rate)

    @property
    def frame_rate(self) -> int:
        return int(self._audio.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self._decoder.num_codebooks)

    @property
    def codebook_size(self) -> int:
        return int(self._decoder.vocab_size)

    @property
    def pad_token_id(self) -> int:
        return int(self._decoder.pad_token_id)

    @property
    def channels(self) -> int:
        """Audio channels the model generates: 2 for stereo models (interleaved codebooks), else 1."""
        return int(getattr(self._decoder, "audio_channels", 1))

    @property
    def bandwidth(self) -> float:
        return float(self._audio.target_bandwidths[-1])


def from_folder(folder: Path, name: str) -> ModelBundle:
    if not (folder / "config.json").exists():
        raise CheckpointError(f"'{folder}' is not a model folder (no config.json)")
    import json

    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type not in SUPPORTED_TYPES:
        raise CheckpointError(
            f"'{folder}' holds a '{model_type}' model; stylecraft loads {', '.join(SUPPORTED_TYPES)} models"
        )
    if not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for ext in PICKLE_SUFFIXES for p in folder.glob(f"*{ext}"))
        if pickled:
            raise CheckpointError(
                f"'{folder}' holds pickled weights ({', '.join(pickled)}), which can run code when loaded: "
                "stylecraft loads safetensors only (convert them where you trust the source, e.g. "
                "save_pretrained(..., safe_serialization=True))"
            )
        raise CheckpointError(f"'{folder}' has no model weights (*.safetensors)")
    try:
        # The auto class picks MusicgenForConditionalGeneration or MusicgenMelodyForConditionalGeneration;
        # use_safetensors=True: never fall back to unpickling a .bin file.
        model = AutoModelForTextToWaveform.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load model from '{folder}': {str(exc).splitlines()[0]}") from None
    if next(model.parameters()).dtype in (torch.float16, torch.bfloat16):
        # Half precision is a storage choice (stylecraft-mini ships so): computation follows the
        # run's own precision settings, from float32 weights.
        model.float()
    model.eval()
    return ModelBundle(model=model, tokenizer=tokenizer, name=name, source=str(folder))


def hf_cache_folder(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (offline): the caller raises a clear error
        return None
    return folder if (folder / "config.json").exists() else None


def cached_bundle(cache: Path, name: str, source: str) -> ModelBundle | None:
    """The bundle saved in ``cache``, or None when there is none or it is damaged (rebuild it then).

    Args:
        cache: Folder written by :func:`save_bundle`.
        name: Name the bundle reports.
        source: Where the cached model came from (``preset:NAME``, ``audiocraft:FOLDER``).
    """
    if not (cache / "config.json").exists():
        return None
    try:
        bundle = from_folder(cache, name)
    except CheckpointError:
        return None
    bundle.source = source
    return bundle


def save_bundle(bundle: ModelBundle, folder: str | Path) -> None:
    """Save model (safetensors) and tokenizer into ``folder`` (written beside it, then renamed)."""
    from stylecraft.artifacts import replace_dir

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    bundle.model.save_pretrained(tmp, safe_serialization=True)
    bundle.tokenizer.save_pretrained(tmp)
    replace_dir(tmp, folder)
