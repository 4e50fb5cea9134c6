"""Generation: exact durations, finite audio, seeds, continuation, files and manifest."""

import numpy as np
import pytest
import soundfile as sf

from stylecraft.artifacts import read_jsonl, sha256_file
from stylecraft.errors import StylecraftError
from stylecraft.generate.sample import SamplingParams, generate, generate_codes_audio
from stylecraft.models.loading import load_model


@pytest.fixture(scope="module")
def bundle():
    return load_model("tiny")


@pytest.mark.parametrize("duration", [0.5, 1.37, 2.0])
def test_finite_audio_of_asked_duration(bundle, duration):
    audio = generate_codes_audio(bundle, ["demo artist style", "other"], SamplingParams(duration_s=duration, seed=1))
    assert audio.shape == (2, round(duration * 32000))
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_seed_controls_sampling(bundle):
    p = SamplingParams(duration_s=1.0, seed=3)
    a = generate_codes_audio(bundle, ["x"], p)
    b = generate_codes_audio(bundle, ["x"], p)
    c = generate_codes_audio(bundle, ["x"], SamplingParams(duration_s=1.0, seed=4))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_continuation_of_seed_riff(bundle, tmp_path):
    from stylecraft.data.demo import synth_track

    riff = tmp_path / "riff.wav"
    sf.write(riff, synth_track(2.0, 44100, seed=5), 44100)  # other rate and stereo: resampled, mixed
    rows = generate(bundle, tmp_path / "out", ["demo"], SamplingParams(duration_s=3.0, seed_audio_s=1.0), seed_audio=riff)
    audio, sr = sf.read(tmp_path / "out" / rows[0]["file"])
    assert sr == 32000 and audio.shape == (96000,)
    assert rows[0]["seed_audio"] == str(riff)
    with pytest.raises(StylecraftError, match="not shorter than --duration"):
        generate(bundle, tmp_path / "o2", ["demo"], SamplingParams(duration_s=1.0, seed_audio_s=2.0), seed_audio=riff)


def test_files_and_manifest(bundle, tmp_path):
    params = SamplingParams(duration_s=1.0, temperature=0.9, top_k=50, top_p=0.95, guidance_scale=2.0, seed=7)
    rows = generate(bundle, tmp_path, ["demo artist style, 100 bpm", ""], params, per_prompt=2)
    assert len(rows) == 4
    manifest = read_jsonl(tmp_path / "generated.jsonl")
    assert [r["file"] for r in manifest] == [r["file"] for r in rows]
    for r in manifest:
        path = tmp_path / r["file"]
        assert path.suffix == ".flac" and sha256_file(path) == r["sha256"]
        assert r["params"]["top_k"] == 50 and r["params"]["guidance_scale"] == 2.0
        assert r["model"]["source"] == "preset:tiny"
        info = sf.info(path)
        assert info.samplerate == 32000 and info.frames == 32000
    assert len({r["file"] for r in rows}) == 4


def test_bad_sampling_values(bundle, tmp_path):
    for bad in (SamplingParams(duration_s=0), SamplingParams(temperature=0), SamplingParams(top_p=1.5)):
        with pytest.raises(StylecraftError):
            generate(bundle, tmp_path, ["x"], bad)
