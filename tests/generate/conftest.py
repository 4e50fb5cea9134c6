"""Tiny models shared by the generation tests (built once per session, read-only)."""

import pytest

from stylecraft.models.loading import ModelBundle, load_model


@pytest.fixture(scope="session")
def tiny() -> ModelBundle:
    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_melody() -> ModelBundle:
    return load_model("tiny-melody")
