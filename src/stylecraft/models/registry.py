"""Registry of known pretrained weights (``checkpoints/registry.yaml``) and their local folders."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stylecraft.errors import CheckpointError


def checkpoints_dir() -> Path:
    """``$STYLECRAFT_CHECKPOINTS``, else the project's ``checkpoints/`` folder."""
    env = os.environ.get("STYLECRAFT_CHECKPOINTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "checkpoints"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    source: str
    license: str
    params: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    # For plain https sources: the file names under ``source`` to download.
    files: list[str] = field(default_factory=list)

    @property
    def is_shipped(self) -> bool:
        """Whether the weights ship with stylecraft (``checkpoints/NAME``): loaded by name, never fetched."""
        return self.source == f"shipped:{self.name}"

    @property
    def is_url(self) -> bool:
        """Whether the weights are plain files under an https URL (not a hub repository)."""
        return self.source.startswith("https://")

    @property
    def repo_id(self) -> str:
        if not self.source.startswith("hf://"):
            raise CheckpointError(f"model '{self.name}' has an unsupported source '{self.source}'")
        return self.source[len("hf://") :]

    @property
    def local_dir(self) -> Path:
        return checkpoints_dir() / self.name if self.is_shipped else checkpoints_dir() / "hub" / self.name

    def verify_shipped(self) -> Path:
        """The shipped folder, once every file named in ``sha256`` is there with that hash.

        Raises:
            CheckpointError: a file is missing or altered (one line naming it and the fix).
        """
        from stylecraft.artifacts import sha256_file

        folder = self.local_dir
        for filename, digest in sorted(self.sha256.items()):
            path = folder / filename
            if not path.is_file():
                raise CheckpointError(f"model '{self.name}' is incomplete: '{path}' is missing (restore it from the "
                                      f"stylecraft repository, e.g. `git checkout -- {path}`)")
            if sha256_file(path) != digest:
                raise CheckpointError(f"model '{self.name}' is damaged: '{path}' does not match its sha256 in "
                                      f"checkpoints/registry.yaml (restore it, e.g. `git checkout -- {path}`)")
        return folder


def load_registry() -> dict[str, Entry]:
    path = checkpoints_dir() / "registry.yaml"
    if not path.exists():
        raise CheckpointError(f"model registry '{path}' is missing; set STYLECRAFT_CHECKPOINTS to the project's checkpoints/")
    data = yaml.safe_load(path.read_text()) or {}
    return {name: Entry(name=name, **{k: v for k, v in row.items()}) for name, row in data.items()}


def find(name: str) -> Entry | None:
    """The registry entry for a name or a hub id (``facebook/musicgen-small``)."""
    reg = load_registry()
    if name in reg:
        return reg[name]
    for entry in reg.values():
        if entry.source == f"hf://{name}":
            return entry
    return None
