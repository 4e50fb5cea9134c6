"""The Accelerate training loop: LoRA or full fine-tuning of MusicGen's decoder on token shards.

One ``prepare()`` (:mod:`~stylecraft.train.session`), ``accumulate()`` for gradient accumulation,
``save_state`` into a step folder written beside its final name and renamed, and ``load_state`` +
``skip_first_batches`` to resume (:mod:`~stylecraft.train.state`): a run started again with the
same command continues where its last checkpoint left off. Validation, demos and early stopping
are :mod:`~stylecraft.train.periodic`; the export is :mod:`~stylecraft.train.finish`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from stylecraft.artifacts import append_jsonl
from stylecraft.models.loading import ModelBundle
from stylecraft.progress import make_progress
from stylecraft.train import speed
from stylecraft.train.conditioning import TextConditioner, loss_on_batch, pad_states
from stylecraft.train.data import EpochSampler, TrainData, default_data
from stylecraft.train.finish import finish, plot_losses
from stylecraft.train.periodic import Periodic, evaluate
from stylecraft.train.session import (
    Session,
    Trackers,
    apply_lora,
    build_session,
    resolve_precision,
    set_dropout,
)
from stylecraft.train.state import RESUMABLE_CHANGES, resume, resume_settings, save

__all__ = [
    "RESUMABLE_CHANGES", "EpochSampler", "TextConditioner", "TrainData", "apply_lora", "default_data", "evaluate",
    "loss_on_batch", "pad_states", "plot_losses", "resolve_precision", "resume_settings", "set_dropout", "train",
]
_set_dropout = set_dropout  # the name older callers use
_apply_lora = apply_lora


def train(
    run_dir: str | Path,
    cfg: Any,
    *,
    data_fn: Callable[[Path], TrainData] = default_data,
    bundle: ModelBundle | None = None,
) -> dict[str, Any]:
    """Fine-tune ``cfg.model.name`` on the run's tokens; resume from the newest complete checkpoint.

    Writes ``train/metrics.jsonl`` (one JSON line per optimizer step), ``train/checkpoints/step-N``,
    ``train/loss.png``, ``train/tensorboard/`` (``train.tensorboard``), demo audio in
    ``train/demos/step-N/`` (``train.demo.every``) and the model in ``model/`` (see
    :mod:`stylecraft.train.export`): the EMA weights when ``train.ema.enabled``, the best
    checkpoint's when ``train.keep_best``.

    Returns:
        A summary: steps, final train and validation loss, paths.
    """
    with speed.process_flags_restored():
        return _train(Path(run_dir), cfg, data_fn, bundle)


def _train(run: Path, cfg: Any, data_fn: Callable[[Path], TrainData], bundle: ModelBundle | None) -> dict[str, Any]:
    s = build_session(run, cfg, data_fn, bundle)
    resume(s)
    t, state, acc = s.t, s.state, s.accelerator
    s.trackers = Trackers(acc, bool(t.tensorboard), str(cfg.name), int(state["step"]))
    periodic = Periodic(s)
    step = state["step"]
    stopped = state["early_stopping"]["stopped_at"] is not None
    s.model.train()
    step_start = time.perf_counter()  # wall time per optimizer step (logged only, never compared)
    with make_progress() as prog:
        task = prog.add_task("train", total=t.max_steps, completed=step)
        while step < t.max_steps and not stopped:
            losses: list[torch.Tensor] = []
            for batch in _epoch_batches(s):
                loss, grad_norm = optimisation_step(s, batch, step)
                losses.append(loss)
                if not acc.sync_gradients:
                    continue
                if s.ema is not None and not acc.optimizer_step_was_skipped:
                    s.ema.update()
                step += 1
                state["step"] = step
                row = _row(s, step, losses, grad_norm, batch, time.perf_counter() - step_start)
                losses = []
                new_best, stopped = periodic.after_step(step, row)
                if step % t.log_every == 0 or "val_loss" in row or "fad" in row or "kad" in row:  # TensorBoard follows the same rule
                    if acc.is_main_process:
                        append_jsonl(s.train_dir / "metrics.jsonl", row)
                    s.trackers.scalars(row, step)
                prog.advance(task)
                if step % t.save_every == 0 or step == t.max_steps or stopped or (t.keep_best and new_best):
                    save(s, step)
                step_start = time.perf_counter()  # evaluation, demos and saving are not the next step's time
                if step >= t.max_steps or stopped:
                    break
    return finish(s, step, periodic.es_metric)


def _epoch_batches(s: Session) -> Iterator[dict[str, Any]]:
    """The rest of the current epoch's batches, from where a resumed run stopped (the epoch position
    itself moves in :func:`optimisation_step`)."""
    state = s.state
    s.train_loader.set_epoch(state["epoch"])
    skip = state["batches_in_epoch"]
    loader = s.accelerator.skip_first_batches(s.train_loader, skip) if skip else s.train_loader
    yield from loader


def optimisation_step(s: Session, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, Any]:
    """Forward, backward and (when gradients are synchronised) clip and step; returns the micro-batch
    loss and the gradient norm (None on accumulation-only micro-batches)."""
    t, acc, state = s.t, s.accelerator, s.state
    with acc.accumulate(s.model):
        key = (t.seed, step, state["batches_in_epoch"], state["epoch"], acc.process_index)
        loss = loss_on_batch(s.model, s.cond, batch, t.cond_dropout, key)
        acc.backward(loss)
        grad_norm = None
        if acc.sync_gradients:
            grad_norm = acc.clip_grad_norm_(s.params, t.max_grad_norm)
        s.optimizer.step()
        s.scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
    state["batches_in_epoch"] += 1
    if state["batches_in_epoch"] >= len(s.train_loader):  # the sampler replays by (seed, epoch)
        state["epoch"] += 1
        state["batches_in_epoch"] = 0
    return loss.detach(), grad_norm


def _row(s: Session, step: int, losses: list[torch.Tensor], grad_norm: Any, batch: dict[str, Any], step_s: float) -> dict[str, Any]:
    """The metrics line of one optimizer step (loss averaged over micro-batches and processes)."""
    acc, t = s.accelerator, s.t
    row: dict[str, Any] = {
        "step": step,
        "loss": acc.reduce(torch.stack(losses).mean(), reduction="mean").item(),
        "lr": s.scheduler.get_last_lr()[0],
        "grad_norm": float(grad_norm) if grad_norm is not None else None,
        "epoch": s.state["epoch"],
        "step_s": step_s,
    }
    row["tokens_per_s"] = int((batch["labels"] != -100).sum()) * t.grad_accum * acc.num_processes / step_s
    return row
