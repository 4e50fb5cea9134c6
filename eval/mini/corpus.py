"""stylecraft-mini's corpus: the music of a closed list of Debian packages, with versions and licences.

Every package is fetched with ``apt-get download`` and unpacked with ``dpkg-deb``; its music files
are chosen by path patterns (sound effects, voices and jingles are left out); tracker modules are
rendered to FLAC with ``openmpt123``. Two soundtracks are held out as test artists: the base model
never hears them, so fine-tuning on them measures style shift on unseen music.

The list is closed: any other music on the machine is kept for evaluation.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIO = (".ogg", ".opus", ".mp3", ".flac", ".wav")
TRACKER = (".it", ".xm", ".s3m", ".mod")
MIN_SECONDS = 15.0  # shorter files are jingles and stingers


@dataclass(frozen=True)
class Source:
    package: str
    soundtrack: str  # the "artist" of its tracks (the first folder under the catalogue)
    patterns: tuple[str, ...]  # globs below the unpacked package root
    exclude: tuple[str, ...] = ()  # file-name globs left out
    role: str = "corpus"  # corpus | test


SOURCES: tuple[Source, ...] = (
    Source("wesnoth-1.16-music", "wesnoth", ("usr/share/games/wesnoth/*/data/core/music/*",)),
    Source("asc-music", "asc", ("usr/share/games/asc/music/*",)),
    Source("warzone2100-music", "warzone2100", ("usr/share/games/warzone2100/music/**/*",),
           exclude=("*_enhanced.*",)),  # remasters of two other tracks: the same songs twice
    Source("lincity-ng-data", "lincity-ng", ("usr/share/games/lincity-ng/music/**/*",)),
    Source("extremetuxracer-data", "extremetuxracer", ("usr/share/games/etr/music/*",)),
    Source("hedgewars-data", "hedgewars", ("usr/share/games/hedgewars/Data/Music/*",)),
    Source("supertux-data", "supertux", ("usr/share/games/supertux2/music/**/*",)),
    Source("megaglest-data", "megaglest", ("usr/share/games/megaglest/**/music/*",)),
    Source("widelands-data", "widelands", ("usr/share/games/widelands/data/music/*",)),
    Source("freedroidrpg-data", "freedroidrpg", ("usr/share/freedroidrpg/data/sound/music/*",)),
    Source("flare-game", "flare", ("usr/share/games/flare/mods/*/music/*",)),
    Source("neverball-data", "neverball", ("usr/share/games/neverball/bgm/*",)),  # this version ships no music
    Source("openclonk-data", "openclonk", ("usr/share/games/openclonk/Music.ocg/*",)),
    Source("xmoto-data", "xmoto", ("usr/share/games/xmoto/Textures/Musics/*",)),
    Source("frozen-bubble-data", "frozen-bubble", ("usr/share/games/frozen-bubble/snd/*zik*",)),
    Source("pingus-data", "pingus", ("usr/share/games/pingus/data/music/*",)),
    # Held out: the base model never hears these two.
    Source("drascula-music", "drascula", ("usr/share/scummvm/drascula/audio/*",), role="test"),
    Source("colobot-common-sounds", "colobot", ("usr/share/games/colobot/music/*",), role="test"),
)


@dataclass
class Package:
    name: str
    version: str
    root: Path
    copyright_sha256: str | None
    files: list[dict[str, Any]] = field(default_factory=list)


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def fetch(package: str, work: Path) -> Path:
    """``work/unpacked/<package>`` (downloaded and unpacked once; a partial unpack is redone)."""
    debs, unpacked = work / "debs", work / "unpacked" / package
    if (unpacked / ".complete").exists():
        return unpacked
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} produced no .deb")
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        _run(["dpkg-deb", "-x", str(found[-1]), tmp])
        (Path(tmp) / ".deb").write_text(found[-1].name)
        (Path(tmp) / ".complete").write_text(_run(["dpkg-deb", "-f", str(found[-1]), "Version"]).strip())
        if unpacked.exists():
            shutil.rmtree(unpacked)
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp, unpacked)
    return unpacked


def _copyright_stanzas(text: str) -> list[tuple[list[str], str]]:
    """(Files patterns, License short name) of each stanza of a machine-readable copyright file."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:\s*(.+(?:\n[ \t]+.+)*)", block, re.M)
        lic = re.search(r"^License:\s*(.*)", block, re.M)
        if files and lic:
            out.append((files.group(1).split(), lic.group(1).strip()))
    return out


def licence_of(path: str, stanzas: list[tuple[list[str], str]]) -> str | None:
    """The licence of the last stanza whose pattern matches the end of ``path`` (DEP-5: last match wins).

    Source-tree patterns are matched against the installed path's tail, since packages install
    ``data/music/x.ogg`` under a prefix such as ``usr/share/games/<game>/``.
    """
    found = None
    for patterns, lic in stanzas:
        for pat in patterns:
            if pat == "*" or fnmatch.fnmatch(path, f"*{pat}") or fnmatch.fnmatch(path, f"*/{pat}"):
                found = lic or found
    return found


def _select(root: Path, src: Source) -> list[Path]:
    out = set()
    for pattern in src.patterns:
        for p in root.glob(pattern):
            if p.is_file() and p.suffix.lower() in AUDIO + TRACKER and not any(fnmatch.fnmatch(p.name, e) for e in src.exclude):
                out.add(p)
    return sorted(out)


def render_tracker(module: Path, out_dir: Path) -> Path:
    """A tracker module rendered once to FLAC (48 kHz stereo) with openmpt123."""
    target = out_dir / (module.stem + ".flac")
    if target.exists():
        return target
    if shutil.which("openmpt123") is None:
        raise RuntimeError("openmpt123 is needed to render tracker modules (apt-get install openmpt123)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{module.stem}.partial.flac"
    _run(["openmpt123", "--batch", "--quiet", "--force", "--samplerate", "48000", "--channels", "2",
          "--no-float", "--output", str(tmp), str(module)])
    tmp.rename(target)
    return target


def collect(src: Source, work: Path) -> Package:
    """The package's version, licences and music files (rendered when they are modules)."""
    import soundfile as sf

    from stylecraft.artifacts import sha256_file

    root = fetch(src.package, work)
    copyright_file = root / "usr/share/doc" / src.package / "copyright"
    stanzas = _copyright_stanzas(copyright_file.read_text(errors="replace")) if copyright_file.exists() else []
    pkg = Package(src.package, (root / ".complete").read_text().strip(), root,
                  sha256_file(copyright_file) if copyright_file.exists() else None)
    for f in _select(root, src):
        rel = str(f.relative_to(root))
        audio = render_tracker(f, work / "rendered" / src.package) if f.suffix.lower() in TRACKER else f
        seconds = float(sf.info(str(audio)).duration)
        if seconds < MIN_SECONDS:
            continue
        pkg.files.append({"path": rel, "audio": str(audio), "seconds": round(seconds, 2),
                          "licence": licence_of(rel, stanzas), "rendered": audio != f})
    return pkg
