"""``stylecraft fetch NAME``: download known weights and verify every file's sha256."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from stylecraft.artifacts import atomic_write_json, sha256_file
from stylecraft.errors import CheckpointError, ModelNotFoundError
from stylecraft.models import registry


def fetch(name: str) -> Path:
    """Download a registry model into ``checkpoints/hub/NAME`` and verify it.

    Every file is checked against the sha256 pinned in the registry, else against the hash the hub
    publishes for it; the verified hashes are written to ``checkpoints/lock/NAME.json``.

    Raises:
        ModelNotFoundError: unknown name, or the hub cannot be reached.
        CheckpointError: a downloaded file does not match its expected hash.
    """
    entry = registry.find(name)
    if entry is None:
        known = ", ".join(registry.load_registry())
        raise ModelNotFoundError(f"unknown model '{name}' (known: {known})")
    if entry.is_shipped:  # nothing to download: check what ships and say where it is
        return entry.verify_shipped()
    if entry.is_url:
        return _fetch_files(entry)
    try:
        from huggingface_hub import HfApi, snapshot_download

        info = HfApi().model_info(entry.repo_id, files_metadata=True)
        folder = Path(snapshot_download(entry.repo_id, revision=info.sha, local_dir=entry.local_dir))
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(f"cannot download '{entry.name}' ({entry.repo_id}): {first}") from None
    expected = {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings or []}
    expected.update(entry.sha256 or {})
    verified: dict[str, str] = {}
    for rel, want in sorted(expected.items()):
        path = folder / rel
        if not path.exists():
            continue
        got = sha256_file(path)
        if want is not None and got != want:
            raise CheckpointError(f"'{path}' has sha256 {got}, expected {want}: delete it and fetch again")
        verified[rel] = got
    atomic_write_json(registry.checkpoints_dir() / "lock" / f"{entry.name}.json",
                      {"name": entry.name, "repo_id": entry.repo_id, "revision": info.sha, "sha256": verified})
    return folder


def _expected_hash(entry: registry.Entry, filename: str) -> tuple[str, bool]:
    """``(hash, is_prefix)``: the registry's full sha256, else the torch-hub prefix in the name."""
    if filename in (entry.sha256 or {}):
        return entry.sha256[filename], False
    match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$", filename)
    if match is None:
        raise CheckpointError(f"registry entry '{entry.name}' gives no sha256 for {filename}")
    return match.group(1), True


def _fetch_files(entry: registry.Entry) -> Path:
    """Download the files of an https entry, verify each, and write the lock file."""
    folder = entry.local_dir
    folder.mkdir(parents=True, exist_ok=True)
    verified: dict[str, str] = {}
    for filename in entry.files:
        path = folder / filename
        if not path.exists():
            url = entry.source.rstrip("/") + "/" + filename
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    data = resp.read()
            except Exception as exc:  # network errors come in many types; all mean the same to the user
                raise ModelNotFoundError(f"cannot download '{entry.name}' file {url}: {exc}") from None
            from stylecraft.artifacts import atomic_write_bytes

            atomic_write_bytes(path, data)
        got = sha256_file(path)
        want, is_prefix = _expected_hash(entry, filename)
        if not (got.startswith(want) if is_prefix else got == want):
            raise CheckpointError(f"'{path}' has sha256 {got}, expected {want}{'…' if is_prefix else ''}: delete it and fetch again")
        verified[filename] = got
    atomic_write_json(registry.checkpoints_dir() / "lock" / f"{entry.name}.json",
                      {"name": entry.name, "source": entry.source, "sha256": verified})
    return folder
