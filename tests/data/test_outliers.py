"""Outlier detector: injected noise and near-duplicate tracks are flagged, clean tracks are not."""

import json

import numpy as np
import pytest
import soundfile as sf

from stylecraft.artifacts import read_jsonl
from stylecraft.config import load_recipe
from stylecraft.data.demo import synth_track
from stylecraft.data.manifest import Window
from stylecraft.data.outliers import (
    DAMAGE_DIMS,
    EXTRA_DIMS,
    OutlierParams,
    damage,
    detect_outliers,
    find_duplicates,
    fingerprint,
    learned_window_features,
    track_pcm,
    track_scores,
    window_embeddings,
)
from stylecraft.pipeline import run_stage

SR = 22050


def _windows(track_sizes: dict[str, int]) -> list[Window]:
    return [
        Window(id=f"{t}-{i:04d}", track_id=t, split="train", start_s=2.0 * i, duration_s=4.0, rms_db=-20.0, row=i)
        for t, n in track_sizes.items()
        for i in range(n)
    ]


def _layout(n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows laid out like :func:`window_embeddings`: whitened features, then texture and damage."""
    extra = np.tile([0.5, 0.4, -1.0, 0.001, 0.0], (n, 1))  # coherent, unclipped, no dropouts
    return np.concatenate([rng.standard_normal((n, 100)), extra], axis=1)


def test_scores_on_known_embeddings():
    rng = np.random.default_rng(0)
    sizes = {f"t{i:02d}": 12 for i in range(12)} | {"far": 12}
    windows = _windows(sizes)
    emb = _layout(len(windows), rng)
    assert emb.shape[1] == 100 + EXTRA_DIMS
    coh, clip, drop = emb.shape[1] - EXTRA_DIMS, emb.shape[1] - DAMAGE_DIMS, emb.shape[1] - 1
    emb[-12:, :100] += 6.0  # a whole track elsewhere
    emb[5, :100] += 12.0  # one odd window in a clean track
    emb[24:36, coh] = 0.02  # t02: no spectral coherence, like noise
    emb[40, coh] = 0.01  # and one noise-like window in t03
    emb[48:60, clip] = 0.2  # t04: a fifth of its samples at the ceiling
    emb[60:72, drop] = 0.3  # t05: digital-zero gaps
    rep = detect_outliers(windows, emb, OutlierParams(), duplicates={"t01": "t00"})
    assert "far" in rep.flagged_tracks and "noise-like" in rep.flagged_tracks["t02"]
    assert rep.flagged_tracks["t04"].startswith("clipped") and rep.flagged_tracks["t05"].startswith("dropouts")
    assert "noise-like" in rep.flagged_windows["t03-0004"]
    assert rep.duplicates.get("t01") == "t00" and "t01" in rep.flagged_tracks
    assert "t00" not in rep.flagged_tracks  # of two copies only the later one is excluded
    assert "t00-0005" in rep.flagged_windows
    bad = ("far", "t01", "t02", "t04", "t05")
    assert not set(rep.flagged_tracks) - set(bad)
    clean_flagged = [w for w in rep.flagged_windows if w[:3] not in bad and w not in ("t00-0005", "t03-0004")]
    assert len(clean_flagged) <= 2


def test_damage_sees_clipping_and_dropouts_not_music():
    sr = 16000
    song = synth_track(12.0, sr, seed=7, channels=1).reshape(-1)
    song = 0.5 * song / np.max(np.abs(song))
    clean = damage(song, sr)
    assert clean[0] < 0.01 and clean[1] == 0.0
    assert damage(np.clip(song * 8.0, -1, 1), sr)[0] > 0.1  # overdriven by 18 dB
    gapped = song.copy()
    gapped[sr : 2 * sr] = 0.0  # one second of 12 lost
    assert damage(gapped, sr)[1] == pytest.approx(1 / 12, abs=1e-3)
    tiny = song.copy()
    tiny[sr : sr + 100] = 0.0  # shorter than 10 ms: a zero crossing region, not a dropout
    assert damage(tiny, sr)[1] == 0.0
    hi = np.repeat(song, 2)  # the same music at 32 kHz: 10 ms is 320 samples there
    hi[32000 : 32000 + 200] = 0.0  # 6 ms of zeros: still not a dropout
    assert damage(hi, 2 * sr)[1] == 0.0
    hi[64000 : 64000 + 400] = 0.0  # 12.5 ms: a dropout
    assert damage(hi, 2 * sr)[1] == pytest.approx(400 / hi.size, rel=0.05)


def test_track_score_sees_a_track_that_is_off_to_one_side():
    rng = np.random.default_rng(3)
    tids = [f"t{i:02d}" for i in range(20)]
    track_of = np.repeat(tids, 10)
    x = rng.standard_normal((200, 30))
    x[190:, 0] += 2.5  # the last track: each window plausible, all of them shifted the same way
    z = track_scores(x, track_of, tids)
    assert z.shape == (20,) and int(np.argmax(z)) == 19 and z[19] > 3.5


def test_fingerprints_match_edited_copies_only():
    sr = 16000
    song = synth_track(30.0, sr, seed=5, channels=1).reshape(-1)
    other = synth_track(30.0, sr, seed=6, channels=1).reshape(-1)
    import soxr

    copies = {
        "a-song": song,
        "b-trimmed-quiet": song[int(4.37 * sr) :] * 0.3,
        "c-resampled-noisy": soxr.resample(soxr.resample(song, sr, 22050), 22050, sr)
        + 0.01 * np.random.default_rng(0).standard_normal(song.shape[0]),
        "d-other": other,
    }
    dups = find_duplicates({k: fingerprint(v, sr) for k, v in copies.items()}, 0.9)
    assert dups == {"b-trimmed-quiet": "a-song", "c-resampled-noisy": "a-song"}


def test_too_few_tracks_is_a_note_not_a_guess():
    windows = _windows({"a": 5, "b": 5})
    rep = detect_outliers(windows, np.random.default_rng(1).standard_normal((10, 100 + EXTRA_DIMS)))
    assert rep.flagged_windows == {} and "fewer than" in rep.note


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    cat = tmp_path_factory.mktemp("outlier_cat")
    for i in range(7):
        sf.write(cat / f"song-{i}.flac", synth_track(16.0, SR, seed=100 + i, channels=1), SR)
    noise = np.random.default_rng(3).standard_normal(16 * SR) * 0.2
    sf.write(cat / "zz-noise.flac", noise, SR)
    copy = synth_track(16.0, SR, seed=100, channels=1)[int(0.9 * SR) :] * 0.6  # trimmed, quieter copy of song-0
    sf.write(cat / "song-0-copy.wav", copy, SR)
    return cat


def _run(cat, run, *extra):
    cfg = load_recipe(None, [f"catalogue={cat}", f"run_dir={run}", "stages=[ingest,segment]", "segment.sample_rate=16000",
                             "segment.window_s=4", "segment.hop_s=2", "segment.workers=1", "ingest.valid_fraction=0", *extra])
    run_stage("ingest", cfg)
    run_stage("segment", cfg)
    tracks = {r["id"]: r["path"].rsplit("/", 1)[-1] for r in read_jsonl(run / "tracks.jsonl")}
    return tracks, json.loads((run / "outliers" / "report.json").read_text())


def test_segment_stage_reports_injected_outliers(injected, tmp_path):
    run = tmp_path / "run"
    tracks, rep = _run(injected, run)
    flagged = {tracks[t] for t in rep["flagged_tracks"]}
    assert "zz-noise.flac" in flagged
    assert {"song-0.flac", "song-0-copy.wav"} & flagged  # one of the pair, as a duplicate
    assert not flagged - {"zz-noise.flac", "song-0.flac", "song-0-copy.wav"}
    assert (run / "outliers" / "report.png").stat().st_size > 1000
    # Report only by default: every window is still there.
    assert len(read_jsonl(run / "windows.jsonl")) == rep["n_windows"]
    stamp = json.loads((run / "stages" / "segment.json").read_text())
    assert "outliers/report.json" in stamp["outputs"]


def test_exclude_leaves_flagged_windows_out(injected, tmp_path):
    run = tmp_path / "run"
    tracks, rep = _run(injected, run, "outliers.exclude=true")
    kept = read_jsonl(run / "windows.jsonl")
    assert len(kept) == rep["n_windows"] - len(rep["flagged_windows"])
    assert not {w["id"] for w in kept} & set(rep["flagged_windows"])
    assert "zz-noise.flac" not in {tracks[w["track_id"]] for w in kept}


def test_fingerprint_in_chunks_is_exact(monkeypatch):
    from stylecraft.data import duplicates

    x = synth_track(12.0, 16000, seed=2, channels=1).reshape(-1)
    whole = fingerprint(x, 16000)
    monkeypatch.setattr(duplicates, "FP_CHUNK", 17)
    assert np.allclose(fingerprint(x, 16000), whole, atol=1e-4)  # float rounding of the FFT sizes only


def test_learned_window_features_average_the_rows_inside_each_window(injected, tmp_path, monkeypatch):
    from stylecraft.data import outliers
    from stylecraft.data.manifest import Window, load_rows
    from stylecraft.evaluate.embeddings import get_embedding

    run = tmp_path / "run"
    _run(injected, run, "outliers.embedding=musicnn-mtt-tiny")  # the stage runs with a learned embedding
    windows = load_rows(run / "windows.jsonl", Window)
    feats = learned_window_features(run, windows, 16000, "musicnn-mtt-tiny", progress=False)
    assert feats.shape == (len(windows), 32) and np.isfinite(feats).all()
    # Row k of a track covers [k, k + 1) x 2.992 s; a 4 s window at 2 s holds exactly row 1.
    emb = get_embedding("musicnn-mtt-tiny")
    w = next(w for w in windows if abs(w.start_s - 2.0) < 1e-6)
    rows = emb.embed(np.asarray(track_pcm(run, w.track_id), dtype=np.float32) / 32767.0, 16000)
    np.testing.assert_allclose(feats[windows.index(w)], rows[1], atol=1e-5)
    # Embedding a track a few rows at a time gives the same rows as embedding it whole.
    monkeypatch.setattr(outliers, "CHUNK_S", 4.0)
    np.testing.assert_allclose(learned_window_features(run, windows, 16000, "musicnn-mtt-tiny", progress=False), feats,
                               atol=1e-4)
    full = window_embeddings(run, windows[:3], 16000, progress=False, embedding="musicnn-mtt-tiny")
    assert full.shape == (3, 32 + EXTRA_DIMS)
