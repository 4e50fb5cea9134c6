"""The end of a training run: the weights to keep (best checkpoint, EMA), the export and the loss curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylecraft.artifacts import read_jsonl_tolerant
from stylecraft.models.loading import recipe_model
from stylecraft.train.export import ExportContext, export
from stylecraft.train.session import Session, apply_lora, sharded
from stylecraft.train.state import restore_best


def finish(s: Session, step: int, es_metric: str | None) -> dict[str, Any]:
    """Export the run's model to ``model/`` and plot its losses; returns the training summary."""
    t, state, acc = s.t, s.state, s.accelerator
    weights_step = restore_best(s, step)
    if s.ema is not None:
        s.ema.copy_to_params()  # the exported model is the average
    summary: dict[str, Any] = {"steps": step, "trainable_params": s.n_trainable, "best_val_loss": state["best_val"],
                               "stopped_at": state["early_stopping"]["stopped_at"], "best_fad": state["best_fad"]}
    acc.wait_for_everyone()
    if sharded(acc):
        full = acc.get_state_dict(s.model)  # a collective: every rank takes part
    if acc.is_main_process:
        out_model = acc.unwrap_model(s.model)
        if sharded(acc):
            # The sharded module cannot be saved by one process: rebuild it whole and load the gathered weights.
            fresh: Any = recipe_model(s.cfg, s.run).model
            if t.mode == "lora":
                fresh = apply_lora(fresh, t.lora)
            fresh.load_state_dict(full)
            out_model = fresh
        metrics = read_jsonl_tolerant(s.train_dir / "metrics.jsonl")
        facts = _facts(s, step, weights_step, es_metric, metrics)
        out = export(ExportContext(model=out_model, bundle=s.bundle, run=s.run, cfg=s.cfg, facts=facts))
        png = plot_losses(metrics, s.train_dir / "loss.png")
        summary.update(out)
        summary.update({"loss_plot": str(png), "final_loss": facts["final_loss"], "val_loss": facts["val_loss"]})
    acc.wait_for_everyone()
    s.trackers.close()
    return summary


def _facts(s: Session, step: int, weights_step: int, es_metric: str | None, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """What the model card and ``stylecraft.json`` say about the training."""
    t, state, acc = s.t, s.state, s.accelerator
    last_val: dict[str, Any] = next((r for r in reversed(metrics) if "val_loss" in r), {})
    return {
        "steps": step, "max_steps": int(t.max_steps), "weights_step": weights_step,
        "weights_from_best": weights_step != step, "stopped_at": state["early_stopping"]["stopped_at"],
        "early_stopping": dict(state["early_stopping"], metric=es_metric),
        "final_loss": metrics[-1]["loss"] if metrics else None,
        "val_loss": last_val.get("val_loss"), "val_ppl": last_val.get("val_ppl"),
        "best_val_loss": state["best_val"], "best_val_step": state["best_val_step"],
        "fad": state["fad"], "best_fad": state["best_fad"], "best_fad_step": state["best_fad_step"],
        "kad": state.get("kad"), "best_kad": state.get("best_kad"), "best_kad_step": state.get("best_kad_step"),
        "fad_embedding": str(t.early_stopping.embedding) if es_metric in ("fad", "kad") else None,
        "ema": {"enabled": bool(t.ema.enabled), "decay": float(t.ema.decay), "warmup": bool(t.ema.warmup),
                "updates": s.ema.updates if s.ema is not None else 0, "use_for_eval": bool(t.ema.use_for_eval)},
        "precision": s.precision, "gradient_checkpointing": bool(t.gradient_checkpointing),
        "dropout": t.dropout, "processes": acc.num_processes,
        "distributed_type": str(acc.distributed_type).split(".")[-1],
        "trainable_params": s.n_trainable,
    }


def plot_losses(metrics: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stylecraft.artifacts import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [r["step"] for r in metrics]
    ax.plot(steps, [r["loss"] for r in metrics], label="train loss", lw=1.2)
    val = [(r["step"], r["val_loss"]) for r in metrics if r.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats, mean over codebooks)")
    ax.set_title("stylecraft training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
