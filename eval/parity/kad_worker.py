"""Runs inside the kadtk 1.1.0 reference venv (eval/parity/kad_env.py); never imported by stylecraft.

Invoked as ``python kad_worker.py TASK JSON_ARGS``; prints one JSON line with the answer. Tasks
call kadtk's own code on arrays saved by the parity suite or the benchmark:

* ``kad``: ``kadtk.kad.calc_kernel_audio_distance(x, y, (None, None), "cpu", precision=...)``
  per case, plus kadtk's ``median_pairwise_distance`` of ``y`` (its default bandwidth);
* ``kad_inf``: ``KernelAudioDistance.score_inf`` on a baseline folder and eval ``.npy`` files,
  global numpy RNG seeded as given;
* ``kad_individual``: ``KernelAudioDistance.score_individual`` (per-file KAD) on a baseline
  folder and an eval folder, read back from the CSV it writes;
* ``bench``: time and peak memory of ``calc_kernel_audio_distance`` on one pair of arrays, under
  an address-space limit (``budget_bytes`` above what the process has mapped before the call).

kadtk's methods call ``calc_kernel_audio_distance`` with its default ``precision=torch.float32``;
``precision: "float64"`` in the arguments changes that default (and nothing else), so that the
comparison in float64 measures the method and not float32 rounding.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
from worker_stubs import Unused, stub
from worker_stubs import versions as worker_versions


def install_stubs() -> None:
    """Stand-ins for imports kadtk's package ``__init__`` makes but its KAD path never calls."""
    ta = stub("torchaudio")
    ta.transforms = stub("torchaudio.transforms", Resample=Unused)
    ta.functional = stub("torchaudio.functional")
    ta.load = ta.save = Unused
    # The embedding networks of model_loader.py (MS-CLAP needs transformers and torchlibrosa, PANNs
    # torchlibrosa); kadtk.models is a namespace package, so its two subpackages are stubbed whole.
    stub("kadtk.models.msclap", lenient=True)
    stub("kadtk.models.panns", lenient=True)
    # model_loader.py has `from turtle import st` (unused); turtle needs tkinter, absent in a bare venv.
    stub("turtle", st=Unused)


def versions() -> dict[str, str]:
    return worker_versions(("kadtk", "numpy", "scipy", "torch", "hypy_utils"))


def _set_precision(name: str) -> Any:
    """Make ``precision=<name>`` the default of kadtk's ``calc_kernel_audio_distance``."""
    import kadtk.kad as kad_mod
    import torch

    dtype = {"float32": torch.float32, "float64": torch.float64}[name]
    fn = kad_mod.calc_kernel_audio_distance
    defaults = list(fn.__defaults__)
    # (bandwidth, kernel, precision, eps)
    defaults[2] = dtype
    fn.__defaults__ = tuple(defaults)
    return dtype


def task_kad(args: dict[str, Any]) -> dict[str, Any]:
    import kadtk.kad as kad_mod
    import torch

    torch.set_num_threads(args.get("threads", 1))
    dtype = _set_precision(args.get("precision", "float64"))
    data = np.load(args["npz"])
    out: dict[str, Any] = {}
    for case in args["cases"]:
        x, y = data[f"{case}_x"], data[f"{case}_y"]
        row: dict[str, Any] = {}
        bw = args.get("bandwidths", {}).get(case)
        try:
            with torch.no_grad():
                v = kad_mod.calc_kernel_audio_distance(
                    torch.tensor(x), torch.tensor(y), (None, None), "cpu", bandwidth=bw, precision=dtype
                )
            row["kad"] = float(v)
        except Exception as exc:  # recorded, not hidden: the suite reports what the reference does
            row["kad_error"] = f"{type(exc).__name__}: {exc}"
        try:
            row["median"] = float(kad_mod.median_pairwise_distance(torch.tensor(y)))
        except Exception as exc:
            row["median_error"] = f"{type(exc).__name__}: {exc}"
        out[case] = row
    return {"results": out, "versions": versions()}


def _scorer(model_name: str) -> Any:
    import kadtk.kad as kad_mod

    kad = object.__new__(kad_mod.KernelAudioDistance)
    ml = types.SimpleNamespace(name=model_name)
    kad.ml = ml
    kad.device = __import__("torch").device("cpu")
    kad.bandwidth = None
    kad.audio_load_worker = 1
    kad.logger = logging.getLogger("kadtk")
    kad.force_stats_calc = False
    from kadtk.emb_loader import EmbeddingLoader

    kad.emb_loader = EmbeddingLoader(ml, load_model=False)
    return kad


def task_kad_inf(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.get("threads", 1))
    _set_precision(args.get("precision", "float64"))
    kad = _scorer(args["model_name"])
    np.random.seed(args["seed"])
    res = kad.score_inf(args["baseline_dir"], [Path(p) for p in args["eval_files"]], steps=args["steps"], min_n=args["min_n"])
    return {
        "score": float(res.score), "slope": float(res.slope), "r2": float(res.r2),
        "points": [[int(n), float(v)] for n, v in res.points], "versions": versions(),
    }


def task_kad_individual(args: dict[str, Any]) -> dict[str, Any]:
    import os

    import torch

    torch.set_num_threads(args.get("threads", 1))
    _set_precision(args.get("precision", "float64"))
    kad = _scorer(args["model_name"])
    os.chdir(args["workdir"])  # score_individual writes data/result/<model>/<csv> under the working folder
    csv = kad.score_individual(args["baseline_dir"], args["eval_dir"], args["csv_name"])
    scores = {}
    for line in Path(csv).read_text().splitlines():
        path, value = line.rsplit(",", 1)
        scores[Path(path).name] = float(value)
    return {"scores": scores, "versions": versions()}


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def task_bench(args: dict[str, Any]) -> dict[str, Any]:
    """Wall and CPU time and peak RSS of one ``calc_kernel_audio_distance`` call (a fresh process per call)."""
    import resource
    import time

    import kadtk.kad as kad_mod
    import torch

    torch.set_num_threads(args.get("threads", 1))
    dtype = _set_precision(args.get("precision", "float32"))
    data = np.load(args["npz"])
    x, y = torch.tensor(data["x"]), torch.tensor(data["y"])
    if args.get("budget_bytes"):
        # On a shared machine a run that needs more than the budget must fail with its own
        # allocation error instead of pushing other processes out of memory.
        mapped = _vm_size_bytes()
        resource.setrlimit(resource.RLIMIT_AS, (mapped + int(args["budget_bytes"]), resource.RLIM_INFINITY))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"versions": versions(), "rss_before_kib": rss0}
    try:
        with torch.no_grad():
            out["kad"] = float(kad_mod.calc_kernel_audio_distance(x, y, (None, None), "cpu", precision=dtype))
    except (MemoryError, RuntimeError) as exc:
        out["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    out["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out


TASKS = {"kad": task_kad, "kad_inf": task_kad_inf, "kad_individual": task_kad_individual, "bench": task_bench}


def main() -> None:
    install_stubs()
    task, raw = sys.argv[1], sys.argv[2]
    result = TASKS[task](json.loads(raw))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
