"""The Accelerate training loop: LoRA or full fine-tuning of MusicGen's decoder on token shards.

One ``prepare()``, ``accumulate()`` for gradient accumulation, ``save_state`` into a step folder
written beside its final name and renamed, and ``load_state`` + ``skip_first_batches`` to resume:
a run started again with the same command continues where its last checkpoint left off.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler
from transformers import get_cosine_schedule_with_warmup

from stylecraft.artifacts import (
    append_jsonl,
    atomic_write_json,
    read_jsonl_tolerant,
    sha256_file,
    write_jsonl,
)
from stylecraft.data.tokens import TokenDataset
from stylecraft.errors import CheckpointError, StageInputError, StylecraftError
from stylecraft.models.loading import ModelBundle, load_model, save_bundle
from stylecraft.progress import info, make_progress
from stylecraft.train import speed
from stylecraft.train.batches import Collator

STATE_FILE = "trainer_state.json"


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch: the order depends only on (seed, epoch), so it can be replayed."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


@dataclass
class TrainData:
    train: TokenDataset
    valid: TokenDataset


def default_data(run_dir: Path) -> TrainData:
    """Training items: windows and variants of train tracks; validation: windows of valid tracks."""
    return TrainData(train=TokenDataset(run_dir, "train"), valid=TokenDataset(run_dir, "valid", kinds=("window",)))


def resolve_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _apply_lora(model: torch.nn.Module, lora: Any) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    layer_targets = [m for m in lora.target_modules if m != "lm_heads"]
    # Only the MusicGen decoder is adapted (its layers' linear maps and, if named, the per-codebook
    # output heads); the T5 and EnCodec modules stay frozen and untouched.
    alternatives = []
    if layer_targets:
        alternatives.append(rf"decoder\.model\.decoder\.layers\.\d+\.(?:(?:self_attn|encoder_attn)\.)?(?:{'|'.join(layer_targets)})")
    if "lm_heads" in lora.target_modules:
        alternatives.append(r"decoder\.lm_heads\.\d+")
    pattern = "|".join(f"(?:{a})" for a in alternatives)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=pattern)
    return get_peft_model(model, config)


class TextConditioner:
    """Frozen T5 encoder states per caption, cached (captions repeat across windows)."""

    def __init__(self, bundle: ModelBundle, device: torch.device) -> None:
        self.encoder = cast(Any, bundle.model.text_encoder)
        self.encoder.to(device)
        self.encoder.eval()
        self.device = device
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        # model.train() flips every submodule; the frozen encoder must never apply dropout, or the
        # cached states would depend on the RNG and a resumed run would differ.
        self.encoder.eval()
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        missing = [i for i, c in enumerate(batch["captions"]) if c not in self.cache]
        if missing:
            out = self.encoder(input_ids=ids[missing], attention_mask=mask[missing]).last_hidden_state
            for j, i in enumerate(missing):
                self.cache[batch["captions"][i]] = out[j].float()
        states = torch.stack([self.cache[c] for c in batch["captions"]])  # [B, L, D]
        return states, mask


# Settings a run may change and still resume (train longer, save or evaluate at other intervals).
RESUMABLE_CHANGES = ("max_steps", "save_every", "keep_last", "eval_every", "eval_batches", "log_every")


def _resume_settings(cfg: Any) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: the model and every other training setting."""
    from omegaconf import OmegaConf

    train = OmegaConf.to_container(cfg.train, resolve=True)
    assert isinstance(train, dict)
    kept = {"train." + str(k): v for k, v in train.items() if k not in RESUMABLE_CHANGES}
    return {"model.name": cfg.model.name, **kept}


