"""Any audio in, stems out: channel layout, resampling and files around a model's stem stream.

Separators work on stereo float32 at their own sample rate (44.1 kHz for Spleeter and Demucs).
This module adapts whatever the user has: mono is duplicated to stereo and files with more than
two channels keep their first two (Spleeter's own rule); other rates are resampled to the model's
rate with a streaming soxr resampler and back afterwards, so every stem has the input's rate and
exact length. Files are read and written block by block, so memory does not grow with duration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf
import soxr

from stylecraft.artifacts import atomic_path, sha256_file
from stylecraft.errors import AudioDecodeError, ConfigError

__all__ = ["Separator", "StemStream", "SeparatedFile", "separate_array", "separate_file", "to_stereo"]

_BLOCK_SECONDS = 10.0
_FORMATS = {"flac": ("FLAC", "PCM_24"), "wav": ("WAV", "FLOAT")}


class StemStream(Protocol):
    @property
    def stems(self) -> tuple[str, ...]: ...

    def feed(self, block: np.ndarray) -> dict[str, np.ndarray]: ...

    def finish(self) -> dict[str, np.ndarray]: ...


class Separator(Protocol):
    @property
    def stems(self) -> tuple[str, ...]: ...

    @property
    def sample_rate(self) -> int: ...

    def stream(self) -> StemStream: ...


def to_stereo(block: np.ndarray) -> np.ndarray:
    """``[n]``/``[n, 1]`` -> duplicated, ``[n, c > 2]`` -> first two channels, as float32."""
    block = np.asarray(block, dtype=np.float32)
    if block.ndim == 1:
        block = block[:, None]
    if block.shape[1] == 1:
        return np.repeat(block, 2, axis=1)
    return np.ascontiguousarray(block[:, :2])


class _RateAdapter:
    """Feeds a stem stream at the model's rate and returns stems at the input's rate and length."""

    def __init__(self, separator: Separator, sample_rate: int, stream: StemStream | None = None) -> None:
        self.stream = stream if stream is not None else separator.stream()
        self.stems = separator.stems
        model_rate = separator.sample_rate
        self.same = sample_rate == model_rate
        self.rs_in = (
            None
            if self.same
            else soxr.ResampleStream(sample_rate, model_rate, 2, dtype="float32", quality="HQ")
        )
        self.rs_out = (
            {}
            if self.same
            else {
                s: soxr.ResampleStream(model_rate, sample_rate, 2, dtype="float32", quality="HQ")
                for s in self.stems
            }
        )
        self.n_in = 0
        self.n_out = 0
        self._carry = {s: np.zeros((0, 2), dtype=np.float32) for s in self.stems}

    def _back(self, outs: dict[str, np.ndarray], last: bool) -> dict[str, np.ndarray]:
        if not self.same:
            outs = {
                s: self.rs_out[s].resample_chunk(np.ascontiguousarray(outs[s]), last=last) for s in self.stems
            }
        outs = {
            s: np.concatenate([self._carry[s], outs[s]]) if self._carry[s].size else outs[s]
            for s in self.stems
        }
        # Never return more samples than came in (resampler delays make the count differ by a
        # few samples); what is held back is returned with the next block.
        budget = self.n_in - self.n_out
        n = budget if last else min(budget, outs[self.stems[0]].shape[0])
        result = {}
        for s in self.stems:
            o = outs[s][:n]
            self._carry[s] = outs[s][n:]
            if o.shape[0] < n:  # only at the end: pad the last few samples a resampler kept
                o = np.concatenate([o, np.zeros((n - o.shape[0], 2), dtype=np.float32)])
            result[s] = o
        self.n_out += n
        return result

    def feed(self, block: np.ndarray) -> dict[str, np.ndarray]:
        block = to_stereo(block)
        self.n_in += block.shape[0]
        x = block if self.rs_in is None else self.rs_in.resample_chunk(block)
        return self._back(self.stream.feed(x), last=False)

    def feed_only(self, block: np.ndarray) -> None:
        """Feed without resampling the (empty) output back: the statistics pass."""
        block = to_stereo(block)
        self.stream.feed(block if self.rs_in is None else self.rs_in.resample_chunk(block))

    def finish_only(self) -> None:
        if self.rs_in is not None:
            self.stream.feed(self.rs_in.resample_chunk(np.zeros((0, 2), dtype=np.float32), last=True))
        self.stream.finish()

    def finish(self) -> dict[str, np.ndarray]:
        if self.rs_in is not None:
            tail = self.rs_in.resample_chunk(np.zeros((0, 2), dtype=np.float32), last=True)
            first = self.stream.feed(tail)
            rest = self.stream.finish()
            outs = {s: np.concatenate([first[s], rest[s]]) for s in self.stems}
        else:
            outs = self.stream.finish()
        return self._back(outs, last=True)


def _statistics(separator: Separator, sample_rate: int, blocks: Iterable[np.ndarray]) -> Any:
    """Run a two-pass separator's first pass (Spleeter's Wiener filter) over ``blocks``."""
    stats_stream = separator.statistics_stream()  # type: ignore[attr-defined]
    adapter = _RateAdapter(separator, sample_rate, stream=stats_stream)
    for block in blocks:
        adapter.feed_only(block)
    adapter.finish_only()
    return stats_stream.stats


def _second_pass_stream(separator: Separator, waveform: np.ndarray, sample_rate: int, block: int) -> StemStream | None:
    if not getattr(separator, "mwf", False):
        return None
    blocks = (waveform[s : s + block] for s in range(0, waveform.shape[0], block))
    return separator.stream(_statistics(separator, sample_rate, blocks))  # type: ignore[call-arg]


def separate_array(separator: Separator, waveform: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """Separate an in-memory waveform; stems are float32 ``[samples, 2]`` at the input's rate."""
    waveform = np.asarray(waveform)
    if waveform.ndim not in (1, 2) or waveform.shape[0] == 0:
        raise AudioDecodeError(
            f"expected a non-empty [samples] or [samples, channels] array, got shape {waveform.shape}"
        )
    if not np.isfinite(waveform).all():
        raise AudioDecodeError("waveform holds NaN or infinite samples")
    block = int(_BLOCK_SECONDS * sample_rate)
    adapter = _RateAdapter(separator, sample_rate, stream=_second_pass_stream(separator, waveform, sample_rate, block))
    parts: dict[str, list[np.ndarray]] = {s: [] for s in separator.stems}
    for start in range(0, waveform.shape[0], block):
        for s, o in adapter.feed(waveform[start : start + block]).items():
            parts[s].append(o)
    for s, o in adapter.finish().items():
        parts[s].append(o)
    return {s: np.concatenate(p) for s, p in parts.items()}


