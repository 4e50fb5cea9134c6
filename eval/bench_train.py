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
  ``speed.apply``: SDPA decoder attention, TF32 and fused AdamW on CUDA; Accelerate's bf16
  autocast on GPUs, fp32 on CPU), fed through its ``data_fn`` and ``bundle`` arguments. Per-step
  wall times are the ``step_s`` fields of its ``metrics.jsonl``; the run is stopped by the data
  source after the timed steps, before any checkpoint or export.
* **plain**: what a transformers user writes: ``attn_implementation="eager"``, T5 run inside
  ``model(...)`` every step (no caching), ``torch.optim.AdamW(foreach=False)``, gradient clipping,
  ``loss.item()`` per step; fp32 on CPU and ``torch.autocast(bfloat16)`` on CUDA (what the
  transformers docs and the Trainer's ``bf16=True`` do). LoRA through peft on the same modules.

Warm-up steps are excluded; a step's time runs from one optimizer step to the next (data collation
included). Reported per run: audio frames/s (B x T / step), tokens/s (frames x codebooks), model
FLOP/s, MFU on CUDA, and peak memory (``torch.cuda.max_memory_allocated`` on GPU; peak RSS of the
process on CPU).

Model FLOPs per step (``train_flops``), with B batch, S = T + K - 1 decoder positions, L layers,
d width, f FFN width, K codebooks, V codebook size, X text tokens::

    forward MACs per layer = B*S*(4 d^2 [self q,k,v,o] + 2 d^2 [cross q,o] + 2 d f [FFN])
                           + B*X*2 d^2 [cross k,v over the text]
                           + B*S*(S + X)*2 d [attention scores and weighted sums, causal mask not halved]
    forward MACs (heads)   = B*S*K*d*V
    full fine-tuning       = 3 x 2 x forward MACs (forward, gradients of activations and of weights)
    LoRA                   = 2 x 2 x forward MACs + 6 x LoRA params x B*S

This is the brief's ``6 x params x tokens + attention`` with tokens = decoder positions (the K
codebooks share a position) and the cross-attention keys/values counted over the text tokens they
run on. The frozen T5 and the embedding lookups are not model FLOPs. MFU = model FLOP/s / peak,
with peak = 989 TFLOP/s (H100 SXM and H200, bf16 dense). On CPU no peak is claimed: FLOP/s only.

``--e2e`` (CUDA only) times a whole LoRA fine-tune: one hour of audio as 30 s windows (120 items
of [4, 1500] tokens), two epochs, through ``train()`` with its checkpoints and export; it starts
from tokens (EnCodec tokenization of the audio is not included).

``--profile`` writes a torch.profiler table of one training step of stylecraft's loss (reduced
depth) with eager and SDPA attention to ``eval/results/bench_train_profile.txt``.

Usage::

    .venv/bin/python eval/bench_train.py                       # CPU: 4 layers, batch 1, 2+3 steps
    .venv/bin/python eval/bench_train.py --device cuda --steps 10 --batch 8
    .venv/bin/python eval/bench_train.py --device cuda --e2e --batch 8
