"""AudioSeal watermark backend (``generate.watermark.method: audioseal``): a learned, localised mark.

AudioSeal (San Roman et al., 2024) is a SEANet generator that writes a 16-bit message into 16 kHz
audio and a detector that returns, per sample, the probability that the mark is present and the
decoded bits. The networks are built from the ``audioseal`` package's own model cards; only the
weights come from disk: the official ``generator_base.pth`` and ``detector_base.pth`` (fetched
with ``stylecraft fetch audioseal``, or any folder holding them, or ``.safetensors`` copies).

The package's own loader runs an unrestricted unpickler, so it is not used: checkpoints are
read with ``torch.load(weights_only=True)`` (the config dictionary they carry is allowed through
as omegaconf containers, nothing else) or from safetensors.

The key selects the message: 16 bits from a keyed hash. A file carries the key's mark when the
detector finds the mark (mean probability >= ``DETECT_PROB``) and decodes at least ``MIN_BITS``
of the key's 16 bits. Like the DSP backend the mark is computed at 16 kHz and added, resampled,
to audio at any rate, so every channel gets the same mark.

Without weights every entry point raises :class:`ModelNotFoundError`: there is no silent fallback
to the DSP mark.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.audio import io as audio_io
from stylecraft.errors import CheckpointError, ConfigError, ModelNotFoundError
from stylecraft.generate.watermark_key import resolve_key

METHOD = "audioseal-16bits"
RATE = 16000
NBITS = 16
DETECT_PROB = 0.5  # share of samples the detector calls marked
MIN_BITS = 15  # of 16 key bits decoded right: a random message matches this often with p = 17/65536
GENERATOR_CARD = "audioseal_wm_16bits"
DETECTOR_CARD = "audioseal_detector_16bits"
FILES = {"generator": ("generator_base.safetensors", "generator_base.pth"),
         "detector": ("detector_base.safetensors", "detector_base.pth")}


def _require_package() -> Any:
    try:
        import audioseal
    except ImportError:
        raise ModelNotFoundError("the AudioSeal backend needs the audioseal package: pip install 'stylecraft[audioseal]'") from None
    return audioseal


def default_dir() -> Path:
    """Where ``stylecraft fetch audioseal`` puts the weights."""
    from stylecraft.models.registry import checkpoints_dir

    return checkpoints_dir() / "hub" / "audioseal"


def find_weights(path: str | Path | None) -> dict[str, Path]:
    """The generator and detector weight files in ``path`` (a folder), else in the fetch folder.

    Raises:
        ModelNotFoundError: the package is missing, or either file is not there.
    """
    _require_package()
    folder = Path(path).expanduser() if path else default_dir()
    out: dict[str, Path] = {}
    for role, names in FILES.items():
        found = [folder / n for n in names if (folder / n).is_file()]
        if not found:
            raise ModelNotFoundError(
                f"AudioSeal {role} weights ({' or '.join(names)}) not found in '{folder}': run `stylecraft fetch audioseal` "
                "(needs network) or set generate.watermark.audioseal_path to a folder holding them")
        out[role] = found[0]
    return out


def _card_config(card: str, kind: str) -> Any:
    """The package's model card as its typed config (the checkpoint URL dropped: nothing is downloaded)."""
    from omegaconf import OmegaConf

    _require_package()
    from audioseal.builder import AudioSealDetectorConfig, AudioSealWMConfig
    from audioseal.loader import AudioSeal, load_local_model_config

    raw = load_local_model_config(card)
    if raw is None:
        raise ModelNotFoundError(f"the installed audioseal package has no model card '{card}'")
    cfg: dict[str, Any] = {str(k): v for k, v in dict(OmegaConf.to_container(raw)).items()}  # type: ignore[arg-type]
    cfg.pop("checkpoint", None)
    if kind == "generator":
        return AudioSeal.parse_config(cfg, AudioSealWMConfig, nbits=NBITS)
    return AudioSeal.parse_config(cfg, AudioSealDetectorConfig, nbits=NBITS)


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Tensors of an AudioSeal checkpoint, read without running pickled code.

    ``.safetensors`` files are read directly. ``.pth`` files are opened with
    ``torch.load(weights_only=True)``; the official ones also hold their training config as
    omegaconf containers, which are allowed through and dropped.

    Raises:
        CheckpointError: the file holds anything else, or no state dict.
    """
    import torch

    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(p)))
    import collections
    import typing

    # Plain data containers only: an omegaconf config is dictionaries, lists and typed leaves.
    allowed: list[Any] = [collections.defaultdict, typing.Any, dict, list, int, float, str, bool]
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode

        allowed += [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode]
    except ImportError:
        pass
    try:
        with torch.serialization.safe_globals(allowed):
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError with a long text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"'{p}' cannot be loaded safely (weights_only=True): {first}") from None
    if isinstance(ckpt, dict) and "best_state" in ckpt:
        ckpt = ckpt["best_state"]
    if isinstance(ckpt, dict) and "model" in ckpt:
        ckpt = ckpt["model"]
    if not isinstance(ckpt, dict) or not ckpt or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"'{p}' holds no AudioSeal state dict")
    return dict(ckpt)


def build(kind: str, state_dict: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """An AudioSeal generator or detector from the package's card, with ``state_dict`` loaded.

    Without a state dict the network keeps a deterministic random init (``seed``): the real
    architecture, for tests; its marks mean nothing.
    """
    import torch

    _require_package()
    from audioseal.builder import create_detector, create_generator
    from audioseal.loader import convert_state_dict_for_scriptable_model, load_state_dict

    cfg = _card_config(GENERATOR_CARD if kind == "generator" else DETECTOR_CARD, kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_generator(cfg) if kind == "generator" else create_detector(cfg)
    if state_dict is not None:
        try:
            # The released checkpoints predate the package's scriptable layers: rename their keys
            # (a state dict saved from this code already has the new names).
            if not any("inner_conv." in k for k in state_dict):
                state_dict = convert_state_dict_for_scriptable_model(state_dict)
            load_state_dict(model, state_dict)
        except (RuntimeError, AssertionError, KeyError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"AudioSeal {kind} weights do not fit the {kind} network: {first}") from None
    return model.eval()


@dataclass
class AudioSealModels:
    generator: Any
    detector: Any
    sha256: dict[str, str]  # weight file name -> sha256 (empty for random init)


@lru_cache(maxsize=2)
def load_models(path: str | None) -> AudioSealModels:
    """Generator and detector from the weights in ``path`` (or the fetch folder), cached per path."""
    from stylecraft.artifacts import sha256_file

    files = find_weights(path)
    return AudioSealModels(
        generator=build("generator", read_state_dict(files["generator"])),
        detector=build("detector", read_state_dict(files["detector"])),
        sha256={f.name: sha256_file(f) for f in files.values()},
    )


def _eager() -> Any:
    """A context in which the package's layers run eagerly: its SEANet blocks otherwise call
    ``torch.compile`` on first use, which costs about a minute on a CPU for a one-off mark."""
    import contextlib

    try:
        from audioseal.libs.moshi.utils.compile import no_compile
    except ImportError:  # older package layouts compile nothing
        return contextlib.nullcontext()
    return no_compile()


def key_message(key: str) -> np.ndarray:
    """The 16 message bits a key selects ``[16]`` (0/1)."""
    digest = hashlib.sha256(f"{METHOD}:message:{resolve_key(key)}".encode()).digest()
    return np.unpackbits(np.frombuffer(digest[:2], dtype=np.uint8)).astype(np.int64)


def key_id(key: str) -> str:
    return hashlib.sha256(f"{METHOD}:{resolve_key(key)}".encode()).hexdigest()[:16]


def embed(audio: np.ndarray, sample_rate: int, key: str, models: AudioSealModels) -> np.ndarray:
    """Watermark ``audio`` (``[samples]`` or ``[samples, channels]``) with the key's message."""
    import torch

    a = np.asarray(audio, dtype=np.float32)
    x16 = audio_io.resample(audio_io.to_mono(a), sample_rate, RATE)
    msg = torch.from_numpy(key_message(key))[None]  # [1, 16]
    with torch.inference_mode(), _eager():
        w16 = models.generator.get_watermark(torch.from_numpy(x16)[None, None], RATE, message=msg)[0, 0].numpy()  # [T16]
    w = audio_io.resample(w16.astype(np.float32), RATE, sample_rate)
    w = np.pad(w, (0, max(0, a.shape[0] - w.shape[0])))[: a.shape[0]]
    out = a + (w[:, None] if a.ndim == 2 else w)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return (out / peak if peak > 1.0 else out).astype(np.float32)


