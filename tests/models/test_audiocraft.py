"""MusicGen in audiocraft's checkpoint format: export -> import round trip, cache, and refusals."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from stylecraft.artifacts import sha256_file
from stylecraft.errors import CheckpointError, ModelNotFoundError
from stylecraft.models import audiocraft as ac
from stylecraft.models import presets
from stylecraft.models.loading import ModelBundle, load_model


@pytest.fixture(scope="module")
def tiny() -> ModelBundle:
    return load_model("tiny")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ac") / "tiny-audiocraft"
    ac.export_model(tiny, out, fmt="audiocraft")
    return out


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch, tiny):
    # The tiny preset is loaded (from the shared cache) before the conversion cache moves here.
    monkeypatch.setenv("STYLECRAFT_CACHE", str(tmp_path / "cache"))


def _logits(bundle: ModelBundle) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, bundle.codebook_size + 1, (2 * bundle.num_codebooks, 9), generator=gen)
    tok = bundle.tokenizer(["dark ambient drone", "fast drums"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return bundle.model(input_ids=tok.input_ids, attention_mask=tok.attention_mask, decoder_input_ids=codes).logits


def test_export_writes_audiocraft_layout_with_manifest(exported):
    files = {p.name for p in exported.iterdir()}
    assert {"state_dict.bin", "compression_state_dict.bin", "text_encoder", "manifest.json"} <= files
    import json

    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["format"] == "audiocraft"
    for rel, digest in manifest["files"].items():
        assert sha256_file(exported / rel) == digest
    lm = torch.load(exported / "state_dict.bin", weights_only=True)
    cfg = yaml.safe_load(lm["xp.cfg"])
    assert cfg["transformer_lm"]["n_q"] == 4 and cfg["transformer_lm"]["card"] == presets.TINY_CODEBOOK_SIZE
    assert cfg["codebooks_pattern"]["delay"]["delays"] == [0, 1, 2, 3]
    assert lm["best_state"]["transformer.layers.0.self_attn.in_proj_weight"].shape == (3 * 64, 64)
    comp = torch.load(exported / "compression_state_dict.bin", weights_only=True)
    assert "encoder.model.0.conv.conv.weight_g" in comp["best_state"]
    assert "quantizer.vq.layers.3._codebook.embed" in comp["best_state"]


def test_round_trip_gives_identical_weights_and_logits(tiny, exported):
    back = load_model(str(exported))  # the audiocraft layout is detected from the folder
    assert back.source.startswith("audiocraft:")
    a, b = tiny.model.state_dict(), back.model.state_dict()
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(_logits(tiny), _logits(back))


def test_second_load_comes_from_the_cache(exported, tmp_path):
    first = ac.load_audiocraft(exported)
    entries = [p for p in (tmp_path / "cache" / "audiocraft").iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "model.safetensors").exists()
    second = ac.load_audiocraft(exported)
    assert torch.equal(_logits(first), _logits(second))
    # A changed source file is a new cache key, never a stale model.
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    lm = torch.load(copy / "state_dict.bin", weights_only=True)
    lm["best_state"]["linears.0.weight"] = lm["best_state"]["linears.0.weight"] * 2
    torch.save(lm, copy / "state_dict.bin")
    changed = ac.load_audiocraft(copy)
    assert not torch.equal(changed.model.decoder.lm_heads[0].weight, first.model.decoder.lm_heads[0].weight)
    assert len([p for p in (tmp_path / "cache" / "audiocraft").iterdir() if p.is_dir()]) == 2


def test_stereo_round_trip(tmp_path):
    from transformers import MusicgenForConditionalGeneration

    config = presets.tiny_config()
    config.decoder.audio_channels = 2
    config.decoder.num_codebooks = 8
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(config).eval()
    bundle = ModelBundle(model=model, tokenizer=presets.byte_tokenizer(), name="stereo", source="test")
    ac.export_model(bundle, tmp_path / "stereo")
    cfg = yaml.safe_load(torch.load(tmp_path / "stereo" / "state_dict.bin", weights_only=True)["xp.cfg"])
    assert cfg["interleave_stereo_codebooks"]["use"] is True
    assert cfg["codebooks_pattern"]["delay"]["delays"] == [0, 0, 1, 1, 2, 2, 3, 3]
    back = ac.load_audiocraft(tmp_path / "stereo")
    assert back.model.config.decoder.audio_channels == 2 and back.num_codebooks == 8
    for key, value in model.state_dict().items():
        assert torch.equal(value, back.model.state_dict()[key]), key


def test_transformers_export_loads_back(tiny, tmp_path):
    ac.export_model(tiny, tmp_path / "tf", fmt="transformers")
    assert (tmp_path / "tf" / "manifest.json").exists()
    assert torch.equal(_logits(load_model(str(tmp_path / "tf"))), _logits(tiny))


def test_missing_compression_file(exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "compression_state_dict.bin").unlink()
    with pytest.raises(CheckpointError, match="compression_state_dict.bin"):
        load_model(str(broken))


def test_not_a_checkpoint(exported, tmp_path):
    broken = tmp_path / "garbage"
    shutil.copytree(exported, broken)
    (broken / "state_dict.bin").write_bytes(b"this is not a torch checkpoint")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        ac.load_audiocraft(broken)


def test_wrong_kind_of_checkpoint(exported, tmp_path):
    broken = tmp_path / "plain"
    shutil.copytree(exported, broken)
    torch.save({"weight": torch.zeros(3)}, broken / "state_dict.bin")
    with pytest.raises(CheckpointError, match="xp.cfg"):
        ac.load_audiocraft(broken)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(exported, tmp_path):
    broken = tmp_path / "evil"
    shutil.copytree(exported, broken)
    marker = tmp_path / "code-ran"
    lm = torch.load(exported / "state_dict.bin", weights_only=True)
    lm["extra"] = _Payload(str(marker))
    torch.save(lm, broken / "state_dict.bin")
    with pytest.raises(CheckpointError, match="would run code"):
        ac.load_audiocraft(broken)
    assert not marker.exists()


def test_missing_text_encoder_names_how_to_get_it(exported, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(exported, bare)
    shutil.rmtree(bare / "text_encoder")
    with pytest.raises(ModelNotFoundError, match="--text-encoder"):
        ac.load_audiocraft(bare)
    # An explicit text encoder folder makes it loadable again.
    assert ac.load_audiocraft(bare, text_encoder=exported / "text_encoder").num_codebooks == 4


def test_unsupported_lm_variant_is_refused(exported, tmp_path):
    broken = tmp_path / "melody"
    shutil.copytree(exported, broken)
    lm = torch.load(exported / "state_dict.bin", weights_only=True)
    cfg = yaml.safe_load(lm["xp.cfg"])
    cfg["fuser"]["prepend"] = ["self_wav"]
    lm["xp.cfg"] = yaml.safe_dump(cfg)
    torch.save(lm, broken / "state_dict.bin")
    with pytest.raises(CheckpointError, match="melody"):
        ac.load_audiocraft(broken)


def _main(monkeypatch, *args: str) -> int:
    from stylecraft import cli

    monkeypatch.setattr(sys, "argv", ["stylecraft", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
        raise SystemExit(0)
    return int(exit_info.value.code or 0)


def test_cli_export_and_errors(tmp_path, monkeypatch, capsys):
    assert _main(monkeypatch, "export", "tiny", "--out", str(tmp_path / "o")) == 0
    assert (tmp_path / "o" / "state_dict.bin").exists()
    capsys.readouterr()
    assert _main(monkeypatch, "export", "tiny", "--format", "onnx", "--out", str(tmp_path / "x")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown export format") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert _main(monkeypatch, "export", "tiny", "--format", "transformers", "--t5-name", "t5-base",
                 "--out", str(tmp_path / "y")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --t5-name applies to --format audiocraft only") and err.count("\n") == 1
    assert not (tmp_path / "y").exists()


def test_export_replaces_an_earlier_export_but_never_a_folder_of_other_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    assert _main(monkeypatch, "export", "tiny", "--format", "transformers", "--out", str(out)) == 0
    assert _main(monkeypatch, "export", "tiny", "--out", str(out)) == 0  # an earlier export is replaced
    assert (out / "state_dict.bin").exists() and not (out / "model.safetensors").exists()
    music = tmp_path / "music"
    music.mkdir()
    (music / "song.flac").write_bytes(b"precious")
    capsys.readouterr()
    assert _main(monkeypatch, "export", "tiny", "--out", str(music)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "is not an earlier export" in err and err.count("\n") == 1
    assert [p.name for p in music.iterdir()] == ["song.flac"] and (music / "song.flac").read_bytes() == b"precious"
