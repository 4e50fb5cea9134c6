"""Fixtures of the index tests: a small synthetic catalogue of two 'artists', and a PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from index_music import SR, music  # noqa: E402,F401
from pg_server import postgres_server


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> Path:
    """``low/`` and ``high/`` (4 tracks of 12 s each, plus one broken file in ``high/``) and ``cands/``."""
    root = tmp_path_factory.mktemp("catalogue")
    for artist, low in (("low", True), ("high", False)):
        (root / artist).mkdir()
        for i in range(4):
            sf.write(root / artist / f"{artist}{i}.wav", music(12.0, seed=10 * low + i, low=low), SR)
    (root / "high" / "broken.wav").write_bytes(b"RIFF this is no audio")
    cands = root / "cands"
    cands.mkdir()
    sf.write(cands / "new_low.wav", music(12.0, seed=99, low=True), SR)
    src, _ = sf.read(root / "high" / "high2.wav", dtype="float32")
    noise = np.random.default_rng(0).normal(scale=0.003, size=int(8 * SR)).astype(np.float32)
    sf.write(cands / "copy_of_high2.wav", src[int(3.0 * SR) : int(11.0 * SR)] * 0.6 + noise, SR)
    return root


@pytest.fixture(scope="session")
def pg_url():
    with postgres_server() as url:
        if url is None:
            pytest.skip("no PostgreSQL server could be started (apt-get install postgresql; or set STYLECRAFT_TEST_PG_URL)")
        yield url
