"""A build shared by the processes of ``accelerate launch``: every process analyses its share of
the files, the main process gathers the results and is the only writer.

Work goes out in rounds: in round ``r`` process ``p`` analyses file ``r * world + p``; the
records are serialised as safetensors bytes (no pickle), padded to one length and gathered to
the main process over torch.distributed (gloo on CPU, NCCL-free), which commits them. A killed
launch leaves the last commit; launched again, the main process rescans and hands out only what
is missing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from stylecraft.index.analyse import AnalysedTrack, FileTask, analyse_file, record_from_bytes, record_to_bytes

__all__ = ["distributed_build", "distributed_state"]


def distributed_state() -> Any | None:
    """Accelerate's process state when this process is one of several, else ``None``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without a GPU, Accelerate forms a gloo process group only when told cpu=True.
    return PartialState(cpu=not torch.cuda.is_available())


def _broadcast_bytes(data: bytes | None, src: int = 0) -> bytes:
    import torch
    import torch.distributed as dist

    n = torch.tensor([0 if data is None else len(data)], dtype=torch.int64)
    dist.broadcast(n, src)
    buf = torch.zeros(int(n.item()), dtype=torch.uint8)
    if data is not None:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    dist.broadcast(buf, src)
    return bytes(buf.numpy().tobytes())


def _gather_bytes(data: bytes, world: int, rank: int) -> list[bytes]:
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


def distributed_build(
    state: Any, db: str | Path, references: dict[str, Path], settings: Any, commit_every: int, progress: bool
) -> Any:
    """The body of :func:`~stylecraft.index.build.build_index` under several processes.

    Returns:
        The :class:`~stylecraft.index.build.BuildReport` on the main process (counts of its
        commits); other processes return an empty report.
    """
    from stylecraft.index.build import (
        BuildReport,
        IndexSettings,
        _commit,
        _open_for_build,
        _scan,
        built_embeddings,
        refresh_models,
    )
    from stylecraft.progress import make_progress

    t0 = time.perf_counter()
    rank, world = state.process_index, state.num_processes
    report = BuildReport(main_process=rank == 0)
    store = None
    plan: bytes | None = None
    if rank == 0:
        store, settings = _open_for_build(db, settings)
        todo, scan_rejects = _scan(store, references, report)
        if scan_rejects:
            _commit(store, scan_rejects, report)
        plan = json.dumps({"settings": settings.to_json(), "tasks": [t.__dict__ for t in todo]}).encode()
    shared = json.loads(_broadcast_bytes(plan))
    settings = IndexSettings.from_json(shared["settings"])
    tasks = [FileTask(**t) for t in shared["tasks"]]
    embeddings = built_embeddings(settings)
    batch: list[AnalysedTrack] = []
    rounds = (len(tasks) + world - 1) // world
    try:
        with make_progress() as prog:
            bar = prog.add_task(f"indexing ({world} processes)", total=len(tasks), visible=progress and rank == 0)
            for r in range(rounds):
                i = r * world + rank
                mine = b""
                if i < len(tasks):
                    mine = record_to_bytes(_analyse_safely(tasks[i], embeddings, settings))
                for data in _gather_bytes(mine, world, rank):
                    if data:
                        batch.append(record_from_bytes(data))
                        prog.advance(bar)
                if rank == 0 and store is not None and (len(batch) >= commit_every or r == rounds - 1) and batch:
                    _commit(store, batch, report)
        if rank == 0 and store is not None:
            refresh_models(store, settings)
    finally:
        if store is not None:
            store.close()
    state.wait_for_everyone()
    report.wall_s = time.perf_counter() - t0
    return report


def _analyse_safely(task: FileTask, embeddings: dict[str, Any], settings: Any) -> AnalysedTrack:
    try:
        return analyse_file(task, embeddings, settings.fingerprint(), settings.profile_s, settings.min_duration_s)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bad file is a reject, never a crash of the whole launch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return AnalysedTrack(task, reason=f"cannot analyse: {type(exc).__name__}{': ' + first if first else ''}")


