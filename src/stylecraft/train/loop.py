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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, ProjectConfiguration, broadcast, set_seed
from torch.utils.data import DataLoader, Sampler
from transformers import get_cosine_schedule_with_warmup

from stylecraft.artifacts import (
    append_jsonl,
    atomic_write_json,
    files_sha256,
    read_jsonl_tolerant,
    sha256_file,
    write_jsonl,
)
from stylecraft.data.manifest import run_caption
from stylecraft.data.tokens import TokenDataset
from stylecraft.errors import CheckpointError, ConfigError, StageInputError, StylecraftError
from stylecraft.models.loading import ModelBundle, load_model
from stylecraft.progress import info, make_progress
from stylecraft.train import early_stop, speed
from stylecraft.train.batches import Collator
from stylecraft.train.demos import FadScorer, demo_guidance_scale, generate_demos
from stylecraft.train.ema import EMA, EMA_FILE
from stylecraft.train.export import ExportContext, export
from stylecraft.train.launch_check import check_launch

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
    """Frozen T5 encoder states per caption, cached (captions repeat across windows).

    Each caption is encoded alone, unpadded, so its cached states depend on the caption only (not
    on the batch it first appeared in), and each batch is padded to its own longest caption.
    """

    def __init__(self, bundle: ModelBundle, device: torch.device) -> None:
        self.encoder = cast(Any, bundle.model.text_encoder)
        self.encoder.to(device)
        self.encoder.eval()
        self.device = device
        self.cache: dict[str, torch.Tensor] = {}  # caption -> [L_caption, D]

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        # model.train() flips every submodule; the frozen encoder must never apply dropout, or the
        # cached states would depend on the RNG and a resumed run would differ.
        self.encoder.eval()
        ids, mask = batch["input_ids"], batch["attention_mask"]
        for i, caption in enumerate(batch["captions"]):
            if caption not in self.cache:
                one = ids[i][mask[i].bool()][None].to(self.device)  # [1, L_caption], whatever the padding side
                out = self.encoder(input_ids=one, attention_mask=torch.ones_like(one)).last_hidden_state
                self.cache[caption] = out[0].float()
        return pad_states([self.cache[c] for c in batch["captions"]])


def pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-caption states ``[L_i, D]`` -> zero-padded ``[B, max L_i, D]`` and attention mask ``[B, max L_i]``."""
    longest = max(s.shape[0] for s in states)
    out = states[0].new_zeros((len(states), longest, states[0].shape[1]))
    mask = torch.zeros((len(states), longest), dtype=torch.long, device=states[0].device)
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return out, mask


# Settings a run may change and still resume (train longer, save or evaluate at other intervals).
# Demos, TensorBoard and export settings only add outputs: demos sample inside fork_rng, so the
# training stream of random numbers does not depend on them.
RESUMABLE_CHANGES = (
    "max_steps", "save_every", "keep_last", "eval_every", "eval_batches", "log_every",
    "demo", "tensorboard", "export", "keep_best",
)


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


def _set_dropout(decoder: torch.nn.Module, p: float) -> None:
    """Override the decoder's residual dropout (the config and every layer's own copy of it)."""
    decoder_cfg = getattr(decoder, "config", None)
    if decoder_cfg is not None:
        decoder_cfg.dropout = p
    for m in decoder.modules():
        if type(m).__name__ in ("MusicgenDecoder", "MusicgenDecoderLayer") and isinstance(getattr(m, "dropout", None), float):
            setattr(m, "dropout", p)  # noqa: B010 - a plain float attribute, not a submodule


def _precision(t: Any) -> str:
    precision = resolve_precision(t.mixed_precision)
    if precision == "fp16":
        if not torch.cuda.is_available():
            raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU: use bf16 or no")
        info("train: warning: fp16 trains with a dynamic loss scaler and may skip steps; bf16 is preferred "
             "where the GPU supports it (train.mixed_precision=bf16)")
    return precision


@contextmanager
def _decoder_heads_in_root_unit(musicgen: torch.nn.Module, accelerator: Accelerator) -> Iterator[None]:
    """Keep MusicGen's embeddings and output heads in FSDP's root unit while ``prepare`` shards.

    Accelerate's FSDP2 gives ``get_input_embeddings()`` and ``get_output_embeddings()`` units of
    their own, gathered by those modules' forward hooks. MusicGen's are ``ModuleList`` objects (one
    head per codebook) that the decoder iterates and never calls, so the hooks would never fire and
    the heads would run on shards; the input side is the frozen T5's table. Hidden for the
    duration of ``prepare``, both stay in the root unit, which is gathered for the whole forward.
    """
    if accelerator.distributed_type != DistributedType.FSDP:
        yield
        return
    hidden = ("get_input_embeddings", "get_output_embeddings")
    for name in hidden:
        object.__setattr__(musicgen, name, lambda: None)
    try:
        yield
    finally:
        for name in hidden:
            object.__delattr__(musicgen, name)


def _local(p: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter: the local shard of an FSDP2 ``DTensor``, else the tensor."""
    from torch.distributed.tensor import DTensor

    return p.to_local() if isinstance(p, DTensor) else p


