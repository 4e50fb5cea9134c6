"""Precision choice, fp16's guard, and gradient checkpointing with LoRA."""

import pytest
import torch
from mini_run import mini_cfg

from stylecraft.artifacts import read_jsonl
from stylecraft.errors import ConfigError
from stylecraft.train import loop, session
from stylecraft.train.loop import train


def test_auto_is_bf16_on_gpus_that_have_it(monkeypatch):
    assert loop.resolve_precision("auto") == ("bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
                                             else "no")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert loop.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert loop.resolve_precision("auto") == "no"  # never fp16 unasked


def test_fp16_needs_a_gpu_and_warns(monkeypatch, tmp_path):
    cfg = mini_cfg(tmp_path, "train.mixed_precision=fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        session._precision(cfg.train)
    said = []
    monkeypatch.setattr(session, "info", said.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert session._precision(cfg.train) == "fp16"
    assert len(said) == 1 and "\n" not in said[0] and "bf16 is preferred" in said[0]


def _counted_bundle(calls):
    """The tiny model with a counter on each decoder layer's MLP input projection (peft keeps the
    original Linear as its base layer, so the hook survives LoRA)."""
    from stylecraft.models.loading import load_model

    bundle = load_model("tiny")

    def hook(module, args, out):
        if module.training:
            calls["n"] += 1

    for layer in bundle.model.decoder.model.decoder.layers:
        layer.fc1.register_forward_hook(hook)
    return bundle


def test_gradient_checkpointing_with_lora_recomputes_and_matches(fresh_run, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(fresh_run, plain, symlinks=True)
    args = ("train.mode=lora", "train.max_steps=2", "train.eval_every=100", "train.save_every=100",
            "train.eval_per_track=1", "train.tensorboard=false", "train.dropout=0.1")
    calls = {"n": 0}
    train(plain, mini_cfg(plain, *args), bundle=_counted_bundle(calls))
    without = calls["n"]
    calls["n"] = 0
    summary = train(fresh_run, mini_cfg(fresh_run, *args, "train.gradient_checkpointing=true"),
                    bundle=_counted_bundle(calls))
    assert without > 0 and calls["n"] == 2 * without  # every layer ran again in the backward pass
    a = read_jsonl(plain / "train" / "metrics.jsonl")
    b = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    # LoRA weights received gradients (a frozen input would leave them at zero norm).
    assert all(r["grad_norm"] > 0 for r in b)
    assert summary["trainable_params"] > 0
    # The recomputation replays dropout with the saved RNG state: the same losses and gradients.
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)