def _decoded_blocks(reader: sf.SoundFile, source: Path, blocksize: int) -> Iterable[np.ndarray]:
    """Blocks of ``reader``; a decoder failure or NaN/Inf sample is an ``AudioDecodeError``.

    Only reading is guarded: an error in the separation itself is not a property of the file and
    is not turned into a reject.
    """
    blocks = reader.blocks(blocksize=blocksize, dtype="float32", always_2d=True)
    position = 0
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except Exception as exc:  # soundfile raises several types for damaged data
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AudioDecodeError(f"cannot decode '{source}' (at {position / reader.samplerate:.1f} s): {detail}") from None
        if not np.isfinite(block).all():
            raise AudioDecodeError(f"'{source}' holds NaN or infinite samples")
        position += block.shape[0]
        yield block


@dataclass(frozen=True)
class SeparatedFile:
    """One input's stems on disk."""

    source: Path
    stems: dict[str, Path]
    sha256: dict[str, str]
    sample_rate: int
    channels: int
    source_channels: int
    duration_s: float


def separate_file(
    separator: Separator,
    source: str | Path,
    out_dir: str | Path,
    fmt: str = "flac",
    mixes: dict[str, list[str]] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> SeparatedFile:
    """Separate ``source`` into ``out_dir/<stem>.<fmt>``, streaming, all files written atomically.

    ``mixes`` adds files that sum several stems (e.g. ``{"instrumental": ["drums", "bass",
    "other"]}``). Mono inputs give mono stems; stereo and wider inputs give stereo stems.
    ``on_progress`` receives the seconds of input processed so far.

    Raises:
        ConfigError: unknown format or mix stems (nothing is read).
        AudioDecodeError: unreadable, empty, NaN/Inf, silent, or shorter than one STFT frame.
    """
    source = Path(source)
    out_dir = Path(out_dir)
    if fmt not in _FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; use flac or wav")
    container, subtype = _FORMATS[fmt]
    mixes = dict(mixes or {})
    for name, parts in mixes.items():
        unknown = [p for p in parts if p not in separator.stems]
        if unknown or not parts:
            raise ConfigError(f"mix {name!r} names unknown stems {unknown}; this model gives {list(separator.stems)}")
    try:
        reader = sf.SoundFile(str(source))
    except Exception as exc:
        if not source.is_file():
            raise AudioDecodeError(f"'{source}' is not a file") from None
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AudioDecodeError(f"'{source}' is not a readable audio file ({detail})") from None
    names = list(separator.stems) + list(mixes)
    targets = {n: out_dir / f"{n}.{fmt}" for n in names}
    with reader, contextlib.ExitStack() as stack:
        sr, channels = reader.samplerate, reader.channels
        out_channels = 1 if channels == 1 else 2
        tmp = {n: stack.enter_context(atomic_path(p)) for n, p in targets.items()}
        writers = {
            n: stack.enter_context(
                sf.SoundFile(
                    str(t), "w", samplerate=sr, channels=out_channels, format=container, subtype=subtype
                )
            )
            for n, t in tmp.items()
        }
        blocksize = int(_BLOCK_SECONDS * sr)
        second = None
        if getattr(separator, "mwf", False):  # Wiener statistics need the whole track first
            stats = _statistics(separator, sr, _decoded_blocks(reader, source, blocksize))
            reader.seek(0)
            second = separator.stream(stats)  # type: ignore[call-arg]
        adapter = _RateAdapter(separator, sr, stream=second)
        peak = 0.0
        n_read = 0

        def write(outs: dict[str, np.ndarray]) -> None:
            full = dict(outs)
            for name, parts in mixes.items():
                full[name] = sum((outs[p] for p in parts[1:]), outs[parts[0]].copy())
            for n in names:
                data = full[n]
                if out_channels == 1:
                    data = data.mean(axis=1)
                if subtype != "FLOAT":
                    data = np.clip(data, -1.0, 1.0)
                writers[n].write(data)

        for block in _decoded_blocks(reader, source, blocksize):
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            n_read += block.shape[0]
            write(adapter.feed(block))
            if on_progress is not None:
                on_progress(n_read / sr)
        if n_read == 0:
            raise AudioDecodeError(f"'{source}' holds no audio samples")
        frame = 4096 * sr / separator.sample_rate
        if n_read < frame:
            raise AudioDecodeError(
                f"'{source}' is shorter than one 4096-sample analysis frame ({n_read} samples)"
            )
        if peak == 0.0:
            raise AudioDecodeError(f"'{source}' is silent (every sample is zero)")
        write(adapter.finish())
        for w in writers.values():
            w.close()
    return SeparatedFile(
        source=source,
        stems={n: targets[n] for n in names},
        sha256={n: sha256_file(targets[n]) for n in names},
        sample_rate=sr,
        channels=out_channels,
        source_channels=channels,
        duration_s=n_read / sr,
    )
