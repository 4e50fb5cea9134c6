"""Training throughput of the musicgen-small architecture: stylecraft's loop against a plain transformers loop.

What it measures
----------------
The model is ``MusicgenForConditionalGeneration`` built from code with musicgen-small's configs
(decoder: 24 layers, d 1024, 16 heads, FFN 4096, 4 codebooks x 2048; T5-base text encoder; the
32 kHz EnCodec), random init, nothing downloaded. ``--layers`` keeps d, heads, FFN, codebooks, T5
and EnCodec and only cuts the decoder's depth (the CPU default, so that a run fits in ~6 GB and
minutes). Windows of 10 s and 30 s are 500 and 1500 EnCodec frames (50 Hz).

Each run is its own process (its peak memory is its own), and the two loops alternate (plain,
stylecraft, plain, stylecraft ...) on the same synthetic token data (random codes [K, T], short
captions), with the same batch size and the same trainable parameters:

* **stylecraft**: the real ``stylecraft.train.loop.train()`` with its defaults (cached T5 states,
  ``speed.apply``: SDPA decoder attention, per-codebook loss from each head, TF32 on CUDA; fused
  AdamW; Accelerate's bf16 autocast on GPUs, fp32 on CPU), fed through its ``data_fn`` and
  ``bundle`` arguments. Per-step wall times and losses are the ``step_s`` and ``loss`` fields of its
  ``metrics.jsonl``; the run is stopped by the data source after the timed steps, before any
  checkpoint or export. ``train.cond_dropout=0`` (see below).
* **plain**: what a user writes with transformers, peft and accelerate alone, and nothing of
  stylecraft's training code: batches laid out by the decoder's own ``build_delay_pattern_mask``
  (as transformers' MusicGen fine-tuning examples do), a torch ``DataLoader``, accelerate's
  canonical loop (``prepare``, ``backward``, ``clip_grad_norm_``), ``attn_implementation="eager"``,
  T5 run inside ``model(...)`` every step (no caching), transformers' stacked-logits loss,
  ``torch.optim.AdamW(foreach=False)``, transformers' cosine schedule, ``loss.item()`` per step;
  fp32 on CPU and accelerate's bf16 on CUDA. LoRA through ``peft.get_peft_model`` with the module
  names (``LORA_TARGETS``) a user lists.

**Same work, checked.** Both loops take their seed, AdamW settings, cosine schedule, clipping and
LoRA settings from the same recipe's numbers, seed where ``train()`` does (so LoRA's init and the
dropout masks agree), read the items in one fixed seeded order (``epoch_order``: handed to the plain
loop as a list, produced by stylecraft's own sampler, and compared), keep the frozen T5 in
eval mode, and train without condition dropout (whose cost is one multiply of the text states).
Each pair of runs is then checked (:func:`check_same_work`): the same items in the same order,
trainable parameters, optimizer steps and learning rates, and per-step losses within ``LOSS_TOL``
(1e-4 in fp32 on CPU, 2e-2 under bf16 on CUDA). A failed check is written into the results and the
script exits with status 1.

Warm-up steps are excluded; a step's time runs from one optimizer step to the next (data collation
included). Reported per run: audio frames/s (B x T / step), tokens/s (frames x codebooks), model
FLOP/s, MFU on CUDA, and peak memory (``torch.cuda.max_memory_allocated`` on GPU; on CPU the rise of
the process's peak RSS (``getrusage``) over its RSS before the model was built).

Model FLOPs per step (``train_flops``), with B batch, S = T + K - 1 decoder positions, L layers,
d width, f FFN width, K codebooks, V codebook size, X text tokens, d_t T5's width::

    forward MACs per layer = B*S*(4 d^2 [self q,k,v,o] + 2 d^2 [cross q,o] + 2 d f [FFN])
                           + B*X*2 d^2 [cross k,v over the text]
                           + B*S*(S + X)*2 d [attention scores and weighted sums, causal mask not halved]
    forward MACs (heads)   = B*S*K*d*V
    forward MACs (enc_to_dec_proj, when d_t != d) = B*X*d_t*d
    full fine-tuning       = 3 x 2 x forward MACs (forward, gradients of activations and of weights)
    LoRA                   = 2 x 2 x forward MACs + 6 x LoRA params x B*S

This is the usual ``6 x params x tokens + attention`` with tokens = decoder positions (the K
codebooks share a position) and the cross-attention keys/values counted over the text tokens they
run on (LoRA's adapters on cross k,v are counted over S, an overcount below 1% of the total). The
frozen T5 and the embedding lookups are not model FLOPs. MFU = model FLOP/s / peak, with the GPU's
dense bf16 peak (``PEAK_BF16_FLOPS``: H100 SXM / H200 989, H100 PCIe 756, A100 312 TFLOP/s, or
``--peak-tflops``). On CPU no peak is claimed: the model FLOP/s are set against this CPU's fp32
matmul rate measured in the same run (before and after the runs), reported as its own column.

``--e2e`` times a whole LoRA fine-tune instead: ``--e2e-audio-s`` of audio (default one hour) as
30 s windows of [4, 1500] tokens, two epochs, through ``train()`` with its defaults, one checkpoint
and the merged export; it starts from tokens (EnCodec tokenization of the audio is not included).
It writes ``bench_train_e2e_<device>.{json,md}``. On CPU it runs only on a smaller set asked for.

``--profile`` writes a torch.profiler table of one training step of each loop (reduced depth) to
``eval/results/bench_train_profile.txt``.

Usage::

    .venv/bin/python eval/bench_train.py                       # CPU: 4 layers, batch 1, 2+3 steps
    .venv/bin/python eval/bench_train.py --device cuda --steps 10 --batch 8
    .venv/bin/python eval/bench_train.py --device cuda --e2e --batch 8     # 1 h of audio, 2 epochs
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import functools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("STYLECRAFT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
FRAME_RATE = 50
CAPTIONS = [f"artist style, take {i}, {mood}" for i, mood in enumerate(["calm", "driving", "dark", "bright"] * 2)]


class StopBench(Exception):
    """Raised by the data source once the timed steps are done, to end ``train()`` before it saves."""


# ---------------------------------------------------------------------------------------------- model


def musicgen_small_config(layers: int = 24) -> Any:
    """musicgen-small's configs (T5-base, EnCodec 32 kHz, decoder), decoder depth ``layers``."""
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    text = T5Config(
        vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
        relative_attention_num_buckets=32, dropout_rate=0.1, feed_forward_proj="relu", pad_token_id=0, eos_token_id=1,
    )
    audio = EncodecConfig(
        sampling_rate=32000, audio_channels=1, num_filters=64, upsampling_ratios=[8, 5, 4, 4], codebook_size=2048,
        codebook_dim=128, hidden_size=128, num_lstm_layers=2, num_residual_layers=1, target_bandwidths=[2.2],
        normalize=False, use_causal_conv=False, chunk_length_s=None, overlap=None, use_conv_shortcut=False,
        kernel_size=7, last_kernel_size=7, residual_kernel_size=3, dilation_growth_rate=2, compress=2,
        norm_type="weight_norm", pad_mode="reflect", trim_right_ratio=1.0,
    )  # 4 codebooks x 11 bits x 50 Hz = 2.2 kbps
    decoder = MusicgenDecoderConfig(
        vocab_size=2048, max_position_embeddings=2048, num_hidden_layers=layers, ffn_dim=4096, num_attention_heads=16,
        hidden_size=1024, num_codebooks=4, audio_channels=1, activation_function="gelu", dropout=0.1,
        attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0, initializer_factor=0.02,
        scale_embedding=False, pad_token_id=2048, bos_token_id=2048, tie_word_embeddings=False,
    )
    decoder.decoder_start_token_id = 2048
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


