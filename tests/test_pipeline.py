"""End to end: the quickstart recipe on a smaller setting, stage skipping, and the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_runner import run_cli

from stylecraft.artifacts import read_jsonl, sha256_file
from stylecraft.config import load_recipe
from stylecraft.pipeline import run_recipe

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "model.name=tiny",  # the unit-test preset: the recipe's stylecraft-mini is tested in tests/models
    "augment.share=null",  # every planned variant, as the assertions count them
    "demo.tracks=3",
    "demo.duration_s=12",
    "ingest.valid_fraction=0.34",
    "segment.window_s=4",
    "segment.hop_s=2",
    "augment.pitch_semitones=[-1,1]",
    "augment.stretch_rates=[1.1]",
    "train.max_steps=6",
    "train.save_every=3",
    "train.eval_every=3",
    "train.batch_size=4",
    "generate.per_prompt=2",
    "generate.duration_s=2",
    "evaluate.embeddings=[vggish-tiny]",
    "evaluate.n_boot=20",
]


def _cli(*args, cwd=ROOT):
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "stylecraft", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("qs") / "run"
    proc = _cli("run", str(ROOT / "recipes" / "quickstart.yaml"), *SMALL, "--run-dir", str(run))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return run


def test_quickstart_leaves_every_artifact(quick_run):
    run = quick_run
    tracks = read_jsonl(run / "tracks.jsonl")
    assert len(tracks) == 3 and {t["split"] for t in tracks} == {"train", "valid"}
    assert read_jsonl(run / "rejects.jsonl") == []
    windows = read_jsonl(run / "windows.jsonl")
    assert len(windows) == 3 * 5  # (12 s - 4 s) / 2 s + 1 windows per track
    variants = read_jsonl(run / "variants.jsonl")
    assert len(variants) == 3 * sum(w["split"] == "train" for w in windows)
    index = read_jsonl(run / "tokens" / "index.jsonl")
    assert len(index) == len(windows) + len(variants)
    codes = np.load(run / "tokens" / f"{index[0]['track_id']}.npy", mmap_mode="r")
    assert codes.shape[1:] == (4, 200) and codes.dtype == np.int16
    assert list((run / "train" / "checkpoints").glob("step-*"))
    metrics = read_jsonl(run / "train" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 7))
    assert (run / "train" / "loss.png").stat().st_size > 1000
    gen = read_jsonl(run / "generated" / "generated.jsonl")
    assert len(gen) == 2
    for row in gen:
        audio, sr = sf.read(run / "generated" / row["file"])
        assert sr == 32000 and audio.shape == (64000,) and np.isfinite(audio).all()
        assert row["prompt"].startswith("demo artist style")
    fad = json.loads((run / "eval" / "fad.json").read_text())
    assert {"fad", "kad", "n_ref", "n_gen", "embedding"} <= fad.keys()
    # Two 2 s clips: 4 MFCC rows in D = 80, so FAD is not reported, KAD is; no interval from 2 clips.
    assert fad["fad"] is None and "dimension 80" in fad["fad_note"] and "ci_note" in fad
    assert np.isfinite(fad["kad"]) and fad["embedding"] == "mfcc" and fad["n_gen_files"] == 2
    assert set(fad["by_embedding"]) == {"mfcc", "vggish-tiny"} and fad["by_embedding"]["mfcc"]["kad"] == fad["kad"]
    assert fad["by_embedding"]["vggish-tiny"]["embedding_settings"]["weights"] == "random:tiny:seed0"
    assert fad["watermark_effect"]["embedding"] == "mfcc" and fad["generated"].startswith("unwatermarked")
    assert fad["code_diversity"]["generated"]["clips"] == 2 and fad["code_diversity"]["heldout_windows"]["clips"] == 5 * sum(t["split"] == "valid" for t in tracks)
    assert (run / "eval" / "diversity.png").read_bytes()[:4] == b"\x89PNG"
    codes = np.load(run / "generated" / gen[0]["codes"]["file"])
    assert codes.shape == (4, 100) and sha256_file(run / "generated" / gen[0]["codes"]["file"]) == gen[0]["codes"]["sha256"]
    assert (run / "recipe.yaml").exists() and (run / "model" / "model.safetensors").exists()
    assert (run / "eval" / "spectrograms.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_skips_unchanged_stages_and_reruns_changed_ones(quick_run):
    before = {p: sha256_file(p) for p in quick_run.rglob("*.jsonl")}
    proc = _cli("run", str(ROOT / "recipes" / "quickstart.yaml"), *SMALL, "--run-dir", str(quick_run))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("up to date, skipped") == 8
    assert {p: sha256_file(p) for p in quick_run.rglob("*.jsonl")} == before
    cfg = load_recipe(ROOT / "recipes" / "quickstart.yaml", [*SMALL, f"run_dir={quick_run}", "generate.seed=5"])
    results = run_recipe(cfg)
    assert results["generate"]["files"] == 2
    stamps = {p.stem: json.loads(p.read_text()) for p in (quick_run / "stages").glob("*.json")}
    assert stamps["generate"]["signature"] != stamps["train"]["signature"]


def test_single_stage_commands_on_the_run(quick_run, tmp_path):
    proc = _cli("segment", "--run-dir", str(quick_run))
    assert proc.returncode == 0, proc.stderr
    proc = _cli("generate", "--model", str(quick_run), "--prompt", "demo artist style", "--duration", "1",
                "--out", str(tmp_path / "g"))
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "g").glob("*.flac"))) == 1


def test_fad_cli_json(quick_run, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(200, 8)))
    np.save(tmp_path / "b.npy", rng.normal(size=(150, 8)) + 1.0)
    proc = _cli("fad", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_ref"] == 200 and out["n_gen"] == 150 and out["embedding"] == "mfcc"
    assert 6.0 < out["fad"] < 10.0  # ||mu||^2 = 8 plus small covariance terms
    proc = _cli("fad", str(quick_run / "catalogue"), str(quick_run / "generated"))
    assert proc.returncode == 0 and proc.stdout.startswith("FAD (mfcc) =")


def test_user_errors_are_one_line(tmp_path):
    (tmp_path / "file.wav").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "r.yaml").write_text("name: x\n")
    cases = [
        ("train", str(tmp_path / "r.yaml"), f"run_dir={tmp_path / 'untokenized'}"),
        ("segment", "--run-dir", str(tmp_path / "never-ingested")),
        ("ingest", str(tmp_path / "file.wav"), "--run-dir", str(tmp_path / "r1")),
        ("ingest", str(tmp_path / "empty"), "--run-dir", str(tmp_path / "r2")),
        ("run", str(ROOT / "recipes" / "quickstart.yaml"), "train.max_stepz=3"),
        ("run", str(tmp_path / "missing.yaml")),
        ("ingest", str(tmp_path / "nothing-here"), "--run-dir", str(tmp_path / "r3")),
        ("fad", str(tmp_path / "none"), str(tmp_path / "none2")),
        ("generate", "--model", "tiny", "--duration", "-1", "--out", str(tmp_path / "g")),
        ("fetch", "not-a-model"),
        ("fetch", "musicgen-small"),
    ]
    errs = []
    for args in cases:
        proc = run_cli(*args, cwd=ROOT)  # HF_HUB_OFFLINE=1: the download cannot happen
        assert proc.returncode == 1, (args, proc.stderr)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        errs.append(proc.stderr)
    assert "run `stylecraft tokenize` first" in errs[0]
    assert "is a file" in errs[2]
    assert "no audio files" in errs[3]
    assert "train.max_stepz" in errs[4]
    assert "cannot download 'musicgen-small'" in errs[-1]


def test_ingest_cli_rejects_bad_file_and_keeps_rest(tmp_path):
    from stylecraft.data.demo import synth_track

    cat = tmp_path / "cat"
    cat.mkdir()
    for i in range(2):
        sf.write(cat / f"good{i}.flac", synth_track(3.0, 32000, seed=i), 32000)
    (cat / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    proc = _cli("ingest", str(cat), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    tracks = read_jsonl(tmp_path / "run" / "tracks.jsonl")
    rejects = read_jsonl(tmp_path / "run" / "rejects.jsonl")
    assert sorted(Path(t["path"]).name for t in tracks) == ["good0.flac", "good1.flac"]
    assert [Path(r["path"]).name for r in rejects] == ["broken.wav"] and rejects[0]["reason"]


def test_verify_clean_run_then_tampered_copy(quick_run, tmp_path):
    import shutil

    from stylecraft.verify import verify

    clean = verify(quick_run)
    kinds = {f.detail.split(":")[0] for f in clean}
    assert {"segment audio", "segment mfcc", "variant shard", "token shard", "model file",
            "checkpoint file", "generated audio"} <= kinds
    assert all(f.status == "ok" for f in clean), [f for f in clean if f.status != "ok"]
    proc = run_cli("verify", str(quick_run))
    assert proc.returncode == 0 and "ok" in proc.stdout

    run = tmp_path / "copy"
    shutil.copytree(quick_run, run)
    token = sorted((run / "tokens").glob("*.npy"))[0]
    token.write_bytes(token.read_bytes() + b"x")
    feature = sorted((run / "features").glob("*.logmel.npy"))[0]
    feature.unlink()
    (run / "generated" / ".half.tmp.flac").write_bytes(b"")
    found = {(f.status, f.path) for f in verify(run) if f.status != "ok"}
    assert ("altered", f"tokens/{token.name}") in found
    assert ("missing", f"features/{feature.name}") in found
    assert ("leftover", "generated/.half.tmp.flac") in found
    proc = run_cli("verify", str(run), "--json")
    assert proc.returncode == 1
    counts = json.loads(proc.stdout)["counts"]
    assert counts["altered"] == 1 and counts["missing"] == 1 and counts["leftover"] == 1
    assert run_cli("verify", str(tmp_path)).returncode == 1  # not a run folder: one-line error


def test_signatures_follow_captions_and_augmentation_settings(tmp_path):
    """A changed caption or augmentation setting reruns the stage that uses it, and only that stage."""
    from stylecraft.pipeline import signature

    base = ["catalogue=x", f"run_dir={tmp_path}"]

    def sig(stage, *extra):
        return signature(stage, load_recipe(None, [*base, *extra]), tmp_path)

    for stage, changes in {
        "ingest": ["captions.mode=artist", "captions.artist_from=folder", "artist=someone",
                   "ingest.near_duplicates=false", "ingest.duplicate_corr=0.8"],
        "augment": ["augment.enabled=false", "augment.share=0.5", "augment.share=0.25"],
        "segment": ["segment.features=[mfcc]"],
    }.items():
        sigs = {sig(stage)} | {sig(stage, c) for c in changes}
        assert len(sigs) == len(changes) + 1, stage
    assert sig("augment", "augment.share=0.5") == sig("augment", "augment.share=0.5")
    assert sig("tokenize", "augment.share=0.5") == sig("tokenize")  # tokenize follows variants.jsonl instead
    captions = tmp_path / "captions.csv"
    captions.write_text("path,caption\na.flac,one\n", encoding="utf-8")
    first = sig("ingest", "captions.mode=file", f"captions.file={captions}")
    captions.write_text("path,caption\na.flac,two\n", encoding="utf-8")
    assert sig("ingest", "captions.mode=file", f"captions.file={captions}") != first
