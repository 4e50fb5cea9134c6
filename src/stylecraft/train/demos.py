"""Demo generations during training, and their FAD against the held-out tracks.

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


class FadScorer:
    """FAD of demo audio against the run's held-out (valid) tracks, with one embedding.

    The held-out statistics are computed once, on first use.
    """

    def __init__(self, run: Path, embedding: str, sample_rate: int) -> None:
        from stylecraft.evaluate.embeddings import get_embedding

        self.run = run
        self.sample_rate = sample_rate  # the segment rate of the run's normalised track audio
        self.emb = get_embedding(embedding)
        self._ref: tuple[np.ndarray, np.ndarray] | None = None

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        from stylecraft.data.manifest import Track, load_rows
        from stylecraft.data.segment import load_track_audio, track_audio_path
        from stylecraft.errors import StageInputError
        from stylecraft.evaluate.frechet import gaussian_stats

        if self._ref is None:
            tracks = [t for t in load_rows(self.run / "tracks.jsonl", Track)
                      if t.split == "valid" and track_audio_path(self.run, t.id).exists()]
            if not tracks:
                raise StageInputError("FAD early stopping needs held-out (valid) tracks: raise ingest.valid_fraction")
            rows = [self.emb.embed(load_track_audio(self.run, t.id), self.sample_rate) for t in tracks]
            self._ref = gaussian_stats(np.concatenate(rows).astype(np.float64))
        return self._ref

    def score(self, demos: DemoResult) -> float:
        from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats

        mu_r, s_r = self.reference()
        gen = np.concatenate([self.emb.embed(a, demos.sample_rate) for a in demos.audio.values()])
        mu_g, s_g = gaussian_stats(gen.astype(np.float64))
        return float(frechet_distance(mu_r, s_r, mu_g, s_g))
