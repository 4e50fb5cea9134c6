"""The reliability report: the saved sections merged into eval/results/reliability.{json,md}."""

from __future__ import annotations

import json
from typing import Any

from report_tools import machine_info, versions

from . import badinput, kills, outliers, pickles, watermark
from .common import PARTS, RESULTS

SECTIONS = {"badinput": badinput, "kills": kills, "pickle": pickles, "outliers": outliers, "watermark": watermark}
# The targets are listed in this order, whatever order the sections were measured in.
TARGET_ORDER = ("badinput", "kills", "pickle", "watermark", "outliers")


def write_report(keep_machine: bool = False) -> None:
    """Merge the saved sections into the report; ``keep_machine`` keeps the machine and versions
    the report already names (a re-render measures nothing, so it must not claim this machine)."""
    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    parts = {p.stem: json.loads(p.read_text()) for p in sorted(PARTS.glob("*.json"))}
    if "kills" in parts:  # counted from the trials (sections saved before kill_counts carried passed/total)
        saved = {k: v for k, v in parts["kills"].items() if k not in ("passed", "total")}
        parts["kills"] = {**saved, **kills.kill_counts(saved)}
    old = json.loads((RESULTS / "reliability.json").read_text()) if (RESULTS / "reliability.json").exists() else {}
    if keep_machine and "machine" in old:
        data = {"machine": old["machine"], "versions": old["versions"], "sections": parts}
    else:
        data = {"machine": machine_info(), "versions": versions(), "sections": parts}
    atomic_write_json(RESULTS / "reliability.json", data)
    atomic_write_text(RESULTS / "reliability.md", render_markdown(data))
    print(f"wrote {RESULTS / 'reliability.json'} and {RESULTS / 'reliability.md'}")


def render_markdown(data: dict[str, Any]) -> str:
    lines = ["# Reliability report", "", "Produced by `eval/reliability.py`; raw figures in `reliability.json`.", ""]
    m, v = data["machine"], data["versions"]
    lines += [f"Machine: {m['cpu']}, {m['cores_usable']} usable cores, {m['ram_gib']} GiB RAM, {m['os']}.",
              "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", ""]
    s = data["sections"]
    lines += ["## Against the targets", ""] + targets(s) + [""]
    for name, module in SECTIONS.items():
        if name not in s:
            lines += [f"## {name}", "", "Not measured in this report.", ""]
            continue
        lines += module.render(s[name])
    return "\n".join(lines) + "\n"


def targets(s: dict[str, Any]) -> list[str]:
    """One verdict line per reliability target of every measured section."""
    return [line for name in TARGET_ORDER if name in s for line in SECTIONS[name].targets(s[name])]
