"""CPU inference kernels for 3x3 convolutions (stride 1, padding 1) followed by bias and ReLU.

VGGish spends most of its CPU time in such convolutions, each followed by ReLU and, at the end of
a stage, a 2x2 max pool. Two kernels cover them, both on channels-last ``[B, H, W, C]`` maps:

* :func:`conv3x3_single_channel` for the first layer (one input channel): nine taps per output
  make a matrix product too thin to be compute bound, so the cost is writing the full-size map
  and reading it back to pool. The kernel computes the four pool phases (the outputs at even and
  odd rows and columns) one after another on a few examples at a time and keeps their running
  maximum, so the full-size map is never written.
* :func:`winograd_conv3x3` for the others: Winograd's minimal filtering F(4x4, 3x3) (Lavin &
  Gray, 2016), which computes each 4x4 output tile from a 6x6 input tile with 36 products per
  channel pair instead of 144. Input and output transforms are dense products with the
  Kronecker matrices of the 1-D transforms; the 36 channel products are one batched matrix
  product. When a pool follows, it is taken inside each output tile (2x2 windows never straddle
  4x4 tiles) before the tiles are written back.

Pooling before bias and ReLU is exact: adding a per-channel constant and ReLU are both monotone,
so they commute with the maximum. The products are summed in another order than a direct
convolution's, so results agree with ``torch.nn.functional.conv2d`` to float32 rounding
(relative 1e-5 here, tested), not bit for bit.
"""

from __future__ import annotations

import torch

__all__ = ["conv3x3_single_channel", "pad_maps", "winograd_conv3x3", "winograd_weights"]

_BT = torch.tensor(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=torch.float64,
)
_G = torch.tensor(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=torch.float64,
)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
_INPUT_TRANSFORM = torch.kron(_BT, _BT).float()  # [36, 36]: 6x6 input tile -> transformed tile
_OUTPUT_TRANSFORM = torch.kron(_AT, _AT).float()  # [16, 36]: transformed product -> 4x4 output tile

TILE = 4
"""Output tile side of F(4x4, 3x3); map sides must be multiples of it."""

CHUNK_TILES = 192
"""Tiles per batched product: enough work per call, small enough that a chunk's transformed
input and products stay in cache (measured best among 96-3072 on VGGish's layers)."""

SINGLE_CHANNEL_CHUNK = 4
"""Examples per step of :func:`conv3x3_single_channel` (4-64 measured; the smallest was fastest)."""


def pad_maps(x: torch.Tensor) -> torch.Tensor:
    """Channels-last maps ``[B, H, W, C]`` with a zero border of one: ``[B, H+2, W+2, C]``."""
    return torch.nn.functional.pad(x, (0, 0, 1, 1, 1, 1))


