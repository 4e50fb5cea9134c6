"""The evaluate stage: generated music against the artist's held-out tracks, compared like with like.

What is compared, and why:

* **Unwatermarked audio.** Each generated file's EnCodec codes (kept by the generate stage) are
  decoded again with the run's model, which gives the audio before its watermark. Scores are of
  that audio; the watermark's own effect on FAD and KAD is measured once, on the headline
  embedding, by scoring the watermarked files too.
* **Same loudness.** Held-out tracks were loudness-normalised by the segment stage to
  ``segment.loudness_lufs``; every generated clip (and every clip cut from the catalogue for the
  baselines) is normalised to the same target by the same rule before it is embedded.
* **Enough rows.** FAD fits a Gaussian to each set; with no more embedding rows than dimensions
  its covariance is singular and the value is mostly sample-size bias. Such a FAD is not
  reported (``fad: null`` with the reason): a number that large and that wrong would be read.
  KAD makes no Gaussian assumption and is always reported.
* **A baseline of the same size.** FAD and KAD of as many clips of the same length cut from the
  *training* tracks, against the same held-out tracks, say what "in the style" scores with
  this very number of clips.
* **A bootstrap over tracks.** Intervals resample generated clips and held-out tracks as whole
  units; with fewer than :data:`~stylecraft.evaluate.stats.MIN_BOOTSTRAP_UNITS` generated clips
  there is no interval, and a held-out set of fewer tracks is held fixed (both recorded).
* **Diversity and novelty** (:mod:`stylecraft.evaluate.diversity`): code n-gram entropy and
  distinct-n, beside the held-out windows' codes; mean pairwise clip-embedding distance within
  the generated set and within held-out clips; nearest-training-window distances of generated
  and of held-out clips.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.artifacts import read_jsonl, sha256_file
from stylecraft.errors import StageInputError
from stylecraft.evaluate.diversity import clip_embedding, code_ngram_stats, embedding_diversity, novelty
from stylecraft.evaluate.embeddings import Embedding
from stylecraft.evaluate.fad import few_rows_warning
from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats
from stylecraft.evaluate.kad import kernel_audio_distance
from stylecraft.evaluate.stats import MIN_BOOTSTRAP_UNITS, bootstrap_fad, bootstrap_kad

__all__ = ["GeneratedClip", "evaluate_run", "load_generated", "score_sets"]


@dataclasses.dataclass
class GeneratedClip:
    """One generated file as the evaluation sees it.

    Attributes:
        name: File name in ``generated/``.
        marked: The file's audio (watermarked when the row says so), mono float32.
        unmarked: The same audio before the watermark (decoded from its codes), mono float32.
        sample_rate: Rate of both.
        codes: EnCodec codes ``[K, T]`` of the new part (the seed riff's frames left out).
        watermarked: Whether the file carries a watermark.
    """

    name: str
    marked: np.ndarray
    unmarked: np.ndarray
    sample_rate: int
    codes: np.ndarray
    watermarked: bool


def _read_row_files(folder: Path, row: dict[str, Any]) -> tuple[np.ndarray, int, np.ndarray]:
    """The row's audio (mono) and codes, after checking both against their recorded sha256."""
    from stylecraft.audio import io as audio_io

    audio_path = folder / str(row["file"])
    if not audio_path.is_file() or sha256_file(audio_path) != row.get("sha256"):
        raise StageInputError(f"generated file {audio_path} is missing or altered: run the generate stage again")
    codes_rec = row.get("codes")
    if not codes_rec:
        raise StageInputError(f"{row['file']} has no codes in generated.jsonl (made by an older stylecraft): "
                              "run the generate stage again (stylecraft run RECIPE --force, or delete generated/)")
    codes_path = folder / str(codes_rec["file"])
    if not codes_path.is_file() or sha256_file(codes_path) != codes_rec.get("sha256"):
        raise StageInputError(f"codes {codes_path} are missing or altered: run the generate stage again")
    audio, sr = audio_io.load(audio_path)
    return audio_io.to_mono(audio), sr, np.load(codes_path, allow_pickle=False)


def load_generated(run: Path) -> list[GeneratedClip]:
    """Every file of ``generated/generated.jsonl``, with its unwatermarked audio and its codes.

    Watermarked files are decoded again from their codes with the run's model (``model/``), which
    must be the model that generated them (its weights' sha256 is in every row).

    Raises:
        StageInputError: For a missing manifest, a missing or altered file, rows without codes,
            or a model that is not the one that generated the files.
    """
    folder = run / "generated"
    manifest = folder / "generated.jsonl"
    if not manifest.exists():
        raise StageInputError(f"'{manifest}' is missing: run the generate stage first")
    rows = read_jsonl(manifest)
    if not rows:
        raise StageInputError(f"'{manifest}' lists no generated file")
    bundle = None
    clips = []
    for row in rows:
        audio, sr, codes = _read_row_files(folder, row)
        marked = bool((row.get("watermark") or {}).get("method"))
        unmarked = audio
        if marked:
            if bundle is None:
                bundle = _generating_model(run, row)
            unmarked = _decode(bundle, codes, float(row["duration_s"]))
        seed = int(row.get("seed_frames") or 0)
        clips.append(GeneratedClip(name=str(row["file"]), marked=audio, unmarked=unmarked, sample_rate=sr,
                                   codes=np.asarray(codes)[:, seed:], watermarked=marked))
    return clips


def _generating_model(run: Path, row: dict[str, Any]) -> Any:
    from stylecraft.generate.sample import model_sha256
    from stylecraft.models.loading import load_model

    bundle = load_model(str(run))
    if model_sha256(bundle) != (row.get("model") or {}).get("sha256"):
        raise StageInputError("the generated files were made by another model than the run's model/: "
                              "run the generate stage again")
    return bundle


def _decode(bundle: Any, codes: np.ndarray, duration_s: float) -> np.ndarray:
    import torch

    from stylecraft.generate.sample import codes_to_audio

    return codes_to_audio(bundle, torch.as_tensor(codes.astype(np.int64))[None], duration_s)[0]


def _normalised(audio: np.ndarray, sample_rate: int, lufs: float) -> np.ndarray:
    """The segment stage's rule: scale to ``lufs`` with the peak kept below 0.99."""
    from stylecraft.audio.loudness import normalize_gain

    return normalize_gain(np.asarray(audio, dtype=np.float32), sample_rate, lufs)[0]


def _fad_or_reason(ref: np.ndarray, gen: np.ndarray) -> tuple[float | None, str | None]:
    """FAD, or why it is not reported (no more rows than dimensions in either set)."""
    for label, rows in (("reference", ref), ("generated", gen)):
        warning = few_rows_warning(label, "", rows.shape[0], rows.shape[1])
        if warning is not None:
            return None, (f"not reported: the {label} set has {rows.shape[0]} embedding rows for dimension "
                          f"{rows.shape[1]}, so its covariance is singular and FAD is mostly sample-size bias; "
                          "generate more or longer clips (generate.per_prompt, generate.duration_s) or read KAD")
    mu_r, s_r = gaussian_stats(ref)
    mu_g, s_g = gaussian_stats(gen)
    return frechet_distance(mu_r, s_r, mu_g, s_g), None


def score_sets(ref_units: list[np.ndarray], gen_units: list[np.ndarray], n_boot: int, seed: int = 0) -> dict[str, Any]:
    """FAD (when there are enough rows) and KAD of generated units against reference units, with intervals.

    Args:
        ref_units: Embedding rows of each reference unit (held-out track).
        gen_units: Embedding rows of each generated unit (clip).
        n_boot: Bootstrap replicates (0: no interval).
        seed: Seed of the bootstrap.

    Returns:
        ``fad`` (or ``None`` and ``fad_note``), ``kad``, ``kad_bandwidth``, ``n_ref``, ``n_gen``,
        ``n_ref_units``, ``n_gen_units`` and, with ``n_boot``, ``ci95`` / ``kad_ci95`` (or a
        ``ci_note`` saying why there is none).
    """
    ref = np.concatenate(ref_units).astype(np.float64)
    gen = np.concatenate(gen_units).astype(np.float64)
    fad, note = _fad_or_reason(ref, gen)
    kad = kernel_audio_distance(ref, gen)
    out: dict[str, Any] = {"fad": fad, "kad": kad.kad, "kad_bandwidth": kad.bandwidth, "n_ref": int(ref.shape[0]),
                           "n_gen": int(gen.shape[0]), "n_ref_units": len(ref_units), "n_gen_units": len(gen_units)}
    if note:
        out["fad_note"] = note
    if not n_boot:
        return out
    if len(gen_units) < MIN_BOOTSTRAP_UNITS:
        out["ci_note"] = (f"no interval: {len(gen_units)} generated clips are fewer than the {MIN_BOOTSTRAP_UNITS} a "
                          "bootstrap needs (raise generate.per_prompt)")
        return out
    resample_ref = len(ref_units) >= MIN_BOOTSTRAP_UNITS
    kw: dict[str, Any] = {"n_boot": n_boot, "seed": seed, "ref_sizes": [u.shape[0] for u in ref_units],
                          "gen_sizes": [u.shape[0] for u in gen_units], "resample_ref": resample_ref}
    if fad is not None:
        out["ci95"] = _bounds(bootstrap_fad(ref, gen, **kw))
    out["kad_ci95"] = _bounds(bootstrap_kad(ref, gen, **kw))
    out["ci_units"] = {"generated": "clip", "reference": "held-out track" if resample_ref else
                       f"held fixed ({len(ref_units)} held-out tracks, fewer than {MIN_BOOTSTRAP_UNITS})"}
    return out


def _bounds(ci: Any) -> list[float]:
    return [ci.low, ci.high]


def _cut(audio: np.ndarray, sample_rate: int, seconds: float, lufs: float) -> list[np.ndarray]:
    """Non-overlapping clips of ``seconds`` from the start of a track, each loudness-normalised."""
    n = int(round(seconds * sample_rate))
    return [_normalised(audio[i : i + n], sample_rate, lufs) for i in range(0, audio.shape[0] - n + 1, n)]


@dataclasses.dataclass
class _Catalogue:
    """The run's own audio the generated clips are compared with, at the segment rate."""

    sample_rate: int
    heldout_tracks: list[np.ndarray]  # whole held-out tracks, normalised per track by the segment stage
    heldout_clips: list[np.ndarray]  # held-out tracks cut into clips as long as the generated ones
    train_windows: list[np.ndarray]  # the training windows, cut to the generated length


def _catalogue(run: Path, sample_rate: int, clip_s: float, lufs: float) -> _Catalogue:
    from stylecraft.data.manifest import Track, Window, load_rows
    from stylecraft.data.segment import load_track_audio, track_audio_path

    tracks = [t for t in load_rows(run / "tracks.jsonl", Track) if track_audio_path(run, t.id).exists()]
    heldout = [load_track_audio(run, t.id) for t in tracks if t.split == "valid"]
    if not heldout:
        raise StageInputError("no held-out (valid) track to evaluate against: raise ingest.valid_fraction or add tracks")
    clips = [c for audio in heldout for c in _cut(audio, sample_rate, clip_s, lufs)]
    windows = [w for w in load_rows(run / "windows.jsonl", Window) if w.split == "train"]
    train: list[np.ndarray] = []
    cache: dict[str, np.ndarray] = {}
    for w in windows:
        audio = cache.setdefault(w.track_id, load_track_audio(run, w.track_id))
        start = int(round(w.start_s * sample_rate))
        n = int(round(min(clip_s, w.duration_s) * sample_rate))
        train.append(_normalised(audio[start : start + n], sample_rate, lufs))
    return _Catalogue(sample_rate=sample_rate, heldout_tracks=heldout, heldout_clips=clips, train_windows=train)


def _evenly(n_items: int, n_pick: int) -> list[int]:
    """``n_pick`` indices spread evenly over ``n_items`` (all of them when there are fewer)."""
    if n_items <= n_pick:
        return list(range(n_items))
    return [int(i) for i in np.linspace(0, n_items - 1, n_pick).round()]


def _points(units: list[np.ndarray]) -> np.ndarray:
    return np.stack([clip_embedding(u) for u in units]) if units else np.zeros((0, 0))


def _embedding_report(emb: Embedding, cat: _Catalogue, gen: list[np.ndarray], gen_rate: int, n_boot: int,
                      ref_units: list[np.ndarray]) -> dict[str, Any]:
    """Scores, baseline, diversity and novelty of the generated clips with one embedding."""
    sr = cat.sample_rate
    gen_units = [emb.embed(a, gen_rate) for a in gen]
    row: dict[str, Any] = {**score_sets(ref_units, gen_units, n_boot), "embedding": emb.name,
                           "embedding_settings": emb.settings()}
    train_units = [emb.embed(w, sr) for w in cat.train_windows]
    picked = [train_units[i] for i in _evenly(len(train_units), len(gen_units))]
    if len(picked) >= 2:
        base = score_sets(ref_units, picked, 0)
        row["train_clips_vs_ref"] = {k: base[k] for k in ("fad", "kad", "fad_note", "n_gen") if k in base}
        row["train_clips_vs_ref"]["n_clips"] = len(picked)
    gen_pts = _points(gen_units)
    held_pts = _points([emb.embed(c, sr) for c in cat.heldout_clips])
    train_pts = _points(train_units)
    if gen_pts.shape[0] >= 2 and held_pts.shape[0] >= 2:
        row["diversity"] = embedding_diversity(gen_pts, held_pts)
    else:
        row["diversity"] = {"note": f"needs 2 or more generated clips and held-out clips "
                                    f"(have {gen_pts.shape[0]} and {held_pts.shape[0]})"}
    if train_pts.shape[0] and held_pts.shape[0]:
        row["novelty"] = novelty(gen_pts, held_pts, train_pts)
    else:
        row["novelty"] = {"note": "needs training windows and held-out clips"}
    return row


def _watermark_effect(emb: Embedding, clips: list[GeneratedClip], lufs: float, ref_units: list[np.ndarray],
                      unmarked: dict[str, Any]) -> dict[str, Any]:
    """FAD and KAD of the watermarked files beside the unwatermarked audio's, with the same embedding."""
    marked_audio = [_normalised(c.marked, c.sample_rate, lufs) for c in clips]
    marked_units = [emb.embed(a, clips[0].sample_rate) for a in marked_audio]
    marked = score_sets(ref_units, marked_units, 0)
    unmarked_rows = np.concatenate([emb.embed(_normalised(c.unmarked, c.sample_rate, lufs), c.sample_rate)
                                    for c in clips])
    snr = [10 * np.log10(float(np.sum(c.unmarked**2)) / max(float(np.sum((c.marked - c.unmarked) ** 2)), 1e-20))
           for c in clips]
    out = {"embedding": emb.name, "fad_watermarked": marked["fad"], "kad_watermarked": marked["kad"],
           "fad_unwatermarked": unmarked["fad"], "kad_unwatermarked": unmarked["kad"],
           "kad_watermarked_vs_unwatermarked": kernel_audio_distance(unmarked_rows, np.concatenate(marked_units)).kad,
           "median_snr_db": float(np.median(snr))}
    out["fad_change"] = None if marked["fad"] is None or unmarked["fad"] is None else marked["fad"] - unmarked["fad"]
    out["kad_change"] = marked["kad"] - unmarked["kad"]
    return out


def _heldout_codes(run: Path, frames: int) -> list[np.ndarray]:
    """EnCodec codes of the held-out windows (tokenize stage), cut to ``frames``."""
    index_path = run / "tokens" / "index.jsonl"
    if not index_path.exists():
        return []
    out = []
    shards: dict[str, np.ndarray] = {}
    for item in read_jsonl(index_path):
        if item.get("split") == "valid" and item.get("kind") == "window":
            tid = str(item["track_id"])
            shard = shards.setdefault(tid, np.load(run / "tokens" / f"{tid}.npy", mmap_mode="r", allow_pickle=False))
            out.append(np.asarray(shard[int(item["row"])])[:, :frames])
    return out


def _code_diversity(run: Path, clips: list[GeneratedClip]) -> dict[str, Any]:
    frames = min(c.codes.shape[1] for c in clips)
    out: dict[str, Any] = {"generated": code_ngram_stats([c.codes for c in clips]), "frames": frames}
    held = _heldout_codes(run, frames)
    out["heldout_windows"] = code_ngram_stats(held) if held else None
    return out


def evaluate_run(run: Path, segment_rate: int, loudness_lufs: float, embeddings: list[Embedding],
                 n_boot: int) -> dict[str, Any]:
    """The evaluate stage's record (``eval/fad.json``); see the module docstring.

    Args:
        run: The run folder.
        segment_rate: The segment stage's sample rate (held-out track audio).
        loudness_lufs: The segment stage's loudness target, applied to every clip.
        embeddings: The embeddings to score with; the first gives the headline figures.
        n_boot: Bootstrap replicates of the intervals (0: none).

    Returns:
        The record: the headline embedding's fields at top level (``fad``, ``kad``, ``ci95``,
        ``kad_ci95``, ``train_clips_vs_ref``, ``diversity``, ``novelty`` …), ``by_embedding``,
        ``watermark_effect``, ``code_diversity`` and how the sets were prepared.
    """
    clips = load_generated(run)
    clip_s = float(np.median([c.unmarked.shape[0] / c.sample_rate for c in clips]))
    cat = _catalogue(run, segment_rate, clip_s, loudness_lufs)
    rate = clips[0].sample_rate
    gen_audio = [_normalised(c.unmarked, c.sample_rate, loudness_lufs) for c in clips]
    by_embedding: dict[str, dict[str, Any]] = {}
    effect: dict[str, Any] | None = None
    for i, emb in enumerate(embeddings):
        ref_units = [emb.embed(t, segment_rate) for t in cat.heldout_tracks]
        by_embedding[emb.name] = _embedding_report(emb, cat, gen_audio, rate, n_boot, ref_units)
        if i == 0 and any(c.watermarked for c in clips):
            effect = _watermark_effect(emb, clips, loudness_lufs, ref_units, by_embedding[emb.name])
    head = by_embedding[embeddings[0].name]
    return {
        **head,
        "reference": "held-out (valid) tracks of the catalogue",
        "generated": "unwatermarked audio (decoded from the kept codes)" if effect else "the generated files (no watermark)",
        "loudness_lufs": loudness_lufs,
        "clip_s": clip_s,
        "n_gen_files": len(clips),
        "n_heldout_tracks": len(cat.heldout_tracks),
        "n_heldout_clips": len(cat.heldout_clips),
        "n_train_windows": len(cat.train_windows),
        "by_embedding": by_embedding,
        "watermark_effect": effect,
        "code_diversity": _code_diversity(run, clips),
        "generated_files": [c.name for c in clips],
    }
