"""Watermark: keyed detection, robustness to common edits, audibility bound, provenance and CLI."""

import json

import numpy as np
import pytest
import soundfile as sf
import soxr
from cli_runner import run_cli

from stylecraft.artifacts import read_jsonl
from stylecraft.data.demo import synth_track
from stylecraft.errors import ConfigError
from stylecraft.generate import watermark as wm
from stylecraft.generate.sample import SamplingParams, WatermarkSettings, generate
from stylecraft.models.loading import load_model

SR = 32000


@pytest.fixture(scope="module")
def music():
    """Seven seconds of the demo synthesiser, mono at MusicGen's rate."""
    return synth_track(7.0, SR, seed=3, channels=1).reshape(-1).astype(np.float32)


@pytest.fixture(scope="module")
def marked(music):
    return wm.embed(music, SR, "label-secret")


def _snr_db(x, y):
    return 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2))


def test_detects_own_key_only(music, marked):
    assert wm.detect(marked, SR, "label-secret").detected
    assert not wm.detect(marked, SR, "another key").detected
    assert not wm.detect(music, SR, "label-secret").detected
    assert wm.detect(marked, SR, "label-secret").score > 2 * wm.detect(music, SR, "label-secret").score


def test_mark_is_quiet(music, marked):
    assert _snr_db(music, marked) > 20.0
    silence = np.zeros(SR * 6, dtype=np.float32)
    assert np.array_equal(wm.embed(silence, SR, "k"), silence)  # nothing to hide under: nothing added


@pytest.mark.parametrize(
    "attack",
    ["resample16k", "resample44k", "gain-12dB", "gain+3dB-clip", "crop", "stereo"],
)
def test_survives_signal_edits(music, marked, attack):
    if attack == "resample16k":
        y, sr = soxr.resample(marked, SR, 16000), 16000
    elif attack == "resample44k":
        y, sr = soxr.resample(marked, SR, 44100), 44100
    elif attack == "gain-12dB":
        y, sr = marked * 10 ** (-12 / 20), SR
    elif attack == "gain+3dB-clip":
        y, sr = np.clip(marked * 1.41, -1, 1), SR
    elif attack == "crop":  # an arbitrary, non-frame-aligned start: 5.3 s left
        y, sr = marked[int(1.7 * SR) + 77 :], SR
    else:
        y, sr = np.stack([marked, 0.5 * marked], axis=1), SR
    assert wm.detect(y, sr, "label-secret").detected


@pytest.mark.parametrize("fmt", ["MP3", "OGG"])
def test_survives_lossy_codecs(marked, tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    if fmt == "MP3":
        sf.write(path, marked, SR, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT", compression_level=0.5)
    else:
        sf.write(path, marked, SR, format="OGG", subtype="VORBIS")
    d = wm.detect_file(path, "label-secret")
    assert d.detected, d


def test_keys_and_strength_are_checked(music):
    with pytest.raises(ConfigError, match="empty"):
        wm.embed(music, SR, "")
    with pytest.raises(ConfigError, match="WM_KEY_UNSET"):
        wm.embed(music, SR, "env:WM_KEY_UNSET")
    with pytest.raises(ConfigError, match="strength"):
        wm.embed(music, SR, "k", strength=0.0)


def test_key_from_environment(music, monkeypatch):
    monkeypatch.setenv("WM_KEY_TEST", "from-env")
    y = wm.embed(music, SR, "env:WM_KEY_TEST")
    assert wm.detect(y, SR, "from-env").detected
    assert wm.key_id("env:WM_KEY_TEST") == wm.key_id("from-env")


def test_too_short_is_not_detected():
    d = wm.detect(np.zeros(100, dtype=np.float32), SR, "k")
    assert not d.detected and d.score == 0.0


def test_generated_files_carry_mark_and_provenance(tmp_path):
    bundle = load_model("tiny")
    params = SamplingParams(duration_s=6.0, seed=2)
    rows = generate(bundle, tmp_path / "a", ["demo"], params, watermark=WatermarkSettings(key="k-gen"), recipe_sha256="ab" * 32)
    row = rows[0]
    assert row["watermark"] == {"method": wm.METHOD, "key_id": wm.key_id("k-gen"), "strength": wm.DEFAULT_STRENGTH}
    assert row["recipe_sha256"] == "ab" * 32 and len(row["model"]["sha256"]) == 64
    assert row["params"]["seed"] == 2 and row["prompt"] == "demo"
    assert read_jsonl(tmp_path / "a" / "generated.jsonl")[0]["model"]["sha256"] == row["model"]["sha256"]
    assert wm.detect_file(tmp_path / "a" / row["file"], "k-gen").detected
    assert "k-gen" not in (tmp_path / "a" / "generated.jsonl").read_text()  # the key itself is never written

    off = generate(bundle, tmp_path / "b", ["demo"], params, watermark=WatermarkSettings(enabled=False))
    assert off[0]["watermark"] == {"method": None}
    assert not wm.detect_file(tmp_path / "b" / off[0]["file"], "k-gen").detected


def test_cli_embed_and_detect(music, tmp_path):
    src = tmp_path / "in put é.wav"
    sf.write(src, music, SR)
    out = tmp_path / "marked.flac"
    assert run_cli("watermark", "embed", str(src), str(out), "--key", "cli-key").returncode == 0
    yes = run_cli("watermark", "detect", str(out), "--key", "cli-key", "--json")
    assert yes.returncode == 0, yes.stderr
    assert json.loads(yes.stdout)["detected"] is True
    no = run_cli("watermark", "detect", str(src), "--key", "cli-key")
    assert no.returncode == 2 and "not watermarked" in no.stdout
    bad = run_cli("watermark", "detect", str(tmp_path / "missing.wav"))
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
