"""EMA of the trainable weights: the update rule, its checkpoint file, exact resume and export."""

import json
import shutil

import pytest
import torch
from mini_run import mini_cfg
from safetensors.torch import load_file

from stylecraft.artifacts import read_jsonl, sha256_file
from stylecraft.models.loading import load_model
from stylecraft.train.ema import EMA
from stylecraft.train.loop import train


def test_update_rule_swap_and_file_round_trip(tmp_path):
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    ema = EMA([("w", w)], decay=0.75, warmup=False)
    with torch.no_grad():
        w.copy_(torch.tensor([5.0, 6.0]))
    ema.update()
    assert torch.allclose(ema.shadow[0], torch.tensor([2.0, 3.0]))  # 0.75 * old + 0.25 * new
    with ema.applied():
        assert torch.equal(w.detach(), torch.tensor([2.0, 3.0]))
    assert torch.equal(w.detach(), torch.tensor([5.0, 6.0]))  # the live weights come back
    ema.save(tmp_path / "ema.safetensors")
    other = EMA([("w", torch.nn.Parameter(torch.zeros(2)))], decay=0.75, warmup=False)
    other.load(tmp_path / "ema.safetensors")
    assert torch.equal(other.shadow[0], ema.shadow[0])
    assert other.updates == 1  # the update count travels with the file


def _start_weight_after(steps: int, warmup: bool) -> float:
    """Share of the starting weights left in the average: weights 1.0 at the start, 0.0 after."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    ema = EMA([("w", w)], decay=0.999, warmup=warmup)
    with torch.no_grad():
        w.zero_()
    for _ in range(steps):
        ema.update()
    return float(ema.shadow[0])


def test_warmup_forgets_the_starting_weights():
    # Without warm-up 0.999 ** 1000 = 37% of the start is left after 1,000 steps.
    assert abs(_start_weight_after(1000, warmup=False) - 0.999**1000) < 1e-4
    # With it, the first update keeps 10% of the start (d = 1/10) and later ones shrink that further.
    assert _start_weight_after(1, warmup=True) == pytest.approx(0.1)
    assert _start_weight_after(1000, warmup=True) < 1e-6
    # The decay reached at the end is the configured one.
    ema = EMA([("w", torch.nn.Parameter(torch.zeros(1)))], decay=0.999, warmup=True)
    ema.updates = 100_000
    assert ema.current_decay() == 0.999


EMA_ARGS = ("train.mode=full", "train.ema.enabled=true", "train.ema.decay=0.5", "train.max_steps=4",
            "train.save_every=2", "train.eval_every=2", "train.keep_last=2", "train.tensorboard=false")


def test_ema_is_checkpointed_resumed_exactly_and_exported(fresh_run, tmp_path):
    killed = tmp_path / "killed"
    shutil.copytree(fresh_run, killed, symlinks=True)
    train(fresh_run, mini_cfg(fresh_run, *EMA_ARGS))
    last = fresh_run / "train" / "checkpoints" / "step-0000004"
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["files"]["ema.safetensors"] == sha256_file(last / "ema.safetensors")

    # The exported weights are the average, not the last weights.
    shadow = load_file(str(last / "ema.safetensors"))
    exported = load_model(str(fresh_run)).model.state_dict()
    key = "decoder.model.decoder.layers.0.self_attn.q_proj.weight"
    ema_key = next(k for k in shadow if k.endswith(key))
    assert torch.equal(exported[key], shadow[ema_key])
    card = (fresh_run / "model" / "README.md").read_text()
    assert "EMA average" in card and "decay 0.5, warm-up" in card and "4 updates" in card

    # A run that lost its last checkpoint resumes from step 2 and ends where the straight one did.
    train(killed, mini_cfg(killed, *EMA_ARGS))
    shutil.rmtree(killed / "train" / "checkpoints" / "step-0000004")
    shutil.rmtree(killed / "model")
    train(killed, mini_cfg(killed, *EMA_ARGS))
    a = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    b = read_jsonl(killed / "train" / "metrics.jsonl")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r.get("val_loss") for r in a] == [r.get("val_loss") for r in b]
    resumed = load_file(str(killed / "train" / "checkpoints" / "step-0000004" / "ema.safetensors"))
    assert all(torch.equal(shadow[k], resumed[k]) for k in shadow)


def test_validation_uses_ema_weights(fresh_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(fresh_run, other, symlinks=True)
    train(fresh_run, mini_cfg(fresh_run, *EMA_ARGS, "train.max_steps=2"))
    train(other, mini_cfg(other, *EMA_ARGS, "train.max_steps=2", "train.ema.use_for_eval=false"))
    a = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    b = read_jsonl(other / "train" / "metrics.jsonl")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # the same training either way
    assert a[-1]["val_loss"] != b[-1]["val_loss"]  # but evaluated on other weights
