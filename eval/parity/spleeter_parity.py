"""Parity of stylecraft's Spleeter port with the official Spleeter 2.4.2, on the same checkpoints.

What it does
------------
1. Builds (once, cached in ``eval/.cache/envs/spleeter``) an isolated Python 3.11 environment with
   ``spleeter==2.4.2`` and its TensorFlow 2.12, using the constraints ``jax==0.4.13`` and
   ``grpcio<1.75``. Spleeter's audio adapter needs the ``ffmpeg`` binary (Debian package).
2. Synthesises a small multitrack dataset (vocals-like lead, drums, bass, chords; 14 s stereo
   mixtures at 44.1 kHz) and writes Spleeter's training CSVs.
3. For each model (``2stems`` and ``4stems`` by default, ``5stems`` on request), copies the
   packaged config (``spleeter/resources/<model>.json``), points it at the dataset and an absolute
   ``model_dir``, and lets ``spleeter train`` write an official-format checkpoint in a few steps.
   The checkpoint's batch-norm moving statistics are then randomised with TensorFlow's own saver
   (``spleeter_reference.py perturb``) so that every variable of the network matters.
4. Separates the same held-out mixtures (one 14 s, one 31 s that spans three 512-frame segments)
   with ``spleeter separate -p cfg.json`` (16-bit WAV, as users get them), with Spleeter's Python
   API (float32, no rounding), and with ``stylecraft.separate`` reading the same checkpoint
   directory without TensorFlow.
5. Reports per-stem SNR of stylecraft against each Spleeter output:
   ``10 log10(sum(ref^2) / sum((ref - ours)^2))``. Target: >= 60 dB on every stem.

Results go to ``eval/results/parity_spleeter.json`` and ``.md``.

Usage::

    .venv/bin/python eval/parity/spleeter_parity.py [--models 2stems 4stems] [--steps 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "eval" / ".cache"
ENV = CACHE / "envs" / "spleeter"
WORK = CACHE / "spleeter-parity"
RESULTS = ROOT / "eval" / "results"
SR = 44100
REFERENCE_PACKAGES = ["spleeter==2.4.2"]
REFERENCE_CONSTRAINTS = ["jax==0.4.13", "grpcio<1.75"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_reference_env() -> Path:
    """Create the Spleeter environment unless a complete one is cached; return its python."""
    python = ENV / "bin" / "python"
    marker = ENV / ".complete"
    if marker.exists():
        return python
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is required by spleeter's audio adapter: apt-get install -y ffmpeg")
    log(f"building the reference environment in {ENV}")
    if ENV.exists():
        shutil.rmtree(ENV)
    ENV.parent.mkdir(parents=True, exist_ok=True)
    interpreter = shutil.which("python3.11") or sys.executable
    subprocess.run([interpreter, "-m", "venv", str(ENV)], check=True)
    constraints = ENV / "constraints.txt"
    constraints.write_text("\n".join(REFERENCE_CONSTRAINTS) + "\n")
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(constraints), *REFERENCE_PACKAGES], check=True)
    marker.write_text("ok\n")
    return python


# ------------------------------------------------------------------------------------------
# Synthetic multitrack audio: four stems with distinct spectra, so that training moves the
# weights in a meaningful direction and the masks are far from 0.5 everywhere.
# ------------------------------------------------------------------------------------------


def synth_stems(seconds: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out: dict[str, np.ndarray] = {}
    # "vocals": a gliding harmonic voice with vibrato and syllable envelopes.
    f0 = 220.0 * 2 ** (rng.integers(-3, 4) / 12) * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))
    f0 *= 2 ** (np.round(4 * np.sin(2 * np.pi * t / rng.uniform(2.5, 4.0))) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum((0.5 / h) * np.sin(h * phase) for h in range(1, 9))
    voice *= 0.5 + 0.5 * np.clip(np.sin(2 * np.pi * t * rng.uniform(1.5, 2.5)), 0, 1)
    out["vocals"] = voice
    # "drums": decaying noise bursts (snare) and low thumps (kick) on a grid.
    drums = np.zeros(n)
    beat = int(SR * 60 / rng.uniform(90, 130))
    hit = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-hit * 30)) * hit) * np.exp(-hit * 12)
    snare = rng.standard_normal(hit.size) * np.exp(-hit * 25) * 0.6
    for i, start in enumerate(range(0, n - hit.size, beat)):
        drums[start : start + hit.size] += kick if i % 2 == 0 else snare
    out["drums"] = drums
    # "bass": a low sawtooth-like line.
    notes = 55.0 * 2 ** (rng.choice([0, 3, 5, 7, 10], size=int(seconds) + 1) / 12)
    fb = np.repeat(notes, SR)[:n]
    bphase = 2 * np.pi * np.cumsum(fb) / SR
    out["bass"] = 0.6 * sum(((-1) ** (h + 1)) * np.sin(h * bphase) / h for h in range(1, 6))
    # "other": slow chords with a bright timbre.
    chord = 261.6 * 2 ** (np.array([0, 4, 7, 11]) / 12) * 2 ** (rng.integers(-5, 5) / 12)
    other = sum(
        np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * (0.3 + 0.2 * np.sin(3 * np.pi * f * t / 997))
        for f in chord
    )
    out["other"] = 0.25 * other * (0.6 + 0.4 * np.sin(2 * np.pi * t / 4.0))
    stereo: dict[str, np.ndarray] = {}
    for k, (name, mono) in enumerate(out.items()):
        pan = 0.3 + 0.4 * ((seed + k) % 3) / 2
        sig = 0.2 * mono / (np.abs(mono).max() + 1e-9)
        stereo[name] = np.stack([sig * (1 - pan), sig * pan], axis=1).astype(np.float32)
    return stereo


STEMS_OF = {
    "2stems": ["vocals", "accompaniment"],
    "4stems": ["vocals", "drums", "bass", "other"],
    "5stems": ["vocals", "piano", "drums", "bass", "other"],
}


def model_stems(model: str, stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if model == "2stems":
        acc = stems["drums"] + stems["bass"] + stems["other"]
        return {"vocals": stems["vocals"], "accompaniment": acc}
    if model == "5stems":
        piano = 0.5 * stems["other"][::-1].copy()
        return {
            "vocals": stems["vocals"],
            "piano": piano,
            "drums": stems["drums"],
            "bass": stems["bass"],
            "other": stems["other"],
        }
    return dict(stems)


def write_dataset(model: str, root: Path, n_songs: int = 3, seconds: float = 14.0) -> None:
    rows = []
    for song in range(n_songs):
        stems = model_stems(model, synth_stems(seconds, seed=100 + song))
        mix = sum(stems.values())
        folder = root / f"song{song}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / "mix.wav", mix, SR, subtype="FLOAT")
        row = {"mix_path": f"song{song}/mix.wav"}
        for name, audio in stems.items():
            sf.write(folder / f"{name}.wav", audio, SR, subtype="FLOAT")
            row[f"{name}_path"] = f"song{song}/{name}.wav"
        row["duration"] = f"{seconds}"
        rows.append(row)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(r[h] for h in header) for r in rows]
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    (root / "valid.csv").write_text("\n".join(lines[:2]) + "\n")


def spleeter_cli(python: Path) -> list[str]:
    return [str(python), "-m", "spleeter"]


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, env=env, text=True, capture_output=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd[:6])} ...")
    return proc


def train_reference(python: Path, model: str, steps: int) -> tuple[Path, Path, float]:
    """Train an official-format checkpoint; return (model_dir, config path, seconds)."""
    base = WORK / model
    model_dir = base / "model"
    config_path = base / "config.json"
    done = base / ".trained"
    if done.exists():
        return model_dir, config_path, float(done.read_text())
    if base.exists():
        shutil.rmtree(base)
    data = base / "data"
    write_dataset(model, data)
    packaged = run(
        [
            str(python),
            "-c",
            f"import spleeter.resources as r, os; print(os.path.join(os.path.dirname(r.__file__), '{model}.json'))",
        ]
    ).stdout.strip()
    config = json.loads(Path(packaged).read_text())
    config.update(
        train_csv=str(data / "train.csv"),
        validation_csv=str(data / "valid.csv"),
        model_dir=str(model_dir),
        training_cache=str(base / "cache" / "train"),
        validation_cache=str(base / "cache" / "valid"),
        train_max_steps=steps,
        save_checkpoints_steps=steps,
        throttle_secs=1,
        chunk_duration=12.0,
        n_chunks_per_song=2,
        batch_size=2,
        learning_rate=1e-3,
    )
    config_path.write_text(json.dumps(config, indent=2))
    log(f"spleeter train {model} ({steps} steps)")
    t0 = time.perf_counter()
    run([*spleeter_cli(python), "train", "-p", str(config_path), "-d", str(data)])
    seconds = time.perf_counter() - t0
    perturbed = run(
        [str(python), str(Path(__file__).with_name("spleeter_reference.py")), "perturb", str(model_dir), "7"]
    ).stdout
    log(f"trained in {seconds:.0f} s; {perturbed.strip()}")
    done.write_text(f"{seconds}")
    return model_dir, config_path, seconds


def test_mixtures() -> dict[str, np.ndarray]:
    out = {}
    for name, seconds, seed in (("mix14s", 14.0, 900), ("mix31s", 31.0, 901)):
        stems = synth_stems(seconds, seed)
        out[name] = sum(stems.values()).astype(np.float32)
    return out


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    err = ref - est.astype(np.float64)
    num = float(np.sum(ref**2))
    den = float(np.sum(err**2))
    if den == 0.0:
        return float("inf")
    return 10.0 * np.log10(num / den)


def check_reader(python: Path, model_dir: Path) -> dict[str, object]:
    """Every variable read by stylecraft's reader against TensorFlow's own checkpoint reader."""
    from stylecraft.separate.tf_checkpoint import TFCheckpoint

    out = model_dir.parent / "tf_variables.json"
    run(
        [
            str(python),
            str(Path(__file__).with_name("spleeter_reference.py")),
            "variables",
            str(model_dir),
            str(out),
        ]
    )
    reference = json.loads(out.read_text())
    ours = TFCheckpoint(model_dir)
    mismatched = []
    for name, ref in reference.items():
        value = ours.read(name)  # bytes compared exactly: sha256 of the little-endian C-order data
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        if list(value.shape) != ref["shape"] or str(value.dtype) != ref["dtype"] or digest != ref["sha256"]:
            mismatched.append(name)
    return {
        "variables": len(reference),
        "same_names": sorted(reference) == ours.names(),
        "mismatched": mismatched,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["2stems", "4stems"], choices=sorted(STEMS_OF))
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()

    from stylecraft.separate.spleeter import SpleeterSeparator

    python = ensure_reference_env()
    WORK.mkdir(parents=True, exist_ok=True)
    mixtures = test_mixtures()
    results: dict[str, object] = {}
    for model in args.models:
        model_dir, config_path, train_s = train_reference(python, model, args.steps)
        per_model: dict[str, object] = {"train_seconds": round(train_s, 1), "mixtures": {}}
        ours = SpleeterSeparator.from_checkpoint(model_dir, model=model)
        per_model["reader"] = check_reader(python, model_dir)
        # Negative control: the same port with the batch-norm statistics that `spleeter train`
        # left (mean 0, variance 1) instead of the checkpoint's. It must miss the target by far,
        # or this comparison could not tell a wrong port from a right one.
        control = SpleeterSeparator.from_checkpoint(model_dir, model=model)
        with torch.no_grad():
            for name, buf in control.net.named_buffers():
                if name.endswith("running_mean"):
                    buf.zero_()
                elif name.endswith("running_var"):
                    buf.fill_(1.0)
        for mix_name, mix in mixtures.items():
            folder = WORK / model / "sep" / mix_name
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            wav = folder / f"{mix_name}.wav"
            sf.write(wav, mix, SR, subtype="FLOAT")
            np.save(folder / "mix.npy", mix)
            # Official CLI: 16-bit WAV per stem, as a user gets them.
            run(
                [
                    *spleeter_cli(python),
                    "separate",
                    "-p",
                    str(config_path),
                    "-o",
                    str(folder / "cli"),
                    str(wav),
                ]
            )
            # Official Python API: float32 stems.
            run(
                [
                    str(python),
                    str(Path(__file__).with_name("spleeter_reference.py")),
                    "separate",
                    str(config_path),
                    str(folder / "mix.npy"),
                    str(folder / "api.npz"),
                ]
            )
            api = np.load(folder / "api.npz")
            mine = ours.separate(mix, SR)
            wrong = control.separate(mix, SR)
            row: dict[str, dict[str, float]] = {}
            for stem in STEMS_OF[model]:
                cli_audio, cli_sr = sf.read(
                    folder / "cli" / mix_name / f"{stem}.wav", dtype="float32", always_2d=True
                )
                assert cli_sr == SR
                row[stem] = {
                    "snr_vs_api_float32_db": round(snr_db(api[stem], mine[stem]), 2),
                    "snr_vs_cli_wav16_db": round(snr_db(cli_audio, mine[stem]), 2),
                    "snr_cli_wav16_vs_api_db": round(snr_db(api[stem], cli_audio), 2),
                    "max_abs_diff_vs_api": float(np.max(np.abs(api[stem] - mine[stem]))),
                    "control_snr_db": round(snr_db(api[stem], wrong[stem]), 2),
                    "stem_rms": float(np.sqrt(np.mean(api[stem].astype(np.float64) ** 2))),
                }
                log(f"{model} {mix_name} {stem}: {row[stem]}")
            per_model["mixtures"][mix_name] = row  # type: ignore[index]
        results[model] = per_model
    write_results(results, args)


def write_results(results: dict[str, object], args: argparse.Namespace) -> None:
    import stylecraft

    worst = float(
        min(
            v["snr_vs_api_float32_db"]
            for m in results.values()
            for mix in m["mixtures"].values()  # type: ignore[index]
            for v in mix.values()
        )
    )
    payload = {
        "date": dt.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": {
            "stylecraft": stylecraft.__version__,
            "torch": torch.__version__,
            "reference": "spleeter 2.4.2 / tensorflow 2.12.1",
        },
        "target_db": 60.0,
        "worst_snr_vs_api_db": worst,
        "passed": bool(worst >= 60.0),
        "train_steps": args.steps,
        "models": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parity_spleeter.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Spleeter parity",
        "",
        f"stylecraft's PyTorch port against Spleeter 2.4.2 (TensorFlow 2.12.1) on checkpoints written by `spleeter train`"
        f" ({args.steps} steps on synthesised multitrack audio, batch-norm statistics randomised). {payload['date']}, {platform.platform()}.",
        "",
        "SNR in dB of stylecraft's stem against Spleeter's (higher is closer; target >= 60 dB). `api`: Spleeter's Python API, float32."
        " `cli`: `spleeter separate`, 16-bit WAV files (their rounding bounds this column). `cli vs api`: Spleeter's two outputs against each other.",
        "",
        "| model | mixture | stem | vs api (float32) | vs cli (wav16) | cli vs api | max abs diff vs api | control |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, m in results.items():
        for mix, row in m["mixtures"].items():  # type: ignore[index]
            for stem, v in row.items():
                lines.append(
                    f"| {model} | {mix} | {stem} | {v['snr_vs_api_float32_db']:.1f} | {v['snr_vs_cli_wav16_db']:.1f} | {v['snr_cli_wav16_vs_api_db']:.1f} | {v['max_abs_diff_vs_api']:.2e} | {v['control_snr_db']:.1f} |"
                )
    lines += [
        "",
        "`control`: the same port with the batch-norm statistics reset to what `spleeter train` left (mean 0, variance 1):"
        " a deliberately wrong model, to show the comparison can fail.",
    ]
    for model, m in results.items():
        r = m["reader"]  # type: ignore[index]
        lines.append(
            f"- {model}: stylecraft's TF-checkpoint reader vs TensorFlow's on all {r['variables']} variables: "
            f"same names {r['same_names']}, variables whose bytes differ: {len(r['mismatched'])}."
        )
    lines += [
        "",
        f"Worst SNR against the float32 reference: {worst:.1f} dB ({'meets' if worst >= 60 else 'misses'} the 60 dB target).",
    ]
    (RESULTS / "parity_spleeter.md").write_text("\n".join(lines) + "\n")
    log(f"worst {worst:.1f} dB -> {RESULTS / 'parity_spleeter.md'}")


if __name__ == "__main__":
    main()
