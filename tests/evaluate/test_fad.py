"""Tests for embedding sets from folders / .npy files and for compute_fad."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fad_synth import write_set

from stylecraft.errors import AudioDecodeError, StylecraftError
from stylecraft.evaluate.embeddings import MfccEmbedding
from stylecraft.evaluate.fad import (
    compute_fad,
    embed_set,
    embedding_cache_path,
    list_audio_files,
    load_audio_for_embedding,
)


def test_list_audio_files_is_recursive_sorted_and_case_insensitive(tmp_path: Path) -> None:
    for rel in ["b.WAV", "a/z.flac", "a/y.Mp3", "c.ogg", "d.aif", "e.aiff", "f.opus", "notes.txt", "._b.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    names = [p.relative_to(tmp_path).as_posix() for p in list_audio_files(tmp_path)]
    assert names == ["a/y.Mp3", "a/z.flac", "b.WAV", "c.ogg", "d.aif", "e.aiff", "f.opus"]
    with pytest.raises(StylecraftError, match="not a folder"):
        list_audio_files(tmp_path / "missing")


def test_load_audio_returns_2d_float32_and_names_bad_file(noise_folder: Path, tmp_path: Path) -> None:
    audio, sr = load_audio_for_embedding(noise_folder / "clip_01.wav")
    assert audio.dtype == np.float32 and audio.ndim == 2 and audio.shape[1] == 2 and sr == 22050
    sf.write(tmp_path / "clip.opus", audio[: sr // 2], 48000, format="OGG", subtype="OPUS")  # Ogg Opus decodes too
    opus, opus_sr = load_audio_for_embedding(tmp_path / "clip.opus")
    assert opus.shape == (sr // 2, 2) and opus_sr == 48000
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioDecodeError, match="broken.wav") as info:
        load_audio_for_embedding(bad)
    assert "\n" not in str(info.value)


def test_fad_of_folder_with_itself_is_zero(noise_folder: Path) -> None:
    result = compute_fad(noise_folder, noise_folder, progress=False)
    assert result["fad"] == pytest.approx(0.0, abs=1e-8)
    assert result["n_ref"] == result["n_gen"] == 12  # 4 files x 3 blocks
    assert result["n_ref_files"] == result["n_gen_files"] == 4
    assert result["embedding"] == "mfcc" and result["dim"] == 80
    assert result["embedding_settings"] == MfccEmbedding().settings()
    assert result["skipped"] == []
    json.dumps(result)  # the record must be JSON-serialisable as is


def test_fad_on_folders_ranks_similar_set_closer(noise_folder: Path, tmp_path: Path) -> None:
    other_noise = write_set(tmp_path / "noise2", "noise", 4, 3.0, 16000, seed=2, ext=".flac")
    tone_set = write_set(tmp_path / "tones", "tones", 4, 3.0, 16000, seed=3)
    near = compute_fad(noise_folder, other_noise, progress=False)["fad"]
    far = compute_fad(noise_folder, tone_set, progress=False)["fad"]
    assert 0 < near < far


def test_fad_on_npy_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 8))
    b = rng.standard_normal((150, 8)) * 2.0 + 1.0
    np.save(tmp_path / "a.npy", a.astype(np.float32))
    np.save(tmp_path / "b.npy", b)
    same = compute_fad(tmp_path / "a.npy", tmp_path / "a.npy", progress=False)
    assert same["fad"] == pytest.approx(0.0, abs=1e-8)
    result = compute_fad(tmp_path / "a.npy", tmp_path / "b.npy", progress=False)
    assert result["n_ref"] == 200 and result["n_gen"] == 150
    assert result["ref_kind"] == result["gen_kind"] == "npy"
    assert result["n_ref_files"] == 0
    # Population: 8 * (1 + (1 - 2)^2) = 16; the estimate from samples is near it.
    assert result["fad"] == pytest.approx(16.0, rel=0.3)


def test_undecodable_file_is_skipped_with_reason(
    noise_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (noise_folder / "sub").mkdir()
    bad = noise_folder / "sub" / "corrupt.flac"
    bad.write_bytes(b"fLaC but then garbage" * 10)
    with caplog.at_level(logging.WARNING, logger="stylecraft.evaluate.fad"):
        result = compute_fad(noise_folder, noise_folder, progress=False)
    assert result["n_ref_files"] == 4 and result["n_ref"] == 12
    assert [s["set"] for s in result["skipped"]] == ["ref", "gen"]
    assert all(s["path"] == str(bad) and "corrupt.flac" in s["reason"] for s in result["skipped"])
    assert any("corrupt.flac" in r.getMessage() for r in caplog.records)
    assert result["fad"] == pytest.approx(0.0, abs=1e-8)


def test_folder_where_nothing_decodes_raises(tmp_path: Path) -> None:
    bad_only = tmp_path / "bad_only"
    bad_only.mkdir()
    (bad_only / "x.wav").write_bytes(b"nope")
    with pytest.raises(StylecraftError, match="none of the 1 audio files.*x.wav"):
        embed_set(bad_only, MfccEmbedding(), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here")
    with pytest.raises(StylecraftError, match="no audio files"):
        embed_set(empty, MfccEmbedding(), progress=False)


def test_dimension_mismatch_names_both_dims(tmp_path: Path, noise_folder: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "d4.npy", rng.standard_normal((20, 4)))
    np.save(tmp_path / "d5.npy", rng.standard_normal((20, 5)))
    with pytest.raises(StylecraftError, match="D=4.*D=5"):
        compute_fad(tmp_path / "d4.npy", tmp_path / "d5.npy", progress=False)
    with pytest.raises(StylecraftError, match="D=80.*D=4"):
        compute_fad(noise_folder, tmp_path / "d4.npy", progress=False)


def test_bad_sources_raise(tmp_path: Path) -> None:
    np.save(tmp_path / "one_d.npy", np.zeros(10))
    np.save(tmp_path / "one_row.npy", np.zeros((1, 3)))
    (tmp_path / "emb.txt").write_text("1 2 3")
    emb = MfccEmbedding()
    with pytest.raises(StylecraftError, match="2-D"):
        embed_set(tmp_path / "one_d.npy", emb)
    with pytest.raises(StylecraftError, match="not a .npy"):
        embed_set(tmp_path / "emb.txt", emb)
    with pytest.raises(StylecraftError, match="does not exist"):
        embed_set(tmp_path / "nowhere", emb)
    with pytest.raises(StylecraftError, match="reference set .* 1 embedding row"):
        compute_fad(tmp_path / "one_row.npy", tmp_path / "one_row.npy", progress=False)
    with pytest.raises(StylecraftError, match="unknown embedding"):
        compute_fad(tmp_path / "one_row.npy", tmp_path / "one_row.npy", embedding_name="nope")


def test_cache_is_written_keyed_and_reused(
    noise_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    emb = MfccEmbedding()
    first = embed_set(noise_folder, emb, cache_dir=cache, progress=False)
    entries = sorted(cache.glob("*.npy"))
    assert len(entries) == 4
    # The documented key, computed here: sha256 of the file's bytes, then the first 16 hex digits
    # of the sha256 of the settings as canonical JSON.
    settings_key = hashlib.sha256(json.dumps(emb.settings(), sort_keys=True, separators=(",", ":"),
                                             default=str).encode()).hexdigest()[:16]
    expected = {cache / f"{hashlib.sha256(Path(f).read_bytes()).hexdigest()}-{settings_key}.npy" for f in first.files}
    assert set(entries) == expected
    assert {embedding_cache_path(cache, Path(f), emb) for f in first.files} == expected
    assert all(np.load(p).dtype == np.float32 for p in entries)

    def fail(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("embed() must not run on a cache hit")

    monkeypatch.setattr(emb, "embed", fail)
    second = embed_set(noise_folder, emb, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert second.files == first.files

    # Different settings must not hit the same entries.
    class Coarser(MfccEmbedding):
        block_frames = 48

    assert embedding_cache_path(cache, Path(first.files[0]), Coarser()) not in expected


def test_progress_bar_path_runs(noise_folder: Path) -> None:
    result = embed_set(noise_folder, MfccEmbedding(), progress=True)
    assert result.n_files == 4
