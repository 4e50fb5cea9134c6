"""The isolated kadtk 1.1.0 reference environment (``eval/.cache/envs/kad-ref``).

kadtk pins numpy < 2, torch < 2.6 and transformers < 4.47 and pulls TensorFlow, laion-clap,
hear21passt and more; its Kernel Audio Distance itself (``kadtk.kad``) needs only numpy and torch.
So kadtk is installed with ``--no-deps`` beside the few libraries its import chain touches, into
a Python 3.11 venv with the pinned CPU torch (the same one stylecraft's environment uses; kadtk's
KAD uses matmul, exp, pdist and median, whose meaning has not changed since torch 2.5) and the
newest numpy 1.x that kadtk allows. What its package ``__init__`` imports without using on the
KAD path (torchaudio, torchlibrosa, turtle) is stubbed in the worker (``kad_worker.py``).

Usage::

    python eval/parity/kad_env.py          # build the venv if missing, print its python
"""

from __future__ import annotations

import sys
from pathlib import Path

from isolated_env import ROOT as ROOT
from isolated_env import IsolatedEnv

ENV = IsolatedEnv(
    name="kad-ref",
    worker=Path(__file__).with_name("kad_worker.py"),
    no_deps=["kadtk==1.1.0", "hypy_utils==1.0.29"],
    # kadtk.__init__ imports fad, emb_loader, model_loader and utils, which import these at module level.
    with_deps=["numpy==1.26.4", "scipy<2", "soundfile", "librosa==0.10.2.post1", "tqdm", "packaging"],
)
ensure_env = ENV.ensure_env
run_worker = ENV.run_worker

if __name__ == "__main__":
    print(ENV.ensure_env(sys.argv[1] if len(sys.argv) > 1 else None))
