"""Tests for recipes: defaults, typed overrides, strict validation and the shipped recipe files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from stylecraft.config import STAGES, RecipeConfig, load_recipe, to_container
from stylecraft.errors import ConfigError

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))
CAT = "catalogue=/tmp/x"


def _error(overrides: list[str], path: str | Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(path, overrides)
    return str(info.value)


# ------------------------------------------------------------------------------------------
# Defaults and overrides
# ------------------------------------------------------------------------------------------


def test_defaults_without_a_recipe() -> None:
    cfg = load_recipe(None, [CAT])
    resolved = to_container(cfg)
    # Every default of the schema comes through untouched; only catalogue and run_dir are filled in.
    expected = dataclasses.asdict(RecipeConfig())
    expected.update(catalogue="/tmp/x", run_dir=str(Path("runs") / "run"))
    assert resolved == expected
    # A few documented values, independent of the schema object.
    assert cfg.name == "run"
    assert list(cfg.stages) == [s for s in STAGES[1:] if s not in ("separate", "codec")]  # opt-in stages left out
    assert cfg.segment.sample_rate == 32000  # MusicGen's EnCodec rate
    assert cfg.train.mode in ("lora", "full")


def test_run_dir_defaults_to_runs_name() -> None:
    assert load_recipe(None, [CAT]).run_dir == str(Path("runs") / "run")
    assert load_recipe(None, [CAT, "name=my-artist"]).run_dir == str(Path("runs") / "my-artist")
    assert load_recipe(None, [CAT, "name=my-artist", "run_dir=/elsewhere/r1"]).run_dir == "/elsewhere/r1"


def test_overrides_are_typed() -> None:
    cfg = load_recipe(
        None,
        [
            CAT,
            "train.max_steps=7",
            "train.lr=3.0e-4",
            "segment.window_s=4",  # an int into a float field becomes a float
            "augment.stretch_rates=[0.8]",
            "augment.pitch_semitones=[-3, 0.5]",
            "train.lora.target_modules=[q_proj, k_proj, v_proj]",
            "stages=[ingest, segment]",
            "generate.prompts=[]",
        ],
    )
    assert cfg.train.max_steps == 7 and type(cfg.train.max_steps) is int
    assert cfg.train.lr == pytest.approx(3e-4) and type(cfg.train.lr) is float
    assert cfg.segment.window_s == 4.0 and type(cfg.segment.window_s) is float
    assert list(cfg.augment.stretch_rates) == [0.8]
    assert list(cfg.augment.pitch_semitones) == [-3.0, 0.5]
    assert list(cfg.train.lora.target_modules) == ["q_proj", "k_proj", "v_proj"]
    assert list(cfg.stages) == ["ingest", "segment"]
    assert list(cfg.generate.prompts) == []
    # Untouched neighbours keep their defaults.
    defaults = RecipeConfig()
    assert cfg.train.batch_size == defaults.train.batch_size and cfg.segment.hop_s == defaults.segment.hop_s


def test_later_override_wins_and_exponent_without_dot_is_a_float() -> None:
    # YAML 1.1 reads "1e-3" as a string; the float field must still accept it.
    cfg = load_recipe(None, [CAT, "train.lr=0.5", "train.lr=1e-3"])
    assert cfg.train.lr == pytest.approx(1e-3) and type(cfg.train.lr) is float


def test_overrides_apply_on_top_of_a_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: mine\ncatalogue: /music\ntrain:\n  max_steps: 50\n  lr: 2.0e-4\n")
    cfg = load_recipe(recipe, ["train.max_steps=9"])
    assert cfg.name == "mine" and cfg.catalogue == "/music"
    assert cfg.train.max_steps == 9  # override beats the file
    assert cfg.train.lr == pytest.approx(2e-4)  # the file beats the default
    assert cfg.run_dir == str(Path("runs") / "mine")


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def test_unknown_key_is_named() -> None:
    msg = _error([CAT, "train.max_stepz=5"])
    assert "train.max_stepz" in msg
    assert "max_steps" in msg  # the known keys are listed as a hint
    assert "\n" not in msg


def test_unknown_nested_and_top_level_keys_are_named() -> None:
    assert "train.lora.rank" in _error([CAT, "train.lora.rank=4"])
    assert "'epochs'" in _error([CAT, "epochs=3"])


def test_several_errors_are_reported_in_one_message() -> None:
    msg = _error([CAT, "train.max_stepz=5", "train.max_steps=abc", "segment.window_s=long"])
    assert "3 error(s)" in msg
    assert "train.max_stepz" in msg
    assert "train.max_steps" in msg and "'abc'" in msg
    assert "segment.window_s" in msg
    assert "\n" not in msg


def test_errors_in_the_recipe_file_and_overrides_are_reported_together(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("catalogue: /music\nsegmnt:\n  window_s: 4\n")
    msg = _error(["train.batch_size=big"], recipe)
    assert "bad.yaml" in msg and "2 error(s)" in msg
    assert "'segmnt'" in msg and "train.batch_size" in msg


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.lora.r=1.5", "train.lora.r"),  # float into an int
        ("segment.sample_rate=44100.0", "segment.sample_rate"),
        ("train.max_steps=true", "train.max_steps"),  # bool into an int
        ("stages=ingest", "stages"),  # a string where a list is expected
        ("augment.stretch_rates=[0.8, fast]", "augment.stretch_rates"),
        ("train=5", "train"),  # a value where a section is expected
    ],
)
def test_wrong_types_fail(override: str, fragment: str) -> None:
    msg = _error([CAT, override])
    assert f"'{fragment}'" in msg or f"{fragment}:" in msg


def test_override_without_equals_fails() -> None:
    assert "noequals" in _error([CAT, "noequals"])
    assert "empty key" in _error([CAT, "=5"])


def test_missing_catalogue_fails_when_ingest_is_a_stage() -> None:
    msg = _error([])
    assert "'catalogue' is required" in msg and "catalogue=" in msg
    # Not needed when ingest is not run, nor when the demo stage makes the catalogue.
    cfg = load_recipe(None, ["stages=[segment, augment]"])
    assert OmegaConf.is_missing(cfg, "catalogue")
    demo = load_recipe(None, ["stages=[demo, ingest]", "run_dir=runs/x"])
    assert demo.catalogue == "runs/x/catalogue"  # the demo stage writes its catalogue there


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.mode=foo", "train.mode must be 'lora' or 'full', got 'foo'"),
        ("train.max_steps=-1", "train.max_steps must be >= 1, got -1"),
        ("train.max_steps=0", "train.max_steps must be >= 1, got 0"),
        ("ingest.valid_fraction=1.5", "ingest.valid_fraction must be in [0, 1), got 1.5"),
        ("ingest.valid_fraction=1.0", "ingest.valid_fraction must be in [0, 1), got 1.0"),
        ("stages=[ingest, foo]", "unknown stage 'foo'"),
        ("augment.stretch_rates=[3.0]", "augment.stretch_rates"),
        ("augment.pitch_semitones=[13]", "augment.pitch_semitones"),
        ("segment.hop_s=0", "segment.window_s and segment.hop_s must be > 0"),
        ("segment.hop_length=2048", "segment.hop_length"),
        ("segment.sample_rate=4000", "segment.sample_rate must be >= 8000"),
        ("train.mixed_precision=fp8", "train.mixed_precision"),
        ("train.lr=0", "train.lr must be > 0"),
        ("generate.temperature=0", "generate.temperature must be > 0"),
        ("outliers.embedding=musicnn", "unknown outliers.embedding 'musicnn' (known: clap, "),
    ],
)
def test_bad_values_fail(override: str, fragment: str) -> None:
    assert fragment in _error([CAT, override])


def test_boundary_values_are_accepted() -> None:
    cfg = load_recipe(
        None, [CAT, "ingest.valid_fraction=0", "train.max_steps=1", "augment.stretch_rates=[0.5, 2]"]
    )
    assert cfg.ingest.valid_fraction == 0.0 and cfg.train.max_steps == 1
    assert list(cfg.augment.stretch_rates) == [0.5, 2.0]
    assert load_recipe(None, [CAT, "outliers.embedding=musicnn-mtt"]).outliers.embedding == "musicnn-mtt"


def test_several_bad_values_are_reported_at_once() -> None:
    msg = _error([CAT, "train.mode=foo", "train.max_steps=0", "ingest.valid_fraction=1.5"])
    assert "3 error(s)" in msg
    for key in ("train.mode", "train.max_steps", "ingest.valid_fraction"):
        assert key in msg


def test_unknown_key_and_bad_value_and_missing_catalogue_are_reported_together() -> None:
    msg = _error(["train.max_stepz=5", "train.mode=foo"])
    assert "train.max_stepz" in msg
    assert "train.mode" in msg
    assert "catalogue" in msg


def test_mandatory_value_left_missing_in_a_recipe_fails(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("artist: ???\ncatalogue: /music\n")
    msg = _error([], recipe)
    assert "artist" in msg


def test_recipe_file_errors(tmp_path: Path) -> None:
    assert "does not exist" in _error([CAT], tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert "not valid YAML" in _error([CAT], bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    assert "must be a mapping" in _error([CAT], listy)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_recipe(empty, [CAT]).name == "run"  # an empty recipe means all defaults


# ------------------------------------------------------------------------------------------
# The shipped recipes
# ------------------------------------------------------------------------------------------


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        out: list[tuple[str, Any]] = []
        for k, v in tree.items():
            out.extend(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return [(prefix, tree)]


def test_there_are_recipes() -> None:
    assert RECIPES, "no recipes/*.yaml found"


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_loads(recipe: Path) -> None:
    raw = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    # Mandatory values left as '???' in the file must be given on the command line.
    required = [key for key, value in _leaves(raw) if value == "???"]
    overrides = [f"{key}={'/tmp/x' if key == 'catalogue' else 'x'}" for key in required]
    if "demo" not in raw.get("stages", []) and "catalogue" not in raw:
        overrides.append(CAT)
    cfg = load_recipe(recipe, overrides)
    resolved = to_container(cfg)
    # Every value written in the file made it into the resolved recipe unchanged.
    for key, value in _leaves(raw):
        if value == "???":
            continue
        got: Any = resolved
        for part in key.split("."):
            got = got[part]
        assert got == value, f"{recipe.name}: {key} = {got!r}, file says {value!r}"
    assert all(stage in STAGES for stage in cfg.stages)
    expected_run_dir = raw.get("run_dir") or str(Path("runs") / cfg.name)
    assert cfg.run_dir == expected_run_dir
    assert re.fullmatch(r"[\w.-]+", cfg.name)


def test_outlier_defaults_are_the_detectors_own() -> None:
    from stylecraft.config import OutliersConfig
    from stylecraft.data.outliers import OutlierParams

    section = OutliersConfig()
    for f in dataclasses.fields(OutlierParams):
        assert getattr(section, f.name) == f.default, f.name
