"""EnCodec encoder features through transformers (tiny random models, offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fad_synth import tones

from stylecraft.errors import AudioDecodeError, ModelNotFoundError
from stylecraft.evaluate.embeddings import get_embedding
from stylecraft.evaluate.embeddings.encodec import EncodecEmbedding, encodec_package_to_transformers


def test_24k_frames_are_latent_steps_of_the_mono_mix():
    emb = get_embedding("encodec-24k-tiny")
    assert emb.sample_rate == 24000
    y = tones(2.0, 24000, seed=0, channels=2)
    out = emb.embed(y, 24000)
    assert out.shape == (150, 128) and out.dtype == np.float32  # 75 frames per second
    mono = emb.embed(y.mean(axis=1), 24000)
    assert np.array_equal(out, mono)
    # Resampling from 44.1 kHz gives the same frame count for the same duration.
    assert emb.embed(tones(2.0, 44100, seed=0), 44100).shape == (150, 128)
    with pytest.raises(AudioDecodeError, match="shorter than one EnCodec frame"):
        emb.embed(y[:100], 24000)


def test_48k_duplicates_mono_and_fadtk_segments():
    whole = EncodecEmbedding.preset("48k", tiny=True, seed=0)
    y = tones(2.5, 48000, seed=1)
    a = whole.embed(y, 48000)
    b = whole.embed(np.repeat(y, 2, axis=1), 48000)
    assert a.shape == (375, 128) and np.array_equal(a, b)
    seg = EncodecEmbedding(whole.model, whole.weights_id, variant="48k", segment="fadtk")
    s = seg.embed(y, 48000)
    # 1 s segments: frames near segment edges differ from the whole-clip pass, the count does not.
    assert s.shape == a.shape and not np.allclose(s, a)
    assert seg.settings()["segment"] == "fadtk" and whole.settings()["frame_rate"] == 150
    with pytest.raises(AudioDecodeError, match="mono or stereo"):
        whole.embed(np.zeros((48000, 3), dtype=np.float32), 48000)


def test_encodec_package_names_map_to_transformers():
    sd = {
        "encoder.model.0.conv.conv.weight_g": torch.zeros(1),
        "encoder.model.1.block.1.conv.conv.weight_v": torch.zeros(1),
        "encoder.model.0.conv.norm.weight": torch.zeros(1),
        "decoder.model.3.convtr.convtr.bias": torch.zeros(1),
        "quantizer.vq.layers.4._codebook.embed": torch.zeros(1),
        "encoder.model.13.lstm.weight_ih_l0": torch.zeros(1),
    }
    assert set(encodec_package_to_transformers(sd)) == {
        "encoder.layers.0.conv.parametrizations.weight.original0",
        "encoder.layers.1.block.1.conv.parametrizations.weight.original1",
        "encoder.layers.0.norm.weight",
        "decoder.layers.3.conv.bias",
        "quantizer.layers.4.codebook.embed",
        "encoder.layers.13.lstm.weight_ih_l0",
    }


def test_missing_published_weights_name_the_fetch(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    (tmp_path / "registry.yaml").write_text((root / "checkpoints" / "registry.yaml").read_text())
    with pytest.raises(ModelNotFoundError, match="stylecraft fetch encodec-24khz"):
        get_embedding("encodec-24k")
