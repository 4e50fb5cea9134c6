"""The codec training loop: an ``EncodecModel`` trained on a run's segmented audio with Accelerate.

Layout of ``<run>/codec/``: ``metrics.jsonl`` (one line per logged step), ``checkpoints/step-N``
(model with its codebooks, optimizers, schedulers, RNG; the sha256 of every file in
``trainer_state.json``), ``tensorboard/``, ``loss.png``, and the result: ``model/`` (transformers
format, safetensors, with ``stylecraft.json``) and ``audiocraft/compression_state_dict.bin``.

A run started again with the same command resumes from its newest complete checkpoint and
continues to the same weights, bit for bit on CPU: batches depend only on (seed, step, rank).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch import nn
from transformers import EncodecModel

from stylecraft.artifacts import append_jsonl, read_jsonl_tolerant, write_jsonl
from stylecraft.codec.architectures import codec_config
from stylecraft.codec.data import CropSampler, fixed_crops, segmented_tracks
from stylecraft.codec.discriminator import MultiScaleSTFTDiscriminator, discriminator_loss, generator_losses
from stylecraft.codec.losses import LossWeights, ReconstructionLoss
from stylecraft.codec.quantizer import TrainableRVQ, code_usage
from stylecraft.errors import StylecraftError
from stylecraft.progress import info, make_progress
from stylecraft.train.checkpoints import STATE_FILE, list_checkpoints, load_checkpoint, save_checkpoint

# Settings a run may change and still resume: how long, and how often to log, evaluate and save.
RESUMABLE = ("max_steps", "decay_steps", "save_every", "keep_last", "eval_every", "eval_crops", "log_every", "tensorboard")


class LatentNorm(nn.Module):
    """Per-channel standardisation of the encoder's output: batch statistics in training, running
    ones in evaluation, folded into the encoder's last convolution at export.

    The SEANet encoder's latent is dominated by a per-channel offset that moves by more than the
    whole spread of the batch at every Adam step (measured: spread ~0.01, drift 0.1-0.4 per step at
    3e-4), so no EMA codebook can follow it and every frame maps to one code. Standardised, the
    latent stays where the codebooks are; after folding, the exported ``EncodecModel`` computes the
    same latent with no extra layer.
    """

    def __init__(self, dim: int, momentum: float = 0.01, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.mean: torch.Tensor
        self.var: torch.Tensor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` [B, D, T] -> standardised [B, D, T]."""
        if self.training:
            mean = z.mean(dim=(0, 2))
            var = z.var(dim=(0, 2), unbiased=False)
            with torch.no_grad():
                self.mean.lerp_(mean.detach(), self.momentum)
                self.var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.mean, self.var
        return (z - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)


@torch.no_grad()
def fold_latent_norm(codec: Any, mean: torch.Tensor, var: torch.Tensor, eps: float = 1e-5) -> None:
    """Make ``codec``'s encoder output ``(z - mean) / sqrt(var + eps)`` itself (in place)."""
    from torch.nn.utils import parametrize

    conv: Any = codec.encoder.layers[-1].conv
    scale = torch.rsqrt(var + eps).to(conv.bias.dtype)
    if parametrize.is_parametrized(conv, "weight"):  # weight norm: w = g * v / |v|, g per output channel
        conv.parametrizations.weight.original0.mul_(scale[:, None, None])
    else:
        conv.weight.mul_(scale[:, None, None])
    conv.bias.copy_((conv.bias - mean) * scale)


