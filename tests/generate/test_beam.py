"""Beam search over the delayed codebooks: greedy equivalence, never worse than greedy, exact top-k joints."""

import itertools
import json

import pytest
import torch
from cli_runner import run_cli

from stylecraft.errors import StylecraftError
from stylecraft.generate import beam
from stylecraft.generate import codes as gc
from stylecraft.generate.sample import SamplingParams, generate_piece_codes

PROMPTS = ["demo artist style, 90 bpm", "solo piano"]


def _transformers_greedy(bundle, prompts, new_frames, guidance, prompt_codes=None):
    """transformers' own greedy decoding (do_sample=False), codes captured before EnCodec."""
    text = gc.text_inputs(bundle, prompts)
    kwargs = {}
    if prompt_codes is not None:
        kwargs["decoder_input_ids"] = prompt_codes.reshape(-1, prompt_codes.shape[-1])
    with gc._captured_codes(bundle) as calls:
        bundle.model.generate(
            **text, **kwargs, do_sample=False, max_new_tokens=new_frames + bundle.num_codebooks - 1,
            guidance_scale=guidance if guidance > 1 else None,
        )
    return calls[0].long()


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_beam_of_one_is_transformers_greedy_decoding(tiny, guidance):
    text = gc.text_inputs(tiny, PROMPTS)
    ours = beam.beam_codes(tiny, text, 24, width=1, guidance_scale=guidance).codes
    assert torch.equal(ours, _transformers_greedy(tiny, PROMPTS, 24, guidance))


def test_beam_of_one_continues_a_prompt_as_transformers_greedy(tiny):
    torch.manual_seed(0)
    prompt = torch.randint(0, tiny.codebook_size, (2, tiny.num_codebooks, 9))
    text = gc.text_inputs(tiny, PROMPTS)
    ours = beam.beam_codes(tiny, text, 15, prompt=prompt, width=1, guidance_scale=3.0).codes
    assert torch.equal(ours[..., :9], prompt)
    assert torch.equal(ours, _transformers_greedy(tiny, PROMPTS, 15, 3.0, prompt_codes=prompt))


def test_guided_scorer_without_guidance_is_transformers_loss(tiny):
    codes = _transformers_greedy(tiny, PROMPTS[:1], 16, 1.0)
    seq = gc.delayed_sequence(tiny, codes)
    labels = seq[:, 1:].reshape(1, tiny.num_codebooks, -1).transpose(1, 2)
    with torch.no_grad():
        loss = tiny.model(**gc.text_inputs(tiny, PROMPTS[:1]), labels=labels).loss
    ours = beam.guided_log_likelihood(tiny, gc.text_inputs(tiny, PROMPTS[:1]), codes, 0, 1.0)
    assert float(ours[0]) == pytest.approx(-float(loss) * codes.numel(), rel=1e-5)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_wider_beams_are_never_less_likely_than_greedy(tiny, guidance):
    prompts = [*PROMPTS, "x", "ambient drone with bells"]
    text = gc.text_inputs(tiny, prompts)
    greedy = _transformers_greedy(tiny, prompts, 20, guidance)
    ll_greedy = beam.guided_log_likelihood(tiny, text, greedy, 0, guidance)
    strictly_better = 0
    for width in (2, 4):
        res = beam.beam_codes(tiny, text, 20, width=width, guidance_scale=guidance)
        ll = beam.guided_log_likelihood(tiny, text, res.codes, 0, guidance)  # scored independently of the search
        assert torch.allclose(ll, res.log_likelihood, atol=1e-3)  # the search's own score is that likelihood
        assert (ll >= ll_greedy - 1e-4).all(), (width, ll, ll_greedy)
        strictly_better += int((ll > ll_greedy + 1e-4).sum())
    assert strictly_better > 0  # the beam finds more likely sequences, not only the greedy one again


def test_top_joint_matches_brute_force_enumeration():
    torch.manual_seed(3)
    logp = torch.log_softmax(torch.randn(2, 3, 5), dim=-1)  # [R, K, V]
    free = torch.tensor([True, False, True])
    scores, tokens = beam.top_joint(logp, free, 6)
    for r in range(2):
        combos = sorted(
            ((float(logp[r, 0, a] + logp[r, 2, c]), a, c) for a, c in itertools.product(range(5), range(5))),
            reverse=True,
        )[:6]
        assert [round(s, 5) for s, _, _ in combos] == [round(float(s), 5) for s in scores[r]]
        assert tokens[r, :, 1].eq(-1).all()
        for (_, a, c), t in zip(combos, tokens[r].tolist(), strict=True):
            assert (t[0], t[2]) == (a, c)


def test_sampling_params_route_windows_through_the_beam(tiny):
    params = SamplingParams(duration_s=0.4, guidance_scale=3.0, beams=1)
    codes = generate_piece_codes(tiny, PROMPTS[:1], params).codes
    assert torch.equal(codes, _transformers_greedy(tiny, PROMPTS[:1], 20, 3.0))
    with pytest.raises(StylecraftError, match="best-of"):
        SamplingParams(beams=2, best_of=2).validate()
    with pytest.raises(StylecraftError, match="--beams"):
        SamplingParams(beams=65).validate()


def test_cli_beams_writes_a_file_with_provenance(tmp_path):
    from typer.testing import CliRunner

    from stylecraft.cli import app

    out = tmp_path / "gen"
    args = ["generate", "--model", "tiny", "--prompt", "demo", "--duration", "0.3", "--beams", "2",
            "--length-penalty", "0.5", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "generated.jsonl").read_text().splitlines()[0])
    assert row["params"]["beams"] == 2 and row["params"]["length_penalty"] == 0.5
    # The one-line error of the real entry point (main() turns StylecraftError into it).
    bad = run_cli(*args[:-2], "--best-of", "2", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1
