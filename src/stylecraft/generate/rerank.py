"""Choosing among best-of-N candidates.

``likelihood`` keeps the candidate the model finds most likely (mean log-probability of its own
new codes). That favours safe, repetitive audio: a loop is easy to predict. ``style`` keeps the
candidate whose sound is nearest the artist's and that repeats itself least:

    score = -distance(candidate, artist centroid) / spread - repetition_weight * repetition

* distance: Euclidean, between the mean embedding of the candidate's audio and the mean of the
  artist's clips, each dimension standardised by the spread of the artist's own frames;
  ``spread`` is the median distance of the artist's clips to their centroid, so a score of -1
  means "as far as a typical track of the artist".
* repetition: the share of repeated code n-grams in the first codebook (0: every n-gram new;
  near 1: a loop or a drone).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from stylecraft.errors import StylecraftError

RERANKERS = ("likelihood", "style")
NGRAM = 8  # code frames per n-gram (0.16 s at 50 Hz)


@dataclass(frozen=True)
class StyleReference:
    """The artist's sound: centroid and per-dimension spread of an embedding over its clips."""

    embedding: str
    centroid: np.ndarray  # [D]
    frame_std: np.ndarray  # [D]
    spread: float  # median standardised distance of the artist's clips to the centroid
    clips: int


def repetition(codes: torch.Tensor, n: int = NGRAM) -> float:
    """Share of repeated n-grams in the first codebook of ``codes`` ``[K, T]`` (0 = none repeated)."""
    row = codes[0].tolist()
    grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


@lru_cache(maxsize=4)
def style_reference(folder: str, embedding: str = "mfcc", max_clip_s: float = 60.0) -> StyleReference:
    """The reference of the artist's audio files under ``folder`` (each file's first ``max_clip_s``).

    Raises:
        StylecraftError: the folder is missing or holds no audio.
    """
    from stylecraft.audio import io as audio_io
    from stylecraft.evaluate.embeddings import get_embedding
    from stylecraft.evaluate.fad import list_audio_files

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise StylecraftError(f"style reference '{folder}' is not a folder of the artist's audio")
    files = list_audio_files(path)
    if not files:
        raise StylecraftError(f"style reference '{folder}' holds no audio files")
    model = get_embedding(embedding)
    frames = []
    for f in files:
        audio, sr = audio_io.load(f, duration_s=max_clip_s)
        frames.append(model.embed(audio, sr).astype(np.float64))
    every = np.concatenate(frames)
    centroid = every.mean(axis=0)
    std = every.std(axis=0) + 1e-8
    clip_means = np.stack([(x.mean(axis=0) - centroid) / std for x in frames])
    spread = float(np.median(np.linalg.norm(clip_means, axis=1))) if len(frames) > 1 else 1.0
    return StyleReference(embedding, centroid, std, max(spread, 1e-6), len(files))


def style_distance(audio: np.ndarray, sample_rate: int, ref: StyleReference) -> float:
    """Standardised distance of ``audio``'s mean embedding to the artist's centroid, in units of ``spread``."""
    from stylecraft.evaluate.embeddings import get_embedding

    rows = get_embedding(ref.embedding).embed(audio, sample_rate).astype(np.float64)
    return float(np.linalg.norm((rows.mean(axis=0) - ref.centroid) / ref.frame_std)) / ref.spread


def style_score(audio: np.ndarray, sample_rate: int, codes: torch.Tensor, ref: StyleReference,
                repetition_weight: float = 1.0) -> float:
    """Higher is better: near the artist's sound, little repetition."""
    return -style_distance(audio, sample_rate, ref) - repetition_weight * repetition(codes)


def check_reranker(name: str, reference: str) -> None:
    if name not in RERANKERS:
        raise StylecraftError(f"--rerank must be one of {', '.join(RERANKERS)}, got '{name}'")
    if name == "style" and not str(reference).strip():
        raise StylecraftError("--rerank style needs --style-reference FOLDER (the artist's audio)")
