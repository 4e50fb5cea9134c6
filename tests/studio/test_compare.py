"""Compare and Runs without a page: FAD with its interval, the audit verdict and the copy check, a run's view."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from stylecraft.artifacts import sha256_file
from stylecraft.data.demo import synth_track
from stylecraft.studio import compare as cmp
from stylecraft.studio import runs as rv
from stylecraft.studio.settings import StudioSettings

SR = 32000


def _tones(seconds: float, seed: int) -> np.ndarray:
    """Another 'artist': slow sine chords, nothing like the demo's band."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for f in rng.choice([196.0, 247.0, 294.0, 392.0, 523.0], size=3, replace=False):
        out += 0.2 * np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t))
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    run, other, takes = root / "run", root / "other", root / "takes"
    for d in (run, other, takes, root / "catalogue"):
        d.mkdir()
    rows = []
    for i in range(3):
        path = root / "catalogue" / f"track-{i}.flac"
        sf.write(path, synth_track(12.0, SR, seed=i, channels=1)[:, 0], SR)
        rows.append({"id": f"track-{i}", "path": str(path), "sha256": sha256_file(path), "split": "valid" if i < 2 else "train"})
        sf.write(other / f"tones-{i}.flac", _tones(12.0, i), SR)
    (run / "tracks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "recipe.yaml").write_text("artist: demo artist\n")
    shutil.copy(rows[0]["path"], takes / "copy-of-track-0.flac")  # a take that copies a held-out track
    sf.write(takes / "tones-take.flac", _tones(12.0, 7), SR)  # a take in the other artist's style
    for i in range(6):  # eight takes in all: enough for a bootstrap interval
        sf.write(takes / f"more-tones-{i}.flac", _tones(6.0, 10 + i), SR)
    settings = StudioSettings(runs=(run,), out_dir=root / "studio", n_boot=50)
    return settings, run, other, takes


@pytest.mark.slow  # two minutes on two busy cores: the audit fits its attribution over both artists
def test_compare_scores_takes_and_flags_a_copy(world):
    settings, run, other, takes = world
    res = cmp.compare(settings, run, takes, {"other": other})
    assert res.artist == "demo artist"
    assert [p.name for p in res.references] == ["track-0.flac", "track-1.flac"]  # held-out tracks only
    fad, kad = res.metrics
    assert fad["metric"] == "FAD" and np.isfinite(fad["value"]) and fad["CI"].startswith("95% [")
    low, high = (float(x) for x in fad["CI"].split("[")[1].rstrip("]").split(","))
    assert low <= high
    assert kad["metric"] == "KAD" and np.isfinite(kad["value"]) and kad["CI"].startswith("95% [")
    low, high = (float(x) for x in kad["CI"].split("[")[1].rstrip("]").split(","))
    assert low <= high
    assert res.record["scores"]["kad"] == pytest.approx(kad["value"], abs=1e-4)
    verdicts = {v["take"]: v for v in res.verdicts}
    assert verdicts["copy-of-track-0.flac"]["closest artist"] == "demo artist"
    assert verdicts["copy-of-track-0.flac"]["copy check"].startswith("NEAR-COPY")
    assert verdicts["tones-take.flac"]["closest artist"] == "other"
    assert verdicts["tones-take.flac"]["copy check"] == "no near-copy"
    assert res.spectrograms.is_file()


def test_metric_rows_without_an_interval_say_why():
    rec = {"fad": 2.5, "kad": 0.7, "n_ref": 40, "n_gen": 9, "embedding": "mfcc"}  # fewer than 8 takes: no ci
    assert [cmp._metric_row(m, rec)["value"] for m in ("FAD", "KAD")] == [2.5, 0.7]
    assert cmp._metric_row("KAD", rec)["CI"] == cmp.NO_CI
    rec["kad_ci"] = {"low": 0.5, "high": 0.9, "level": 0.95}
    assert cmp._metric_row("KAD", rec)["CI"] == "95% [0.5000, 0.9000]" and cmp._metric_row("FAD", rec)["CI"] == cmp.NO_CI


def test_run_view_of_an_untrained_run(world):
    settings, run, _, _ = world
    view = rv.view_run(run, settings)
    assert view.curves is None and view.demo_steps == [] and "No model card" in view.model_card
    assert rv.verify_markdown(view).startswith("**verify:")
