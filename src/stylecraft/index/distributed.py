"""The process-group plumbing of a build shared by the processes of ``accelerate launch``
(:func:`~stylecraft.index.build.distributed_build`): every process analyses its share of the
files, the main process gathers the results and is the only writer.

Work goes out in rounds: in round ``r`` process ``p`` analyses file ``r * world + p``; the
records are serialised as safetensors bytes (no pickle), padded to one length and gathered to
the main process over torch.distributed (gloo on CPU, NCCL-free), which commits them. A killed
launch leaves the last commit; launched again, the main process rescans and hands out only what
is missing.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["broadcast_bytes", "distributed_state", "gather_bytes"]


def distributed_state() -> Any | None:
    """Accelerate's process state when this process is one of several, else ``None``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without a GPU, Accelerate forms a gloo process group only when told cpu=True.
    return PartialState(cpu=not torch.cuda.is_available())


def broadcast_bytes(data: bytes | None, src: int = 0) -> bytes:
    import torch
    import torch.distributed as dist

    n = torch.tensor([0 if data is None else len(data)], dtype=torch.int64)
    dist.broadcast(n, src)
    buf = torch.zeros(int(n.item()), dtype=torch.uint8)
    if data is not None:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    dist.broadcast(buf, src)
    return bytes(buf.numpy().tobytes())


def gather_bytes(data: bytes, world: int, rank: int) -> list[bytes]:
    """Every process's bytes on process 0 (an empty list elsewhere)."""
    import torch
    import torch.distributed as dist

    n = torch.tensor([len(data)], dtype=torch.int64)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = max(int(s.item()) for s in sizes)
    buf = torch.zeros(longest, dtype=torch.uint8)
    if data:
        buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    out = [torch.zeros(longest, dtype=torch.uint8) for _ in range(world)] if rank == 0 else None
    dist.gather(buf, out, dst=0)
    if rank != 0:
        return []
    assert out is not None
    return [bytes(o[: int(s.item())].numpy().tobytes()) for o, s in zip(out, sizes, strict=True)]
