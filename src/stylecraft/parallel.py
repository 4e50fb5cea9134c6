"""One pool of workers shared by the data stages (ingest, segment, augment).

Threads by default: decoding (soundfile), resampling (soxr), numpy/scipy and torch kernels all
release the GIL, so threads use every core without a process's start-up (about 3 s each to
import torch and librosa) or the pickling of audio between processes. Measured on 20 minutes of
real music on 2 cores with the same code (eval/bench_prep.py, stylecraft path, two runs each):
threads 20.8 and 21.6 s, spawned processes 24.2 and 24.8 s.
``STYLECRAFT_POOL=process`` switches to spawned processes ("spawn": forking a process that has
run torch can deadlock its thread pools), kept for the life of the process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, TypeVar

T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None
_size = 0


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(requested: int | None, tasks: int) -> int:
    """``requested`` workers (0 or None: one per core), never more than there are tasks."""
    n = requested or cpu_count()
    return max(0, min(n, tasks))


def get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _size
    if _pool is None or _size != workers:
        shutdown()
        if os.environ.get("STYLECRAFT_POOL", "thread") == "thread":
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(workers)  # type: ignore[assignment]
        else:
            _pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker)
        _size = workers
    assert _pool is not None
    return _pool


def _init_worker() -> None:
    os.environ.setdefault("STYLECRAFT_PROGRESS", "0")


def shutdown() -> None:
    global _pool, _size
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
    _pool, _size = None, 0


atexit.register(shutdown)


def run_tasks(fn: Callable[..., T], tasks: list[tuple[Any, ...]], workers: int) -> Iterator[tuple[int, T | BaseException]]:
    """Run ``fn(*task)`` for every task, in-process when ``workers <= 1``, else on the shared pool.

    Yields ``(task index, result or the exception it raised)`` as tasks finish, so the caller
    decides which exceptions are a rejected input and which are bugs.
    """
    if workers <= 1:
        for i, args in enumerate(tasks):
            try:
                yield i, fn(*args)
            except Exception as exc:  # handed back to the caller, who decides
                yield i, exc
        return
    pool = get_pool(workers)
    futures: dict[Future[T], int] = {pool.submit(fn, *args): i for i, args in enumerate(tasks)}
    for fut in as_completed(futures):
        error = fut.exception()
        yield futures[fut], (error if error is not None else fut.result())


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's (process-wide) thread count after workers changed it for their tasks."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)
