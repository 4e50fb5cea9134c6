"""Presets, registry names and local folders; never a silent random model."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from stylecraft.errors import CheckpointError, ModelNotFoundError
from stylecraft.models import presets
from stylecraft.models.loading import load_model, resolve_folder, save_bundle


def test_tiny_is_real_musicgen_with_fitted_codebooks():
    b = load_model("tiny")
    assert type(b.model).__name__ == "MusicgenForConditionalGeneration"
    assert type(b.model.audio_encoder).__name__ == "EncodecModel"
    assert type(b.model.text_encoder).__name__ == "T5EncoderModel"
    assert (b.sample_rate, b.frame_rate, b.num_codebooks) == (32000, 50, 4)
    for layer in b.model.audio_encoder.quantizer.layers[: b.num_codebooks]:
        embed = layer.codebook.embed
        assert embed.abs().sum() > 0  # not EnCodec's all-zero init
        assert torch.unique(embed, dim=0).shape[0] == embed.shape[0]


def test_tiny_codes_use_many_codebook_entries():
    from stylecraft.data.demo import synth_track
    from stylecraft.data.tokens import encode_batch

    b = load_model("tiny")
    codes = encode_batch(b, synth_track(6.0, 32000, seed=77, channels=1)[:, 0][None])
    assert codes.shape == (1, 4, 300)
    for k in range(4):
        assert len(np.unique(codes[0, k])) > 30


def test_tiny_is_deterministic_and_cache_equals_fresh_build():
    fresh, _ = presets.build_tiny()
    cached = load_model("tiny").model
    a, b = fresh.state_dict(), cached.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_registry_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match=r"stylecraft fetch musicgen-small"):
        load_model("musicgen-small")
    with pytest.raises(ModelNotFoundError, match=r"not on this machine"):
        load_model("facebook/musicgen-medium")
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        load_model("no-such-model")


def test_folder_round_trip_and_bad_folder(tmp_path):
    b = load_model("tiny")
    save_bundle(b, tmp_path / "m")
    again = load_model(str(tmp_path / "m"))
    assert torch.equal(
        again.model.decoder.lm_heads[0].weight, b.model.decoder.lm_heads[0].weight
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a model folder"):
        resolve_folder(str(tmp_path / "empty"))


def test_cli_missing_model_is_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "stylecraft", "generate", "--model", "musicgen-small", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: model 'musicgen-small'")
    assert "Traceback" not in proc.stderr
