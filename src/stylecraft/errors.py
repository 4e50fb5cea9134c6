"""Typed errors for user mistakes.

Each message names the thing that is wrong and how to fix it; the CLI prints it on one line
and exits non-zero. Internal invariants use ``assert`` instead.
"""

from __future__ import annotations


class StylecraftError(Exception):
    """Base class of every error caused by input, configuration or environment."""


class ConfigError(StylecraftError):
    """A recipe or override is invalid (unknown key, wrong type, missing value)."""


class AudioDecodeError(StylecraftError):
    """An audio file cannot be decoded or holds no usable audio."""


class CheckpointError(StylecraftError):
    """A checkpoint or model folder is missing, incomplete or of the wrong kind."""


class ModelNotFoundError(CheckpointError):
    """A named model is not available locally (the machine may be offline)."""


class StageInputError(StylecraftError):
    """A stage's input (previous stage's manifest) is missing or empty."""
