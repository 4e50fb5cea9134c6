"""Tests for the augment stage: librosa-equal pitch shift / time stretch and the variant shards."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pytest

from stylecraft.config import AugmentConfig
from stylecraft.data import augment as aug
from stylecraft.data.demo import synth_track
from stylecraft.data.manifest import Variant, load_rows
from stylecraft.data.segment import load_track_audio
from stylecraft.errors import StageInputError

SR = 16000
MiniRun = Any  # tests/conftest.py's MiniRun: catalogue, run_dir, tracks, windows, params


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    assert reference.shape == test.shape
    ref = reference.astype(np.float64)
    err = ref - test.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum(err**2)))


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """3 s of demo music as float64 (mono, 16 kHz)."""
    return synth_track(3.0, SR, seed=0, channels=1)[:, 0].astype(np.float64)


# librosa is compared through its float64 path: for float32 input librosa's phase vocoder
# accumulates the phase in float32, which drifts over the frames (~60 dB SNR against its own
# float64 result), while the implementation under test accumulates phase in float64.


@pytest.mark.parametrize("semitones", [-2.0, -1.0, 1.0, 2.0, 0.5])
def test_pitch_shift_matches_librosa(clip: np.ndarray, semitones: float) -> None:
    ours = aug.pitch_shift(clip, SR, semitones)
    ref = librosa.effects.pitch_shift(clip, sr=SR, n_steps=semitones, res_type="soxr_hq")
    assert ours.shape == clip.shape and ours.dtype == np.float32
    assert snr_db(ref, ours) >= 45.0


@pytest.mark.parametrize("rate", [0.8, 0.9, 1.1, 1.25])
def test_time_stretch_matches_librosa(clip: np.ndarray, rate: float) -> None:
    ours = aug.time_stretch(clip, rate)
    ref = librosa.effects.time_stretch(clip, rate=rate)
    assert ours.shape == ref.shape == (int(round(len(clip) / rate)),)
    assert snr_db(ref, ours) >= 45.0


def test_shift_really_changes_pitch() -> None:
    t = np.arange(2 * SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    up = aug.pitch_shift(tone, SR, 12.0)
    middle = up[SR // 2 : -SR // 2]  # 1 s: rfft bins are 1 Hz apart
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    assert np.argmax(spectrum) * SR / len(middle) == pytest.approx(880.0, abs=2.0)


def test_shared_spectrum_gives_the_same_shift(clip: np.ndarray) -> None:
    import torch

    y = clip.astype(np.float32)
    source = aug.VocoderSource(aug._stft(torch.from_numpy(y)))
    for semitones in (-1.0, 2.0):  # one source serves several shifts
        np.testing.assert_allclose(aug.pitch_shift(y, SR, semitones, source), aug.pitch_shift(y, SR, semitones), atol=1e-6)


@pytest.mark.parametrize("rate", [0.9, 1.1])
def test_stretch_window_keeps_length_and_reads_the_right_span(rate: float) -> None:
    track = synth_track(6.0, SR, seed=2, channels=1)[:, 0]
    length, start = 2 * SR, SR
    out = aug.stretch_window(track, start, length, rate)
    assert out.shape == (length,) and out.dtype == np.float32
    span = int(round(length * rate))
    ref = librosa.effects.time_stretch(track[start : start + span].astype(np.float64), rate=span / length)
    assert snr_db(ref[:length], out) >= 45.0


def test_stretch_window_at_the_track_end_moves_back_and_stays_full() -> None:
    track = synth_track(6.0, SR, seed=3, channels=1)[:, 0]
    length = 2 * SR
    start = len(track) - length  # the last window: a 1.1x span would run past the end
    out = aug.stretch_window(track, start, length, 1.1)
    assert out.shape == (length,)
    span = int(round(length * 1.1))
    expected = aug.time_stretch(track[len(track) - span :], span / length)
    np.testing.assert_allclose(out, expected[:length], atol=1e-6)
    tail = out[-SR // 4 :]
    assert float(np.sqrt(np.mean(tail**2))) > 1e-3  # no zero padding at the end


def test_stretch_window_on_a_track_shorter_than_the_span_pads_with_zeros() -> None:
    track = synth_track(1.0, SR, seed=4, channels=1)[:, 0]
    out = aug.stretch_window(track, 0, SR, 1.1)
    assert out.shape == (SR,)
    assert np.all(out[len(track) :] == 0.0)


def test_plan_variants_lists_every_combination() -> None:
    assert aug.plan_variants([-1, 2], [0.9]) == [("pitch", -1.0), ("pitch", 2.0), ("stretch", 0.9)]


# ------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------

AUG_PARAMS = dataclasses.asdict(
    AugmentConfig(pitch_semitones=[-1.0, 2.0], stretch_rates=[1.1], seed=7, workers=1)
)
N_VARIANTS = 3


@pytest.fixture(scope="module")
def augmented(mini_run: MiniRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[MiniRun, list[Variant]]:
    import shutil

    run_dir = tmp_path_factory.mktemp("augmented") / "run"
    shutil.copytree(mini_run.run_dir, run_dir)
    run = dataclasses.replace(mini_run, run_dir=run_dir)
    return run, aug.augment(run_dir, AUG_PARAMS, mini_run.params["sample_rate"])


def test_one_row_per_train_window_and_variant(augmented: tuple[MiniRun, list[Variant]]) -> None:
    run, variants = augmented
    assert load_rows(run.run_dir / "variants.jsonl", Variant) == variants
    train = [w for w in run.windows if w.split == "train"]
    assert any(w.split == "valid" for w in run.windows)  # so "only train" means something
    assert len(variants) == len(train) * N_VARIANTS
    pairs = {(v.window_id, v.kind, v.value) for v in variants}
    expected = {(w.id, k, v) for w in train for k, v in [("pitch", -1.0), ("pitch", 2.0), ("stretch", 1.1)]}
    assert pairs == expected
    windows = {w.id: w for w in run.windows}
    for v in variants:
        w = windows[v.window_id]
        assert v.split == "train" and v.track_id == w.track_id
        assert v.caption.startswith("demo artist style")  # the rewritten parts: test_variant_captions_*
        assert v.seed == 7
        assert v.id.startswith(f"{w.id}-{v.kind}")
    assert len({v.id for v in variants}) == len(variants)


def _with_caption(mini_run: MiniRun, run_dir: Path, caption: str) -> None:
    """A copy of the mini run whose windows all carry ``caption``."""
    import shutil

    from stylecraft.artifacts import read_jsonl, write_jsonl

    shutil.copytree(mini_run.run_dir, run_dir)
    rows = read_jsonl(run_dir / "windows.jsonl")
    write_jsonl(run_dir / "windows.jsonl", [{**r, "caption": caption} for r in rows])


# Expected captions written out by hand: A minor up a whole tone is B minor, down a semitone G# minor;
# librosa's time_stretch at rate r plays r times faster, so 120 bpm at 0.9 is 108 bpm and at 1.1 is 132 bpm.
CAPTION_CASES = {
    ("pitch", -1.0): "demo artist style, 120 bpm, G# minor",
    ("pitch", 2.0): "demo artist style, 120 bpm, B minor",
    ("stretch", 0.9): "demo artist style, 108 bpm, A minor",
    ("stretch", 1.1): "demo artist style, 132 bpm, A minor",
}


def test_variant_captions_follow_the_shift_and_the_stretch(mini_run: MiniRun, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _with_caption(mini_run, run, "demo artist style, 120 bpm, A minor")
    params = dataclasses.asdict(AugmentConfig(pitch_semitones=[-1.0, 2.0], stretch_rates=[0.9, 1.1], workers=1))
    variants = aug.augment(run, params, mini_run.params["sample_rate"])
    assert {(v.kind, v.value) for v in variants} == set(CAPTION_CASES)
    for v in variants:
        assert v.caption == CAPTION_CASES[(v.kind, v.value)], v.id
    assert load_rows(run / "variants.jsonl", Variant) == variants


def test_shards_hold_one_row_per_variant(augmented: tuple[MiniRun, list[Variant]]) -> None:
    run, variants = augmented
    sr = run.params["sample_rate"]
    samples = int(run.params["window_s"] * sr)
    train_tracks = {v.track_id for v in variants}
    valid_tracks = {t.id for t in run.tracks} - train_tracks
    assert valid_tracks and not any(list((run.run_dir / "variants").glob(f"{t}.*")) for t in valid_tracks)
    for tid in train_tracks:
        rows = [v for v in variants if v.track_id == tid]
        assert aug.load_variant_audio(run.run_dir, tid).shape == (len(rows), samples)
        for name in {v.shard for v in rows}:
            shard = aug.load_variant_shard(run.run_dir, name)
            in_shard = [v for v in rows if v.shard == name]
            assert shard.shape == (len(in_shard), samples) and shard.dtype == np.int16
            assert sorted(v.row for v in in_shard) == list(range(len(in_shard)))
        # Spot-check one pitch row against a fresh render of its window.
        v = next(v for v in rows if v.kind == "pitch" and v.value == 2.0)
        w = next(w for w in run.windows if w.id == v.window_id)
        start = int(round(w.start_s * sr))
        y = load_track_audio(run.run_dir, tid)[start : start + samples]
        expected = np.round(np.clip(aug.pitch_shift(y, sr, 2.0), -1, 1) * 32767).astype(np.int16)
        got = aug.load_variant_shard(run.run_dir, v.shard)[v.row]
        assert np.max(np.abs(got.astype(np.int32) - expected)) <= 1
        assert np.abs(got).max() > 1000  # not silence


def test_tracks_split_into_chunks_keep_every_variant(
    augmented: tuple[MiniRun, list[Variant]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 2 windows per chunk a track spans several shards; rows still point at the right audio."""
    import shutil

    src, first = augmented
    run = tmp_path / "run"
    shutil.copytree(src.run_dir, run)
    for p in (run / "variants").iterdir():
        p.unlink()
    monkeypatch.setattr(aug, "CHUNK_WINDOWS", 2)
    chunked = aug.augment(run, AUG_PARAMS, src.params["sample_rate"])
    assert [v.id for v in chunked] == [v.id for v in first]
    assert len({v.shard for v in chunked}) > len({v.shard for v in first})
    by_id = {v.id: v for v in first}
    for v in chunked:
        a = aug.load_variant_shard(run, v.shard)[v.row]
        b = aug.load_variant_shard(src.run_dir, by_id[v.id].shard)[by_id[v.id].row]
        assert np.array_equal(a, b)


