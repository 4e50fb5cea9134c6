"""The style reranker: nearness to the artist's sound and repetition, chosen over likelihood on request."""

import numpy as np
import pytest
import soundfile as sf
import torch

from stylecraft.data.demo import synth_track
from stylecraft.errors import StylecraftError
from stylecraft.generate import rerank
from stylecraft.generate.sample import SamplingParams, best_of_codes, codes_to_audio
from stylecraft.models.loading import load_model

SR = 16000


@pytest.fixture(scope="module")
def artist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("artist")
    for seed in range(3):
        sf.write(folder / f"track-{seed}.wav", synth_track(8.0, SR, seed=seed, channels=1), SR)
    return folder


def test_repetition_tells_a_loop_from_fresh_material():
    g = torch.Generator().manual_seed(0)
    fresh = torch.randint(0, 1024, (4, 200), generator=g)
    loop = fresh[:, :25].repeat(1, 8)
    assert rerank.repetition(fresh) < 0.01
    assert rerank.repetition(loop) > 0.8
    assert rerank.repetition(torch.zeros(4, 200, dtype=torch.long)) > 0.95  # a drone


def test_style_distance_prefers_the_artist_to_a_drone(artist):
    ref = rerank.style_reference(str(artist))
    assert ref.clips == 3 and ref.spread > 0
    same_style = synth_track(8.0, SR, seed=7, channels=1)
    t = np.arange(8 * SR) / SR
    drone = (0.3 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    near, far = rerank.style_distance(same_style, SR, ref), rerank.style_distance(drone, SR, ref)
    assert near < 2.0 < far  # an unseen track of the artist is about as far as the artist's own
    assert near < far / 3


def test_best_of_style_keeps_the_highest_style_score(artist):
    bundle = load_model("tiny")
    params = SamplingParams(duration_s=1.0, top_k=50, seed=3, best_of=3, rerank="style", style_reference=str(artist))
    params.validate()
    piece = best_of_codes(bundle, ["demo artist", "demo artist, 100 bpm"], params)
    ref = rerank.style_reference(str(artist))
    for row in range(2):
        scores = piece.candidate_scores[row]
        assert piece.kept[row] == int(np.argmax(scores))
        # The kept codes score what the record says when scored on their own.
        audio = codes_to_audio(bundle, piece.codes[row : row + 1], params.duration_s)[0]
        assert rerank.style_score(audio, bundle.sample_rate, piece.codes[row], ref) == pytest.approx(max(scores), rel=1e-5)  # decoded alone vs in a batch


def test_reranker_settings_are_checked():
    with pytest.raises(StylecraftError, match="--rerank must be one of"):
        SamplingParams(best_of=2, rerank="loudest").validate()
    with pytest.raises(StylecraftError, match="needs --style-reference"):
        SamplingParams(best_of=2, rerank="style").validate()
    with pytest.raises(StylecraftError, match="is not a folder"):
        rerank.style_reference("/nonexistent/artist")
