"""What ``accelerate launch`` asked for, checked before the loop forms its process group.

``accelerate launch`` passes the chosen config to each process through environment variables
(``ACCELERATE_USE_FSDP``, ``ACCELERATE_USE_DEEPSPEED``, ...). Accelerate selects FSDP or DeepSpeed
only on GPUs: on CPU it forms a plain gloo data-parallel group instead, without a word, so a run
asked to shard would replicate the whole model on every process. These checks turn such launches,
and a DeepSpeed choice without deepspeed installed, into one-line :class:`ConfigError`\\ s.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from stylecraft.errors import ConfigError


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "false").strip().lower() in ("1", "true", "yes")


def requested_backend(env: Mapping[str, str] | None = None) -> str | None:
    """``"FSDP"`` or ``"DeepSpeed"`` when the launch config chose one, else ``None`` (DDP or one process)."""
    env = os.environ if env is None else env
    if _flag(env, "ACCELERATE_USE_DEEPSPEED"):
        return "DeepSpeed"
    if _flag(env, "ACCELERATE_USE_FSDP"):
        return "FSDP"
    return None


def check_launch(train: Any, cuda: bool, env: Mapping[str, str] | None = None) -> None:
    """Refuse launches the loop cannot honour.

    Args:
        train: the recipe's ``train`` section (``grad_accum``, ``max_grad_norm`` are read).
        cuda: whether this process has a CUDA GPU.
        env: the environment to read (default ``os.environ``).

    Raises:
        ConfigError: FSDP or DeepSpeed chosen on a machine without CUDA GPUs, DeepSpeed chosen
            without the deepspeed package, or a DeepSpeed config whose gradient accumulation or
            clipping differs from the recipe's (Accelerate would silently take DeepSpeed's).
    """
    env = os.environ if env is None else env
    backend = requested_backend(env)
    if backend is None:
        return
    if backend == "DeepSpeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "the Accelerate config chooses DeepSpeed but the deepspeed package is not installed: "
            "`pip install deepspeed`, or launch with recipes/accelerate/fsdp.yaml or ddp.yaml"
        )
    if not cuda:
        raise ConfigError(
            f"the Accelerate config chooses {backend}, which Accelerate runs on CUDA GPUs only (on CPU it would "
            "silently replicate the model in a plain gloo group): on CPU launch with `--multi_gpu --num_processes N "
            "--mixed_precision no` instead"
        )
    if backend == "DeepSpeed":
        gas = env.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
        if gas is not None and gas.isdigit() and int(gas) != int(train.grad_accum):
            raise ConfigError(
                f"the DeepSpeed config accumulates {gas} micro-batches but train.grad_accum={train.grad_accum}: "
                "make them equal (or remove gradient_accumulation_steps from the config)"
            )
        clip = env.get("ACCELERATE_GRADIENT_CLIPPING")
        if clip not in (None, "auto", "none") and float(clip) != float(train.max_grad_norm):
            raise ConfigError(
                f"the DeepSpeed config clips gradients at {clip} but train.max_grad_norm={train.max_grad_norm}: "
                "make them equal"
            )