"""

from __future__ import annotations

import argparse
import datetime as dt
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
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16, SXM
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
    from stylecraft.models.presets import build_tiny, byte_tokenizer

    if arch == "tiny":
        model, tok = build_tiny()
    else:
        torch.manual_seed(0)
        with torch.device(device):
            model = MusicgenForConditionalGeneration(musicgen_small_config(layers))
        tok = byte_tokenizer()  # ids < 259 are valid T5 ids; captions are kept short (see CAPTIONS)
    model.decoder.set_attn_implementation(attn)
    return ModelBundle(model=model, tokenizer=tok, name=f"musicgen-{arch}-bench", source="random init")


class TokenItems(torch.utils.data.Dataset):
    """Random EnCodec codes [K, T] with captions; raises :class:`StopBench` after ``limit`` reads."""

    def __init__(self, n: int, k: int, frames: int, vocab: int, limit: int | None = None, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.codes = torch.randint(0, vocab, (n, k, frames), generator=g)  # [N, K, T]
        self.limit = limit
        self.reads = 0

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        self.reads += 1
        if self.limit is not None and self.reads > self.limit:
            raise StopBench
        return {"codes": self.codes[i], "caption": CAPTIONS[i % len(CAPTIONS)], "id": f"item-{i}"}


# ---------------------------------------------------------------------------------------------- FLOPs


def train_flops(dec: Any, batch: int, frames: int, text_len: int, mode: str, lora_params: int = 0) -> float:
    """Model FLOPs of one optimizer step (module docstring): decoder only, T5 and embeddings excluded."""
    d, f, k, v, layers = dec.hidden_size, dec.ffn_dim, dec.num_codebooks, dec.vocab_size, dec.num_hidden_layers
    s = frames + k - 1
    per_layer = batch * s * (6 * d * d + 2 * d * f) + batch * text_len * 2 * d * d + batch * s * (s + text_len) * 2 * d
    fwd = 2.0 * (layers * per_layer + batch * s * k * d * v)
    if mode == "full":
        return 3.0 * fwd
    return 2.0 * fwd + 6.0 * lora_params * batch * s


# ---------------------------------------------------------------------------------------------- runs


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_memory(device: str) -> dict[str, Any]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    out: dict[str, Any] = {"peak_rss_bytes": rss}
    if device == "cuda":
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    out["peak_bytes"] = out.get("peak_cuda_bytes", rss)
    return out


def run_plain(spec: dict[str, Any]) -> dict[str, Any]:
    """The plain transformers loop (module docstring) for ``spec``; per-step wall times."""
    from stylecraft.train.batches import Collator
    from stylecraft.train.loop import _apply_lora

    dev, b, n_steps = spec["device"], spec["batch"], spec["warmup"] + spec["steps"]
    bundle = build_bundle(spec["arch"], spec["layers"], "eager", dev)
    model: Any = bundle.model.to(dev)
    model.text_encoder.requires_grad_(False)
    model.audio_encoder.requires_grad_(False)
    if spec["mode"] == "lora":
        from omegaconf import OmegaConf

        from stylecraft.config import LoraConfig

        model.decoder.requires_grad_(False)
        if hasattr(model, "enc_to_dec_proj"):
            model.enc_to_dec_proj.requires_grad_(False)
        model = _apply_lora(model, OmegaConf.structured(LoraConfig))  # peft get_peft_model, same modules
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01, foreach=False)
    dec_cfg = bundle.model.config.decoder
    items = TokenItems(b * n_steps, dec_cfg.num_codebooks, spec["frames"], dec_cfg.vocab_size, seed=spec["seed"])
    collate = Collator(bundle.tokenizer, bundle.pad_token_id, int(dec_cfg.decoder_start_token_id))
    model.train()
    times, text_len = [], 0
    _sync(dev)
    start = time.perf_counter()
    for step in range(n_steps):
        batch = collate([items[step * b + j] for j in range(b)])
        text_len = int(batch["input_ids"].shape[1])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev == "cuda"):
            out = model(
                input_ids=batch["input_ids"].to(dev),
                attention_mask=batch["attention_mask"].to(dev),
                decoder_input_ids=batch["decoder_input_ids"].to(dev),
                labels=batch["labels"].to(dev),
            )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.loss.item()
        now = time.perf_counter()
        times.append(now - start)
        start = now
    lora_params = sum(p.numel() for p in params) if spec["mode"] == "lora" else 0
    return {"step_s_all": times, "text_len": text_len, "trainable_params": sum(p.numel() for p in params),
            "lora_params": lora_params, **_peak_memory(dev)}


def stylecraft_cfg(run: Path, spec: dict[str, Any], max_steps: int) -> Any:
    from stylecraft.config import load_recipe

    return load_recipe(None, [
        "name=bench", f"run_dir={run}", "stages=[train]", f"train.mode={spec['mode']}",
        f"train.batch_size={spec['batch']}", f"train.max_steps={max_steps}", "train.warmup_steps=2",
        "train.lr=1e-4", f"train.save_every={max_steps}", f"train.eval_every={max_steps}", "train.log_every=1",
        f"train.compile={str(spec.get('compile', False)).lower()}", f"train.seed={spec['seed']}",
    ])


def run_stylecraft(spec: dict[str, Any]) -> dict[str, Any]:
    """stylecraft's real ``train()`` for ``spec``, stopped by the data after the timed steps."""
    from stylecraft.artifacts import read_jsonl_tolerant
    from stylecraft.train.loop import TrainData, train

    dev, b, n_steps = spec["device"], spec["batch"], spec["warmup"] + spec["steps"]
    bundle = build_bundle(spec["arch"], spec["layers"], "sdpa", dev)
    dec_cfg = bundle.model.config.decoder
    # Accelerate's loader reads one batch ahead: allow the timed steps and the one after them.
    items = TokenItems(b * (n_steps + 4), dec_cfg.num_codebooks, spec["frames"], dec_cfg.vocab_size,
                       limit=b * (n_steps + 1), seed=spec["seed"])
    valid = TokenItems(b, dec_cfg.num_codebooks, spec["frames"], dec_cfg.vocab_size, seed=spec["seed"] + 1)
    data = TrainData(train=items, valid=valid)  # type: ignore[arg-type]
    captured: dict[str, Any] = {}

    def data_fn(_: Path) -> TrainData:
        return data

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        run = Path(tmp) / "run"
        try:
            train(run, stylecraft_cfg(run, spec, n_steps + 50), data_fn=data_fn, bundle=bundle)
        except StopBench:
            pass
        rows = read_jsonl_tolerant(run / "train" / "metrics.jsonl")
        captured["rows"] = rows
    rows = captured["rows"][:n_steps]
    if len(rows) < n_steps:
        raise RuntimeError(f"stylecraft's loop logged {len(rows)} of {n_steps} steps")
    model: Any = bundle.model  # peft injected its adapters into these modules in place
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    text_len = len(bundle.tokenizer(CAPTIONS[: spec["batch"]], padding=True)["input_ids"][0])
    return {"step_s_all": [r["step_s"] for r in rows], "tokens_per_s_logged": [r["tokens_per_s"] for r in rows],
            "text_len": text_len, "trainable_params": trainable,
            "lora_params": lora_params, **_peak_memory(dev)}


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed run of ``spec['loop']`` (plain | stylecraft) with its throughput figures."""
    t0 = time.perf_counter()
    res = run_plain(spec) if spec["loop"] == "plain" else run_stylecraft(spec)
    bundle_dec = musicgen_small_config(spec["layers"]).decoder if spec["arch"] == "small" else _tiny_decoder()
    timed = res["step_s_all"][spec["warmup"]:]
    step_s = statistics.median(timed)
    frames = spec["batch"] * spec["frames"]
    flops = train_flops(bundle_dec, spec["batch"], spec["frames"], res["text_len"], spec["mode"], res["lora_params"])
    out = {
        **spec, **res,
        "warmup_step_s": res["step_s_all"][: spec["warmup"]],
        "step_s": step_s,
        "step_s_mean": statistics.fmean(timed),
        "frames_per_s": frames / step_s,
        "tokens_per_s": frames * bundle_dec.num_codebooks / step_s,
        "model_flops_per_step": flops,
        "flops_per_s": flops / step_s,
        "process_s": time.perf_counter() - t0,
    }
    peak = peak_flops(spec["device"])
    out["mfu"] = out["flops_per_s"] / peak if peak else None
    return out


def _tiny_decoder() -> Any:
    from stylecraft.models.presets import tiny_config

    return tiny_config().decoder


def peak_flops(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


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


def pairs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (window, mode): the median over repeats of each loop, and stylecraft / plain."""
    out = []
    keys = sorted({(r["frames"], r["mode"]) for r in runs}, key=lambda k: (k[0], k[1]))
    for frames, mode in keys:
        row: dict[str, Any] = {"window_s": frames / FRAME_RATE, "frames": frames, "mode": mode}
        for loop in ("plain", "stylecraft"):
            rs = [r for r in runs if (r["frames"], r["mode"], r["loop"]) == (frames, mode, loop)]
            if not rs:
                continue
            row[loop] = {
                "step_s": statistics.median(r["step_s"] for r in rs),
                "frames_per_s": statistics.median(r["frames_per_s"] for r in rs),
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                "flops_per_s": statistics.median(r["flops_per_s"] for r in rs),
                "mfu": statistics.median(r["mfu"] for r in rs) if rs[0]["mfu"] is not None else None,
                "peak_bytes": max(r["peak_bytes"] for r in rs),
                "runs": len(rs),
            }
        if "plain" in row and "stylecraft" in row:
            row["speedup"] = row["stylecraft"]["tokens_per_s"] / row["plain"]["tokens_per_s"]
            row["memory_ratio"] = row["stylecraft"]["peak_bytes"] / row["plain"]["peak_bytes"]
        out.append(row)
    return out