def _empty_padded(b: int, h: int, w: int, c: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(padded [b, h+2, w+2, c] with a zero border, its interior view [b, h, w, c])``.

    Layers write their output straight into the next layer's padded input, so no layer copies
    its input into a zero-filled buffer of its own.
    """
    padded = torch.empty(b, h + 2, w + 2, c, dtype=like.dtype, device=like.device)
    for border in (padded[:, 0], padded[:, -1], padded[:, :, 0], padded[:, :, -1]):
        border.zero_()
    return padded, padded[:, 1:-1, 1:-1]


def _output(b: int, h: int, w: int, c: int, like: torch.Tensor, padded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(returned tensor, the view the kernel writes)``: padded as above, or a plain ``[b, h, w, c]``."""
    if padded:
        return _empty_padded(b, h, w, c, like)
    out = torch.empty(b, h, w, c, dtype=like.dtype, device=like.device)
    return out, out


def winograd_weights(weight: torch.Tensor) -> torch.Tensor:
    """Transformed filters ``[36, C_in, C_out]`` (computed in float64, stored in float32).

    Args:
        weight: ``[C_out, C_in, 3, 3]`` convolution weights.
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"winograd_weights needs 3x3 filters, got {tuple(weight.shape)}")
    g = _G.to(weight.device)
    u = torch.einsum("ak,ockl,bl->abco", g, weight.detach().double(), g)
    return u.reshape(36, weight.shape[1], weight.shape[0]).float().contiguous()


def winograd_conv3x3(
    padded: torch.Tensor,
    transformed: torch.Tensor,
    bias: torch.Tensor | None,
    pool: bool,
    pad_output: bool = False,
    chunk_tiles: int = CHUNK_TILES,
) -> torch.Tensor:
    """``relu(conv3x3(x) + bias)``, max-pooled 2x2 if ``pool``, by Winograd F(4x4, 3x3).

    Args:
        padded: Channels-last maps ``x`` with their zero border, ``[B, H+2, W+2, C_in]``
            (float32; see :func:`pad_maps`), ``H`` and ``W`` multiples of 4.
        transformed: :func:`winograd_weights` of the filters.
        bias: ``[C_out]`` or None.
        pool: Also take the 2x2, stride-2 max pool.
        pad_output: Return the result with a zero border, ready to be the next layer's input.
        chunk_tiles: Output tiles per batched product.

    Returns:
        ``[B, H', W', C_out]`` with ``H', W'`` = ``H, W`` or, with ``pool``, ``H/2, W/2``; with
        ``pad_output``, inside a zero border of one (``[B, H'+2, W'+2, C_out]``).
    """
    b, h, w, c = padded.shape
    h, w = h - 2, w - 2
    c_out = transformed.shape[2]
    if h <= 0 or w <= 0 or h % TILE or w % TILE or transformed.shape[:2] != (36, c):
        raise ValueError(f"winograd_conv3x3: padded maps {tuple(padded.shape)} with filters {tuple(transformed.shape)}")
    th, tw = h // TILE, w // TILE
    scale = 2 if pool else 1
    result, out = _output(b, h // scale, w // scale, c_out, padded, pad_output)
    s_b, s_h, s_w, s_c = padded.stride()
    per_chunk = max(1, chunk_tiles // (th * tw))
    for start in range(0, b, per_chunk):
        n = min(per_chunk, b - start)
        # overlapping 6x6 tiles with stride 4: [6, 6, n, th, tw, C] (a view), gathered by reshape
        tiles = padded.as_strided(
            (6, 6, n, th, tw, c), (s_h, s_w, s_b, TILE * s_h, TILE * s_w, s_c), padded.storage_offset() + start * s_b
        ).reshape(36, n * th * tw * c)
        products = torch.bmm((_INPUT_TRANSFORM @ tiles).view(36, n * th * tw, c), transformed)
        y = _OUTPUT_TRANSFORM @ products.view(36, -1)  # [16, n*th*tw*C_out]: rows are (row, column) in the tile
        dest = out[start : start + n]
        if pool:
            q = y.view(2, 2, 2, 2, n, th, tw, c_out)  # (row pair, row in pair, column pair, column in pair, ...)
            pooled = torch.maximum(torch.maximum(q[:, 0, :, 0], q[:, 0, :, 1]), torch.maximum(q[:, 1, :, 0], q[:, 1, :, 1]))
            dest.view(n, th, 2, tw, 2, c_out).copy_(pooled.permute(2, 3, 0, 4, 1, 5))
        else:
            dest.view(n, th, TILE, tw, TILE, c_out).copy_(y.view(TILE, TILE, n, th, tw, c_out).permute(2, 3, 0, 4, 1, 5))
        if bias is not None:
            dest.add_(bias)
        dest.relu_()
    return result


def conv3x3_single_channel(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    pad_output: bool = False,
    chunk: int = SINGLE_CHANNEL_CHUNK,
) -> torch.Tensor:
    """``maxpool2x2(relu(conv3x3(x) + bias))`` for one input channel, channels-last out.

    Args:
        x: ``[B, H, W]`` (float32), ``H`` and ``W`` even.
        weight: ``[C_out, 1, 3, 3]``.
        bias: ``[C_out]`` or None.
        pad_output: Return the result with a zero border (see :func:`winograd_conv3x3`).
        chunk: Examples per step.

    Returns:
        ``[B, H/2, W/2, C_out]``, or ``[B, H/2+2, W/2+2, C_out]`` with ``pad_output``.
    """
    b, h, w = x.shape
    c_out = weight.shape[0]
    if h % 2 or w % 2 or tuple(weight.shape[1:]) != (1, 3, 3):
        raise ValueError(f"conv3x3_single_channel: maps {tuple(x.shape)} with filters {tuple(weight.shape)}")
    taps = weight.detach().reshape(c_out, 9).t().contiguous()  # [9, C_out]
    result, out = _output(b, h // 2, w // 2, c_out, x, pad_output)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    s_b, s_h, s_w = padded.stride()
    for start in range(0, b, chunk):
        n = min(chunk, b - start)
        dest = torch.empty(n * (h // 2) * (w // 2), c_out, dtype=x.dtype, device=x.device)
        for phase, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            # the 3x3 neighbourhoods of the outputs at rows 2i+dy, columns 2j+dx: [n*H/2*W/2, 9]
            cols = padded.as_strided(
                (n, h // 2, w // 2, 3, 3),
                (s_b, 2 * s_h, 2 * s_w, s_h, s_w),
                padded.storage_offset() + start * s_b + dy * s_h + dx * s_w,
            ).reshape(-1, 9)
            if phase == 0:
                torch.mm(cols, taps, out=dest)
            else:
                torch.maximum(dest, cols @ taps, out=dest)
        if bias is not None:
            dest.add_(bias)
        out[start : start + n] = dest.relu_().view(n, h // 2, w // 2, c_out)
    return result
