"""Setting up a training run: the accelerator, the model as it will train, optimizer, schedule,
data loaders, text conditioning, EMA and trackers, gathered in one :class:`Session`.

The order of the steps matters for exact resumes: everything that draws from the global RNG
(LoRA's initialisation) happens after ``set_seed`` and before the checkpoint restores the RNG.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader

from stylecraft.errors import ConfigError, StageInputError, StylecraftError
from stylecraft.models.loading import ModelBundle, recipe_model
from stylecraft.progress import info
from stylecraft.train import speed
from stylecraft.train.batches import Collator
from stylecraft.train.conditioning import TextConditioner
from stylecraft.train.data import EpochSampler, TrainData, ValidationSet
from stylecraft.train.ema import EMA
from stylecraft.train.launch_check import check_launch
from stylecraft.train.schedule import new_phase, phased_scheduler


@dataclass
class Session:
    """Everything one training run works with (built by :func:`build_session`)."""

    run: Path
    cfg: Any
    accelerator: Accelerator
    bundle: ModelBundle
    model: Any  # the prepared (wrapped) model
    params: list[torch.nn.Parameter]  # what is clipped and checksummed
    n_trainable: int
    optimizer: Any
    scheduler: Any
    train_loader: Any
    valid_loader: Any
    cond: TextConditioner
    ema: EMA | None
    phases: list[dict[str, Any]]  # the learning-rate schedule, read by the scheduler (train/schedule.py)
    precision: str
    state: dict[str, Any] = field(default_factory=dict)
    trackers: Any = None

    @property
    def t(self) -> Any:
        return self.cfg.train

    @property
    def train_dir(self) -> Path:
        return self.run / "train"

    @property
    def ckpt_root(self) -> Path:
        return self.run / "train" / "checkpoints"


def resolve_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _precision(t: Any) -> str:
    precision = resolve_precision(t.mixed_precision)
    if precision == "fp16":
        if not torch.cuda.is_available():
            raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU: use bf16 or no")
        info("train: warning: fp16 trains with a dynamic loss scaler and may skip steps; bf16 is preferred "
             "where the GPU supports it (train.mixed_precision=bf16)")
    return precision


def apply_lora(model: torch.nn.Module, lora: Any) -> torch.nn.Module:
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


def set_dropout(decoder: torch.nn.Module, p: float) -> None:
    """Override the decoder's residual dropout (the config and every layer's own copy of it)."""
    decoder_cfg = getattr(decoder, "config", None)
    if decoder_cfg is not None:
        decoder_cfg.dropout = p
    for m in decoder.modules():
        if type(m).__name__ in ("MusicgenDecoder", "MusicgenDecoderLayer") and isinstance(getattr(m, "dropout", None), float):
            setattr(m, "dropout", p)  # noqa: B010 - a plain float attribute, not a submodule


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


def local(p: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter: the local shard of an FSDP2 ``DTensor``, else the tensor."""
    from torch.distributed.tensor import DTensor

    return p.to_local() if isinstance(p, DTensor) else p


def sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


class Trackers:
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
            values.update({f"val_loss/{track}": v for track, v in row.get("val_tracks", {}).items()})
            self.accelerator.log(values, step=step)

    def audio(self, tag: str, wav: Any, step: int, sample_rate: int) -> None:
        if self.enabled and self.accelerator.is_main_process:
            writer = self.accelerator.get_tracker("tensorboard", unwrap=True)
            # 1-D [samples] is the shape both tensorboardX and torch.utils.tensorboard accept.
            writer.add_audio(tag, torch.from_numpy(wav).clamp(-1.0, 1.0), step, sample_rate=sample_rate)

    def close(self) -> None:
        # Also ends the process group of a multi-process run, so it is called with or without trackers.
        self.accelerator.end_training()


def _accelerator(t: Any, train_dir: Path) -> tuple[Accelerator, str]:
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
    if sharded(accelerator) and t.ema.enabled:
        raise ConfigError("train.ema is not supported with FSDP/DeepSpeed yet (the average would be sharded): "
                          "set train.ema.enabled=false or use DDP")
    if sharded(accelerator) and t.early_stopping.enabled and t.early_stopping.metric in ("fad", "kad"):
        raise ConfigError(f"train.early_stopping.metric={t.early_stopping.metric} needs demo generations, which "
                          "FSDP/DeepSpeed skip "
                          "(sampling needs the whole model on one process): use metric=val_loss or DDP")
    if sharded(accelerator) and t.text_encoder == "train":
        raise ConfigError("train.text_encoder=train is not supported with FSDP/DeepSpeed: use one process or DDP")
    return accelerator, precision


