"""The evaluate stage compares like with like: loudness, rows, unwatermarked audio, intervals over
whole clips and tracks, KAD beside FAD, diversity and novelty (issue: "the evaluate stage's FAD
compares unlike things")."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from eval_run import evaluate_cfg, make_catalogue, read_result, style_clips, write_generated

from stylecraft.artifacts import read_jsonl, sha256_file, write_jsonl
from stylecraft.errors import StageInputError
from stylecraft.pipeline import stage_evaluate


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    make_catalogue(run)
    return run


def _run_with(catalogue, tmp_path, clips):
    run = tmp_path / "run"
    shutil.copytree(catalogue, run)
    write_generated(run, clips)
    return run


def _close(a, b, rel):
    return a is None and b is None or (a is not None and b is not None and abs(a - b) <= rel * abs(b))


def test_scores_do_not_depend_on_the_generated_files_level(catalogue, tmp_path):
    # 12 clips of 8 s: 96 MFCC rows (> D = 80), so FAD is reported; the held-out tracks were
    # normalised to -16 LUFS, the generated files are 6 dB quieter.
    loud = _run_with(catalogue, tmp_path / "a", style_clips(12, 8.0))
    quiet = _run_with(catalogue, tmp_path / "b", style_clips(12, 8.0, gain_db=-6.0))
    stage_evaluate(evaluate_cfg(loud), loud)
    stage_evaluate(evaluate_cfg(quiet), quiet)
    a, b = read_result(loud)["by_embedding"]["mfcc"], read_result(quiet)["by_embedding"]["mfcc"]
    assert a["fad"] is not None
    assert a["fad"] == pytest.approx(b["fad"], rel=1e-3)
    assert a.get("kad") == pytest.approx(b.get("kad"), abs=1e-3)  # KAD is near 0 here: same style


def test_fad_is_not_reported_on_fewer_rows_than_dimensions(catalogue, tmp_path):
    run = _run_with(catalogue, tmp_path, style_clips(4, 2.0))  # 4 clips x 2 MFCC rows in D = 80
    stage_evaluate(evaluate_cfg(run), run)
    rec = read_result(run)
    assert rec["fad"] is None and "8 embedding rows for dimension 80" in rec["fad_note"]
    assert rec["kad"] is not None and np.isfinite(rec["kad"]) and rec["n_gen"] == 8


def test_no_interval_from_a_handful_of_files_and_intervals_over_clips_and_tracks(catalogue, tmp_path):
    few = _run_with(catalogue, tmp_path / "few", style_clips(4, 8.0))
    stage_evaluate(evaluate_cfg(few), few)
    rec = read_result(few)
    assert "ci95" not in rec and "kad_ci95" not in rec and "4 generated clips" in rec["ci_note"]
    many = _run_with(catalogue, tmp_path / "many", style_clips(12, 8.0))
    stage_evaluate(evaluate_cfg(many), many)
    rec = read_result(many)
    assert rec["ci95"][0] <= rec["fad"] <= rec["ci95"][1]
    assert rec["kad_ci95"][0] <= rec["kad"] <= rec["kad_ci95"][1]
    assert rec["ci_units"]["generated"] == "clip" and "held fixed (2 held-out tracks" in rec["ci_units"]["reference"]


def test_baseline_diversity_and_novelty_are_reported(catalogue, tmp_path):
    run = _run_with(catalogue, tmp_path, style_clips(12, 8.0))
    stage_evaluate(evaluate_cfg(run), run)
    rec = read_result(run)
    base = rec["train_clips_vs_ref"]
    assert base["n_clips"] == 12 and base["fad"] is not None and base["kad"] is not None
    assert rec["n_heldout_clips"] == 14 and rec["n_train_windows"] == 22  # 2 x 7 clips of 8 s; 2 x 11 windows
    assert rec["diversity"]["n_generated"] == 12 and rec["diversity"]["ratio"] > 0.3
    assert rec["novelty"]["n_train_windows"] == 22 and len(rec["novelty"]["generated_distances"]) == 12
    assert rec["code_diversity"]["generated"]["codebooks"] == 4
    assert (run / "eval" / "diversity.png").read_bytes()[:4] == b"\x89PNG"


def test_a_generator_that_returns_training_windows_is_flagged(catalogue, tmp_path):
    train = [np.load(p).astype(np.float32) / 32767 for p in sorted((catalogue / "audio").glob("t0[23].npy"))]
    copies = [t[s * 32000 : (s + 8) * 32000] for t in train for s in (0, 10, 20, 30, 40)]
    run = _run_with(catalogue, tmp_path, copies)
    stage_evaluate(evaluate_cfg(run), run)
    nov = read_result(run)["novelty"]
    assert nov["flagged_share"] >= 0.9 and nov["ratio_of_medians"] < 0.2


@pytest.fixture(scope="module")
def tiny_run(catalogue, tmp_path_factory):
    """The catalogue with a model folder (the tiny preset) that generates and decodes."""
    from stylecraft.models.loading import load_model, save_bundle

    run = tmp_path_factory.mktemp("tiny") / "run"
    shutil.copytree(catalogue, run)
    save_bundle(load_model("tiny"), run / "model")
    return run


def _generate(run, marked: bool) -> None:
    from stylecraft.generate.sample import SamplingParams, WatermarkSettings, generate
    from stylecraft.models.loading import load_model

    generate(load_model(str(run)), run / "generated", ["calm piano"], SamplingParams(duration_s=2.0, seed=3),
             per_prompt=4, watermark=WatermarkSettings(enabled=marked))


def test_watermarked_files_are_scored_without_their_watermark(tiny_run, tmp_path):
    marked, plain = tmp_path / "marked", tmp_path / "plain"
    shutil.copytree(tiny_run, marked)
    shutil.copytree(tiny_run, plain)
    _generate(marked, True)
    _generate(plain, False)
    stage_evaluate(evaluate_cfg(marked), marked)
    stage_evaluate(evaluate_cfg(plain), plain)
    a, b = read_result(marked), read_result(plain)
    for key in ("fad", "kad"):  # same codes, so the same audio once the watermark is left out
        assert _close(a["by_embedding"]["mfcc"].get(key), b["by_embedding"]["mfcc"].get(key), 1e-3), key
    effect = a["watermark_effect"]
    assert b["watermark_effect"] is None and effect["embedding"] == "mfcc"
    assert effect["kad_unwatermarked"] == a["kad"] and effect["kad_watermarked"] != a["kad"]
    assert 5.0 < effect["median_snr_db"] < 80.0


def test_files_from_another_model_are_refused(tiny_run, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _generate(run, True)
    weights = run / "model" / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("weight") and state[k].is_floating_point())
    state[key] = state[key] + torch.ones_like(state[key])
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(StageInputError, match="another model"):
        stage_evaluate(evaluate_cfg(run), run)


def test_altered_files_and_rows_without_codes_are_refused(catalogue, tmp_path):
    run = _run_with(catalogue, tmp_path, style_clips(2, 2.0))
    rows = read_jsonl(run / "generated" / "generated.jsonl")
    audio, sr = sf.read(run / "generated" / rows[0]["file"])
    sf.write(run / "generated" / rows[0]["file"], audio * 0.5, sr)
    with pytest.raises(StageInputError, match="missing or altered"):
        stage_evaluate(evaluate_cfg(run), run)
    rows[0]["sha256"] = sha256_file(run / "generated" / rows[0]["file"])
    del rows[0]["codes"]
    write_jsonl(run / "generated" / "generated.jsonl", rows)
    with pytest.raises(StageInputError, match="has no codes"):
        stage_evaluate(evaluate_cfg(run), run)
