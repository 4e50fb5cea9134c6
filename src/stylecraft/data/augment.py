"""augment: pitch-shifted and time-stretched variants of training windows.

The algorithms are librosa's (``effects.pitch_shift`` and ``effects.time_stretch``: phase vocoder
with n_fft 2048 / hop 512, then soxr "HQ" resampling), with the phase vocoder vectorised over
frames in torch and one STFT shared by all pitch variants of a window. Variants are rendered once,
stored as int16 shards of up to 16 windows per track, and recorded in ``variants.jsonl`` with their seed.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch

from stylecraft.artifacts import atomic_save_npy, atomic_write_json, inside, sha256_file, sha256_json
from stylecraft.data.captions import variant_caption
from stylecraft.data.manifest import Variant, Window, load_rows, save_rows
from stylecraft.data.segment import load_track_audio
from stylecraft.errors import StageInputError
from stylecraft.parallel import cpu_count, keep_torch_threads, resolve_workers, run_tasks
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

    def __init__(self, spec: torch.Tensor | None, hop_length: int = HOP, polar: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """From a complex spectrogram [F, T], or from its ``polar`` = (magnitude, angle) pair."""
        if polar is None:
            assert spec is not None, "give a spectrogram or its (magnitude, angle) pair"
            polar = (spec.abs(), torch.angle(spec))
        mag, angle = polar
        self.n_bins, self.n_frames = mag.shape[-2], mag.shape[-1]
        self.n_fft = 2 * (self.n_bins - 1)
        self.hop = hop_length
        pad = (0, 2)  # two zero frames past the end, as librosa pads
        self.mag = torch.nn.functional.pad(mag, pad)  # [F, T + 2]
        ang = torch.nn.functional.pad(angle, pad)
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
        phase = self.ang0 + lin + acc_dev
        # complex(m*cos, m*sin) is torch.polar's value at half its cost on CPU (torch 2.13).
        return torch.complex(out_mag * torch.cos(phase), out_mag * torch.sin(phase))


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


def _span(track: np.ndarray, start: int, length: int, rate: float) -> tuple[int, np.ndarray]:
    """The source span of a stretch variant: ``length * rate`` samples at ``start``, moved back at the track's end."""
    span = int(round(length * rate))
    begin = max(0, min(start, track.shape[0] - span))
    return begin, track[begin : begin + span]


def stretch_window(
    track: np.ndarray, start: int, length: int, rate: float, source: VocoderSource | None = None
) -> np.ndarray:
    """A window of ``length`` samples that plays ``rate`` x faster/slower, taken from a source span
    of ``length * rate`` samples at ``start`` (moved back at the track's end) so it stays full length.

    ``source``, if given, must be the vocoder source of exactly that span (see :class:`SpanSpectra`).
    """
    _, src = _span(track, start, length, rate)
    out = time_stretch(src, src.shape[0] / length, source) if src.shape[0] >= N_FFT else src
    fixed = np.zeros(length, dtype=np.float32)
    n = min(length, out.shape[0])
    fixed[:n] = out[:n]
    return fixed


