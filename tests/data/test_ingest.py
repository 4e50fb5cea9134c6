"""Tests for the ingest stage: every file accounted for, bad files rejected with a reason, split by track."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stylecraft.artifacts import read_jsonl
from stylecraft.data.demo import synth_track
from stylecraft.data.ingest import assign_split, ingest
from stylecraft.data.manifest import Reject, Track, load_rows
from stylecraft.errors import StageInputError

SR = 16000
UNICODE_NAME = "Café del Mar – ñandú 01.flac"
GOOD = ["a.flac", "b.wav", "c.ogg", "sub/d.flac", UNICODE_NAME]


def _write(root: Path, rel: str, audio: np.ndarray, **kwargs: object) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR, **kwargs)
    return path


@pytest.fixture
def messy_catalogue(tmp_path: Path) -> Path:
    """Five good tracks (FLAC, WAV, OGG Vorbis, one in a subfolder, one with a unicode name) and
    every kind of file that must be rejected, plus a symlink loop."""
    cat = tmp_path / "catalogue"
    cat.mkdir()
    _write(cat, "a.flac", synth_track(2.0, SR, seed=1))
    _write(cat, "b.wav", synth_track(2.0, SR, seed=2))
    _write(cat, "c.ogg", synth_track(2.0, SR, seed=3), format="OGG", subtype="VORBIS")
    _write(cat, "sub/d.flac", synth_track(2.0, SR, seed=4, channels=1))
    _write(cat, UNICODE_NAME, synth_track(2.0, SR, seed=5))
    shutil.copyfile(cat / "a.flac", cat / "z copy of a.flac")  # same bytes, different name
    (cat / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (cat / "empty.flac").write_bytes(b"")
    (cat / "notes.txt").write_text("liner notes\n", encoding="utf-8")
    _write(cat, "short.wav", synth_track(0.5, SR, seed=6))
    _write(cat, "silent.flac", np.zeros((2 * SR, 2), dtype=np.float32))
    os.symlink(cat, cat / "loop", target_is_directory=True)  # catalogue/loop -> catalogue
    return cat


def _all_files(root: Path) -> set[str]:
    """Every regular file under root, each once (symlinked folders are not followed)."""
    out = set()
    for dirpath, _, names in os.walk(root, followlinks=False):
        out.update(str(Path(dirpath) / n) for n in names)
    return out


def _by_name(rows: list[Track] | list[Reject], root: Path) -> dict[str, Track | Reject]:
    return {Path(r.path).relative_to(root).as_posix(): r for r in rows}


def test_every_file_ends_in_exactly_one_manifest(messy_catalogue: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    tracks, rejects = ingest(messy_catalogue, run)
    on_disk_tracks = load_rows(run / "tracks.jsonl", Track)
    on_disk_rejects = load_rows(run / "rejects.jsonl", Reject)
    assert on_disk_tracks == tracks and on_disk_rejects == rejects
    paths = [t.path for t in tracks] + [r.path for r in rejects]
    assert len(paths) == len(set(paths)), "a file is listed twice (symlink loop followed?)"
    root = messy_catalogue.resolve()
    assert set(paths) == _all_files(root)
    assert not any("/loop/" in p for p in paths)
    assert sorted(_by_name(tracks, root)) == sorted(GOOD)


def test_rejects_carry_a_reason(messy_catalogue: Path, tmp_path: Path) -> None:
    _, rejects = ingest(messy_catalogue, tmp_path / "run")
    reasons = {name: r.reason for name, r in _by_name(rejects, messy_catalogue.resolve()).items()}
    assert set(reasons) == {
        "z copy of a.flac",
        "corrupt.wav",
        "empty.flac",
        "notes.txt",
        "short.wav",
        "silent.flac",
    }
    assert "corrupt.wav" in reasons["corrupt.wav"] and "\n" not in reasons["corrupt.wav"]
    assert "empty.flac" in reasons["empty.flac"]
    assert reasons["notes.txt"] == "not an audio file extension (.txt)"
    assert reasons["short.wav"].startswith("too short (0.50 s")
    assert reasons["silent.flac"] == "silent"
    assert reasons["z copy of a.flac"].startswith("duplicate of") and "a.flac" in reasons["z copy of a.flac"]


def test_track_rows_describe_the_files(messy_catalogue: Path, tmp_path: Path) -> None:
    tracks, _ = ingest(messy_catalogue, tmp_path / "run")
    rows = _by_name(tracks, messy_catalogue.resolve())
    for name, t in rows.items():
        assert isinstance(t, Track)
        assert len(t.id) == 16 and t.sha256.startswith(t.id)
        assert t.sample_rate == SR and t.duration_s == pytest.approx(2.0, abs=1e-3), name
        assert t.split in ("train", "valid")
        assert t.loudness_lufs is not None and -30 < t.loudness_lufs < 0
    assert rows["sub/d.flac"].channels == 1 and rows["a.flac"].channels == 2
    assert (rows["a.flac"].format, rows["b.wav"].format, rows["c.ogg"].format) == ("FLAC", "WAV", "OGG")
    assert len({t.id for t in tracks}) == len(tracks)
    # The unicode name survives the JSONL round trip byte for byte.
    raw = (tmp_path / "run" / "tracks.jsonl").read_text(encoding="utf-8")
    assert UNICODE_NAME in raw


def test_split_is_deterministic_and_by_track(messy_catalogue: Path, tmp_path: Path) -> None:
    first, _ = ingest(messy_catalogue, tmp_path / "r1")
    second, _ = ingest(messy_catalogue, tmp_path / "r2")
    assert first == second
    assert (tmp_path / "r1" / "tracks.jsonl").read_bytes() == (tmp_path / "r2" / "tracks.jsonl").read_bytes()
    assert (tmp_path / "r1" / "rejects.jsonl").read_bytes() == (
        tmp_path / "r2" / "rejects.jsonl"
    ).read_bytes()
    # Each track (content hash) is on one side only, and the hash decides it.
    split_of: dict[str, str] = {}
    for t in first:
        assert split_of.setdefault(t.id, t.split) == t.split
    assert {t.split for t in first} == {"train", "valid"}


def test_split_does_not_depend_on_file_names(messy_catalogue: Path, tmp_path: Path) -> None:
    before = {t.id: t.split for t in ingest(messy_catalogue, tmp_path / "r1")[0]}
    (messy_catalogue / "a.flac").rename(messy_catalogue / "renamed.flac")
    after = {t.id: t.split for t in ingest(messy_catalogue, tmp_path / "r2")[0]}
    assert before == after


def test_assign_split_fraction_and_seed() -> None:
    ids = [f"{i:016x}" for i in range(2000)]
    splits = [assign_split(i, 0.2, 0) for i in ids]
    assert splits == [assign_split(i, 0.2, 0) for i in ids]  # pure function
    assert 0.17 < splits.count("valid") / len(ids) < 0.23
    assert splits != [assign_split(i, 0.2, 1) for i in ids]  # the seed changes the draw
    assert all(assign_split(i, 0.0, 0) == "train" for i in ids)
    # Monotone in the fraction: a track held out at 0.2 stays held out at 0.5.
    assert all(assign_split(i, 0.5, 0) == "valid" for i, s in zip(ids, splits, strict=True) if s == "valid")


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_both_splits_present_with_two_tracks(tmp_path: Path, fraction: float) -> None:
    cat = tmp_path / "cat"
    for i in range(2):
        _write(cat, f"t{i}.wav", synth_track(1.5, SR, seed=20 + i))
    tracks, _ = ingest(cat, tmp_path / "run", valid_fraction=fraction)
    assert sorted(t.split for t in tracks) == ["train", "valid"]
    again, _ = ingest(cat, tmp_path / "run2", valid_fraction=fraction)
    assert again == tracks


def test_single_track_and_zero_fraction_stay_in_train(tmp_path: Path) -> None:
    cat = tmp_path / "cat"
    _write(cat, "only.flac", synth_track(1.5, SR, seed=30))
    tracks, _ = ingest(cat, tmp_path / "run", valid_fraction=0.999)
    # One track cannot be split: it stays where the hash puts it.
    assert [t.split for t in tracks] == [assign_split(tracks[0].id, 0.999, 0)]
    _write(cat, "second.flac", synth_track(1.5, SR, seed=31))
    tracks, _ = ingest(cat, tmp_path / "run2", valid_fraction=0.0)
    assert [t.split for t in tracks] == ["train", "train"]


def test_min_duration_and_extensions_are_honoured(messy_catalogue: Path, tmp_path: Path) -> None:
    tracks, rejects = ingest(messy_catalogue, tmp_path / "run", extensions=["flac"], min_duration_s=0.25)
    names = set(_by_name(tracks, messy_catalogue.resolve()))
    assert names == {"a.flac", "sub/d.flac", UNICODE_NAME}
    reasons = {n: r.reason for n, r in _by_name(rejects, messy_catalogue.resolve()).items()}
    assert reasons["b.wav"] == "not an audio file extension (.wav)"
    assert "short.wav" in reasons and reasons["short.wav"].startswith("not an audio file extension")


def test_missing_catalogue_raises(tmp_path: Path) -> None:
    with pytest.raises(StageInputError, match="does not exist"):
        ingest(tmp_path / "nowhere", tmp_path / "run")
    a_file = tmp_path / "file.wav"
    a_file.write_bytes(b"x")
    with pytest.raises(StageInputError):
        ingest(a_file, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_only_bad_files_writes_rejects_and_raises(tmp_path: Path) -> None:
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "broken.wav").write_bytes(np.random.default_rng(1).bytes(3000))
    (cat / "readme.md").write_text("hi", encoding="utf-8")
    _write(cat, "quiet.wav", np.zeros(SR * 2, dtype=np.float32))
    run = tmp_path / "run"
    with pytest.raises(StageInputError, match="no usable audio") as info:
        ingest(cat, run)
    assert "3 file(s) rejected" in str(info.value)
    rows = read_jsonl(run / "rejects.jsonl")
    assert sorted(Path(r["path"]).name for r in rows) == ["broken.wav", "quiet.wav", "readme.md"]
    assert all(r["reason"] for r in rows)
    assert read_jsonl(run / "tracks.jsonl") == []


def test_empty_catalogue_raises(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    with pytest.raises(StageInputError, match="no audio files"):
        ingest(tmp_path / "cat", tmp_path / "run")


# ------------------------------------------------------------------------------------------
# Near-duplicate recordings share a split
# ------------------------------------------------------------------------------------------

COPY_SR = 22050


@pytest.fixture(scope="module")
def copies_catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One song as FLAC, as a real MP3 and OGG Vorbis re-encode, as a -3 dB copy and trimmed by 3.3 s,
    beside four other songs of the same synthetic artist."""
    cat = tmp_path_factory.mktemp("copies")
    song = synth_track(24.0, COPY_SR, seed=40)
    sf.write(cat / "song.flac", song, COPY_SR)
    sf.write(cat / "song (mp3 re-encode).mp3", song, COPY_SR, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(cat / "song (ogg re-encode).ogg", song, COPY_SR, format="OGG", subtype="VORBIS")
    sf.write(cat / "song (-3 dB).flac", song * 10 ** (-3 / 20), COPY_SR)
    sf.write(cat / "song (trimmed).wav", song[int(3.3 * COPY_SR) :], COPY_SR)
    for i in range(4):
        sf.write(cat / f"other-{i}.flac", synth_track(24.0, COPY_SR, seed=41 + i), COPY_SR)
    return cat, ["song.flac", "song (mp3 re-encode).mp3", "song (ogg re-encode).ogg", "song (-3 dB).flac",
                 "song (trimmed).wav"]


def _seed_that_splits_copies(cat: Path, copies: list[str]) -> int:
    """A split seed under which a per-file hash split puts the copies on both sides (the leak)."""
    from stylecraft.artifacts import sha256_file

    ids = [sha256_file(cat / name)[:16] for name in copies]
    for seed in range(100):
        if len({assign_split(i, 0.5, seed) for i in ids}) == 2:
            return seed
    raise AssertionError("no seed separates the copies")


def test_near_duplicates_share_one_split_and_are_reported(copies_catalogue: tuple[Path, list[str]], tmp_path: Path) -> None:
    cat, copies = copies_catalogue
    seed = _seed_that_splits_copies(cat, copies)
    run = tmp_path / "run"
    tracks, _ = ingest(cat, run, valid_fraction=0.5, split_seed=seed)
    by_name = {Path(t.path).name: t for t in tracks}
    assert len(by_name) == 9  # every copy is a track of its own (different bytes): none rejected
    assert len({by_name[n].split for n in copies}) == 1, {n: by_name[n].split for n in copies}
    group = {by_name[n].duplicate_group for n in copies}
    assert len(group) == 1 and group != {""}
    assert all(not t.duplicate_group for n, t in by_name.items() if n not in copies)
    report = json.loads((run / "duplicates.json").read_text())
    assert len(report["groups"]) == 1 and report["tracks_in_groups"] == len(copies)
    g = report["groups"][0]
    assert {Path(t["path"]).name for t in g["tracks"]} == set(copies) and g["split"] == by_name["song.flac"].split
    assert all(m["corr"] >= 0.9 for m in g["matches"])
    trimmed = [m for m in g["matches"] if {m["a"], m["b"]} == {by_name["song.flac"].id, by_name["song (trimmed).wav"].id}]
    assert trimmed and abs(abs(trimmed[0]["offset_s"]) - 3.3) <= 0.1  # the trimmed copy starts 3.3 s in


def test_the_leak_without_the_check(copies_catalogue: tuple[Path, list[str]], tmp_path: Path) -> None:
    """ingest.near_duplicates=false is the per-file split: the copies straddle the splits."""
    from stylecraft.data.ingest import DuplicateSettings

    cat, copies = copies_catalogue
    seed = _seed_that_splits_copies(cat, copies)
    tracks, _ = ingest(cat, tmp_path / "run", valid_fraction=0.5, split_seed=seed,
                       duplicates=DuplicateSettings(enabled=False))
    assert len({t.split for t in tracks if Path(t.path).name in copies}) == 2
    assert json.loads((tmp_path / "run" / "duplicates.json").read_text())["groups"] == []


def test_a_group_is_moved_whole_to_fill_an_empty_split(copies_catalogue: tuple[Path, list[str]], tmp_path: Path) -> None:
    cat, copies = copies_catalogue
    import shutil

    small = tmp_path / "cat"
    small.mkdir()
    for name in copies[:3]:
        shutil.copy(cat / name, small / name)
    shutil.copy(cat / "other-0.flac", small / "other-0.flac")
    for fraction in (0.001, 0.999):
        tracks, _ = ingest(small, tmp_path / f"run{fraction}", valid_fraction=fraction)
        splits = {Path(t.path).name: t.split for t in tracks}
        assert len({splits[n] for n in copies[:3]}) == 1 and splits["other-0.flac"] != splits[copies[0]]
