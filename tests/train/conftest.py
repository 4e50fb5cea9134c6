"""A tokenized mini run (3 short synthesized tracks, 4 s windows) shared by the training tests."""

import shutil

import pytest
from mini_run import MINI

from stylecraft.config import load_recipe
from stylecraft.pipeline import run_recipe


@pytest.fixture(scope="session")
def tokenized_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mini") / "run"
    run_recipe(load_recipe(None, MINI + [f"run_dir={run}"]))
    return run


@pytest.fixture
def fresh_run(tokenized_run, tmp_path):
    """A private copy of the tokenized run, so each test trains from scratch."""
    dst = tmp_path / "run"
    shutil.copytree(tokenized_run, dst, symlinks=True)
    return dst
