"""`stylecraft fetch spleeter:…` against a local copy of a release (file:// URLs, no network)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from stylecraft.errors import CheckpointError, ModelNotFoundError
from stylecraft.separate import fetch_spleeter, load_separator

FIXTURES = Path(__file__).parent / "fixtures"


def _release(tmp_path: Path, tamper: bool = False, evil_member: bool = False) -> str:
    release = tmp_path / "release"
    release.mkdir()
    archive = release / "2stems.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in sorted((FIXTURES / "tiny-2stems").iterdir()):
            tar.add(f, arcname=f.name)
        if evil_member:
            data = b"owned"
            info = tarfile.TarInfo("../outside.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (release / "checksum.json").write_text(json.dumps({"2stems": "0" * 64 if tamper else digest}))
    return release.as_uri()


def test_fetch_verifies_and_extracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path / "ck"))
    target = fetch_spleeter("spleeter:2stems", release=_release(tmp_path))
    assert (target / "checkpoint").is_file() and (target / "stylecraft-fetch.json").is_file()
    # The fetched folder is where `--model spleeter:2stems` looks; these weights are the tiny
    # fixture's, so the full-size model refuses them with a shape error (not a missing-model one).
    with pytest.raises(CheckpointError, match="expects"):
        load_separator("spleeter:2stems")


def test_fetch_refuses_wrong_checksum_and_escaping_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path / "ck"))
    with pytest.raises(CheckpointError, match="sha256"):
        fetch_spleeter("spleeter:2stems", release=_release(tmp_path, tamper=True))
    assert not (tmp_path / "ck" / "hub" / "spleeter" / "2stems").exists()
    shutil.rmtree(tmp_path / "release")
    with pytest.raises(CheckpointError, match="not extracted"):
        fetch_spleeter("spleeter:2stems", release=_release(tmp_path, evil_member=True))
    assert not (tmp_path / "ck" / "hub" / "outside.txt").exists()


def test_fetch_offline_and_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path / "ck"))
    with pytest.raises(ModelNotFoundError, match="cannot download"):
        fetch_spleeter("spleeter:4stems", release=(tmp_path / "nothing").as_uri())
    with pytest.raises(ModelNotFoundError, match="unknown Spleeter release"):
        fetch_spleeter("spleeter:3stems")


def test_fetch_demucs_checks_the_hash_in_the_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import demucs.pretrained
    import torch
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    from stylecraft.separate.demucs import DemucsSeparator, fetch_demucs

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    remote = tmp_path / "remote"
    remote.mkdir()
    sep = DemucsSeparator.tiny(seed=5)
    blob = tmp_path / "blob.th"
    torch.save(serialize_model(sep.model, OmegaConf.create({}), half=False), blob)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    (remote / "tinybag.yaml").write_text("models: ['abcd1234']\n")
    (remote / "files.txt").write_text(f"root: test/\nabcd1234-{digest[:8]}.th\n")
    server = tmp_path / "server" / "test"
    server.mkdir(parents=True)
    shutil.copy(blob, server / f"abcd1234-{digest[:8]}.th")
    monkeypatch.setattr(demucs.pretrained, "REMOTE_ROOT", remote)
    (path,) = fetch_demucs("tinybag", root_url=(tmp_path / "server").as_uri() + "/")
    assert path.parent == tmp_path / "torch" / "hub" / "checkpoints"
    loaded = DemucsSeparator.pretrained("tinybag")
    assert torch.equal(loaded.model.state_dict()["encoder.0.conv.weight"], sep.model.state_dict()["encoder.0.conv.weight"])
    # a corrupted download is refused and nothing is left behind
    (remote / "files.txt").write_text(f"root: test/\nabcd1234-{'0' * 8}.th\n")
    shutil.copy(blob, server / f"abcd1234-{'0' * 8}.th")
    with pytest.raises(CheckpointError, match="published"):
        fetch_demucs("tinybag", root_url=(tmp_path / "server").as_uri() + "/")
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").glob("abcd1234-0*"))
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").glob(".*"))
