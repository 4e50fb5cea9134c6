"""Launches the loop cannot honour end in one line: FSDP/DeepSpeed on CPU, DeepSpeed not installed,
a DeepSpeed config that disagrees with the recipe."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mini_run import mini_cfg

from stylecraft.errors import ConfigError
from stylecraft.train import launch_check
from stylecraft.train.launch_check import check_launch, requested_backend

ROOT = Path(__file__).resolve().parents[2]


def test_requested_backend_reads_what_accelerate_launch_sets():
    assert requested_backend({}) is None
    assert requested_backend({"ACCELERATE_USE_FSDP": "true"}) == "FSDP"
    assert requested_backend({"ACCELERATE_USE_FSDP": "false"}) is None
    assert requested_backend({"ACCELERATE_USE_DEEPSPEED": "True"}) == "DeepSpeed"


def test_fsdp_or_deepspeed_on_cpu_is_refused(tmp_path, monkeypatch):
    t = mini_cfg(tmp_path).train
    check_launch(t, cuda=False, env={})  # DDP or one process: nothing to say
    check_launch(t, cuda=True, env={"ACCELERATE_USE_FSDP": "true"})
    with pytest.raises(ConfigError, match=r"chooses FSDP, which Accelerate runs on CUDA GPUs only") as err:
        check_launch(t, cuda=False, env={"ACCELERATE_USE_FSDP": "true"})
    assert "\n" not in str(err.value)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "deepspeed" else None)
    with pytest.raises(ConfigError, match=r"chooses DeepSpeed, which Accelerate runs on CUDA GPUs only"):
        check_launch(t, cuda=False, env={"ACCELERATE_USE_DEEPSPEED": "true"})


def test_deepspeed_without_the_package_is_one_line(tmp_path, monkeypatch):
    t = mini_cfg(tmp_path).train
    monkeypatch.setattr(launch_check.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"deepspeed package is not installed: `pip install deepspeed`") as err:
        check_launch(t, cuda=True, env={"ACCELERATE_USE_DEEPSPEED": "true"})
    assert "\n" not in str(err.value)


def test_deepspeed_config_must_agree_with_the_recipe(tmp_path, monkeypatch):
    t = mini_cfg(tmp_path, "train.grad_accum=2", "train.max_grad_norm=0.5").train
    monkeypatch.setattr(launch_check.importlib.util, "find_spec", lambda name, *a: object())
    env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2",
           "ACCELERATE_GRADIENT_CLIPPING": "0.5"}
    check_launch(t, cuda=True, env=env)
    with pytest.raises(ConfigError, match=r"accumulates 1 micro-batches but train.grad_accum=2"):
        check_launch(t, cuda=True, env={**env, "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "1"})
    with pytest.raises(ConfigError, match=r"clips gradients at 1.0 but train.max_grad_norm=0.5"):
        check_launch(t, cuda=True, env={**env, "ACCELERATE_GRADIENT_CLIPPING": "1.0"})


def test_fsdp_config_launched_on_cpu_stops_with_one_line(tmp_path):
    """The repository's FSDP config, two processes, no GPU: each rank prints the same one line
    (Accelerate would otherwise form a gloo group without sharding)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nstages: [train]\n")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "recipes" / "accelerate" / "fsdp.yaml"), "--num_processes", "2",
           "-m", "stylecraft", "train", str(recipe), f"run_dir={tmp_path / 'run'}", "artist=x"]
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 2 and len(set(ours)) == 1, proc.stderr[-2000:]
    assert "chooses FSDP, which Accelerate runs on CUDA GPUs only" in ours[0]
    assert not (tmp_path / "run" / "train" / "checkpoints").exists()
