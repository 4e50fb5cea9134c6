"""Benchmark: wall time to score the same folders of real music with VGGish, stylecraft vs frechet-audio-distance.

Both score the same two folders of Wesnoth soundtrack tracks (OGG, 44.1 kHz stereo, Debian's
``wesnoth-1.16-music``) with the same VGGish weights (the full network at a fixed random init,
since the published weights cannot be downloaded here; the computation is the same), on CPU,
in the same run, with the same torch thread count. frechet-audio-distance 0.3.4 runs in the
reference venv (eval/parity/refenv.py); its time is measured inside that process from building
``FrechetAudioDistance`` to ``score`` returning, so interpreter start-up is not counted against it.
stylecraft's time runs from loading the weights to ``compute_fad`` returning, with no embedding
cache.

Usage::

    python eval/bench_fad.py [--threads 2] [--reps 1]   # writes eval/results/bench_fad.{json,md}
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "parity"))
from refenv import ROOT, run_worker  # noqa: E402

from stylecraft.artifacts import atomic_write_json, atomic_write_text  # noqa: E402
from stylecraft.evaluate.fad import compute_fad, environment_versions  # noqa: E402
from stylecraft.evaluate.vggish import VGGishEmbedding  # noqa: E402

WESNOTH = [Path(os.environ.get("WESNOTH_MUSIC", "/work/main/eval/data/wesnoth")), ROOT / "eval" / "data" / "wesnoth"]
SET_A = ["sad.ogg", "transience.ogg", "main_menu.ogg", "battle-epic.ogg", "revelation.ogg", "frantic-old.ogg"]
SET_B = ["love_theme.ogg", "underground.ogg", "elf-land.ogg", "victory2.ogg", "defeat2.ogg", "silence.ogg", "defeat.ogg"]
RESULTS = ROOT / "eval" / "results"
WORK = ROOT / "eval" / ".cache" / "bench_fad"


def music_dir() -> Path:
    for d in WESNOTH:
        if (d / SET_A[0]).is_file():
            return d
    raise SystemExit("Wesnoth music not found: apt-get download wesnoth-1.16-music && dpkg-deb -x <deb> <dir>; set WESNOTH_MUSIC")


def prepare() -> tuple[Path, Path, Path, float]:
    src = music_dir()
    total = 0.0
    for name, files in (("a", SET_A), ("b", SET_B)):
        d = WORK / name
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            link = d / f
            if not link.exists():
                link.symlink_to(src / f)
            total += sf.info(str(link)).duration
    weights = WORK / "vggish_random_seed0.pth"
    if not weights.exists():
        torch.save(VGGishEmbedding.preset("full", seed=0).net.state_dict(), weights)
    return WORK / "a", WORK / "b", weights, total


def run_ours(a: Path, b: Path, weights: Path, threads: int) -> tuple[float, float]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    emb = VGGishEmbedding.from_files(weights, device="cpu")
    fad = compute_fad(a, b, embedding=emb, workers=threads, progress=False)["fad"]
    return time.perf_counter() - t0, fad


def run_reference(a: Path, b: Path, weights: Path, threads: int) -> tuple[float, float, float]:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    ref = run_worker("vggish", {"weights": str(weights), "pca": None, "use_pca": False, "use_activation": False,
                                "background": str(a), "eval": str(b), "threads": threads, "load_workers": 8})
    return float(ref["fad_seconds"]), float(ref["fad"]), time.perf_counter() - t0


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    a, b, weights, audio_s = prepare()
    runs = []
    for rep in range(args.reps):
        ours_s, ours_fad = run_ours(a, b, weights, args.threads)
        ref_s, ref_fad, ref_wall = run_reference(a, b, weights, args.threads)
        runs.append({"rep": rep, "stylecraft_s": ours_s, "frechet_audio_distance_s": ref_s,
                     "frechet_audio_distance_process_s": ref_wall, "speedup": ref_s / ours_s,
                     "fad_stylecraft": ours_fad, "fad_frechet_audio_distance": ref_fad,
                     "fad_rel_diff": abs(ours_fad - ref_fad) / abs(ref_fad)})
        print(runs[-1], flush=True)
    result = {
        "embedding": "vggish (full network, random init seed 0; no PCA, no final ReLU)",
        "sets": {"a": SET_A, "b": SET_B}, "audio_seconds": audio_s, "threads": args.threads,
        "device": "cpu", "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores (shared)",
        "runs": runs, "versions": environment_versions(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "bench_fad.json", result)
    lines = [
        "# FAD benchmark: stylecraft vs frechet-audio-distance 0.3.4 (VGGish, CPU)",
        "",
        f"Same two folders of Wesnoth soundtrack OGGs ({len(SET_A)} + {len(SET_B)} tracks, {audio_s / 60:.1f} min of 44.1 kHz stereo),",
        f"same VGGish weights, {args.threads} torch threads each, same run, {result['machine']}.",
        "Times from loading the model to the FAD value; no embedding caches.",
        "",
        "| rep | stylecraft (s) | frechet-audio-distance (s) | speed-up | FAD stylecraft | FAD frechet-audio-distance | rel. diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['rep']} | {r['stylecraft_s']:.1f} | {r['frechet_audio_distance_s']:.1f} | {r['speedup']:.2f}x | "
                     f"{r['fad_stylecraft']:.9g} | {r['fad_frechet_audio_distance']:.9g} | {r['fad_rel_diff']:.1e} |")
    lines += ["", "No GPU was available to this run, so there is no GPU throughput figure.", ""]
    atomic_write_text(RESULTS / "bench_fad.md", "\n".join(lines))
    return result


if __name__ == "__main__":
    main()
