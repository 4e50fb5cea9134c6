"""Which fine-tuning settings make stylecraft-mini better on an artist it never heard.

    python eval/finetune_ablation.py [--artists drascula colobot] [--clips 32] [--rows ...]

Each row fine-tunes stylecraft-mini with ``recipes/mini-finetune.yaml`` plus the row's overrides
on one test soundtrack (``eval/data/mini/test/<artist>``, held out of the base model's corpus),
then reports the held-out perplexity (the run's own validation over its held-out tracks) and
FAD and KAD (mfcc, bootstrap 95% intervals over generated files) of ``--clips`` unwatermarked
clips of 10 s against the artist's held-out tracks. Rows:

* ``baseline``: full fine-tuning, augmentation off, condition dropout 0.1 (the recipe);
* ``aug-all``: augmentation on at the default share (6 variants to 1 window);
* ``aug-small``: augmentation on at a share of 0.25;
* ``lora``: LoRA instead of full fine-tuning;
* ``dropout-0``: condition dropout 0.

Runs live in ``eval/data/ablation/<artist>/<row>`` and are skipped when finished, so the script
resumes. Results: ``eval/results/finetune_ablation.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "eval" / "mini"))
from report import RESULTS, _ci, _generate, _held_out, _score, finetune  # noqa: E402

ROWS: dict[str, list[str]] = {
    "baseline": [],
    "aug-all": ["augment.enabled=true"],
    "aug-small": ["augment.enabled=true", "augment.share=0.25"],
    "lora": ["train.mode=lora", "train.lr=1e-3"],
    "dropout-0": ["train.cond_dropout=0.0"],
}


def run_row(artist: str, row: str, clips: int, extra: list[str]) -> dict[str, Any]:
    from stylecraft.data.manifest import run_caption

    # Every row starts from the baseline's prepared data; the pipeline redoes what a row changes
    # (augmentation rows: the augment stage, and tokenize for the new variants only).
    prepared = ROOT / "eval" / "data" / "ablation" / artist / "baseline" if row != "baseline" else None
    run = finetune(artist, row, (*ROWS[row], *extra), prepared)
    facts = json.loads((run / "model" / "stylecraft.json").read_text()).get("facts", {})
    val = facts.get("best_val_loss") or facts.get("val_loss")
    gen = _generate(str(run), [run_caption(run, artist)], clips, run / "clips")
    held = _held_out(run, run / "held_out")
    score = _score(held, gen, "mfcc", run / "score_mfcc.json")
    return {"artist": artist, "row": row, "overrides": ROWS[row], "steps": facts.get("steps"),
            "weights_step": facts.get("weights_step"), "val_loss": val, "perplexity": math.exp(val) if val else None,
            **score}


def markdown(rows: list[dict[str, Any]], clips: int, extra: list[str]) -> str:
    lines = ["# Fine-tuning ablation (stylecraft-mini on test soundtracks it never heard)", "",
             f"Machine: {platform.machine()}, Python {platform.python_version()}. {clips} clips of 10 s per row; FAD and KAD "
             "(mfcc) against the artist's held-out tracks with bootstrap 95% intervals over generated files. "
             f"Every row: `recipes/mini-finetune.yaml` {' '.join(extra) or '(as it is)'} plus the row's overrides.", "",
             "| artist | row | overrides | steps (weights from) | held-out perplexity | FAD | KAD |",
             "|---|---|---|---|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['artist']} | {r['row']} | {' '.join(r['overrides']) or '-'} | {r['steps']} ({r['weights_step']}) | "
                     f"{r['perplexity']:.1f} | {_ci(r['fad'], r['fad_ci'])} | {_ci(r['kad'], r['kad_ci'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artists", nargs="+", default=["drascula", "colobot"])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--set", nargs="*", default=[], help="extra recipe overrides for every row (e.g. train.max_steps=100)")
    args = ap.parse_args()
    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in args.rows:  # every artist per row first; the tables are rewritten after each row
        for a in args.artists:
            rows.append(run_row(a, r, args.clips, args.set))
            atomic_write_json(RESULTS / "finetune_ablation.json", {"clips": args.clips, "extra": args.set, "rows": rows})
            atomic_write_text(RESULTS / "finetune_ablation.md", markdown(rows, args.clips, args.set))
    print(RESULTS / "finetune_ablation.md")


if __name__ == "__main__":
    main()
