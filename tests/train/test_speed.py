"""The loop's throughput choices keep transformers' loss and gradients, and reject what cannot run."""

import copy

import pytest
import torch
from mini_run import mini_cfg

from stylecraft.config import load_recipe
from stylecraft.errors import ConfigError
from stylecraft.models.presets import build_tiny
from stylecraft.train import speed
from stylecraft.train.batches import labels_and_inputs


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()[0]


def _batch(model):
    dec = model.config.decoder
    codes = torch.randint(0, dec.vocab_size, (2, dec.num_codebooks, 30), generator=torch.Generator().manual_seed(0))
    labels, inputs = labels_and_inputs(codes, dec.pad_token_id, dec.decoder_start_token_id)
    states = torch.randn(2, 5, model.config.text_encoder.d_model, generator=torch.Generator().manual_seed(1))
    return {"encoder_outputs": (states,), "attention_mask": torch.ones(2, 5, dtype=torch.long),
            "decoder_input_ids": inputs, "labels": labels}


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.decoder.named_parameters() if p.grad is not None}


def test_direct_codebook_loss_equals_transformers(tiny, tmp_path):
    model = copy.deepcopy(tiny)
    model.train()
    batch = _batch(model)
    ref_loss, ref_grads = _loss_and_grads(model, batch)
    cfg = mini_cfg(tmp_path)
    speed.apply(model, cfg.train)
    assert model.decoder.config._attn_implementation == "sdpa"
    loss, grads = _loss_and_grads(model, batch)
    assert torch.equal(loss, ref_loss)  # same sums in the same order
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    # Without labels it is transformers' forward: logits of every codebook.
    out = model(**{k: v for k, v in batch.items() if k != "labels"})
    assert out.logits.shape[:2] == (2 * model.config.decoder.num_codebooks, batch["decoder_input_ids"].shape[1])


def test_attention_choices(tiny, tmp_path):
    model = copy.deepcopy(tiny)
    speed.apply(model, mini_cfg(tmp_path, "train.attention=eager").train)
    assert model.decoder.config._attn_implementation == "eager"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="flash_attention_2"):
            speed.apply(model, mini_cfg(tmp_path, "train.attention=flash_attention_2").train)
    with pytest.raises(ConfigError, match="train.attention"):
        load_recipe(None, ["catalogue=x", "train.attention=fast"])
