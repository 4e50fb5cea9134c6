"""Paths and small helpers the reliability sections share."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "eval" / "results"
PARTS = RESULTS / "reliability"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"
