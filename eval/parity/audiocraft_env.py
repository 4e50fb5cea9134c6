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

import sys
from pathlib import Path

from isolated_env import IsolatedEnv

ENV = IsolatedEnv(
    name="audiocraft",
    worker=Path(__file__).with_name("audiocraft_worker.py"),
    no_deps=["audiocraft==1.3.0"],
    # What audiocraft's import chain and its MusicGen / EnCodec / LM code paths need at run time.
    with_deps=[
        "omegaconf",
        "einops",
        "flashy",
        "julius",
        "num2words",
        "soundfile",
        "av",
        "huggingface_hub",
        "transformers==5.23.0",
        "sentencepiece",
        "torchmetrics",
        "librosa",
        "numpy",
        "tqdm",
    ],
    offline=True,
)
ensure_env = ENV.ensure_env
run_worker = ENV.run_worker

if __name__ == "__main__":
    print(ENV.ensure_env(sys.argv[1] if len(sys.argv) > 1 else None))
