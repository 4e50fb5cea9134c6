"""Models that ship with stylecraft (stylecraft-mini): loaded by name, offline, every file checked."""

import shutil

import pytest
import torch
from cli_runner import run_cli

from stylecraft.artifacts import files_sha256
from stylecraft.errors import CheckpointError
from stylecraft.models.loading import load_model
from stylecraft.models.registry import find


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A checkpoints folder whose registry ships `tiny-shipped`: the tiny preset stored in float16."""
    import os

    from stylecraft.models.registry import checkpoints_dir

    ck = tmp_path / "checkpoints"
    ck.mkdir()
    shutil.copy(checkpoints_dir() / "registry.yaml", ck / "registry.yaml")
    bundle = load_model("tiny")
    folder = ck / "tiny-shipped"
    bundle.model.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    bundle.tokenizer.save_pretrained(folder)
    hashes = "\n".join(f"    {k}: {v}" for k, v in files_sha256(folder).items())
    with open(ck / "registry.yaml", "a") as f:
        f.write(f"tiny-shipped:\n  kind: musicgen\n  source: shipped:tiny-shipped\n  license: test\n  sha256:\n{hashes}\n")
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(ck))
    assert os.environ["STYLECRAFT_CHECKPOINTS"] == str(ck)
    return folder


def test_loads_by_name_in_float32(shipped):
    bundle = load_model("tiny-shipped")
    assert bundle.source == str(shipped)
    assert all(p.dtype == torch.float32 for p in bundle.model.parameters())
    ref = load_model("tiny").model.state_dict()
    got = bundle.model.state_dict()
    w = "decoder.model.decoder.layers.0.fc1.weight"
    torch.testing.assert_close(got[w], ref[w].half().float())


def test_missing_or_altered_file_is_a_one_line_error(shipped):
    (shipped / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete: .*tokenizer.json' is missing"):
        load_model("tiny-shipped")
    data = bytearray((shipped / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (shipped / "model.safetensors").write_bytes(bytes(data))
    assert find("tiny-shipped").is_shipped
    with pytest.raises(CheckpointError, match="damaged"):
        find("tiny-shipped").verify_shipped()


def test_cli_names_the_damaged_file(shipped):
    (shipped / "config.json").write_text("{}")
    proc = run_cli("fetch", "tiny-shipped")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "config.json" in proc.stderr and "damaged" in proc.stderr


def test_stylecraft_mini_ships_loads_offline_and_makes_sound(monkeypatch):
    """The real shipped model: every file matches its pinned sha256, it loads by name with the hub
    unreachable, stays within 50 MB, and a short generation is finite, non-silent audio."""
    import numpy as np

    from stylecraft.generate.sample import SamplingParams, generate_codes_audio

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = find("stylecraft-mini")
    assert entry is not None and entry.is_shipped
    folder = entry.verify_shipped()
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 50e6
    bundle = load_model("stylecraft-mini")
    assert bundle.sample_rate == 32000 and bundle.num_codebooks == 4
    audio = generate_codes_audio(bundle, ["corpus style, 120 bpm, A minor"], SamplingParams(duration_s=0.5, seed=1))
    assert audio.shape == (1, 16000) and np.isfinite(audio).all() and float(np.abs(audio).max()) > 1e-3
