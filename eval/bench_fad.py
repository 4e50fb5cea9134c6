"""Benchmark: wall time to score the same folders of real music with VGGish, stylecraft vs frechet-audio-distance.

Both score the same two folders of Wesnoth soundtrack tracks (OGG, 44.1 kHz stereo, Debian's
``wesnoth-1.16-music``) with the same VGGish weights (the full network at a fixed random init,
since the published weights cannot be downloaded here; the computation is the same), on CPU,
in the same run, with the same torch thread count. frechet-audio-distance 0.3.4 runs in the
reference venv (eval/parity/refenv.py); its time is measured inside that process from building
``FrechetAudioDistance`` to ``score`` returning, so interpreter start-up is not counted against it.
stylecraft's time runs from loading the weights to ``compute_fad`` returning, with no embedding
cache.
Reps alternate which tool runs first, and the 1-minute load average is recorded around every
run (the machine is shared). The run fails if the two FAD values differ by more than 1e-4
relative (the parity requirement). A serial stage breakdown of stylecraft's side (decode, mono
mix, resampling, log-mel, network) on the same files says where its time goes.

Usage::

    python eval/bench_fad.py [--threads 2] [--reps 2]   # writes eval/results/bench_fad.{json,md}
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
from stylecraft.evaluate.embeddings.base import to_mono_float  # noqa: E402
from stylecraft.evaluate.embeddings.vggish import VGGishEmbedding, _resample_to_16k, log_mel_examples  # noqa: E402
from stylecraft.evaluate.fad import (  # noqa: E402
    compute_fad,
    environment_versions,
    load_audio_for_embedding,
)

PARITY_RTOL = 1e-4

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


def run_ours(a: Path, b: Path, weights: Path, threads: int) -> tuple[float, float, float]:
    """``(wall s, CPU s of all threads, FAD)``."""
    torch.set_num_threads(threads)
    t0, c0 = time.perf_counter(), time.process_time()
    emb = VGGishEmbedding.from_files(weights, device="cpu")
    fad = compute_fad(a, b, embedding=emb, workers=threads, progress=False)["fad"]
    return time.perf_counter() - t0, time.process_time() - c0, fad


def run_reference(a: Path, b: Path, weights: Path, threads: int) -> tuple[float, float, float, float]:
    """``(wall s, CPU s of all threads, FAD, wall s of the whole process)``."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    ref = run_worker("vggish", {"weights": str(weights), "pca": None, "use_pca": False, "use_activation": False,
                                "background": str(a), "eval": str(b), "threads": threads, "load_workers": 8})
    return float(ref["fad_seconds"]), float(ref["fad_cpu_seconds"]), float(ref["fad"]), time.perf_counter() - t0


