"""Training resume refuses a checkpoint whose pickled state would run code."""

import json
import os

import pytest
from mini_run import mini_cfg

from stylecraft.artifacts import sha256_file
from stylecraft.errors import CheckpointError
from stylecraft.train.loop import train


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_malicious_optimizer_state(fresh_run, tmp_path):
    import torch

    cfg = mini_cfg(fresh_run, "train.max_steps=2", "train.save_every=1", "train.eval_every=2")
    train(fresh_run, cfg)
    step = sorted((fresh_run / "train" / "checkpoints").glob("step-*"))[-1]
    marker = tmp_path / "pwned"
    torch.save({"state": _Payload(marker)}, step / "optimizer.bin")
    # Altered without updating the record: refused before anything is unpickled.
    with pytest.raises(CheckpointError, match="differs from the sha256"):
        train(fresh_run, mini_cfg(fresh_run, "train.max_steps=3", "train.save_every=1", "train.eval_every=2"))
    # An attacker who also rewrote the record: torch.load(weights_only=True) refuses the payload.
    state = json.loads((step / "trainer_state.json").read_text())
    state["files"]["optimizer.bin"] = sha256_file(step / "optimizer.bin")
    (step / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="refusing checkpoint"):
        train(fresh_run, mini_cfg(fresh_run, "train.max_steps=3", "train.save_every=1", "train.eval_every=2"))
    assert not marker.exists()
