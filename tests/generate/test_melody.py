"""Melody conditioning: chroma as the extractor computes it, the tiny-melody preset, clear refusals."""

import numpy as np
import pytest
import soundfile as sf
import torch

from stylecraft.errors import StylecraftError
from stylecraft.generate import melody as mel
from stylecraft.generate.longform import LongForm
from stylecraft.generate.sample import SamplingParams, generate, generate_piece_codes

SR = 32000


def _tone(freqs, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def test_chroma_marks_the_played_pitch_class():
    a4, c5 = _tone([440.0], 2.0), _tone([523.25], 2.0)
    ch = mel.chroma([a4, c5], SR)
    assert ch.shape == (2, 2 * SR // mel.HOP_LENGTH + 1, 12)
    assert torch.equal(ch.sum(-1), torch.ones(2, ch.shape[1]))  # one-hot per frame
    # the extractor's filter bank starts at C (start_at_c_chroma): A -> 9, C -> 0
    assert ch[0, 2:-2].argmax(-1).eq(9).all() and ch[1, 2:-2].argmax(-1).eq(0).all()


def test_chroma_follows_the_extractor_steps():
    """The spectrogram step equals a direct framing of the same definition (Hann, reflect, L2-normalised)."""
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    ch = mel.chroma([x], SR)[0]
    padded = np.pad(x, (mel.N_FFT // 2, mel.N_FFT // 2), mode="reflect")
    window = np.hanning(mel.N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window
    frames = np.stack([padded[i : i + mel.N_FFT] for i in range(0, padded.shape[0] - mel.N_FFT + 1, mel.HOP_LENGTH)])
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 / (window**2).sum()  # [frames, bins]
    raw = power @ mel.chroma_filters(SR).numpy().T.astype(np.float64)  # [frames, 12]
    assert np.array_equal(ch.argmax(-1).numpy(), raw.argmax(-1))


def test_short_and_long_melodies_are_padded_and_truncated_like_the_extractor():
    assert mel.chroma([np.zeros(1000, np.float32)], SR).shape == (1, mel.N_FFT // mel.HOP_LENGTH + 1, 12)
    assert mel.chroma([np.zeros(31 * SR, np.float32)], SR).shape[1] == 30 * SR // mel.HOP_LENGTH + 1


def test_melody_changes_output_and_seed_repeats_it(tiny_melody, tmp_path):
    assert type(tiny_melody.model).__name__ == "MusicgenMelodyForConditionalGeneration"
    a, b = _tone([220.0, 440.0]), _tone([311.1, 622.2])
    params = SamplingParams(duration_s=0.3, top_k=50, seed=1)
    lf = LongForm(window_s=0.2, context_s=0.06)
    out_a = generate_piece_codes(tiny_melody, ["x"], params, lf, melody=a).codes
    out_a2 = generate_piece_codes(tiny_melody, ["x"], params, lf, melody=a).codes
    out_b = generate_piece_codes(tiny_melody, ["x"], params, lf, melody=b).codes
    assert torch.equal(out_a, out_a2)
    assert not torch.equal(out_a, out_b)
    path = tmp_path / "melody.wav"
    sf.write(path, a, SR)
    rows = generate(tiny_melody, tmp_path / "out", ["x"], params, melody=path, long_form=lf)
    assert rows[0]["melody"]["sha256"] and rows[0]["melody"]["file"] == str(path)


def test_melody_is_refused_for_other_models_and_missing_files(tiny, tiny_melody, tmp_path):
    path = tmp_path / "m.wav"
    sf.write(path, _tone([440.0]), SR)
    with pytest.raises(StylecraftError, match="--melody needs a melody model; 'tiny' is a musicgen model"):
        generate(tiny, tmp_path / "o", ["x"], SamplingParams(duration_s=0.2), melody=path)
    with pytest.raises(StylecraftError, match="melody file .* does not exist"):
        generate(tiny_melody, tmp_path / "o", ["x"], SamplingParams(duration_s=0.2), melody=tmp_path / "none.wav")