def test_rerun_is_a_no_op(augmented: tuple[MiniRun, list[Variant]]) -> None:
    run, variants = augmented
    shards = sorted((run.run_dir / "variants").glob("*.npy"))
    stamps = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in shards]
    again = aug.augment(run.run_dir, AUG_PARAMS, run.params["sample_rate"])
    assert again == variants
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in shards] == stamps


def test_changed_settings_rerender(augmented: tuple[MiniRun, list[Variant]], tmp_path: Path) -> None:
    import shutil

    src, first = augmented
    run = tmp_path / "run"
    shutil.copytree(src.run_dir, run)
    sr = src.params["sample_rate"]
    second = aug.augment(run, {**AUG_PARAMS, "pitch_semitones": [], "stretch_rates": [0.9]}, sr)
    assert {(v.kind, v.value) for v in second} == {("stretch", 0.9)}
    assert len(second) == len(first) // N_VARIANTS
    for tid in {v.track_id for v in second}:
        rows = [v for v in second if v.track_id == tid]
        assert aug.load_variant_audio(run, tid).shape[0] == len(rows)


def test_missing_windows_manifest_raises(tmp_path: Path) -> None:
    with pytest.raises(StageInputError, match="windows.jsonl"):
        aug.augment(tmp_path, AUG_PARAMS, SR)


