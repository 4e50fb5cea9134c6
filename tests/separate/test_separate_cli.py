"""`stylecraft separate`: outputs, rejects, reruns, mixes, Demucs backend and safe loading."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_runner import run_cli as run_in_process

from stylecraft.errors import CheckpointError
from stylecraft.separate.batch import separate_paths
from stylecraft.separate.demucs import DemucsSeparator, load_demucs_package
from stylecraft.separate.spleeter import SpleeterSeparator

FIXTURES = Path(__file__).parent / "fixtures"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stylecraft", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    sr = 22050
    t = np.arange(int(sr * 6.0)) / sr
    sf.write(folder / "song one.wav", np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], 1), sr)
    sf.write(folder / "mono.flac", 0.2 * np.sin(2 * np.pi * 440 * t[: sr * 2]), sr)
    sf.write(folder / "silent.wav", np.zeros(sr), sr)
    (folder / "fake.mp3").write_bytes(b"ID3 but not really audio")
    return folder


def test_cli_separates_rejects_and_skips_on_rerun(inputs: Path, tmp_path: Path):
    out = tmp_path / "out"
    proc = run_cli("separate", str(inputs), "--model", "spleeter:4stems-tiny", "--out", str(out), "--mix", "band=drums+bass+other", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 separated, 0 already done, 2 rejected" in proc.stdout
    assert "Traceback" not in proc.stderr
    audio, sr = sf.read(out / "song one" / "vocals.flac", always_2d=True)
    assert sr == 22050 and audio.shape == (int(22050 * 6.0), 2)
    mono, _ = sf.read(out / "mono" / "band.flac", always_2d=True)
    assert mono.shape == (22050 * 2, 1)
    rejects = {Path(r["path"]).name: r["reason"] for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    assert set(rejects) == {"silent.wav", "fake.mp3"} and "silent" in rejects["silent.wav"]
    assert not (out / "silent").exists()
    rows = [json.loads(line) for line in (out / "separated.jsonl").read_text().splitlines()]
    assert {r["output"] for r in rows} == {"song one", "mono"}
    stems = rows[0]["files"]
    assert set(stems) == {"vocals", "drums", "bass", "other", "band"}
    assert (out / "song one" / "stems.png").stat().st_size > 10_000
    again = run_cli("separate", str(inputs / "song one.wav"), "--model", "spleeter:4stems-tiny", "--out", str(out), cwd=tmp_path)
    assert "0 separated, 1 already done" in again.stdout


def test_wide_input_keeps_two_channels_and_says_so(tmp_path: Path):
    sr = 48000
    t = np.arange(sr) / sr
    sf.write(tmp_path / "surround.wav", np.stack([0.1 * np.sin(2 * np.pi * (200 + 40 * c) * t) for c in range(6)], 1), sr)
    proc = run_cli("separate", "surround.wav", "--model", "spleeter:2stems-tiny", "--out", "o", "--no-plot", cwd=tmp_path)
    assert proc.returncode == 0 and "6 channels, the first two were separated" in proc.stderr
    info = sf.info(str(tmp_path / "o" / "surround" / "vocals.flac"))
    assert (info.channels, info.samplerate, info.frames) == (2, sr, sr)
    assert not (tmp_path / "o" / "surround" / "stems.png").exists()


def test_mix_file_is_the_sum_of_its_stems(inputs: Path, tmp_path: Path):
    sep = SpleeterSeparator.random("4stems", conv_n_filters=(4, 4, 8, 8, 8, 8))
    result = separate_paths(sep, [inputs / "song one.wav"], tmp_path / "o", fmt="wav", mixes={"band": ["drums", "bass", "other"]})
    (row,) = result.done
    read = {s: sf.read(tmp_path / "o" / e["path"])[0] for s, e in row["files"].items()}
    np.testing.assert_allclose(read["band"], read["drums"] + read["bass"] + read["other"], atol=1e-6)


def test_cli_user_errors_are_one_line(inputs: Path, tmp_path: Path):
    for args, message in [
        (["--model", "spleeter:9stems"], "unknown Spleeter model"),
        (["--model", "spleeter:4stems", "--checkpoint", str(FIXTURES / "tiny-2stems")], "2-stem model"),
        (["--model", "spleeter:2stems-tiny", "--mix", "x=drums"], "unknown stems"),
    ]:
        proc = run_in_process("separate", str(inputs / "mono.flac"), "--out", str(tmp_path / "o"), *args, cwd=tmp_path)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    nothing = run_in_process("separate", str(inputs / "silent.wav"), "--model", "spleeter:2stems-tiny", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert nothing.returncode == 1 and "0 separated" in nothing.stdout


def test_demucs_tiny_separates_with_input_length():
    sep = DemucsSeparator.tiny()
    assert sep.stems == ("drums", "bass", "other", "vocals")
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal((16000 * 2, 1))).astype(np.float32)
    from stylecraft.separate.streaming import separate_array

    out = separate_array(sep, x, 16000)
    assert all(v.shape == (32000, 2) and np.isfinite(v).all() for v in out.values())
    assert DemucsSeparator.tiny().model.state_dict()["encoder.0.conv.weight"].equal(sep.model.state_dict()["encoder.0.conv.weight"])


class _Exploit:
    def __reduce__(self):  # what a malicious checkpoint does: run code when unpickled
        return (Path.touch, (Path(_Exploit.marker),))

    marker = ""


def test_demucs_loader_refuses_pickled_code(tmp_path: Path):
    _Exploit.marker = str(tmp_path / "pwned")
    evil = tmp_path / "evil.th"
    torch.save({"klass": _Exploit(), "args": [], "kwargs": {}, "state": {}}, evil, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_demucs_package(evil)
    assert not (tmp_path / "pwned").exists()


def test_demucs_package_round_trip(tmp_path: Path):
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    sep = DemucsSeparator.tiny(seed=3)
    pkg = serialize_model(sep.model, OmegaConf.create({}), half=False)  # the layout of Demucs' released files
    path = tmp_path / "tiny.th"
    torch.save(pkg, path)
    loaded = DemucsSeparator.from_checkpoint(path, name="tiny")
    for (n, a), (_, b) in zip(sep.model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
