"""The trained model out of the loop: weights by format, LoRA adapters, a model card, provenance.

``train.export.formats`` names the writers to run; each is a function registered in
:data:`EXPORTERS` under its name (``transformers``: ``save_pretrained`` into ``model/``). A name
without a writer is a :class:`ConfigError` before anything is written.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylecraft.artifacts import (
    atomic_write_json,
    atomic_write_text,
    files_sha256,
    read_jsonl_tolerant,
    replace_dir,
    sha256_file,
)
from stylecraft.data.manifest import caption_facts
from stylecraft.errors import ConfigError
from stylecraft.models.loading import ModelBundle


@dataclass
class ExportContext:
    """What an exporter gets: the trained model (a PeftModel with LoRA) and the run's facts."""

    model: Any
    bundle: ModelBundle
    run: Path
    cfg: Any
    facts: dict[str, Any] = field(default_factory=dict)  # steps, metrics, precision, EMA, ...


Exporter = Callable[[ExportContext], dict[str, Any]]
EXPORTERS: dict[str, Exporter] = {}


def register_exporter(name: str, fn: Exporter) -> None:
    EXPORTERS[name] = fn


def export(ctx: ExportContext) -> dict[str, Any]:
    """Run every exporter named in ``train.export.formats``, in order.

    Raises:
        ConfigError: a format without an exporter.
    """
    formats = list(ctx.cfg.train.export.formats)
    unknown = [f for f in formats if f not in EXPORTERS]
    if unknown:
        raise ConfigError(
            f"train.export.formats: no exporter for {', '.join(unknown)} (known: {', '.join(sorted(EXPORTERS))})"
        )
    out: dict[str, Any] = {}
    for name in formats:
        out.update(EXPORTERS[name](ctx))
    return out


def _files(folder: Path) -> dict[str, str]:
    return files_sha256(folder, exclude=("stylecraft.json",))


def data_facts(run: Path) -> dict[str, Any]:
    """The training data a model card cites: the token index hash and the tracks behind it.

    Each split lists its tracks' sha256 and one digest of them (sha256 of the sorted hashes, one
    per line), which names the audio independently of file names and folders.
    """
    index = run / "tokens" / "index.jsonl"
    tracks = read_jsonl_tolerant(run / "tracks.jsonl") if (run / "tracks.jsonl").exists() else []
    by_split: dict[str, dict[str, Any]] = {}
    for t in tracks:
        s = by_split.setdefault(str(t.get("split")), {"tracks": 0, "hours": 0.0, "track_sha256": []})
        s["tracks"] += 1
        s["hours"] += float(t.get("duration_s", 0.0)) / 3600.0
        s["track_sha256"].append(str(t.get("sha256")))
    for s in by_split.values():
        s["track_sha256"].sort()
        s["sha256"] = hashlib.sha256("\n".join(s["track_sha256"]).encode()).hexdigest()
    return {"tokens_index_sha256": sha256_file(index) if index.exists() else None, "tracks": by_split}


def _fmt(x: Any, digits: int = 4) -> str:
    return "n/a" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _ema_text(ema: dict[str, Any]) -> str:
    if not ema.get("enabled"):
        return "off"
    warmup = ", warm-up min(decay, (1 + n) / (10 + n))" if ema.get("warmup") else ", no warm-up"
    return f"decay {ema.get('decay')}{warmup}, {ema.get('updates')} updates"


