"""CPU convolution kernels against torch's conv2d, ReLU and max pool in float64."""

from __future__ import annotations

import pytest
import torch

from stylecraft.evaluate.embeddings.cpu_conv import (
    conv3x3_single_channel,
    pad_maps,
    winograd_conv3x3,
    winograd_weights,
)


def _reference(x_nhwc: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool) -> torch.Tensor:
    y = torch.nn.functional.conv2d(x_nhwc.double().permute(0, 3, 1, 2), weight.double(), bias.double(), padding=1)
    if pool:
        y = torch.nn.functional.max_pool2d(y, 2)
    return torch.relu(y).permute(0, 2, 3, 1)


@pytest.mark.parametrize(
    ("batch", "size", "c_in", "c_out", "pool", "chunk_tiles"),
    [(3, (8, 12), 5, 7, False, 192), (5, (16, 8), 16, 24, True, 20), (2, (4, 4), 3, 2, True, 1)],
)
def test_winograd_matches_direct_convolution(batch, size, c_in, c_out, pool, chunk_tiles):
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, *size, c_in, generator=gen)
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen) / (3 * c_in**0.5)
    bias = torch.randn(c_out, generator=gen) * 0.1
    got = winograd_conv3x3(pad_maps(x), winograd_weights(weight), bias, pool=pool, chunk_tiles=chunk_tiles)
    ref = _reference(x, weight, bias, pool)
    padded = winograd_conv3x3(pad_maps(x), winograd_weights(weight), bias, pool=pool, pad_output=True, chunk_tiles=chunk_tiles)
    assert torch.equal(padded, pad_maps(got))  # the same values, inside a zero border
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert (got >= 0).all()  # ReLU applied
    err = (got.double() - ref).abs().max().item()
    assert 0 < err <= 1e-5 * ref.abs().max().item()  # float32 rounding, not another function


def test_single_channel_kernel_matches_direct_convolution():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 12, 10, generator=gen)
    weight = torch.randn(6, 1, 3, 3, generator=gen)
    bias = torch.randn(6, generator=gen)
    got = conv3x3_single_channel(x, weight, bias, chunk=3)  # 7 examples: a short last chunk
    ref = _reference(x[..., None], weight, bias, pool=True)
    assert got.shape == (7, 6, 5, 6)
    torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(conv3x3_single_channel(x, weight, bias, pad_output=True), pad_maps(got))
    no_bias = conv3x3_single_channel(x, weight, None)
    torch.testing.assert_close(no_bias.double(), _reference(x[..., None], weight, torch.zeros(6), True), rtol=1e-6, atol=1e-6)


def test_shapes_the_kernels_cannot_tile_are_refused():
    with pytest.raises(ValueError, match="maps"):
        winograd_conv3x3(torch.zeros(1, 8, 10, 2), winograd_weights(torch.zeros(3, 2, 3, 3)), None, pool=False)
    with pytest.raises(ValueError, match="filters"):
        winograd_conv3x3(torch.zeros(1, 10, 10, 2), winograd_weights(torch.zeros(3, 4, 3, 3)), None, pool=False)
    with pytest.raises(ValueError, match="3x3"):
        winograd_weights(torch.zeros(3, 2, 5, 5))
    with pytest.raises(ValueError, match="maps"):
        conv3x3_single_channel(torch.zeros(1, 7, 8), torch.zeros(2, 1, 3, 3), None)
