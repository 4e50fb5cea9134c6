"""The scale recipes and their Accelerate configs: they parse as Accelerate reads them, and each
recipe's header states its launch command and a memory figure that the estimator reproduces."""

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ACCEL = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))
TIERS = ["musicgen-small-lora", "musicgen-small-full", "musicgen-medium-fsdp", "musicgen-large-fsdp-lora"]


def test_every_tier_has_a_recipe_and_configs_exist():
    for tier in TIERS:
        assert (ROOT / "recipes" / f"{tier}.yaml").is_file(), tier
    assert {p.name for p in ACCEL} >= {"ddp.yaml", "fsdp.yaml", "deepspeed-zero2.yaml", "deepspeed-zero3.yaml"}


@pytest.mark.parametrize("path", ACCEL, ids=[p.name for p in ACCEL])
def test_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    raw = yaml.safe_load(path.read_text())
    for key in ("compute_environment", "distributed_type", "num_machines", "machine_rank", "num_processes",
                "mixed_precision"):
        assert key in raw, f"{path.name} lacks {key}"
    cfg = load_config_from_file(str(path))  # Accelerate's own reader rejects unknown keys
    assert cfg.distributed_type in (DistributedType.MULTI_GPU, DistributedType.FSDP, DistributedType.DEEPSPEED)
    if cfg.distributed_type == DistributedType.FSDP:
        from accelerate.utils.constants import FSDP2_STATE_DICT_TYPE, FSDP_AUTO_WRAP_POLICY
        from transformers.models.musicgen import modeling_musicgen

        f = cfg.fsdp_config
        assert f["fsdp_auto_wrap_policy"] in FSDP_AUTO_WRAP_POLICY
        assert f["fsdp_state_dict_type"] in FSDP2_STATE_DICT_TYPE
        assert hasattr(modeling_musicgen, f["fsdp_transformer_layer_cls_to_wrap"])
    if cfg.distributed_type == DistributedType.DEEPSPEED:
        assert cfg.deepspeed_config["zero_stage"] in (2, 3)


def _estimator():
    spec = importlib.util.spec_from_file_location("estimate_train_memory", ROOT / "eval" / "estimate_train_memory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("tier", TIERS)
def test_recipe_header_states_launch_and_computed_memory(tier):
    from stylecraft.config import load_recipe

    path = ROOT / "recipes" / f"{tier}.yaml"
    text = path.read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "accelerate launch" in header and "-m stylecraft train" in header
    assert "COMPUTED" in header and "not measured" in header
    est = _estimator()
    kw = est.RECIPES[tier]
    e = est.estimate(**kw)
    assert re.search(rf"total ~{e['total_gb']:.1f} GB", header), (tier, e["total_gb"])
    # The estimate describes the recipe as written: same mode, batch, window and checkpointing.
    cfg = load_recipe(path, ["catalogue=/tmp/x", "artist=x"])
    assert cfg.train.mode == kw["mode"] and cfg.train.batch_size == kw["batch"]
    assert cfg.segment.window_s == kw["window_s"]
    assert cfg.train.gradient_checkpointing == kw["ckpt"]
    assert bool(cfg.train.ema.enabled) == kw.get("ema", False)
    if kw["mode"] == "lora":
        assert cfg.train.lora.r == kw.get("r", 16)
    assert kw["size"] in cfg.model.name
    if kw["fsdp"]:
        assert "recipes/accelerate/fsdp.yaml" in header and f"--num_processes {kw['procs']}" in header
