"""Demo generations during training, and their FAD and KAD against the held-out tracks.

Every ``train.demo.every`` optimizer steps the main process samples each prompt x seed x
guidance scale with the current weights into ``train/demos/step-NNNNNNN/`` (FLAC files written
atomically, then ``manifest.json`` with their sha256). Sampling runs inside ``fork_rng``, so the
training stream of random numbers (dropout, layer drop) is the same with or without demos and
a resumed run stays bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylecraft.artifacts import atomic_write_json, sha256_file
from stylecraft.audio import io as audio_io
from stylecraft.models.loading import ModelBundle


@dataclass
class DemoResult:
    folder: Path
    files: list[dict[str, Any]]
    audio: dict[str, np.ndarray] = field(default_factory=dict)  # file stem -> mono float32 [samples]
    sample_rate: int = 0


def demo_name(prompt: str, scale: float, seed: int) -> str:
    from stylecraft.generate.sample import file_slug

    return f"{file_slug(prompt)}-g{scale:g}-s{seed}.flac"


def generate_demos(
    bundle: ModelBundle, folder: Path, prompts: list[str], seeds: list[int], scales: list[float],
    duration_s: float, top_k: int, step: int,
) -> DemoResult:
    """Sample every prompt x seed x guidance scale with ``bundle.model`` as it is now.

    The model is put in eval mode for sampling and back in train mode after; the global RNG
    (CPU and CUDA) is restored on return.
    """
    from stylecraft.generate.sample import SamplingParams, generate_codes_audio

    model: Any = bundle.model
    was_training = model.training
    devices = [model.device] if model.device.type == "cuda" else []
    rows: list[dict[str, Any]] = []
    audio: dict[str, np.ndarray] = {}
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            for scale in scales:
                for seed in seeds:
                    params = SamplingParams(duration_s=duration_s, top_k=top_k, guidance_scale=scale, seed=seed)
                    wavs = generate_codes_audio(bundle, prompts, params)  # [P, samples]
                    for prompt, wav in zip(prompts, wavs, strict=True):
                        name = demo_name(prompt, scale, seed)
                        path = audio_io.write(folder / name, wav, bundle.sample_rate)
                        audio[name[: -len(".flac")]] = wav
                        rows.append({"file": name, "sha256": sha256_file(path), "prompt": prompt,
                                     "guidance_scale": scale, "seed": seed, "duration_s": duration_s,
                                     "top_k": top_k})
    finally:
        model.train(was_training)
    atomic_write_json(folder / "manifest.json", {
        "step": step, "sample_rate": bundle.sample_rate, "files": rows,
        # Demos monitor training; they are not releases, so they carry no watermark.
        "watermark": None,
    })
    return DemoResult(folder=folder, files=rows, audio=audio, sample_rate=bundle.sample_rate)


def demo_guidance_scale(cfg: Any) -> float:
    """The guidance scale whose demos early stopping reads: ``train.early_stopping.guidance_scale``,
    or else the one generation uses (``generate.guidance_scale``)."""
    gs = cfg.train.early_stopping.guidance_scale
    return float(cfg.generate.guidance_scale if gs is None else gs)


@dataclass
class DemoScores:
    """FAD and KAD of one step's demos against the held-out tracks, per guidance scale.

    Attributes:
        guidance_scale: The scale whose scores early stopping reads.
        per_scale: Scale -> ``{"fad": value or None (no more rows than dimensions), "kad", "rows"}``.
    """

    guidance_scale: float
    per_scale: dict[float, dict[str, Any]]

    def value(self, metric: str) -> float:
        """``metric`` (``fad`` or ``kad``) at the early-stopping scale (NaN for a FAD not computed)."""
        v = self.per_scale[self.guidance_scale][metric]
        return float("nan") if v is None else float(v)

    def row(self) -> dict[str, float]:
        """metrics.jsonl / TensorBoard fields: ``fad`` and ``kad`` at the early-stopping scale, and per scale."""
        out: dict[str, float] = {}
        for scale, scores in self.per_scale.items():
            for metric in ("fad", "kad"):
                if scores[metric] is not None:
                    out[f"{metric}_g{scale:g}"] = float(scores[metric])
                    if scale == self.guidance_scale:
                        out[metric] = float(scores[metric])
        return out


class FadScorer:
    """FAD and KAD of demo audio against the run's held-out (valid) tracks, with one embedding.

    Each guidance scale's demos form their own set (pooling scales would mix distributions), and
    every demo clip is loudness-normalised to the segment stage's target, as the held-out tracks
    were. The held-out statistics are computed once, on first use.
    """

    def __init__(self, run: Path, embedding: str, sample_rate: int, loudness_lufs: float = -16.0,
                 guidance_scale: float = 3.0) -> None:
        from stylecraft.evaluate.embeddings import get_embedding

        self.run = run
        self.sample_rate = sample_rate  # the segment rate of the run's normalised track audio
        self.loudness_lufs = loudness_lufs
        self.guidance_scale = guidance_scale
        self.emb = get_embedding(embedding)
        self._ref: np.ndarray | None = None

    def reference(self) -> np.ndarray:
        """The held-out tracks' embedding rows ``[N, D]`` (float64)."""
        from stylecraft.data.manifest import Track, load_rows
        from stylecraft.data.segment import load_track_audio, track_audio_path
        from stylecraft.errors import StageInputError

        if self._ref is None:
            tracks = [t for t in load_rows(self.run / "tracks.jsonl", Track)
                      if t.split == "valid" and track_audio_path(self.run, t.id).exists()]
            if not tracks:
                raise StageInputError("FAD/KAD early stopping needs held-out (valid) tracks: raise ingest.valid_fraction")
            rows = [self.emb.embed(load_track_audio(self.run, t.id), self.sample_rate) for t in tracks]
            self._ref = np.concatenate(rows).astype(np.float64)
        return self._ref

    def check_rows(self, metric: str, clips_per_scale: int, duration_s: float, sample_rate: int) -> int:
        """Embedding rows one guidance scale's demos give; FAD on no more rows than dimensions is refused.

        Raises:
            ConfigError: For ``metric == "fad"`` when the demos of one scale give ``n <= D`` rows
                (the covariance is singular and FAD mostly measures the sample size).
        """
        from stylecraft.errors import ConfigError

        probe = np.random.default_rng(0).normal(scale=0.1, size=int(duration_s * sample_rate)).astype(np.float32)
        per_clip, dim = self.emb.embed(probe, sample_rate).shape
        rows = per_clip * clips_per_scale
        if metric == "fad" and rows <= dim:
            raise ConfigError(
                f"train.early_stopping.metric=fad would fit a Gaussian to {rows} embedding rows in {dim} dimensions "
                f"({clips_per_scale} demo clip(s) per guidance scale x {per_clip} rows of {self.emb.name}): "
                "its covariance is singular and FAD would mostly measure the sample size; use metric=kad, or raise "
                "train.demo.seeds / train.demo.prompts / train.demo.duration_s"
            )
        return rows

    def score(self, demos: DemoResult) -> DemoScores:
        """FAD (when there are more rows than dimensions) and KAD of each guidance scale's demos."""
        from stylecraft.audio.loudness import normalize_gain
        from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats
        from stylecraft.evaluate.kad import kernel_audio_distance

        ref = self.reference()
        mu_r, s_r = gaussian_stats(ref)
        by_scale: dict[float, list[np.ndarray]] = {}
        for row in demos.files:
            audio = demos.audio[str(row["file"])[: -len(".flac")]]
            level, _ = normalize_gain(audio, demos.sample_rate, self.loudness_lufs)
            by_scale.setdefault(float(row["guidance_scale"]), []).append(self.emb.embed(level, demos.sample_rate))
        per_scale: dict[float, dict[str, Any]] = {}
        for scale, parts in by_scale.items():
            gen = np.concatenate(parts).astype(np.float64)
            fad = None
            if gen.shape[0] > gen.shape[1]:
                mu_g, s_g = gaussian_stats(gen)
                fad = float(frechet_distance(mu_r, s_r, mu_g, s_g))
            per_scale[scale] = {"fad": fad, "kad": kernel_audio_distance(ref, gen).kad, "rows": int(gen.shape[0])}
        return DemoScores(guidance_scale=self.guidance_scale, per_scale=per_scale)
