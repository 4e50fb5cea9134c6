"""Shared by the reference workers: stand-in modules and the version record.

The workers run inside isolated reference venvs and import nothing from stylecraft; this file
sits beside them and is importable there because a script's folder is first on ``sys.path``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import sys
import types
from typing import Any


class Unused:
    """A stand-in class that fails loudly when the parity path constructs it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("stubbed class used: the parity path reached code it should not")


class _LenientModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Unused


def stub(name: str, *, lenient: bool = False, **attrs: Any) -> types.ModuleType:
    """Register an empty module ``name`` in ``sys.modules`` before the reference packages import it.

    Args:
        name: Dotted module name.
        lenient: Any attribute not given resolves to :class:`Unused` (for modules whose names are
            only imported, never called); otherwise a missing attribute is an AttributeError.
        **attrs: Attributes the module carries.
    """
    mod = _LenientModule(name) if lenient else types.ModuleType(name)
    mod.__dict__.update(attrs)
    # transformers probes optional packages with find_spec, which needs a spec on the module.
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = mod
    return mod


def versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``packages`` (those present) and the Python version."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    out["python"] = sys.version.split()[0]
    return out