def stage_breakdown(a: Path, b: Path, weights: Path, threads: int) -> dict[str, float]:
    """Seconds per stage of stylecraft's VGGish path, run serially on every file of both sets."""
    import numpy as np

    torch.set_num_threads(threads)
    emb = VGGishEmbedding.from_files(weights, device="cpu")
    stages = dict.fromkeys(("decode", "mono", "resample", "log_mel", "network"), 0.0)
    examples = []
    for path in sorted(a.iterdir()) + sorted(b.iterdir()):
        t = time.perf_counter()
        audio, sr = load_audio_for_embedding(path)
        stages["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        mono = to_mono_float(audio, sr)
        stages["mono"] += time.perf_counter() - t
        t = time.perf_counter()
        mono16 = _resample_to_16k(mono, sr)
        stages["resample"] += time.perf_counter() - t
        t = time.perf_counter()
        examples.append(log_mel_examples(mono16))
        stages["log_mel"] += time.perf_counter() - t
    t = time.perf_counter()
    emb.embed_examples(np.concatenate(examples))
    stages["network"] = time.perf_counter() - t
    return stages


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    a, b, weights, audio_s = prepare()
    runs = []
    for rep in range(args.reps):
        load: dict[str, float] = {}
        for tool in ("stylecraft", "frechet-audio-distance")[:: 1 if rep % 2 == 0 else -1]:
            load[f"{tool}_before"] = os.getloadavg()[0]
            if tool == "stylecraft":
                ours_s, ours_cpu, ours_fad = run_ours(a, b, weights, args.threads)
            else:
                ref_s, ref_cpu, ref_fad, ref_wall = run_reference(a, b, weights, args.threads)
            load[f"{tool}_after"] = os.getloadavg()[0]
        runs.append({"rep": rep, "first": "stylecraft" if rep % 2 == 0 else "frechet-audio-distance",
                     "load_1min": load, "stylecraft_s": ours_s, "frechet_audio_distance_s": ref_s,
                     "frechet_audio_distance_process_s": ref_wall, "speedup": ref_s / ours_s,
                     "stylecraft_cpu_s": ours_cpu, "frechet_audio_distance_cpu_s": ref_cpu, "cpu_speedup": ref_cpu / ours_cpu,
                     "fad_stylecraft": ours_fad, "fad_frechet_audio_distance": ref_fad,
                     "fad_rel_diff": abs(ours_fad - ref_fad) / abs(ref_fad)})
        print(runs[-1], flush=True)
        if runs[-1]["fad_rel_diff"] > PARITY_RTOL:
            raise SystemExit(f"parity failed: FAD {ours_fad!r} vs frechet-audio-distance {ref_fad!r}")
    stages = stage_breakdown(a, b, weights, args.threads)
    result = {
        "embedding": "vggish (full network, random init seed 0; no PCA, no final ReLU)",
        "sets": {"a": SET_A, "b": SET_B}, "audio_seconds": audio_s, "threads": args.threads,
        "device": "cpu", "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores (shared)",
        "runs": runs, "stage_breakdown_s": stages, "parity_rtol": PARITY_RTOL,
        "cpu_convolution": VGGishEmbedding.from_files(weights, device="cpu").settings()["cpu_convolution"],
        "versions": environment_versions(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "bench_fad.json", result)
    lines = [
        "# FAD benchmark: stylecraft vs frechet-audio-distance 0.3.4 (VGGish, CPU)",
        "",
        f"Same two folders of Wesnoth soundtrack OGGs ({len(SET_A)} + {len(SET_B)} tracks, {audio_s / 60:.1f} min of 44.1 kHz stereo),",
        f"same VGGish weights, same run, {result['machine']}. frechet-audio-distance: {args.threads} torch threads.",
        f"stylecraft: `workers={args.threads}`, i.e. front ends in {args.threads} threads and, on CPU, network batches in {args.threads} threads of one torch thread each.",
        "Times from loading the model to the FAD value; no embedding caches. Reps alternate which tool runs first;",
        f"load is the 1-minute load average before/after each tool's run. CPU convolutions: {result['cpu_convolution']}.",
        "CPU s: CPU time of all of the tool's threads over the same span (less sensitive than wall time to other",
        "processes on the shared cores, though threads spinning while they wait for a core still count).",
        "",
        "| rep | first | stylecraft (s) | load | frechet-audio-distance (s) | load | speed-up | CPU s stylecraft / f-a-d | CPU speed-up | FAD stylecraft | FAD frechet-audio-distance | rel. diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        ld = r["load_1min"]
        lines.append(f"| {r['rep']} | {r['first']} | {r['stylecraft_s']:.1f} | {ld['stylecraft_before']:.1f}/{ld['stylecraft_after']:.1f} | "
                     f"{r['frechet_audio_distance_s']:.1f} | {ld['frechet-audio-distance_before']:.1f}/{ld['frechet-audio-distance_after']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['stylecraft_cpu_s']:.1f} / {r['frechet_audio_distance_cpu_s']:.1f} | {r['cpu_speedup']:.2f}x | {r['fad_stylecraft']:.9g} | {r['fad_frechet_audio_distance']:.9g} | {r['fad_rel_diff']:.1e} |")
    total = sum(stages.values())
    lines += ["", f"Where stylecraft's time goes (serial, same files; the network in one call with {args.threads} torch threads): "
              + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in stages.items()) + "."]
    lines += ["", "No GPU was available to this run, so there is no GPU throughput figure.", ""]
    atomic_write_text(RESULTS / "bench_fad.md", "\n".join(lines))
    return result


if __name__ == "__main__":
    main()
