"""The separate stage inside a recipe run: stems per track, segment reads the kept mix, reruns skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stylecraft.config import load_recipe
from stylecraft.errors import ConfigError
from stylecraft.pipeline import run_recipe
from stylecraft.separate.stage import kept_stems
from stylecraft.verify import verify

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, *extra: str):
    return load_recipe(
        ROOT / "recipes" / "quickstart.yaml",
        [
            f"run_dir={tmp_path / 'run'}",
            "stages=[demo,ingest,separate,segment]",
            "demo.tracks=2",
            "demo.duration_s=12",
            "separate.model=spleeter:4stems-tiny",
            "separate.drop=[vocals]",
            *extra,
        ],
    )


def test_pipeline_separates_then_segments_the_kept_stems(tmp_path: Path):
    cfg = _cfg(tmp_path)
    run_recipe(cfg)
    run = tmp_path / "run"
    rows = [json.loads(x) for x in (run / "stems.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["kept"] == ["drums", "bass", "other"] for r in rows)
    for r in rows:
        assert (run / r["audio"]).is_file() and set(r["files"]) == {"vocals", "drums", "bass", "other", "kept"}
    records = [json.loads(p.read_text()) for p in sorted((run / "segment").glob("*.json"))]
    assert {rec["source_sha256"] for rec in records} == {r["audio_sha256"] for r in rows}
    assert not [f for f in verify(run) if f.status != "ok"]
    stamp = json.loads((run / "stages" / "separate.json").read_text())
    # Same recipe again: every stage is skipped; dropping another stem reruns separate and segment.
    run_recipe(cfg)
    assert json.loads((run / "stages" / "separate.json").read_text()) == stamp
    run_recipe(_cfg(tmp_path, "separate.drop=[vocals,drums]"))
    rows2 = [json.loads(x) for x in (run / "stems.jsonl").read_text().splitlines()]
    assert rows2[0]["kept"] == ["bass", "other"] and rows2[0]["audio_sha256"] != rows[0]["audio_sha256"]


def test_kept_stems_rules():
    stems = ("vocals", "accompaniment")
    assert kept_stems(stems, [], ["vocals"]) == ["accompaniment"]
    assert kept_stems(stems, ["vocals"], []) == ["vocals"]
    with pytest.raises(ConfigError, match="unknown stems"):
        kept_stems(stems, [], ["drums"])
    with pytest.raises(ConfigError, match="leave no stem"):
        kept_stems(stems, [], ["vocals", "accompaniment"])
