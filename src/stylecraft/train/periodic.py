"""What the loop does every so many steps: validation, demos (and their FAD), early stopping and
choosing the best checkpoint."""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast
from torch.utils.data import DataLoader

from stylecraft.data.manifest import run_caption
from stylecraft.models.loading import ModelBundle
from stylecraft.progress import info
from stylecraft.train import early_stop
from stylecraft.train.conditioning import TextConditioner, item_losses
from stylecraft.train.demos import FadScorer, demo_guidance_scale, generate_demos
from stylecraft.train.session import Session, sharded


@torch.no_grad()
def evaluate(model: torch.nn.Module, cond: TextConditioner, loader: DataLoader, accelerator: Any) -> tuple[float, dict[str, float]]:
    """Mean held-out loss over the whole validation set, and the mean per track (every process
    gets the same figures: per-item losses are gathered with their positions)."""
    model.eval()
    losses, positions = [], []
    for batch in loader:
        loss, index = accelerator.gather_for_metrics((item_losses(model, cond, batch), batch["index"].to(accelerator.device)))
        losses.append(loss.double().cpu())
        positions.append(index.cpu())
    model.train()
    if not losses:
        return float("nan"), {}
    loss_all, pos_all = torch.cat(losses), torch.cat(positions)
    tracks = loader.dataset.tracks  # type: ignore[attr-defined]  # a ValidationSet
    sums: dict[str, list[float]] = {}
    for value, pos in zip(loss_all.tolist(), pos_all.tolist(), strict=True):
        sums.setdefault(tracks[pos], []).append(value)
    per_track = {track: sum(v) / len(v) for track, v in sorted(sums.items())}
    return float(loss_all.mean()), per_track


def _write_validation_set(valid: Any, per_track: int, path: Path) -> None:
    """Which held-out windows validation uses, by track (the same on every start of the run)."""
    from stylecraft.artifacts import atomic_write_json

    by_track: dict[str, list[str]] = {}
    for track, item in zip(valid.tracks, valid.ids, strict=True):
        by_track.setdefault(track, []).append(item)
    atomic_write_json(path, {"eval_per_track": per_track, "windows": len(valid.ids), "tracks": by_track})


