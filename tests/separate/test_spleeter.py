"""Spleeter port: TF checkpoint reader, network shapes, equality with Spleeter's own output on a
TensorFlow-written tiny checkpoint (tests/separate/fixtures, made by eval/parity/spleeter_reference.py
fixture), streaming equivalence and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stylecraft.errors import CheckpointError, ConfigError, ModelNotFoundError
from stylecraft.separate import load_separator
from stylecraft.separate.spleeter import SpleeterSeparator, resolve_spec
from stylecraft.separate.spleeter_net import SPLEETER_MODELS, SpleeterNet, SpleeterSpec, _same_pad
from stylecraft.separate.tf_checkpoint import TFCheckpoint

FIXTURES = Path(__file__).parent / "fixtures"
CKPT = FIXTURES / "tiny-2stems"
CONFIG = FIXTURES / "tiny-2stems.json"


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref.astype(np.float64) - est) ** 2)))


def test_reader_lists_keras_names_and_shapes():
    ckpt = TFCheckpoint(CKPT)
    names = ckpt.names()
    assert "conv2d/kernel" in names and "conv2d_13/kernel" in names and "conv2d_14/kernel" not in names
    assert ckpt.entry("conv2d/kernel").shape == (5, 5, 2, 4)
    assert ckpt.entry("conv2d_transpose_5/kernel").shape == (5, 5, 1, 8)  # [kh, kw, out, in]
    assert ckpt.entry("batch_normalization_23/moving_variance").shape == (1,)
    var = ckpt.read("batch_normalization_3/moving_variance")
    assert var.dtype == np.float32 and (var > 0.29).all()  # the fixture's random statistics


def test_matches_spleeter_output_on_tf_written_checkpoint():
    expected = np.load(FIXTURES / "tiny-2stems-expected.npz")
    sep = SpleeterSeparator.from_checkpoint(CKPT, model=CONFIG)
    out = sep.separate(expected["mix"], 44100)
    for stem in ("vocals", "accompaniment"):
        assert out[stem].shape == expected[stem].shape
        assert snr_db(expected[stem], out[stem]) > 80.0


def test_wrong_batchnorm_statistics_break_the_match():
    # The equality above is not vacuous: the same port with the statistics reset is far off.
    expected = np.load(FIXTURES / "tiny-2stems-expected.npz")
    sep = SpleeterSeparator.from_checkpoint(CKPT, model=CONFIG)
    for name, buf in sep.net.named_buffers():
        if name.endswith("running_var"):
            buf.fill_(1.0)
    out = sep.separate(expected["mix"], 44100)
    assert snr_db(expected["vocals"], out["vocals"]) < 40.0


def test_corrupt_data_file_fails_crc(tmp_path):
    bad = tmp_path / "ckpt"
    shutil.copytree(CKPT, bad)
    data = bad / "model.ckpt-0.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[1000] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="CRC"):
        SpleeterSeparator.from_checkpoint(bad, model=CONFIG)


def test_truncated_index_is_a_clear_error(tmp_path):
    bad = tmp_path / "ckpt"
    shutil.copytree(CKPT, bad)
    index = bad / "model.ckpt-0.index"
    index.write_bytes(index.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match="not a readable TensorFlow checkpoint index"):
        TFCheckpoint(bad)


def test_wrong_stem_count_and_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="2-stem model, but '4stems' separates 4 stems"):
        SpleeterSeparator.from_checkpoint(CKPT, model="spleeter:4stems")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint directory"):
        SpleeterSeparator.from_checkpoint(tmp_path, model="2stems")
    with pytest.raises(CheckpointError, match="expects"):  # right stem count, wrong filter sizes
        SpleeterSeparator.from_checkpoint(CKPT, model="spleeter:2stems")


def test_missing_release_weights_name_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="stylecraft fetch spleeter:4stems"):
        load_separator("spleeter:4stems")
    with pytest.raises(ConfigError, match="unknown Spleeter model"):
        load_separator("spleeter:7stems")
    with pytest.raises(ConfigError, match="backend"):
        load_separator("openunmix:umxhq")


def test_safetensors_cache_round_trip(tmp_path):
    first = SpleeterSeparator.from_checkpoint(CKPT, model=CONFIG, cache_dir=tmp_path)
    cached = list(tmp_path.glob("*.safetensors"))
    assert len(cached) == 1
    second = SpleeterSeparator.from_checkpoint(CKPT, model=CONFIG, cache_dir=tmp_path)
    assert second.origin == str(cached[0])
    for (n, a), (_, b) in zip(first.net.state_dict().items(), second.net.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("name", ["2stems", "4stems", "5stems", "2stems-16kHz"])
def test_network_shapes_for_released_models(name):
    spec = SPLEETER_MODELS[name]
    sep = SpleeterSeparator.random(name, conv_n_filters=(2, 2, 4, 4, 4, 4))
    x = torch.rand(1, 2, spec.T, spec.F)
    with torch.no_grad():
        est = sep.net(x)
    assert est.shape == (len(spec.instruments), 1, 2, spec.T, spec.F)
    if spec.softmax:  # 5 stems: masks sum to one, so the estimates sum to the input
        torch.testing.assert_close(est.sum(0), x, rtol=1e-5, atol=1e-6)
    # parameter names follow the TF layout of the full-size model
    full = SpleeterNet(spec)
    assert sum(p.numel() for p in full.parameters()) > 9_000_000 * len(spec.instruments) // 1


def test_tf_same_padding_puts_the_extra_pixel_after():
    assert _same_pad(512, 5, 2) == (1, 2)
    assert _same_pad(7, 5, 2) == (2, 2)
    assert _same_pad(64, 4, 1, dilation=2) == (3, 3)


def test_streaming_equals_whole_file_and_handles_layouts():
    # Short segments (T = 64 frames, 1.5 s) keep the test fast; the code path is the same.
    small = SpleeterSpec.from_json({**SPLEETER_MODELS["4stems"].to_json(), "T": 64, "F": 256, "conv_n_filters": [4, 4, 8, 8, 8, 8]})
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((int(44100 * 4.1), 2))).astype(np.float32)  # three segments
    one = SpleeterSeparator.random(small, seed=2, batch_segments=1)
    many = SpleeterSeparator.random(small, seed=2, batch_segments=8)
    a = one.separate(x, 44100)
    stream = many.stream()  # the whole file in one network call, fed in uneven blocks
    parts = [stream.feed(x[i : i + 17777]) for i in range(0, x.shape[0], 17777)] + [stream.finish()]
    b = {k: np.concatenate([p[k] for p in parts]) for k in a}
    for k in a:
        assert a[k].shape == x.shape
        np.testing.assert_allclose(a[k], b[k], atol=1e-6)
    mono = one.separate(x[:44100, 0], 44100)
    assert mono["vocals"].shape == (44100, 2)
    wide = one.separate(np.tile(x[:44100], (1, 3)), 44100)  # 6 channels: first two, as Spleeter
    np.testing.assert_allclose(wide["bass"], one.separate(x[:44100], 44100)["bass"], atol=1e-6)
    low = one.separate(x[:16000], 16000)  # resampled to 44.1 kHz and back, same length
    assert low["drums"].shape == (16000, 2)


def test_resolve_spec_accepts_names_and_spleeter_params(tmp_path):
    assert resolve_spec("spleeter:5stems").softmax
    assert resolve_spec("4stems-16kHz").F == 1536
    spec = resolve_spec(CONFIG)
    assert spec.conv_n_filters == (4, 4, 8, 8, 8, 8) and spec.conv_activation == "LeakyReLU"
    with pytest.raises(ConfigError, match="not found"):
        resolve_spec(tmp_path / "missing.json")


def test_wiener_filter_matches_spleeter_mwf():
    expected = np.load(FIXTURES / "tiny-2stems-expected.npz")
    sep = SpleeterSeparator.from_checkpoint(CKPT, model=CONFIG)
    sep.mwf = True
    out = sep.separate(expected["mix"], 44100)
    for stem in ("vocals", "accompaniment"):
        assert snr_db(expected[f"mwf_{stem}"], out[stem]) > 80.0
        # and it is a different result from plain ratio masks
        assert snr_db(expected[stem], out[stem]) < 40.0


def test_malformed_entry_fields_are_value_errors():
    # field 1 (dtype) sent as a length-delimited string instead of a varint
    with pytest.raises(ValueError, match="wrong wire type"):
        TFCheckpoint._entry("x", bytes([0x0A, 0x01, 0x00]))
    with pytest.raises(ValueError, match="partitioned"):
        TFCheckpoint._entry("x", bytes([0x08, 0x01, 0x3A, 0x00]))
