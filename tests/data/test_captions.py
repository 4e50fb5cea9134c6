"""Per-track captions (captions.mode artist | analysis | tags | file, captions.artist_from) and their rewriting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_runner import run_cli

from stylecraft.artifacts import read_jsonl
from stylecraft.data import captions as cap
from stylecraft.data.captions import CaptionSettings
from stylecraft.data.ingest import ingest
from stylecraft.errors import ConfigError, ModelNotFoundError, StageInputError

SR = 16000


# --- rewriting, with expectations written out by hand --------------------------------------

@pytest.mark.parametrize(("key", "shift", "expected"), [
    ("A minor", 2, "B minor"),
    ("A minor", -1, "G# minor"),
    ("B minor", 1, "C minor"),
    ("C major", -1, "B major"),
    ("Bb major", 2, "C major"),
    ("Eb major", -2, "C# major"),
    ("Db major", 0, "C# major"),  # one key, one spelling: sharps, as the key estimator names keys
    ("F♯ minor", 12, "F# minor"),
    ("G# minor", 5, "C# minor"),
])
def test_transpose_key(key: str, shift: int, expected: str) -> None:
    assert cap.transpose_key(key, shift) == expected


def test_transpose_key_refuses_what_is_not_a_key() -> None:
    with pytest.raises(ValueError, match="not a key"):
        cap.transpose_key("H minor", 1)


@pytest.mark.parametrize(("caption", "kind", "value", "expected"), [
    ("x style, 120 bpm, A minor", "stretch", 1.1, "x style, 132 bpm, A minor"),
    ("x style, 100 bpm, A minor", "stretch", 0.9, "x style, 90 bpm, A minor"),
    ("x style, 97 bpm, E major", "pitch", 2.0, "x style, 97 bpm, F# major"),
    ("slow ballad in Bb major at 72 BPM", "pitch", 1.0, "slow ballad in B major at 72 BPM"),
    ("slow ballad in Bb major at 72 BPM", "stretch", 1.25, "slow ballad in Bb major at 90 bpm"),
    ("x style, 120 bpm, A minor, ambient", "pitch", 0.5, "x style, 120 bpm, ambient"),  # between keys: left out
    ("x style", "pitch", 2.0, "x style"),
    ("Anna's A major-league mix", "pitch", 2.0, "Anna's A major-league mix"),  # not a key: "major-league"
])
def test_variant_caption(caption: str, kind: str, value: float, expected: str) -> None:
    assert cap.variant_caption(caption, kind, value) == expected


def test_format_caption_leaves_unknown_parts_out() -> None:
    assert cap.format_caption("Ann") == "Ann style"
    assert cap.format_caption("Ann", 96.4, "A minor", ["jazz", "piano"]) == "Ann style, 96 bpm, A minor, jazz, piano"
    assert cap.format_caption("Ann", None, "unknown key") == "Ann style"


# --- analysis: tempo and key of audio whose tempo and key are known ------------------------

def _tones(midis: list[int], seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * 440.0 * 2 ** ((m - 69) / 12) * h * t) / h for m in midis for h in range(1, 5))
    return (np.asarray(y) * np.exp(-1.5 * t) / np.abs(y).max()).astype(np.float32)


def song(chords: list[list[int]], bpm: float, bars: int) -> np.ndarray:
    """One chord per 4/4 bar, with a click on every beat."""
    beat = 60.0 / bpm
    y = np.concatenate([_tones(chords[b % len(chords)], 4 * beat) for b in range(bars)]) * 0.3
    n = int(0.01 * SR)
    burst = np.random.default_rng(0).standard_normal(n) * np.exp(-np.arange(n) / (0.002 * SR))
    for t in np.arange(0.0, y.shape[0] / SR, beat):
        i = int(round(t * SR))
        k = min(n, y.shape[0] - i)
        y[i : i + k] += 0.5 * burst[:k]
    return y.astype(np.float32)


C_MAJOR = [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]]  # C F G C
A_MINOR = [[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]]  # Am Dm E Am


@pytest.mark.parametrize(("chords", "bpm", "key"), [(C_MAJOR, 120.0, "C major"), (A_MINOR, 96.0, "A minor")])
def test_analysis_reads_tempo_and_key(chords: list[list[int]], bpm: float, key: str) -> None:
    tempo, found = cap.analyse(song(chords, bpm, 12), SR)
    assert found == key
    assert tempo == pytest.approx(bpm, abs=2.5)  # the tempogram's lag grid at 62.5 frames/s


def test_analysis_of_silence_says_nothing() -> None:
    assert cap.analyse(np.zeros(5 * SR, dtype=np.float32), SR) == (None, None)


# --- ingest with each mode -----------------------------------------------------------------

@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two artists' folders: ann/ (C major at 120 bpm, A minor at 96 bpm), bob/ (C major at 120 bpm)."""
    root = tmp_path_factory.mktemp("captions_cat")
    for rel, (chords, bpm) in {"ann/one.flac": (C_MAJOR, 120.0), "ann/two.flac": (A_MINOR, 96.0),
                               "bob/three.flac": (C_MAJOR, 120.0)}.items():
        (root / rel).parent.mkdir(exist_ok=True)
        y = song(chords, bpm, 10)
        sf.write(root / rel, y * (0.8 if rel.startswith("bob") else 1.0), SR)  # bob's is not a copy of ann's one
    return root