def markdown(res: dict[str, Any]) -> str:
    a = res["args"]
    gib = 2**30
    mem = "peak CUDA memory (max_memory_allocated)" if a["device"] == "cuda" else "peak RSS of the run's process"
    lines = [
        "# Training throughput: stylecraft's loop vs a plain transformers loop",
        "",
        f"Written by `eval/bench_train.py` on {res['date']}. Machine: {res['machine']['cpu']}, "
        f"{res['machine']['cores']} cores" + (f", {res['machine']['gpu']}" if "gpu" in res["machine"] else ", no GPU")
        + f". Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}. "
        f"Load average before / after: {res['load_before']} / {res['load_after']}.",
        "",
        f"Model: musicgen-small architecture (random init), decoder depth {a['layers']} of 24"
        + (" (reduced so a CPU run fits ~6 GB and minutes; width, heads, FFN, codebooks, T5-base and EnCodec as "
           "musicgen-small)" if a["layers"] != 24 else "") + f"; device {a['device']}; batch {a['batch']}; "
        f"{a['warmup']} warm-up + {a['steps']} timed steps per run (median of the timed steps); "
        f"{a['repeats']} alternating repeat(s) per loop. Precision: "
        + ("bf16 autocast in both loops." if a["device"] == "cuda" else "fp32 in both loops (stylecraft's `auto` on CPU).")
        + " Plain loop: eager attention, T5 every step, AdamW(foreach=False)"
        + (", torch.autocast(bf16)" if a["device"] == "cuda" else "") + ".",
        "",
        "| window | mode | plain frames/s | stylecraft frames/s | stylecraft tokens/s | plain GFLOP/s | "
        "stylecraft GFLOP/s | MFU plain / stylecraft | peak mem plain / stylecraft (GiB) | stylecraft / plain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in res["pairs"]:
        pl, sc = p.get("plain"), p.get("stylecraft")
        if not (pl and sc):
            continue
        mfu = f"{pl['mfu']:.1%} / {sc['mfu']:.1%}" if sc["mfu"] is not None else "— (no CPU peak claimed)"
        lines.append(
            f"| {p['window_s']:.0f} s ({p['frames']} frames) | {p['mode']} | {pl['frames_per_s']:.2f} | "
            f"{sc['frames_per_s']:.2f} | {sc['tokens_per_s']:.1f} | {pl['flops_per_s'] / 1e9:.1f} | "
            f"{sc['flops_per_s'] / 1e9:.1f} | {mfu} | {pl['peak_bytes'] / gib:.2f} / {sc['peak_bytes'] / gib:.2f} | "
            f"**{p['speedup']:.2f}x** |"
        )
    lines += [
        "",
        f"Peak memory is the {mem}. Model FLOPs: decoder only, full = 3 x forward, LoRA = 2 x forward + 6 x LoRA "
        "params x positions; forward = 2 x (per layer B*S*(6 d^2 + 2 d f) + B*X*2 d^2 + B*S*(S+X)*2 d, plus heads "
        "B*S*K*d*V) with S = frames + K - 1, X text tokens (eval/bench_train.py docstring)."
        + (" MFU against 989 TFLOP/s (bf16 dense, H100 SXM / H200)." if a["device"] == "cuda" else ""),
        "",
        "## Runs (in the order they ran)",
        "",
        "| # | loop | window | mode | warm-up steps (s) | timed steps (s) | process wall (s) | peak (GiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(res["runs"], 1):
        lines.append(
            f"| {i} | {r['loop']} | {r['frames'] / FRAME_RATE:.0f} s | {r['mode']} | "
            f"{', '.join(f'{x:.2f}' for x in r['warmup_step_s'])} | "
            f"{', '.join(f'{x:.2f}' for x in r['step_s_all'][r['warmup']:])} | {r['process_s']:.0f} | "
            f"{r['peak_bytes'] / gib:.2f} |"
        )
    lines += ["", "## End-to-end LoRA fine-tune (1 h of audio, 2 epochs, one GPU)", ""]
    e2e = res.get("e2e")
    if e2e:
        lines.append(
            f"{e2e['items']} windows of 30 s ({e2e['audio_s'] / 3600:.2f} h of tokens), batch {e2e['batch']}, "
            f"{e2e['steps']} steps (2 epochs), wall time {e2e['wall_s'] / 60:.1f} min including model placement, "
            "checkpoints and export (EnCodec tokenization not included)."
        )
    else:
        lines.append(f"Not run: {res.get('e2e_note', 'pass --e2e on a CUDA machine')}.")
    return "\n".join(lines) + "\n"


def run_e2e(args: argparse.Namespace) -> dict[str, Any]:
    """LoRA fine-tune on one hour of 30 s token windows for two epochs, timed end to end."""
    from stylecraft.train.loop import TrainData, train

    items_n = 3600 // 30
    steps = math.ceil(2 * items_n / args.batch)
    t0 = time.perf_counter()
    bundle = build_bundle("small", 24, "sdpa", args.device)
    dec = bundle.model.config.decoder
    data = TrainData(train=TokenItems(items_n, dec.num_codebooks, 1500, dec.vocab_size),  # type: ignore[arg-type]
                     valid=TokenItems(max(args.batch, 8), dec.num_codebooks, 1500, dec.vocab_size, seed=1))  # type: ignore[arg-type]
    spec = {"mode": "lora", "batch": args.batch, "seed": 0}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        run = Path(tmp) / "run"
        summary = train(run, stylecraft_cfg(run, spec, steps), data_fn=lambda _: data, bundle=bundle)
    return {"items": items_n, "audio_s": items_n * 30, "batch": args.batch, "steps": steps,
            "wall_s": time.perf_counter() - t0, "peak_cuda_bytes": torch.cuda.max_memory_allocated(),
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
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs per loop and setting")
    ap.add_argument("--compile", action="store_true", help="stylecraft runs with train.compile=true")
    ap.add_argument("--e2e", action="store_true", help="also time the 1 h / 2 epoch LoRA fine-tune (CUDA only)")
    ap.add_argument("--profile", action="store_true", help="write the profiler table and exit")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_one(json.loads(args.worker))), flush=True)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_train: --device cuda but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    if args.e2e and args.device != "cuda":
        print("bench_train: --e2e (1 h of audio, 2 epochs) needs --device cuda; not run on CPU", file=sys.stderr)
        return 2
    if args.profile:
        write_profile(args.out / "bench_train_profile.txt", layers=args.layers or 2)
        return 0
    layers = args.layers or (24 if args.device == "cuda" else 4)
    args.layers = layers
    load_before = list(os.getloadavg())
    runs: list[dict[str, Any]] = []
    for window in [float(w) for w in args.windows.split(",")]:
        for mode in args.modes.split(","):
            for rep in range(args.repeats):
                for loop in ("plain", "stylecraft"):
                    spec = {"loop": loop, "mode": mode, "frames": int(window * FRAME_RATE), "batch": args.batch,
                            "steps": args.steps, "warmup": args.warmup, "layers": layers, "arch": "small",
                            "device": args.device, "seed": rep, "compile": args.compile}
                    r = run_in_process(spec, args.timeout)
                    print(f"{loop:>10} {mode:4} {window:4.0f} s: {r['step_s']:.2f} s/step, "
                          f"{r['frames_per_s']:.1f} frames/s, peak {r['peak_bytes'] / 2**30:.2f} GiB", flush=True)
                    runs.append(r)
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
        "machine": machine_info(args.device), "versions": versions(),
        "load_before": [round(x, 2) for x in load_before], "runs": runs, "pairs": pairs(runs),
    }
    if args.e2e:
        res["e2e"] = run_e2e(args)
    else:
        res["e2e_note"] = ("not run on this machine (no GPU); nothing is extrapolated" if args.device == "cpu"
                           else "pass --e2e to time it")
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench_train.json", res)
    atomic_write_text(args.out / "bench_train.md", markdown(res))
    for p in res["pairs"]:
        if "speedup" in p:
            print(f"{p['window_s']:.0f} s {p['mode']}: stylecraft / plain = {p['speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
