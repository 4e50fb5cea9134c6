"""Codec training on a tiny EnCodec: it learns, its codebooks stay in use, it resumes bit for bit
after SIGKILL, and what it exports is an EncodecModel that reproduces the trained latent."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from transformers import EncodecModel

from stylecraft.artifacts import read_jsonl
from stylecraft.codec.train import Autoencoder, LatentNorm, build_codec, fold_latent_norm, train_codec
from stylecraft.config import load_recipe
from stylecraft.models.audiocraft_keys import encodec_to_transformers
from stylecraft.models.loading import load_codec

TINY = ["codec.architecture=tiny", "segment.sample_rate=16000", "codec.kmeans_frames=1500", "codec.tensorboard=false",
        "codec.log_every=1", "codec.eval_crops=8", "codec.batch_size=4"]


def _cfg(run, *extra):
    return load_recipe(None, [f"run_dir={run}", "stages=[codec]", *TINY, *extra], require_catalogue=False)


@pytest.fixture(scope="module")
def trained(mini_run, tmp_path_factory):
    """A tiny codec trained for 40 steps on a private copy of the segmented mini run."""
    import shutil

    run = tmp_path_factory.mktemp("codec") / "run"
    shutil.copytree(mini_run.run_dir, run, symlinks=True)
    summary = train_codec(run, _cfg(run, "codec.max_steps=40", "codec.vq_warmup_steps=8", "codec.eval_every=8",
                                    "codec.save_every=20", "codec.lr=3e-3", "codec.warmup_steps=5"))
    return run, summary


def test_training_lowers_the_held_out_loss(trained):
    run, summary = trained
    rows = read_jsonl(run / "codec" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 41))
    val = [r["val_mel"] for r in rows if "val_mel" in r]
    assert len(val) == 5
    assert val[-1] < val[0] - 0.05, val
    # From step 9 the codes are used: k-means on the warmed-up latent, then EMA updates.
    assert "usage" not in rows[7] and "usage" in rows[8]
    usage = np.array([r["usage"] for r in rows[8:]])  # [steps, codebooks]; a collapsed codebook is ~1/64
    assert usage.mean() > 0.3 and usage.min() > 0.1, usage
    assert (run / "codec" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_export_is_a_plain_encodec_model(trained):
    run, summary = trained
    folder = run / "codec" / "model"
    codec = load_codec(str(folder))
    assert isinstance(codec, EncodecModel)
    prov = json.loads((folder / "stylecraft.json").read_text())
    assert prov["steps"] == 40 and prov["bitrate_kbps"] == 0.6 and prov["files"]["model.safetensors"]
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, 16000)).astype(np.float32) * 0.1)
    codes = codec.encode(x, bandwidth=0.6).audio_codes
    assert codes.shape == (1, 1, 2, 50) and int(codes.max()) < 64
    y = codec.decode(codes, [None]).audio_values
    assert y.shape[-1] == 16000 and torch.isfinite(y).all()
    # The exported codec's own encode/decode scores what the summary says (what users get).
    assert summary["export_val_mel"] < 1.5
    # audiocraft's compression checkpoint holds the same tensors under audiocraft's names.
    pkg = torch.load(run / "codec" / "audiocraft" / "compression_state_dict.bin", weights_only=False)
    back = encodec_to_transformers(pkg["best_state"])
    state = codec.state_dict()
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_folded_normalisation_gives_the_trained_latent():
    torch.manual_seed(0)
    codec = build_codec("tiny", {}, 0).eval()
    norm = LatentNorm(16)
    norm.mean.copy_(torch.randn(16))
    norm.var.copy_(torch.rand(16) + 0.5)
    x = torch.randn(2, 1, 1600) * 0.1
    expected = norm.eval()(codec.encoder(x))
    fold_latent_norm(codec, norm.mean, norm.var, norm.eps)
    torch.testing.assert_close(codec.encoder(x), expected, rtol=1e-4, atol=1e-5)


def test_standardised_latent_keeps_codes_in_use_while_the_encoder_drifts():
    """A shift of the raw latent that dwarfs its spread (what Adam does to it early on) leaves the
    standardised latent, and so the code assignment, unchanged."""
    from stylecraft.codec.quantizer import TrainableRVQ, code_usage

    torch.manual_seed(0)
    codec = build_codec("tiny", {}, 0)
    ae = Autoencoder(codec, TrainableRVQ(codec.quantizer, 2))
    x = torch.randn(4, 16000) * 0.1
    with torch.no_grad():
        ae.rvq.init_kmeans(ae.latent(x).transpose(1, 2).reshape(-1, 16), frames_per_batch=200)
        _, before = ae(x, update=False)
        codec.encoder.layers[-1].conv.bias.add_(5.0)  # a drift of 5 against a spread of ~0.01
        _, after = ae(x, update=False)
    assert torch.equal(before.codes, after.codes)
    assert min(code_usage(after.codes, 64)) > 0.3


def _train_cmd(run):
    recipe = run / "codec.yaml"
    recipe.write_text("name: codec\nstages: [codec]\n")
    args = [f"run_dir={run}", *TINY, "codec.max_steps=16", "codec.vq_warmup_steps=3", "codec.save_every=4",
            "codec.eval_every=8", "codec.keep_last=2"]
    return [sys.executable, "-m", "stylecraft", "codec", "train", str(recipe), *args]


def test_sigkill_and_resume_gives_identical_weights(mini_run, tmp_path):
    import shutil

    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for d in (straight, killed):
        shutil.copytree(mini_run.run_dir, d, symlinks=True)
    subprocess.run(_train_cmd(straight), check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen(_train_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "codec" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 10):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "codec" / "model").exists(), "the run finished before it was killed"
    assert list((killed / "codec" / "checkpoints").glob("step-*")), "no checkpoint before the kill"
    subprocess.run(_train_cmd(killed), check=True, env=env, capture_output=True, timeout=300)
    a, b = read_jsonl(straight / "codec" / "metrics.jsonl"), read_jsonl(metrics)
    assert [r["step"] for r in b] == list(range(1, 17))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    sa = load_codec(str(straight / "codec" / "model")).state_dict()
    sb = load_codec(str(killed / "codec" / "model")).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_refuses_other_settings(trained, tmp_path):
    import shutil

    from stylecraft.errors import StylecraftError

    run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy, symlinks=True)
    with pytest.raises(StylecraftError, match="codec.lr"):
        train_codec(copy, _cfg(copy, "codec.max_steps=41", "codec.vq_warmup_steps=8", "codec.eval_every=8",
                               "codec.save_every=20", "codec.lr=1e-3", "codec.warmup_steps=5"))
