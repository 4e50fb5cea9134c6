"""Exports: LoRA adapter and/or merged weights, the model card, and the format hook."""

import hashlib
import json

import pytest
import torch
from mini_run import mini_cfg
from omegaconf import OmegaConf

from stylecraft.artifacts import read_jsonl, sha256_file
from stylecraft.errors import ConfigError
from stylecraft.models.loading import load_model
from stylecraft.train.export import ExportContext, export
from stylecraft.train.loop import train

ARGS = ("train.max_steps=2", "train.eval_every=2", "train.save_every=2", "train.eval_per_track=1",
        "train.tensorboard=false", "train.lora.r=4")


def _reloads_in_transformers(run, folder):
    """save_pretrained's folder loads with transformers' own class, and gives stylecraft's logits."""
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    plain = MusicgenForConditionalGeneration.from_pretrained(str(folder)).eval()
    ours = load_model(str(run)).model.eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    text = tok(["demo artist, 120 bpm"], return_tensors="pt")
    k = plain.config.decoder.num_codebooks
    codes = torch.randint(0, plain.config.decoder.vocab_size, (k, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = plain(**text, decoder_input_ids=codes).logits  # [K, T, vocab]
        b = ours(**text, decoder_input_ids=codes).logits
    assert a.shape == (k, 12, plain.config.decoder.vocab_size)
    assert torch.equal(a, b)
    base = load_model("tiny").model.eval()
    with torch.no_grad():
        # The first step runs at lr 0 (warmup): the second changed the weights.
        assert not torch.allclose(a, base(**text, decoder_input_ids=codes).logits)


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
    assert "| optimizer steps | 2 " in card and "| precision | no |" in card
    assert f"{prov['facts']['val_loss']:.4f}" in card
    # Data hashes: each split's tracks by sha256, and one digest of them in the card.
    rows = read_jsonl(fresh_run / "tracks.jsonl")
    for split in ("train", "valid"):
        hashes = sorted(r["sha256"] for r in rows if r["split"] == split)
        assert tracks[split]["track_sha256"] == hashes
        digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
        assert tracks[split]["sha256"] == digest and f"`{digest}`" in card
    # Captions: the training tracks' own (ingest's analysis captions), and the default prompt.
    captions = sorted({r["caption"] for r in rows if r["split"] == "train"})
    assert prov["captions"]["mode"] == "analysis" and prov["captions"]["examples"] == captions
    assert all(c.startswith("demo artist style, ") and c.endswith(("major", "minor")) for c in captions)
    assert f"| captions (analysis) | {len(captions)} distinct" in card and f"`{captions[0]}`" in card
    assert prov["captions"]["default_prompt"] in captions and f"e.g. `{prov['captions']['default_prompt']}`" in card
    metrics = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    assert f"| final train loss | {metrics[-1]['loss']:.4f} |" in card
    assert f"{metrics[-1]['val_ppl']:.2f}" in card
    if lora == "merged":
        _reloads_in_transformers(fresh_run, model)
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


def test_adapter_only_export_loads_by_run_folder_and_generates(fresh_run):
    """train.export.lora=adapter leaves model/ without config.json; the run still loads and generates."""
    from peft import PeftModel

    from stylecraft.artifacts import read_jsonl
    from stylecraft.pipeline import run_stage

    cfg = mini_cfg(fresh_run, *ARGS, "train.export.lora=adapter")
    train(fresh_run, cfg)
    assert not (fresh_run / "model" / "config.json").exists()
    bundle = load_model(str(fresh_run))
    # The same model assembled by hand with peft: the base the run named, the adapter merged into it.
    by_hand = PeftModel.from_pretrained(load_model("tiny").model, str(fresh_run / "model" / "adapter")).merge_and_unload()
    tok = bundle.tokenizer(["demo artist style, 120 bpm"], return_tensors="pt")
    k = bundle.num_codebooks
    codes = torch.randint(0, bundle.codebook_size, (k, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = bundle.model.eval()(**tok, decoder_input_ids=codes).logits
        assert torch.allclose(ours, by_hand.eval()(**tok, decoder_input_ids=codes).logits, atol=1e-5)
        assert not torch.allclose(ours, load_model("tiny").model.eval()(**tok, decoder_input_ids=codes).logits)
    assert "LoRA adapter on preset:tiny" in bundle.source
    gen = mini_cfg(fresh_run, "stages=[generate]", "generate.duration_s=1", "generate.watermark.enabled=false")
    run_stage("generate", gen)
    rows = read_jsonl(fresh_run / "generated" / "generated.jsonl")
    assert rows and all((fresh_run / "generated" / r["file"]).is_file() for r in rows)