def _checkpoints(ckpt_root: Path) -> list[Path]:
    done = [p for p in ckpt_root.glob("step-*") if (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def loss_on_batch(
    model: torch.nn.Module,
    cond: TextConditioner,
    batch: dict[str, Any],
    cond_dropout: float,
    dropout_key: tuple[int, ...] = (0,),
) -> torch.Tensor:
    """Cross-entropy over the K codebooks; a ``cond_dropout`` share of rows get the null condition
    (zeroed encoder states and mask), the form transformers feeds at classifier-free guidance.

    Which rows are dropped depends only on ``dropout_key`` (seed, step, micro-batch, rank), not on
    the global RNG, so a resumed run drops exactly the rows an uninterrupted one would.
    """
    states, mask = cond(batch)
    if cond_dropout > 0 and model.training:
        gen = torch.Generator().manual_seed(hash(dropout_key) & 0x7FFF_FFFF_FFFF_FFFF)
        drop = (torch.rand(states.shape[0], generator=gen) < cond_dropout).to(states.device)
        keep = (~drop).to(states.dtype)
        states = states * keep[:, None, None]
        mask = mask * (~drop).to(mask.dtype)[:, None]
    out = model(
        encoder_outputs=(states,),
        attention_mask=mask,
        decoder_input_ids=batch["decoder_input_ids"].to(states.device),
        labels=batch["labels"].to(states.device),
    )
    return out.loss


@torch.no_grad()
def evaluate(model: torch.nn.Module, cond: TextConditioner, loader: DataLoader, max_batches: int, accelerator: Accelerator) -> float:
    model.eval()
    losses = []
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        loss = loss_on_batch(model, cond, batch, 0.0)
        losses.append(accelerator.gather_for_metrics(loss.detach()[None]).mean())
    model.train()
    return float(torch.stack(losses).mean()) if losses else float("nan")


def train(
    run_dir: str | Path,
    cfg: Any,
    *,
    data_fn: Callable[[Path], TrainData] = default_data,
    bundle: ModelBundle | None = None,
) -> dict[str, Any]:
    """Fine-tune ``cfg.model.name`` on the run's tokens; resume from the newest complete checkpoint.

    Writes ``train/metrics.jsonl`` (one JSON line per optimizer step), ``train/checkpoints/step-N``,
    ``train/loss.png`` and the final model in ``model/`` (merged when LoRA; adapter in
    ``train/adapter``).

    Returns:
        A summary: steps, final train and validation loss, paths.
    """
    run = Path(run_dir)
    t = cfg.train
    train_dir = run / "train"
    ckpt_root = train_dir / "checkpoints"
    # Without a GPU, Accelerate forms a gloo process group (MULTI_CPU) only when told cpu=True.
    no_gpu = not torch.cuda.is_available()
    accelerator = Accelerator(
        gradient_accumulation_steps=t.grad_accum, mixed_precision=resolve_precision(t.mixed_precision), cpu=no_gpu
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        # N independent copies would race on the same checkpoints and logs.
        raise StylecraftError(
            f"launched as {launched} processes but Accelerate formed a group of {accelerator.num_processes}: "
            "check `accelerate config` / the launch flags"
        )
    set_seed(t.seed)
    data = data_fn(run)
    if len(data.train) < t.batch_size:
        raise StageInputError(
            f"{len(data.train)} training item(s) is fewer than train.batch_size={t.batch_size}: lower it or add audio"
        )
    bundle = bundle or load_model(cfg.model.name)
    if bundle.model_type != "musicgen":
        # Melody models prepend the text (and chroma) states to the decoder input instead of
        # cross-attending to them; this loop builds cross-attention batches only.
        raise StylecraftError(
            f"training a '{bundle.model_type}' model is not supported yet: use musicgen-small/-medium/-large"
        )
    model: Any = bundle.model  # becomes a PeftModel with LoRA, then Accelerate's wrapper
    model.text_encoder.requires_grad_(False)
    model.audio_encoder.requires_grad_(False)
    if t.mode == "lora":
        model.decoder.requires_grad_(False)
        if hasattr(model, "enc_to_dec_proj"):
            model.enc_to_dec_proj.requires_grad_(False)
        model = _apply_lora(model, t.lora)
    model = speed.apply(model, t)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(
        params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, fused=True
    )
    n_proc = accelerator.num_processes
    scheduler = get_cosine_schedule_with_warmup(optimizer, t.warmup_steps * n_proc, t.max_steps * n_proc)
    collate = Collator(bundle.tokenizer, bundle.pad_token_id, int(model.config.decoder.decoder_start_token_id))
    sampler = EpochSampler(len(data.train), t.seed)
    # Own generators: a DataLoader without one draws its base seed from the global RNG each time an
    # iterator starts, and a resumed run starts one more iterator than an uninterrupted run.
    train_loader = DataLoader(
        data.train, batch_size=t.batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
        generator=torch.Generator().manual_seed(t.seed),
    )
    valid_loader = DataLoader(
        data.valid, batch_size=t.batch_size, shuffle=False, collate_fn=collate,
        generator=torch.Generator().manual_seed(t.seed + 1),
    )
    model, optimizer, train_loader, valid_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, valid_loader, scheduler
    )
    cond = TextConditioner(bundle, accelerator.device)

    settings = _resume_settings(cfg)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "best_val": None, "settings": settings}
    done = _checkpoints(ckpt_root)
    if done:
        last = done[-1]
        saved = json.loads((last / STATE_FILE).read_text())
        changed = sorted(k for k in settings if saved.get("settings", {}).get(k) != settings[k])
        if changed:
            raise StylecraftError(
                f"checkpoints in '{ckpt_root}' were made with other settings ({', '.join(changed)}): "
                "use a new run_dir, or delete its train/ to start over"
            )
        _load_checkpoint(accelerator, last, saved)
        state = saved
        if accelerator.is_main_process:
            kept = [r for r in read_jsonl_tolerant(train_dir / "metrics.jsonl") if r.get("step", 0) <= state["step"]]
            write_jsonl(train_dir / "metrics.jsonl", kept)
            info(f"train: resuming from {last.name}")
    elif accelerator.is_main_process and (train_dir / "metrics.jsonl").exists():
        (train_dir / "metrics.jsonl").unlink()  # no checkpoint: the old log belongs to a discarded start

    batches_per_epoch = len(train_loader)
    step = state["step"]
    model.train()
    step_start = time.perf_counter()  # wall time per optimizer step (logged only, never compared)
    with make_progress() as prog:
        task = prog.add_task("train", total=t.max_steps, completed=step)
        while step < t.max_steps:
            train_loader.set_epoch(state["epoch"])
            skip = state["batches_in_epoch"]
            loader = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
            acc_losses: list[torch.Tensor] = []
            for batch in loader:
                with accelerator.accumulate(model):
                    key = (t.seed, step, state["batches_in_epoch"], state["epoch"], accelerator.process_index)
                    loss = loss_on_batch(model, cond, batch, t.cond_dropout, key)
                    accelerator.backward(loss)
                    grad_norm = None
                    if accelerator.sync_gradients:
                        grad_norm = accelerator.clip_grad_norm_(params, t.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                acc_losses.append(loss.detach())
                state["batches_in_epoch"] += 1
                if state["batches_in_epoch"] >= batches_per_epoch:  # the sampler replays by (seed, epoch)
                    state["epoch"] += 1
                    state["batches_in_epoch"] = 0
                if not accelerator.sync_gradients:
                    continue
                step += 1
                state["step"] = step
                mean_loss = accelerator.reduce(torch.stack(acc_losses).mean(), reduction="mean").item()
                acc_losses = []
                row: dict[str, Any] = {
                    "step": step,
                    "loss": mean_loss,
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "epoch": state["epoch"],
                    "step_s": time.perf_counter() - step_start,
                }
                row["tokens_per_s"] = int((batch["labels"] != -100).sum()) * t.grad_accum * accelerator.num_processes / row["step_s"]
                if step % t.eval_every == 0 or step == t.max_steps:
                    val = evaluate(model, cond, valid_loader, t.eval_batches, accelerator)
                    row["val_loss"] = val
                    row["val_ppl"] = math.exp(val) if math.isfinite(val) else None
                    if math.isfinite(val) and (state["best_val"] is None or val < state["best_val"]):
                        state["best_val"] = val
                if accelerator.is_main_process and (step % t.log_every == 0 or "val_loss" in row):
                    append_jsonl(train_dir / "metrics.jsonl", row)
                prog.advance(task)
                if step % t.save_every == 0 or step == t.max_steps:
                    # One checksum of the trainable weights per rank: data parallelism must keep them equal.
                    checksum = torch.stack([p.detach().double().sum() for p in params]).sum()
                    state["param_checksums"] = accelerator.gather(checksum.to(accelerator.device)[None]).tolist()
                    _save_checkpoint(accelerator, ckpt_root, step, state, t.keep_last)
                step_start = time.perf_counter()
                if step >= t.max_steps:
                    break

    summary = {"steps": step, "trainable_params": n_trainable, "best_val_loss": state["best_val"]}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        summary.update(_export(accelerator.unwrap_model(model), bundle, run, cfg))
    accelerator.end_training()
    return summary


def _load_checkpoint(accelerator: Accelerator, folder: Path, saved: dict[str, Any]) -> None:
    """Resume from a step folder: its files must match their recorded sha256, and every pickled
    file (optimizer, scheduler and RNG states) is read with ``torch.load(weights_only=True)``
    (accelerate's default), which refuses any object that would run code.

    Raises:
        CheckpointError: a file is missing or altered, or holds something other than plain data.
    """
    import pickle

    for name, digest in saved.get("files", {}).items():
        path = folder / name
        if not path.exists() or sha256_file(path) != digest:
            raise CheckpointError(
                f"checkpoint file '{path}' is missing or differs from the sha256 recorded when it was saved: "
                f"delete '{folder}' to resume from the one before"
            )
    try:
        accelerator.load_state(str(folder))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"refusing checkpoint '{folder}': {first[:300]}") from None


def _save_checkpoint(accelerator: Accelerator, root: Path, step: int, state: dict[str, Any], keep_last: int) -> None:
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.partial"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    # T5 ties its input embedding to the shared table; safetensors stores the tensor once and
    # accelerate warns about it on every save, although the reload re-ties it.
    other_log = logging.getLogger("accelerate.utils.other")
    level = other_log.level
    other_log.setLevel(logging.ERROR)
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
    finally:
        other_log.setLevel(level)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The state file is written last, so a step folder without it is never trusted; it lists
        # the sha256 of every file beside it for `stylecraft verify`.
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(tmp / STATE_FILE, {**state, "files": files})
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in _checkpoints(root)[:-keep_last]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _export(model: Any, bundle: ModelBundle, run: Path, cfg: Any) -> dict[str, Any]:
    """Save the fine-tuned model (merged LoRA) with tokenizer, provenance and a loss plot."""
    from omegaconf import OmegaConf

    train_dir = run / "train"
    if hasattr(model, "merge_and_unload"):
        model.save_pretrained(train_dir / "adapter", safe_serialization=True)
        model = model.merge_and_unload()
    out = ModelBundle(model=model, tokenizer=bundle.tokenizer, name=f"{cfg.name}-finetuned", source=str(run / "model"))
    save_bundle(out, run / "model")
    metrics = read_jsonl_tolerant(train_dir / "metrics.jsonl")
    index = run / "tokens" / "index.jsonl"
    provenance = {
        "files": {p.name: sha256_file(p) for p in sorted((run / "model").iterdir()) if p.is_file()},
        "base_model": cfg.model.name,
        "base_source": bundle.source,
        "mode": cfg.train.mode,
        "steps": metrics[-1]["step"] if metrics else 0,
        "final_loss": metrics[-1]["loss"] if metrics else None,
        "val_loss": next((r["val_loss"] for r in reversed(metrics) if "val_loss" in r), None),
        "tokens_index_sha256": sha256_file(index) if index.exists() else None,
        "recipe": OmegaConf.to_container(cfg, resolve=True),
    }
    atomic_write_json(run / "model" / "stylecraft.json", provenance)
    png = plot_losses(metrics, train_dir / "loss.png")
    return {"model_dir": str(run / "model"), "loss_plot": str(png), **{k: provenance[k] for k in ("final_loss", "val_loss")}}


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
