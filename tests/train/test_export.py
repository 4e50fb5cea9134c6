"""Exports: LoRA adapter and/or merged weights, the model card, and the format hook."""

import json

import pytest
from mini_run import mini_cfg
from omegaconf import OmegaConf

from stylecraft.artifacts import sha256_file
from stylecraft.errors import ConfigError
from stylecraft.models.loading import load_model
from stylecraft.train.export import ExportContext, export
from stylecraft.train.loop import train

ARGS = ("train.max_steps=1", "train.eval_every=1", "train.save_every=1", "train.eval_batches=1",
        "train.tensorboard=false", "train.lora.r=4")


@pytest.mark.parametrize("lora", ["adapter", "merged"])
def test_lora_export_choices_and_model_card(fresh_run, lora):
    train(fresh_run, mini_cfg(fresh_run, *ARGS, f"train.export.lora={lora}"))
    model = fresh_run / "model"
    assert (model / "adapter" / "adapter_model.safetensors").exists() == (lora == "adapter")
    assert (model / "model.safetensors").exists() == (lora == "merged")
    prov = json.loads((model / "stylecraft.json").read_text())
    for name, digest in prov["files"].items():
        assert sha256_file(model / name) == digest
    assert "README.md" in prov["files"]
    card = (model / "README.md").read_text()
    tracks = prov["data"]["tracks"]
    assert prov["data"]["tokens_index_sha256"] == sha256_file(fresh_run / "tokens" / "index.jsonl")
    assert "Fine-tuned from `tiny`" in card and "lora fine-tuning" in card
    assert f"{tracks['train']['tracks']} tracks" in card and prov["data"]["tokens_index_sha256"] in card
    assert "| optimizer steps | 1 " in card and "| precision | no |" in card
    assert f"{prov['facts']['val_loss']:.4f}" in card
    if lora == "merged":
        load_model(str(fresh_run))  # the merged folder loads as a model
    else:
        from peft import PeftModel

        base = load_model("tiny").model
        tuned = PeftModel.from_pretrained(base, str(model / "adapter"))
        assert any("lora_A" in n for n, _ in tuned.named_parameters())


def test_unknown_export_format_is_a_config_error(fresh_run):
    cfg = mini_cfg(fresh_run)
    raw = OmegaConf.to_container(cfg)
    raw["train"]["export"]["formats"] = ["transformers", "onnx"]
    with pytest.raises(ConfigError, match="no exporter for onnx"):
        export(ExportContext(model=None, bundle=None, run=fresh_run, cfg=OmegaConf.create(raw)))
    from stylecraft.config import load_recipe

    with pytest.raises(ConfigError, match="unknown format 'onnx'"):
        load_recipe(None, ["catalogue=x", "train.export.formats=[onnx]"])
