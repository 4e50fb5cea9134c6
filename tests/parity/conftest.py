"""The parity suites live in eval/parity; make them importable for the ``reference`` tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eval" / "parity"))
