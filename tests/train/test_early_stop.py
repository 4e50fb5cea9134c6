"""Early stopping on validation loss, its state across a resume, and the kept best checkpoint."""

import json
import shutil

import pytest
import torch
from mini_run import mini_cfg
from safetensors.torch import load_file

from stylecraft.artifacts import read_jsonl
from stylecraft.models.loading import load_model
from stylecraft.train import early_stop
from stylecraft.train.loop import train


def test_observe_counts_evaluations_without_improvement():
    s = early_stop.new_state()
    assert early_stop.observe(s, 2.0, 1, 0.1)
    assert not early_stop.observe(s, 1.95, 2, 0.1)  # better, but by less than min_delta
    assert s["bad"] == 1 and not early_stop.should_stop(s, 2)
    assert not early_stop.observe(s, float("nan"), 3, 0.1)
    assert early_stop.should_stop(s, 2)
    assert early_stop.observe(s, 1.5, 4, 0.1) and s["bad"] == 0 and s["best_step"] == 4


# A min_delta no loss change can reach: every evaluation after the first is "no improvement", so
# the run stops after `patience` more evaluations, at step 1 + patience. A learning rate far too
# high makes step 1 the lowest validation loss, so the best checkpoint is not the last.
STOP = ("train.mode=full", "train.lr=0.5", "train.warmup_steps=0", "train.max_steps=20", "train.eval_every=1", "train.save_every=1", "train.keep_last=1",
        "train.early_stopping.enabled=true", "train.early_stopping.patience=2", "train.early_stopping.min_delta=100",
        "train.keep_best=true", "train.tensorboard=false", "train.eval_per_track=1")


def test_early_stopping_keeps_and_exports_the_best_checkpoint(fresh_run, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(fresh_run, again, symlinks=True)
    summary = train(fresh_run, mini_cfg(fresh_run, *STOP))
    rows = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["val_loss"] < min(rows[1]["val_loss"], rows[2]["val_loss"]), rows
    assert summary["stopped_at"] == 3
    ckpts = sorted(p.name for p in (fresh_run / "train" / "checkpoints").glob("step-*"))
    assert ckpts == ["step-0000001", "step-0000003"]  # the last one, and the best besides it
    state = json.loads((fresh_run / "train" / "checkpoints" / "step-0000003" / "trainer_state.json").read_text())
    assert state["early_stopping"] == {"best": rows[0]["val_loss"], "best_step": 1, "bad": 2, "stopped_at": 3}
    # The exported model holds the step-1 weights.
    best = load_file(str(fresh_run / "train" / "checkpoints" / "step-0000001" / "model.safetensors"))
    exported = load_model(str(fresh_run)).model.state_dict()
    key = "decoder.model.decoder.layers.0.fc1.weight"
    assert torch.equal(exported[key], best[key])
    last = load_file(str(fresh_run / "train" / "checkpoints" / "step-0000003" / "model.safetensors"))
    assert not torch.equal(exported[key], last[key])
    facts = json.loads((fresh_run / "model" / "stylecraft.json").read_text())["facts"]
    assert facts["weights_step"] == 1 and facts["stopped_at"] == 3
    assert "at step 3" in (fresh_run / "model" / "README.md").read_text()

    # Started again, a stopped run trains no further.
    train(fresh_run, mini_cfg(fresh_run, *STOP))
    assert [r["step"] for r in read_jsonl(fresh_run / "train" / "metrics.jsonl")] == [1, 2, 3]

    # Resumed from step 2 (bad count 1), it stops at the same step with the same losses.
    train(again, mini_cfg(again, *STOP, "train.keep_last=3"))
    shutil.rmtree(again / "train" / "checkpoints" / "step-0000003")
    shutil.rmtree(again / "model")
    train(again, mini_cfg(again, *STOP, "train.keep_last=3"))
    b = read_jsonl(again / "train" / "metrics.jsonl")
    assert [r["loss"] for r in b] == [r["loss"] for r in rows]


def test_changing_early_stopping_refuses_resume(fresh_run):
    from stylecraft.errors import StylecraftError

    train(fresh_run, mini_cfg(fresh_run, "train.max_steps=1", "train.tensorboard=false", "train.eval_per_track=1"))
    with pytest.raises(StylecraftError, match="train.early_stopping"):
        train(fresh_run, mini_cfg(fresh_run, "train.max_steps=2", "train.early_stopping.enabled=true"))
