"""Bad input through the CLI: every file ends in exactly one manifest, no traceback, honest exit codes."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli
from reliability_corpus import make_corpus

from stylecraft.artifacts import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args):
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "stylecraft", *args], capture_output=True, text=True, env=env, timeout=600)


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("badinput")
    cat, run = base / "catalogue", base / "run"
    cases = make_corpus(cat)
    ingest = _cli("ingest", str(cat), "--run-dir", str(run))
    segment = _cli("segment", "--run-dir", str(run), "segment.window_s=4", "segment.hop_s=2", "segment.workers=1")
    return cat, run, cases, ingest, segment


def test_every_file_ends_in_exactly_one_manifest(corpus_run):
    cat, run, cases, ingest, _ = corpus_run
    assert ingest.returncode == 0, ingest.stderr
    _no_traceback(ingest)
    tracks = read_jsonl(run / "tracks.jsonl")
    rejects = read_jsonl(run / "rejects.jsonl")
    accepted = [os.path.relpath(t["path"], cat) for t in tracks]
    rejected = [os.path.relpath(r["path"], cat) for r in rejects]
    assert len(accepted) == len(set(accepted)) and len(rejected) == len(set(rejected))
    assert not set(accepted) & set(rejected)
    assert set(accepted) | set(rejected) == set(cases)
    for rel, (case, usable) in cases.items():
        if rel in ("links/link-to-file.wav", "names/with  spaces .wav"):
            continue  # one of the pair is kept, the other rejected as its duplicate
        assert (rel in accepted) == usable, f"{case}: {rel}"
    assert ("names/with  spaces .wav" in accepted) != ("links/link-to-file.wav" in accepted)
    for r in rejects:
        assert r["reason"] and "\n" not in r["reason"] and "Traceback" not in r["reason"]
    reasons = {os.path.relpath(r["path"], cat): r["reason"] for r in rejects}
    assert reasons["special/pipe.wav"].startswith("not a regular file")
    assert reasons["links/dangling.wav"] == "broken symlink"
    assert "DC" in reasons["bad/dc.wav"] and reasons["bad/silence.wav"] == "silent"
    assert "NaN or infinite" in reasons["bad/nan.wav"] and "NaN or infinite" in reasons["bad/inf.wav"]
    assert reasons["dup/copy-of-ch-2.wav"].startswith("duplicate of")
    rates = {t["sample_rate"] for t in tracks}
    assert {8000, 192000} <= rates and max(t["channels"] for t in tracks) == 12


def test_segment_takes_every_usable_track(corpus_run):
    cat, run, cases, _, segment = corpus_run
    assert segment.returncode == 0, segment.stderr
    _no_traceback(segment)
    windows = read_jsonl(run / "windows.jsonl")
    tracks = {t["id"]: os.path.relpath(t["path"], cat) for t in read_jsonl(run / "tracks.jsonl")}
    with_windows = {tracks[w["track_id"]] for w in windows}
    assert set(tracks.values()) - with_windows == {"short-window.wav"}  # 2.5 s: no 4 s window fits
    verify = _cli("verify", str(run), "--json")
    assert verify.returncode == 0, verify.stdout
    counts = json.loads(verify.stdout)["counts"]
    assert counts.get("missing", 0) == 0 and counts.get("altered", 0) == 0


def test_nothing_usable_is_exit_1_with_one_line(tmp_path):
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "a.wav").write_bytes(b"")
    (cat / "b.flac").write_bytes(b"garbage" * 10)
    (cat / "c.txt").write_text("x")
    proc = run_cli("ingest", str(cat), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 1
    _no_traceback(proc)
    assert proc.stderr.strip().startswith("error:") and "no usable audio" in proc.stderr
    assert len(read_jsonl(tmp_path / "run" / "rejects.jsonl")) == 3


def test_unreadable_file_is_a_reject(tmp_path, monkeypatch):
    """chmod 000 does not stop root, so a permission failure is simulated at the first read."""
    import soundfile as sf
    from reliability_corpus import _tone

    from stylecraft.data import ingest as ingest_mod

    cat = tmp_path / "cat"
    cat.mkdir()
    for name in ("ok.wav", "locked.wav"):
        sf.write(cat / name, _tone(3.0, 16000, seed=len(name)), 16000)
    real = ingest_mod.sha256_file

    def guarded(path):
        if str(path).endswith("locked.wav"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(ingest_mod, "sha256_file", guarded)
    tracks, rejects = ingest_mod.ingest(cat, tmp_path / "run", workers=1)
    assert [Path(t.path).name for t in tracks] == ["ok.wav"]
    assert [(Path(r.path).name, r.reason) for r in rejects] == [("locked.wav", "cannot read: Permission denied")]


def test_bad_config_values_are_one_line(tmp_path):
    proc = run_cli("run", str(ROOT / "recipes" / "quickstart.yaml"), "segment.window_s=-1", "train.lr=abc",
                   "bogus.key=1", "generate.watermark.strength=2", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 1
    _no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    for what in ("segment.window_s", "train.lr", "bogus", "generate.watermark.strength"):
        assert what in lines[0]


def test_missing_model_is_one_line(tmp_path):
    proc = run_cli("generate", "--model", "musicgen-small", "--out", str(tmp_path / "o"))
    assert proc.returncode == 1
    _no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "stylecraft fetch" in lines[0]


def test_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    import soundfile as sf
    from reliability_corpus import _tone

    from stylecraft import cli

    cat, run = tmp_path / "cat", tmp_path / "run"
    cat.mkdir()
    sf.write(cat / "a.wav", _tone(3.0, 16000), 16000)

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    monkeypatch.setattr(sys, "argv", ["stylecraft", "ingest", str(cat), "--run-dir", str(run)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: No space left on device"]
    leftovers = [p.name for p in run.rglob("*") if p.is_file()]
    assert not [n for n in leftovers if ".tmp" in n]
    assert not (run / "tracks.jsonl").exists()


def test_file_segment_cannot_decode_moves_to_rejects(tmp_path):
    """A file ingest accepted but that is damaged before segment: a reject with one line, not a track."""
    import soundfile as sf
    from reliability_corpus import _tone

    cat, run = tmp_path / "cat", tmp_path / "run"
    cat.mkdir()
    for name in ("a.flac", "b.flac", "c.flac"):
        sf.write(cat / name, _tone(6.0, 16000, seed=len(name) + ord(name[0])), 16000)
    ingest = _cli("ingest", str(cat), "--run-dir", str(run))
    assert ingest.returncode == 0, ingest.stderr
    assert len(read_jsonl(run / "tracks.jsonl")) == 3
    data = (cat / "b.flac").read_bytes()
    (cat / "b.flac").write_bytes(data[: len(data) // 3])  # damaged after ingest: truncated
    segment = _cli("segment", "--run-dir", str(run), "segment.window_s=4", "segment.hop_s=2", "segment.workers=1")
    assert segment.returncode == 0, segment.stderr
    _no_traceback(segment)
    tracks = [Path(t["path"]).name for t in read_jsonl(run / "tracks.jsonl")]
    rejects = {Path(r["path"]).name: r["reason"] for r in read_jsonl(run / "rejects.jsonl")}
    assert sorted(tracks) == ["a.flac", "c.flac"]
    assert list(rejects) == ["b.flac"]
    assert rejects["b.flac"] and "\n" not in rejects["b.flac"] and "decode" in rejects["b.flac"]
    ids = {t["id"] for t in read_jsonl(run / "tracks.jsonl")}
    windows = read_jsonl(run / "windows.jsonl")
    assert windows and {w["track_id"] for w in windows} == ids
    # Running segment again changes nothing: the reject is not listed twice.
    again = _cli("segment", "--run-dir", str(run), "segment.window_s=4", "segment.hop_s=2", "segment.workers=1")
    assert again.returncode == 0, again.stderr
    assert len(read_jsonl(run / "rejects.jsonl")) == 1 and len(read_jsonl(run / "tracks.jsonl")) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--model", "tiny", "stray"], "Missing option '--out'"),
        (["generate", "--bogus"], "No such option: --bogus"),
        (["watermark", "detect"], "Missing argument 'file'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
    ],
)
def test_command_line_mistakes_are_usage_errors_without_traceback(args, message, monkeypatch, capsys):
    from stylecraft import cli

    monkeypatch.setattr(sys, "argv", ["stylecraft", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"Error: {message}" in err and "Traceback" not in err
