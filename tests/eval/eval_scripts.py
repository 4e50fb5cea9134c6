"""Helpers for tests of the scripts under eval/ (which are not a package)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_eval_script(name: str) -> ModuleType:
    """Import ``eval/<name>.py`` as module ``name`` (registered in ``sys.modules`` so dataclasses work)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "eval" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
