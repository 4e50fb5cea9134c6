"""Malicious pickles: a checkpoint whose unpickling would create a marker file, offered to the model
loader and to training resume; it must be refused and the marker must never appear."""

from __future__ import annotations

import argparse
from typing import Any

from .common import verdict
from .pytest_runs import render_tests, run_pytest


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows = run_pytest(["tests/test_safe_loading.py", "tests/train/test_safe_resume.py"])
    return {"tests": rows, "passed": sum(r["outcome"] == "passed" for r in rows), "total": len(rows)}


def render(p: dict[str, Any]) -> list[str]:
    return render_tests("Malicious checkpoints and tampered manifests", p["tests"],
                         f"{p['passed']} of {p['total']} passed. The pickles' `__reduce__` would create a marker file; "
                         "every test asserts the marker never appears.")


def targets(p: dict[str, Any]) -> list[str]:
    return [f"- The malicious pickle executes nothing: {verdict(p['passed'] == p['total'])} ({p['passed']}/{p['total']} tests)."]
