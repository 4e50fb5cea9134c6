"""The Accelerate loop: metrics, both modes learn, export, and exact resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mini_run import MINI, mini_cfg

from stylecraft.artifacts import read_jsonl
from stylecraft.models.loading import load_model
from stylecraft.train.loop import train


def _val_losses(run):
    return [r["val_loss"] for r in read_jsonl(run / "train" / "metrics.jsonl") if "val_loss" in r]


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_training_lowers_validation_loss(fresh_run, mode):
    extra = ["train.lora.r=8", "train.lr=5e-3"] if mode == "lora" else []
    cfg = mini_cfg(fresh_run, f"train.mode={mode}", "train.max_steps=24", "train.eval_every=4", "train.save_every=12", *extra)
    summary = train(fresh_run, cfg)
    val = _val_losses(fresh_run)
    assert len(val) == 6
    assert val[-1] < val[0] - 0.1, val
    rows = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 25))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    # The exported model loads by run folder and differs from the base preset.
    tuned = load_model(str(fresh_run)).model
    base = load_model("tiny").model
    w = "decoder.model.decoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(tuned.state_dict()[w], base.state_dict()[w])
    if mode == "lora":
        assert (fresh_run / "model" / "adapter" / "adapter_config.json").exists()
        assert summary["trainable_params"] < 0.05 * sum(p.numel() for p in base.parameters())
    assert (fresh_run / "train" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    prov = json.loads((fresh_run / "model" / "stylecraft.json").read_text())
    assert prov["steps"] == 24 and prov["tokens_index_sha256"]


def test_gradient_accumulation_logs_optimizer_steps(fresh_run):
    cfg = mini_cfg(fresh_run, "train.grad_accum=2", "train.batch_size=2", "train.max_steps=3", "train.eval_every=10")
    train(fresh_run, cfg)
    rows = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert "val_loss" in rows[-1]  # the final step is always evaluated
    ckpts = sorted(p.name for p in (fresh_run / "train" / "checkpoints").iterdir())
    assert ckpts == ["step-0000003"]


def _train_cmd(run):
    recipe = run / "mini.yaml"
    recipe.write_text("name: mini\nstages: [train]\n")
    args = [a for a in MINI if not a.startswith("stages=")]
    args += [f"run_dir={run}", "train.mode=full", "train.max_steps=14",
             "train.save_every=2", "train.keep_last=2", "train.eval_every=7", "train.cond_dropout=0.3"]
    return [sys.executable, "-m", "stylecraft", "train", str(recipe), *args]


def test_sigkill_and_resume_gives_identical_losses(tokenized_run, tmp_path):
    import shutil

    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for d in (straight, killed):
        shutil.copytree(tokenized_run, d, symlinks=True)
    subprocess.run(_train_cmd(straight), check=True, env=env, capture_output=True, timeout=300)

    proc = subprocess.Popen(_train_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "train" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model" / "model.safetensors").exists(), "the run finished before it was killed"
    done = sorted(p.name for p in (killed / "train" / "checkpoints").glob("step-*"))
    assert done, "no checkpoint was written before the kill"

    subprocess.run(_train_cmd(killed), check=True, env=env, capture_output=True, timeout=300)
    a = read_jsonl(straight / "train" / "metrics.jsonl")
    b = read_jsonl(killed / "train" / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, 15))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # bit-identical on CPU
    assert [r.get("val_loss") for r in a] == [r.get("val_loss") for r in b]
    sa = load_model(str(straight)).model.state_dict()
    sb = load_model(str(killed)).model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not list((killed / "train" / "checkpoints").glob(".*partial"))


def test_two_process_data_parallel_on_cpu(tokenized_run, tmp_path):
    """`accelerate launch --multi_gpu` with two gloo processes: one log, equal weights on both ranks."""
    import shutil

    run = tmp_path / "ddp"
    shutil.copytree(tokenized_run, run, symlinks=True)
    cmd = _train_cmd(run)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "stylecraft"]
    args = cmd[cmd.index("train"):]
    args = [a if not a.startswith("train.max_steps") else "train.max_steps=4" for a in args]
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(launch + args + ["train.batch_size=2"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_jsonl(run / "train" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # logged once, by the main process
    for ckpt in (run / "train" / "checkpoints").glob("step-*"):
        state = json.loads((ckpt / "trainer_state.json").read_text())
        sums = state["param_checksums"]
        assert len(sums) == 2 and sums[0] == sums[1]
        assert (ckpt / "random_states_1.pkl").exists()
    assert (run / "model" / "model.safetensors").exists()


def test_resume_refuses_checkpoints_made_with_other_settings(fresh_run):
    from stylecraft.errors import StylecraftError

    train(fresh_run, mini_cfg(fresh_run, "train.max_steps=2", "train.save_every=2"))
    # Training longer is a resume...
    train(fresh_run, mini_cfg(fresh_run, "train.max_steps=3", "train.save_every=2"))
    assert [r["step"] for r in read_jsonl(fresh_run / "train" / "metrics.jsonl")] == [1, 2, 3]
    # ...a different mode or learning rate is not.
    with pytest.raises(StylecraftError, match=r"other settings \(train.lr, train.mode\)"):
        train(fresh_run, mini_cfg(fresh_run, "train.max_steps=4", "train.mode=full", "train.lr=0.01"))
