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

import sys
from pathlib import Path

from isolated_env import ROOT as ROOT
from isolated_env import IsolatedEnv

ENV = IsolatedEnv(
    name="fad-ref",
    worker=Path(__file__).with_name("ref_worker.py"),
    no_deps=[
        "frechet-audio-distance==0.3.4",
        "fadtk==1.1.0",
        "torchvggish==0.2",
        "encodec==0.1.1",
        "resampy==0.4.3",
        "hypy_utils==1.0.29",
    ],
    # What those packages' Fréchet, VGGish, EnCodec and CLAP code paths import at run time.
    with_deps=["numpy", "scipy", "soundfile", "numba", "tqdm", "einops", "librosa", "transformers==5.23.0"],
)
ensure_env = ENV.ensure_env
run_worker = ENV.run_worker

if __name__ == "__main__":
    print(ENV.ensure_env(sys.argv[1] if len(sys.argv) > 1 else None))
