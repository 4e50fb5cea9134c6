"""Presets, registry names and local folders; never a silent random model."""


import numpy as np
import pytest
import torch
from cli_runner import run_cli

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


def test_cli_missing_model_is_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # An empty hub cache (read by huggingface_hub at import, so set on the module too).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    proc = run_cli("generate", "--model", "musicgen-small", "--out", str(tmp_path / "o"),
                   env={"HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: model 'musicgen-small'")
    assert "Traceback" not in proc.stderr


def test_melody_models_load_by_folder_and_training_them_is_a_clear_error(tmp_path):
    from transformers import (
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        MusicgenMelodyForConditionalGeneration,
    )

    from stylecraft.config import load_recipe
    from stylecraft.errors import StylecraftError
    from stylecraft.models.presets import byte_tokenizer, tiny_config
    from stylecraft.train.loop import train

    base = tiny_config()
    known = MusicgenMelodyDecoderConfig().to_dict()
    decoder = MusicgenMelodyDecoderConfig(**{k: v for k, v in base.decoder.to_dict().items() if k in known})
    cfg = MusicgenMelodyConfig(
        text_encoder=base.text_encoder.to_dict(), audio_encoder=base.audio_encoder.to_dict(),
        decoder=decoder.to_dict(), num_chroma=12, chroma_length=235,
    )
    MusicgenMelodyForConditionalGeneration(cfg).save_pretrained(tmp_path / "melody")
    byte_tokenizer().save_pretrained(tmp_path / "melody")
    bundle = load_model(str(tmp_path / "melody"))
    assert type(bundle.model).__name__ == "MusicgenMelodyForConditionalGeneration"
    assert bundle.model_type == "musicgen_melody"
    (tmp_path / "run" / "tokens").mkdir(parents=True)
    (tmp_path / "run" / "tokens" / "index.jsonl").write_text("")
    recipe = load_recipe(None, [f"run_dir={tmp_path / 'run'}", "catalogue=x", "train.batch_size=1"])

    class _Data:
        train = [0, 1]
        valid = [0]

    with pytest.raises(StylecraftError, match="musicgen_melody' model is not supported yet"):
        train(tmp_path / "run", recipe, data_fn=lambda run: _Data(), bundle=bundle)


def test_unsupported_model_folder_is_a_clear_error(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="holds a 'bert' model"):
        load_model(str(tmp_path / "bert"))
