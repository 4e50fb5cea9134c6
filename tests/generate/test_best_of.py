"""Best-of-N reranking: the kept candidate has the top score, and scores are the model's likelihood."""

import pytest
import torch

from stylecraft.errors import StylecraftError
from stylecraft.generate import codes as gc
from stylecraft.generate.sample import (
    CANDIDATE_STRIDE,
    SamplingParams,
    best_of_codes,
    generate,
    generate_piece_codes,
)


def _transformers_mean_log_likelihood(bundle, prompt, codes):
    """-loss of transformers' own forward with labels: mean over codebooks of each codebook's mean NLL."""
    seq = gc.delayed_sequence(bundle, codes)  # [K, T + K]
    labels = seq[:, 1:].reshape(1, bundle.num_codebooks, -1).transpose(1, 2)  # [1, T + K - 1, K]; pads ignored
    with torch.no_grad():
        out = bundle.model(**gc.text_inputs(bundle, [prompt]), labels=labels)
    return -float(out.loss)


def test_kept_candidate_has_the_best_score_and_scores_are_the_likelihood(tiny):
    prompts = ["demo artist style", "x"]
    params = SamplingParams(duration_s=0.2, top_k=50, guidance_scale=3.0, seed=11, best_of=3)
    best = best_of_codes(tiny, prompts, params)
    assert best.candidate_seeds == [11 + c * CANDIDATE_STRIDE for c in range(3)]
    for i in range(len(prompts)):
        scores = best.candidate_scores[i]
        assert len(scores) == 3 and best.kept[i] == max(range(3), key=scores.__getitem__)
        assert best.log_likelihood is not None and float(best.log_likelihood[i]) == max(scores)
    # every candidate re-sampled alone from its seed: same codes as kept, score equal to transformers' loss
    for c, seed in enumerate(best.candidate_seeds):
        one = SamplingParams(duration_s=0.2, top_k=50, guidance_scale=3.0, seed=seed)
        cand = generate_piece_codes(tiny, prompts, one).codes
        for i, prompt in enumerate(prompts):
            ref = _transformers_mean_log_likelihood(tiny, prompt, cand[i : i + 1])
            assert best.candidate_scores[i][c] == pytest.approx(ref, abs=1e-5)
            if best.kept[i] == c:
                assert torch.equal(best.codes[i], cand[i])


def test_best_of_rows_record_all_scores(tiny, tmp_path):
    rows = generate(tiny, tmp_path, ["x"], SamplingParams(duration_s=0.2, best_of=2, seed=1), per_prompt=1)
    rec = rows[0]["best_of"]
    assert rec["n"] == 2 and len(rec["scores"]) == 2 and rec["kept"] == max(range(2), key=rec["scores"].__getitem__)
    assert "no guidance" in rec["score"]


def test_best_of_must_be_positive(tiny, tmp_path):
    with pytest.raises(StylecraftError, match="--best-of must be >= 1"):
        generate(tiny, tmp_path, ["x"], SamplingParams(duration_s=0.2, best_of=0))
