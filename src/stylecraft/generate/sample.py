"""Sampling: text-conditioned generation, continuation of a seed riff, melody conditioning,
long-form windowed continuation and best-of-N reranking, written as FLAC.

Each call writes its files atomically, watermarked with a keyed DSP mark (unless disabled), and
records a provenance row per file in ``generated.jsonl`` beside them: the file's sha256, prompt,
seed and sampling parameters, the long-form windows, the seed riff's and melody's sha256, the
best-of-N candidates' scores, the model (name, source and a sha256 of its weights), the recipe's
sha256 when run from a recipe, and the watermark (method, public key id, strength). Each file's
EnCodec codes ``[K, T]`` are kept beside it (``<name>.codes.npy``, int16, sha256 in the row) for
the evaluation. A rerun with the same request skips every file that is present and matches its
recorded sha256 (and whose codes are there), and
``overview.png`` shows the log-mel spectrograms of the call's files with window boundaries.

With ``beams >= 1`` each window is decoded by beam search instead of sampling
(:mod:`stylecraft.generate.beam`: transformers' MusicGen ``generate`` raises for ``num_beams > 1``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import stylecraft
from stylecraft.artifacts import atomic_save_npy, read_jsonl, sha256_file, sha256_json, write_jsonl
from stylecraft.audio import io as audio_io
from stylecraft.errors import StylecraftError
from stylecraft.generate import codes as gc
from stylecraft.generate import melody as mel
from stylecraft.generate import watermark as wm
from stylecraft.generate.longform import LongForm, Window, plan
from stylecraft.models.loading import ModelBundle
from stylecraft.progress import make_progress


@dataclass(frozen=True)
class SamplingParams:
    duration_s: float = 8.0  # length of each output file, seed riff included
    temperature: float = 1.0
    top_k: int = 250  # 0 disables
    top_p: float = 0.0  # 0 disables
    guidance_scale: float = 3.0  # <= 1 disables classifier-free guidance
    seed: int = 0
    seed_audio_s: float = 0.0  # seconds of the seed riff used as prompt (0: up to half the duration)
    best_of: int = 1  # candidates sampled per output; the reranker's favourite is kept
    rerank: str = "likelihood"  # likelihood | style (generate/rerank.py)
    style_reference: str = ""  # rerank=style: folder of the artist's audio
    beams: int = 0  # 0: sample; >= 1: beam search of this width (1: greedy), guidance inside the beam
    length_penalty: float = 1.0  # beam search: final score = log-likelihood / new tokens ** this

    def validate(self) -> None:
        if self.duration_s <= 0:
            raise StylecraftError(f"--duration must be > 0, got {self.duration_s}")
        if self.temperature <= 0:
            raise StylecraftError(f"--temperature must be > 0, got {self.temperature}")
        if self.top_k < 0 or not 0.0 <= self.top_p <= 1.0:
            raise StylecraftError("--top-k must be >= 0 and --top-p in [0, 1]")
        if self.best_of < 1:
            raise StylecraftError(f"--best-of must be >= 1, got {self.best_of}")
        if self.best_of > 1:
            from stylecraft.generate.rerank import check_reranker

            check_reranker(self.rerank, self.style_reference)
        if self.seed_audio_s < 0:
            raise StylecraftError(f"seed_audio_s must be >= 0, got {self.seed_audio_s}")
        if self.beams:
            from stylecraft.generate.beam import validate_beam

            validate_beam(self.beams, self.length_penalty)
            if self.best_of > 1:
                raise StylecraftError("--best-of reranks samples; beam search (--beams) is deterministic: use one of them")


@dataclass(frozen=True)
class WatermarkSettings:
    """How generated audio is watermarked (see :mod:`stylecraft.generate.watermark`)."""

    enabled: bool = True
    key: str = wm.DEFAULT_KEY
    strength: float = wm.DEFAULT_STRENGTH
    method: str = "dsp"  # or "audioseal" (stylecraft.generate.watermark_audioseal)
    audioseal_path: str = ""

    def record(self) -> dict[str, Any]:
        """The provenance entry: never the key itself, only its public id."""
        if not self.enabled:
            return {"method": None}
        return wm.record_as(self.method, self.key, self.strength, self.audioseal_path)


def model_sha256(bundle: ModelBundle) -> str:
    """sha256 over the model's parameter and buffer names and bytes: which weights made a file."""
    h = hashlib.sha256()
    for name, tensor in sorted(bundle.model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_slug(text: str) -> str:
    """A prompt as a short file-name part: lower-case letters and digits joined by dashes."""
    s = re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")
    return (s[:40].rstrip("-")) or "unconditional"


def load_seed_riff(path: str | Path, sample_rate: int, max_s: float) -> np.ndarray:
    """The last ``max_s`` seconds of a seed file, mono at the model's rate, float32 [samples]."""
    audio, sr = audio_io.load(path)
    mono = audio_io.resample(audio_io.to_mono(audio), sr, sample_rate)
    n = int(round(max_s * sample_rate))
    return mono[-n:] if n and mono.shape[0] > n else mono


# Seeds of best-of candidates: candidate c of a batch samples with seed + c * CANDIDATE_STRIDE, so
# candidate 0 is exactly what best_of=1 gives.
CANDIDATE_STRIDE = 1_000_003


def is_melody_model(bundle: ModelBundle) -> bool:
    return bundle.model_type == "musicgen_melody"


def _prefix_positions(bundle: ModelBundle, text: dict[str, torch.Tensor]) -> int:
    """Decoder positions a melody model spends on its prepended text and chroma states."""
    if not is_melody_model(bundle):
        return 0
    return int(text["input_ids"].shape[1]) + int(bundle.model.config.chroma_length)


@dataclass
class PieceCodes:
    """Codes of a batch of pieces and how they were made."""

    codes: torch.Tensor  # [B, K, T]
    windows: list[Window]
    seed_frames: int
    log_likelihood: torch.Tensor | None = None  # [B] mean log-probability per new code token
    candidate_scores: list[list[float]] = field(default_factory=list)  # [B][best_of]
    candidate_seeds: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # [B] index of the kept candidate


def _check_seed(bundle: ModelBundle, seed_riff: np.ndarray, frames: int, duration_s: float) -> np.ndarray:
    hop = bundle.sample_rate // bundle.frame_rate
    seed = seed_riff[: (seed_riff.shape[0] // hop) * hop]
    if seed.shape[0] < hop:
        raise StylecraftError("the seed riff is shorter than one codec frame")
    if seed.shape[0] // hop >= frames:
        raise StylecraftError(
            f"the seed riff ({seed.shape[0] / bundle.sample_rate:.1f} s) is not shorter than --duration {duration_s} s"
        )
    return seed


def _melody_features(
    bundle: ModelBundle, melody: np.ndarray | None, window: Window, batch: int
) -> torch.Tensor | None:
    """Chroma ``[B, F, 12]`` of the melody under a window's span of the piece (looped if short)."""
    if melody is None:
        return None
    fr = bundle.frame_rate
    span = mel.melody_span(melody, window.start_frame / fr, (window.end_frame - window.start_frame) / fr, bundle.sample_rate)
    return mel.chroma([span], bundle.sample_rate).repeat(batch, 1, 1)


@torch.no_grad()
def generate_piece_codes(
    bundle: ModelBundle,
    prompts: list[str],
    params: SamplingParams,
    long_form: LongForm | None = None,
    *,
    seed_riff: np.ndarray | None = None,
    melody: np.ndarray | None = None,
    score: bool = False,
    on_window: Callable[[], object] | None = None,
) -> PieceCodes:
    """Codes ``[B, K, ceil(duration_s * frame_rate)]`` for each prompt, window by window.

    The RNG is seeded once with ``params.seed``; windows follow one another on it. The seed riff
    (mono at the model's rate) is encoded once and its codes open every piece verbatim.

    Args:
        score: also compute each piece's mean log-likelihood of its new codes (see
            :func:`stylecraft.generate.codes.code_log_likelihood`), summed over windows.
        on_window: called after each window (progress).
    """
    lf = long_form or LongForm()
    text = gc.text_inputs(bundle, prompts)
    if melody is not None and not is_melody_model(bundle):
        raise StylecraftError(f"--melody needs a melody model; '{bundle.name}' is a {bundle.model_type} model")
    lf.validate(bundle, _prefix_positions(bundle, text))
    total = math.ceil(params.duration_s * bundle.frame_rate)
    b = len(prompts)
    codes = torch.zeros(b, bundle.num_codebooks, 0, dtype=torch.long)
    if seed_riff is not None:
        seed = _check_seed(bundle, seed_riff, total, params.duration_s)
        codes = gc.encode_audio(bundle, seed[None]).repeat(b, 1, 1)  # [B, K, S]
    seed_frames = int(codes.shape[-1])
    window_frames, context_frames = lf.frames(bundle)
    windows = plan(total, window_frames, context_frames, seed_frames)
    ll_sum = torch.zeros(b, dtype=torch.float64)
    ll_n = 0
    torch.manual_seed(params.seed)
    for w in windows:
        prompt = codes[..., w.start_frame :]  # [B, K, prompt_frames]
        chroma = _melody_features(bundle, melody, w, b)
        out = _window_codes(bundle, text, w, prompt, chroma, params)  # [B, K, prompt + new]
        assert torch.equal(out[..., : w.prompt_frames], prompt), "generate altered its prompt codes"
        if score:
            s, n = gc.code_log_likelihood(bundle, text, out, w.prompt_frames, chroma)
            ll_sum += s
            ll_n += n
        codes = torch.cat([codes, out[..., w.prompt_frames :]], dim=-1)
        if on_window is not None:
            on_window()
    ll = ll_sum / ll_n if score and ll_n else None
    return PieceCodes(codes=codes, windows=windows, seed_frames=seed_frames, log_likelihood=ll)


def _window_codes(
    bundle: ModelBundle, text: dict[str, torch.Tensor], w: Window, prompt: torch.Tensor,
    chroma: torch.Tensor | None, params: SamplingParams,
) -> torch.Tensor:
    """One window's codes ``[B, K, prompt + new]``: sampled, or beam-searched when ``params.beams``."""
    if params.beams:
        from stylecraft.generate.beam import beam_codes

        if chroma is not None:
            raise StylecraftError("beam search (--beams) does not support melody conditioning yet")
        return beam_codes(
            bundle, text, w.new_frames, prompt=prompt, width=params.beams,
            guidance_scale=params.guidance_scale, length_penalty=params.length_penalty,
        ).codes
    return gc.sample_codes(
        bundle, text, w.new_frames, prompt=prompt, melody=chroma, temperature=params.temperature,
        top_k=params.top_k, top_p=params.top_p, guidance_scale=params.guidance_scale,
    )


def best_of_codes(
    bundle: ModelBundle,
    prompts: list[str],
    params: SamplingParams,
    long_form: LongForm | None = None,
    **kwargs: Any,
) -> PieceCodes:
    """Sample ``params.best_of`` candidates per prompt and keep the one ``params.rerank`` prefers.

    ``likelihood``: the model's mean log-likelihood of a candidate's own new codes given its
    prompt (teacher-forced, text-conditional, no classifier-free guidance): guidance reshapes
    sampling but is not a distribution of the model, so the plain conditional likelihood is the
    quantity every candidate can be compared on. ``style``: nearness to the artist's sound minus
    repetition (:mod:`stylecraft.generate.rerank`). With ``best_of == 1`` nothing is scored.
    """
    n = params.best_of
    if n == 1:
        return generate_piece_codes(bundle, prompts, params, long_form, **kwargs)
    best: PieceCodes | None = None
    best_score = torch.empty(0)
    scores: list[list[float]] = [[] for _ in prompts]
    seeds: list[int] = []
    kept = [0] * len(prompts)
    for c in range(n):
        cand_seed = params.seed + c * CANDIDATE_STRIDE
        seeds.append(cand_seed)
        cand = generate_piece_codes(bundle, prompts, SamplingParams(**{**asdict(params), "seed": cand_seed}), long_form,
                                    score=params.rerank == "likelihood", **kwargs)
        value = _candidate_scores(bundle, cand, params)
        for i, v in enumerate(value.tolist()):
            scores[i].append(v)
        if best is None:
            best, best_score = cand, value
            continue
        better = value > best_score  # [B]; ties keep the earlier candidate
        best.codes[better] = cand.codes[better]
        if best.log_likelihood is not None and cand.log_likelihood is not None:
            best.log_likelihood = torch.where(better, cand.log_likelihood, best.log_likelihood)
        best_score = torch.where(better, value, best_score)
        for i in torch.nonzero(better).flatten().tolist():
            kept[i] = c
    assert best is not None
    best.candidate_scores, best.candidate_seeds, best.kept = scores, seeds, kept
    return best


def _candidate_scores(bundle: ModelBundle, cand: PieceCodes, params: SamplingParams) -> torch.Tensor:
    """The reranker's score [B] of each piece of ``cand`` (higher is kept)."""
    if params.rerank == "likelihood":
        assert cand.log_likelihood is not None
        return cand.log_likelihood.double()
    from stylecraft.generate.rerank import style_reference, style_score

    ref = style_reference(str(params.style_reference))
    audio = codes_to_audio(bundle, cand.codes, params.duration_s)
    new = cand.codes[:, :, cand.seed_frames :]
    return torch.tensor([style_score(audio[i], bundle.sample_rate, new[i], ref) for i in range(audio.shape[0])],
                        dtype=torch.float64)


DECODE_CHUNK_S = 30.0  # EnCodec decodes a piece in chunks of this many seconds of codes...
DECODE_CONTEXT_S = 1.0  # ...each with this much code context on either side


def codes_to_audio(
    bundle: ModelBundle, codes: torch.Tensor, duration_s: float, on_chunk: Callable[[], object] | None = None,
    keep_stereo: bool = False,
) -> np.ndarray:
    """Audio ``[B, samples]`` (mono, float32, exactly ``duration_s``) of codes ``[B, K, T]``.

    Stereo models' two channels are mixed down, unless ``keep_stereo``: then a stereo model's
    audio is ``[B, samples, 2]`` (left, right).
    """
    fr = bundle.frame_rate
    decoded = gc.decode_codes(bundle, codes, int(DECODE_CHUNK_S * fr), int(DECODE_CONTEXT_S * fr), on_chunk=on_chunk)
    if keep_stereo and decoded.shape[1] == 2:
        audio = decoded.transpose(0, 2, 1)  # [B, 2, samples] -> [B, samples, 2]
    else:
        audio = decoded.mean(axis=1)  # [B, C, samples] -> [B, samples]
    n = int(round(duration_s * bundle.sample_rate))
    fixed = np.zeros((audio.shape[0], n, *audio.shape[2:]), dtype=np.float32)
    m = min(n, audio.shape[1])
    fixed[:, :m] = audio[:, :m]
    if not np.isfinite(fixed).all():
        raise StylecraftError("generation produced non-finite audio (check the model's weights)")
    return fixed


def generate_codes_audio(
    bundle: ModelBundle,
    prompts: list[str],
    params: SamplingParams,
    seed_riff: np.ndarray | None = None,
    long_form: LongForm | None = None,
    melody: np.ndarray | None = None,
) -> np.ndarray:
    """Generate audio ``[B, samples]`` (float32, exactly ``duration_s`` long) for each prompt."""
    piece = best_of_codes(bundle, prompts, params, long_form, seed_riff=seed_riff, melody=melody)
    return codes_to_audio(bundle, piece.codes, params.duration_s)


def read_prompts_file(path: str | Path) -> list[str]:
    """Prompts of a text file: one per line; blank lines and lines starting with ``#`` are skipped."""
    p = Path(path)
    if not p.is_file():
        raise StylecraftError(f"prompts file '{p}' does not exist")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise StylecraftError(f"prompts file '{p}' is not UTF-8 text") from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not prompts:
        raise StylecraftError(f"prompts file '{p}' holds no prompt (one per line; blank and # lines are ignored)")
    return prompts


def _file_name(prompt_index: int, prompt: str, seed: int, i: int) -> str:
    return f"{prompt_index:03d}-{file_slug(prompt)}-s{seed}-{i:02d}.flac"


def _intact(out: Path, row: dict[str, Any] | None, request_sha: str) -> bool:
    if row is None or row.get("request_sha256") != request_sha:
        return False
    path = out / str(row["file"])
    codes = row.get("codes") or {}
    codes_path = out / str(codes.get("file", ""))
    return (path.is_file() and sha256_file(path) == row.get("sha256")
            and codes_path.is_file() and sha256_file(codes_path) == codes.get("sha256"))


def codes_file_name(name: str) -> str:
    """Where a file's codes are kept: ``<name without .flac>.codes.npy`` beside it."""
    return name[: -len(".flac")] + ".codes.npy" if name.endswith(".flac") else name + ".codes.npy"


def _save_codes(out: Path, name: str, codes: torch.Tensor) -> dict[str, Any]:
    """Keep a file's EnCodec codes ``[K, T]`` (int16), unwatermarked by nature: the evaluation
    decodes them to score the audio without the watermark and counts their n-grams."""
    rel = codes_file_name(name)
    arr = codes.detach().cpu().numpy().astype(np.int16)
    return {"file": rel, "sha256": atomic_save_npy(out / rel, arr), "shape": list(arr.shape)}


def generate(
    bundle: ModelBundle,
    out_dir: str | Path,
    prompts: list[str],
    params: SamplingParams,
    *,
    per_prompt: int = 1,
    seed_audio: str | Path | None = None,
    batch_size: int = 4,
    watermark: WatermarkSettings | None = None,
    recipe_sha256: str | None = None,
    long_form: LongForm | None = None,
    melody: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Write ``per_prompt`` FLAC files per prompt into ``out_dir`` and their provenance rows.

    Files are named ``<prompt index>-<prompt slug>-s<seed>-<n>.flac``. Batches are formed over
    the full list of files (batch j samples with seed ``seed + j * batch_size``); a file that a
    previous call with the same request wrote and that still matches its recorded sha256 is
    kept as is, and only the missing ones of a batch are sampled again.

    Args:
        watermark: watermark settings (None: the default key and strength).
        recipe_sha256: sha256 of the resolved recipe, recorded when generation runs from one.
        long_form: window and context of windowed continuation (None: 30 s and 10 s).
        melody: audio file whose chroma conditions a melody model.

    Returns:
        The rows of every file of this request (generated now or kept).
    """
    params.validate()
    lf = long_form or LongForm()
    prompts = prompts or [""]
    mark = _checked_request(bundle, prompts, params, lf, batch_size, per_prompt, melody, watermark)
    melody_audio = mel.load_melody(melody, bundle.sample_rate) if melody is not None else None
    out = Path(out_dir)
    weights_sha = model_sha256(bundle)
    riff, seed_sha = _seed_riff(bundle, params, seed_audio)
    melody_rec = {"file": str(melody), "sha256": sha256_file(melody)} if melody is not None else None
    model_rec = {"name": bundle.name, "source": bundle.source, "sha256": weights_sha}
    # Everything that decides a file's content; a rerun skips a file only when this is unchanged.
    request = {
        "params": asdict(params), "long_form": asdict(lf), "per_prompt": per_prompt, "batch_size": batch_size,
        "seed_audio_sha256": seed_sha, "melody": melody_rec, "model": model_rec, "watermark": mark.record(),
        "prompts": prompts,
    }
    provenance = _Provenance(
        seed_audio=str(seed_audio) if seed_audio else None, seed_audio_sha256=seed_sha, melody=melody_rec,
        model=model_rec, long_form=lf, watermark=mark, recipe_sha256=recipe_sha256,
        request_sha256=sha256_json(request),
    )
    jobs = [(j, p, i) for j, p in enumerate(prompts) for i in range(per_prompt)]
    manifest = _Manifest(out / "generated.jsonl", [_file_name(j, p, params.seed, i) for j, p, i in jobs])
    todo = {
        k for k, name in enumerate(manifest.names)
        if not _intact(out, manifest.old_rows.get(name), provenance.request_sha256)
    }
    manifest.keep([k for k in range(len(jobs)) if k not in todo])
    batches = [
        (start, [k for k in range(start, min(start + batch_size, len(jobs))) if k in todo])
        for start in range(0, len(jobs), batch_size)
    ]
    batches = [(start, ks) for start, ks in batches if ks]
    windows_per_piece = _windows_count(bundle, params, lf, riff)
    with make_progress() as prog:
        task = prog.add_task("generate (windows)", total=len(batches) * windows_per_piece * params.best_of)
        chunks = math.ceil(math.ceil(params.duration_s * bundle.frame_rate) / int(DECODE_CHUNK_S * bundle.frame_rate))
        decode_task = prog.add_task("decode (chunks)", total=len(batches) * chunks)
        for start, ks in batches:
            chunk_params = SamplingParams(**{**asdict(params), "seed": params.seed + start})
            piece = best_of_codes(
                bundle, [jobs[k][1] for k in ks], chunk_params, lf, seed_riff=riff, melody=melody_audio,
                on_window=lambda: prog.advance(task),
            )
            audio = codes_to_audio(bundle, piece.codes, params.duration_s, on_chunk=lambda: prog.advance(decode_task),
                                   keep_stereo=True)  # a stereo model writes stereo files
            batch_names = [manifest.names[k] for k in ks]
            for row_i, (k, wav) in enumerate(zip(ks, audio, strict=True)):
                manifest.rows[manifest.names[k]] = _write_file(
                    bundle, out, manifest.names[k], wav, jobs[k][1], piece, row_i, chunk_params, params,
                    batch_names, provenance,
                )
            manifest.write()
    ordered = manifest.write()
    from stylecraft.generate.overview import write_overview

    write_overview(out, ordered, bundle.sample_rate, out / "overview.png")
    return ordered


def _checked_request(
    bundle: ModelBundle,
    prompts: list[str],
    params: SamplingParams,
    lf: LongForm,
    batch_size: int,
    per_prompt: int,
    melody: str | Path | None,
    watermark: WatermarkSettings | None,
) -> WatermarkSettings:
    """Raise for a user mistake before anything is sampled; returns the watermark settings to use."""
    # Checked against the longest prompt before anything is sampled, so no batch fails halfway.
    lf.validate(bundle, _prefix_positions(bundle, gc.text_inputs(bundle, prompts)))
    if batch_size < 1:
        raise StylecraftError(f"--batch-size must be >= 1, got {batch_size}")
    if per_prompt < 1:
        raise StylecraftError(f"--n must be >= 1, got {per_prompt}")
    if melody is not None and not is_melody_model(bundle):
        raise StylecraftError(f"--melody needs a melody model; '{bundle.name}' is a {bundle.model_type} model")
    mark = watermark if watermark is not None else WatermarkSettings()
    if mark.enabled:
        wm.resolve_key(mark.key)  # a missing key is a user error before any sampling
        mark.record()  # so are an unknown method and missing AudioSeal weights
        if not 0.0 < mark.strength <= 0.5:
            raise StylecraftError(f"watermark strength must be in (0, 0.5], got {mark.strength}")
    return mark


def _seed_riff(
    bundle: ModelBundle, params: SamplingParams, seed_audio: str | Path | None
) -> tuple[np.ndarray | None, str | None]:
    """The seed riff to continue (mono, model rate) and its file's sha256; ``(None, None)`` without one."""
    if seed_audio is None:
        return None, None
    if not Path(seed_audio).is_file():
        raise StylecraftError(f"seed audio '{seed_audio}' does not exist")
    max_s = params.seed_audio_s or params.duration_s / 2
    return load_seed_riff(seed_audio, bundle.sample_rate, max_s), sha256_file(seed_audio)


@dataclass(frozen=True)
class _Provenance:
    """What every row of one ``generate`` request records besides its own file and batch."""

    seed_audio: str | None
    seed_audio_sha256: str | None
    melody: dict[str, str] | None
    model: dict[str, str]
    long_form: LongForm
    watermark: WatermarkSettings
    recipe_sha256: str | None
    request_sha256: str


class _Manifest:
    """``generated.jsonl`` of a request: the rows of earlier calls, then this request's files in order."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path = path
        self.names = names
        self.old_rows = {r["file"]: r for r in read_jsonl(path)} if path.exists() else {}
        self.rows: dict[str, dict[str, Any]] = {}

    def keep(self, indices: list[int]) -> None:
        """Keep the earlier rows of these files (intact, same request)."""
        for k in indices:
            self.rows[self.names[k]] = self.old_rows[self.names[k]]

    def write(self) -> list[dict[str, Any]]:
        """Write after every batch: a run stopped later keeps the rows (and so the resume) of what it wrote."""
        ordered = [self.rows[n] for n in self.names if n in self.rows]
        write_jsonl(self.path, [r for f, r in self.old_rows.items() if f not in self.rows] + ordered)
        return ordered


def _write_file(
    bundle: ModelBundle,
    out: Path,
    name: str,
    wav: np.ndarray,
    prompt: str,
    piece: PieceCodes,
    row_i: int,
    chunk_params: SamplingParams,
    params: SamplingParams,
    batch_names: list[str],
    provenance: _Provenance,
) -> dict[str, Any]:
    """Watermark and write one generated file and its codes; returns its provenance row."""
    mark = provenance.watermark
    if mark.enabled:
        wav = wm.embed_as(mark.method, wav, bundle.sample_rate, mark.key, mark.strength, mark.audioseal_path)
    path = audio_io.write(out / name, wav, bundle.sample_rate)
    return {
        "file": name,
        "sha256": sha256_file(path),
        "codes": _save_codes(out, name, piece.codes[row_i]),
        "prompt": prompt,
        "seed_audio": provenance.seed_audio,
        "seed_audio_sha256": provenance.seed_audio_sha256,
        "seed_frames": piece.seed_frames,
        "melody": provenance.melody,
        "params": asdict(chunk_params),
        "batch": batch_names,
        "long_form": {
            **asdict(provenance.long_form),
            "windows": [asdict(w) for w in piece.windows],
            "frame_rate": bundle.frame_rate,
        },
        "best_of": _best_of_record(piece, row_i, params),
        "model": provenance.model,
        "recipe_sha256": provenance.recipe_sha256,
        "watermark": mark.record(),
        "stylecraft": stylecraft.__version__,
        "sample_rate": bundle.sample_rate,
        "duration_s": wav.shape[0] / bundle.sample_rate,
        "request_sha256": provenance.request_sha256,
    }


def _windows_count(bundle: ModelBundle, params: SamplingParams, lf: LongForm, riff: np.ndarray | None) -> int:
    total = math.ceil(params.duration_s * bundle.frame_rate)
    hop = bundle.sample_rate // bundle.frame_rate
    seed_frames = 0 if riff is None else min(riff.shape[0] // hop, total)
    w, c = lf.frames(bundle)
    return max(1, len(plan(total, w, c, seed_frames)))


SCORE_MEANING = {
    "likelihood": "mean log-likelihood per new code token, teacher-forced, text-conditional, no guidance",
    "style": "-(distance of the mean mfcc embedding to the style reference's centroid / its spread) - repetition",
}


def _best_of_record(piece: PieceCodes, row: int, params: SamplingParams) -> dict[str, Any]:
    n = params.best_of
    if n == 1:
        return {"n": 1}
    return {
        "n": n,
        "rerank": params.rerank,
        "score": SCORE_MEANING[params.rerank],
        "scores": piece.candidate_scores[row],
        "seeds": piece.candidate_seeds,
        "kept": piece.kept[row],
    }
