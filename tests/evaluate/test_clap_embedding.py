"""CLAP windowing and the transformers ClapModel wrapper (tiny random model, offline)."""

from __future__ import annotations

import numpy as np
import pytest
from fad_synth import tones

from stylecraft.errors import ModelNotFoundError, StylecraftError
from stylecraft.evaluate.embeddings import get_embedding
from stylecraft.evaluate.embeddings.clap import ClapEmbedding, clap_windows


def test_fadtk_windows_hop_one_second_with_int16_round_trip():
    x = np.linspace(-1.2, 1.2, 48000 * 12, dtype=np.float32)
    w = clap_windows(x, "fadtk")
    assert w.shape == (12, 480000)
    # Window k starts k seconds in; the tail of late windows is zero padding.
    assert np.array_equal(w[3, :48000], (np.clip(x[3 * 48000 : 4 * 48000], -1, 1) * 32767).astype(np.int16) / np.float32(32767))
    assert np.all(w[11, 48000:] == 0) and np.abs(w).max() <= 1.0
    w10 = clap_windows(x, "10s")
    assert w10.shape == (2, 480000) and np.array_equal(w10[0], x[:480000])
    with pytest.raises(StylecraftError, match="windowing"):
        clap_windows(x, "5s")


def test_tiny_clap_rows_do_not_depend_on_batching():
    emb = get_embedding("clap-tiny")
    y = tones(3.0, 44100, seed=2, channels=2)
    a = emb.embed(y, 44100)
    assert a.shape == (3, 32) and a.dtype == np.float32
    one = ClapEmbedding(emb.model, emb.fe, emb.weights_id, batch_size=1).embed(y, 44100)  # type: ignore[attr-defined]
    assert np.allclose(a, one, atol=1e-5)
    assert emb.settings()["hop_s"] == 1.0 and emb.settings()["int16_roundtrip"] is True


def test_missing_clap_weights_name_the_fetch(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    (tmp_path / "registry.yaml").write_text((root / "checkpoints" / "registry.yaml").read_text())
    with pytest.raises(ModelNotFoundError, match="stylecraft fetch clap-larger-music"):
        get_embedding("clap")
