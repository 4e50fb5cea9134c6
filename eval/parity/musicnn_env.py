"""The isolated musicnn reference environment (TensorFlow 2.12 + musicnn 0.1.0 under ``eval/.cache/envs/musicnn``).

musicnn pins ``numpy<1.17`` and imports TensorFlow, so it never enters stylecraft's environment:
it is installed with ``--no-deps`` next to the TensorFlow release that still has the
``tf.compat.v1.layers`` its graph is built with, and the same librosa/soxr as stylecraft.

Usage::

    python eval/parity/musicnn_env.py     # build the venv if missing, print its python
"""

from __future__ import annotations

import sys
from pathlib import Path

from isolated_env import ROOT as ROOT
from isolated_env import IsolatedEnv

ENV = IsolatedEnv(
    name="musicnn",
    worker=Path(__file__).with_name("musicnn_worker.py"),
    no_deps=["musicnn==0.1.0"],
    # jax and grpcio are held back to releases that TensorFlow 2.12's numpy pin still allows.
    with_deps=["tensorflow-cpu==2.12.1", "jax==0.4.13", "grpcio<1.75", "librosa==0.11.0", "soxr==1.1.0", "soundfile"],
    with_torch=False,
)

if __name__ == "__main__":
    print(ENV.ensure_env(sys.argv[1] if len(sys.argv) > 1 else None))