def build_bundle(arch: str, layers: int, attn: str, device: str) -> Any:
    """A ModelBundle of ``arch`` (``small``: musicgen-small, random init; ``tiny``: the test preset)."""
    from transformers import MusicgenForConditionalGeneration

    from stylecraft.models.loading import ModelBundle
    from stylecraft.models.presets import byte_tokenizer

    if arch == "tiny":
        model, tok = _tiny()
        model = copy.deepcopy(model)  # each run trains (and peft rewires) its own copy
    else:
        torch.manual_seed(0)
        with torch.device(device):
            model = MusicgenForConditionalGeneration(musicgen_small_config(layers))
        tok = byte_tokenizer()  # ids < 259 are valid T5 ids; captions are kept short (see CAPTIONS)
    model.decoder.set_attn_implementation(attn)
    return ModelBundle(model=model, tokenizer=tok, name=f"musicgen-{arch}-bench", source="random init")


@functools.lru_cache(maxsize=1)
def _tiny() -> tuple[Any, Any]:
    """The tiny preset, built once per process (fitting its codebooks takes seconds)."""
    from stylecraft.models.presets import build_tiny

    return build_tiny()


class TokenItems(torch.utils.data.Dataset):
    """Random EnCodec codes [K, T] with captions; raises :class:`StopBench` after ``limit`` reads.

    ``reads`` keeps the index of every item read, so the two loops can be shown to have trained on
    the same items in the same order.
    """

    def __init__(self, n: int, k: int, frames: int, vocab: int, limit: int | None = None, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.codes = torch.randint(0, vocab, (n, k, frames), generator=g)  # [N, K, T]
        self.limit = limit
        self.reads: list[int] = []

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.limit is not None and len(self.reads) >= self.limit:
            raise StopBench
        self.reads.append(int(i))
        return {"codes": self.codes[i], "caption": CAPTIONS[i % len(CAPTIONS)], "id": f"item-{i}"}


def n_items(spec: dict[str, Any]) -> int:
    """Items in a run's training set: the timed steps' batches and a few spare (the loader reads ahead)."""
    return int(spec["batch"] * (spec["warmup"] + spec["steps"] + 4))


def max_steps(spec: dict[str, Any]) -> int:
    """The schedule's length: past the timed steps, so no run reaches its final checkpoint or export."""
    return int(spec["warmup"] + spec["steps"] + 50)


def text_lens(tokenizer: Any, order: list[int], batch: int) -> list[int]:
    """Padded caption length X of each batch of items ``order`` (what cross-attention runs over)."""
    out = []
    for s in range(len(order) // batch):
        caps = [CAPTIONS[i % len(CAPTIONS)] for i in order[s * batch : (s + 1) * batch]]
        out.append(len(tokenizer(caps, padding=True, truncation=True, max_length=64)["input_ids"][0]))
    return out


# ---------------------------------------------------------------------------------------------- FLOPs


def train_flops(dec: Any, batch: int, frames: int, text_len: int, mode: str, lora_params: int = 0,
                text_dim: int | None = None) -> float:
    """Model FLOPs of one optimizer step (module docstring): decoder only, T5 and embeddings excluded.

    ``text_dim`` is T5's width when it differs from the decoder's: the ``enc_to_dec_proj`` between
    them is then counted over the text tokens.
    """
    d, f, k, v, layers = dec.hidden_size, dec.ffn_dim, dec.num_codebooks, dec.vocab_size, dec.num_hidden_layers
    s = frames + k - 1
    per_layer = batch * s * (6 * d * d + 2 * d * f) + batch * text_len * 2 * d * d + batch * s * (s + text_len) * 2 * d
    proj = batch * text_len * text_dim * d if text_dim and text_dim != d else 0
    fwd = 2.0 * (layers * per_layer + batch * s * k * d * v + proj)
    if mode == "full":
        return 3.0 * fwd
    return 2.0 * fwd + 6.0 * lora_params * batch * s


# ---------------------------------------------------------------------------------------------- runs


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_now() -> int:
    """Resident set size of this process now, in bytes (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _peak_memory(device: str, rss_before: int) -> dict[str, Any]:
    """Peak memory of the run: CUDA's allocator peak on GPU; on CPU the rise of the process's peak RSS
    over its RSS before the model was built (weights, gradients, optimizer state and activations)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    out: dict[str, Any] = {"peak_rss_bytes": rss, "rss_before_bytes": rss_before,
                           "peak_rss_delta_bytes": rss - rss_before}
    if device == "cuda":
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    out["peak_bytes"] = out.get("peak_cuda_bytes", out["peak_rss_delta_bytes"])
    return out


def stylecraft_cfg(run: Path, spec: dict[str, Any], steps: int, cond_dropout: float = 0.0) -> Any:
    """The recipe both loops take their optimizer settings from.

    The throughput runs set ``train.cond_dropout=0`` (its cost is one multiply of the [B, X, D]
    text states) so that both loops compute the same loss on the same batches and it can be checked.
    """
    from stylecraft.config import load_recipe

    return load_recipe(None, [
        "name=bench", f"run_dir={run}", "stages=[train]", f"train.mode={spec['mode']}",
        f"train.batch_size={spec['batch']}", f"train.max_steps={steps}", "train.warmup_steps=2",
        "train.lr=1e-4", f"train.save_every={steps}", f"train.eval_every={steps}", "train.log_every=1",
        f"train.compile={str(spec.get('compile', False)).lower()}", f"train.seed={spec['seed']}",
        f"train.cond_dropout={cond_dropout}", f"train.lora.target_modules=[{','.join(LORA_TARGETS)}]",
    ])


# Decoder modules both loops adapt with LoRA in the throughput runs (the recipe's default list
# without the output heads, which peft cannot name by suffix the way a user would list them).
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def epoch_order(n: int, seed: int) -> list[int]:
    """The benchmark's fixed item order: a seeded permutation (stylecraft's sampler is checked to read
    the same one; the plain loop is handed it as a list)."""
    g = torch.Generator().manual_seed(seed * 100_003)
    return torch.randperm(n, generator=g).tolist()


def plain_collate(model: Any, tokenizer: Any, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """A batch the way transformers' MusicGen fine-tuning examples build one: the decoder's own
    ``build_delay_pattern_mask`` lays out the codes; labels are the next positions, pads ignored."""
    codes = torch.stack([it["codes"] for it in items])  # [B, K, T]
    b, k, t = codes.shape
    pad = int(model.config.decoder.pad_token_id)
    prompt = torch.cat([torch.full((b, k, 1), pad), codes], dim=-1).reshape(b * k, t + 1)
    _, pattern = model.decoder.build_delay_pattern_mask(prompt, pad_token_id=pad, max_length=t + k)
    seq = pattern.reshape(b, k, t + k)
    labels = seq[..., 1:].transpose(1, 2).clone()
    labels[labels == pad] = -100
    text = tokenizer([it["caption"] for it in items], padding=True, truncation=True, max_length=64, return_tensors="pt")
    return {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"],
            "decoder_input_ids": seq[..., :-1].reshape(b * k, t + k - 1), "labels": labels}


def run_plain(spec: dict[str, Any]) -> dict[str, Any]:
    """The plain loop (module docstring): transformers' model, collation and schedule, peft's LoRA,
    accelerate's canonical loop; per-step wall times and losses.

    Nothing of stylecraft's training code is used: only the recipe's numbers (seed, AdamW settings,
    schedule, clipping, LoRA rank), so that both loops take the same steps and can be checked.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import DataLoader, Subset
    from transformers import get_cosine_schedule_with_warmup

    dev, b, n_steps = spec["device"], spec["batch"], spec["warmup"] + spec["steps"]
    rss_before = _rss_now()
    bundle = build_bundle(spec["arch"], spec["layers"], "eager", dev)
    t = stylecraft_cfg(Path("unused"), spec, max_steps(spec)).train
    accelerator = Accelerator(cpu=dev == "cpu", mixed_precision="bf16" if dev == "cuda" else "no")
    set_seed(t.seed)  # before LoRA's init and the first dropout mask, as stylecraft seeds
    model: Any = bundle.model
    model.text_encoder.requires_grad_(False)
    model.audio_encoder.requires_grad_(False)
    if spec["mode"] == "lora":
        model = get_peft_model(model, LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                                                 target_modules=LORA_TARGETS))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, t.warmup_steps, t.max_steps)
    dec_cfg = bundle.model.config.decoder
    items = TokenItems(n_items(spec), dec_cfg.num_codebooks, spec["frames"], dec_cfg.vocab_size, seed=spec["seed"])
    loader = DataLoader(Subset(items, epoch_order(len(items), t.seed)), batch_size=b, shuffle=False, drop_last=True,
                        collate_fn=functools.partial(plain_collate, bundle.model, bundle.tokenizer))
    model, opt, loader, sched = accelerator.prepare(model, opt, loader, sched)
    model.train()
    # A frozen encoder in eval mode, as in stylecraft's loop: with its dropout on, the loss would
    # depend on T5's dropout masks and could not be compared.
    bundle.model.text_encoder.eval()
    times, losses, lrs = [], [], []
    _sync(dev)
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= n_steps:
            break
        out = model(**batch)
        accelerator.backward(out.loss)
        accelerator.clip_grad_norm_(params, t.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        lrs.append(sched.get_last_lr()[0])
        now = time.perf_counter()
        times.append(now - start)
        start = now
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    read = items.reads[: b * n_steps]
    return {"step_s_all": times, "loss_all": losses, "lr_all": lrs, "items_read": read,
            "text_len_all": text_lens(bundle.tokenizer, read, b),
            "trainable_params": sum(p.numel() for p in params), "lora_params": lora_params,
            "text_dim": int(bundle.model.config.text_encoder.hidden_size), **_peak_memory(dev, rss_before)}


def run_stylecraft(spec: dict[str, Any]) -> dict[str, Any]:
    """stylecraft's real ``train()`` for ``spec``, stopped by the data after the timed steps."""
    from stylecraft.artifacts import read_jsonl_tolerant
    from stylecraft.train.loop import TrainData, train

    dev, b, n_steps = spec["device"], spec["batch"], spec["warmup"] + spec["steps"]
    rss_before = _rss_now()
    bundle = build_bundle(spec["arch"], spec["layers"], "sdpa", dev)
    dec_cfg = bundle.model.config.decoder
    # Accelerate's loader reads one batch ahead: allow the timed steps and the one after them.
    items = TokenItems(n_items(spec), dec_cfg.num_codebooks, spec["frames"], dec_cfg.vocab_size,
                       limit=b * (n_steps + 1), seed=spec["seed"])
    valid = TokenItems(b, dec_cfg.num_codebooks, spec["frames"], dec_cfg.vocab_size, seed=spec["seed"] + 1)
    data = TrainData(train=items, valid=valid)  # type: ignore[arg-type]

    def data_fn(_: Path) -> TrainData:
        return data

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        run = Path(tmp) / "run"
        try:
            train(run, stylecraft_cfg(run, spec, max_steps(spec)), data_fn=data_fn, bundle=bundle)
        except StopBench:
            pass
        rows = read_jsonl_tolerant(run / "train" / "metrics.jsonl")[:n_steps]
    if len(rows) < n_steps:
        raise RuntimeError(f"stylecraft's loop logged {len(rows)} of {n_steps} steps")
    model: Any = bundle.model  # peft injected its adapters into these modules in place
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    read = items.reads[: b * n_steps]
    return {"step_s_all": [r["step_s"] for r in rows], "loss_all": [r["loss"] for r in rows],
            "lr_all": [r["lr"] for r in rows], "optimizer_steps": [r["step"] for r in rows],
            "tokens_per_s_logged": [r["tokens_per_s"] for r in rows], "items_read": read,
            "text_len_all": text_lens(bundle.tokenizer, read, b), "trainable_params": trainable,
            "lora_params": lora_params, "text_dim": int(bundle.model.config.text_encoder.hidden_size),
            **_peak_memory(dev, rss_before)}


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed run of ``spec['loop']`` (plain | stylecraft) with its throughput figures."""
    t0 = time.perf_counter()
    res = run_plain(spec) if spec["loop"] == "plain" else run_stylecraft(spec)
    dec = musicgen_small_config(spec["layers"]).decoder if spec["arch"] == "small" else _tiny_decoder()
    w = spec["warmup"]
    timed = res["step_s_all"][w:]
    step_s = statistics.median(timed)
    frames = spec["batch"] * spec["frames"]
    flops = statistics.fmean(
        train_flops(dec, spec["batch"], spec["frames"], x, spec["mode"], res["lora_params"], res["text_dim"])
        for x in res["text_len_all"][w:]
    )
    out = {
        **spec, **res,
        "warmup_step_s": res["step_s_all"][:w],
        "step_s": step_s,
        "step_s_mean": statistics.fmean(timed),
        "frames_per_s": frames / step_s,
        "tokens_per_s": frames * dec.num_codebooks / step_s,
        "model_flops_per_step": flops,
        "flops_per_s": flops / step_s,
        "process_s": time.perf_counter() - t0,
    }
    peak = spec.get("peak_flops") or peak_flops(spec["device"])
    out["mfu"] = out["flops_per_s"] / peak if peak else None
    return out


# Loss agreement of the two loops, step by step: fp32 on CPU differs only by the attention kernel and
# the optimizer's summation order; bf16 autocast on CUDA rounds the two attention paths differently.
LOSS_TOL = {"cpu": 1e-4, "cuda": 2e-2}


def check_same_work(plain: dict[str, Any], sc: dict[str, Any]) -> dict[str, Any]:
    """Both loops of one setting did the same work: items, windows, trainable parameters, optimizer
    steps and learning rates equal, and per-step losses within ``LOSS_TOL``.

    Raises:
        RuntimeError: naming what differs.
    """
    n = plain["warmup"] + plain["steps"]
    for key in ("frames", "batch", "mode", "layers", "arch", "device", "seed"):
        if plain[key] != sc[key]:
            raise RuntimeError(f"the loops ran different settings: {key} {plain[key]} vs {sc[key]}")
    if plain["items_read"] != sc["items_read"]:
        raise RuntimeError(f"the loops read different items: {plain['items_read']} vs {sc['items_read']}")
    if plain["trainable_params"] != sc["trainable_params"] or plain["lora_params"] != sc["lora_params"]:
        raise RuntimeError(f"the loops trained different parameters: {plain['trainable_params']} vs "
                           f"{sc['trainable_params']}")
    if sc.get("optimizer_steps", list(range(1, n + 1))) != list(range(1, n + 1)) or len(plain["loss_all"]) != n:
        raise RuntimeError("the loops took different numbers of optimizer steps")
    if any(not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15) for a, b in zip(plain["lr_all"], sc["lr_all"], strict=True)):
        raise RuntimeError(f"the loops used different learning rates: {plain['lr_all']} vs {sc['lr_all']}")
    diffs = [abs(a - b) for a, b in zip(plain["loss_all"], sc["loss_all"], strict=True)]
    tol = LOSS_TOL[plain["device"]]
    if not all(math.isfinite(x) for x in plain["loss_all"] + sc["loss_all"]) or max(diffs) > tol:
        raise RuntimeError(f"the loops' losses differ by up to {max(diffs):.3g} (> {tol:g}): "
                           f"plain {plain['loss_all']} vs stylecraft {sc['loss_all']}")
    return {"ok": True, "max_abs_loss_diff": max(diffs), "tolerance": tol, "steps": n}


def _tiny_decoder() -> Any:
    from stylecraft.models.presets import tiny_config

    return tiny_config().decoder


# Dense bf16 tensor-core peaks from NVIDIA's datasheets; the first name found in the device's name wins.
PEAK_BF16_FLOPS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))


def peak_flops(device: str) -> float | None:
    """The GPU's dense bf16 peak (None on CPU or an unlisted GPU: pass ``--peak-tflops``)."""
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS if k in name), None)


def cpu_matmul_flops(n: int = 2048, reps: int = 5) -> float:
    """Measured fp32 matmul FLOP/s of this CPU (median of ``reps`` [n, n] @ [n, n] after a warm-up):
    the reference for CPU MFU, since no CPU peak is claimed."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times)


def run_in_process(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """``run_one(spec)`` in a fresh interpreter, so each run's peak memory is its own."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=timeout_s)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"run {spec['loop']} {spec['mode']} {spec['frames']} failed: " + " | ".join(tail))
    return dict(json.loads(lines[-1][len("RESULT "):]))


def _profiled_step(model: Any, batch: dict[str, Any], states: torch.Tensor | None, params: list[Any], opt: Any) -> None:
    """One training step in labelled sections; T5 runs inside the forward unless ``states`` is given."""
    from torch.profiler import record_function

    with record_function("forward"):
        out = model(
            input_ids=None if states is not None else batch["input_ids"],
            encoder_outputs=(states,) if states is not None else None,
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
            labels=batch["labels"],
        )
    with record_function("backward"):
        out.loss.backward()
    with record_function("optimizer"):
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)


