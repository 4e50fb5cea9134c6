"""Real music for the measurements: the Wesnoth soundtrack (the catalogue) and other composers'
free music, unpacked from Debian packages into eval/data with a SOURCE.json naming package and version."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from .common import ROOT

SOURCE_FILE = "SOURCE.json"  # provenance written next to the audio a Debian package was unpacked into


def _unpack_deb_audio(deb: Path, dest: Path, pattern: str, exclude: str | None = None, min_s: float = 0.0) -> dict[str, Any]:
    """Copy the audio files of the ``.deb`` file ``deb`` that match ``pattern`` into ``dest``.

    Files whose name matches ``exclude`` or that last less than ``min_s`` seconds (sound effects,
    jingles) are left out. ``dest`` is written whole or not at all, with a ``SOURCE.json`` naming
    the package, its version and the files kept.
    """
    from fnmatch import fnmatch

    from stylecraft.artifacts import atomic_write_json

    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True).stdout.strip()

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        root, out = Path(tmp) / "root", Path(tmp) / "out"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
        out.mkdir()
        kept, short = [], 0
        for f in sorted(root.rglob(pattern)):
            if exclude is not None and fnmatch(f.name, exclude):
                continue
            if min_s > 0 and sf.info(str(f)).duration < min_s:
                short += 1
                continue
            if (out / f.name).exists():  # flattened into one folder: a second file of that name would replace the first
                raise RuntimeError(f"{deb.name}: two files named {f.name} match {pattern}")
            shutil.copy2(f, out / f.name)
            kept.append(f.name)
        source = {"package": field("Package"), "version": field("Version"), "pattern": pattern, "exclude": exclude,
                  "min_seconds": min_s, "files": kept, "left_out_short": short}
        atomic_write_json(out / SOURCE_FILE, source)
        out.rename(dest)
    return source


def _fetch_deb_audio(package: str, dest: Path, pattern: str, exclude: str | None = None, min_s: float = 0.0) -> None:
    """Unpack the audio files of a Debian package into ``dest`` (apt-get download + dpkg-deb)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
        _unpack_deb_audio(next(Path(tmp).glob("*.deb")), dest, pattern, exclude, min_s)


def music_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    local = ROOT / "eval" / "data" / "wesnoth"
    if not local.exists():
        from bench_prep import fetch_wesnoth

        fetch_wesnoth(local)
    return local


# Other composers' free music (Debian packages): "another artist" in the outlier test and more
# unwatermarked real music in the watermark's false-positive test. (folder, package, file pattern)
OTHER_PACKAGES = (
    ("asc-music", "asc-music", "*.mp3"),
    ("colobot-music", "colobot-common-sounds", "music/*.ogg"),
    ("drascula-music", "drascula-music", "audio/*.ogg"),
)
def _deb_dir(name: str, package: str, pattern: str, exclude: str | None = None, min_s: float = 0.0) -> Path:
    local = ROOT / "eval" / "data" / name
    if not local.exists():
        _fetch_deb_audio(package, local, pattern, exclude, min_s)
    return local


def _source_info(folder: Path, package: str | None) -> dict[str, Any]:
    """Package and version a music folder came from: as recorded when it was unpacked, else apt's candidate now."""
    rec = folder / SOURCE_FILE
    if rec.exists():
        src = json.loads(rec.read_text())
        return {"package": src["package"], "version": src["version"], "version_from": "unpacked .deb"}
    if package is None:
        return {"package": None, "version": None, "version_from": "user folder"}
    res = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    cand = next((ln.split(":", 1)[1].strip() for ln in res.stdout.splitlines() if ln.strip().startswith("Candidate:")), None)
    return {"package": package, "version": cand, "version_from": "apt candidate when measured (fetched earlier, not recorded)"}


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".ogg", ".opus", ".mp3", ".flac", ".wav"))


def _mono(path: Path, sr: int, max_s: float | None = None) -> np.ndarray:
    info = sf.info(str(path))
    frames = -1 if max_s is None else int(max_s * info.samplerate)
    x, file_sr = sf.read(str(path), dtype="float32", frames=frames, always_2d=True)
    return soxr.resample(x.mean(axis=1), file_sr, sr).astype(np.float32)