class Periodic:
    """Validation, demos, early stopping and best-checkpoint bookkeeping of one session."""

    def __init__(self, s: Session) -> None:
        self.s = s
        t = s.t
        es = t.early_stopping
        self.es_metric = es.metric if es.enabled else None
        self.best_metric = self.es_metric or "val_loss"  # what keep_best ranks checkpoints by
        self.demo_every = int(t.demo.every)
        if self.demo_every and sharded(s.accelerator):
            info("train: warning: demo generations are skipped under FSDP/DeepSpeed (sampling needs the whole model "
                 "on one process)")
            self.demo_every = 0
        self.demo_prompts = list(t.demo.prompts) or [run_caption(s.run, s.cfg.artist)]
        if s.accelerator.is_main_process:
            _write_validation_set(s.valid_loader.dataset, int(t.eval_per_track), Path(s.train_dir) / "validation.json")
        self.fad_scorer: FadScorer | None = None
        if self.es_metric in ("fad", "kad") and s.accelerator.is_main_process:
            self.fad_scorer = FadScorer(s.run, str(es.embedding), int(s.cfg.segment.sample_rate),
                                        float(s.cfg.segment.loudness_lufs), demo_guidance_scale(s.cfg))
            # A missing held-out set, or FAD on too few rows, fails now, not after the first demo steps.
            self.fad_scorer.check_rows(self.es_metric, len(self.demo_prompts) * len(t.demo.seeds),
                                       float(t.demo.duration_s), s.bundle.sample_rate)
            self.fad_scorer.reference()

    def validate(self) -> tuple[float, dict[str, float]]:
        s = self.s
        with s.ema.applied() if s.ema is not None and s.t.ema.use_for_eval else nullcontext():
            return evaluate(s.model, s.cond, s.valid_loader, s.accelerator)

    def demos(self, step: int) -> tuple[float | None, dict[str, float]]:
        """Sample the demos (main process); return the early-stopping metric and the logged scores."""
        s, t = self.s, self.s.t
        acc = s.accelerator
        fad = None
        logged: dict[str, float] = {}
        if acc.is_main_process:
            unwrapped = acc.unwrap_model(s.model)
            demo_bundle = ModelBundle(model=unwrapped, tokenizer=s.bundle.tokenizer, name=s.bundle.name,
                                      source=s.bundle.source)
            use_ema = s.ema is not None and t.ema.use_for_eval
            with (s.ema.applied() if use_ema and s.ema is not None else nullcontext()), acc.autocast():
                result = generate_demos(
                    demo_bundle, Path(s.train_dir) / "demos" / f"step-{step:07d}", self.demo_prompts,
                    list(t.demo.seeds), list(t.demo.guidance_scales), float(t.demo.duration_s), int(t.demo.top_k), step,
                )
            for stem, wav in result.audio.items():
                s.trackers.audio(f"demo/{stem}", wav, step, result.sample_rate)
            if self.fad_scorer is not None and self.es_metric is not None:
                scores = self.fad_scorer.score(result)
                fad, logged = scores.value(self.es_metric), scores.row()
        if self.fad_scorer is not None or self.es_metric in ("fad", "kad"):
            # Every rank must take the same stop decision: the main process's value is broadcast.
            value = torch.tensor([fad if fad is not None else float("nan")], dtype=torch.float64, device=acc.device)
            fad = float(broadcast(value, from_process=0).item())
        acc.wait_for_everyone()
        return fad, logged

    def _observe_demos(self, step: int, row: dict[str, Any]) -> bool:
        """Sample demos, log FAD/KAD per guidance scale into ``row``; True when one is a new best."""
        state, es = self.s.state, self.s.t.early_stopping
        value, logged = self.demos(step)
        if self.es_metric in ("fad", "kad") and value is not None:
            logged[self.es_metric] = value  # every rank has the broadcast early-stopping value
        row.update(logged)  # and the main process fad and kad per guidance scale
        new_best = False
        for name in ("fad", "kad"):
            if name not in logged:
                continue
            state[name] = logged[name]
            if math.isfinite(logged[name]) and (state[f"best_{name}"] is None or logged[name] < state[f"best_{name}"]):
                state[f"best_{name}"], state[f"best_{name}_step"] = logged[name], step
                new_best = new_best or self.best_metric == name
            if self.es_metric == name:
                early_stop.observe(state["early_stopping"], logged[name], step, float(es.min_delta))
        return new_best

    def after_step(self, step: int, row: dict[str, Any]) -> tuple[bool, bool]:
        """Validate, sample demos and observe early stopping at ``step``; fills ``row``.

        Returns:
            (a new best checkpoint, training should stop)
        """
        t, state = self.s.t, self.s.state
        es = t.early_stopping
        new_best = False
        if step % t.eval_every == 0 or step == t.max_steps:
            val, per_track = self.validate()
            row["val_loss"] = val
            row["val_tracks"] = per_track
            row["val_ppl"] = math.exp(val) if math.isfinite(val) else None
            if math.isfinite(val) and (state["best_val"] is None or val < state["best_val"]):
                state["best_val"], state["best_val_step"] = val, step
                new_best = self.best_metric == "val_loss"
            if self.es_metric == "val_loss":
                early_stop.observe(state["early_stopping"], val, step, float(es.min_delta))
        if self.demo_every and step % self.demo_every == 0:
            new_best = self._observe_demos(step, row) or new_best
        stop = bool(self.es_metric and early_stop.should_stop(state["early_stopping"], int(es.patience)))
        if stop:
            state["early_stopping"]["stopped_at"] = step
            info(f"train: early stopping at step {step}: {self.es_metric} has not improved for "
                 f"{es.patience} evaluation(s) (best {state['early_stopping']['best']} at step "
                 f"{state['early_stopping']['best_step']})")
        if t.keep_best and new_best:
            state["best_checkpoint"] = f"step-{step:07d}"
        return new_best, stop
