"""Source separation: Spleeter (native PyTorch port reading the official checkpoints) and Demucs.

Model names:

* ``spleeter:2stems``, ``spleeter:4stems``, ``spleeter:5stems`` and their ``-16kHz`` variants:
  the released Spleeter models; weights from ``stylecraft fetch spleeter:4stems`` or
  ``--checkpoint DIR`` (an extracted release tarball or a ``spleeter train`` model_dir).
  A Spleeter params ``.json`` file (``spleeter:path/to/config.json``) describes a custom model.
* ``spleeter:2stems-tiny`` (and ``4stems-tiny``, ``5stems-tiny``): the same computation with
  small deterministic random networks, for tests and offline demos.
* ``demucs:htdemucs`` (or any model of the demucs package) and ``demucs:tiny``.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from stylecraft.artifacts import cache_root, download, sha256_file
from stylecraft.errors import CheckpointError, ConfigError, ModelNotFoundError

__all__ = ["describe_separator", "download", "fetch_spleeter", "load_separator", "spleeter_weights_dir"]

SPLEETER_RELEASE = "https://github.com/deezer/spleeter/releases/download/v1.4.0"
_TINY_FILTERS = (4, 4, 8, 8, 8, 8)


def _cache_dir() -> Path:
    return cache_root() / "spleeter"


def spleeter_weights_dir(base: str) -> Path:
    """Where ``stylecraft fetch spleeter:<base>`` puts the extracted checkpoint."""
    from stylecraft.models.registry import checkpoints_dir

    return checkpoints_dir() / "hub" / "spleeter" / base


def _split(model: str) -> tuple[str, str]:
    if ":" not in model:
        raise ConfigError(f"model {model!r} must be 'spleeter:<name>' or 'demucs:<name>'")
    backend, name = model.split(":", 1)
    if backend not in ("spleeter", "demucs"):
        raise ConfigError(f"unknown separation backend {backend!r} in {model!r}: use spleeter:… or demucs:…")
    return backend, name


def load_separator(
    model: str,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    batch_segments: int | None = None,
    mwf: bool = False,
) -> Any:
    """Build a separator from a model name (see the module docstring) and optional weights path.

    Raises:
        ConfigError: unknown model name.
        ModelNotFoundError: released weights not on this machine and no ``checkpoint`` given.
        CheckpointError: the checkpoint is not of the named model.
    """
    backend, name = _split(model)
    if mwf and backend != "spleeter":
        raise ConfigError("--mwf (multichannel Wiener filtering) is a Spleeter option")
    if backend == "demucs":
        from stylecraft.separate.demucs import DemucsSeparator

        if checkpoint is not None:
            return DemucsSeparator.from_checkpoint(checkpoint, name=name, device=device)
        return DemucsSeparator.pretrained(name, device=device)

    from stylecraft.separate.spleeter import SpleeterSeparator, resolve_spec

    if name.endswith("-tiny"):
        if checkpoint is not None:
            raise ConfigError(f"{model} has random weights; drop --checkpoint or use spleeter:{name[:-5]}")
        sep = SpleeterSeparator.random(
            name[: -len("-tiny")], conv_n_filters=_TINY_FILTERS, device=device, batch_segments=batch_segments
        )
        sep.mwf = mwf
        return sep
    spec = resolve_spec(name)
    if checkpoint is None:
        base = spec.name.replace("-16kHz", "")
        folder = spleeter_weights_dir(base)
        if not folder.is_dir():
            raise ModelNotFoundError(
                f"Spleeter weights for {model} are not on this machine: run `stylecraft fetch spleeter:{base}` "
                "or pass --checkpoint DIR (an extracted release tarball or a `spleeter train` model_dir)"
            )
        checkpoint = folder
    sep = SpleeterSeparator.from_checkpoint(
        checkpoint, model=spec, device=device, batch_segments=batch_segments, cache_dir=_cache_dir()
    )
    sep.mwf = mwf
    return sep


def describe_separator(separator: Any) -> dict[str, Any]:
    """Provenance fields for manifests: backend, model name, where the weights came from."""
    from stylecraft.separate.demucs import DemucsSeparator

    if isinstance(separator, DemucsSeparator):
        return {
            "backend": "demucs",
            "model": separator.name,
            "weights": separator.origin,
            "stems": list(separator.stems),
        }
    return {
        "backend": "spleeter",
        "model": separator.spec.name,
        "weights": separator.origin,
        "stems": list(separator.stems),
        "mwf": separator.mwf,
    }


def fetch_spleeter(model: str, release: str = SPLEETER_RELEASE) -> Path:
    """Download a released Spleeter model, check its sha256 against Spleeter's ``checksum.json``
    and extract it into ``checkpoints/hub/spleeter/<name>``.

    Raises:
        ModelNotFoundError: unknown model or no network.
        CheckpointError: the archive's sha256 differs from the published one, or it holds
            anything but plain files.
    """
    _, name = _split(model)
    base = name.replace("-16kHz", "")
    if base not in ("2stems", "4stems", "5stems"):
        raise ModelNotFoundError(
            f"unknown Spleeter release {model!r}; known: spleeter:2stems, spleeter:4stems, spleeter:5stems"
        )
    target = spleeter_weights_dir(base)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unpacked next to the target, so that the final rename stays on one file system.
    with tempfile.TemporaryDirectory(
        prefix=".fetch-", dir=target.parent
    ) as tmp:
        index_path = Path(tmp) / "checksum.json"
        download(f"{release}/checksum.json", index_path)
        try:
            expected = json.loads(index_path.read_text())[base]
        except (KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"Spleeter's checksum index has no entry for {base}: {exc}") from None
        archive = Path(tmp) / f"{base}.tar.gz"
        download(f"{release}/{base}.tar.gz", archive)
        digest = sha256_file(archive)
        if digest != expected:
            raise CheckpointError(
                f"{base}.tar.gz has sha256 {digest}, Spleeter publishes {expected}: not extracted"
            )
        extract = Path(tmp) / base
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise CheckpointError(
                        f"{base}.tar.gz holds a non-regular entry {member.name!r}: not extracted"
                    )
            try:
                tar.extractall(extract, filter="data")  # refuses absolute paths and '..'
            except tarfile.FilterError as exc:
                raise CheckpointError(f"{base}.tar.gz: {exc}: not extracted") from None
        (extract / "stylecraft-fetch.json").write_text(
            json.dumps({"source": f"{release}/{base}.tar.gz", "sha256": digest})
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(extract, target)
    return target
