"""Separate many files into ``OUT/<input name>/<stem>.<fmt>`` with a manifest and rejects.

Used by ``stylecraft separate``. Each input is streamed (bounded memory for Spleeter); a file that
cannot be used gets a one-line reason in ``OUT/rejects.jsonl`` and the batch goes on. Outputs are
written atomically and listed with their sha256 in ``OUT/separated.jsonl``; an input whose
outputs are already there, intact, from the same model and the same source hash is skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylecraft.artifacts import read_jsonl_tolerant, sha256_file, write_jsonl
from stylecraft.audio import AUDIO_EXTENSIONS
from stylecraft.errors import AudioDecodeError, StageInputError
from stylecraft.progress import make_progress
from stylecraft.separate import describe_separator
from stylecraft.separate.streaming import separate_file

__all__ = ["AUDIO_EXTENSIONS", "BatchResult", "collect_inputs", "separate_paths"]



@dataclass
class BatchResult:
    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def collect_inputs(inputs: list[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Expand folders (recursively, sorted) into audio files; missing paths become rejects."""
    files: list[Path] = []
    rejects: list[dict[str, str]] = []
    for item in inputs:
        if item.is_dir():
            for root, dirs, names in os.walk(item):
                dirs.sort()
                for n in sorted(names):
                    p = Path(root) / n
                    if p.suffix.lower() in AUDIO_EXTENSIONS and not n.startswith("."):
                        files.append(p)
        elif item.is_file():
            files.append(item)
        else:
            rejects.append({"path": str(item), "reason": "no such file or folder"})
    return files, rejects


def _folder_names(files: list[Path]) -> list[str]:
    """``<stem>`` per input, made unique (``song``, ``song-2``) when names collide."""
    seen: dict[str, int] = {}
    out = []
    for f in files:
        n = seen.get(f.stem, 0) + 1
        seen[f.stem] = n
        out.append(f.stem if n == 1 else f"{f.stem}-{n}")
    return out


def separate_paths(
    separator: Any,
    inputs: list[Path],
    out_dir: Path,
    fmt: str = "flac",
    mixes: dict[str, list[str]] | None = None,
    plot: bool = True,
) -> BatchResult:
    """Separate every audio file under ``inputs`` into ``out_dir``.

    Raises:
        StageInputError: no audio file among the inputs.
    """
    files, rejects = collect_inputs(inputs)
    if not files and not rejects:
        raise StageInputError(
            f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, inputs))}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model = describe_separator(separator)
    manifest = out_dir / "separated.jsonl"
    previous = {r["output"]: r for r in read_jsonl_tolerant(manifest)} if manifest.exists() else {}
    result = BatchResult(rejects=list(rejects))
    rows: dict[str, dict[str, Any]] = dict(previous)
    with make_progress() as progress:
        task = progress.add_task("separate", total=len(files))
        for src, name in zip(files, _folder_names(files), strict=True):
            folder = out_dir / name
            try:
                source_sha = sha256_file(src)
            except OSError as exc:
                result.rejects.append({"path": str(src), "reason": f"cannot read: {exc.strerror or exc}"})
                progress.advance(task)
                continue
            old = previous.get(name)
            if (
                old
                and old.get("source_sha256") == source_sha
                and old.get("model") == model
                and outputs_intact(out_dir, old)
            ):
                result.skipped.append(old)
                progress.advance(task)
                continue
            sub = progress.add_task(f"  {src.name}", total=None)

            def advance(seconds: float, task_id: Any = sub) -> None:
                progress.update(task_id, completed=seconds)

            try:
                done = separate_file(separator, src, folder, fmt=fmt, mixes=mixes, on_progress=advance)
            except AudioDecodeError as exc:
                result.rejects.append({"path": str(src), "reason": str(exc)})
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            else:
                row = {
                    "output": name,
                    "source": str(src),
                    "source_sha256": source_sha,
                    "model": model,
                    "sample_rate": done.sample_rate,
                    "channels": done.channels,
                    "source_channels": done.source_channels,
                    "duration_s": round(done.duration_s, 4),
                    "files": {
                        stem: {"path": f"{name}/{p.name}", "sha256": done.sha256[stem]}
                        for stem, p in done.stems.items()
                    },
                }
                if done.source_channels > 2:
                    result.notes.append(f"{src}: {done.source_channels} channels, the first two were separated")
                rows[name] = row
                result.done.append(row)
                write_jsonl(manifest, list(rows.values()))
                if plot:
                    plot_stems(src, done.stems, folder / "stems.png")
            finally:
                progress.remove_task(sub)
            progress.advance(task)
    write_jsonl(out_dir / "rejects.jsonl", result.rejects)
    return result


def plot_stems(source: Path, stems: dict[str, Path], out: Path, seconds: float = 30.0) -> Path:
    """Log-mel spectrograms of the input and each stem (first ``seconds``, from the middle of
    longer files) on one dB scale: the quickest way to see what went where."""
    import soundfile as sf

    from stylecraft.audio import io as audio_io
    from stylecraft.evaluate.plots import spectrogram_grid

    info = sf.info(str(source))
    start = max(0.0, info.duration / 2 - seconds / 2)
    mix, sr = audio_io.load(source, start_s=start, duration_s=seconds)
    clips = [(f"input: {source.name} ({start:.0f}-{start + mix.shape[0] / sr:.0f} s)", audio_io.to_mono(mix))]
    for name, path in stems.items():
        audio, _ = audio_io.load(path, start_s=start, duration_s=seconds) if sf.info(str(path)).frames else (mix[:0], sr)
        clips.append((name, audio_io.to_mono(audio)))
    return spectrogram_grid(clips, sr, out)


def outputs_intact(root: Path, row: dict[str, Any]) -> bool:
    """Every file a manifest row lists (``files: {name: {path, sha256}}``, paths relative to
    ``root``) is there with its recorded sha256."""
    for entry in row.get("files", {}).values():
        path = root / entry["path"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            return False
    return True
