"""Tests for the segment stage: windows, feature shards, normalised track audio and reruns."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stylecraft.artifacts import read_jsonl, sha256_file
from stylecraft.audio import io as audio_io
from stylecraft.audio.loudness import integrated_loudness
from stylecraft.config import SegmentConfig
from stylecraft.data import features as feat
from stylecraft.data.demo import synth_track
from stylecraft.data.ingest import ingest
from stylecraft.data.manifest import Window, load_rows
from stylecraft.data.segment import FEATURE_NAMES, load_features, load_track_audio, segment, window_starts
from stylecraft.errors import StageInputError

# The mini run (tests/conftest.py) segments 22.05 kHz tracks into 4 s windows with a 2 s hop at 16 kHz.
SEGMENT_SR = 16000
MiniRun = Any  # tests/conftest.py's MiniRun: catalogue, run_dir, tracks, windows, params


def segment_params(**changes: Any) -> dict[str, Any]:
    base = SegmentConfig(sample_rate=SEGMENT_SR, window_s=4.0, hop_s=2.0, loudness_lufs=-18.0, workers=1)
    return dataclasses.asdict(dataclasses.replace(base, **changes))


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _run_files(run: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(run)): _stamp(p)
        for sub in ("audio", "features", "segment")
        for p in sorted((run / sub).iterdir())
    }


def test_window_starts_formula() -> None:
    assert window_starts(100, 40, 20) == [0, 20, 40, 60]
    assert window_starts(99, 40, 20) == [0, 20, 40]
    assert window_starts(40, 40, 20) == [0]
    assert window_starts(39, 40, 20) == []


def test_windows_manifest_matches_tracks(mini_run: MiniRun) -> None:
    assert mini_run.params == segment_params()  # the settings this file's expectations assume
    rows = load_rows(mini_run.run_dir / "windows.jsonl", Window)
    assert rows == mini_run.windows
    splits = {t.id: t.split for t in mini_run.tracks}
    assert {w.track_id for w in rows} == set(splits)
    assert len({w.id for w in rows}) == len(rows)
    for w in rows:
        assert w.split == splits[w.track_id]  # a track's windows never straddle splits
        assert w.id == f"{w.track_id}-{w.row:04d}"
        assert w.duration_s == 4.0
        assert "demo artist style" in w.caption
        assert w.rms_db >= mini_run.params["silence_db"]
    assert {w.split for w in rows} == {"train", "valid"}
    raw = read_jsonl(mini_run.run_dir / "windows.jsonl")
    assert {"id", "track_id", "start_s", "duration_s", "split", "row"} <= set(raw[0])


def test_window_count_and_starts_follow_the_formula(mini_run: MiniRun) -> None:
    sr = SEGMENT_SR
    for t in mini_run.tracks:
        n = len(load_track_audio(mini_run.run_dir, t.id))
        assert n == pytest.approx(t.duration_s * sr, abs=1)
        expected_count = math.floor((n - 4 * sr) / (2 * sr)) + 1
        ws = [w for w in mini_run.windows if w.track_id == t.id]
        assert len(ws) == expected_count
        assert [w.start_s for w in ws] == [2.0 * i for i in range(expected_count)]
        assert [w.row for w in ws] == list(range(expected_count))
        assert ws[-1].start_s + ws[-1].duration_s <= t.duration_s + 1e-6


def test_stored_audio_is_at_target_rate_and_loudness(mini_run: MiniRun) -> None:
    for t in mini_run.tracks:
        assert t.sample_rate == 22050
        path = mini_run.run_dir / "audio" / f"{t.id}.npy"
        raw = np.load(path, mmap_mode="r")
        assert raw.dtype == np.int16 and raw.ndim == 1  # mono PCM
        audio = load_track_audio(mini_run.run_dir, t.id)
        assert audio.dtype == np.float32 and len(audio) == round(t.duration_s * SEGMENT_SR)
        assert integrated_loudness(audio, SEGMENT_SR) == pytest.approx(
            mini_run.params["loudness_lufs"], abs=0.5
        )
        record = json.loads((mini_run.run_dir / "segment" / f"{t.id}.json").read_text())
        assert record["n_samples"] == len(audio)
        # The gain brings the mono down-mix (not the stereo file ingest measured) to the target.
        src, sr = audio_io.load(t.path)
        mono = audio_io.resample(audio_io.to_mono(src), sr, SEGMENT_SR)
        expected_gain = mini_run.params["loudness_lufs"] - integrated_loudness(mono, SEGMENT_SR)
        assert record["gain_db"] == pytest.approx(expected_gain, abs=0.01)


def test_stored_audio_is_the_resampled_source(mini_run: MiniRun) -> None:
    t = mini_run.tracks[0]
    src, sr = sf.read(t.path, dtype="float32")
    mono = src.mean(axis=1)
    audio = load_track_audio(mini_run.run_dir, t.id)
    # Compare spectra (band-limited to the lower rate's Nyquist): same content, only scaled.
    n = 2**15
    a = np.abs(np.fft.rfft(audio[:n]))
    b = np.abs(np.fft.rfft(mono[: int(n * sr / SEGMENT_SR)]))[: len(a)]
    band = slice(20, int(len(a) * 0.8))
    assert float(np.corrcoef(a[band], b[band])[0, 1]) > 0.95


def test_feature_shards_have_window_shapes_and_match_the_audio(mini_run: MiniRun) -> None:
    p = mini_run.params
    win = int(p["window_s"] * SEGMENT_SR)
    frames = 1 + win // p["hop_length"]
    bins = {"mfcc": p["n_mfcc"], "logmel": p["n_mels"], "stft": p["n_fft"] // 2 + 1}
    fp = feat.FeatureParams(SEGMENT_SR, p["n_fft"], p["hop_length"], p["n_mels"], p["n_mfcc"])
    for t in mini_run.tracks:
        ws = [w for w in mini_run.windows if w.track_id == t.id]
        shards = {name: load_features(mini_run.run_dir, t.id, name) for name in FEATURE_NAMES}
        for name, arr in shards.items():
            assert arr.shape == (len(ws), bins[name], frames), name
            assert arr.dtype == np.float16
        # Row r of the shards holds the features of window r, computed from the stored audio.
        audio = load_track_audio(mini_run.run_dir, t.id)
        last = ws[-1]
        start = int(round(last.start_s * SEGMENT_SR))
        ref = feat.compute(audio[None, start : start + win], fp)
        for name in FEATURE_NAMES:
            got = shards[name][last.row].astype(np.float32)
            np.testing.assert_allclose(got, ref[name][0], rtol=2e-3, atol=2e-3 * np.abs(ref[name][0]).max())
    with pytest.raises(KeyError, match="chroma"):
        load_features(mini_run.run_dir, mini_run.tracks[0].id, "chroma")


def test_silent_stretch_is_skipped(tmp_path: Path) -> None:
    sr_src = 22050
    y = synth_track(16.0, sr_src, seed=40)
    y[4 * sr_src : 10 * sr_src] = 0.0  # silent from 4 s to 10 s
    cat = tmp_path / "cat"
    cat.mkdir()
    sf.write(cat / "gap.flac", y, sr_src, subtype="PCM_16")
    run = tmp_path / "run"
    ingest(cat, run)
    windows = segment(run, segment_params())
    # Of the 7 windows (0, 2, ..., 12 s), those at 4-8 s and 6-10 s are silent; 2-6 and 8-12 are half loud.
    assert [w.start_s for w in windows] == [0.0, 2.0, 8.0, 10.0, 12.0]
    assert [w.row for w in windows] == list(range(5))
    assert load_features(run, windows[0].track_id, "mfcc").shape[0] == 5
    # The silent windows would be kept with a threshold below digital silence's -240 dBFS.
    assert len(segment(run, segment_params(silence_db=-300.0))) == 7


def test_rerun_reuses_every_track(mini_run_copy: MiniRun) -> None:
    run = mini_run_copy.run_dir
    before = _run_files(run)
    windows = segment(run, mini_run_copy.params, artist="demo artist")
    assert windows == mini_run_copy.windows
    assert _run_files(run) == before
    # The worker count is not part of the settings hash.
    segment(run, {**mini_run_copy.params, "workers": 2}, artist="demo artist")
    assert _run_files(run) == before


def test_deleted_shard_is_regenerated_and_only_for_its_track(mini_run_copy: MiniRun) -> None:
    run = mini_run_copy.run_dir
    victim = mini_run_copy.tracks[0].id
    shard = run / "features" / f"{victim}.mfcc.npy"
    original = sha256_file(shard)
    before = _run_files(run)
    shard.unlink()
    windows = segment(run, mini_run_copy.params, artist="demo artist")
    assert windows == mini_run_copy.windows
    assert shard.exists() and sha256_file(shard) == original  # recomputed bit for bit
    after = _run_files(run)
    for name, stamp in before.items():
        if victim not in name:
            assert after[name] == stamp, f"{name} was rewritten"


def test_corrupted_shard_is_regenerated(mini_run_copy: MiniRun) -> None:
    run = mini_run_copy.run_dir
    victim = mini_run_copy.tracks[1].id
    shard = run / "features" / f"{victim}.logmel.npy"
    original = shard.read_bytes()
    shard.write_bytes(original[:-16])  # truncated
    segment(run, mini_run_copy.params, artist="demo artist")
    assert shard.read_bytes() == original


def test_changed_settings_recompute(mini_run_copy: MiniRun) -> None:
    run = mini_run_copy.run_dir
    params = {**mini_run_copy.params, "hop_s": 3.0}
    windows = segment(run, params, artist="demo artist")
    for t in mini_run_copy.tracks:
        n = len(load_track_audio(run, t.id))
        ws = [w for w in windows if w.track_id == t.id]
        assert len(ws) == math.floor((n - 4 * SEGMENT_SR) / (3 * SEGMENT_SR)) + 1
        assert load_features(run, t.id, "stft").shape[0] == len(ws)
    assert load_rows(run / "windows.jsonl", Window) == windows


def test_tracks_shorter_than_the_window_raise(tmp_path: Path) -> None:
    cat = tmp_path / "cat"
    cat.mkdir()
    for i in range(2):
        sf.write(cat / f"s{i}.wav", synth_track(3.0, 16000, seed=50 + i), 16000)
    run = tmp_path / "run"
    ingest(cat, run)
    with pytest.raises(StageInputError, match=r"segment\.window_s=4\.0"):
        segment(run, segment_params())
    assert read_jsonl(run / "windows.jsonl") == []


def test_missing_or_empty_tracks_manifest_raises(tmp_path: Path) -> None:
    with pytest.raises(StageInputError, match="tracks.jsonl"):
        segment(tmp_path, segment_params())
    (tmp_path / "tracks.jsonl").write_text("")
    with pytest.raises(StageInputError, match="lists no tracks"):
        segment(tmp_path, segment_params())


def test_no_temporary_files_are_left(mini_run: MiniRun) -> None:
    leftovers = [p for p in mini_run.run_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    assert os.listdir(mini_run.run_dir / "features")


@pytest.mark.slow  # two spawned processes each import torch and librosa (~8-17 s on 2 cores)
def test_parallel_workers_give_the_same_files(mini_run_copy: MiniRun) -> None:
    run = mini_run_copy.run_dir
    before = {p.name: sha256_file(p) for p in sorted((run / "features").iterdir())}
    for record in (run / "segment").iterdir():
        record.unlink()  # forget every track: all are redone, in two processes
    windows = segment(run, {**mini_run_copy.params, "workers": 2}, artist="demo artist")
    assert windows == mini_run_copy.windows
    assert {p.name: sha256_file(p) for p in sorted((run / "features").iterdir())} == before


@pytest.mark.parametrize("names", [[], ["mfcc"]])
def test_segment_features_writes_only_the_named_shards(mini_run: MiniRun, tmp_path: Path, names: list[str]) -> None:
    """segment.features: unwritten shards are a clear error to read; the outlier check needs none of them."""
    import shutil

    from stylecraft.data.outliers import OutlierParams, check_run

    run = tmp_path / "run"
    shutil.copytree(mini_run.run_dir, run, ignore=shutil.ignore_patterns("features", "segment"))
    windows = segment(run, segment_params(features=names), artist="demo artist")
    assert windows == mini_run.windows  # the same windows and captions
    t = mini_run.tracks[0].id
    assert sorted(p.name for p in run.glob("features/*.npy")) == sorted(
        f"{tr.id}.{n}.npy" for tr in mini_run.tracks for n in names)
    for n in FEATURE_NAMES:
        if n in names:
            assert load_features(run, t, n).shape[0] == sum(w.track_id == t for w in windows)
        else:
            with pytest.raises(StageInputError, match=f"add {n} to segment.features"):
                load_features(run, t, n)
    report = check_run(run, windows, SEGMENT_SR, OutlierParams(), progress=False)
    assert report.n_windows == len(windows) and (run / "outliers" / "report.json").exists()
    # The rerun reuses every track: the records know which shards they wrote.
    def files() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(run)): _stamp(p) for p in sorted(run.glob("*/*.npy")) + sorted(run.glob("segment/*"))}

    before = files()
    assert segment(run, segment_params(features=names), artist="demo artist") == windows
    assert files() == before


def test_unknown_segment_feature_is_a_config_error() -> None:
    from stylecraft.config import load_recipe
    from stylecraft.errors import ConfigError

    with pytest.raises(ConfigError, match="segment.features: unknown feature 'chroma'"):
        load_recipe(None, ["catalogue=x", "segment.features=[mfcc,chroma]"])