class Autoencoder(nn.Module):
    """Encoder -> standardisation -> trainable RVQ -> decoder of one ``EncodecModel`` (the module
    Accelerate prepares)."""

    def __init__(self, codec: EncodecModel, rvq: TrainableRVQ) -> None:
        super().__init__()
        self.codec = codec
        self.rvq = rvq
        self.norm = LatentNorm(int(codec.config.hidden_size))

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised latent [B, D, T] of audio [B, S]."""
        return self.norm(self.codec.encoder(x[:, None, :]))

    def forward(
        self, x: torch.Tensor, update: bool, generator: torch.Generator | None = None, quantize: bool = True
    ) -> tuple[torch.Tensor, Any]:
        """``x`` [B, S] -> reconstruction [B, S] and the quantizer's output (None without ``quantize``)."""
        latent = self.latent(x)
        if not quantize:  # the warm-up: the decoder sees the continuous latent
            return self.codec.decoder(latent)[:, 0, : x.shape[-1]], None
        q = self.rvq(latent, update, generator)
        y = self.codec.decoder(q.quantized)[:, 0, : x.shape[-1]]
        return y, q


def build_codec(architecture: str, overrides: dict[str, Any], seed: int) -> EncodecModel:
    """A new ``EncodecModel`` (deterministic init); its codebooks are set by k-means at step 0."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EncodecModel(codec_config(architecture, overrides))


@dataclass
class Parts:
    accelerator: Accelerator
    autoencoder: Any
    optimizer: Any
    scheduler: Any
    loss: ReconstructionLoss
    weights: LossWeights
    discriminator: Any = None
    optimizer_d: Any = None
    scheduler_d: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def lr_factor(step: int, warmup: int, max_steps: int, decay_steps: int, floor: float = 0.05) -> float:
    """Linear warm-up, a constant rate, then a linear decay to ``floor`` over the last ``decay_steps``.

    The factor depends on the step and the current settings only, so training longer (a larger
    ``max_steps``) or adding a decay phase on resume continues from where the run is.
    """
    factor = min(1.0, (step + 1) / max(1, warmup))
    start = max_steps - decay_steps
    if decay_steps > 0 and step >= start:
        factor *= 1.0 - (1.0 - floor) * min(1.0, (step - start + 1) / decay_steps)
    return factor


def _scheduler(optimizer: torch.optim.Optimizer, c: Any) -> torch.optim.lr_scheduler.LambdaLR:
    args = (int(c.warmup_steps), int(c.max_steps), int(c.decay_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, *args))


def _setup(root: Path, c: Any, sample_rate: int) -> Parts:
    no_gpu = not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=no_gpu, log_with="tensorboard" if c.tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(root), logging_dir=str(root / "tensorboard")),
    )
    set_seed(c.seed)
    codec = build_codec(c.architecture, dict(c.config), c.seed)
    if int(codec.config.sampling_rate) != sample_rate:
        raise StylecraftError(
            f"codec.architecture '{c.architecture}' runs at {codec.config.sampling_rate} Hz but the run's audio is "
            f"segmented at {sample_rate} Hz: set segment.sample_rate={codec.config.sampling_rate} or codec.config.sampling_rate"
        )
    rvq = TrainableRVQ(codec.quantizer, int(codec.config.num_quantizers), float(c.ema_decay), float(c.dead_fraction))
    autoencoder = Autoencoder(codec, rvq)
    weights = LossWeights(**dict(c.loss))
    optimizer = torch.optim.AdamW(codec.parameters(), lr=c.lr, betas=tuple(c.betas), weight_decay=0.0)
    scheduler = _scheduler(optimizer, c)
    parts = [autoencoder, optimizer, scheduler]
    if c.discriminator:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed + 1)
            disc = MultiScaleSTFTDiscriminator()
        opt_d = torch.optim.AdamW(disc.parameters(), lr=c.lr, betas=tuple(c.betas), weight_decay=0.0)
        parts += [disc, opt_d, _scheduler(opt_d, c)]
    prepared = list(accelerator.prepare(*parts))
    loss = ReconstructionLoss(sample_rate, weights).to(accelerator.device)
    out = Parts(accelerator, prepared[0], prepared[1], prepared[2], loss, weights)
    if c.discriminator:
        out.discriminator, out.optimizer_d, out.scheduler_d = prepared[3:6]
    return out


def _settings(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg.codec, resolve=True)
    assert isinstance(c, dict)
    return {"sample_rate": int(cfg.segment.sample_rate), **{str(k): v for k, v in c.items() if k not in RESUMABLE}}


def _resume(p: Parts, root: Path, settings: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"step": 0, "codebooks_initialised": False, "settings": settings}
    done = list_checkpoints(root / "checkpoints")
    if not done:
        if p.accelerator.is_main_process and (root / "metrics.jsonl").exists():
            (root / "metrics.jsonl").unlink()  # a log without a checkpoint belongs to a discarded start
        return state
    last = done[-1]
    saved = json.loads((last / STATE_FILE).read_text())
    changed = sorted(k for k in settings if saved.get("settings", {}).get(k) != settings[k])
    if changed:
        raise StylecraftError(f"codec checkpoints in '{root / 'checkpoints'}' were made with other settings "
                              f"(codec.{', codec.'.join(changed)}): use a new run_dir, or delete {root} to start over")
    load_checkpoint(p.accelerator, last, saved)
    state.update(saved)
    if p.accelerator.is_main_process:
        kept = [r for r in read_jsonl_tolerant(root / "metrics.jsonl") if r.get("step", 0) <= state["step"]]
        write_jsonl(root / "metrics.jsonl", kept)
        info(f"codec: resuming from {last.name}")
    return state


@torch.no_grad()
def _init_codebooks(p: Parts, sampler: CropSampler, c: Any) -> None:
    """k-means on encoder outputs of fresh crops (their own seeds, not the training batches')."""
    ae = p.accelerator.unwrap_model(p.autoencoder)
    frames: list[torch.Tensor] = []
    n, i = 0, 0
    while n < c.kmeans_frames:
        x = torch.from_numpy(sampler.batch(i, 0, c.batch_size, purpose=1)).to(p.accelerator.device)
        z = ae.latent(x)  # [B, D, T], batch-standardised as in training
        frames.append(z.transpose(1, 2).reshape(-1, z.shape[1]).cpu())
        n += frames[-1].shape[0]
        i += 1
    per_batch = frames[0].shape[0] * p.accelerator.num_processes
    ae.rvq.init_kmeans(torch.cat(frames)[: c.kmeans_frames], frames_per_batch=per_batch, seed=c.seed)


def _step(p: Parts, x: torch.Tensor, generator: torch.Generator, max_norm: float, quantize: bool) -> dict[str, Any]:
    """One optimizer step of the codec (and of the discriminator, when there is one)."""
    y, q = p.autoencoder(x, update=True, generator=generator, quantize=quantize)
    total, terms = p.loss(y, x)
    logged: dict[str, Any] = {k: float(v.detach()) for k, v in terms.items()}
    if q is not None:
        total = total + p.weights.commitment * q.commitment
        logged["commitment"] = float(q.commitment.detach())
    if p.discriminator is not None:
        adv, fm = generator_losses(p.discriminator(x), p.discriminator(y))
        total = total + p.weights.adversarial * adv + p.weights.feature_matching * fm
        logged |= {"adversarial": float(adv.detach()), "feature_matching": float(fm.detach())}
    p.accelerator.backward(total)
    logged["grad_norm"] = float(p.accelerator.clip_grad_norm_(p.autoencoder.parameters(), max_norm))
    p.optimizer.step()
    p.scheduler.step()
    p.optimizer.zero_grad(set_to_none=True)
    if p.discriminator is not None:
        d_loss = discriminator_loss(p.discriminator(x), p.discriminator(y.detach()))
        p.accelerator.backward(d_loss)
        p.optimizer_d.step()
        p.scheduler_d.step()
        p.optimizer_d.zero_grad(set_to_none=True)
        logged["discriminator"] = float(d_loss)
    logged["loss"] = float(total.detach())
    if q is not None:
        size = int(p.accelerator.unwrap_model(p.autoencoder).codec.config.codebook_size)
        logged["usage"] = code_usage(q.codes.detach().cpu(), size)
    return logged


def si_snr(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SNR in dB per row of [B, S] (zero-mean)."""
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    s = (y * x).sum(-1, keepdim=True) / x.pow(2).sum(-1, keepdim=True).clamp_min(1e-12) * x
    return 10 * torch.log10(s.pow(2).sum(-1).clamp_min(1e-12) / (y - s).pow(2).sum(-1).clamp_min(1e-12))


@torch.no_grad()
def evaluate(p: Parts, sampler: CropSampler, crops: np.ndarray, c: Any, quantize: bool = True) -> dict[str, float]:
    """The codec as it would be exported now (latent statistics measured afresh, folded in) on the
    fixed held-out crops: the running averages lag behind a drifting encoder too much to judge by."""
    codec = exported_codec(p, sampler, c, batches=10)
    if quantize:
        return {k.replace("export_", ""): v for k, v in evaluate_codec(codec, crops, p.loss).items()}
    sums: dict[str, float] = {}
    for i in range(0, len(crops), 16):
        x = torch.from_numpy(crops[i : i + 16]).to(p.accelerator.device)
        y = codec.decoder(codec.encoder(x[:, None]))[:, 0, : x.shape[-1]]
        _, terms = p.loss(y, x)
        for k, v in {**terms, "si_snr_db": si_snr(y, x).mean()}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * x.shape[0]
    return {f"val_{k}": v / len(crops) for k, v in sums.items()}


@torch.no_grad()
def exported_codec(p: Parts, sampler: CropSampler, c: Any, batches: int = 100) -> Any:
    """A copy of the trained codec with the latent standardisation folded in, its statistics
    measured again over fresh crops with the final weights (the running averages lag behind)."""
    import copy

    ae = p.accelerator.unwrap_model(p.autoencoder)
    codec = copy.deepcopy(ae.codec).eval()
    sums = torch.zeros(2, int(codec.config.hidden_size), dtype=torch.float64)
    n = 0
    for i in range(batches):
        z = codec.encoder(torch.from_numpy(sampler.batch(i, 0, c.batch_size, purpose=3)).to(p.accelerator.device)[:, None])
        frames = z.transpose(1, 2).reshape(-1, z.shape[1]).double().cpu()
        sums += torch.stack([frames.sum(0), frames.pow(2).sum(0)])
        n += frames.shape[0]
    mean = sums[0] / n
    var = (sums[1] / n - mean.pow(2)).clamp_min(0.0)
    fold_latent_norm(codec, mean.float().to(p.accelerator.device), var.float().to(p.accelerator.device), ae.norm.eps)
    return codec


@torch.no_grad()
def evaluate_codec(codec: Any, crops: np.ndarray, loss: ReconstructionLoss, batch: int = 16) -> dict[str, float]:
    """The exported codec on the held-out crops, through its own encode and decode (what users get)."""
    sums: dict[str, float] = {}
    bandwidth = float(codec.config.target_bandwidths[-1])
    for i in range(0, len(crops), batch):
        x = torch.from_numpy(crops[i : i + batch]).to(codec.device)
        codes = codec.encode(x[:, None], bandwidth=bandwidth).audio_codes
        y = codec.decode(codes, [None]).audio_values[:, 0, : x.shape[-1]]
        _, terms = loss(y, x)
        for k, v in {**terms, "si_snr_db": si_snr(y, x).mean()}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * x.shape[0]
    return {f"export_val_{k}": v / len(crops) for k, v in sums.items()}


def train_codec(run_dir: str | Path, cfg: Any) -> dict[str, Any]:
    """Train ``cfg.codec`` on the run's segmented train tracks; export to ``<run>/codec/model``.

    Returns:
        A summary: steps, last held-out figures, paths.
    """
    from stylecraft.codec.export import export_codec, plot_codec_losses

    run = Path(run_dir)
    root = run / "codec"
    c = cfg.codec
    p = _setup(root, c, int(cfg.segment.sample_rate))
    crop = int(round(c.crop_s * cfg.segment.sample_rate))
    sampler = CropSampler(segmented_tracks(run, "train"), crop, c.seed, (float(c.gain_db[0]), float(c.gain_db[1])))
    valid_tracks = segmented_tracks(run, "valid") or segmented_tracks(run, "train")[:4]
    crops = fixed_crops(valid_tracks, crop, per_track=max(1, math.ceil(c.eval_crops / len(valid_tracks))), limit=c.eval_crops)
    state = _resume(p, root, _settings(cfg))
    if p.accelerator.is_main_process and c.tensorboard:
        p.accelerator.init_trackers("codec", init_kwargs={"tensorboard": {"purge_step": state["step"] + 1} if state["step"] else {}})
    last_eval = _loop(p, root, c, sampler, crops, state)
    summary: dict[str, Any] = {"steps": state["step"], **last_eval}
    if p.accelerator.is_main_process:
        metrics = read_jsonl_tolerant(root / "metrics.jsonl")
        plot_codec_losses(metrics, root / "loss.png")
        codec = exported_codec(p, sampler, c)
        final = evaluate_codec(codec, crops, p.loss)
        summary |= final | export_codec(codec, root, cfg, facts={"steps": state["step"], **last_eval, **final})
    p.accelerator.wait_for_everyone()
    p.accelerator.end_training()
    return summary


def _loop(p: Parts, root: Path, c: Any, sampler: CropSampler, crops: np.ndarray, state: dict[str, Any]) -> dict[str, float]:
    acc = p.accelerator
    rank = acc.process_index
    step = int(state["step"])
    last_eval: dict[str, float] = {}
    p.autoencoder.train()
    t0 = time.perf_counter()
    with make_progress() as prog:
        task = prog.add_task("codec", total=c.max_steps, completed=step)
        while step < c.max_steps:
            if step >= c.vq_warmup_steps and not state["codebooks_initialised"]:
                _init_codebooks(p, sampler, c)  # on the latents the warmed-up encoder makes
                state["codebooks_initialised"] = True
            x = torch.from_numpy(sampler.batch(step, rank, c.batch_size)).to(acc.device)
            gen = torch.Generator().manual_seed(int(np.random.default_rng([c.seed, step, 7]).integers(2**62)))
            row = _step(p, x, gen, c.max_grad_norm, quantize=bool(state["codebooks_initialised"]))
            step += 1
            state["step"] = step
            row |= {"step": step, "lr": p.scheduler.get_last_lr()[0], "step_s": time.perf_counter() - t0}
            row["realtime_x"] = c.batch_size * c.crop_s * acc.num_processes / row["step_s"]
            if step % c.eval_every == 0 or step == c.max_steps:
                last_eval = evaluate(p, sampler, crops, c, quantize=bool(state["codebooks_initialised"]))
                row |= last_eval
            if acc.is_main_process and (step % c.log_every == 0 or "val_mel" in row):
                append_jsonl(root / "metrics.jsonl", row)
                if c.tensorboard:
                    acc.log({k: v for k, v in row.items() if isinstance(v, int | float)}, step=step)
            if step % c.save_every == 0 or step == c.max_steps:
                save_checkpoint(acc, root / "checkpoints", step, state, c.keep_last)
            prog.advance(task)
            t0 = time.perf_counter()
    return last_eval


def codec_from_checkpoint(step_dir: str | Path, architecture: str, overrides: dict[str, Any] | None = None) -> Any:
    """The codec of a training checkpoint as a plain ``EncodecModel`` (running latent statistics
    folded in): a look at a run while it trains.

    Raises:
        CheckpointError: the folder holds no codec checkpoint.
    """
    from safetensors.torch import load_file

    from stylecraft.errors import CheckpointError

    path = Path(step_dir) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"'{step_dir}' is not a codec checkpoint (no model.safetensors)")
    state = load_file(str(path))
    codec = build_codec(architecture, overrides or {}, 0)
    codec.load_state_dict({k[len("codec."):]: v for k, v in state.items() if k.startswith("codec.")})
    fold_latent_norm(codec, state["norm.mean"], state["norm.var"])
    return codec.eval()
