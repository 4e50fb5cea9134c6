"""Runs tab: a run's loss and validation curves, its demos per step, model card and verify status."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylecraft.artifacts import read_jsonl_tolerant, sha256_json
from stylecraft.errors import StylecraftError
from stylecraft.studio.settings import StudioSettings


@dataclass
class RunView:
    """What the Runs tab shows for one run."""

    run: Path
    curves: Path | None  # PNG of train and validation loss, None before the first step
    last: dict[str, Any]  # the last metrics row
    demo_steps: list[str]  # step folder names under train/demos, oldest first
    model_card: str
    verify_counts: dict[str, int]
    verify_problems: list[dict[str, str]] = field(default_factory=list)


def demo_steps(run: Path) -> list[str]:
    folder = run / "train" / "demos"
    return sorted(p.name for p in folder.glob("step-*") if (p / "manifest.json").is_file()) if folder.is_dir() else []


def demo_files(run: Path, step: str) -> list[tuple[Path, str]]:
    """A step's demo files and a label each (prompt, guidance scale, seed)."""
    folder = run / "train" / "demos" / step
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise StylecraftError(f"'{folder}' holds no demos (no manifest.json)")
    rows = json.loads(manifest.read_text())["files"]
    return [(folder / r["file"], f"{r['prompt']} · guidance {r['guidance_scale']:g} · seed {r['seed']}") for r in rows
            if (folder / r["file"]).is_file()]


def curves_png(run: Path, metrics: list[dict[str, Any]], settings: StudioSettings) -> Path | None:
    """The loss curves drawn by the training loop's own plot, cached by the metrics' content."""
    if not metrics:
        return None
    from stylecraft.train.loop import plot_losses

    out = settings.out_dir / "curves" / f"{sha256_json([str(run), metrics])[:16]}.png"
    return out if out.is_file() else plot_losses(metrics, out)


def view_run(run: Path, settings: StudioSettings) -> RunView:
    """Everything the Runs tab shows for ``run``."""
    from stylecraft.verify import summary, verify

    if not run.is_dir():
        raise StylecraftError(f"run folder '{run}' does not exist")
    metrics = [r for r in read_jsonl_tolerant(run / "train" / "metrics.jsonl") if "loss" in r] \
        if (run / "train" / "metrics.jsonl").is_file() else []
    card = run / "model" / "README.md"
    findings = verify(run)
    return RunView(
        run=run, curves=curves_png(run, metrics, settings), last=metrics[-1] if metrics else {},
        demo_steps=demo_steps(run),
        model_card=card.read_text(encoding="utf-8") if card.is_file() else "_No model card: the run has not exported a model yet._",
        verify_counts=summary(findings),
        verify_problems=[{"status": f.status, "path": f.path, "detail": f.detail} for f in findings if f.status != "ok"],
    )


def verify_markdown(view: RunView) -> str:
    """``stylecraft verify``'s verdict as a short Markdown block."""
    from stylecraft.verify import BAD

    bad = sum(n for k, n in view.verify_counts.items() if k in BAD)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(view.verify_counts.items())) or "nothing recorded"
    head = f"**verify: {'FAILED' if bad else 'OK'}** — {counts}"
    lines = [head, ""] + [f"- `{p['status']}` {p['path']} ({p['detail']})" for p in view.verify_problems[:20]]
    return "\n".join(lines)