@pytest.mark.parametrize("n", [320000, 288000, 352000, 5000, 2055, 1024])
def test_span_spectra_equal_a_fresh_stft_of_each_prefix(n: int) -> None:
    import torch

    rng = np.random.default_rng(1)
    track = (rng.standard_normal(400000) * 0.1).astype(np.float32)
    spectra = aug.SpanSpectra(track[:360000])
    fresh = aug.VocoderSource(aug._stft(torch.from_numpy(track[:n])))
    shared = spectra.source(track[:n])
    assert shared.n_frames == fresh.n_frames
    assert torch.equal(shared.mag, fresh.mag)
    assert torch.allclose(shared.dev, fresh.dev, atol=1e-6)


def test_stages_leave_torch_thread_count_as_it_was(augmented: tuple[MiniRun, list[Variant]], tmp_path: Path) -> None:
    import shutil

    import torch

    src, _ = augmented
    run = tmp_path / "run"
    shutil.copytree(src.run_dir, run)
    for p in (run / "variants").iterdir():
        p.unlink()
    before = torch.get_num_threads()
    aug.augment(run, {**AUG_PARAMS, "workers": 2}, src.params["sample_rate"])
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------------------------------
# How many variants: augment.enabled and augment.share
# ------------------------------------------------------------------------------------------