class SpanSpectra:
    """Vocoder sources of several spans that start at one sample, from a single STFT.

    With centred frames, frame j of a span of S samples covers [j*hop - n_fft/2, j*hop + n_fft/2):
    it equals frame j of any longer span from the same start while j*hop + n_fft/2 <= S. So one
    STFT (and one magnitude/angle pass) of the longest span serves every shorter one; only each
    shorter span's last few frames, which see its zero padding, are computed afresh.
    """

    def __init__(self, longest: np.ndarray) -> None:
        spec = _stft(torch.from_numpy(np.ascontiguousarray(longest, dtype=np.float32)))
        self.mag, self.ang = spec.abs(), torch.angle(spec)
        self.length = longest.shape[0]

    def source(self, y: np.ndarray) -> VocoderSource:
        """The vocoder source of ``y``, a prefix of the longest span."""
        n = y.shape[0]
        assert n <= self.length
        n_frames = 1 + n // HOP
        shared = min(n_frames, (n - N_FFT // 2) // HOP + 1) if n >= N_FFT // 2 else 0
        if shared == n_frames:
            return VocoderSource(None, polar=(self.mag[:, :n_frames], self.ang[:, :n_frames]))
        padded = np.concatenate([np.zeros(N_FFT // 2, np.float32), y, np.zeros(N_FFT // 2, np.float32)])
        seg = torch.from_numpy(padded[shared * HOP : (n_frames - 1) * HOP + N_FFT])
        window = torch.hann_window(N_FFT, periodic=True)
        tail = torch.fft.rfft(seg.unfold(0, N_FFT, HOP) * window, dim=-1).T  # [F, tail frames]
        mag = torch.cat([self.mag[:, :shared], tail.abs()], dim=1)
        ang = torch.cat([self.ang[:, :shared], torch.angle(tail)], dim=1)
        return VocoderSource(None, polar=(mag, ang))


def plan_variants(pitch: list[float], rates: list[float]) -> list[tuple[str, float]]:
    """Every (kind, value) variant that may be rendered for a training window."""
    return [("pitch", float(v)) for v in pitch] + [("stretch", float(r)) for r in rates]


def _unit(seed: int, *parts: str) -> int:
    """A seeded 64-bit number for a window: the same wherever and in whatever order it is drawn."""
    return int.from_bytes(hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()[:8], "big")


def select_variants(
    window_ids: list[str], plan: list[tuple[str, float]], share: float | None, seed: int
) -> dict[str, list[tuple[str, float]]]:
    """The variants kept for each window, so that variants are ``share`` of all training items.

    ``share`` = variants / (windows + variants), so ``share / (1 - share)`` variants per window
    on average: every window gets the whole part of that number, and the fractional rest goes to
    the windows that come first in a seeded order. Which of the planned variants a window gets is
    a seeded draw of its own (keyed by its id), so one window's choice does not depend on the
    others. ``None`` keeps every planned variant.

    Raises:
        ValueError: ``share`` asks for more variants per window than the plan holds.
    """
    if share is None:
        return {w: list(plan) for w in window_ids}
    if not window_ids:
        return {}
    per_window = share / (1.0 - share) if share < 1.0 else float("inf")
    if per_window > len(plan) + 1e-6:
        raise ValueError(f"augment.share={share} needs {per_window:.2f} variants per window; the plan has {len(plan)}")
    # Rounded half up, with a little slack: 0.6 / 0.4 is 1.4999999999999998 in floating point.
    total = min(len(plan) * len(window_ids), math.floor(per_window * len(window_ids) + 0.5 + 1e-9))
    base, extra = divmod(total, len(window_ids))
    lucky = set(sorted(window_ids, key=lambda w: _unit(seed, "extra", w))[:extra])
    out = {}
    for w in window_ids:
        order = np.random.default_rng(_unit(seed, "plan", w)).permutation(len(plan))
        out[w] = [plan[i] for i in sorted(order[: base + (w in lucky)])]
    return out


CHUNK_WINDOWS = 16  # windows per task and shard: keeps every core busy until the end


def _shard_name(track_id: str, chunk: int) -> str:
    return f"variants/{track_id}.c{chunk:02d}"


def _augment_chunk(
    run_dir: str, track_id: str, chunk: int, windows: list[dict[str, Any]], params: dict[str, Any], threads: int
) -> dict[str, Any]:
    """Render the variants each window's ``plan`` names; write the chunk's shard and record."""
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
        plan = [(str(k), float(v)) for k, v in w["plan"]]
        if not plan:
            continue
        # One STFT for the window and every stretch span that starts where it does (not moved back
        # at the track's end): the shorter ones are prefixes of the longest.
        spans = [y] + [sp for kind, v in plan if kind == "stretch" for b, sp in [_span(track, start, length, v)] if b == start]
        spectra = SpanSpectra(max(spans, key=len))
        source = spectra.source(y)  # shared by the pitch variants
        for kind, value in plan:
            if kind == "pitch":
                out = pitch_shift(y, sr, value, source)
            else:
                begin, span = _span(track, start, length, value)
                shared = spectra.source(span) if begin == start and span.shape[0] >= N_FFT else None
                out = stretch_window(track, start, length, value, shared)
            rows.append(np.round(np.clip(out, -1.0, 1.0) * 32767.0).astype(np.int16))
            specs.append({"window_id": w["id"], "kind": kind, "value": value})
    name = _shard_name(track_id, chunk)
    sha = atomic_save_npy(run / f"{name}.npy", np.stack(rows)) if rows else ""
    record = {"track_id": track_id, "chunk": chunk, "params_hash": params["sig"], "variants": specs, "sha256": sha}
    atomic_write_json(run / f"{name}.json", record)
    return record


def _record_valid(run: Path, name: str, params_hash: str) -> dict[str, Any] | None:
    path = run / f"{name}.json"
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if rec.get("params_hash") != params_hash:
        return None
    if rec["variants"]:
        shard = run / f"{name}.npy"
        if not shard.exists() or sha256_file(shard) != rec["sha256"]:
            return None
    return rec


def augment(run_dir: str | Path, params: dict[str, Any], sample_rate: int) -> list[Variant]:
    """Render variants of training windows; write ``variants.jsonl`` and ``variants/<track>.cNN.npy``.

    ``params["share"]`` chooses how many (:func:`select_variants`); ``params["enabled"]`` false
    writes an empty ``variants.jsonl``. Each variant's caption is its window's, with the key
    transposed or the tempo scaled (:func:`stylecraft.data.captions.variant_caption`). A chunk of
    windows is rendered again only when its windows, their track's audio or the variants chosen
    for them changed (captions are not part of what is rendered).

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
    if not params.get("enabled", True):
        save_rows(run / "variants.jsonl", [])
        return []
    plan = plan_variants(params["pitch_semitones"], params["stretch_rates"])
    chosen = select_variants([w.id for w in windows], plan, params.get("share"), params["seed"])
    by_track: dict[str, list[Window]] = {}
    for w in windows:
        by_track.setdefault(w.track_id, []).append(w)
    chunks = [
        (tid, c, wins[c * CHUNK_WINDOWS : (c + 1) * CHUNK_WINDOWS])
        for tid, wins in by_track.items()
        for c in range((len(wins) + CHUNK_WINDOWS - 1) // CHUNK_WINDOWS)
    ]
    jobs_all = [(tid, c, [{**w.__dict__, "plan": chosen[w.id]} for w in wins]) for tid, c, wins in chunks]
    records = _render_chunks(run, jobs_all, params, sample_rate)
    wmap = {w.id: w for w in windows}
    variants: list[Variant] = []
    for tid, c, _ in chunks:
        name = _shard_name(tid, c)
        for row, spec in enumerate(records[name]["variants"]):
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
                    shard=f"{name}.npy",
                    row=row,
                    caption=variant_caption(w.caption, spec["kind"], spec["value"]),
                )
            )
    save_rows(run / "variants.jsonl", variants)
    return variants


def _chunk_sig(run: Path, tid: str, windows: list[dict[str, Any]], sample_rate: int) -> str:
    """What a chunk's shard depends on: its track's audio, its windows and the variants chosen for them."""
    seg = run / "segment" / f"{tid}.json"
    audio = json.loads(seg.read_text()).get("hashes", {}).get("audio") if seg.exists() else None
    spans = [(w["id"], w["start_s"], w["duration_s"], [list(p) for p in w["plan"]]) for w in windows]
    return sha256_json({"version": 2, "rate": sample_rate, "audio": audio, "windows": spans})


def _render_chunks(
    run: Path, chunks: list[tuple[str, int, list[dict[str, Any]]]], params: dict[str, Any], sample_rate: int
) -> dict[str, dict[str, Any]]:
    """Every chunk's record: reused when its signature matches, else rendered (in parallel)."""
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for tid, c, wins in chunks:
        sig = _chunk_sig(run, tid, wins, sample_rate)
        rec = _record_valid(run, _shard_name(tid, c), sig)
        if rec is None:
            todo.append((tid, c, wins, sig))
        else:
            records[_shard_name(tid, c)] = rec
    cores = cpu_count()
    workers = resolve_workers(params.get("workers"), len(todo))
    threads = max(1, cores // max(1, workers))
    with keep_torch_threads(), make_progress() as prog:
        task = prog.add_task("augment", total=len(chunks), completed=len(records))
        jobs = [(str(run), tid, c, wins, {"sample_rate": sample_rate, "sig": sig}, threads) for tid, c, wins, sig in todo]
        for i, res in run_tasks(_augment_chunk, jobs, workers):
            if isinstance(res, BaseException):
                raise res
            records[_shard_name(todo[i][0], todo[i][1])] = res
            prog.advance(task)
    return records


def load_variant_shard(run_dir: str | Path, shard: str) -> np.ndarray:
    """A memory-mapped int16 variant shard [n_variants, samples] (``Variant.shard``)."""
    return np.load(inside(run_dir, shard, "variant shard"), mmap_mode="r", allow_pickle=False)


def load_variant_audio(run_dir: str | Path, track_id: str) -> np.ndarray:
    """All variants of a track, in manifest order: int16 [n_variants, samples]."""
    shards = sorted(Path(run_dir).glob(f"variants/{track_id}.c*.npy"))
    return np.concatenate([np.load(p, mmap_mode="r", allow_pickle=False) for p in shards]) if shards else np.zeros((0, 0), np.int16)
