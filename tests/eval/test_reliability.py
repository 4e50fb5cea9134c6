"""eval/reliability.py helpers: unpacking a Debian package's music and the Clopper-Pearson bound."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from eval_scripts import load_eval_script

SR = 8000


@pytest.fixture(scope="module")
def rel():
    return load_eval_script("reliability")


def _tone(path: Path, seconds: float) -> None:
    t = np.arange(int(seconds * SR)) / SR
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR, format="OGG", subtype="VORBIS")


def _build_deb(tmp_path: Path, files: dict[str, float]) -> Path:
    """A real .deb (dpkg-deb --build) holding OGG tones of the given lengths under usr/share/games/demo."""
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: demo-music\nVersion: 1:2.3-4\nArchitecture: all\nMaintainer: nobody <nobody@example.org>\n"
        "Description: demo\n")
    for rel_path, seconds in files.items():
        _tone(pkg / "usr/share/games/demo" / rel_path, seconds)
    deb = tmp_path / "demo-music.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)], check=True, capture_output=True)
    return deb


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")


@needs_dpkg
def test_unpack_keeps_long_matching_files_and_records_the_version(rel, tmp_path):
    deb = _build_deb(tmp_path, {"music/long.ogg": 31.0, "music/short.ogg": 5.0, "music/long_enhanced.ogg": 31.0,
                                "sounds/effect.ogg": 31.0})
    dest = tmp_path / "data" / "demo"
    src = rel._unpack_deb_audio(deb, dest, "music/*.ogg", exclude="*_enhanced.ogg", min_s=30.0)
    assert [p.name for p in rel.audio_files(dest)] == ["long.ogg"]
    assert src["files"] == ["long.ogg"] and src["left_out_short"] == 1
    assert src["package"] == "demo-music" and src["version"] == "1:2.3-4"
    assert json.loads((dest / rel.SOURCE_FILE).read_text()) == src
    assert rel._source_info(dest, "demo-music") == {"package": "demo-music", "version": "1:2.3-4",
                                                    "version_from": "unpacked .deb"}


@needs_dpkg
def test_unpack_refuses_two_files_of_one_name_and_leaves_no_folder(rel, tmp_path):
    deb = _build_deb(tmp_path, {"a/track.ogg": 1.0, "b/track.ogg": 1.0})
    dest = tmp_path / "data" / "demo"
    with pytest.raises(RuntimeError, match="two files named track.ogg"):
        rel._unpack_deb_audio(deb, dest, "*.ogg")
    assert not dest.exists()


def test_clopper_pearson_with_no_positives_is_the_closed_form(rel):
    for n in (1, 2518, 2995, 5000):
        assert rel._cp_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    assert rel._cp_upper(0, 2995) <= 0.001 < rel._cp_upper(0, 2994)
    assert rel._cp_upper(3, 3) == 1.0


def test_only_runs_that_killed_something_count_as_kills(rel):
    trials = [
        {"test": "tests.test_kill_resume::test_killed_stage_resumes_to_the_same_result[segment]", "outcome": "passed"},
        {"test": "tests.test_kill_resume::test_killed_stage_resumes_to_the_same_result[augment]",
         "outcome": "skipped: augment finished before the kill on this machine; the rerun was still checked"},
        {"test": "tests.test_kill_resume::test_leftover_temporary_files_are_removed", "outcome": "passed"},
        {"test": "tests.train.test_loop::test_sigkill_and_resume_gives_identical_losses", "outcome": "passed"},
        {"test": "tests.train.test_loop::test_resume_refuses_checkpoints_made_with_other_settings", "outcome": "passed"},
    ]
    # A section as an earlier version saved it, with its own (wrong) totals.
    section = {"trials": trials, "passed": 4, "total": 5}
    line = next(x for x in rel._targets({"kills": section}) if "kill-and-restart" in x)
    assert "(2/2 runs that killed a stage; 1 run(s) where the stage finished before the kill" in line
    assert "2 test(s) that kill nothing are not counted" in line and ": met" in line
    text = "\n".join(rel._render_kills(section))
    assert "2 of 2 runs that killed a stage passed" in text and "(no kill)" in text and "(not killed)" in text
