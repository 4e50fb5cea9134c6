"""Recipe keys of generation: defaults, overrides and one error per bad value."""

import pytest

from stylecraft.config import load_recipe
from stylecraft.errors import ConfigError


def test_generation_keys_have_defaults_and_take_overrides():
    cfg = load_recipe(None, ["generate.long_form.window_s=20", "generate.best_of=3", "generate.melody=m.wav"],
                      require_catalogue=False)
    g = cfg.generate
    assert g.long_form.window_s == 20 and g.long_form.context_s == 10.0
    assert g.best_of == 3 and g.melody == "m.wav" and g.batch_size == 4 and g.prompts_file == ""


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("generate.long_form.context_s=30", "generate.long_form.context_s must be >= 0 and < window_s"),
        ("generate.long_form.window_s=0", "generate.long_form.window_s must be > 0"),
        ("generate.best_of=0", "generate.best_of must be >= 1"),
        ("generate.batch_size=0", "generate.batch_size"),
        ("generate.seed_audio_s=-1", "generate.seed_audio_s must be >= 0"),
        ("generate.long_form.hop=3", "unknown key 'generate.long_form.hop'"),
    ],
)
def test_bad_generation_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(None, [override], require_catalogue=False)


def test_prompts_and_prompts_file_exclude_each_other():
    with pytest.raises(ConfigError, match="not both"):
        load_recipe(None, ["generate.prompts=[a]", "generate.prompts_file=p.txt"], require_catalogue=False)
