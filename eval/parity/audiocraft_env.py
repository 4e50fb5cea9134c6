"""Build (once) and run the isolated audiocraft 1.3.0 reference environment.

audiocraft 1.3.0 pins torch 2.1, xformers, torchaudio and spacy, none of which may enter
stylecraft's environment. It is installed with ``--no-deps`` into its own venv under
``eval/.cache/envs/audiocraft`` beside the current CPU torch and the few libraries its MusicGen,
LM and EnCodec code paths import; torchaudio, spacy and xformers are replaced in the reference
process by stand-ins (see ``eval/parity/audiocraft_worker.py``).

Usage::

    python eval/parity/audiocraft_env.py      # build the venv if missing, print its python
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = ROOT / "eval" / ".cache" / "envs" / "audiocraft"
WORKER = Path(__file__).with_name("audiocraft_worker.py")

# torch first and pinned, so nothing later can pull an unpinned (CUDA) torch.
TORCH = "torch==2.13.0"
NO_DEPS = ["audiocraft==1.3.0"]
# What audiocraft's import chain and its MusicGen / EnCodec / LM code paths need at run time.
WITH_DEPS = [
    "omegaconf", "einops", "flashy", "julius", "num2words", "soundfile", "av", "huggingface_hub",
    "transformers==5.23.0", "sentencepiece", "torchmetrics", "librosa", "numpy", "tqdm",
]
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
    base = python or shutil.which("python3.11") or shutil.which("python3")
    if base is None:
        raise SystemExit("python3.11 is needed to build the audiocraft reference environment")
    subprocess.run([base, "-m", "venv", str(ENV_DIR)], check=True)
    pip = [str(python_exe()), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + [TORCH], check=True)
    subprocess.run(pip + ["--no-deps", *NO_DEPS], check=True)
    # Naming torch again keeps the installed CPU build while the rest resolves.
    subprocess.run(pip + [*WITH_DEPS, TORCH], check=True)
    stamp.write_text(json.dumps(STAMP, indent=2) + "\n")
    return python_exe()


def run_worker(task: str, args: dict[str, object]) -> dict[str, object]:
    """Run one task of ``audiocraft_worker.py`` in the reference venv and return its JSON answer."""
    exe = ensure_env()
    env = dict(os.environ, PYTHONNOUSERSITE="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("PYTHONPATH", None)
    # Nothing may be fetched: audiocraft and transformers would otherwise try the hub.
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [str(exe), str(WORKER), task, json.dumps(args)], check=False, capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"audiocraft worker {task} failed:\n{proc.stderr[-4000:]}")
    answer: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


if __name__ == "__main__":
    print(ensure_env(sys.argv[1] if len(sys.argv) > 1 else None))
