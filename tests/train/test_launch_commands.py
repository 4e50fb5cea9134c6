"""The launch commands printed in README.md and in the recipes' headers: Accelerate's own launcher
parses them, their config files and recipes exist, the `stylecraft train` part validates, and the
environment the launcher would give each process passes (GPU) or fails (CPU) stylecraft's check."""

import re
import shlex
from pathlib import Path

import pytest

from stylecraft.errors import ConfigError
from stylecraft.train.launch_check import check_launch

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Training at scale")
    section = text[start:text.index("\n## ", start + 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line for b in blocks for line in b.replace("\\\n", " ").splitlines() if line.startswith("accelerate launch")]


def _recipe_commands() -> list[str]:
    out = []
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.startswith("#") and "accelerate launch" in line:
                out.append(line[line.index("accelerate launch"):])
    return out


README = _readme_commands()
RECIPES = _recipe_commands()


def test_readme_shows_one_gpu_multi_gpu_and_multi_node_commands():
    assert len(README) >= 5
    flat = " ".join(README)
    for needed in ("--num_processes 1 ", "recipes/accelerate/ddp.yaml", "recipes/accelerate/fsdp.yaml",
                   "--num_machines 2 --machine_rank 0 --main_process_ip"):
        assert needed in flat, needed
    # Every tier's recipe has a launch command in the README and in its own header.
    for tier in ("musicgen-small-lora", "musicgen-small-full", "musicgen-medium-fsdp", "musicgen-large-fsdp-lora"):
        assert f"recipes/{tier}.yaml" in (ROOT / "README.md").read_text()
        assert any(f"recipes/{tier}.yaml" in c for c in RECIPES), tier


def _parse(command: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    argv = shlex.split(command)[2:]  # after "accelerate launch"
    args = launch_command_parser().parse_args(argv)
    assert args.module and args.training_script == "stylecraft", command
    if args.config_file:
        assert (ROOT / args.config_file).is_file(), args.config_file
        args.config_file = str(ROOT / args.config_file)
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def _process_env(args, defaults) -> dict[str, str]:
    """The environment `accelerate launch` gives each process for these arguments."""
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config) if defaults else ""
        return prepare_deepspeed_cmd_env(args)[1]
    if args.num_processes and args.num_processes > 1 or args.use_fsdp or args.multi_gpu:
        return prepare_multi_gpu_env(args)
    return {}


def _train_cfg(script_args: list[str]):
    from stylecraft.config import load_recipe

    assert script_args[0] == "train"
    recipe = ROOT / script_args[1]
    assert recipe.is_file(), recipe
    rest = script_args[2:]
    items = [a for a in rest if "=" in a]
    if "--run-dir" in rest:
        items.append(f"run_dir={rest[rest.index('--run-dir') + 1]}")
    return load_recipe(recipe, items, require_catalogue=False)  # the command as written validates


@pytest.mark.parametrize("command", README + RECIPES)
def test_launch_command_parses_and_its_recipe_validates(command):
    args, defaults = _parse(command)
    cfg = _train_cfg(args.training_script_args)
    env = _process_env(args, defaults)
    if args.use_fsdp:
        assert env["ACCELERATE_USE_FSDP"] == "true"
        assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "MusicgenDecoderLayer"
        check_launch(cfg.train, cuda=True, env=env)
        with pytest.raises(ConfigError, match="runs on CUDA GPUs only"):
            check_launch(cfg.train, cuda=False, env=env)
    else:
        check_launch(cfg.train, cuda=False, env=env)  # DDP or one process: accepted anywhere
    if args.num_machines and args.num_machines > 1:
        assert args.machine_rank == 0 and args.main_process_ip and args.num_processes % args.num_machines == 0


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_pass_their_settings_to_the_check(stage, monkeypatch):
    """The DeepSpeed configs as the launcher reads them: a recipe whose accumulation matches is
    accepted; musicgen-small-full (grad_accum 2) against the config's 1 is refused in one line."""
    from stylecraft.train import launch_check

    monkeypatch.setattr(launch_check.importlib.util, "find_spec", lambda name, *a: object())
    cmd = (f"accelerate launch --config_file recipes/accelerate/deepspeed-zero{stage}.yaml --num_processes 4 "
           "-m stylecraft train {recipe} artist=x")
    args, defaults = _parse(cmd.format(recipe="recipes/musicgen-medium-fsdp.yaml"))
    env = _process_env(args, defaults)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    check_launch(_train_cfg(args.training_script_args).train, cuda=True, env=env)
    args, defaults = _parse(cmd.format(recipe="recipes/musicgen-small-full.yaml"))
    env = _process_env(args, defaults)
    with pytest.raises(ConfigError, match=r"accumulates 1 micro-batches but train.grad_accum=2"):
        check_launch(_train_cfg(args.training_script_args).train, cuda=True, env=env)
