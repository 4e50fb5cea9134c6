"""Separation speed and memory: stylecraft's Spleeter port against the official `spleeter separate`.

What it measures
----------------
* **Realtime factor on CPU**: seconds of input audio per second of wall time, for
  ``spleeter separate -p cfg.json`` (Spleeter 2.4.2, TensorFlow 2.12, in its isolated environment)
  and ``stylecraft separate --model spleeter:4stems --checkpoint DIR`` on the same files with the
  same 4-stem checkpoint, both writing WAV stems (stylecraft with ``--no-plot``: Spleeter draws no
  pictures; ``stems.png`` costs about 1 s per file). Each command is one process for all files
  (model load and startup included, as a user runs it). The two tools alternate, ``--reps``
  times each, and the best wall time of each is kept, so that load from other processes on a
  shared machine hurts both alike. Both decode the OGG files themselves (ffmpeg / libsndfile).
* **Agreement on real music**: SNR of stylecraft's stems against Spleeter's 16-bit WAV stems.
* **Peak memory on a 60-minute file** (``--long``): peak RSS of ``stylecraft separate`` on one
  hour of concatenated tracks, and of ``spleeter separate`` on the same file, which by default
  reads only its first 600 s.
* **GPU** (``--gpu``): realtime factor of the 4-stem model on CUDA, where one is present.

The checkpoint is the full-size official 4-stem architecture written by ``spleeter train`` in
eval/parity/spleeter_parity.py (the released weights need GitHub, which this build machine cannot
reach; speed and memory do not depend on the weights' values). Results go to
``eval/results/bench_separation.json`` and ``.md``.

Usage::

    .venv/bin/python eval/bench_separation.py [--tracks N] [--reps 2] [--long] [--gpu]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "eval" / "parity"))
import spleeter_parity as parity  # noqa: E402

WORK = ROOT / "eval" / ".cache" / "bench-separation"
RESULTS = ROOT / "eval" / "results"
MUSIC = ROOT / "eval" / "data" / "wesnoth"
STYLECRAFT = [str(ROOT / ".venv" / "bin" / "stylecraft")] if (ROOT / ".venv" / "bin" / "stylecraft").exists() else [sys.executable, "-m", "stylecraft"]


def ensure_music() -> list[Path]:
    if not MUSIC.is_dir() or not list(MUSIC.glob("*.ogg")):
        sys.path.insert(0, str(ROOT / "eval"))
        import bench_prep

        bench_prep.fetch_wesnoth(MUSIC)
    return sorted(MUSIC.glob("*.ogg"))


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Run a command; return (wall seconds, child CPU seconds, peak RSS in KB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"failed: {' '.join(cmd[:4])} ...")
    peak_kb = int(proc.stderr.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak_kb


def spleeter_cmd(python: Path, config: Path, out: Path, files: list[Path], duration: float | None = None) -> list[str]:
    cmd = [str(python), "-m", "spleeter", "separate", "-p", str(config), "-o", str(out), "-c", "wav"]
    if duration is not None:
        cmd += ["-d", str(duration)]
    return cmd + [str(f) for f in files]


def stylecraft_cmd(model_dir: Path, out: Path, files: list[Path], device: str = "cpu") -> list[str]:
    return [*STYLECRAFT, "separate", *map(str, files), "--model", "spleeter:4stems", "--checkpoint", str(model_dir), "--out", str(out), "--format", "wav", "--device", device, "--no-plot"]


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    ref64 = ref.astype(np.float64)
    return float(10 * np.log10(np.sum(ref64**2) / max(np.sum((ref64 - est) ** 2), 1e-30)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=2, help="number of Wesnoth tracks (shortest over 60 s first)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--long", action="store_true", help="also measure peak memory on a 60-minute file")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--no-speed", action="store_true", help="skip the CPU comparison (keep its previous results)")
    args = ap.parse_args()

    python = parity.ensure_reference_env()
    model_dir, config, _ = parity.train_reference(python, "4stems", 4)
    music = [f for f in ensure_music() if sf.info(str(f)).duration >= 60]
    music.sort(key=lambda f: sf.info(str(f)).duration)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", STYLECRAFT_PROGRESS="0")
    previous = RESULTS / "bench_separation.json"
    result: dict[str, object] = json.loads(previous.read_text()) if previous.exists() else {}
    if not args.no_speed:
        result.update(speed(python, config, model_dir, music[: args.tracks], args.reps, env))
        result["versions"] = versions()
    if args.long:
        result["long_file"] = long_file(python, config, model_dir, music, env)
    if args.gpu:
        result["gpu"] = gpu_rtf(model_dir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_separation.json").write_text(json.dumps(result, indent=2) + "\n")
    write_md(result)


def speed(python: Path, config: Path, model_dir: Path, files: list[Path], reps: int, env: dict[str, str]) -> dict[str, object]:
    seconds = sum(sf.info(str(f)).duration for f in files)
    WORK.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, float]]] = {"spleeter": [], "stylecraft": []}
    for rep in range(reps):
        for tool in ("spleeter", "stylecraft"):
            out = WORK / f"{tool}-out"
            shutil.rmtree(out, ignore_errors=True)
            cmd = spleeter_cmd(python, config, out, files) if tool == "spleeter" else stylecraft_cmd(model_dir, out, files)
            wall, cpu, peak = timed(cmd, env)
            runs[tool].append({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak / 1024, 1)})
            print(f"rep {rep} {tool}: {wall:.1f} s wall, {cpu:.1f} s CPU, realtime x{seconds / wall:.2f}, peak {peak / 1024:.0f} MB", flush=True)
    best = {tool: min(r["wall_s"] for r in rs) for tool, rs in runs.items()}
    agreement = {}
    for f in files:
        for stem in ("vocals", "drums", "bass", "other"):
            ref, _ = sf.read(WORK / "spleeter-out" / f.stem / f"{stem}.wav", dtype="float32", always_2d=True)
            ours, _ = sf.read(WORK / "stylecraft-out" / f.stem / f"{stem}.wav", dtype="float32", always_2d=True)
            n = min(len(ref), len(ours))
            agreement[f"{f.stem}/{stem}"] = round(snr_db(ref[:n], ours[:n]), 2)
    return {
        "date": dt.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "files": [f.name for f in files],
        "audio_seconds": round(seconds, 1),
        "runs": runs,
        "realtime_factor": {tool: round(seconds / w, 2) for tool, w in best.items()},
        "speedup": round(best["spleeter"] / best["stylecraft"], 2),
        "snr_vs_spleeter_wav16_db": agreement,
    }


def versions() -> dict[str, str]:
    import torch

    import stylecraft

    return {
        "stylecraft": stylecraft.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "reference": "spleeter 2.4.2, tensorflow 2.12.1 (eval/.cache/envs/spleeter)",
    }


def long_file(python: Path, config: Path, model_dir: Path, music: list[Path], env: dict[str, str]) -> dict[str, object]:
    path = WORK / "one-hour.flac"
    target = 3600 * 44100
    if not path.exists() or sf.info(str(path)).frames != target:
        written = 0
        with sf.SoundFile(str(path), "w", samplerate=44100, channels=2, subtype="PCM_16") as out:
            while written < target:
                for f in music:
                    for block in sf.blocks(str(f), blocksize=44100 * 30, dtype="float32", always_2d=True):
                        block = block[: target - written]
                        out.write(block)
                        written += len(block)
                        if written >= target:
                            break
                    if written >= target:
                        break
    out = WORK / "long-out"
    shutil.rmtree(out, ignore_errors=True)
    wall, cpu, peak = timed(stylecraft_cmd(model_dir, out, [path]), env)
    info = sf.info(str(out / "one-hour" / "vocals.wav"))
    print(f"60-minute file: stylecraft {wall:.0f} s, peak {peak / 1024:.0f} MB, output {info.duration:.1f} s", flush=True)
    sp_out = WORK / "long-spleeter"
    shutil.rmtree(sp_out, ignore_errors=True)
    s_wall, _, s_peak = timed(spleeter_cmd(python, config, sp_out, [path]), env)
    s_info = sf.info(str(sp_out / "one-hour" / "vocals.wav"))
    print(f"60-minute file: spleeter {s_wall:.0f} s, peak {s_peak / 1024:.0f} MB, output {s_info.duration:.1f} s", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(sp_out, ignore_errors=True)
    return {
        "input_s": 3600.0,
        "stylecraft": {"wall_s": round(wall, 1), "peak_rss_mb": round(peak / 1024, 1), "output_s": round(info.duration, 1)},
        "spleeter_default": {"wall_s": round(s_wall, 1), "peak_rss_mb": round(s_peak / 1024, 1), "output_s": round(s_info.duration, 1)},
    }


def gpu_rtf(model_dir: Path) -> dict[str, object]:
    import torch

    from stylecraft.separate.spleeter import SpleeterSeparator

    if not torch.cuda.is_available():
        return {"available": False}
    sep = SpleeterSeparator.from_checkpoint(model_dir, model="4stems", device="cuda", batch_segments=16)
    x = (0.1 * np.random.default_rng(0).standard_normal((44100 * 600, 2))).astype(np.float32)
    sep.separate(x[: 44100 * 30], 44100)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    sep.separate(x, 44100)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"available": True, "device": torch.cuda.get_device_name(), "audio_s": 600, "wall_s": round(wall, 2), "realtime_factor": round(600 / wall, 1)}


def write_md(r: dict[str, object]) -> None:
    rtf = r["realtime_factor"]
    lines = [
        "# Separation benchmark",
        "",
        f"{r['date']}, {r['machine']['platform']}, {r['machine']['cpus']} CPUs (load average at the end: "  # type: ignore[index]
        f"{', '.join(f'{v:.1f}' for v in r['machine']['load_avg_at_end'])}).",  # type: ignore[index]
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items()) + ".",  # type: ignore[attr-defined]
        "",
        f"Files: {', '.join(r['files'])} ({r['audio_seconds']} s of audio), 4-stem model, WAV output (stylecraft with --no-plot), CPU, one process per tool"  # type: ignore[arg-type]
        " for all files; best of the alternating runs.",
        "",
        "| tool | best wall (s) | realtime factor | runs (wall s / CPU s / peak MB) |",
        "|---|---|---|---|",
    ]
    for tool in ("spleeter", "stylecraft"):
        runs = r["runs"][tool]  # type: ignore[index]
        desc = "; ".join(f"{x['wall_s']} / {x['cpu_s']} / {x['peak_rss_mb']:.0f}" for x in runs)
        lines.append(f"| {tool} | {min(x['wall_s'] for x in runs)} | {rtf[tool]} | {desc} |")  # type: ignore[index]
    lines += ["", f"**stylecraft is {r['speedup']}x faster than `spleeter separate`** (target >= 1.5x).", ""]
    snr = r["snr_vs_spleeter_wav16_db"]
    lines.append(
        f"Agreement on these real tracks: SNR of stylecraft's stems against Spleeter's 16-bit WAVs, min {min(snr.values()):.1f} dB,"  # type: ignore[attr-defined]
        f" max {max(snr.values()):.1f} dB over {len(snr)} stems (16-bit rounding bounds this; see parity_spleeter.md for float32)."  # type: ignore[arg-type]
    )
    if "long_file" in r:
        lf = r["long_file"]
        lines += [
            "",
            "## 60-minute file",
            "",
            f"- stylecraft: peak RSS {lf['stylecraft']['peak_rss_mb']:.0f} MB, {lf['stylecraft']['wall_s']} s, stems of {lf['stylecraft']['output_s']} s (the whole hour).",  # type: ignore[index]
            f"- spleeter separate (defaults): peak RSS {lf['spleeter_default']['peak_rss_mb']:.0f} MB, {lf['spleeter_default']['wall_s']} s,"  # type: ignore[index]
            f" stems of {lf['spleeter_default']['output_s']} s (it silently keeps the first 600 s).",  # type: ignore[index]
        ]
        if lf.get("note"):  # type: ignore[attr-defined]
            lines += [f"- {lf['note']}"]  # type: ignore[index]
    gpu = r.get("gpu")
    lines += ["", "## GPU", ""]
    if gpu and gpu.get("available"):  # type: ignore[attr-defined]
        lines.append(f"{gpu['device']}: 600 s in {gpu['wall_s']} s, realtime x{gpu['realtime_factor']}.")  # type: ignore[index]
    else:
        lines.append("No GPU was available for this run.")
    (RESULTS / "bench_separation.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "bench_separation.md").read_text())


if __name__ == "__main__":
    main()