@dataclass(frozen=True)
class AudioSealDetection:
    """``score``: the detector's share of marked samples; ``bits_matched`` of the key's 16 bits."""

    detected: bool
    score: float
    threshold: float
    bits_matched: int
    duration_s: float
    key_id: str


def detect(audio: np.ndarray, sample_rate: int, key: str, models: AudioSealModels,
           threshold: float = DETECT_PROB) -> AudioSealDetection:
    """Whether ``audio`` carries the key's AudioSeal mark (see module docstring)."""
    import torch

    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"AudioSeal detection threshold must be in (0, 1), got {threshold}")
    a = np.asarray(audio, dtype=np.float32)
    x16 = audio_io.resample(audio_io.to_mono(a), sample_rate, RATE)
    with torch.inference_mode(), _eager():
        prob, bits = models.detector.detect_watermark(torch.from_numpy(x16)[None, None], RATE)
    score = float(prob.reshape(-1)[0])
    matched = int(np.sum(bits.reshape(-1).numpy() == key_message(key)))
    return AudioSealDetection(score >= threshold and matched >= MIN_BITS, round(score, 4), threshold, matched,
                              round(a.shape[0] / sample_rate, 3), key_id(key))


def record(key: str, models: AudioSealModels) -> dict[str, Any]:
    """Provenance entry: the method, the key's public id and the weights' sha256."""
    return {"method": METHOD, "key_id": key_id(key), "weights_sha256": dict(models.sha256)}
