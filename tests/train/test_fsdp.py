"""The loop under FSDP2 with the repository's FSDP config: two gloo processes on CPU (Accelerate's
device choice forced by fsdp_on_cpu.py), sharded checkpoints, exact resume, the same training as
DDP, LoRA, export."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stylecraft.artifacts import read_jsonl, sha256_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARGS = ["name=mini", "artist=demo artist", "train.lr=2e-3", "train.warmup_steps=2", "train.eval_per_track=4",
        "train.save_every=2", "train.eval_every=2", "train.batch_size=2", "train.keep_last=5", "train.max_steps=4"]


def _launch(run, *extra, ddp=False, ok=True):
    recipe = run / "mini.yaml"
    recipe.write_text("name: mini\nstages: [train]\n")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--mixed_precision", "no"]
    if ddp:
        launcher += ["--multi_gpu", "--num_machines", "1", "--dynamo_backend", "no", "-m", "stylecraft"]
    else:
        launcher += ["--config_file", str(ROOT / "recipes" / "accelerate" / "fsdp.yaml"), str(HERE / "fsdp_on_cpu.py")]
    cmd = [*launcher, "train", str(recipe), f"run_dir={run}", *ARGS, *extra]
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_fsdp_full_fine_tune_saves_shards_and_resumes_exactly(tokenized_run, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    shutil.copytree(tokenized_run, straight, symlinks=True)
    _launch(straight, "train.mode=full")
    prov = json.loads((straight / "model" / "stylecraft.json").read_text())
    assert prov["facts"]["distributed_type"] == "FSDP" and prov["facts"]["processes"] == 2
    ckpt = straight / "train" / "checkpoints" / "step-0000002"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    # Sharded state dicts: one file per rank for the model and the optimizer, each hashed.
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):
        shards = sorted(p.name for p in (ckpt / part).glob("*.distcp"))
        assert shards == ["__0_0.distcp", "__1_0.distcp"], part
        for shard in shards:
            assert state["files"][f"{part}/{shard}"] == sha256_file(ckpt / part / shard)
    assert len(state["param_checksums"]) == 2

    # The same run under DDP: FSDP's sharded steps train the same model.
    ddp = tmp_path / "ddp"
    shutil.copytree(tokenized_run, ddp, symlinks=True)
    _launch(ddp, "train.mode=full", ddp=True)
    by_fsdp, by_ddp = read_jsonl(straight / "train" / "metrics.jsonl"), read_jsonl(ddp / "train" / "metrics.jsonl")
    for x, y in zip(by_fsdp, by_ddp, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6) and x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-5)
        assert x.keys() == y.keys()
        if "val_loss" in y:
            assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-6)
    wf, wd = load_file(straight / "model" / "model.safetensors"), load_file(ddp / "model" / "model.safetensors")
    assert all(torch.allclose(wf[k], wd[k], atol=1e-6) for k in wf)

    # A run that lost everything after step 2 continues to the same losses and weights.
    shutil.copytree(straight, resumed, symlinks=True)
    for later in ("step-0000004",):
        shutil.rmtree(resumed / "train" / "checkpoints" / later)
    shutil.rmtree(resumed / "model")
    proc = _launch(resumed, "train.mode=full")
    assert "resuming from step-0000002" in proc.stdout + proc.stderr
    a = read_jsonl(straight / "train" / "metrics.jsonl")
    b = read_jsonl(resumed / "train" / "metrics.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    # Bit-identical on CPU, gradient norms included; only the wall-time fields differ.
    timing = ("step_s", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in a] == [
        {k: v for k, v in r.items() if k not in timing} for r in b
    ]
    wa = load_file(straight / "model" / "model.safetensors")
    wb = load_file(resumed / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_fsdp_lora_exports_adapter_and_merged_model(tokenized_run, tmp_path):
    from peft import PeftModel

    from stylecraft.models.loading import load_model

    run = tmp_path / "lora"
    shutil.copytree(tokenized_run, run, symlinks=True)
    _launch(run, "train.mode=lora", "train.lora.r=4", "train.export.lora=both")
    rows = read_jsonl(run / "train" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["grad_norm"] > 0 for r in rows)
    base = load_model("tiny").model
    merged = load_model(str(run)).model.state_dict()
    w = "decoder.model.decoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[w], base.state_dict()[w])  # the gathered LoRA update was merged
    tuned = PeftModel.from_pretrained(base, str(run / "model" / "adapter")).merge_and_unload()
    assert torch.allclose(tuned.state_dict()[w], merged[w], atol=1e-6)


@pytest.mark.slow
def test_fsdp_refuses_early_stopping_on_fad(tokenized_run, tmp_path):
    run = tmp_path / "fad"
    shutil.copytree(tokenized_run, run, symlinks=True)
    proc = _launch(run, "train.early_stopping.enabled=true", "train.early_stopping.metric=fad", "train.demo.every=1",
                   ok=False)
    assert "error: train.early_stopping.metric=fad needs demo generations" in proc.stderr
    assert not (run / "train" / "checkpoints").exists() or not any((run / "train" / "checkpoints").iterdir())
