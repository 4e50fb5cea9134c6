"""A small run folder built directly (no ingest, segment or training) for the evaluate-stage tests.

Held-out and training tracks are synthetic tones, loudness-normalised and stored as the segment
stage stores them; ``generated/`` holds files with ``generated.jsonl`` rows in the generate
stage's format (or is filled by the real generate with the tiny preset).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from fad_synth import tones

from stylecraft.artifacts import sha256_file
from stylecraft.audio.loudness import normalize_gain
from stylecraft.config import load_recipe
from stylecraft.data.manifest import Track, Window, save_rows

SR = 32000  # the segment stage's default rate
LUFS = -16.0


def _track(seed: int, seconds: float) -> np.ndarray:
    audio = np.concatenate([tones(4.0, SR, seed * 100 + i)[:, 0] for i in range(int(np.ceil(seconds / 4.0)))])
    # A noise floor 50 dB down, as recordings have: pure tones leave mel bands empty, where the
    # 16-bit rounding of a file would decide the MFCCs.
    audio = audio[: int(seconds * SR)] + np.random.default_rng(seed).normal(scale=1e-3, size=int(seconds * SR))
    return normalize_gain(audio.astype(np.float32), SR, LUFS)[0]


def make_catalogue(run: Path, heldout: int = 2, train: int = 2, seconds: float = 60.0) -> None:
    """tracks.jsonl, audio/<id>.npy (int16, normalised) and windows.jsonl (10 s every 5 s, train tracks)."""
    (run / "audio").mkdir(parents=True, exist_ok=True)
    tracks, windows = [], []
    for i in range(heldout + train):
        split = "valid" if i < heldout else "train"
        tid = f"t{i:02d}"
        audio = _track(i + 1, seconds)
        np.save(run / "audio" / f"{tid}.npy", np.round(audio * 32767).astype(np.int16))
        tracks.append(Track(id=tid, path=f"/catalogue/{tid}.flac", sha256="0" * 64, sample_rate=SR, channels=1,
                            duration_s=seconds, split=split, loudness_lufs=LUFS))
        if split == "train":
            windows += [Window(id=f"{tid}-{k:04d}", track_id=tid, split=split, start_s=float(s), duration_s=10.0,
                               rms_db=-20.0, row=k) for k, s in enumerate(range(0, int(seconds) - 9, 5))]
    save_rows(run / "tracks.jsonl", tracks)
    save_rows(run / "windows.jsonl", windows)


def write_generated(run: Path, clips: list[np.ndarray], sample_rate: int = SR) -> None:
    """FLAC files and generate-stage rows for given clips (no watermark; random codes beside them)."""
    folder = run / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, clip in enumerate(clips):
        name = f"000-clip-s0-{i:02d}.flac"
        sf.write(folder / name, clip, sample_rate, subtype="PCM_16")
        codes = rng.integers(0, 2048, size=(4, int(clip.shape[0] / sample_rate * 50))).astype(np.int16)
        np.save(folder / name.replace(".flac", ".codes.npy"), codes)
        rows.append({"file": name, "sha256": sha256_file(folder / name), "prompt": "clip", "seed_frames": 0,
                     "codes": {"file": name.replace(".flac", ".codes.npy"),
                               "sha256": sha256_file(folder / name.replace(".flac", ".codes.npy")),
                               "shape": list(codes.shape)},
                     "watermark": {"method": None}, "sample_rate": sample_rate,
                     "duration_s": clip.shape[0] / sample_rate, "model": {"name": "none", "sha256": None}})
    (folder / "generated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def style_clips(n: int, seconds: float, seed: int = 50, gain_db: float = 0.0) -> list[np.ndarray]:
    """``n`` generated stand-ins in the catalogue's style, each at the catalogue's loudness plus ``gain_db``."""
    return [(_track(seed + i, seconds) * 10 ** (gain_db / 20)).astype(np.float32) for i in range(n)]


def evaluate_cfg(run: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_recipe(None, [f"run_dir={run}", "stages=[evaluate]", "evaluate.n_boot=30", *extra],
                       require_catalogue=False)


def read_result(run: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((run / "eval" / "fad.json").read_text())