def _sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


class _Trackers:
    """TensorBoard through Accelerate's trackers (main process), or nothing when disabled."""

    def __init__(self, accelerator: Accelerator, enabled: bool, run_name: str, step: int) -> None:
        self.accelerator = accelerator
        self.enabled = enabled
        if enabled:
            # purge_step drops events a killed run logged after its last checkpoint, so a resumed
            # run's curves have no doubled stretch.
            accelerator.init_trackers(run_name, init_kwargs={"tensorboard": {"purge_step": step + 1} if step else {}})

    def scalars(self, row: dict[str, Any], step: int) -> None:
        if self.enabled:
            values = {k: v for k, v in row.items() if k not in ("step",) and isinstance(v, int | float) and v is not None}
            self.accelerator.log(values, step=step)

    def audio(self, tag: str, wav: Any, step: int, sample_rate: int) -> None:
        if self.enabled and self.accelerator.is_main_process:
            writer = self.accelerator.get_tracker("tensorboard", unwrap=True)
            # 1-D [samples] is the shape both tensorboardX and torch.utils.tensorboard accept.
            writer.add_audio(tag, torch.from_numpy(wav).clamp(-1.0, 1.0), step, sample_rate=sample_rate)

    def close(self) -> None:
        # Also ends the process group of a multi-process run, so it is called with or without trackers.
        self.accelerator.end_training()


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


