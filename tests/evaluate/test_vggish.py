"""VGGish front end, tiny network, weight loading errors and the extended `stylecraft fad`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_runner import run_cli
from fad_synth import tones, write_set

from stylecraft.errors import AudioDecodeError, CheckpointError, ModelNotFoundError
from stylecraft.evaluate.embeddings import get_embedding
from stylecraft.evaluate.embeddings.vggish import (
    VGGishConfig,
    VGGishEmbedding,
    VGGishNet,
    _max_pool_2x2,
    _mel_matrix,
    log_mel_examples,
)

ROOT = Path(__file__).resolve().parents[2]


def test_front_end_frames_like_vggish():
    sr = 16000
    for seconds, expected in ((0.5, 0), (0.975, 1), (3.0, 3), (10.0, 10)):
        y = np.zeros(int(seconds * sr))
        ex = log_mel_examples(y)
        # 1 + (n - 400) // 160 STFT frames, grouped by 96 without padding.
        n_frames = 1 + (y.size - 400) // 160 if y.size >= 400 else 0
        assert ex.shape == (n_frames // 96, 96, 64) == (expected, 96, 64)
    # Silence is log(0 + 0.01) everywhere.
    assert np.allclose(log_mel_examples(np.zeros(sr * 2)), np.log(0.01))
    mel = _mel_matrix(257)
    assert mel.shape == (257, 64) and np.all(mel[0] == 0) and np.all(mel >= 0)
    # A 1 kHz tone lights up the band around 1 kHz (HTK mel, 125-7500 Hz).
    t = np.arange(sr * 2) / sr
    ex = log_mel_examples(np.sin(2 * np.pi * 1000 * t))
    centres = np.exp(np.linspace(np.log1p(125 / 700), np.log1p(7500 / 700), 66)[1:-1]) * 700 - 700
    assert abs(centres[ex[0].mean(axis=0).argmax()] - 1000) < 80


def test_tiny_vggish_embeds_resampled_stereo_deterministically():
    emb = get_embedding("vggish-tiny")
    assert emb.name == "vggish-tiny" and emb.sample_rate == 16000
    y = tones(3.0, 44100, seed=0, channels=2)
    a = emb.embed(y, 44100)
    assert a.shape == (3, 128) and a.dtype == np.float32
    b = get_embedding("vggish-tiny").embed(y, 44100)
    assert np.array_equal(a, b)
    assert emb.settings()["weights"] == "random:tiny:seed0"
    assert json.loads(json.dumps(emb.settings())) == emb.settings()
    with pytest.raises(AudioDecodeError, match="shorter than one VGGish example"):
        emb.embed(y[:8000], 44100)


def test_final_relu_and_pca_switches():
    base = VGGishEmbedding.preset("tiny", seed=1)
    y = tones(2.0, 16000, seed=3)
    raw = base.embed(y, 16000)
    relu = VGGishEmbedding(base.net, "random:tiny:seed1", use_activation=True).embed(y, 16000)
    assert np.array_equal(relu, np.maximum(raw, 0)) and (raw < 0).any()
    pca = (np.eye(128) * 10, np.zeros(128))
    q = VGGishEmbedding(base.net, "random:tiny:seed1", pca=pca, use_pca=True).embed(y, 16000)
    expected = np.round((np.clip(raw * 10, -2, 2) + 2) * 255 / 4)
    assert np.allclose(q, expected) and q.min() >= 0 and q.max() <= 255
    with pytest.raises(CheckpointError, match="PCA"):
        VGGishEmbedding(base.net, "x", use_pca=True)


def test_missing_or_wrong_weights_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path))
    (tmp_path / "registry.yaml").write_text((ROOT / "checkpoints" / "registry.yaml").read_text())
    with pytest.raises(ModelNotFoundError, match="stylecraft fetch vggish"):
        get_embedding("vggish")
    bad = tmp_path / "bad.pth"
    torch.save(VGGishEmbedding.preset("tiny").net.state_dict(), bad)
    with pytest.raises(CheckpointError, match="not a torchvggish state dict"):
        VGGishEmbedding.from_files(bad)


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "stylecraft", *args], capture_output=True, text=True, env=env, timeout=300)


def test_fad_cli_statistics_and_record(tmp_path):
    ref = write_set(tmp_path / "ref", "tones", n_files=4, seconds=4.0, sample_rate=16000, seed=1)
    gen = write_set(tmp_path / "gen", "noise", n_files=8, seconds=4.0, sample_rate=22050, seed=2)
    out = tmp_path / "fad.json"
    proc = _cli("fad", str(ref), str(gen), "--embedding", "vggish-tiny", "--metric", "all", "--per-track", "--ci", "0.9",
                "--n-boot", "20", "--inf", "--inf-min-n", "4", "--workers", "2", "--cache-dir", str(tmp_path / "c"),
                "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(out.read_text())
    assert rec["embedding"] == "vggish-tiny" and rec["embedding_settings"]["weights"] == "random:tiny:seed0"
    assert rec["versions"]["torch"] and rec["versions"]["numpy"]
    assert rec["n_gen"] == 32 and len(rec["per_track"]) == 8 and {"fad", "kad"} <= rec["per_track"][0].keys()
    assert rec["ci"]["low"] <= rec["ci"]["high"] and rec["ci"]["unit"] == "file" and rec["ci"]["n_units"] == 8
    assert not rec["ci"]["resampled_ref"]  # 4 reference files: held fixed
    assert rec["kad_ci"]["low"] <= rec["kad"] <= rec["kad_ci"]["high"]
    assert rec["fad_inf"]["steps"] == 25 and len(rec["fad_inf"]["points"]) == 25 and len(rec["kad_inf"]["points"]) == 25
    assert rec["diversity"]["unit_generated"] == "file" and rec["diversity"]["n_generated"] == 8
    assert any("embedding rows for dimension 128" in w for w in rec["warnings"])  # 16 and 32 rows in D = 128
    assert "FAD-inf" in proc.stdout and "KAD-inf" in proc.stdout and "CI" in proc.stdout
    cached = sorted((tmp_path / "c").glob("*.npy"))
    assert len(cached) == 12 and np.load(cached[0]).dtype == np.float32
    few = run_cli("fad", str(ref), str(ref), "--embedding", "vggish-tiny", "--ci", "0.9", "--cache-dir", str(tmp_path / "c"))
    assert few.returncode == 1 and "over 4 evaluated file(s) says little" in few.stderr


def test_fad_cli_errors_are_one_line(tmp_path):
    ref = write_set(tmp_path / "ref", "tones", n_files=2, seconds=2.0, sample_rate=16000, seed=1)
    proc = run_cli("fad", str(ref), str(ref), "--embedding", "vggish", env={"STYLECRAFT_CHECKPOINTS": str(tmp_path)})
    # With no registry copy there, the embedding still names the fetch command.
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert "stylecraft fetch vggish" in proc.stderr
    proc = run_cli("fad", str(ref), str(ref), "--embedding", "vggish-tiny", "--inf")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "min_n=500" in errors[0]


def test_fetch_verifies_url_files_by_their_hash_prefix(tmp_path, monkeypatch):
    from stylecraft.artifacts import sha256_bytes
    from stylecraft.models.fetch import fetch

    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path))
    good = b"weights"
    name = f"w-{sha256_bytes(good)[:8]}.pth"
    (tmp_path / "registry.yaml").write_text(
        f"w:\n  kind: vggish\n  source: https://example.invalid/rel\n  files: [{name}]\n  license: test\n  sha256: {{}}\n"
    )
    folder = tmp_path / "hub" / "w"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(good)  # already downloaded: only verified, no network
    assert fetch("w") == folder
    lock = json.loads((tmp_path / "lock" / "w.json").read_text())
    assert lock["sha256"][name] == sha256_bytes(good)
    (folder / name).write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="delete it and fetch again"):
        fetch("w")


def test_batched_set_embedding_equals_per_file_and_keeps_order(tmp_path):
    """Front ends in threads, network batches across files: same rows, order, skips and cache."""
    from stylecraft.evaluate.embeddings import BatchedEmbedding
    from stylecraft.evaluate.fad import embed_set

    folder = write_set(tmp_path / "set", "tones", 5, 2.5, 22050, seed=3)
    (folder / "clip_02b.wav").write_bytes(b"not audio")  # a skip between good files
    sf.write(folder / "clip_03b.wav", tones(0.5, 22050, seed=9), 22050)  # too short: a skip
    emb = VGGishEmbedding.preset("tiny", seed=0, batch_size=3)  # 3 rows: batches straddle files
    assert isinstance(emb, BatchedEmbedding)
    per_file = {p.name: emb.embed(*sf.read(p, dtype="float32", always_2d=True)) for p in sorted(folder.glob("clip_0?.wav"))}
    for workers in (1, 3):
        cache = tmp_path / f"cache{workers}"
        got = embed_set(folder, emb, cache_dir=cache, progress=False, workers=workers)
        assert [Path(f).name for f in got.files] == sorted(per_file)
        assert sorted(Path(p).name for p, _ in got.skipped) == ["clip_02b.wav", "clip_03b.wav"]
        for name, rows in got.per_file().items():
            np.testing.assert_allclose(rows, per_file[Path(name).name], rtol=0, atol=1e-6)
        again = embed_set(folder, emb, cache_dir=cache, progress=False, workers=workers)  # from the cache
        assert np.array_equal(again.embeddings, got.embeddings) and len(list(cache.iterdir())) == 5


def test_pooling_before_relu_is_exact():
    emb = VGGishEmbedding.preset("tiny", seed=1)
    emb.net.cpu_kernels = False  # torch's own modules, with ReLU and pool swapped
    x = torch.randn(4, 1, 96, 64)
    with torch.inference_mode():
        got = emb.net(x)
        ref = emb.net.features(x)  # the module order: conv, ReLU, pool
        ref = ref.permute(0, 2, 3, 1).flatten(1)
        for layer in list(emb.net.embeddings.children())[:-1]:
            ref = layer(ref)
    assert torch.equal(got, ref)


def test_cpu_kernels_agree_with_torch_modules_and_are_recorded():
    wide = VGGishNet(VGGishConfig(channels=(8, 64, 128, 128), hidden=32, dim=128)).eval()
    x = torch.randn(5, 1, 96, 64)
    with torch.inference_mode():
        direct = wide(x)
        wide.cpu_kernels = True
        fast = wide(x)
    assert not torch.equal(direct, fast)  # another algorithm ran ...
    torch.testing.assert_close(fast, direct, rtol=1e-5, atol=1e-5 * float(direct.abs().max()))  # ... to float rounding
    with torch.enable_grad():
        assert torch.equal(wide(x), direct)  # training goes through torch's modules
    with torch.no_grad():
        wide.features[0].weight.mul_(2.0)  # cached Winograd filters follow weight updates
        wide.features[3].weight.mul_(0.5)
        wide.cpu_kernels = False
        direct2 = wide(x)
        wide.cpu_kernels = True
        torch.testing.assert_close(wide(x), direct2, rtol=1e-5, atol=1e-5 * float(direct2.abs().max()))
    assert VGGishEmbedding.preset("tiny", device="cpu").settings()["cpu_convolution"].startswith("stylecraft cpu_conv")


@pytest.mark.parametrize("channels_last", [False, True])
def test_strided_max_pool_equals_max_pool2d(channels_last):
    x = torch.randn(3, 5, 12, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got = _max_pool_2x2(x)
    assert torch.equal(got, torch.nn.functional.max_pool2d(x, 2, 2))
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    odd = torch.randn(2, 3, 7, 6)
    assert torch.equal(_max_pool_2x2(odd), torch.nn.functional.max_pool2d(odd, 2, 2))


def test_sets_embedded_in_one_stream_equal_sets_embedded_alone(tmp_path, monkeypatch):
    """embed_sets: the same rows per set as embed_set, every source checked before decoding,
    and torch's thread count restored after the network ran in its own threads."""
    from stylecraft.errors import StylecraftError
    from stylecraft.evaluate import fad

    a = write_set(tmp_path / "a", "tones", 3, 2.5, 22050, seed=4)
    b = write_set(tmp_path / "b", "noise", 2, 3.5, 16000, seed=5)
    npy = tmp_path / "pre.npy"
    np.save(npy, np.random.default_rng(0).standard_normal((4, 128)).astype(np.float32))
    emb = VGGishEmbedding.preset("tiny", seed=0, batch_size=4, device="cpu")
    alone = [fad.embed_set(s, emb, progress=False) for s in (a, npy, b)]
    threads = torch.get_num_threads()
    together = fad.embed_sets([a, npy, b], emb, progress=False, workers=2)
    assert torch.get_num_threads() == threads
    assert [s.kind for s in together] == ["audio", "npy", "audio"]
    for one, many in zip(alone, together, strict=True):
        assert one.files == many.files and one.sizes == many.sizes
        np.testing.assert_allclose(many.embeddings, one.embeddings, rtol=0, atol=1e-6)

    def no_decoding(path):
        raise AssertionError(f"{path} decoded before every source was checked")

    monkeypatch.setattr(fad, "load_audio_for_embedding", no_decoding)
    with pytest.raises(StylecraftError, match="missing does not exist"):
        fad.embed_sets([a, tmp_path / "missing"], emb, progress=False)
