"""Caption states: captions of different token lengths may meet in any batch order."""

import pytest
import torch

from stylecraft.models.loading import load_model
from stylecraft.train.batches import Collator
from stylecraft.train.loop import TextConditioner, loss_on_batch


@pytest.fixture(scope="module")
def bundle():
    return load_model("tiny")


def _batch(bundle, captions, seed=0):
    g = torch.Generator().manual_seed(seed)
    col = Collator(bundle.tokenizer, bundle.pad_token_id, bundle.pad_token_id)
    items = [{"codes": torch.randint(0, bundle.codebook_size, (bundle.num_codebooks, 6), generator=g), "caption": c}
             for c in captions]
    return col(items)


# Each pair of batches once crashed: the first batch cached its captions at its own padded length.
ORDERS = [
    # a cached caption meets a longer new one: the cached and the new states cannot be stacked
    (["A minor", "C# minor, 120 bpm"], ["A minor", "D major, 95 bpm, long tail"]),
    # every caption cached at length 18, the batch's own mask is shorter: 18 against 8
    (["A minor", "C# minor, 120 bpm"], ["A minor"]),
]


@pytest.mark.parametrize("first,second", ORDERS)
def test_captions_of_any_length_meet_in_a_batch(bundle, first, second):
    cond = TextConditioner(bundle, torch.device("cpu"))
    model = bundle.model
    for captions in (first, second, first + second):
        loss = loss_on_batch(model, cond, _batch(bundle, captions), 0.0)
        assert torch.isfinite(loss)


def test_states_do_not_depend_on_the_batch(bundle):
    """A caption's states are those of the caption alone, whatever it was batched with."""
    alone = TextConditioner(bundle, torch.device("cpu"))
    mixed = TextConditioner(bundle, torch.device("cpu"))
    s_alone, m_alone = alone(_batch(bundle, ["A minor"]))
    s_mixed, m_mixed = mixed(_batch(bundle, ["a much longer caption, 120 bpm", "A minor"]))
    n = int(m_alone[0].sum())
    assert n == len(bundle.tokenizer("A minor")["input_ids"])
    assert int(m_mixed[1].sum()) == n and (m_mixed[1, n:] == 0).all() and (s_mixed[1, n:] == 0).all()
    assert torch.equal(s_mixed[1, :n], s_alone[0, :n])
    # And what the model sees equals the encoder run on the padded batch, at the real positions.
    ref = bundle.model.text_encoder(**bundle.tokenizer(["A minor"], return_tensors="pt")).last_hidden_state
    torch.testing.assert_close(s_alone[0, :n], ref[0], rtol=1e-5, atol=1e-6)
