"""Long files are ingested in blocks: same description as decoding them whole, bounded memory."""

import numpy as np
import pytest
import soundfile as sf

from stylecraft.audio.loudness import LoudnessMeter, integrated_loudness
from stylecraft.data import ingest as ingest_mod
from stylecraft.data.demo import synth_track


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_meter_in_blocks_equals_whole(sr):
    audio = synth_track(7.3, sr, seed=sr % 7, channels=2)
    meter = LoudnessMeter(sr, 2)
    for start in range(0, audio.shape[0], 12345):  # blocks that do not align with 100 ms steps
        meter.add(audio[start : start + 12345])
    assert meter.result() == pytest.approx(integrated_loudness(audio, sr), abs=0.01)


def test_meter_silence_and_short():
    m = LoudnessMeter(16000, 1)
    m.add(np.zeros((16000, 1), np.float32))
    assert m.result() == float("-inf")
    m = LoudnessMeter(16000, 1)
    m.add(np.ones((3000, 1), np.float32))
    assert m.result() == float("-inf")


def test_streamed_inspection_matches_whole_decoding(tmp_path, monkeypatch):
    sr = 44100
    files = {
        "music.flac": synth_track(9.0, sr, seed=3, channels=2),
        "one-silent-channel.wav": np.stack([synth_track(4.0, sr, seed=4, channels=1)[:, 0], np.zeros(4 * sr)], axis=1),
        "dc.wav": np.full((3 * sr, 2), 0.25, np.float32),
        "silent.wav": np.zeros((3 * sr, 1), np.float32),
    }
    nan = synth_track(3.0, sr, seed=5, channels=1)
    nan[-10] = np.nan
    for name, audio in files.items():
        sf.write(tmp_path / name, audio, sr, subtype="FLOAT" if name.endswith(".wav") else "PCM_16")
    sf.write(tmp_path / "nan.wav", nan, sr, subtype="FLOAT")
    # With the near-duplicate fingerprint and the caption analysis, which read the first EXCERPT_S seconds.
    monkeypatch.setattr(ingest_mod, "EXCERPT_S", 6.0)
    whole = {p.name: ingest_mod.inspect_file(str(p), 1.0, True, True) for p in sorted(tmp_path.iterdir())}
    monkeypatch.setattr(ingest_mod, "STREAM_BYTES", 0)
    monkeypatch.setattr(ingest_mod, "BLOCK_S", 0.77)
    streamed = {p.name: ingest_mod.inspect_file(str(p), 1.0, True, True) for p in sorted(tmp_path.iterdir())}
    assert streamed.keys() == whole.keys()
    for name in whole:
        a, b = whole[name], streamed[name]
        if "reject" in a:
            assert b == a, name
        else:
            exact = ("loudness_lufs", "print", "analysis")
            assert {k: v for k, v in a.items() if k not in exact} == {k: v for k, v in b.items() if k not in exact}
            assert b["loudness_lufs"] == pytest.approx(a["loudness_lufs"], abs=0.01)
            # Resampled in blocks vs whole: the same excerpt up to the resampler's rounding.
            frames = 1 + int(round(min(6.0, a["duration_s"]) * 10))  # 10 frames per second, centred frames
            assert a["print"].shape == b["print"].shape == (32, frames)
            assert np.abs(a["print"].astype(np.float32) - b["print"].astype(np.float32)).max() < 0.05
            assert a["analysis"][1] == b["analysis"][1]
            assert (a["analysis"][0] is None) == (b["analysis"][0] is None)
    assert "reject" not in whole["one-silent-channel.wav"]
    assert "DC" in whole["dc.wav"]["reject"] and "NaN" in whole["nan.wav"]["reject"]


def test_long_track_path_of_segment_matches_whole_decoding(tmp_path, monkeypatch):
    """Segment's block-wise path for long tracks gives the windows and features of the in-memory path."""
    from stylecraft.data import segment as seg_mod
    from stylecraft.data.ingest import ingest

    cat = tmp_path / "cat"
    cat.mkdir()
    sf.write(cat / "a.flac", synth_track(21.0, 22050, seed=8, channels=2), 22050)
    params = {"sample_rate": 16000, "window_s": 4.0, "hop_s": 2.0, "silence_db": -50.0, "loudness_lufs": -18.0,
              "n_fft": 1024, "hop_length": 512, "n_mels": 64, "n_mfcc": 20, "workers": 1}
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    for run in (whole, streamed):
        ingest(cat, run, valid_fraction=0.0, workers=1)
    seg_mod.segment(whole, params)
    monkeypatch.setattr(seg_mod, "STREAM_BYTES", 0)
    monkeypatch.setattr(seg_mod, "BLOCK_S", 1.3)
    seg_mod.segment(streamed, params)
    tid = next((whole / "segment").glob("*.json")).stem
    a, b = (np.load(r / "audio" / f"{tid}.npy").astype(np.int32) for r in (whole, streamed))
    assert a.shape == b.shape and np.abs(a - b).max() <= 40  # resampler in blocks vs whole: tiny differences
    import json

    ra, rb = (json.loads((r / "segment" / f"{tid}.json").read_text()) for r in (whole, streamed))
    assert ra["starts"] == rb["starts"] and ra["features"] == rb["features"] == ["mfcc", "logmel", "stft"]
    assert abs(ra["gain_db"] - rb["gain_db"]) < 0.05
    for name in ("mfcc", "logmel"):
        fa, fb = (np.load(r / "features" / f"{tid}.{name}.npy").astype(np.float32) for r in (whole, streamed))
        assert fa.shape == fb.shape and np.abs(fa - fb).max() < 0.5