def write_profile(path: Path, layers: int, frames: int = 1500) -> None:
    """torch.profiler tables of one CPU training step: the plain path (eager attention, T5 inside the
    forward, AdamW foreach=False) and stylecraft's (SDPA, cached T5 states, fused AdamW)."""
    from torch.profiler import ProfilerActivity, profile

    from stylecraft.train.batches import Collator

    sections = []
    for name, attn, fused in (("plain: eager attention, T5 each step, AdamW(foreach=False)", "eager", False),
                              ("stylecraft: SDPA, cached T5 states, fused AdamW", "sdpa", True)):
        bundle = build_bundle("small", layers, attn, "cpu")
        model: Any = bundle.model
        model.text_encoder.requires_grad_(False)
        model.audio_encoder.requires_grad_(False)
        dec = model.config.decoder
        items = TokenItems(2, dec.num_codebooks, frames, dec.vocab_size)
        batch = Collator(bundle.tokenizer, bundle.pad_token_id, int(dec.decoder_start_token_id))([items[0]])
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, foreach=False, fused=fused or None)
        model.train()
        states = model.text_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0].detach()

        cached = states if attn == "sdpa" else None
        _profiled_step(model, batch, cached, params, opt)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            _profiled_step(model, batch, cached, params, opt)
            wall = time.perf_counter() - t0
        table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=28, max_name_column_width=48)
        sections.append(f"## {name}\n{layers} decoder layers, batch 1, {frames} frames, one step {wall:.2f} s "
                        f"(under the profiler)\n\n{table}\n")
    from stylecraft.artifacts import atomic_write_text

    head = (f"torch.profiler, CPU, torch {torch.__version__}, {os.cpu_count()} cores, load {os.getloadavg()}; "
            f"written by eval/bench_train.py --profile on {dt.date.today()}\n\n")
    atomic_write_text(path, head + "\n".join(sections))


