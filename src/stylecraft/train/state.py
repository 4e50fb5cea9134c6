"""The loop's own state (step, epoch position, best values, early stopping), saved with every
checkpoint and restored on resume, and the settings a resumed run must agree on."""

from __future__ import annotations

import json
from typing import Any

import torch

from stylecraft.artifacts import read_jsonl_tolerant, write_jsonl
from stylecraft.errors import StylecraftError
from stylecraft.progress import info
from stylecraft.train import early_stop
from stylecraft.train.checkpoints import STATE_FILE, list_checkpoints, load_checkpoint, save_checkpoint
from stylecraft.train.ema import EMA_FILE
from stylecraft.train.schedule import continue_phases
from stylecraft.train.session import Session, local

# Settings a run may change and still resume (train longer, save or evaluate at other intervals).
# Demos, TensorBoard and export settings only add outputs: demos sample inside fork_rng, so the
# training stream of random numbers does not depend on them.
RESUMABLE_CHANGES = (
    "max_steps", "save_every", "keep_last", "eval_every", "log_every",
    "demo", "tensorboard", "export", "keep_best",
)


def resume_settings(cfg: Any) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: the model and every other training setting."""
    from omegaconf import OmegaConf

    train = OmegaConf.to_container(cfg.train, resolve=True)
    assert isinstance(train, dict)
    kept = {"train." + str(k): v for k, v in train.items() if k not in RESUMABLE_CHANGES}
    return {"model.name": cfg.model.name, **kept}


def new_state(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "step": 0, "epoch": 0, "batches_in_epoch": 0, "best_val": None, "best_val_step": None,
        "early_stopping": early_stop.new_state(), "best_fad": None, "best_fad_step": None, "fad": None,
        "best_kad": None, "best_kad_step": None, "kad": None,
        "best_checkpoint": None, "settings": settings,
    }


def resume(s: Session) -> None:
    """Set ``s.state``: fresh, or from the newest complete checkpoint (weights, optimizer, RNG too).

    Raises:
        StylecraftError: the checkpoints were made with other settings.
        CheckpointError: the newest checkpoint is damaged.
    """
    settings = resume_settings(s.cfg)
    s.state = new_state(settings)
    s.state["schedule"] = s.phases  # the scheduler reads this list: restored and extended in place
    metrics = s.train_dir / "metrics.jsonl"
    done = list_checkpoints(s.ckpt_root)
    if not done:
        if s.accelerator.is_main_process and metrics.exists():
            metrics.unlink()  # no checkpoint: the old log belongs to a discarded start
        return
    last = done[-1]
    saved = json.loads((last / STATE_FILE).read_text())
    changed = sorted(k for k in settings if saved.get("settings", {}).get(k) != settings[k])
    if changed:
        raise StylecraftError(
            f"checkpoints in '{s.ckpt_root}' were made with other settings ({', '.join(changed)}): "
            "use a new run_dir, or delete its train/ to start over"
        )
    load_checkpoint(s.accelerator, last, saved)
    if s.ema is not None:
        s.ema.load(last / EMA_FILE)
    s.phases[:] = saved.pop("schedule", None) or s.phases[:1]  # checkpoints before phases: the one phase
    s.state = {**s.state, **saved}
    step = int(s.state["step"])
    if continue_phases(s.phases, step, int(s.t.max_steps), int(s.t.warmup_steps)):
        info(f"train: train.max_steps is now {s.t.max_steps}: a new schedule phase from step {step}, the rate "
             f"rising from {s.phases[-1]['begin']:.3g} x train.lr to train.lr over {s.phases[-1]['warmup']} steps, "
             f"then a cosine to 0 at step {s.t.max_steps}")
    if s.accelerator.is_main_process:
        kept = [r for r in read_jsonl_tolerant(metrics) if r.get("step", 0) <= s.state["step"]]
        write_jsonl(metrics, kept)
        info(f"train: resuming from {last.name}")


def save(s: Session, step: int) -> None:
    """Write checkpoint ``step-N`` (keeping the last ``train.keep_last`` and the best one)."""
    # One checksum of the trainable weights per rank: data parallelism must keep them equal.
    # Under FSDP each rank sums its own shards (the entries then add up to the whole).
    checksum = torch.stack([local(p).detach().double().sum() for p in s.params]).sum()
    s.state["param_checksums"] = s.accelerator.gather(checksum.to(s.accelerator.device)[None]).tolist()
    t = s.t
    protect = [s.state["best_checkpoint"]] if t.keep_best and s.state["best_checkpoint"] else []
    ema = s.ema
    extra = (lambda d: ema.save(d / EMA_FILE)) if ema is not None else None
    save_checkpoint(s.accelerator, s.ckpt_root, step, s.state, t.keep_last, extra=extra, protect=protect)


def restore_best(s: Session, step: int) -> int:
    """With ``train.keep_best``, load the best checkpoint's weights; returns the step the weights are from."""
    best_name = s.state["best_checkpoint"]
    if not (s.t.keep_best and best_name and best_name != f"step-{step:07d}"):
        return step
    best = s.ckpt_root / best_name
    if not (best / STATE_FILE).exists():
        return step
    load_checkpoint(s.accelerator, best, json.loads((best / STATE_FILE).read_text()))
    if s.ema is not None:
        s.ema.load(best / EMA_FILE)
    return int(best_name.split("-")[1])
