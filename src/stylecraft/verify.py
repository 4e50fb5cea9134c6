"""``stylecraft verify RUN_DIR``: check every artifact of a run against the hashes its manifests record.

Each check yields a :class:`Finding`: ``ok``, ``missing`` (a recorded file is gone), ``altered``
(its sha256 differs from the record), ``changed-source`` (a catalogue file differs from what was
ingested: the run is intact but no longer matches its sources) or ``leftover`` (a temporary file
or folder from an interrupted write, harmless and removed by the next run of its stage).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stylecraft.artifacts import check_under, inside, read_jsonl, sha256_file
from stylecraft.errors import StageInputError

BAD = ("missing", "altered")


@dataclass(frozen=True)
class Finding:
    status: str  # ok | missing | altered | changed-source | leftover
    path: str  # relative to the run folder (absolute for catalogue sources)
    detail: str = ""


def _check(run: Path, rel: str, expected: str | None, what: str) -> Finding:
    try:
        path = inside(run, rel, what)
    except StageInputError:
        return Finding("altered", rel, f"{what}: path escapes the run folder (tampered manifest)")
    if not path.exists():
        return Finding("missing", rel, what)
    if expected is None:
        return Finding("ok", rel, what)
    got = sha256_file(path)
    return Finding("ok" if got == expected else "altered", rel, what if got == expected else f"{what}: sha256 {got[:12]}… != recorded {expected[:12]}…")


def _records(run: Path, folder: str) -> Iterator[tuple[str, dict]]:
    for p in sorted((run / folder).glob("*.json")):
        try:
            yield str(p.relative_to(run)), json.loads(p.read_text())
        except json.JSONDecodeError:
            yield str(p.relative_to(run)), {"__unreadable__": True}


def _catalogue(run: Path) -> Path | None:
    """The catalogue folder named by the run's saved recipe, if any."""
    import yaml

    try:
        recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    value = recipe.get("catalogue") if isinstance(recipe, dict) else None
    if not isinstance(value, str) or not value.strip() or value == "???":
        return None
    return Path(value).expanduser().resolve()


def verify(run_dir: str | Path) -> list[Finding]:
    """Every check on a run folder, in a stable order.

    Raises:
        StageInputError: ``run_dir`` is not a stylecraft run folder.
    """
    run = Path(run_dir)
    if not (run / "recipe.yaml").exists() and not (run / "tracks.jsonl").exists():
        raise StageInputError(f"'{run}' is not a stylecraft run folder (no recipe.yaml or tracks.jsonl)")
    out: list[Finding] = []

    for rel, stamp in _records(run, "stages"):
        if "__unreadable__" in stamp:
            out.append(Finding("altered", rel, "stage stamp is not valid JSON"))
            continue
        for output, digest in stamp.get("outputs", {}).items():
            out.append(_check(run, output, digest, f"output of stage {stamp.get('stage')}"))

    catalogue = _catalogue(run)
    if (run / "tracks.jsonl").exists():
        for row in read_jsonl(run / "tracks.jsonl"):
            src = Path(row["path"])
            if catalogue is not None:
                try:
                    check_under(src, catalogue, "track path")
                except StageInputError:
                    out.append(Finding("altered", "tracks.jsonl", f"track path '{src}' is outside the catalogue '{catalogue}'"))
                    continue
            if not src.exists():
                out.append(Finding("changed-source", str(src), "catalogue file is gone"))
            elif sha256_file(src) != row["sha256"]:
                out.append(Finding("changed-source", str(src), "catalogue file differs from the ingested one"))

    if (run / "stems.jsonl").exists():
        for row in read_jsonl(run / "stems.jsonl"):
            for stem, entry in row.get("files", {}).items():
                out.append(_check(run, entry["path"], entry.get("sha256"), f"separated stem {stem}"))

    for _rel, rec in _records(run, "segment"):
        for name, digest in rec.get("hashes", {}).items():
            target = f"audio/{rec['track_id']}.npy" if name == "audio" else f"features/{rec['track_id']}.{name}.npy"
            out.append(_check(run, target, digest, f"segment {name}"))
    for rel, rec in _records(run, "variants"):
        if rec.get("variants"):
            out.append(_check(run, rel[: -len(".json")] + ".npy", rec.get("sha256"), "variant shard"))
    for rel, rec in _records(run, "tokens"):
        out.append(_check(run, rel[: -len(".json")] + ".npy", rec.get("sha256"), "token shard"))

    prov = run / "model" / "stylecraft.json"
    if prov.exists():
        for name, digest in json.loads(prov.read_text()).get("files", {}).items():
            if name != "stylecraft.json":
                out.append(_check(run, f"model/{name}", digest, "model file"))
    for state in sorted((run / "train" / "checkpoints").glob("step-*/trainer_state.json")):
        for name, digest in json.loads(state.read_text()).get("files", {}).items():
            out.append(_check(run, str(state.parent.relative_to(run) / name), digest, "checkpoint file"))

    gen = run / "generated" / "generated.jsonl"
    if gen.exists():
        for row in read_jsonl(gen):
            out.append(_check(run, f"generated/{row['file']}", row.get("sha256"), "generated audio"))
            if row.get("codes"):
                out.append(_check(run, f"generated/{row['codes']['file']}", row["codes"].get("sha256"), "generated codes"))

    for p in sorted(run.rglob(".*")):
        if ".tmp" in p.name or p.name.endswith(".partial"):
            out.append(Finding("leftover", str(p.relative_to(run)), "temporary file of an interrupted write"))
    return out


def summary(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    return counts