PLAN = [("pitch", -1.0), ("pitch", 1.0), ("stretch", 1.1)]
WINDOW_IDS = [f"t{t}-{i:04d}" for t in range(3) for i in range(7)]  # 21 windows


@pytest.mark.parametrize(("share", "total"), [(0.5, 21), (0.25, 7), (0.6, 32), (0.75, 63), (0.0, 0)])
def test_share_sets_the_number_of_variants(share: float, total: int) -> None:
    # total = round(21 * share / (1 - share)): 21, 7, 31.5 -> 32, 63 (every planned variant), 0.
    chosen = aug.select_variants(WINDOW_IDS, PLAN, share, seed=3)
    counts = [len(chosen[w]) for w in WINDOW_IDS]
    assert sum(counts) == total
    assert max(counts) - min(counts) <= 1  # spread evenly over windows
    assert all(len(set(v)) == len(v) and set(v) <= set(PLAN) for v in chosen.values())


def test_selection_is_seeded_and_per_window() -> None:
    a = aug.select_variants(WINDOW_IDS, PLAN, 0.5, seed=3)
    assert a == aug.select_variants(list(reversed(WINDOW_IDS)), PLAN, 0.5, seed=3)  # order-free
    assert a != aug.select_variants(WINDOW_IDS, PLAN, 0.5, seed=4)
    # At one variant per window, which one a window gets does not depend on the other windows.
    fewer = aug.select_variants(WINDOW_IDS[:5], PLAN, 0.5, seed=3)
    assert all(fewer[w] == a[w] for w in WINDOW_IDS[:5])
    assert len({tuple(v) for v in a.values()}) > 1  # not the same variant everywhere
    assert aug.select_variants(WINDOW_IDS, PLAN, None, seed=3) == {w: PLAN for w in WINDOW_IDS}


def test_share_above_what_the_plan_holds_is_refused() -> None:
    with pytest.raises(ValueError, match="variants per window"):
        aug.select_variants(WINDOW_IDS, PLAN, 0.8, seed=0)  # 4 per window, 3 planned
    from stylecraft.config import load_recipe
    from stylecraft.errors import ConfigError

    with pytest.raises(ConfigError, match=r"augment.share must be in \[0, 0.7500\]"):
        load_recipe(None, ["catalogue=x", "augment.pitch_semitones=[1]", "augment.stretch_rates=[0.9,1.1]",
                           "augment.share=0.8"])


def test_share_and_off_switch_reach_the_token_index(mini_run: MiniRun, tmp_path: Path) -> None:
    """Only the kept variants are rendered, tokenized and trained on; a smaller share leaves no stale rows."""
    import shutil

    from stylecraft.data.tokens import TokenDataset, tokenize
    from stylecraft.models.loading import load_model

    run = tmp_path / "run"
    shutil.copytree(mini_run.run_dir, run)
    sr = mini_run.params["sample_rate"]
    bundle = load_model("tiny")
    train_windows = sum(w.split == "train" for w in mini_run.windows)
    base = dataclasses.asdict(AugmentConfig(pitch_semitones=[-1.0, 2.0], stretch_rates=[1.1], seed=1, workers=1))
    for share, n_variants in ((0.5, train_windows), (0.25, round(train_windows / 3)), (None, 3 * train_windows)):
        variants = aug.augment(run, {**base, "share": share}, sr)
        assert len(variants) == n_variants
        tokenize(run, bundle, sr, batch_size=8)
        train = TokenDataset(run, "train")
        assert len(train) == train_windows + n_variants
        assert {r["id"] for r in train.rows if r["kind"] != "window"} == {v.id for v in variants}
        rendered = sum(len(json.loads(p.read_text())["variants"]) for p in (run / "variants").glob("*.json"))
        assert rendered == n_variants  # only the kept variants were rendered
    assert aug.augment(run, {**base, "enabled": False}, sr) == []
    tokenize(run, bundle, sr, batch_size=8)
    assert len(TokenDataset(run, "train")) == train_windows