def _rows(run: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in read_jsonl(run / "tracks.jsonl")}


def test_artist_mode(catalogue: Path, tmp_path: Path) -> None:
    ingest(catalogue, tmp_path, captions=CaptionSettings(mode="artist", artist="Ann"), duplicates=None)
    rows = _rows(tmp_path)
    assert {r["caption"] for r in rows.values()} == {"Ann style"}
    assert all(r["tempo_bpm"] is None and r["key"] is None and r["artist"] == "Ann" for r in rows.values())


def test_analysis_mode_stores_structured_captions(catalogue: Path, tmp_path: Path) -> None:
    ingest(catalogue, tmp_path, captions=CaptionSettings(mode="analysis", artist="Ann"))
    rows = _rows(tmp_path)
    two = rows["two.flac"]
    assert two["key"] == "A minor" and two["tempo_bpm"] == pytest.approx(96.0, abs=2.5)
    assert two["caption"] == f"Ann style, {two['tempo_bpm']:.0f} bpm, A minor" and two["tags"] == []
    assert rows["one.flac"]["key"] == "C major" and rows["one.flac"]["tempo_bpm"] == pytest.approx(120.0, abs=2.5)


def test_artist_from_folder(catalogue: Path, tmp_path: Path) -> None:
    ingest(catalogue, tmp_path, captions=CaptionSettings(mode="artist", artist_from="folder", artist="unused"))
    rows = _rows(tmp_path)
    assert {n: r["caption"] for n, r in rows.items()} == {
        "one.flac": "ann style", "two.flac": "ann style", "three.flac": "bob style"}


def test_artist_from_folder_needs_every_file_in_a_folder(catalogue: Path, tmp_path: Path) -> None:
    import shutil

    cat = tmp_path / "cat"
    shutil.copytree(catalogue, cat)
    sf.write(cat / "loose.flac", song(A_MINOR, 110.0, 4), SR)
    with pytest.raises(StageInputError, match="loose.flac' lies directly in the catalogue"):
        ingest(cat, tmp_path / "run", captions=CaptionSettings(mode="artist", artist_from="folder"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_file_mode_relative_and_absolute_paths(catalogue: Path, tmp_path: Path, fmt: str) -> None:
    rows = [("ann/one.flac", "bright piano, 120 bpm, C major"), ("ann/two.flac", 'moody, "quoted", A minor'),
            (str(catalogue / "bob" / "three.flac"), "bob's tune")]
    path = tmp_path / f"captions.{fmt}"
    if fmt == "csv":
        import csv

        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "caption"])
            w.writerows(rows)
    else:
        path.write_text("".join(json.dumps({"path": p, "caption": c}) + "\n" for p, c in rows), encoding="utf-8")
    ingest(catalogue, tmp_path / "run", captions=CaptionSettings(mode="file", file=str(path), artist="Ann"))
    got = {n: r["caption"] for n, r in _rows(tmp_path / "run").items()}
    assert got == {"one.flac": rows[0][1], "two.flac": rows[1][1], "three.flac": rows[2][1]}