def model_card(prov: dict[str, Any]) -> str:
    """``README.md`` of the exported model: what it was trained from, how, and how well."""
    f = prov["facts"]
    tracks = prov["data"]["tracks"]
    train_t = tracks.get("train", {"tracks": 0, "hours": 0.0})
    valid_t = tracks.get("valid", {"tracks": 0, "hours": 0.0})
    ema = f.get("ema") or {}
    lines = [
        f"# {prov['name']}",
        "",
        f"Fine-tuned from `{prov['base_model']}` (loaded from `{prov['base_source']}`) with stylecraft "
        f"{prov['stylecraft']}, {prov['mode']} fine-tuning.",
        "",
        "| | |",
        "|---|---|",
        f"| optimizer steps | {f.get('steps')} (of train.max_steps={f.get('max_steps')}) |",
        f"| stopped early | {'at step ' + str(f['stopped_at']) if f.get('stopped_at') else 'no'} |",
        f"| weights exported | step {f.get('weights_step')}{' (best checkpoint)' if f.get('weights_from_best') else ''}"
        f"{', EMA average' if ema.get('enabled') else ''} |",
        f"| EMA | {_ema_text(ema)} |",
        f"| precision | {f.get('precision')} |",
        f"| gradient checkpointing | {f.get('gradient_checkpointing')} |",
        f"| processes | {f.get('processes')} ({f.get('distributed_type')}) |",
        f"| training data | {train_t['tracks']} tracks, {train_t['hours']:.3f} h |",
        f"| training tracks sha256 (of their sorted sha256) | `{train_t.get('sha256', 'n/a')}` |",
        f"| held-out data | {valid_t['tracks']} tracks, {valid_t['hours']:.3f} h |",
        f"| held-out tracks sha256 (of their sorted sha256) | `{valid_t.get('sha256', 'n/a')}` |",
        f"| tokens index sha256 | `{prov['data']['tokens_index_sha256']}` |",
        *_caption_rows(prov),
        f"| final train loss | {_fmt(f.get('final_loss'))} |",
        f"| final validation loss / perplexity | {_fmt(f.get('val_loss'))} / {_fmt(f.get('val_ppl'), 2)} |",
        f"| best validation loss (step) | {_fmt(f.get('best_val_loss'))} ({_fmt(f.get('best_val_step'))}) |",
        f"| FAD of the last demos vs held-out tracks ({f.get('fad_embedding') or '-'}) | {_fmt(f.get('fad'))} |",
        f"| best FAD (step) | {_fmt(f.get('best_fad'))} ({_fmt(f.get('best_fad_step'))}) |",
        f"| KAD of the last demos vs held-out tracks | {_fmt(f.get('kad'))} |",
        f"| best KAD (step) | {_fmt(f.get('best_kad'))} ({_fmt(f.get('best_kad_step'))}) |",
        "",
        "Validation losses are cross-entropy in nats averaged over the codebooks"
        f"{', computed with the EMA weights' if ema.get('enabled') and ema.get('use_for_eval') else ''}. "
        "The sha256 of every file in this folder, and the full recipe, are in `stylecraft.json`.",
        "",
    ]
    caps = prov.get("captions") or {}
    if caps.get("default_prompt"):
        lines += [f"Prompt it with captions like those it was trained on, e.g. `{caps['default_prompt']}` "
                  "(the prompt of the recipe's generate stage and of the training demos when they name none).", ""]
    if prov.get("adapter"):
        lines += ["The LoRA adapter alone is in `adapter/` (peft, safetensors): load it onto the base model "
                  "with `peft.PeftModel.from_pretrained(base, 'adapter')`.", ""]
    return "\n".join(lines)


def _caption_rows(prov: dict[str, Any]) -> list[str]:
    caps = prov.get("captions")
    if not caps:
        return []
    examples = "; ".join(f"`{c}`" for c in caps.get("examples", [])[:3])
    return [f"| captions ({caps.get('mode', 'n/a')}) | {caps.get('distinct', 0)} distinct over the training tracks"
            f"{', e.g. ' + examples if examples else ''} |"]


def export_transformers(ctx: ExportContext) -> dict[str, Any]:
    """``model/``: merged weights (``save_pretrained``, safetensors) and/or the LoRA adapter,
    the tokenizer, ``README.md`` and ``stylecraft.json``; written beside it and renamed."""
    from omegaconf import OmegaConf

    import stylecraft

    run, cfg, model = ctx.run, ctx.cfg, ctx.model
    final = run / "model"
    tmp = run / ".model.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    lora_mode = cfg.train.export.lora
    is_peft = hasattr(model, "merge_and_unload")
    adapter = is_peft and lora_mode in ("adapter", "both")
    if adapter:
        model.save_pretrained(tmp / "adapter", safe_serialization=True)
    if not is_peft or lora_mode in ("merged", "both"):
        merged = model.merge_and_unload() if is_peft else model
        merged.save_pretrained(tmp, safe_serialization=True)
    ctx.bundle.tokenizer.save_pretrained(tmp)
    prov: dict[str, Any] = {
        "name": f"{cfg.name}-finetuned",
        "stylecraft": stylecraft.__version__,
        "base_model": cfg.model.name,
        "base_source": ctx.bundle.source,
        "mode": cfg.train.mode,
        "adapter": "adapter" if adapter else None,
        "facts": ctx.facts,
        "data": data_facts(run),
        "captions": {"mode": str(cfg.captions.mode), **caption_facts(run, cfg.artist)},
        # Kept flat as before, for readers of older provenance files.
        "steps": ctx.facts.get("steps"),
        "final_loss": ctx.facts.get("final_loss"),
        "val_loss": ctx.facts.get("val_loss"),
        "recipe": OmegaConf.to_container(cfg, resolve=True),
    }
    prov["tokens_index_sha256"] = prov["data"]["tokens_index_sha256"]
    atomic_write_text(tmp / "README.md", model_card(prov))
    prov["files"] = _files(tmp)
    atomic_write_json(tmp / "stylecraft.json", prov)
    replace_dir(tmp, final)
    return {"model_dir": str(final), "adapter_dir": str(final / "adapter") if adapter else None}


register_exporter("transformers", export_transformers)