def _load_bundle(cfg: Any, run: Path, bundle: ModelBundle | None) -> ModelBundle:
    bundle = bundle or recipe_model(cfg, run)
    if bundle.model_type != "musicgen":
        # Melody models prepend the text (and chroma) states to the decoder input instead of
        # cross-attending to them; this loop builds cross-attention batches only.
        raise StylecraftError(
            f"training a '{bundle.model_type}' model is not supported yet: use musicgen-small/-medium/-large"
        )
    return bundle


def trainable_model(bundle: ModelBundle, t: Any) -> Any:
    """The model as it trains: frozen parts, dropout, checkpointing, LoRA and speed settings applied."""
    model: Any = bundle.model  # becomes a PeftModel with LoRA, then Accelerate's wrapper
    model.text_encoder.requires_grad_(t.text_encoder == "train")
    model.audio_encoder.requires_grad_(False)
    if t.dropout is not None:
        set_dropout(model.decoder, float(t.dropout))
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
        model = apply_lora(model, t.lora)
    return speed.apply(model, t)


def _loaders(data: TrainData, bundle: ModelBundle, model: Any, t: Any) -> tuple[DataLoader, DataLoader]:
    collate = Collator(bundle.tokenizer, bundle.pad_token_id, int(model.config.decoder.decoder_start_token_id),
                       stereo=bundle.channels == 2)  # stereo: interleaved L/R codebooks share a delay
    sampler = EpochSampler(len(data.train), t.seed)
    # Own generators: a DataLoader without one draws its base seed from the global RNG each time an
    # iterator starts, and a resumed run starts one more iterator than an uninterrupted run.
    train_loader = DataLoader(
        data.train, batch_size=t.batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
        generator=torch.Generator().manual_seed(t.seed),
    )
    valid_loader = DataLoader(
        ValidationSet(data.valid, int(t.eval_per_track)), batch_size=t.batch_size, shuffle=False, collate_fn=collate,
        generator=torch.Generator().manual_seed(t.seed + 1),
    )
    return train_loader, valid_loader


def build_session(
    run: Path, cfg: Any, data_fn: Callable[[Path], TrainData], bundle: ModelBundle | None
) -> Session:
    """Everything the loop needs, prepared by Accelerate (not yet resumed)."""
    t = cfg.train
    accelerator, precision = _accelerator(t, run / "train")
    set_seed(t.seed)
    data = data_fn(run)
    if len(data.train) < t.batch_size:
        raise StageInputError(
            f"{len(data.train)} training item(s) is fewer than train.batch_size={t.batch_size}: lower it or add audio"
        )
    bundle = _load_bundle(cfg, run, bundle)
    model = trainable_model(bundle, t)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, fused=True)
    n_proc = accelerator.num_processes
    phases = [new_phase(0, int(t.max_steps), 0.0, int(t.warmup_steps))]
    scheduler = phased_scheduler(optimizer, phases, n_proc)
    train_loader, valid_loader = _loaders(data, bundle, model, t)
    if accelerator.distributed_type == DistributedType.FSDP:
        # The frozen T5 and EnCodec run outside the model's forward (TextConditioner calls the
        # encoder directly): sharded, their weights would be DTensors that nothing gathers.
        # They stay whole on every rank; only the decoder is sharded.
        accelerator.state.fsdp_plugin.ignored_modules = [bundle.model.text_encoder, bundle.model.audio_encoder]
    with _decoder_heads_in_root_unit(bundle.model, accelerator):
        model, optimizer, train_loader, valid_loader, scheduler = accelerator.prepare(
            model, optimizer, train_loader, valid_loader, scheduler
        )
    if sharded(accelerator):
        # Sharding replaces the parameters: clip and checksum the ones the optimizer now holds.
        params = [p for p in model.parameters() if p.requires_grad]
    cond = TextConditioner(bundle, accelerator.device, trainable=t.text_encoder == "train")
    ema = EMA(named, float(t.ema.decay), bool(t.ema.warmup)) if t.ema.enabled else None
    return Session(run=run, cfg=cfg, accelerator=accelerator, bundle=bundle, model=model, params=params,
                   n_trainable=sum(p.numel() for p in params), optimizer=optimizer, scheduler=scheduler,
                   train_loader=train_loader, valid_loader=valid_loader, cond=cond, ema=ema, precision=precision,
                   phases=phases)
