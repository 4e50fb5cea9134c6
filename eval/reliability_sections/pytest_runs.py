"""Tests run as measurements: pytest on chosen files, every test's outcome read from its JUnit XML."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from report_tools import table_head

from .common import ROOT


def run_pytest(paths: list[str], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run pytest on ``paths`` and return every test's outcome (from its JUnit XML)."""
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory() as tmpd:
        xml = Path(tmpd) / "r.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *paths],
                       cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=3600)
        rows = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            status = "passed"
            for tag in ("failure", "error", "skipped"):
                el = case.find(tag)
                if el is not None:
                    status = f"{tag}: {(el.get('message') or '').splitlines()[0][:200] if el.get('message') else ''}"
            rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": status,
                         "seconds": round(float(case.get("time", 0)), 1)})
        return rows


def render_tests(title: str, rows: list[dict[str, Any]], intro: str) -> list[str]:
    out = [f"## {title}", "", intro, "", *table_head(["test", "seed", "outcome", "s"])]
    for r in rows:
        out.append(f"| `{r['test']}` | {r.get('seed', '-')} | {r['outcome']} | {r.get('seconds', '-')} |")
    return out + [""]