# ---------------------------------------------------------------------------------------------- report


def machine_info(device: str) -> dict[str, Any]:
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "os": platform.platform()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
        info["peak_bf16_flops"] = peak_flops(device)
    return info


def versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "accelerate": accelerate.__version__, "peft": peft.__version__}
    if torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
    return out


def pairs(runs: list[dict[str, Any]], cpu_matmul_flops: float | None = None) -> list[dict[str, Any]]:
    """Per (window, mode): the median over repeats of each loop, and stylecraft / plain.

    ``cpu_matmul_flops`` (the CPU's measured fp32 matmul rate) gives each loop's FLOP/s as a share of
    it, the CPU's stand-in for MFU.
    """
    out = []
    keys = sorted({(r["frames"], r["mode"]) for r in runs}, key=lambda k: (k[0], k[1]))
    for frames, mode in keys:
        row: dict[str, Any] = {"window_s": frames / FRAME_RATE, "frames": frames, "mode": mode}
        for loop in ("plain", "stylecraft"):
            rs = [r for r in runs if (r["frames"], r["mode"], r["loop"]) == (frames, mode, loop)]
            if not rs:
                continue
            flops = statistics.median(r["flops_per_s"] for r in rs)
            row[loop] = {
                "step_s": statistics.median(r["step_s"] for r in rs),
                "frames_per_s": statistics.median(r["frames_per_s"] for r in rs),
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                "flops_per_s": flops,
                "mfu": statistics.median(r["mfu"] for r in rs) if rs[0]["mfu"] is not None else None,
                "share_of_cpu_matmul": flops / cpu_matmul_flops if cpu_matmul_flops else None,
                "peak_bytes": max(r["peak_bytes"] for r in rs),
                "runs": len(rs),
            }
        if "plain" in row and "stylecraft" in row:
            row["speedup"] = row["stylecraft"]["tokens_per_s"] / row["plain"]["tokens_per_s"]
            row["memory_ratio"] = row["stylecraft"]["peak_bytes"] / row["plain"]["peak_bytes"]
        out.append(row)
    return out


