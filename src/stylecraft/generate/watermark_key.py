"""The watermark key shared by both backends (:mod:`~stylecraft.generate.watermark`, DSP, and
:mod:`~stylecraft.generate.watermark_audioseal`): given directly or read from the environment."""

from __future__ import annotations

import os

from stylecraft.errors import ConfigError

__all__ = ["resolve_key"]


def resolve_key(key: str) -> str:
    """The key itself, or the value of an environment variable for ``env:NAME``.

    Raises:
        ConfigError: the key is empty, or names an unset environment variable.
    """
    if key.startswith("env:"):
        name = key[4:]
        value = os.environ.get(name, "")
        if not value:
            raise ConfigError(f"watermark key is taken from ${name}, which is not set: export {name}=... or pass a key")
        return value
    if not key:
        raise ConfigError("the watermark key is empty: set generate.watermark.key (or --key)")
    return key
