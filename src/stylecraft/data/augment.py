"""augment: pitch-shifted and time-stretched variants of every training window.

The algorithms are librosa's (``effects.pitch_shift`` and ``effects.time_stretch``: phase vocoder
with n_fft 2048 / hop 512, then soxr "HQ" resampling), with the phase vocoder vectorised over
frames in torch and one STFT shared by all pitch variants of a window. Variants are rendered once,
stored per track as int16 shards, and recorded in ``variants.jsonl`` with their seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch

from stylecraft.artifacts import atomic_save_npy, atomic_write_json, sha256_file, sha256_json
from stylecraft.data.manifest import Variant, Window, load_rows, save_rows
from stylecraft.data.segment import load_track_audio
from stylecraft.errors import StageInputError
from stylecraft.parallel import cpu_count, resolve_workers, run_tasks
from stylecraft.progress import make_progress

N_FFT = 2048
HOP = 512


def _stft(x: torch.Tensor) -> torch.Tensor:
    window = torch.hann_window(N_FFT, periodic=True, dtype=x.dtype)
    return torch.stft(x, N_FFT, HOP, window=window, center=True, pad_mode="constant", return_complex=True)


def _istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32)
    return torch.istft(spec, N_FFT, HOP, window=window, center=True, length=length)


class VocoderSource:
    """What librosa.phase_vocoder derives from a spectrogram, computed once and shared by every
    rate applied to it (a window's pitch variants all stretch the same STFT).

    Magnitudes, angles and phase deviations are computed once per source frame (librosa
    recomputes them per output frame), in float32. The expected-advance part of the phase,
    ``t * 2*pi*hop*k / n_fft``, is reduced modulo 2*pi exactly in integers, so only the small
    wrapped deviations are summed in floating point; this keeps float32 accurate where a plain
    float32 accumulator (librosa's, for float32 input) drifts by up to ~0.06 rad.
    """

    def __init__(self, spec: torch.Tensor, hop_length: int = HOP) -> None:
        self.n_bins, self.n_frames = spec.shape[-2], spec.shape[-1]
        self.n_fft = 2 * (self.n_bins - 1)
        self.hop = hop_length
        pad = (0, 2)  # two zero frames past the end, as librosa pads
        self.mag = torch.nn.functional.pad(spec.abs(), pad)  # [F, T + 2]
        ang = torch.nn.functional.pad(torch.angle(spec), pad)
        self.ang0 = ang[:, :1]
        self.k = torch.arange(self.n_bins, dtype=torch.int32)[:, None]
        phi_advance = (2 * math.pi * hop_length / self.n_fft) * self.k.to(torch.float32)
        dev = ang[:, 1:] - ang[:, :-1] - phi_advance  # [F, T + 1]
        self.dev = dev - 2.0 * math.pi * torch.round(dev / (2.0 * math.pi))

    def stretch(self, rate: float) -> torch.Tensor:
        """librosa.phase_vocoder(spec, rate=rate): [F, ceil(T / rate)] complex."""
        steps = torch.arange(0, self.n_frames, rate, dtype=torch.float64)
        idx = steps.long()
        alpha = (steps - idx).to(torch.float32)
        out_mag = (1.0 - alpha) * self.mag.index_select(1, idx) + alpha * self.mag.index_select(1, idx + 1)
        d = self.dev.index_select(1, idx)  # deviation measured between the frames t interpolates
        acc_dev = torch.cumsum(d, dim=-1) - d  # sum over earlier output frames
        t = torch.arange(steps.shape[0], dtype=torch.int32)[None, :]
        # k * hop * t < 2**31 for any window stylecraft cuts (k <= 1024, hop 512, t < 4096).
        lin = ((t * (self.hop * self.k)) % self.n_fft).to(torch.float32) * (2 * math.pi / self.n_fft)
        return torch.polar(out_mag, self.ang0 + lin + acc_dev)


def phase_vocoder(spec: torch.Tensor, rate: float, hop_length: int = HOP) -> torch.Tensor:
    """librosa.phase_vocoder, vectorised over frames. ``spec`` [F, T] complex -> [F, ceil(T/rate)]."""
    return VocoderSource(spec, hop_length).stretch(rate)


def time_stretch(y: np.ndarray, rate: float, source: VocoderSource | None = None) -> np.ndarray:
    """librosa.effects.time_stretch(y, rate=rate) (output length round(len(y) / rate))."""
    if source is None:
        source = VocoderSource(_stft(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))))
    return _istft(source.stretch(rate), int(round(y.shape[-1] / rate))).numpy()


def pitch_shift(y: np.ndarray, sample_rate: int, semitones: float, source: VocoderSource | None = None) -> np.ndarray:
    """librosa.effects.pitch_shift(y, sr, n_steps=semitones, res_type="soxr_hq"); same length as ``y``."""
    rate = 2.0 ** (-float(semitones) / 12.0)
    stretched = time_stretch(y, rate, source)
    shifted = soxr.resample(stretched, sample_rate / rate, sample_rate, quality="HQ")
    out = np.zeros(y.shape[-1], dtype=np.float32)
    n = min(out.shape[0], shifted.shape[0])
    out[:n] = shifted[:n]
    return out


def stretch_window(track: np.ndarray, start: int, length: int, rate: float) -> np.ndarray:
    """A window of ``length`` samples that plays ``rate`` x faster/slower, taken from a source span
    of ``length * rate`` samples at ``start`` (moved back at the track's end) so it stays full length."""
    span = int(round(length * rate))
    begin = max(0, min(start, track.shape[0] - span))
    src = track[begin : begin + span]
    out = time_stretch(src, src.shape[0] / length) if src.shape[0] >= N_FFT else src
    fixed = np.zeros(length, dtype=np.float32)
    n = min(length, out.shape[0])
    fixed[:n] = out[:n]
    return fixed


def plan_variants(window: Window, pitch: list[float], rates: list[float], seed: int) -> list[tuple[str, float]]:
    """Every (kind, value) of a window. Recorded with the seed so subsets stay reproducible."""
    del window, seed  # every combination is rendered; the seed is recorded for sampled subsets
    return [("pitch", float(v)) for v in pitch] + [("stretch", float(r)) for r in rates]


def _augment_track(
    run_dir: str, track_id: str, windows: list[dict[str, Any]], params: dict[str, Any], threads: int
) -> dict[str, Any]:
    torch.set_num_threads(max(1, threads))
    run = Path(run_dir)
    sr = params["sample_rate"]
    track = load_track_audio(run, track_id)
    rows: list[np.ndarray] = []
    specs: list[dict[str, Any]] = []
    for w in windows:
        start = int(round(w["start_s"] * sr))
        length = int(round(w["duration_s"] * sr))
        y = track[start : start + length]
        source = VocoderSource(_stft(torch.from_numpy(np.ascontiguousarray(y))))  # shared by pitch variants
        for kind, value in plan_variants(Window(**w), params["pitch_semitones"], params["stretch_rates"], params["seed"]):
            if kind == "pitch":
                out = pitch_shift(y, sr, value, source)
            else:
                out = stretch_window(track, start, length, value)
            rows.append(np.round(np.clip(out, -1.0, 1.0) * 32767.0).astype(np.int16))
            specs.append({"window_id": w["id"], "kind": kind, "value": value})
    sha = atomic_save_npy(run / "variants" / f"{track_id}.npy", np.stack(rows)) if rows else ""
    record = {"track_id": track_id, "params_hash": params["hash"], "variants": specs, "sha256": sha}
    atomic_write_json(run / "variants" / f"{track_id}.json", record)
    return record


def _record_valid(run: Path, track_id: str, params_hash: str) -> dict[str, Any] | None:
    path = run / "variants" / f"{track_id}.json"
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if rec.get("params_hash") != params_hash:
        return None
    if rec["variants"]:
        shard = run / "variants" / f"{track_id}.npy"
        if not shard.exists() or sha256_file(shard) != rec["sha256"]:
            return None
    return rec


def augment(run_dir: str | Path, params: dict[str, Any], sample_rate: int) -> list[Variant]:
    """Render variants of every training window; write ``variants.jsonl`` and ``variants/<track>.npy``.

    Args:
        run_dir: run folder holding ``windows.jsonl``.
        params: the recipe's ``augment`` section.
        sample_rate: the segment stage's rate (windows are stored at it).
    """
    run = Path(run_dir)
    wpath = run / "windows.jsonl"
    if not wpath.exists():
        raise StageInputError(f"'{wpath}' is missing: run `stylecraft segment` first")
    windows = [w for w in load_rows(wpath, Window) if w.split == "train"]
    p = {**params, "sample_rate": sample_rate}
    p["hash"] = sha256_json({k: v for k, v in p.items() if k not in ("workers", "shard_size")} | {"windows": sha256_file(wpath)})
    by_track: dict[str, list[Window]] = {}
    for w in windows:
        by_track.setdefault(w.track_id, []).append(w)

    records: dict[str, dict[str, Any]] = {}
    todo = []
    for tid in by_track:
        rec = _record_valid(run, tid, p["hash"])
        if rec is None:
            todo.append(tid)
        else:
            records[tid] = rec
    cores = cpu_count()
    workers = resolve_workers(params.get("workers"), len(todo))
    threads = max(1, cores // max(1, workers))
    with make_progress() as prog:
        task = prog.add_task("augment", total=len(by_track), completed=len(records))
        jobs = [(str(run), tid, [w.__dict__ for w in by_track[tid]], p, threads) for tid in todo]
        for i, res in run_tasks(_augment_track, jobs, workers):
            if isinstance(res, BaseException):
                raise res
            records[todo[i]] = res
            prog.advance(task)

    wmap = {w.id: w for w in windows}
    variants: list[Variant] = []
    for tid in by_track:
        for row, spec in enumerate(records[tid]["variants"]):
            w = wmap[spec["window_id"]]
            tag = f"{spec['kind']}{spec['value']:+g}"
            variants.append(
                Variant(
                    id=f"{w.id}-{tag}",
                    window_id=w.id,
                    track_id=tid,
                    split=w.split,
                    kind=spec["kind"],
                    value=spec["value"],
                    seed=params["seed"],
                    row=row,
                    caption=w.caption,
                )
            )
    save_rows(run / "variants.jsonl", variants)
    return variants


def load_variant_audio(run_dir: str | Path, track_id: str) -> np.ndarray:
    """Memory-mapped int16 variant shard of a track: [n_variants, samples]."""
    return np.load(Path(run_dir) / "variants" / f"{track_id}.npy", mmap_mode="r")
