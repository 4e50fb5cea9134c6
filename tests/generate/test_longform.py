"""Long-form windowed continuation: exact length, verbatim overlaps, bounded windows, seed riffs."""

import numpy as np
import pytest
import torch

from stylecraft.errors import StylecraftError
from stylecraft.generate import codes as gc
from stylecraft.generate.longform import LongForm, Window, plan
from stylecraft.generate.sample import SamplingParams, generate_piece_codes

# Tiny model: 50 frames/s. A 0.2 s window is 10 frames, 0.06 s of context 3 frames.
LF = LongForm(window_s=0.2, context_s=0.06)


def test_plan_covers_the_piece_with_bounded_windows():
    windows = plan(30, 10, 3)
    assert windows[0] == Window(0, 0, 10)
    assert all(w.prompt_frames + w.new_frames <= 10 for w in windows)
    assert sum(w.new_frames for w in windows) == 30
    for prev, w in zip(windows, windows[1:], strict=False):
        assert w.start_frame == prev.end_frame - 3 and w.prompt_frames == 3
    seeded = plan(30, 10, 3, seed_frames=5)
    assert seeded[0] == Window(2, 3, 7) and seeded[-1].end_frame == 30


def test_three_window_piece_has_exact_length_and_verbatim_overlaps(tiny, monkeypatch):
    calls = []
    real = gc.sample_codes

    def spy(bundle, text, new_frames, *, prompt=None, **kw):
        out = real(bundle, text, new_frames, prompt=prompt, **kw)
        calls.append((prompt.clone(), out.clone()))
        return out

    monkeypatch.setattr(gc, "sample_codes", spy)
    params = SamplingParams(duration_s=0.6, top_k=50, seed=2)  # 3 windows' worth (30 frames)
    piece = generate_piece_codes(tiny, ["demo", "other"], params, LF)
    assert piece.codes.shape == (2, 4, 30)
    assert len(piece.windows) == len(calls) == 4  # 10 + 7 + 7 + 6 new frames, each window within 10
    for w, (prompt, out) in zip(piece.windows, calls, strict=True):
        assert prompt.shape[-1] == w.prompt_frames and out.shape[-1] == w.prompt_frames + w.new_frames <= 10
        # the prompt is the piece's own codes, reproduced verbatim at the window's start...
        assert torch.equal(out[..., : w.prompt_frames], piece.codes[..., w.start_frame : w.start_frame + w.prompt_frames])
        # ...and the window's new frames are what follows in the piece
        assert torch.equal(out, piece.codes[..., w.start_frame : w.end_frame])
    audio = gc.decode_codes(tiny, piece.codes)
    assert audio.shape == (2, 1, 30 * 640) and np.isfinite(audio).all()


def test_long_form_is_seeded(tiny):
    params = SamplingParams(duration_s=0.3, top_k=50, seed=5)
    a = generate_piece_codes(tiny, ["x"], params, LF).codes
    b = generate_piece_codes(tiny, ["x"], params, LF).codes
    c = generate_piece_codes(tiny, ["x"], SamplingParams(duration_s=0.3, top_k=50, seed=6), LF).codes
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_seed_riff_codes_open_the_long_form_piece(tiny):
    from stylecraft.data.demo import synth_track

    riff = synth_track(0.3, 32000, seed=4, channels=1)[:, 0]  # 15 frames
    seed_codes = gc.encode_audio(tiny, riff[None])
    piece = generate_piece_codes(tiny, ["demo"], SamplingParams(duration_s=0.7, top_k=50), LF, seed_riff=riff)
    assert piece.seed_frames == 15 and piece.codes.shape[-1] == 35
    assert torch.equal(piece.codes[..., :15], seed_codes)  # the seed part is preserved verbatim
    assert piece.windows[0] == Window(12, 3, 7)  # the first window continues the riff's last context


def test_chunked_decode_matches_one_pass(tiny):
    codes = torch.randint(0, 256, (1, 4, 40))
    whole = gc.decode_codes(tiny, codes, chunk_frames=1000)
    chunked = gc.decode_codes(tiny, codes, chunk_frames=7, context_frames=8)
    assert whole.shape == chunked.shape == (1, 1, 40 * 640)
    assert np.abs(whole - chunked).max() < 1e-3 * np.abs(whole).max()


@pytest.mark.parametrize(
    ("lf", "match"),
    [
        (LongForm(window_s=0.0), "--window must be > 0"),
        (LongForm(window_s=1.0, context_s=1.0), "--context must be >= 0 and shorter than --window"),
        (LongForm(window_s=1.0, context_s=-1.0), "--context must be"),
        (LongForm(window_s=60.0, context_s=10.0), "needs 3004 decoder positions but the model has 2048"),
    ],
)
def test_bad_long_form_values(tiny, lf, match):
    with pytest.raises(StylecraftError, match=match):
        lf.validate(tiny)
