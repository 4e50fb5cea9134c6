"""Generate tab and ``/generate`` endpoint: takes written by :func:`stylecraft.generate.sample.generate`.

Each request gets its own folder under the studio's output folder, holding the library's usual
outputs (FLAC files, ``generated.jsonl``, ``overview.png``) plus one spectrogram per take. Every
take is checked for its watermark after it is written, so the page shows what a detector finds
in the file a user downloads, not what was intended.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylecraft.artifacts import sha256_json
from stylecraft.audio import io as audio_io
from stylecraft.errors import AudioDecodeError, StylecraftError
from stylecraft.models.loading import ModelBundle
from stylecraft.studio.settings import MAX_TAKES, StudioSettings

Progress = Callable[[float, str], object]


@dataclass(frozen=True)
class GenerateRequest:
    """Everything the Generate tab asks for (seconds in ``*_s``)."""

    model: str
    prompts: list[str]
    duration_s: float = 8.0
    window_s: float = 30.0
    context_s: float = 10.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    guidance_scale: float = 3.0
    seed: int = 0
    takes: int = 1
    best_of: int = 1
    beams: int = 0
    length_penalty: float = 1.0
    seed_riff: str | None = None  # an uploaded file, already cropped (see crop_riff)
    melody: str | None = None


@dataclass
class Take:
    """One generated file and what the page shows beside it."""

    path: Path
    spectrogram: Path
    watermark: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)


class ModelCache:
    """The last few loaded models, so that a second take does not reload its model."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._models: OrderedDict[str, ModelBundle] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> ModelBundle:
        from stylecraft.models.loading import load_model

        name = name.strip()
        if not name:
            raise StylecraftError("choose a model: a run folder, preset, registry name or model folder")
        with self._lock:
            if name not in self._models:
                self._models[name] = load_model(name)
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
            self._models.move_to_end(name)
            return self._models[name]


def check_upload(path: str | Path, settings: StudioSettings, what: str) -> Path:
    """An uploaded file that exists, is within the size limit and decodes as audio."""
    p = Path(path)
    if not p.is_file():
        raise StylecraftError(f"the {what} upload is missing; upload it again")
    size_mb = p.stat().st_size / 1e6
    if size_mb > settings.max_upload_mb:
        raise StylecraftError(f"the {what} is {size_mb:.1f} MB, over the studio's upload limit of {settings.max_upload_mb:g} MB")
    try:
        audio_io.probe(p)
    except (AudioDecodeError, RuntimeError, OSError):
        raise AudioDecodeError(f"the {what} '{p.name}' is not audio stylecraft can read (FLAC, WAV, OGG, MP3, AIFF)") from None
    return p


def crop_riff(path: str | Path, start_s: float, end_s: float, settings: StudioSettings) -> Path:
    """Write seconds ``start_s..end_s`` of an uploaded riff (``end_s <= 0``: to its end) as FLAC."""
    src = check_upload(path, settings, "seed riff")
    if start_s < 0 or (end_s > 0 and end_s <= start_s):
        raise StylecraftError(f"riff crop {start_s:g}-{end_s:g} s is empty: the end must be after the start")
    length = audio_seconds(src)
    if start_s >= length - 0.02:
        raise StylecraftError(f"riff crop starts at {start_s:g} s but the riff is {length:.1f} s long")
    audio, sr = audio_io.load(src, start_s=start_s, duration_s=end_s - start_s if end_s > 0 else None)
    out = settings.out_dir / "riffs" / f"{sha256_json([str(src), start_s, end_s, src.stat().st_mtime_ns])[:16]}.flac"
    return audio_io.write(out, audio, sr)


def _params(req: GenerateRequest) -> Any:
    from stylecraft.generate.sample import SamplingParams

    return SamplingParams(
        duration_s=req.duration_s, temperature=req.temperature, top_k=req.top_k, top_p=req.top_p,
        guidance_scale=req.guidance_scale, seed=req.seed, best_of=req.best_of, beams=req.beams,
        length_penalty=req.length_penalty,
    )


def validate_request(req: GenerateRequest, settings: StudioSettings) -> None:
    """The user mistakes a request can hold, as one-line errors, before any model is loaded."""
    from stylecraft.generate.longform import LongForm

    if req.duration_s > settings.max_duration_s:
        raise StylecraftError(
            f"duration {req.duration_s:g} s is longer than this studio allows ({settings.max_duration_s:g} s; "
            "start it with --max-duration to allow more)"
        )
    if not 1 <= req.takes <= MAX_TAKES:
        raise StylecraftError(f"takes must be between 1 and {MAX_TAKES}, got {req.takes}")
    if len(req.prompts) * req.takes > MAX_TAKES:
        raise StylecraftError(f"{len(req.prompts)} prompts x {req.takes} takes is more than the {MAX_TAKES} takes a page shows")
    _params(req).validate()
    LongForm(window_s=req.window_s, context_s=req.context_s).validate()
    for what, path in (("seed riff", req.seed_riff), ("melody", req.melody)):
        if path is not None:
            check_upload(path, settings, what)


def spectrogram_png(path: Path, out: Path) -> Path:
    """A log-mel spectrogram of an audio file (mono mix) as PNG."""
    from stylecraft.evaluate.plots import spectrogram_grid

    audio, sr = audio_io.load(path)
    return spectrogram_grid([(path.name, audio_io.to_mono(audio))], sr, out)


def generate_takes(
    settings: StudioSettings, models: ModelCache, req: GenerateRequest, progress: Progress | None = None
) -> list[Take]:
    """Generate ``req.takes`` files per prompt, each with a spectrogram, watermark check and provenance."""
    from stylecraft.generate.longform import LongForm
    from stylecraft.generate.sample import WatermarkSettings, generate
    from stylecraft.generate.watermark import detect_file_as

    def tell(fraction: float, text: str) -> None:
        if progress is not None:
            progress(fraction, text)

    validate_request(req, settings)
    tell(0.05, f"loading {req.model}")
    bundle = models.get(req.model)
    request_id = sha256_json({**req.__dict__, "t": time.time_ns()})[:10]
    out = settings.out_dir / "takes" / f"{time.strftime('%Y%m%d-%H%M%S')}-{request_id}"
    tell(0.15, f"generating {len(req.prompts) * req.takes} take(s) of {req.duration_s:g} s")
    rows = generate(
        bundle, out, list(req.prompts), _params(req), per_prompt=req.takes, seed_audio=req.seed_riff,
        batch_size=MAX_TAKES, watermark=WatermarkSettings(key=settings.watermark_key),
        long_form=LongForm(window_s=req.window_s, context_s=req.context_s), melody=req.melody,
    )
    takes: list[Take] = []
    for i, row in enumerate(rows):
        tell(0.8 + 0.2 * i / max(1, len(rows)), f"checking take {i + 1}")
        path = out / str(row["file"])
        det = detect_file_as("dsp", path, settings.watermark_key)
        takes.append(Take(
            path=path, spectrogram=spectrogram_png(path, path.with_suffix(".png")),
            watermark={"detected": bool(det.detected), "score": round(float(det.score), 2),
                       "threshold": float(det.threshold), "key_id": det.key_id},
            provenance=row,
        ))
    return takes


def audio_seconds(path: str | Path) -> float:
    """Length of an audio file in seconds (for the crop fields' hints)."""
    info = audio_io.probe(path)
    return float(info.frames) / float(info.samplerate)
