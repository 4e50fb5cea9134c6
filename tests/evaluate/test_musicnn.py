"""musicnn port: front end, exact pooled batch norm, checkpoint prefix forms, loading errors, registry."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from stylecraft.errors import AudioDecodeError, CheckpointError, ModelNotFoundError
from stylecraft.evaluate.embeddings import BatchedEmbedding, get_embedding
from stylecraft.evaluate.embeddings.musicnn import (
    PATCH_FRAMES,
    MusicnnEmbedding,
    MusicnnNet,
    _relu_bn_max,
    log_mel_patches,
)
from stylecraft.separate.tf_checkpoint import TFCheckpoint, find_checkpoint_prefix

SPLEETER_CKPT = Path(__file__).resolve().parents[1] / "separate" / "fixtures" / "tiny-2stems"


def test_pooled_batch_norm_equals_the_reference_order_exactly():
    gen = torch.Generator().manual_seed(0)
    bn = torch.nn.BatchNorm2d(6, eps=1e-3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.7, 0.0, 2.0, -3.0, 0.3]))  # negative scales pick the minimum
        bn.bias.normal_(generator=gen)
        bn.running_mean.normal_(generator=gen)
        bn.running_var.uniform_(0.2, 2.0, generator=gen)
    y = torch.randn(3, 6, 11, 17, generator=gen)
    reference = bn(F.relu(y)).amax(dim=3)  # conv -> ReLU -> batch norm -> max over frequency
    assert torch.equal(_relu_bn_max(y, bn), reference)


def test_front_end_patches_and_float16_power():
    import librosa

    sr = 16000
    t = np.arange(int(7.0 * sr)) / sr
    quiet = (0.01 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    p = log_mel_patches(quiet, sr)
    assert p.shape == (2, PATCH_FRAMES, 96) and p.dtype == np.float32  # 7 s -> two whole 3 s patches
    # The power is rounded to float16 before the float32 log, as the reference under numpy < 2.
    mel = librosa.feature.melspectrogram(y=quiet, sr=sr, hop_length=256, n_fft=512, n_mels=96).T
    expected = np.log10(np.float32(10000) * mel.astype(np.float16).astype(np.float32) + np.float32(1))
    assert np.array_equal(p.reshape(-1, 96), expected[: 2 * PATCH_FRAMES])
    unrounded = np.log10(np.float32(10000) * mel + np.float32(1))
    assert not np.array_equal(p.reshape(-1, 96), unrounded[: 2 * PATCH_FRAMES])
    # A full-scale tone passes float16's range once multiplied by 10000: still finite (float32 log).
    loud = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    assert np.isfinite(log_mel_patches(loud, sr)).all()
    # Stereo input at another rate is mixed down and resampled first.
    st = np.stack([quiet, quiet], 1)
    assert log_mel_patches(st, sr).shape == p.shape
    with pytest.raises(AudioDecodeError, match="3 s patch"):
        log_mel_patches(quiet[: sr * 2], sr)


def test_tiny_preset_embeds_and_tags():
    emb = get_embedding("musicnn-mtt-tiny")
    assert isinstance(emb, BatchedEmbedding)
    sr = 22050
    x = np.random.default_rng(0).standard_normal((int(6.5 * sr), 2)).astype(np.float32) * 0.1
    rows = emb.embed(x, sr)
    assert rows.shape == (2, 32) and rows.dtype == np.float32 and np.isfinite(rows).all()  # tiny: 32-D rows
    tags = emb.tags(x, sr)  # type: ignore[attr-defined]
    assert tags.shape == (2, 50) and ((tags > 0) & (tags < 1)).all()
    assert emb.settings()["weights"] == "random:tiny:0" and emb.labels[1] == "classical"  # type: ignore[attr-defined]
    full = MusicnnEmbedding.preset("msd", size="full")
    assert full.embed(x, sr).shape == (2, 200)  # the published sizes
    # Batching changes nothing but rounding: the network treats every patch independently.
    inputs = emb.front_end(x, sr)
    one = np.concatenate([emb.embed_inputs(inputs[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(one, rows, atol=1e-5)


def test_published_weights_missing_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="stylecraft fetch musicnn"):
        get_embedding("musicnn-msd")


def test_wheel_without_checkpoint_or_not_a_zip_is_refused(tmp_path):
    bad = tmp_path / "musicnn-0.1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a wheel"):
        MusicnnEmbedding.from_wheel(bad, "msd")
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("musicnn/__init__.py", "raise SystemExit('never run')\n")
    with pytest.raises(CheckpointError, match="no musicnn/MSD_musicnn checkpoint"):
        MusicnnEmbedding.from_wheel(bad, "msd")
    with pytest.raises(ModelNotFoundError):
        MusicnnEmbedding.from_wheel(tmp_path / "absent.whl", "msd")
    with pytest.raises(CheckpointError, match="unknown musicnn model 'msd2'"):
        MusicnnEmbedding.preset("msd2")
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]  # nothing extracted is left behind


def test_checkpoint_saved_under_a_folder_prefix_is_found(tmp_path):
    """musicnn's checkpoints were saved with a prefix ending in '/': files '.index' and '.data-*'."""
    folder = tmp_path / "MSD_musicnn"
    folder.mkdir()
    shutil.copy(SPLEETER_CKPT / "model.ckpt-0.index", folder / ".index")
    shutil.copy(SPLEETER_CKPT / "model.ckpt-0.data-00000-of-00001", folder / ".data-00000-of-00001")
    (folder / "checkpoint").write_text('model_checkpoint_path: "/home/someone/experiments/run_17/"\n')
    assert find_checkpoint_prefix(folder) == f"{folder}/"
    assert find_checkpoint_prefix(folder / ".index") == f"{folder}/"
    ckpt = TFCheckpoint(folder)
    assert np.array_equal(ckpt.read("conv2d/kernel"), TFCheckpoint(SPLEETER_CKPT).read("conv2d/kernel"))


def test_checkpoint_of_another_network_is_refused(tmp_path):
    from stylecraft.evaluate.embeddings.musicnn import state_from_tf_checkpoint

    with pytest.raises(CheckpointError, match="musicnn checkpoint|does not fit"):
        state_from_tf_checkpoint(SPLEETER_CKPT)


def test_net_output_shapes_for_other_lengths():
    net = MusicnnNet().eval()
    with torch.inference_mode():
        pen, logits = net(torch.zeros(2, 100, 96))  # the network is fully convolutional in time
    assert pen.shape == (2, 200) and logits.shape == (2, 50)
