"""Atomic, hashed artifacts: every file stylecraft writes goes through here.

A file is written to a temporary name in the same folder, flushed, fsynced and renamed, so a
killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.errors import ModelNotFoundError

_CHUNK = 1 << 20
_UMASK = os.umask(0)
os.umask(_UMASK)


def inside(root: str | os.PathLike[str], rel: str | os.PathLike[str], what: str = "path") -> Path:
    """``root / rel``, refusing a ``rel`` that is absolute or climbs out of ``root`` with ``..``.

    Manifests name files relative to their run folder; a tampered manifest must not make a stage
    read or overwrite anything elsewhere. The check is lexical (symlinks a user placed inside the
    folder are theirs to place).

    Raises:
        StageInputError: ``rel`` escapes ``root``.
    """
    from stylecraft.errors import StageInputError

    text = os.fspath(rel)
    parts = Path(text).parts
    if not text or Path(text).is_absolute() or ".." in parts or "\\" in text or "\x00" in text:
        raise StageInputError(f"{what} '{text}' escapes '{root}': the manifest has been altered, re-run the stage that wrote it")
    return Path(root) / text


def check_under(path: str | os.PathLike[str], root: str | os.PathLike[str], what: str = "path") -> Path:
    """``path`` itself, if it lies (lexically, after normalisation) under ``root``.

    Raises:
        StageInputError: it does not.
    """
    from stylecraft.errors import StageInputError

    p = Path(os.path.normpath(os.path.abspath(path)))
    r = Path(os.path.normpath(os.path.abspath(root)))
    if p != r and r not in p.parents:
        raise StageInputError(f"{what} '{path}' is outside '{root}': the manifest has been altered, re-run the stage that wrote it")
    return Path(path)


def cache_root() -> Path:
    """stylecraft's cache folder for derived files it can rebuild: ``$STYLECRAFT_CACHE``, else
    ``~/.cache/stylecraft``."""
    return Path(os.environ.get("STYLECRAFT_CACHE", Path.home() / ".cache" / "stylecraft"))


def download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest``; no network is a ``ModelNotFoundError``."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as fh:
            shutil.copyfileobj(response, fh, length=1 << 20)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot download {url}: {exc}") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_sha256(folder: str | os.PathLike[str], exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative POSIX path (sorted), for a manifest.

    Args:
        exclude: File names left out (e.g. the manifest itself).
    """
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in exclude
    }


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object in canonical form (sorted keys, no spaces)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary keeps ``path``'s suffix so that writers choosing a format by extension
    (soundfile, numpy) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> str:
    """Write ``data`` atomically and return its sha256."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return sha256_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> str:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> str:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> str:
    """Save an array as .npy atomically, without pickles (memory-mappable with ``mmap_mode='r'``)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def _to_jsonable(row: Any) -> Any:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    return row


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> str:
    """Write rows (dicts or dataclasses) as JSON lines, atomically; return the file's sha256."""
    lines = [json.dumps(_to_jsonable(r), ensure_ascii=False, sort_keys=True) for r in rows]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file; blank lines are skipped."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def append_jsonl(path: str | os.PathLike[str], row: Any) -> None:
    """Append one JSON line and fsync (used for logs, where a torn last line is tolerated on read)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(_to_jsonable(row), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl_tolerant(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an append-only log, ignoring a torn final line left by a killed writer."""
    rows: list[dict[str, Any]] = []
    if not Path(path).exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move a fully written folder ``src`` onto ``dst`` (removing an older ``dst``)."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)