def _train(
    run: Path, cfg: Any, data_fn: Callable[[Path], TrainData], bundle: ModelBundle | None
) -> dict[str, Any]:
    t = cfg.train
    train_dir = run / "train"
    ckpt_root = train_dir / "checkpoints"
    # Without a GPU, Accelerate forms a gloo process group (MULTI_CPU) only when told cpu=True.
    no_gpu = not torch.cuda.is_available()
    check_launch(t, cuda=not no_gpu)
    precision = _precision(t)
    accelerator = Accelerator(
        gradient_accumulation_steps=t.grad_accum, mixed_precision=precision, cpu=no_gpu,
        log_with="tensorboard" if t.tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(train_dir), logging_dir=str(train_dir / "tensorboard")),
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        # N independent copies would race on the same checkpoints and logs.
        raise StylecraftError(
            f"launched as {launched} processes but Accelerate formed a group of {accelerator.num_processes}: "
            "check `accelerate config` / the launch flags"
        )
    if _sharded(accelerator) and t.ema.enabled:
        raise ConfigError("train.ema is not supported with FSDP/DeepSpeed yet (the average would be sharded): "
                          "set train.ema.enabled=false or use DDP")
    if _sharded(accelerator) and t.early_stopping.enabled and t.early_stopping.metric in ("fad", "kad"):
        raise ConfigError(f"train.early_stopping.metric={t.early_stopping.metric} needs demo generations, which "
                          "FSDP/DeepSpeed skip (sampling needs the whole model on one process): use metric=val_loss or DDP")
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
    if t.dropout is not None:
        _set_dropout(model.decoder, float(t.dropout))
    if t.gradient_checkpointing:
        # Non-reentrant checkpointing back-propagates into LoRA weights even though the frozen
        # embeddings feeding the first layer need no gradient (the reentrant form would not).
        kwargs = {"use_reentrant": False}
        if hasattr(model.decoder, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.decoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if t.mode == "lora":
        model.decoder.requires_grad_(False)
        if hasattr(model, "enc_to_dec_proj"):
            model.enc_to_dec_proj.requires_grad_(False)
        model = _apply_lora(model, t.lora)
    model = speed.apply(model, t)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
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
    if accelerator.distributed_type == DistributedType.FSDP:
        # The frozen T5 and EnCodec run outside the model's forward (TextConditioner calls the
        # encoder directly): sharded, their weights would be DTensors that nothing gathers.
        # They stay whole on every rank; only the decoder is sharded.
        accelerator.state.fsdp_plugin.ignored_modules = [bundle.model.text_encoder, bundle.model.audio_encoder]
    with _decoder_heads_in_root_unit(bundle.model, accelerator):
        model, optimizer, train_loader, valid_loader, scheduler = accelerator.prepare(
            model, optimizer, train_loader, valid_loader, scheduler
        )
    if _sharded(accelerator):
        # Sharding replaces the parameters: clip and checksum the ones the optimizer now holds.
        params = [p for p in model.parameters() if p.requires_grad]
    cond = TextConditioner(bundle, accelerator.device)
    ema = EMA(named, float(t.ema.decay)) if t.ema.enabled else None
    es = t.early_stopping
    es_metric = es.metric if es.enabled else None
    best_metric = es_metric or "val_loss"  # what keep_best ranks checkpoints by

    settings = _resume_settings(cfg)
    state: dict[str, Any] = {
        "step": 0, "epoch": 0, "batches_in_epoch": 0, "best_val": None, "best_val_step": None,
        "early_stopping": early_stop.new_state(), "best_fad": None, "best_fad_step": None, "fad": None,
        "best_kad": None, "best_kad_step": None, "kad": None,
        "best_checkpoint": None, "settings": settings,
    }
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
        if ema is not None:
            ema.load(last / EMA_FILE)
        state = {**state, **saved}
        if accelerator.is_main_process:
            kept = [r for r in read_jsonl_tolerant(train_dir / "metrics.jsonl") if r.get("step", 0) <= state["step"]]
            write_jsonl(train_dir / "metrics.jsonl", kept)
            info(f"train: resuming from {last.name}")
    elif accelerator.is_main_process and (train_dir / "metrics.jsonl").exists():
        (train_dir / "metrics.jsonl").unlink()  # no checkpoint: the old log belongs to a discarded start
    trackers = _Trackers(accelerator, bool(t.tensorboard), str(cfg.name), int(state["step"]))

    demo_every = int(t.demo.every)
    if demo_every and _sharded(accelerator):
        info("train: warning: demo generations are skipped under FSDP/DeepSpeed (sampling needs the whole model "
             "on one process)")
        demo_every = 0
    demo_prompts = list(t.demo.prompts) or [run_caption(run, cfg.artist)]
    fad_scorer: FadScorer | None = None
    if es_metric in ("fad", "kad") and accelerator.is_main_process:
        fad_scorer = FadScorer(run, str(es.embedding), int(cfg.segment.sample_rate), float(cfg.segment.loudness_lufs),
                               demo_guidance_scale(cfg))
        # A missing held-out set, or FAD on too few rows, fails now, not after the first demo steps.
        fad_scorer.check_rows(es_metric, len(demo_prompts) * len(t.demo.seeds), float(t.demo.duration_s),
                              bundle.sample_rate)
        fad_scorer.reference()

    def save(step: int) -> None:
        # One checksum of the trainable weights per rank: data parallelism must keep them equal.
        # Under FSDP each rank sums its own shards (the entries then add up to the whole).
        checksum = torch.stack([_local(p).detach().double().sum() for p in params]).sum()
        state["param_checksums"] = accelerator.gather(checksum.to(accelerator.device)[None]).tolist()
        protect = [state["best_checkpoint"]] if t.keep_best and state["best_checkpoint"] else []
        _save_checkpoint(accelerator, ckpt_root, step, state, t.keep_last, extra=ema.save if ema else None,
                         protect=protect)

    def evaluate_now() -> float:
        if ema is not None and t.ema.use_for_eval:
            with ema.applied():
                return evaluate(model, cond, valid_loader, t.eval_batches, accelerator)
        return evaluate(model, cond, valid_loader, t.eval_batches, accelerator)

    def demos(step: int) -> tuple[float | None, dict[str, float]]:
        """Sample the demos (main process); return the early-stopping metric and the logged scores."""
        fad = None
        logged: dict[str, float] = {}
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            demo_bundle = ModelBundle(model=unwrapped, tokenizer=bundle.tokenizer, name=bundle.name,
                                      source=bundle.source)
            use_ema = ema is not None and t.ema.use_for_eval
            with (ema.applied() if use_ema and ema is not None else nullcontext()), accelerator.autocast():
                result = generate_demos(
                    demo_bundle, train_dir / "demos" / f"step-{step:07d}", demo_prompts, list(t.demo.seeds),
                    list(t.demo.guidance_scales), float(t.demo.duration_s), int(t.demo.top_k), step,
                )
            for stem, wav in result.audio.items():
                trackers.audio(f"demo/{stem}", wav, step, result.sample_rate)
            if fad_scorer is not None and es_metric is not None:
                scores = fad_scorer.score(result)
                fad, logged = scores.value(es_metric), scores.row()
        if fad_scorer is not None or es_metric in ("fad", "kad"):
            # Every rank must take the same stop decision: the main process's value is broadcast.
            value = torch.tensor([fad if fad is not None else float("nan")], dtype=torch.float64,
                                 device=accelerator.device)
            fad = float(broadcast(value, from_process=0).item())
        accelerator.wait_for_everyone()
        return fad, logged

    batches_per_epoch = len(train_loader)
    step = state["step"]
    stopped = state["early_stopping"]["stopped_at"] is not None
    model.train()
    step_start = time.perf_counter()  # wall time per optimizer step (logged only, never compared)
    with make_progress() as prog:
        task = prog.add_task("train", total=t.max_steps, completed=step)
        while step < t.max_steps and not stopped:
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
                if ema is not None and not accelerator.optimizer_step_was_skipped:
                    ema.update()
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
                new_best = False
                if step % t.eval_every == 0 or step == t.max_steps:
                    val = evaluate_now()
                    row["val_loss"] = val
                    row["val_ppl"] = math.exp(val) if math.isfinite(val) else None
                    if math.isfinite(val) and (state["best_val"] is None or val < state["best_val"]):
                        state["best_val"], state["best_val_step"] = val, step
                        new_best = best_metric == "val_loss"
                    if es_metric == "val_loss":
                        early_stop.observe(state["early_stopping"], val, step, float(es.min_delta))
                if demo_every and step % demo_every == 0:
                    value, logged = demos(step)
                    if es_metric in ("fad", "kad") and value is not None:
                        logged[es_metric] = value  # every rank has the broadcast early-stopping value
                    row.update(logged)  # and the main process fad and kad per guidance scale
                    for name in ("fad", "kad"):
                        if name not in logged:
                            continue
                        state[name] = logged[name]
                        if math.isfinite(logged[name]) and (state[f"best_{name}"] is None or logged[name] < state[f"best_{name}"]):
                            state[f"best_{name}"], state[f"best_{name}_step"] = logged[name], step
                            new_best = new_best or best_metric == name
                        if es_metric == name:
                            early_stop.observe(state["early_stopping"], logged[name], step, float(es.min_delta))
                if es_metric and early_stop.should_stop(state["early_stopping"], int(es.patience)):
                    state["early_stopping"]["stopped_at"] = step
                    stopped = True
                if step % t.log_every == 0 or "val_loss" in row or "fad" in row or "kad" in row:  # TensorBoard follows the same rule
                    if accelerator.is_main_process:
                        append_jsonl(train_dir / "metrics.jsonl", row)
                    trackers.scalars(row, step)
                prog.advance(task)
                if t.keep_best and new_best:
                    state["best_checkpoint"] = f"step-{step:07d}"
                if step % t.save_every == 0 or step == t.max_steps or stopped or (t.keep_best and new_best):
                    save(step)
                if stopped:
                    info(f"train: early stopping at step {step}: {es_metric} has not improved for "
                         f"{es.patience} evaluation(s) (best {state['early_stopping']['best']} at step "
                         f"{state['early_stopping']['best_step']})")
                # Evaluation, demos and saving are not part of the next step's time.
                step_start = time.perf_counter()
                if step >= t.max_steps or stopped:
                    break

    weights_step = step
    if t.keep_best and state["best_checkpoint"] and state["best_checkpoint"] != f"step-{step:07d}":
        best = ckpt_root / state["best_checkpoint"]
        if (best / STATE_FILE).exists():
            _load_checkpoint(accelerator, best, json.loads((best / STATE_FILE).read_text()))
            if ema is not None:
                ema.load(best / EMA_FILE)
            weights_step = int(state["best_checkpoint"].split("-")[1])
    if ema is not None:
        ema.copy_to_params()  # the exported model is the average
    summary: dict[str, Any] = {"steps": step, "trainable_params": n_trainable, "best_val_loss": state["best_val"],
                               "stopped_at": state["early_stopping"]["stopped_at"], "best_fad": state["best_fad"]}
    accelerator.wait_for_everyone()
    if _sharded(accelerator):
        full = accelerator.get_state_dict(model)  # a collective: every rank takes part
    if accelerator.is_main_process:
        out_model = accelerator.unwrap_model(model)
        if _sharded(accelerator):
            # The sharded module cannot be saved by one process: rebuild it whole and load the gathered weights.
            fresh: Any = load_model(cfg.model.name).model
            if t.mode == "lora":
                fresh = _apply_lora(fresh, t.lora)
            fresh.load_state_dict(full)
            out_model = fresh
        metrics = read_jsonl_tolerant(train_dir / "metrics.jsonl")
        last_val: dict[str, Any] = next((r for r in reversed(metrics) if "val_loss" in r), {})
        facts = {
            "steps": step, "max_steps": int(t.max_steps), "weights_step": weights_step,
            "weights_from_best": weights_step != step, "stopped_at": state["early_stopping"]["stopped_at"],
            "early_stopping": dict(state["early_stopping"], metric=es_metric),
            "final_loss": metrics[-1]["loss"] if metrics else None,
            "val_loss": last_val.get("val_loss"), "val_ppl": last_val.get("val_ppl"),
            "best_val_loss": state["best_val"], "best_val_step": state["best_val_step"],
            "fad": state["fad"], "best_fad": state["best_fad"], "best_fad_step": state["best_fad_step"],
            "kad": state.get("kad"), "best_kad": state.get("best_kad"), "best_kad_step": state.get("best_kad_step"),
            "fad_embedding": str(es.embedding) if es_metric in ("fad", "kad") else None,
            "ema": {"enabled": bool(t.ema.enabled), "decay": float(t.ema.decay),
                    "use_for_eval": bool(t.ema.use_for_eval)},
            "precision": precision, "gradient_checkpointing": bool(t.gradient_checkpointing),
            "dropout": t.dropout, "processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type).split(".")[-1],
            "trainable_params": n_trainable,
        }
        out = export(ExportContext(model=out_model, bundle=bundle, run=run, cfg=cfg, facts=facts))
        png = plot_losses(metrics, train_dir / "loss.png")
        summary.update(out)
        summary.update({"loss_plot": str(png), "final_loss": facts["final_loss"], "val_loss": facts["val_loss"]})
    accelerator.wait_for_everyone()
    trackers.close()
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


def _save_checkpoint(
    accelerator: Accelerator, root: Path, step: int, state: dict[str, Any], keep_last: int,
    extra: Callable[[Path], None] | None = None, protect: list[str] | None = None,
) -> None:
    """Write ``step-N`` beside its final name and rename it; keep the last ``keep_last`` and the
    folders named in ``protect``. ``extra(path)`` writes more state (the EMA file) on the main process."""
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
        if extra is not None:
            extra(tmp / EMA_FILE)
        # The state file is written last, so a step folder without it is never trusted; it lists
        # the sha256 of every file beside it for `stylecraft verify`.
        # FSDP's sharded model and optimizer are folders of per-rank files: those are listed too.
        files = files_sha256(tmp)
        atomic_write_json(tmp / STATE_FILE, {**state, "files": files})
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in _checkpoints(root)[:-keep_last]:
            if old.name not in (protect or []):
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


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
