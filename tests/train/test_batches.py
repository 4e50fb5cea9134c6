"""Delay pattern, labels and decoder inputs for MusicGen's K codebooks."""

import pytest
import torch

from stylecraft.models.loading import load_model
from stylecraft.train.batches import Collator, delay_pattern, labels_and_inputs, undelay

K, T, B = 4, 9, 2


@pytest.fixture(scope="module")
def bundle():
    return load_model("tiny")


def _codes(vocab=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (B, K, T), generator=g)


def test_shapes_and_start_token(bundle):
    pad = bundle.pad_token_id
    start = int(bundle.model.config.decoder.decoder_start_token_id)
    assert start == pad == bundle.codebook_size  # MusicGen's convention: BOS = pad = codebook size
    labels, inputs = labels_and_inputs(_codes(), pad, start)
    assert labels.shape == (B, T + K - 1, K)
    assert inputs.shape == (B * K, T + K - 1)
    assert (inputs.reshape(B, K, -1)[:, :, 0] == start).all()


def test_matches_transformers_generation_layout(bundle):
    """Our (inputs, labels) are the sequence transformers lays out when it generates."""
    codes = _codes()
    pad = bundle.pad_token_id
    labels, inputs = labels_and_inputs(codes, pad, pad)
    prompt = torch.cat([torch.full((B, K, 1), pad), codes], dim=-1).reshape(B * K, T + 1)
    _, pattern = bundle.model.decoder.build_delay_pattern_mask(prompt, pad_token_id=pad, max_length=T + K)
    seq = pattern.reshape(B, K, T + K)
    assert (seq != -1).all()
    assert torch.equal(inputs.reshape(B, K, -1), seq[..., :-1])
    expected = seq[..., 1:].transpose(1, 2).clone()
    expected[expected == pad] = -100
    assert torch.equal(labels, expected)


def test_delay_offsets_and_masking():
    codes = _codes()
    d = delay_pattern(codes, 256)
    for k in range(K):
        assert torch.equal(d[:, k, k : k + T], codes[:, k])
        assert (d[:, k, :k] == 256).all() and (d[:, k, k + T :] == 256).all()
    labels, _ = labels_and_inputs(codes, 256, 256)
    assert int((labels == -100).sum()) == B * K * (K - 1)  # only the delay padding is ignored
    assert torch.equal(undelay(d, T), codes)


def test_collator_tokenizes_captions(bundle):
    col = Collator(bundle.tokenizer, bundle.pad_token_id, bundle.pad_token_id)
    items = [{"codes": c, "caption": cap} for c, cap in zip(_codes(), ["a style, 100 bpm", "b"], strict=True)]
    batch = col(items)
    assert batch["input_ids"].shape[0] == 2
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()
    assert batch["labels"].shape == (2, T + K - 1, K)


def test_loss_falls_on_fixed_batch(bundle):
    torch.manual_seed(0)
    model = load_model("tiny").model.train()
    pad = bundle.pad_token_id
    labels, inputs = labels_and_inputs(_codes(), pad, pad)
    text = bundle.tokenizer(["demo artist style"] * B, return_tensors="pt", padding=True)
    opt = torch.optim.AdamW(model.decoder.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = model(**text, decoder_input_ids=inputs, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[0] > 5.0  # ~ln(256) at random init
    assert losses[-1] < 0.6 * losses[0]