def test_file_mode_names_the_missing_files(catalogue: Path, tmp_path: Path) -> None:
    path = tmp_path / "captions.csv"
    path.write_text("path,caption\nann/one.flac,one\n", encoding="utf-8")
    with pytest.raises(StageInputError) as err:
        ingest(catalogue, tmp_path / "run", captions=CaptionSettings(mode="file", file=str(path)))
    msg = str(err.value)
    assert "no caption for 2 of 3 catalogue file(s)" in msg and "two.flac" in msg and "three.flac" in msg
    assert "\n" not in msg


def test_file_mode_malformed_files_are_config_errors(catalogue: Path, tmp_path: Path) -> None:
    bad = {"nohead.csv": "ann/one.flac,one\n", "empty.csv": "path,caption\nann/one.flac,  \n",
           "twice.csv": "path,caption\nann/one.flac,a\nann/one.flac,b\n", "broken.jsonl": "{not json\n"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match="captions.file"):
            ingest(catalogue, tmp_path / "run", captions=CaptionSettings(mode="file", file=str(tmp_path / name)))
    with pytest.raises(ConfigError, match="does not exist"):
        ingest(catalogue, tmp_path / "run", captions=CaptionSettings(mode="file", file=str(tmp_path / "none.csv")))


def test_tags_mode_without_weights_is_one_line_naming_fetch(catalogue: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLECRAFT_CHECKPOINTS", str(tmp_path / "no-weights"))
    with pytest.raises(ModelNotFoundError, match="stylecraft fetch musicnn"):
        ingest(catalogue, tmp_path / "run", captions=CaptionSettings(mode="tags"))
    assert not (tmp_path / "run" / "tracks.jsonl").exists()  # refused before decoding anything
    proc = run_cli("ingest", str(catalogue), "--run-dir", str(tmp_path / "cli"), "captions.mode=tags",
                   env={"STYLECRAFT_CHECKPOINTS": str(tmp_path / "x")})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "stylecraft fetch musicnn" in lines[0]


def test_tags_mode_adds_a_genre_an_instrument_and_a_mood(catalogue: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The plumbing, with musicnn's tiny random networks (real tags need `stylecraft fetch musicnn`)."""
    from stylecraft.evaluate.embeddings.musicnn import MusicnnEmbedding

    tiny = cap.MusicnnTagger(MusicnnEmbedding.preset("msd"), MusicnnEmbedding.preset("mtt"))
    monkeypatch.setattr(cap.MusicnnTagger, "from_registry", classmethod(lambda cls: tiny))
    run = tmp_path / "run"
    ingest(catalogue, run, captions=CaptionSettings(mode="tags", artist="Ann"))
    genres = {t.lower() for g in cap.GENRE_TAGS.values() for t in g}
    instruments = {t.lower() for g in cap.INSTRUMENT_TAGS.values() for t in g}
    moods = {t.lower() for g in cap.MOOD_TAGS.values() for t in g}
    for r in _rows(run).values():
        assert 2 <= len(r["tags"]) <= 3 and r["tags"][0] in genres and r["tags"][-1] in moods
        assert set(r["tags"]) <= genres | instruments | moods
        assert r["caption"] == cap.format_caption("Ann", r["tempo_bpm"], r["key"], r["tags"])
    # Tags are cached per file: a second ingest reads them back without running the networks.
    monkeypatch.setattr(cap.MusicnnTagger, "tag_file", lambda *a, **k: pytest.fail("tagged again"))
    ingest(catalogue, run, captions=CaptionSettings(mode="tags", artist="Ann"))


def test_caption_settings_are_validated() -> None:
    from stylecraft.config import load_recipe

    with pytest.raises(ConfigError) as err:
        load_recipe(None, ["catalogue=x", "captions.mode=lyrics", "captions.artist_from=label"])
    assert "captions.mode must be" in str(err.value) and "captions.artist_from must be" in str(err.value)
    with pytest.raises(ConfigError, match="captions.mode=file needs captions.file"):
        load_recipe(None, ["catalogue=x", "captions.mode=file"])
    with pytest.raises(ConfigError, match="set captions.mode=file"):
        load_recipe(None, ["catalogue=x", "captions.file=c.csv"])