def _context(res: dict[str, Any]) -> str:
    m = res["machine"]
    return (f"Written by `eval/bench_train.py` on {res['date']}. Machine: {m['cpu']}, {m['cores']} cores, "
            f"{m['torch_threads']} torch threads" + (f", {m['gpu']}" if "gpu" in m else ", no GPU")
            + f". Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}. "
            f"Load average (1, 5, 15 min) before / after: {res['load_before']} / {res['load_after']}.")


def markdown(res: dict[str, Any]) -> str:
    a = res["args"]
    gib = 2**30
    cpu = a["device"] == "cpu"
    mem = ("peak CUDA memory (max_memory_allocated)" if not cpu
           else "rise of the run process's peak RSS over its RSS before the model was built")
    lines = [
        "# Training throughput: stylecraft's loop vs a plain transformers loop",
        "",
        _context(res),
        "",
        ("Model: the tiny test preset (its figures check the machinery and mean nothing)"
         if a.get("arch") == "tiny" else
         f"Model: musicgen-small architecture (random init), decoder depth {a['layers']} of 24"
         + (" (reduced so that a CPU run fits in minutes; width, heads, FFN, codebooks, T5-base and EnCodec as "
            "musicgen-small)" if a["layers"] != 24 else ""))
        + f"; device {a['device']}; batch {a['batch']}; "
        f"{a['warmup']} warm-up + {a['steps']} timed steps per run (median of the timed steps); "
        f"{a['repeats']} repeat(s) per loop, the loops alternating. Precision: "
        + ("bf16 autocast in both loops." if not cpu else "fp32 in both loops (stylecraft's `auto` on CPU).")
        + " Plain loop: eager attention, T5 every step, AdamW(foreach=False)"
        + (", torch.autocast(bf16)" if not cpu else "") + ". Both loops: the same weights, items in the same order, "
        "AdamW settings, cosine schedule and clipping from the same recipe, condition dropout off.",
        "",
        "| window | mode | plain frames/s | stylecraft frames/s | stylecraft tokens/s | plain GFLOP/s | "
        "stylecraft GFLOP/s | " + ("share of measured fp32 matmul rate" if cpu else "MFU (bf16 peak)")
        + " plain / stylecraft | peak mem plain / stylecraft (GiB) | stylecraft / plain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in res["pairs"]:
        pl, sc = p.get("plain"), p.get("stylecraft")
        if not (pl and sc):
            continue
        key = "share_of_cpu_matmul" if cpu else "mfu"
        util = f"{pl[key]:.1%} / {sc[key]:.1%}" if sc.get(key) is not None else "n/a"
        lines.append(
            f"| {p['window_s']:.0f} s ({p['frames']} frames) | {p['mode']} | {pl['frames_per_s']:.2f} | "
            f"{sc['frames_per_s']:.2f} | {sc['tokens_per_s']:.1f} | {pl['flops_per_s'] / 1e9:.1f} | "
            f"{sc['flops_per_s'] / 1e9:.1f} | {util} | {pl['peak_bytes'] / gib:.2f} / {sc['peak_bytes'] / gib:.2f} | "
            f"**{p['speedup']:.2f}x** |"
        )
    lines += [
        "",
        f"Peak memory is the {mem}. Model FLOPs: decoder only, full = 3 x forward, LoRA = 2 x forward + 6 x LoRA "
        "params x positions; forward = 2 x (per layer B*S*(6 d^2 + 2 d f) + B*X*2 d^2 + B*S*(S+X)*2 d, plus heads "
        "B*S*K*d*V and enc_to_dec_proj B*X*768*d) with S = frames + K - 1, X text tokens (eval/bench_train.py "
        "docstring).",
    ]
    if cpu:
        lines.append(
            f"No CPU peak is claimed: the utilisation column is the model FLOP/s over this CPU's fp32 matmul rate "
            f"measured in the same run ([2048, 2048] @ [2048, 2048], median of 5, before and after the runs: "
            f"{res['cpu_matmul_flops_before'] / 1e9:.1f} and {res['cpu_matmul_flops_after'] / 1e9:.1f} GFLOP/s).")
    else:
        lines.append("MFU against the GPU's dense bf16 peak (PEAK_BF16_FLOPS in the script, or --peak-tflops).")
    spreads = [(max(t) - min(t)) / statistics.median(t) for r in res["runs"] if (t := r["step_s_all"][r["warmup"]:])]
    if spreads:
        lines.append(
            f"Noise: the timed steps of one run spread by up to {max(spreads):.0%} of their median (max - min; "
            f"load average above), so a stylecraft / plain ratio within about that of 1 is not a measured difference.")
    lines += ["", "## Same work", "",
              "Checked per setting before any figure is kept: the same items in the same order, trainable "
              "parameters, optimizer steps and learning rates, and per-step losses within the tolerance.", "",
              "| window | mode | repeat | result | max abs loss diff | tolerance |", "|---|---|---|---|---|---|"]
    for c in res["same_work"]:
        result = "same" if c["ok"] else f"**FAILED**: {c['error']}"
        diff = f"{c['max_abs_loss_diff']:.2e}" if c["ok"] else "—"
        tol = f"{c['tolerance']:g}" if c["ok"] else "—"
        lines.append(f"| {c['window_s']:.0f} s | {c['mode']} | {c['repeat']} | {result} | {diff} | {tol} |")
    lines += [
        "",
        "## Runs (in the order they ran)",
        "",
        "| # | loop | window | mode | warm-up steps (s) | timed steps (s) | losses | process wall (s) | peak (GiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(res["runs"], 1):
        lines.append(
            f"| {i} | {r['loop']} | {r['frames'] / FRAME_RATE:.0f} s | {r['mode']} | "
            f"{', '.join(f'{x:.2f}' for x in r['warmup_step_s'])} | "
            f"{', '.join(f'{x:.2f}' for x in r['step_s_all'][r['warmup']:])} | "
            f"{', '.join(f'{x:.5f}' for x in r['loss_all'])} | {r['process_s']:.0f} | {r['peak_bytes'] / gib:.2f} |"
        )
    lines += ["", "## End-to-end LoRA fine-tune (1 h of audio, 2 epochs, one GPU)", "", f"{res['e2e_note']}."]
    return "\n".join(lines) + "\n"


def e2e_markdown(res: dict[str, Any]) -> str:
    e = res["e2e"]
    return "\n".join([
        f"# End-to-end LoRA fine-tune, {e['device']}", "", _context(res), "",
        ("The tiny test preset (its figures check the machinery and mean nothing)" if e["arch"] == "tiny" else
         f"musicgen-small architecture (random init, decoder depth {e['layers']} of 24)")
        + f", {e['items']} windows of 30 s "
        f"({e['audio_s'] / 60:.1f} min of audio as tokens), batch {e['batch']}, {e['steps']} steps (2 epochs) through "
        "`train()` with its defaults (condition dropout, one checkpoint, validation, merged export).", "",
        f"Wall time {e['wall_s']:.1f} s ({e['wall_s'] / 60:.2f} min) including model building and placement, "
        f"checkpoint and export; {e['audio_s_per_wall_s']:.2f} s of audio trained per second. EnCodec tokenization of "
        "the audio is not included. Peak memory "
        + (f"{e['peak_cuda_bytes'] / 2**30:.2f} GiB (CUDA)." if "peak_cuda_bytes" in e
           else f"{e['peak_rss_delta_bytes'] / 2**30:.2f} GiB (rise of peak RSS)."),
    ]) + "\n"


def run_e2e(args: argparse.Namespace) -> dict[str, Any]:
    """LoRA fine-tune on ``args.e2e_audio_s`` seconds of 30 s token windows for two epochs, timed end
    to end through ``train()`` with stylecraft's defaults (condition dropout, checkpoint, validation,
    merged export)."""
    from stylecraft.train.loop import TrainData, train

    items_n = max(1, round(args.e2e_audio_s / 30))
    batch = min(args.batch, items_n)
    steps = 2 * (items_n // batch)  # two epochs of full batches (the loader drops a partial last one)
    rss_before = _rss_now()
    t0 = time.perf_counter()
    bundle = build_bundle(args.arch, args.layers, "sdpa", args.device)
    dec = bundle.model.config.decoder
    data = TrainData(train=TokenItems(items_n, dec.num_codebooks, 1500, dec.vocab_size),  # type: ignore[arg-type]
                     valid=TokenItems(batch, dec.num_codebooks, 1500, dec.vocab_size, seed=1))  # type: ignore[arg-type]
    spec = {"mode": "lora", "batch": batch, "seed": 0}
    cfg = stylecraft_cfg(Path("unused"), spec, steps, cond_dropout=0.1)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        run = Path(tmp) / "run"
        cfg.run_dir = str(run)
        summary = train(run, cfg, data_fn=lambda _: data, bundle=bundle)
    wall = time.perf_counter() - t0
    return {"device": args.device, "arch": args.arch, "layers": int(dec.num_hidden_layers), "items": items_n, "audio_s": items_n * 30,
            "batch": batch, "steps": steps, "epochs": 2, "wall_s": wall,
            "audio_s_per_wall_s": 2 * items_n * 30 / wall, **_peak_memory(args.device, rss_before),
            "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) or v is None}}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per run")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--windows", default="10,30", help="window lengths in seconds")
    ap.add_argument("--modes", default="full,lora")
    ap.add_argument("--layers", type=int, default=None, help="decoder depth (default: 24 on cuda, 4 on cpu)")
    ap.add_argument("--arch", choices=["small", "tiny"], default="small",
                    help="tiny: the test preset (checks the machinery in seconds; its figures mean nothing)")
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs per loop and setting")
    ap.add_argument("--compile", action="store_true", help="stylecraft runs with train.compile=true")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the GPU's dense bf16 peak, for a GPU not in PEAK_BF16_FLOPS")
    ap.add_argument("--e2e", action="store_true",
                    help="time the LoRA fine-tune of --e2e-audio-s seconds of audio for 2 epochs (and no throughput runs)")
    ap.add_argument("--e2e-audio-s", type=float, default=3600.0,
                    help="audio in the end-to-end run (default one hour; on CPU a smaller set must be asked for)")
    ap.add_argument("--profile", action="store_true", help="write the profiler table and exit")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--in-process", action="store_true",
                    help="run every run in this process (quick checks: peak memory is then not per run)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
        "machine": machine_info(args.device), "versions": versions(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_one(json.loads(args.worker))), flush=True)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_train: --device cuda but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    if args.e2e and args.device != "cuda" and args.e2e_audio_s >= 3600:
        print("bench_train: --e2e of one hour of audio needs --device cuda; on CPU pass a small --e2e-audio-s",
              file=sys.stderr)
        return 2
    if args.profile:
        write_profile(args.out / "bench_train_profile.txt", layers=args.layers or 2)
        return 0
    args.layers = args.layers or (24 if args.device == "cuda" else 4)
    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    args.out.mkdir(parents=True, exist_ok=True)
    if args.e2e:
        res = header(args)
        res["e2e"] = run_e2e(args)
        res["load_after"] = [round(x, 2) for x in os.getloadavg()]
        atomic_write_json(args.out / f"bench_train_e2e_{args.device}.json", res)
        atomic_write_text(args.out / f"bench_train_e2e_{args.device}.md", e2e_markdown(res))
        print(f"e2e: {res['e2e']['wall_s'] / 60:.1f} min for {res['e2e']['steps']} steps", flush=True)
        return 0
    res = header(args)
    if args.device == "cpu":
        res["cpu_matmul_flops_before"] = cpu_matmul_flops()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    runs: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for window in [float(w) for w in args.windows.split(",")]:
        for mode in args.modes.split(","):
            for rep in range(args.repeats):
                pair = []
                for loop in ("plain", "stylecraft"):
                    spec = {"loop": loop, "mode": mode, "frames": int(window * FRAME_RATE), "batch": args.batch,
                            "steps": args.steps, "warmup": args.warmup, "layers": args.layers, "arch": args.arch,
                            "device": args.device, "seed": rep, "compile": args.compile, "peak_flops": peak}
                    r = run_one(spec) if args.in_process else run_in_process(spec, args.timeout)
                    print(f"{loop:>10} {mode:4} {window:4.0f} s: {r['step_s']:.2f} s/step, "
                          f"{r['frames_per_s']:.1f} frames/s, peak {r['peak_bytes'] / 2**30:.2f} GiB, "
                          f"losses {[round(x, 5) for x in r['loss_all']]}", flush=True)
                    runs.append(r)
                    pair.append(r)
                try:
                    checks.append({"window_s": window, "mode": mode, "repeat": rep, **check_same_work(*pair)})
                except RuntimeError as exc:
                    checks.append({"window_s": window, "mode": mode, "repeat": rep, "ok": False, "error": str(exc)})
    if args.device == "cpu":
        res["cpu_matmul_flops_after"] = cpu_matmul_flops()
        res["cpu_matmul_flops"] = statistics.fmean([res["cpu_matmul_flops_before"], res["cpu_matmul_flops_after"]])
    res.update({"runs": runs, "same_work": checks, "pairs": pairs(runs, res.get("cpu_matmul_flops")),
                "e2e_note": ("not run here: `--device cuda --e2e` times the one-hour, two-epoch LoRA fine-tune"
                             if args.device == "cpu" else "run `--e2e` separately to time it")})
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    atomic_write_json(args.out / "bench_train.json", res)
    atomic_write_text(args.out / "bench_train.md", markdown(res))
    for p in res["pairs"]:
        if "speedup" in p:
            print(f"{p['window_s']:.0f} s {p['mode']}: stylecraft / plain = {p['speedup']:.2f}x")
    failed = [c for c in checks if not c["ok"]]
    for c in failed:
        print(f"bench_train: {c['window_s']:.0f} s {c['mode']}: the loops did not do the same work: {c['error']}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
