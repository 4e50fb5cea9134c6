"""Batch generation: prompts files, deterministic names, resumable reruns, overview.png, CLI errors."""

import sys

import numpy as np
import pytest
import soundfile as sf

from stylecraft.artifacts import read_jsonl, sha256_file
from stylecraft.errors import StylecraftError
from stylecraft.generate.longform import LongForm
from stylecraft.generate.overview import log_mel
from stylecraft.generate.sample import SamplingParams, generate, read_prompts_file

LF = LongForm(window_s=0.2, context_s=0.06)


def _main(monkeypatch, capsys, *args):
    from stylecraft.cli import main

    monkeypatch.setattr(sys, "argv", ["stylecraft", *map(str, args)])
    monkeypatch.setenv("STYLECRAFT_PROGRESS", "0")
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prompts_file_skips_blanks_and_comments(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# my prompts\n\nfirst prompt\n   \n  second, 90 bpm  \n#last\n", encoding="utf-8")
    assert read_prompts_file(f) == ["first prompt", "second, 90 bpm"]
    f.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(StylecraftError, match="holds no prompt"):
        read_prompts_file(f)
    with pytest.raises(StylecraftError, match="does not exist"):
        read_prompts_file(tmp_path / "none.txt")


def test_rerun_skips_intact_files_and_redoes_only_damaged_ones(tiny, tmp_path):
    prompts = ["a", "b", "a"]  # a repeated prompt still gets its own file
    params = SamplingParams(duration_s=0.3, top_k=50, seed=4)
    rows = generate(tiny, tmp_path, prompts, params, per_prompt=1, batch_size=2, long_form=LF)
    names = [r["file"] for r in rows]
    assert names == ["000-a-s4-00.flac", "001-b-s4-00.flac", "002-a-s4-00.flac"]
    assert rows[0]["batch"] == names[:2] and rows[2]["batch"] == names[2:]
    assert rows[0]["long_form"]["windows"] == [
        {"start_frame": 0, "prompt_frames": 0, "new_frames": 10},
        {"start_frame": 7, "prompt_frames": 3, "new_frames": 5},
    ]
    assert (tmp_path / "overview.png").stat().st_size > 0
    mtimes = {n: (tmp_path / n).stat().st_mtime_ns for n in names}

    again = generate(tiny, tmp_path, prompts, params, per_prompt=1, batch_size=2, long_form=LF)
    assert again == rows  # nothing redone
    assert {n: (tmp_path / n).stat().st_mtime_ns for n in names} == mtimes

    (tmp_path / names[1]).write_bytes(b"broken")  # damaged: redone, the others kept
    (tmp_path / names[2]).unlink()  # lost: redone
    third = generate(tiny, tmp_path, prompts, params, per_prompt=1, batch_size=2, long_form=LF)
    assert third[0] == rows[0] and (tmp_path / names[0]).stat().st_mtime_ns == mtimes[names[0]]
    assert third[1]["batch"] == [names[1]] and third[2]["batch"] == [names[2]]
    manifest = read_jsonl(tmp_path / "generated.jsonl")
    assert [r["file"] for r in manifest] == names
    for r in manifest:
        assert sha256_file(tmp_path / r["file"]) == r["sha256"]
        assert sf.info(tmp_path / r["file"]).frames == round(0.3 * 32000)

    changed = generate(tiny, tmp_path, prompts[:1], SamplingParams(duration_s=0.2, seed=4), long_form=LF)
    assert changed[0]["file"] == names[0] and changed[0]["sha256"] != rows[0]["sha256"]  # other request: redone
    assert len(read_jsonl(tmp_path / "generated.jsonl")) == 3  # nothing lost from the manifest


def test_log_mel_of_overview_is_librosas():
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=32000, n_fft=1024, hop_length=512, n_mels=64), ref=1.0, top_db=None
    )
    assert np.abs(log_mel(y, 32000) - ref).max() < 1e-3


def test_cli_generates_from_a_prompts_file(tmp_path, monkeypatch, capsys):
    f = tmp_path / "p.txt"
    f.write_text("one\n# skip\ntwo\n", encoding="utf-8")
    code, out, err = _main(
        monkeypatch, capsys, "generate", "--prompts-file", f, "--out", tmp_path / "o", "--duration", "0.3",
        "--window", "0.2", "--context", "0.06", "--batch-size", "2", "--no-watermark",
    )
    assert code == 0, err
    assert out.split() == [str(tmp_path / "o" / "000-one-s0-00.flac"), str(tmp_path / "o" / "001-two-s0-00.flac")]
    row = read_jsonl(tmp_path / "o" / "generated.jsonl")[0]
    assert row["long_form"]["window_s"] == 0.2 and row["long_form"]["context_s"] == 0.06
    assert (tmp_path / "o" / "overview.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "1", "--context", "1"], "--context must be >= 0 and shorter than --window"),
        (["--window", "60"], "--window 60.0 s needs 3004 decoder positions but the model has 2048"),
        (["--best-of", "0"], "--best-of must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--melody", "MISSING"], "melody file '.*none.wav' does not exist"),
        (["--melody", "TONE"], "--melody needs a melody model; 'tiny' is a musicgen model"),
        (["--prompts-file", "EMPTY"], "holds no prompt"),
        (["--prompt", "x", "--prompts-file", "EMPTY"], "not both"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    import re

    (tmp_path / "empty.txt").write_text("\n# only a comment\n")
    sf.write(tmp_path / "tone.wav", np.zeros(3200, np.float32), 32000)
    subst = {"MISSING": tmp_path / "none.wav", "TONE": tmp_path / "tone.wav", "EMPTY": tmp_path / "empty.txt"}
    args = [str(subst.get(a, a)) for a in args]
    code, _, err = _main(monkeypatch, capsys, "generate", "--out", tmp_path / "o", "--duration", "0.2", *args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), err


def test_a_window_too_long_for_one_prompt_fails_before_any_file(tiny_melody, tmp_path):
    melody = tmp_path / "hum.wav"
    sf.write(melody, 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000), 16000)
    out = tmp_path / "gen"
    # 36 s fits beside a one-word prompt but not beside a long one (melody models prepend the text).
    prompts = ["a", " ".join(["long"] * 150)]
    with pytest.raises(StylecraftError, match="decoder positions"):
        generate(tiny_melody, out, prompts, SamplingParams(duration_s=0.3, seed=1), batch_size=1,
                 long_form=LongForm(window_s=36.0, context_s=1.0), melody=melody)
    assert not out.exists() or not any(out.iterdir())


def test_rows_of_finished_batches_survive_a_later_failure(tiny, tmp_path, monkeypatch):
    from stylecraft.generate import sample

    real = sample.best_of_codes
    calls = {"n": 0}

    def failing_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("stopped")
        return real(*args, **kwargs)

    monkeypatch.setattr(sample, "best_of_codes", failing_second)
    params = SamplingParams(duration_s=0.3, top_k=50, seed=2)
    with pytest.raises(RuntimeError, match="stopped"):
        generate(tiny, tmp_path, ["a", "b"], params, batch_size=1, long_form=LF)
    rows = read_jsonl(tmp_path / "generated.jsonl")
    assert [r["prompt"] for r in rows] == ["a"] and (tmp_path / rows[0]["file"]).is_file()

    calls["n"] = 10  # the rerun fails no more and must only make the missing file
    again = generate(tiny, tmp_path, ["a", "b"], params, batch_size=1, long_form=LF)
    assert calls["n"] == 11 and [r["prompt"] for r in again] == ["a", "b"]
    assert again[0] == rows[0]
