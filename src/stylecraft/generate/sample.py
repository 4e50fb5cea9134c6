"""Sampling: text-conditioned generation and continuation of a seed riff, written as FLAC.

Each call writes its files atomically, watermarked with a keyed DSP mark (unless disabled), and
records a provenance row per file in ``generated.jsonl`` beside them: the file's sha256, prompt,
seed and sampling parameters, the model (name, source and a sha256 of its weights), the recipe's
sha256 when run from a recipe, and the watermark (method, public key id, strength).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import stylecraft
from stylecraft.artifacts import read_jsonl, sha256_file, write_jsonl
from stylecraft.audio import io as audio_io
from stylecraft.errors import StylecraftError
from stylecraft.generate import watermark as wm
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

    def validate(self) -> None:
        if self.duration_s <= 0:
            raise StylecraftError(f"--duration must be > 0, got {self.duration_s}")
        if self.temperature <= 0:
            raise StylecraftError(f"--temperature must be > 0, got {self.temperature}")
        if self.top_k < 0 or not 0.0 <= self.top_p <= 1.0:
            raise StylecraftError("--top-k must be >= 0 and --top-p in [0, 1]")


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


def _slug(text: str) -> str:
    s = re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")
    return (s[:40].rstrip("-")) or "unconditional"


def load_seed_riff(path: str | Path, sample_rate: int, max_s: float) -> np.ndarray:
    """The last ``max_s`` seconds of a seed file, mono at the model's rate, float32 [samples]."""
    audio, sr = audio_io.load(path)
    mono = audio_io.resample(audio_io.to_mono(audio), sr, sample_rate)
    n = int(round(max_s * sample_rate))
    return mono[-n:] if n and mono.shape[0] > n else mono


@torch.no_grad()
def generate_codes_audio(
    bundle: ModelBundle, prompts: list[str], params: SamplingParams, seed_riff: np.ndarray | None = None
) -> np.ndarray:
    """Generate audio ``[B, samples]`` (float32, exactly ``duration_s`` long) for each prompt."""
    model, sr, fr, k = bundle.model, bundle.sample_rate, bundle.frame_rate, bundle.num_codebooks
    frames = math.ceil(params.duration_s * fr)
    text = bundle.tokenizer(prompts, padding=True, return_tensors="pt").to(model.device)
    kwargs: dict[str, Any] = {}
    prompt_frames = 0
    if seed_riff is not None:
        hop = sr // fr
        seed = seed_riff[: (seed_riff.shape[0] // hop) * hop]
        if seed.shape[0] < hop:
            raise StylecraftError("the seed riff is shorter than one codec frame")
        prompt_frames = seed.shape[0] // hop
        if prompt_frames >= frames:
            raise StylecraftError(
                f"the seed riff ({seed.shape[0] / sr:.1f} s) is not shorter than --duration {params.duration_s} s"
            )
        kwargs["input_values"] = torch.from_numpy(np.tile(seed, (len(prompts), 1)))[:, None, :].to(model.device)
    new_tokens = frames - prompt_frames + k - 1  # the delay pattern costs K - 1 steps
    torch.manual_seed(params.seed)
    out = model.generate(
        **text,
        **kwargs,
        do_sample=True,
        max_new_tokens=new_tokens,
        temperature=params.temperature,
        top_k=params.top_k or None,
        top_p=params.top_p or None,
        guidance_scale=params.guidance_scale if params.guidance_scale > 1 else None,
    )  # [B, channels, samples]
    audio = out[:, 0].float().cpu().numpy()
    n = int(round(params.duration_s * sr))
    fixed = np.zeros((audio.shape[0], n), dtype=np.float32)
    m = min(n, audio.shape[1])
    fixed[:, :m] = audio[:, :m]
    if not np.isfinite(fixed).all():
        raise StylecraftError("generation produced non-finite audio (check the model's weights)")
    return fixed


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
) -> list[dict[str, Any]]:
    """Write ``per_prompt`` FLAC files per prompt into ``out_dir`` and their provenance rows.

    Args:
        watermark: watermark settings (None: the default key and strength).
        recipe_sha256: sha256 of the resolved recipe, recorded when generation runs from one.
    """
    params.validate()
    mark = watermark if watermark is not None else WatermarkSettings()
    if mark.enabled:
        wm.resolve_key(mark.key)  # a missing key is a user error before any sampling
        mark.record()  # so are an unknown method and missing AudioSeal weights
        if not 0.0 < mark.strength <= 0.5:
            raise StylecraftError(f"watermark strength must be in (0, 0.5], got {mark.strength}")
    out = Path(out_dir)
    weights_sha = model_sha256(bundle)
    prompts = prompts or [""]
    riff = None
    if seed_audio is not None:
        max_s = params.seed_audio_s or params.duration_s / 2
        riff = load_seed_riff(seed_audio, bundle.sample_rate, max_s)
    jobs = [(p, i) for p in prompts for i in range(per_prompt)]
    rows: list[dict[str, Any]] = []
    with make_progress() as prog:
        task = prog.add_task("generate", total=len(jobs))
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            chunk_params = SamplingParams(**{**asdict(params), "seed": params.seed + start})
            audio = generate_codes_audio(bundle, [p for p, _ in chunk], chunk_params, riff)
            for (prompt, i), wav in zip(chunk, audio, strict=True):
                name = f"{_slug(prompt)}-s{params.seed}-{i:02d}.flac"
                if mark.enabled:
                    wav = wm.embed_as(mark.method, wav, bundle.sample_rate, mark.key, mark.strength, mark.audioseal_path)
                path = audio_io.write(out / name, wav, bundle.sample_rate)
                rows.append(
                    {
                        "file": name,
                        "sha256": sha256_file(path),
                        "prompt": prompt,
                        "seed_audio": str(seed_audio) if seed_audio else None,
                        "params": asdict(chunk_params),
                        "model": {"name": bundle.name, "source": bundle.source, "sha256": weights_sha},
                        "recipe_sha256": recipe_sha256,
                        "watermark": mark.record(),
                        "stylecraft": stylecraft.__version__,
                        "sample_rate": bundle.sample_rate,
                        "duration_s": wav.shape[0] / bundle.sample_rate,
                    }
                )
                prog.advance(task)
    manifest = out / "generated.jsonl"
    old = [r for r in read_jsonl(manifest) if r["file"] not in {r2["file"] for r2 in rows}] if manifest.exists() else []
    write_jsonl(manifest, old + rows)
    return rows
