"""Build (once) and run the isolated reference environment for the FAD parity suites.

frechet-audio-distance 0.3.4, fadtk 1.1.0, torchvggish and encodec pin or import stacks that
must not enter stylecraft's environment (torchaudio, laion_clap, old numpy). They are installed
with ``--no-deps`` into a Python 3.11 venv under ``eval/.cache/envs/fad-ref`` together with the
few libraries their code paths need; heavy imports they never use on these paths are stubbed
in the reference process (see ``eval/parity/ref_worker.py``).

Usage::

    python eval/parity/refenv.py          # build the venv if missing, print its python
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = ROOT / "eval" / ".cache" / "envs" / "fad-ref"
WORKER = Path(__file__).with_name("ref_worker.py")

# torch first and pinned, so nothing later can pull an unpinned (CUDA) torch.
TORCH = "torch==2.13.0"
NO_DEPS = [
    "frechet-audio-distance==0.3.4",
    "fadtk==1.1.0",
    "torchvggish==0.2",
    "encodec==0.1.1",
    "resampy==0.4.3",
    "hypy_utils==1.0.29",
]
# What those packages' Fréchet, VGGish, EnCodec and CLAP code paths import at run time.
WITH_DEPS = ["numpy", "scipy", "soundfile", "numba", "tqdm", "einops", "librosa", "transformers==5.23.0"]
STAMP = {"torch": TORCH, "no_deps": NO_DEPS, "with_deps": WITH_DEPS, "python": "3.11"}


def python_exe() -> Path:
    """Path of the reference venv's interpreter (may not exist yet)."""
    return ENV_DIR / "bin" / "python"


def ensure_env(python: str | None = None) -> Path:
    """Create the reference venv unless a complete one with the same package list exists.

    Args:
        python: Interpreter used to create the venv (default: ``python3.11`` on PATH).

    Returns:
        The venv's python executable.
    """
    stamp = ENV_DIR / "stamp.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == STAMP and python_exe().exists():
        return python_exe()
    if ENV_DIR.exists():
        shutil.rmtree(ENV_DIR)
    base = python or shutil.which("python3.11")
    if base is None:
        raise SystemExit("python3.11 is needed to build the reference environment")
    subprocess.run([base, "-m", "venv", str(ENV_DIR)], check=True)
    pip = [str(python_exe()), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + [TORCH], check=True)
    subprocess.run(pip + ["--no-deps", *NO_DEPS], check=True)
    # -c keeps the already installed torch; the rest resolves normally.
    subprocess.run(pip + [*WITH_DEPS, f"{TORCH}"], check=True)
    stamp.write_text(json.dumps(STAMP, indent=2) + "\n")
    return python_exe()


def run_worker(task: str, args: dict[str, object]) -> dict[str, object]:
    """Run one task of ``ref_worker.py`` in the reference venv and return its JSON answer."""
    exe = ensure_env()
    env = dict(os.environ, PYTHONNOUSERSITE="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(exe), str(WORKER), task, json.dumps(args)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"reference worker {task} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(ensure_env(sys.argv[1] if len(sys.argv) > 1 else None))
